//! The MOVER interface of a session (spec §3.6): request handlers around the plain-data state
//! machine, the task that owns a data connection's setup, and the engine's events as NOTIFYs.

use super::outbox::Outbox;
use super::shared::Ctx;
use super::tape::DriveLoan;
use crate::dataconn::local::MoverEnd;
use crate::dataconn::{net, Conn, LocalLink, MoverConn};
use crate::error::Refusal;
use crate::mover::engine::{self, Job};
use crate::mover::{Command, Effect, Event, Mover, MoverRequest, Progress, SharedDrive, Window};
use crate::wire::header::Header;
use crate::wire::messages::*;
use crate::wire::netapp::CLASS_CAE;
use crate::wire::types::*;
use crate::wire::{NdmpError, Reply, Request};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long a request that needs the data connection waits for an accept already under way.
const ACCEPT_GRACE: Duration = Duration::from_secs(5);

/// The MOVER server of one session: its state machine and, while a data connection is being
/// set up or used, the handles of the task and engine thread behind it.
pub struct MoverServer {
    ctx: Ctx,
    machine: Mover,
    /// Where a LOCAL connection to this session's DATA server is offered or found.
    link: LocalLink,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    run: Option<Running>,
    /// Why the mover is being stopped, for the words of an ABORTED halt.
    stopping: Option<&'static str>,
}

struct Running {
    commands: crossbeam_channel::Sender<Command>,
    /// The window the engine starts with: a v3 DMA may set it after MOVER_LISTEN, before
    /// the peer connects.
    window: Arc<std::sync::Mutex<Window>>,
    abort: Arc<AtomicBool>,
    cancel: CancellationToken,
}

impl Drop for Running {
    /// However the mover's handle goes (a halt, a session that ends on a write error), the
    /// engine and its setup task are told to stop, so no thread waits on a peer forever.
    fn drop(&mut self) {
        self.abort.store(true, Ordering::Relaxed);
        self.cancel.cancel();
    }
}

/// How the data connection comes to exist.
enum Setup {
    Listen(tokio::net::TcpListener),
    Connected(tokio::net::TcpStream),
    LocalListen(MoverEnd, oneshot::Receiver<()>),
    Local(MoverEnd),
}

fn name<T: Copy>(v: T, f: impl Fn(T) -> Option<&'static str>) -> &'static str {
    f(v).unwrap_or("NA")
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
        Addr::TcpIpv6 { tcp_ipv6_addr } => tcp_ipv6_addr
            .first()
            .map(|t| format!("TCP [{}]:{}", t.ip(), t.port)),
    }
}

fn no_connection() -> Refusal {
    Refusal::new(
        NdmpError::ILLEGAL_STATE_ERR,
        "the mover has no data connection",
    )
}

fn just_halted() -> Refusal {
    Refusal::new(NdmpError::ILLEGAL_STATE_ERR, "the mover has just halted")
}

impl MoverServer {
    /// An IDLE mover whose LOCAL connections go through `link`.
    pub fn new(ctx: Ctx, link: LocalLink) -> MoverServer {
        let (events_tx, events) = mpsc::unbounded_channel();
        MoverServer {
            ctx,
            machine: Mover::default(),
            link,
            events_tx,
            events,
            run: None,
            stopping: None,
        }
    }

    /// The live counters, for the registry.
    pub fn progress(&self) -> Arc<Progress> {
        self.machine.progress().clone()
    }

    /// True while the mover owns the tape: TAPE requests other than GET_STATE must wait.
    pub fn has_tape(&self) -> bool {
        self.machine.has_tape()
    }

    /// How a recover of this session's DATA server must round its reads: whole records
    /// when this mover is in use (one of another session or server is the DMA's business).
    pub fn read_alignment(&self) -> u64 {
        match self.machine.state() {
            MoverState::IDLE => 1,
            _ => u64::from(self.machine.record_size()).max(1),
        }
    }

    /// The next thing the engine or its setup task reports.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    fn publish(&self) {
        let m = &self.machine;
        let connected = matches!(
            m.state(),
            MoverState::ACTIVE | MoverState::PAUSED | MoverState::HALTED
        ) && m.mode() != MoverMode::NOACTION;
        let info = crate::registry::MoverInfo {
            state: name(m.state(), MoverState::name),
            mode: name(m.mode(), MoverMode::name),
            pause_reason: name(m.pause_reason(), MoverPauseReason::name),
            halt_reason: name(m.halt_reason(), MoverHaltReason::name),
            // the registry reads the live counter itself
            bytes_moved: 0,
            record_size: m.record_size(),
            connection: connection_text(m.connection(), connected),
        };
        self.ctx.entry.update(|i| i.mover = info);
    }

    /// Answers a MOVER request with the tape `loan` of this session. True when records
    /// went to tape meanwhile (the engine halted while we waited for it).
    pub async fn handle(
        &mut self,
        h: &Header,
        req: Request,
        out: &mut Outbox,
        loan: DriveLoan,
    ) -> std::io::Result<bool> {
        // A DMA learns of the data connection from the peer's side (its DATA_CONNECT
        // returned) and may send MOVER_READ before our listener's accept has been seen here:
        // give the pending accept a moment rather than refuse a request that is in order.
        let mut wrote = false;
        if matches!(req, Request::MoverRead(_)) && self.machine.state() == MoverState::LISTEN {
            wrote = self.await_connection(out).await?;
        }
        let asked = match req {
            Request::MoverGetState(_) => {
                out.reply(h, Reply::MoverGetState(self.machine.report()))
                    .await?;
                return Ok(false);
            }
            Request::MoverListen(r) => return self.listen(h, r, out, loan).await.map(|()| false),
            Request::MoverConnect(r) => return self.connect(h, r, out, loan).await.map(|()| false),
            Request::MoverSetRecordSize(r) => MoverRequest::SetRecordSize(r.len),
            Request::MoverSetWindow(r) => MoverRequest::SetWindow {
                offset: r.offset,
                length: r.length,
            },
            Request::MoverContinue(_) => MoverRequest::Continue,
            Request::MoverRead(r) => MoverRequest::Read {
                offset: r.offset,
                length: r.length,
            },
            Request::MoverAbort(_) => MoverRequest::Abort,
            Request::MoverClose(_) => MoverRequest::Close,
            Request::MoverStop(_) => MoverRequest::Stop,
            other => {
                let why = format!("{:?} is not a mover request", other.code());
                out.refuse(h, Refusal::new(NdmpError::NOT_SUPPORTED_ERR, why))
                    .await?;
                return Ok(false);
            }
        };
        let max = self.ctx.shared.config().mover.max_record_size;
        let outcome = match asked {
            MoverRequest::SetWindow { offset, length }
                if out.version() == crate::wire::v3::VERSION
                    && self.machine.state() == MoverState::LISTEN =>
            {
                let set = self.machine.set_window_listening(offset, length);
                if let (Ok(()), Some(run)) = (&set, &self.run) {
                    if let Ok(mut w) = run.window.lock() {
                        *w = self.machine.window();
                    }
                }
                set.map(|()| Effect::Reply)
            }
            asked => self.machine.request(asked, loan.access, max),
        };
        let result = match outcome {
            Err(r) => Err(r),
            Ok(Effect::Reply) => Ok(()),
            Ok(Effect::Reset) => {
                self.link.withdraw_mover_offer();
                Ok(())
            }
            Ok(Effect::Resume(window)) => match (&self.run, loan.drive) {
                (_, None) => Err(Refusal::new(
                    NdmpError::IO_ERR,
                    "the open tape drive was lost",
                )),
                (None, _) => Err(no_connection()),
                (Some(run), Some(drive)) => run
                    .commands
                    .send(Command::Continue { drive, window })
                    .map_err(|_| just_halted()),
            },
            Ok(Effect::Read { offset, length }) => match &self.run {
                None => Err(no_connection()),
                Some(run) => run
                    .commands
                    .send(Command::Read { offset, length })
                    .map_err(|_| just_halted()),
            },
            Ok(Effect::Halt { abort }) => {
                let how = if abort {
                    Command::Abort
                } else {
                    Command::Close
                };
                let why = if abort {
                    "the DMA aborted it (MOVER_ABORT)"
                } else {
                    "the DMA closed it (MOVER_CLOSE)"
                };
                let (w, posted) = self.stop_engine(how, why, out).await;
                wrote |= w;
                posted?;
                Ok(())
            }
        };
        self.publish();
        match result {
            Ok(()) => out.ok(h).await?,
            Err(r) => out.refuse(h, r).await?,
        }
        Ok(wrote)
    }

    /// Waits (up to a few seconds) for the listening task to report the data connection,
    /// applying what it reports; true when records went to tape meanwhile.
    async fn await_connection(&mut self, out: &mut Outbox) -> std::io::Result<bool> {
        let deadline = tokio::time::Instant::now() + ACCEPT_GRACE;
        let mut wrote = false;
        while self.machine.state() == MoverState::LISTEN {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) => wrote |= self.on_event(ev, out).await?,
                Ok(None) | Err(_) => break,
            }
        }
        Ok(wrote)
    }

    async fn listen(
        &mut self,
        h: &Header,
        r: MoverListenRequest,
        out: &mut Outbox,
        loan: DriveLoan,
    ) -> std::io::Result<()> {
        if let Err(e) = self.machine.check_start(r.mode, r.addr_type, loan.access) {
            return out.refuse(h, e).await;
        }
        let Some(drive) = loan.drive else {
            return out.refuse(h, lost_drive()).await;
        };
        let (setup, connect_addr) = if r.addr_type == AddrType::TCP {
            let ports = self
                .ctx
                .shared
                .config()
                .mover
                .data_ports
                .map(|[a, b]| (a, b));
            match net::listen(self.ctx.local, ports).await {
                Ok(l) => (
                    Setup::Listen(l.listener),
                    Addr::Tcp {
                        tcp_addr: l.offered,
                    },
                ),
                Err(e) => {
                    let why = format!("cannot listen for a data connection: {e}");
                    return out.refuse(h, Refusal::new(NdmpError::IO_ERR, why)).await;
                }
            }
        } else if r.addr_type == AddrType::TCP_IPV6 {
            self.ctx.entry.add_extension(CLASS_CAE, 1, false);
            let ports = self
                .ctx
                .shared
                .config()
                .mover
                .data_ports
                .map(|[a, b]| (a, b));
            match net::listen_ipv6(self.ctx.local, ports).await {
                Ok(l) => (
                    Setup::Listen(l.listener),
                    Addr::TcpIpv6 {
                        tcp_ipv6_addr: l.offered,
                    },
                ),
                Err(e) => {
                    let why = format!("cannot listen for an IPv6 data connection: {e}");
                    return out.refuse(h, Refusal::new(NdmpError::IO_ERR, why)).await;
                }
            }
        } else {
            let (mover_end, wait) = self.link.mover_listen(self.machine.record_size() as usize);
            (Setup::LocalListen(mover_end, wait), Addr::Local)
        };
        self.start_engine(r.mode, drive, setup);
        self.machine.listening(r.mode);
        info!(mode = ?r.mode, addr = ?connect_addr, "mover listening");
        self.publish();
        let body = Reply::MoverListen(ListenReply {
            error: NdmpError::NO_ERR,
            connect_addr,
        });
        out.reply(h, body).await
    }

    async fn connect(
        &mut self,
        h: &Header,
        r: MoverConnectRequest,
        out: &mut Outbox,
        loan: DriveLoan,
    ) -> std::io::Result<()> {
        if let Err(e) = self
            .machine
            .check_start(r.mode, r.addr.addr_type(), loan.access)
        {
            return out.refuse(h, e).await;
        }
        let Some(drive) = loan.drive else {
            return out.refuse(h, lost_drive()).await;
        };
        if r.addr.addr_type() == AddrType::TCP_IPV6 {
            self.ctx.entry.add_extension(CLASS_CAE, 1, false);
        }
        let (setup, peer) = match net::tcp_targets(&r.addr) {
            Some(targets) => {
                let per_try =
                    Duration::from_secs(self.ctx.shared.config().mover.connect_timeout_secs);
                let stream = match net::connect_any(&targets, per_try).await {
                    Ok(s) => s,
                    Err(e) => {
                        let why = format!("mover connect failed: {e}");
                        return out
                            .refuse(h, Refusal::new(NdmpError::CONNECT_ERR, why))
                            .await;
                    }
                };
                let peer = stream
                    .peer_addr()
                    .map(net::peer_addr)
                    .unwrap_or(Addr::Local);
                (Setup::Connected(stream), peer)
            }
            None => match self.link.mover_connect(self.machine.record_size() as usize) {
                Some(end) => (Setup::Local(end), Addr::Local),
                None => {
                    let why = "no DATA_LISTEN(LOCAL) is waiting on this connection";
                    return out
                        .refuse(h, Refusal::new(NdmpError::ILLEGAL_STATE_ERR, why))
                        .await;
                }
            },
        };
        self.start_engine(r.mode, drive, setup);
        self.machine.activated(r.mode, peer);
        info!(mode = ?r.mode, "mover connected");
        self.publish();
        out.ok(h).await
    }

    /// Spawns the task that finishes the connection setup and runs the engine thread.
    fn start_engine(&mut self, mode: MoverMode, drive: SharedDrive, setup: Setup) {
        let (commands, commands_rx) = crossbeam_channel::unbounded();
        let abort = Arc::new(AtomicBool::new(false));
        let cancel = CancellationToken::new();
        let window = Arc::new(std::sync::Mutex::new(self.machine.window()));
        let job = Job {
            mode,
            record_size: self.machine.record_size() as usize,
            drive,
            window: self.machine.window(),
            progress: self.machine.progress().clone(),
            commands: commands_rx,
            events: self.events_tx.clone(),
            abort: abort.clone(),
        };
        tokio::spawn(control(setup, job, window.clone(), cancel.clone()));
        self.run = Some(Running {
            commands,
            window,
            abort,
            cancel,
        });
    }

    /// MOVER_ABORT / MOVER_CLOSE / session end: tells the engine, waits for its halt and
    /// reports it (NOTIFY_MOVER_HALTED) before the request is answered. True when records
    /// went to tape meanwhile, also when telling the DMA failed (the tape still owes its
    /// filemark), with the first write error.
    async fn stop_engine(
        &mut self,
        how: Command,
        why: &'static str,
        out: &mut Outbox,
    ) -> (bool, std::io::Result<()>) {
        let Some(run) = self.run.as_ref() else {
            let mut posted = Ok(());
            if self.machine.state() != MoverState::HALTED {
                self.machine.halted(MoverHaltReason::ABORTED);
                let text = format!("MOVER halted ABORTED: {why}");
                info!("{text}");
                posted = out.log(LogType::WARNING, &text, None).await;
                if posted.is_ok() {
                    posted = post_halted(out, MoverHaltReason::ABORTED).await;
                }
            }
            return (false, posted);
        };
        self.stopping = Some(why);
        if matches!(how, Command::Abort) {
            run.abort.store(true, Ordering::Relaxed);
            run.cancel.cancel();
        }
        let _ = run.commands.send(how);
        let mut wrote = false;
        let mut failed = Ok(());
        while self.run.is_some() {
            match self.events.recv().await {
                Some(ev) => {
                    let (w, posted) = self.apply(ev, out).await;
                    wrote |= w;
                    if failed.is_ok() {
                        failed = posted;
                    }
                }
                None => break,
            }
        }
        (wrote, failed)
    }

    /// Ends a running mover when the session ends, so its tape can be closed. True when
    /// records went to tape meanwhile.
    pub async fn release(&mut self, out: &mut Outbox) -> bool {
        if self.run.is_some() {
            return self
                .stop_engine(Command::Abort, "the session ended", out)
                .await
                .0;
        }
        false
    }

    /// Applies what the engine reports and tells the DMA. True when records went to tape
    /// since the last event: the session's tape owes a filemark.
    pub async fn on_event(&mut self, ev: Event, out: &mut Outbox) -> std::io::Result<bool> {
        let (wrote, posted) = self.apply(ev, out).await;
        posted.map(|()| wrote)
    }

    /// [`MoverServer::on_event`], with what went to tape kept apart from whether telling
    /// the DMA worked.
    async fn apply(&mut self, ev: Event, out: &mut Outbox) -> (bool, std::io::Result<()>) {
        let (result, wrote) = match ev {
            Event::Active { peer } => {
                let mode = self.machine.mode();
                if self.machine.state() == MoverState::LISTEN {
                    self.machine.activated(mode, peer);
                    self.publish();
                    info!("mover data connection accepted");
                }
                (Ok(()), false)
            }
            Event::Paused {
                reason,
                seek_position,
                wrote,
            } => {
                self.machine.paused(reason, seek_position);
                // each arm publishes its new state before the DMA is told of it, so the REST
                // view never lags a notice
                self.publish();
                info!(reason = ?reason, seek_position, "mover paused");
                let posted = out
                    .post(Request::NotifyMoverPaused(NotifyMoverPausedPost {
                        reason,
                        seek_position,
                    }))
                    .await;
                (posted, wrote)
            }
            Event::Halted { reason, why, wrote } => {
                self.run = None;
                let stopping = self.stopping.take();
                self.link.withdraw_mover_offer();
                self.machine.halted(reason);
                self.publish();
                let moved = self.machine.progress().bytes_moved.load(Ordering::Relaxed);
                match &why {
                    Some(w) => warn!(reason = ?reason, moved, "mover halted: {w}"),
                    None => info!(reason = ?reason, moved, "mover halted"),
                }
                // CONNECT_CLOSED without words is the mover's normal end; every other halt
                // says why
                let words = match (why, reason) {
                    (Some(w), _) => Some((LogType::ERROR, w)),
                    (None, MoverHaltReason::ABORTED) => Some((
                        LogType::WARNING,
                        stopping
                            .unwrap_or("the data connection was abandoned")
                            .to_string(),
                    )),
                    (None, MoverHaltReason::CONNECT_CLOSED) => None,
                    (None, other) => Some((LogType::ERROR, format!("{other:?}"))),
                };
                let mut posted = Ok(());
                if let Some((log_type, text)) = words {
                    let text = format!("MOVER halted {reason:?}: {text}");
                    posted = out.log(log_type, &text, None).await;
                }
                if posted.is_ok() {
                    posted = post_halted(out, reason).await;
                }
                (posted, wrote)
            }
        };
        (wrote, result)
    }
}

fn lost_drive() -> Refusal {
    Refusal::new(NdmpError::IO_ERR, "the open tape drive was lost")
}

async fn post_halted(out: &mut Outbox, reason: MoverHaltReason) -> std::io::Result<()> {
    out.post(Request::NotifyMoverHalted(NotifyMoverHaltedPost { reason }))
        .await
}

/// Owns one data connection from setup to halt: waits for the peer (LISTEN), runs the engine
/// on a blocking thread, and turns an abort into a closed socket so no read or write hangs.
async fn control(
    setup: Setup,
    mut job: Job,
    window: Arc<std::sync::Mutex<Window>>,
    cancel: CancellationToken,
) {
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
    if let Ok(w) = window.lock() {
        job.window = *w;
    }
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

fn tcp_conn(s: tokio::net::TcpStream) -> std::io::Result<MoverConn> {
    let s = s.into_std()?;
    s.set_nonblocking(false)?;
    Ok(Conn::Tcp(s))
}
