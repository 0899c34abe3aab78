//! The DATA interface of a session (spec §3.5): data connections (LISTEN, CONNECT, and the
//! LOCAL pairing with this session's mover), ABORT, STOP, GET_STATE and NOTIFY_DATA_HALTED.

use super::session::Session;
use crate::data::DataMachine;
use crate::mover::local::DataEnd;
use crate::mover::{net, Refusal};
use crate::wire::header::Header;
use crate::wire::messages::*;
use crate::wire::types::*;
use crate::wire::{NdmpError, Reply, Request};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// An established data connection, waiting for DATA_START_BACKUP or DATA_START_RECOVER.
#[derive(Debug)]
#[allow(dead_code)] // read by the backup and recover drivers, next to land
pub enum DataConn {
    Tcp(std::net::TcpStream),
    Local(DataEnd),
}

/// What the listening task reports.
pub enum DataEvent {
    Connected(tokio::net::TcpStream, std::net::SocketAddr),
    Failed(String),
}

/// The DATA server of one session.
pub struct DataSession {
    pub machine: DataMachine,
    conn: Option<DataConn>,
    /// DATA_LISTEN(LOCAL): waiting for this session's MOVER_CONNECT(LOCAL).
    local_listen: bool,
    listen_cancel: Option<CancellationToken>,
    events_tx: mpsc::UnboundedSender<DataEvent>,
    pub events: mpsc::UnboundedReceiver<DataEvent>,
}

impl Default for DataSession {
    fn default() -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        DataSession {
            machine: DataMachine::default(),
            conn: None,
            local_listen: false,
            listen_cancel: None,
            events_tx,
            events,
        }
    }
}

impl DataSession {
    /// MOVER_CONNECT(LOCAL): if DATA listens LOCAL, it takes its end of the pipe.
    pub fn accept_local(&mut self, end: DataEnd) -> Result<(), DataEnd> {
        if !(self.local_listen && self.machine.state == DataState::LISTEN) {
            return Err(end);
        }
        self.local_listen = false;
        self.conn = Some(DataConn::Local(end));
        self.machine.connected(Addr::Local);
        Ok(())
    }

    pub fn listening_local(&self) -> bool {
        self.local_listen && self.machine.state == DataState::LISTEN
    }

    /// Drops the connection and any listener.
    fn release(&mut self) {
        if let Some(c) = self.listen_cancel.take() {
            c.cancel();
        }
        self.conn = None;
        self.local_listen = false;
    }
}

fn state_name(s: DataState) -> &'static str {
    match s {
        DataState::IDLE => "IDLE",
        DataState::ACTIVE => "ACTIVE",
        DataState::HALTED => "HALTED",
        DataState::LISTEN => "LISTEN",
        _ => "CONNECTED",
    }
}

fn halt_name(r: DataHaltReason) -> &'static str {
    match r {
        DataHaltReason::SUCCESSFUL => "SUCCESSFUL",
        DataHaltReason::ABORTED => "ABORTED",
        DataHaltReason::INTERNAL_ERROR => "INTERNAL_ERROR",
        DataHaltReason::CONNECT_ERROR => "CONNECT_ERROR",
        _ => "NA",
    }
}

impl Session {
    pub(super) fn publish_data(&self) {
        let m = &self.data.machine;
        let state = state_name(m.state);
        let halt_reason = halt_name(m.halt_reason);
        let connection = match (&m.connection, m.state) {
            (_, DataState::IDLE | DataState::LISTEN) => None,
            (Addr::Tcp { tcp_addr }, _) => tcp_addr
                .first()
                .map(|t| format!("TCP {}:{}", t.ip(), t.port)),
            (_, _) => Some("LOCAL".to_string()),
        };
        self.entry.update(|i| {
            i.data.state = state;
            i.data.halt_reason = halt_reason;
            i.data.connection = connection;
        });
    }

    pub(super) async fn data_request(&mut self, h: &Header, req: Request) -> std::io::Result<()> {
        let result: Result<(), Refusal> = match req {
            Request::DataGetState(_) => {
                let body = Reply::DataGetState(self.data.machine.report());
                return self.reply(h, body).await;
            }
            Request::DataListen(r) => return self.data_listen(h, r.addr_type).await,
            Request::DataConnect(r) => return self.data_connect(h, r.addr).await,
            Request::DataAbort(_) => match self.data.machine.check_abort() {
                Ok(()) => {
                    self.data_halt(DataHaltReason::ABORTED).await?;
                    Ok(())
                }
                Err(r) => Err(r),
            },
            Request::DataStop(_) => self.data.machine.check_stop().map(|()| {
                self.data.release();
                self.data.machine.stopped();
            }),
            Request::DataGetEnv(_) => Err(Refusal {
                error: NdmpError::ILLEGAL_STATE_ERR,
                why: "no backup has run: there is no environment to return".into(),
            }),
            other => {
                let why = format!("{:?} is not supported by this server yet", other.code());
                return self.refuse(h, NdmpError::NOT_SUPPORTED_ERR, &why).await;
            }
        };
        self.publish_data();
        match result {
            Ok(()) => self.ok(h).await,
            Err(r) => self.refuse(h, r.error, &r.why).await,
        }
    }

    /// Enters HALTED (unless already there) and tells the DMA, as every entry must.
    pub(super) async fn data_halt(&mut self, reason: DataHaltReason) -> std::io::Result<()> {
        self.data.release();
        if self.data.machine.state == DataState::HALTED {
            return Ok(());
        }
        self.data.machine.halted(reason);
        info!(reason = halt_name(reason), "data halted");
        self.publish_data();
        self.post(Request::NotifyDataHalted(NotifyDataHaltedPost { reason }))
            .await
    }

    async fn data_listen(&mut self, h: &Header, addr_type: AddrType) -> std::io::Result<()> {
        if let Err(r) = self.data.machine.check_start(addr_type) {
            return self.refuse(h, r.error, &r.why).await;
        }
        let connect_addr = if addr_type == AddrType::TCP {
            let ports = self.shared.config.mover.data_ports.map(|[a, b]| (a, b));
            let l = match net::listen(self.local, ports).await {
                Ok(l) => l,
                Err(e) => {
                    let why = format!("cannot listen for a data connection: {e}");
                    return self.refuse(h, NdmpError::IO_ERR, &why).await;
                }
            };
            let cancel = CancellationToken::new();
            let events = self.data.events_tx.clone();
            let stop = cancel.clone();
            let listener = l.listener;
            tokio::spawn(async move {
                tokio::select! {
                    r = listener.accept() => {
                        let ev = match r {
                            Ok((s, peer)) => DataEvent::Connected(s, peer),
                            Err(e) => DataEvent::Failed(e.to_string()),
                        };
                        let _ = events.send(ev);
                    }
                    _ = stop.cancelled() => {}
                }
            });
            self.data.listen_cancel = Some(cancel);
            Addr::Tcp {
                tcp_addr: l.offered,
            }
        } else {
            self.data.local_listen = true;
            Addr::Local
        };
        self.data.machine.listening();
        self.publish_data();
        let body = Reply::DataListen(ListenReply {
            error: NdmpError::NO_ERR,
            connect_addr,
        });
        self.reply(h, body).await
    }

    async fn data_connect(&mut self, h: &Header, addr: Addr) -> std::io::Result<()> {
        if let Err(r) = self.data.machine.check_start(addr.addr_type()) {
            return self.refuse(h, r.error, &r.why).await;
        }
        match addr {
            Addr::Tcp { tcp_addr } => {
                let per_try = Duration::from_secs(self.shared.config.mover.connect_timeout_secs);
                let stream = match net::connect(&tcp_addr, per_try).await {
                    Ok(s) => s,
                    Err(e) => {
                        let why = format!("data connect failed: {e}");
                        return self.refuse(h, NdmpError::CONNECT_ERR, &why).await;
                    }
                };
                let peer = stream.peer_addr().map(net::peer_addr).unwrap_or_default();
                match stream
                    .into_std()
                    .and_then(|s| s.set_nonblocking(false).map(|()| s))
                {
                    Ok(s) => self.data.conn = Some(DataConn::Tcp(s)),
                    Err(e) => {
                        let why = format!("data connect failed: {e}");
                        return self.refuse(h, NdmpError::CONNECT_ERR, &why).await;
                    }
                }
                self.data.machine.connected(peer);
            }
            _ => match self.mover.take_local() {
                Some(end) => {
                    self.data.conn = Some(DataConn::Local(end));
                    self.data.machine.connected(Addr::Local);
                }
                None => {
                    let why = "no MOVER_LISTEN(LOCAL) is waiting on this connection";
                    return self.refuse(h, NdmpError::ILLEGAL_STATE_ERR, why).await;
                }
            },
        }
        info!("data connected");
        self.publish_data();
        self.ok(h).await
    }

    /// What the listening task found.
    pub(super) async fn on_data_event(&mut self, ev: DataEvent) -> std::io::Result<()> {
        if self.data.machine.state != DataState::LISTEN {
            // an abort crossed the connection: it is dropped
            return Ok(());
        }
        self.data.listen_cancel = None;
        match ev {
            DataEvent::Connected(s, peer) => {
                let _ = s.set_nodelay(true);
                match s
                    .into_std()
                    .and_then(|s| s.set_nonblocking(false).map(|()| s))
                {
                    Ok(s) => {
                        self.data.conn = Some(DataConn::Tcp(s));
                        self.data.machine.connected(net::peer_addr(peer));
                        info!(%peer, "data connection accepted");
                        self.publish_data();
                        Ok(())
                    }
                    Err(e) => self.data_connect_error(e.to_string()).await,
                }
            }
            DataEvent::Failed(e) => self.data_connect_error(e).await,
        }
    }

    async fn data_connect_error(&mut self, why: String) -> std::io::Result<()> {
        self.post(Request::LogMessage(LogMessagePost {
            log_type: LogType::ERROR,
            message_id: 0,
            entry: format!("data connection failed: {why}").as_str().into(),
            associated_message_valid: HasAssociatedMessage::NO_ASSOCIATED_MESSAGE,
            associated_message_sequence: 0,
        }))
        .await?;
        self.data_halt(DataHaltReason::CONNECT_ERROR).await
    }

    /// The session is ending: connections and listeners go.
    pub(super) fn release_data(&mut self) {
        self.data.release();
    }
}
