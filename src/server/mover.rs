//! The MOVER interface of a session (spec §3.6): request handlers over the plain-data state
//! machine, the task that owns a data connection's setup, and the engine's events as NOTIFYs.

use super::session::Session;
use crate::error::Refusal;
use crate::mover::engine::{self, Conn, Job};
use crate::mover::local::{self, DataEnd};
use crate::mover::{net, Command, Event, Mover, SharedDrive, TapeAccess};
use crate::wire::header::Header;
use crate::wire::messages::*;
use crate::wire::types::*;
use crate::wire::{NdmpError, Reply, Request};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The mover of one session: its state machine and, while a data connection is being set up
/// or used, the handles of the task and engine thread behind it.
pub struct MoverSession {
    pub machine: Mover,
    events_tx: mpsc::UnboundedSender<Event>,
    pub events: mpsc::UnboundedReceiver<Event>,
    run: Option<Running>,
    /// LISTEN(LOCAL): the end DATA_CONNECT(LOCAL) of this session takes.
    local_offer: Option<LocalOffer>,
}

struct Running {
    commands: crossbeam_channel::Sender<Command>,
    abort: Arc<AtomicBool>,
    cancel: CancellationToken,
}

/// A LOCAL data connection waiting for this session's DATA server.
struct LocalOffer {
    end: DataEnd,
    connected: oneshot::Sender<()>,
}

impl MoverSession {
    /// DATA_CONNECT(LOCAL): takes the data end of a LISTEN(LOCAL) and wakes the mover.
    pub fn take_local(&mut self) -> Option<DataEnd> {
        let offer = self.local_offer.take()?;
        let _ = offer.connected.send(());
        Some(offer.end)
    }
}

impl Default for MoverSession {
    fn default() -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        MoverSession {
            machine: Mover::default(),
            events_tx,
            events,
            run: None,
            local_offer: None,
        }
    }
}

/// How the data connection comes to exist.
enum Setup {
    Listen(tokio::net::TcpListener),
    Connected(tokio::net::TcpStream),
    LocalListen(local::MoverEnd, oneshot::Receiver<()>),
    Local(local::MoverEnd),
}

fn state_name(s: MoverState) -> &'static str {
    match s {
        MoverState::IDLE => "IDLE",
        MoverState::LISTEN => "LISTEN",
        MoverState::ACTIVE => "ACTIVE",
        MoverState::PAUSED => "PAUSED",
        _ => "HALTED",
    }
}

fn mode_name(m: MoverMode) -> &'static str {
    match m {
        MoverMode::READ => "READ",
        MoverMode::WRITE => "WRITE",
        _ => "NOACTION",
    }
}

fn pause_name(r: MoverPauseReason) -> &'static str {
    match r {
        MoverPauseReason::EOM => "EOM",
        MoverPauseReason::EOF => "EOF",
        MoverPauseReason::SEEK => "SEEK",
        MoverPauseReason::MEDIA_ERROR => "MEDIA_ERROR",
        MoverPauseReason::EOW => "EOW",
        _ => "NA",
    }
}

fn halt_name(r: MoverHaltReason) -> &'static str {
    match r {
        MoverHaltReason::CONNECT_CLOSED => "CONNECT_CLOSED",
        MoverHaltReason::ABORTED => "ABORTED",
        MoverHaltReason::INTERNAL_ERROR => "INTERNAL_ERROR",
        MoverHaltReason::CONNECT_ERROR => "CONNECT_ERROR",
        _ => "NA",
    }
}

/// "TCP 10.0.0.5:40312", "LOCAL", or nothing before a connection exists.
fn connection_text(a: &Addr, connected: bool) -> Option<String> {
    if !connected {
        return None;
    }
    match a {
        Addr::Local => Some("LOCAL".into()),
        Addr::Tcp { tcp_addr } => tcp_addr
            .first()
            .map(|t| format!("TCP {}:{}", t.ip(), t.port)),
        Addr::Ipc(_) => Some("IPC".into()),
    }
}

impl Session {
    fn publish_mover(&self) {
        let m = &self.mover.machine;
        let connected = matches!(
            m.state,
            MoverState::ACTIVE | MoverState::PAUSED | MoverState::HALTED
        ) && m.mode != MoverMode::NOACTION;
        let info = crate::registry::MoverInfo {
            state: state_name(m.state),
            mode: mode_name(m.mode),
            pause_reason: pause_name(m.pause_reason),
            halt_reason: halt_name(m.halt_reason),
            bytes_moved: m.progress.bytes_moved.load(Ordering::Relaxed),
            record_size: m.record_size,
            connection: connection_text(&m.connection, connected),
        };
        self.entry.update(|i| i.mover = info);
    }

    /// True while the mover owns the tape: TAPE requests other than GET_STATE must wait.
    pub(super) fn mover_has_tape(&self) -> bool {
        matches!(
            self.mover.machine.state,
            MoverState::LISTEN | MoverState::ACTIVE
        )
    }

    fn tape_access(&self) -> TapeAccess {
        match &self.tape {
            None => TapeAccess::NotOpen,
            Some(t) if t.mode == TapeOpenMode::READ => TapeAccess::ReadOnly,
            Some(_) => TapeAccess::ReadWrite,
        }
    }

    async fn mover_refuse(&mut self, h: &Header, r: Refusal) -> std::io::Result<()> {
        self.refuse(h, r.error, &r.why).await
    }

    pub(super) async fn mover_request(&mut self, h: &Header, req: Request) -> std::io::Result<()> {
        let max = self.shared.config.mover.max_record_size;
        let result = match req {
            Request::MoverGetState(_) => {
                let body = Reply::MoverGetState(self.mover.machine.report());
                return self.reply(h, body).await;
            }
            Request::MoverSetRecordSize(r) => self.mover.machine.set_record_size(r.len, max),
            Request::MoverSetWindow(r) => self.mover.machine.set_window(r.offset, r.length),
            Request::MoverListen(r) => return self.mover_listen(h, r).await,
            Request::MoverConnect(r) => return self.mover_connect(h, r).await,
            Request::MoverContinue(_) => self.mover_continue(),
            Request::MoverRead(r) => self.mover_read(r.offset, r.length),
            Request::MoverAbort(_) => match self.mover.machine.check_abort() {
                Ok(()) => {
                    self.stop_engine(Command::Abort).await?;
                    Ok(())
                }
                Err(r) => Err(r),
            },
            Request::MoverClose(_) => match self.mover.machine.check_close() {
                Ok(()) => {
                    self.stop_engine(Command::Close).await?;
                    Ok(())
                }
                Err(r) => Err(r),
            },
            Request::MoverStop(_) => self.mover.machine.check_stop().map(|()| {
                self.mover.machine.stopped();
                self.mover.local_offer = None;
            }),
            other => {
                let why = format!("{:?} is not a mover request", other.code());
                return self.refuse(h, NdmpError::NOT_SUPPORTED_ERR, &why).await;
            }
        };
        self.publish_mover();
        match result {
            Ok(()) => self.ok(h).await,
            Err(r) => self.mover_refuse(h, r).await,
        }
    }

    /// The open tape for the engine; a drive lost to a failed operation is an I/O error.
    fn mover_drive(&self) -> Result<SharedDrive, Refusal> {
        self.shared_drive().ok_or_else(|| Refusal {
            error: NdmpError::IO_ERR,
            why: "the open tape drive was lost".into(),
        })
    }

    fn mover_continue(&mut self) -> Result<(), Refusal> {
        self.mover.machine.check_continue(self.tape_access())?;
        let drive = self.mover_drive()?;
        let run = self.mover.run.as_ref().ok_or_else(|| Refusal {
            error: NdmpError::ILLEGAL_STATE_ERR,
            why: "the mover has no data connection".into(),
        })?;
        let window = self.mover.machine.window;
        run.commands
            .send(Command::Continue { drive, window })
            .map_err(|_| Refusal {
                error: NdmpError::ILLEGAL_STATE_ERR,
                why: "the mover has just halted".into(),
            })?;
        self.mover.machine.resumed();
        Ok(())
    }

    fn mover_read(&mut self, offset: u64, length: u64) -> Result<(), Refusal> {
        self.mover.machine.check_read(offset, length)?;
        let run = self.mover.run.as_ref().ok_or_else(|| Refusal {
            error: NdmpError::ILLEGAL_STATE_ERR,
            why: "the mover has no data connection".into(),
        })?;
        // pending before the engine has it: a fast engine's "done" must not be overwritten
        self.mover.machine.reading(offset, length);
        run.commands
            .send(Command::Read { offset, length })
            .map_err(|_| {
                self.mover.machine.reading(offset, 0);
                Refusal {
                    error: NdmpError::ILLEGAL_STATE_ERR,
                    why: "the mover has just halted".into(),
                }
            })?;
        Ok(())
    }

    async fn mover_listen(&mut self, h: &Header, r: MoverListenRequest) -> std::io::Result<()> {
        if let Err(e) = self
            .mover
            .machine
            .check_start(r.mode, r.addr_type, self.tape_access())
        {
            return self.mover_refuse(h, e).await;
        }
        let drive = match self.mover_drive() {
            Ok(d) => d,
            Err(e) => return self.mover_refuse(h, e).await,
        };
        let (setup, connect_addr) = if r.addr_type == AddrType::TCP {
            let ports = self.shared.config.mover.data_ports.map(|[a, b]| (a, b));
            match net::listen(self.local, ports).await {
                Ok(l) => (
                    Setup::Listen(l.listener),
                    Addr::Tcp {
                        tcp_addr: l.offered,
                    },
                ),
                Err(e) => {
                    let why = format!("cannot listen for a data connection: {e}");
                    return self.refuse(h, NdmpError::IO_ERR, &why).await;
                }
            }
        } else {
            let (mover_end, data_end) = local::pipe(self.mover.machine.record_size as usize);
            let (connected, wait) = oneshot::channel();
            self.mover.local_offer = Some(LocalOffer {
                end: data_end,
                connected,
            });
            (Setup::LocalListen(mover_end, wait), Addr::Local)
        };
        self.start_engine(r.mode, drive, setup);
        self.mover.machine.listening(r.mode);
        info!(mode = mode_name(r.mode), addr = ?connect_addr, "mover listening");
        self.publish_mover();
        let body = Reply::MoverListen(ListenReply {
            error: NdmpError::NO_ERR,
            connect_addr,
        });
        self.reply(h, body).await
    }

    async fn mover_connect(&mut self, h: &Header, r: MoverConnectRequest) -> std::io::Result<()> {
        if let Err(e) =
            self.mover
                .machine
                .check_start(r.mode, r.addr.addr_type(), self.tape_access())
        {
            return self.mover_refuse(h, e).await;
        }
        let drive = match self.mover_drive() {
            Ok(d) => d,
            Err(e) => return self.mover_refuse(h, e).await,
        };
        let (setup, peer) = match &r.addr {
            Addr::Tcp { tcp_addr } => {
                let per_try = Duration::from_secs(self.shared.config.mover.connect_timeout_secs);
                let stream = match net::connect(tcp_addr, per_try).await {
                    Ok(s) => s,
                    Err(e) => {
                        let why = format!("mover connect failed: {e}");
                        return self.refuse(h, NdmpError::CONNECT_ERR, &why).await;
                    }
                };
                let peer = stream
                    .peer_addr()
                    .map(net::peer_addr)
                    .unwrap_or(Addr::Local);
                (Setup::Connected(stream), peer)
            }
            _ => {
                if !self.data.listening_local() {
                    let why = "no DATA_LISTEN(LOCAL) is waiting on this connection";
                    return self.refuse(h, NdmpError::ILLEGAL_STATE_ERR, why).await;
                }
                let (mover_end, data_end) = local::pipe(self.mover.machine.record_size as usize);
                if !self.data.accept_local(data_end) {
                    let why = "the DATA server stopped listening";
                    return self.refuse(h, NdmpError::ILLEGAL_STATE_ERR, why).await;
                }
                (Setup::Local(mover_end), Addr::Local)
            }
        };
        self.start_engine(r.mode, drive, setup);
        self.mover.machine.activated(r.mode, peer);
        info!(mode = mode_name(r.mode), "mover connected");
        self.publish_mover();
        self.publish_data();
        self.ok(h).await
    }

    /// Spawns the task that finishes the connection setup and runs the engine thread.
    fn start_engine(&mut self, mode: MoverMode, drive: SharedDrive, setup: Setup) {
        let (commands, commands_rx) = crossbeam_channel::unbounded();
        let abort = Arc::new(AtomicBool::new(false));
        let cancel = CancellationToken::new();
        let job = Job {
            mode,
            record_size: self.mover.machine.record_size as usize,
            drive,
            window: self.mover.machine.window,
            progress: self.mover.machine.progress.clone(),
            commands: commands_rx,
            events: self.mover.events_tx.clone(),
            abort: abort.clone(),
            entry: Some(self.entry.clone()),
        };
        tokio::spawn(control(setup, job, cancel.clone()));
        self.mover.run = Some(Running {
            commands,
            abort,
            cancel,
        });
    }

    /// MOVER_ABORT / MOVER_CLOSE / session end: tells the engine, waits for its halt and
    /// reports it (NOTIFY_MOVER_HALTED) before the request is answered.
    async fn stop_engine(&mut self, how: Command) -> std::io::Result<()> {
        let Some(run) = self.mover.run.as_ref() else {
            if self.mover.machine.state != MoverState::HALTED {
                self.mover.machine.halted(MoverHaltReason::ABORTED);
                self.post_halted(MoverHaltReason::ABORTED).await?;
            }
            return Ok(());
        };
        if matches!(how, Command::Abort) {
            run.abort.store(true, Ordering::Relaxed);
            run.cancel.cancel();
        }
        let _ = run.commands.send(how);
        while self.mover.run.is_some() {
            match self.mover.events.recv().await {
                Some(ev) => self.on_mover_event(ev).await?,
                None => break,
            }
        }
        Ok(())
    }

    /// Ends a running mover when the session ends, so its tape can be closed.
    pub(super) async fn release_mover(&mut self) {
        if self.mover.run.is_some() {
            let _ = self.stop_engine(Command::Abort).await;
        }
    }

    async fn post_halted(&mut self, reason: MoverHaltReason) -> std::io::Result<()> {
        self.post(Request::NotifyMoverHalted(NotifyMoverHaltedPost { reason }))
            .await
    }

    /// Applies what the engine reports and tells the DMA.
    pub(super) async fn on_mover_event(&mut self, ev: Event) -> std::io::Result<()> {
        let result = match ev {
            Event::Active { peer } => {
                let mode = self.mover.machine.mode;
                if self.mover.machine.state == MoverState::LISTEN {
                    self.mover.machine.activated(mode, peer);
                    info!("mover data connection accepted");
                }
                Ok(())
            }
            Event::Paused {
                reason,
                seek_position,
                wrote,
            } => {
                if wrote {
                    self.tape_written();
                }
                self.mover.machine.paused(reason, seek_position);
                info!(reason = pause_name(reason), seek_position, "mover paused");
                self.post(Request::NotifyMoverPaused(NotifyMoverPausedPost {
                    reason,
                    seek_position,
                }))
                .await
            }
            Event::Halted { reason, why, wrote } => {
                if wrote {
                    self.tape_written();
                }
                self.mover.run = None;
                self.mover.local_offer = None;
                self.mover.machine.halted(reason);
                let moved = self
                    .mover
                    .machine
                    .progress
                    .bytes_moved
                    .load(Ordering::Relaxed);
                match &why {
                    Some(w) => warn!(reason = halt_name(reason), moved, "mover halted: {w}"),
                    None => info!(reason = halt_name(reason), moved, "mover halted"),
                }
                let logged = match why {
                    Some(text) => {
                        self.post(Request::LogMessage(LogMessagePost {
                            log_type: LogType::ERROR,
                            message_id: 0,
                            entry: format!("mover: {text}").as_str().into(),
                            associated_message_valid: HasAssociatedMessage::NO_ASSOCIATED_MESSAGE,
                            associated_message_sequence: 0,
                        }))
                        .await
                    }
                    None => Ok(()),
                };
                match logged {
                    Ok(()) => self.post_halted(reason).await,
                    Err(e) => Err(e),
                }
            }
        };
        self.publish_mover();
        result
    }
}

/// Owns one data connection from setup to halt: waits for the peer (LISTEN), runs the engine
/// on a blocking thread, and turns an abort into a closed socket so no read or write hangs.
async fn control(setup: Setup, job: Job, cancel: CancellationToken) {
    let events = job.events.clone();
    let halted = |reason, why: Option<String>| Event::Halted {
        reason,
        why,
        wrote: false,
    };
    let conn = match setup {
        Setup::Connected(s) => tcp_conn(s),
        Setup::Local(end) => Ok(Conn::Local(end)),
        Setup::Listen(l) => {
            tokio::select! {
                r = l.accept() => match r {
                    Ok((s, peer)) => {
                        let _ = s.set_nodelay(true);
                        let _ = events.send(Event::Active { peer: net::peer_addr(peer) });
                        tcp_conn(s)
                    }
                    Err(e) => Err(e),
                },
                _ = cancel.cancelled() => {
                    let _ = events.send(halted(MoverHaltReason::ABORTED, None));
                    return;
                }
            }
        }
        Setup::LocalListen(end, wait) => {
            tokio::select! {
                r = wait => match r {
                    Ok(()) => {
                        let _ = events.send(Event::Active { peer: Addr::Local });
                        Ok(Conn::Local(end))
                    }
                    Err(_) => {
                        // the offer was dropped (MOVER_STOP cannot happen here; session end)
                        let _ = events.send(halted(MoverHaltReason::ABORTED, None));
                        return;
                    }
                },
                _ = cancel.cancelled() => {
                    let _ = events.send(halted(MoverHaltReason::ABORTED, None));
                    return;
                }
            }
        }
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            let why = format!("data connection setup failed: {e}");
            let _ = events.send(halted(MoverHaltReason::CONNECT_ERROR, Some(why)));
            return;
        }
    };
    let interrupt = match &conn {
        Conn::Tcp(s) => s.try_clone().ok(),
        Conn::Local(_) => None,
    };
    let abort = job.abort.clone();
    let mut task = tokio::task::spawn_blocking(move || engine::run(job, conn));
    let ended = tokio::select! {
        r = &mut task => r,
        _ = cancel.cancelled() => {
            abort.store(true, Ordering::Relaxed);
            if let Some(s) = &interrupt {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            task.await
        }
    };
    let ev = ended.unwrap_or_else(|e| {
        halted(
            MoverHaltReason::INTERNAL_ERROR,
            Some(format!("the mover engine failed: {e}")),
        )
    });
    let _ = events.send(ev);
}

fn tcp_conn(s: tokio::net::TcpStream) -> std::io::Result<Conn> {
    let s = s.into_std()?;
    s.set_nonblocking(false)?;
    Ok(Conn::Tcp(s))
}
