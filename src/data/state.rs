//! The DATA state table of spec §3.5 as plain data: which request is legal in which state and
//! the variables DATA_GET_STATE reports. No I/O happens here.

use crate::error::{refuse, Refusal};
use crate::wire::messages::DataGetStateReply;
use crate::wire::types::{
    data_state_uns, Addr, AddrType, DataHaltReason, DataOperation, DataState,
};
use crate::wire::NdmpError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The DATA variables of spec §3.5.1.1.
#[derive(Debug)]
pub struct DataMachine {
    pub state: DataState,
    pub operation: DataOperation,
    pub halt_reason: DataHaltReason,
    /// The peer once a data connection exists; LOCAL otherwise.
    pub connection: Addr,
    pub read_offset: u64,
    pub read_length: u64,
    /// Moved by the backup or recover thread while it runs.
    pub bytes_processed: Arc<AtomicU64>,
    /// The expected total and when the operation started, once known.
    pub estimate: Option<(u64, Instant)>,
}

impl Default for DataMachine {
    fn default() -> Self {
        DataMachine {
            state: DataState::IDLE,
            operation: DataOperation::NOACTION,
            halt_reason: DataHaltReason::NA,
            connection: Addr::Local,
            read_offset: 0,
            read_length: 0,
            bytes_processed: Arc::new(AtomicU64::new(0)),
            estimate: None,
        }
    }
}

impl DataMachine {
    /// DATA_LISTEN and DATA_CONNECT: only from IDLE, LOCAL or TCP.
    pub fn check_start(&self, addr_type: AddrType) -> Result<(), Refusal> {
        if self.state != DataState::IDLE {
            return refuse(
                NdmpError::ILLEGAL_STATE_ERR,
                "the DATA server is not IDLE (DATA_STOP a halted one first)",
            );
        }
        if !matches!(addr_type, AddrType::LOCAL | AddrType::TCP) {
            return refuse(
                NdmpError::ILLEGAL_ARGS_ERR,
                format!("address type {addr_type:?} is not supported (LOCAL or TCP)"),
            );
        }
        Ok(())
    }

    pub fn listening(&mut self) {
        self.state = DataState::LISTEN;
    }

    pub fn connected(&mut self, peer: Addr) {
        self.state = DataState::CONNECTED;
        self.connection = peer;
    }

    /// DATA_ABORT: from any state but IDLE.
    pub fn check_abort(&self) -> Result<(), Refusal> {
        if self.state == DataState::IDLE {
            return refuse(NdmpError::ILLEGAL_STATE_ERR, "the DATA server is IDLE");
        }
        Ok(())
    }

    /// DATA_STOP: only from HALTED.
    pub fn check_stop(&self) -> Result<(), Refusal> {
        if self.state != DataState::HALTED {
            return refuse(
                NdmpError::ILLEGAL_STATE_ERR,
                "the DATA server is not HALTED (DATA_ABORT it first)",
            );
        }
        Ok(())
    }

    pub fn halted(&mut self, reason: DataHaltReason) {
        self.state = DataState::HALTED;
        self.halt_reason = reason;
    }

    /// DATA_STOP: back to IDLE with every variable reset.
    pub fn stopped(&mut self) {
        *self = DataMachine::default();
    }

    pub fn report(&self) -> DataGetStateReply {
        let done = self.bytes_processed.load(Ordering::Relaxed);
        let (unsupported, est_bytes_remain, est_time_remain) = match self.estimate {
            // the spec's way to say there is no estimate
            None => (
                data_state_uns::EST_BYTES_REMAIN | data_state_uns::EST_TIME_REMAIN,
                0,
                0,
            ),
            Some(_) if self.state != DataState::ACTIVE => (0, 0, 0),
            Some((total, since)) => {
                let left = total.saturating_sub(done);
                let rate = done as f64 / since.elapsed().as_secs_f64().max(0.001);
                let secs = if rate > 0.0 {
                    (left as f64 / rate).min(f64::from(u32::MAX)) as u32
                } else {
                    0
                };
                (0, left, secs)
            }
        };
        DataGetStateReply {
            unsupported,
            error: NdmpError::NO_ERR,
            operation: self.operation,
            state: self.state,
            halt_reason: self.halt_reason,
            bytes_processed: done,
            est_bytes_remain,
            est_time_remain,
            data_connection_addr: self.connection.clone(),
            read_offset: self.read_offset,
            read_length: self.read_length,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [DataState; 5] = [
        DataState::IDLE,
        DataState::LISTEN,
        DataState::CONNECTED,
        DataState::ACTIVE,
        DataState::HALTED,
    ];

    fn err(r: Result<(), Refusal>) -> NdmpError {
        r.err().map(|r| r.error).unwrap_or(NdmpError::NO_ERR)
    }

    fn in_state(state: DataState) -> DataMachine {
        DataMachine {
            state,
            ..DataMachine::default()
        }
    }

    #[test]
    fn fresh_is_idle_noaction_na_with_nothing_processed() {
        let r = DataMachine::default().report();
        assert_eq!(
            (r.state, r.operation, r.halt_reason),
            (DataState::IDLE, DataOperation::NOACTION, DataHaltReason::NA)
        );
        assert_eq!((r.bytes_processed, r.read_offset, r.read_length), (0, 0, 0));
        assert_eq!(r.data_connection_addr, Addr::Local);
        assert_ne!(r.unsupported & data_state_uns::EST_BYTES_REMAIN, 0);
    }

    #[test]
    fn listen_and_connect_only_from_idle_with_local_or_tcp() {
        for s in ALL {
            let want = if s == DataState::IDLE {
                NdmpError::NO_ERR
            } else {
                NdmpError::ILLEGAL_STATE_ERR
            };
            assert_eq!(err(in_state(s).check_start(AddrType::TCP)), want, "{s:?}");
        }
        let idle = DataMachine::default();
        assert_eq!(err(idle.check_start(AddrType::LOCAL)), NdmpError::NO_ERR);
        assert_eq!(
            err(idle.check_start(AddrType::IPC)),
            NdmpError::ILLEGAL_ARGS_ERR
        );
        assert_eq!(
            err(idle.check_start(AddrType(123))),
            NdmpError::ILLEGAL_ARGS_ERR
        );
    }

    #[test]
    fn abort_from_anything_but_idle_and_stop_only_from_halted() {
        for s in ALL {
            let abort = if s == DataState::IDLE {
                NdmpError::ILLEGAL_STATE_ERR
            } else {
                NdmpError::NO_ERR
            };
            let stop = if s == DataState::HALTED {
                NdmpError::NO_ERR
            } else {
                NdmpError::ILLEGAL_STATE_ERR
            };
            assert_eq!(err(in_state(s).check_abort()), abort, "abort in {s:?}");
            assert_eq!(err(in_state(s).check_stop()), stop, "stop in {s:?}");
        }
    }

    #[test]
    fn estimates_count_down_while_active() {
        let mut d = in_state(DataState::ACTIVE);
        d.estimate = Some((1000, Instant::now() - std::time::Duration::from_secs(2)));
        d.bytes_processed.store(400, Ordering::Relaxed);
        let r = d.report();
        assert_eq!((r.unsupported, r.est_bytes_remain), (0, 600));
        // 200 bytes/s so far: 3 s to go
        assert!(
            (2..=3).contains(&r.est_time_remain),
            "{}",
            r.est_time_remain
        );
        d.halted(DataHaltReason::SUCCESSFUL);
        assert_eq!(d.report().est_bytes_remain, 0);
    }

    #[test]
    fn listen_connect_halt_stop_round_trip() {
        let mut d = DataMachine::default();
        d.listening();
        assert_eq!(d.report().state, DataState::LISTEN);
        d.connected(Addr::Local);
        assert_eq!(d.report().state, DataState::CONNECTED);
        d.halted(DataHaltReason::ABORTED);
        d.bytes_processed.store(5, Ordering::Relaxed);
        let r = d.report();
        assert_eq!(
            (r.state, r.halt_reason),
            (DataState::HALTED, DataHaltReason::ABORTED)
        );
        d.stopped();
        let r = d.report();
        assert_eq!(
            (r.state, r.halt_reason, r.bytes_processed),
            (DataState::IDLE, DataHaltReason::NA, 0)
        );
    }
}
