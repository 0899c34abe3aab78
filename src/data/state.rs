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

/// The DATA variables of spec §3.5.1.1. Private: they change only through the transitions
/// below, so every path through the state table is one a unit test can walk.
#[derive(Debug)]
pub struct DataMachine {
    state: DataState,
    operation: DataOperation,
    halt_reason: DataHaltReason,
    /// The peer once a data connection exists; LOCAL otherwise.
    connection: Addr,
    read_offset: u64,
    read_length: u64,
    /// Moved by the backup or recover thread while it runs; reset in place, never replaced,
    /// because the registry reads the same counter.
    bytes_processed: Arc<AtomicU64>,
    /// The expected total and when the operation started, once known.
    estimate: Option<(u64, Instant)>,
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
    /// The DATA state.
    pub fn state(&self) -> DataState {
        self.state
    }

    /// What the DATA server is doing (or did, once HALTED).
    pub fn operation(&self) -> DataOperation {
        self.operation
    }

    /// Why it halted (NA until it has).
    pub fn halt_reason(&self) -> DataHaltReason {
        self.halt_reason
    }

    /// The data connection's peer (LOCAL before one exists).
    pub fn connection(&self) -> &Addr {
        &self.connection
    }

    /// The live bytes-processed counter the backup or recover thread moves.
    pub fn bytes(&self) -> &Arc<AtomicU64> {
        &self.bytes_processed
    }

    /// True while a backup or recover runs.
    pub fn is_active(&self) -> bool {
        self.state == DataState::ACTIVE
    }

    /// DATA_LISTEN and DATA_CONNECT: only from IDLE, LOCAL or TCP.
    pub fn check_start(&self, addr_type: AddrType) -> Result<(), Refusal> {
        if self.state != DataState::IDLE {
            return refuse(
                NdmpError::ILLEGAL_STATE_ERR,
                "the DATA server is not IDLE (DATA_STOP a halted one first)",
            );
        }
        if !matches!(
            addr_type,
            AddrType::LOCAL | AddrType::TCP | AddrType::TCP_IPV6
        ) {
            return refuse(
                NdmpError::ILLEGAL_ARGS_ERR,
                format!("address type {addr_type:?} is not supported (LOCAL, TCP or TCP_IPV6)"),
            );
        }
        Ok(())
    }

    /// DATA_LISTEN succeeded.
    pub fn listening(&mut self) {
        self.state = DataState::LISTEN;
    }

    /// A data connection exists: DATA_CONNECT succeeded or the listener was reached.
    pub fn connected(&mut self, peer: Addr) {
        self.state = DataState::CONNECTED;
        self.connection = peer;
    }

    /// DATA_START_BACKUP, _RECOVER and _RECOVER_FILEHIST (`what` names it): only once
    /// connected. Checked before the request's arguments, as the spec orders the errors.
    pub fn check_operation(&self, what: &str) -> Result<(), Refusal> {
        if self.state != DataState::CONNECTED {
            return refuse(
                NdmpError::ILLEGAL_STATE_ERR,
                format!("{what} needs a data connection (DATA_CONNECT or DATA_LISTEN)"),
            );
        }
        Ok(())
    }

    /// The operation `op` has started: CONNECTED becomes ACTIVE. Refused from any other
    /// state, and for NOACTION, which is not an operation.
    pub fn start(&mut self, op: DataOperation) -> Result<(), Refusal> {
        self.check_operation(&format!("{op:?}"))?;
        if !matches!(
            op,
            DataOperation::BACKUP | DataOperation::RECOVER | DataOperation::RECOVER_FILEHIST
        ) {
            return refuse(
                NdmpError::ILLEGAL_ARGS_ERR,
                format!("{op:?} is not an operation"),
            );
        }
        self.state = DataState::ACTIVE;
        self.operation = op;
        self.estimate = None;
        Ok(())
    }

    /// NOTIFY_DATA_READ went to the DMA: the range DATA_GET_STATE reports as being read.
    pub fn read_notice(&mut self, offset: u64, length: u64) {
        self.read_offset = offset;
        self.read_length = length;
    }

    /// The operation's expected total, learnt while it runs; the clock starts with the first
    /// (a later one refines the total: the rate stays measured over the whole run).
    pub fn set_estimate(&mut self, total: u64) {
        let since = self.estimate.map_or_else(Instant::now, |e| e.1);
        self.estimate = Some((total, since));
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

    /// The operation ended, or the connection failed: HALTED with `reason`.
    pub fn halted(&mut self, reason: DataHaltReason) {
        self.state = DataState::HALTED;
        self.halt_reason = reason;
    }

    /// DATA_STOP: back to IDLE with every variable reset, the byte counter in place.
    pub fn stopped(&mut self) {
        let bytes = self.bytes_processed.clone();
        bytes.store(0, Ordering::Relaxed);
        *self = DataMachine {
            bytes_processed: bytes,
            ..DataMachine::default()
        };
    }

    /// The DATA_GET_STATE reply.
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

    #[test]
    fn operations_start_only_once_connected() {
        let ops = [
            DataOperation::BACKUP,
            DataOperation::RECOVER,
            DataOperation::RECOVER_FILEHIST,
        ];
        for s in ALL {
            for op in ops {
                let mut d = in_state(s);
                let r = d.start(op);
                if s == DataState::CONNECTED {
                    assert!(r.is_ok(), "{op:?} from {s:?}");
                    assert_eq!((d.state(), d.operation()), (DataState::ACTIVE, op));
                    assert!(d.is_active());
                } else {
                    let e = r.unwrap_err();
                    assert_eq!(e.error, NdmpError::ILLEGAL_STATE_ERR, "{op:?} from {s:?}");
                    assert!(e.why.contains("data connection"), "{}", e.why);
                    assert_eq!((d.state(), d.operation()), (s, DataOperation::NOACTION));
                }
            }
        }
        let mut d = in_state(DataState::CONNECTED);
        assert_eq!(
            err(d.start(DataOperation::NOACTION)),
            NdmpError::ILLEGAL_ARGS_ERR
        );
        assert_eq!(d.state(), DataState::CONNECTED);
    }

    #[test]
    fn read_notices_show_in_the_report_until_stop() {
        let mut d = in_state(DataState::CONNECTED);
        d.start(DataOperation::RECOVER).unwrap();
        d.read_notice(4096, 1 << 20);
        let r = d.report();
        assert_eq!((r.read_offset, r.read_length), (4096, 1 << 20));
        d.halted(DataHaltReason::SUCCESSFUL);
        d.stopped();
        let r = d.report();
        assert_eq!((r.read_offset, r.read_length), (0, 0));
    }

    #[test]
    fn stop_resets_the_byte_counter_in_place() {
        // the registry holds this same counter: a replaced one would freeze the REST view
        let mut d = in_state(DataState::CONNECTED);
        let watcher = d.bytes().clone();
        d.start(DataOperation::BACKUP).unwrap();
        d.bytes().fetch_add(700, Ordering::Relaxed);
        d.halted(DataHaltReason::SUCCESSFUL);
        assert_eq!(watcher.load(Ordering::Relaxed), 700);
        d.stopped();
        assert!(Arc::ptr_eq(&watcher, d.bytes()));
        assert_eq!(watcher.load(Ordering::Relaxed), 0);
        d.connected(Addr::Local);
        d.start(DataOperation::BACKUP).unwrap();
        d.bytes().fetch_add(5, Ordering::Relaxed);
        assert_eq!(watcher.load(Ordering::Relaxed), 5);
        assert_eq!(d.report().bytes_processed, 5);
    }
}
