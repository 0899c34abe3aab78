//! The DATA interface of a session (spec §3.5): data connections (LISTEN, CONNECT, and the
//! LOCAL pairing with this session's mover), backup and recover threads, ABORT, STOP, halts.

use super::outbox::Outbox;
use super::shared::Ctx;
use crate::data::backup::{self, Out};
use crate::data::env::{self, BackupEnv};
use crate::data::paths::{recover_plan, RecoverPlan};
use crate::data::recover;
use crate::data::{dumpdates, Butype, DataMachine};
use crate::dataconn::{net, Conn, DataConn, LocalLink};
use crate::error::Refusal;
use crate::format::dump::reader::RecoverOptions;
use crate::format::dump::DumpOptions;
use crate::format::tar::TarOptions;
use crate::snapshot;
use crate::wire::header::Header;
use crate::wire::messages::*;
use crate::wire::netapp::{CabDataConnPrepareRequest, CLASS_CAB, CLASS_CAE};
use crate::wire::types::*;
use crate::wire::{NdmpError, NdmpString, Reply, Request};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// What the listening task reports.
pub enum DataEvent {
    /// A peer connected to DATA_LISTEN's socket.
    Connected(tokio::net::TcpStream, std::net::SocketAddr),
    /// Accepting failed.
    Failed(String),
}

/// Something DATA's threads and tasks said, for the session loop to hand back.
pub enum DataInput {
    /// From the backup or recover thread.
    Out(Out),
    /// From the listening task.
    Event(DataEvent),
}

/// The DATA server of one session.
pub struct DataServer {
    ctx: Ctx,
    machine: DataMachine,
    /// Where this session's mover offers or finds a LOCAL connection.
    link: LocalLink,
    conn: Option<DataConn>,
    listen_cancel: Option<CancellationToken>,
    events_tx: mpsc::UnboundedSender<DataEvent>,
    events: mpsc::UnboundedReceiver<DataEvent>,
    /// The backup or recover under way (or just finished).
    run: Option<Running>,
    /// What DATA_GET_ENV returns once an operation has started.
    env: Option<Vec<Pval>>,
    /// The REST view's job for the operation under way: its UUID, and why it failed.
    job: Option<(String, Option<String>)>,
    /// NDMP_CAB_DATA_CONN_PREPARE (NetApp CAB) waiting for the next DATA_LISTEN/CONNECT.
    prepared: Option<CabDataConnPrepareRequest>,
}

/// A backup or recover thread and what the session needs to finish it.
struct Running {
    out: mpsc::Receiver<Out>,
    abort: Arc<AtomicBool>,
    /// A second handle on a TCP connection, to unblock a writer stuck on a paused mover.
    interrupt: Option<std::net::TcpStream>,
    /// For a backup: its environment and date, for dumpdates and DUMP_DATE at the end.
    backup: Option<(BackupEnv, i64)>,
}

impl Drop for Running {
    /// However the handle goes, the thread is told to stop and a blocked socket unblocked.
    fn drop(&mut self) {
        self.abort.store(true, Ordering::Relaxed);
        // what the session will never take leaves the file-history queue's count now
        self.out.close();
        while let Ok(o) = self.out.try_recv() {
            crate::metrics::fh_unqueue(o.fh_entries());
        }
        if let Some(s) = &self.interrupt {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// What DATA_START_BACKUP or DATA_START_RECOVER starts.
struct Start {
    op: DataOperation,
    butype: Butype,
    /// Where the REST view says the operation reads or writes.
    path: Option<String>,
    description: String,
    env: Vec<Pval>,
}

fn name<T: Copy>(v: T, f: impl Fn(T) -> Option<&'static str>) -> &'static str {
    f(v).unwrap_or("NA")
}

impl DataServer {
    /// An IDLE DATA server whose LOCAL connections go through `link`.
    pub fn new(ctx: Ctx, link: LocalLink) -> DataServer {
        let (events_tx, events) = mpsc::unbounded_channel();
        DataServer {
            ctx,
            machine: DataMachine::default(),
            link,
            conn: None,
            listen_cancel: None,
            events_tx,
            events,
            run: None,
            env: None,
            job: None,
            prepared: None,
        }
    }

    /// The live bytes-processed counter, for the registry.
    pub fn bytes(&self) -> Arc<AtomicU64> {
        self.machine.bytes().clone()
    }

    /// True unless IDLE or HALTED: a session that ends must halt it first.
    pub fn is_busy(&self) -> bool {
        !matches!(self.machine.state(), DataState::IDLE | DataState::HALTED)
    }

    /// The next thing the backup or recover thread or the listening task says; pends while
    /// there is nothing.
    pub async fn next(&mut self) -> DataInput {
        let (run, events) = (&mut self.run, &mut self.events);
        let thread = async {
            match run.as_mut() {
                Some(r) => r.out.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(o) = thread => DataInput::Out(o),
            Some(ev) = events.recv() => DataInput::Event(ev),
        }
    }

    /// Acts on what [`DataServer::next`] returned.
    pub async fn on_input(&mut self, input: DataInput, out: &mut Outbox) -> std::io::Result<()> {
        match input {
            DataInput::Out(o) => self.on_out(o, out).await,
            DataInput::Event(ev) => self.on_event(ev, out).await,
        }
    }

    fn publish(&self) {
        let m = &self.machine;
        let connection = match (m.connection(), m.state()) {
            (_, DataState::IDLE | DataState::LISTEN) => None,
            (Addr::Tcp { tcp_addr }, _) => tcp_addr
                .first()
                .map(|t| format!("TCP {}:{}", t.ip(), t.port)),
            (Addr::TcpIpv6 { tcp_ipv6_addr }, _) => tcp_ipv6_addr
                .first()
                .map(|t| format!("TCP [{}]:{}", t.ip(), t.port)),
            (_, _) => Some("LOCAL".to_string()),
        };
        let (state, operation, halt_reason) = (
            name(m.state(), DataState::name),
            name(m.operation(), DataOperation::name),
            name(m.halt_reason(), DataHaltReason::name),
        );
        self.ctx.entry.update(|i| {
            i.data.state = state;
            i.data.operation = operation;
            i.data.halt_reason = halt_reason;
            i.data.connection = connection;
        });
    }

    /// Drops the connection and any listener, and stops a running thread.
    fn release(&mut self) {
        if let Some(c) = self.listen_cancel.take() {
            c.cancel();
        }
        if let Some(r) = &self.run {
            r.abort.store(true, Ordering::Relaxed);
            if let Some(s) = &r.interrupt {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        self.conn = None;
        self.link.withdraw_data_listen();
    }

    /// The session is ending (`why`): connections and listeners go, and an operation that
    /// never halted ends its job as a failure that says so.
    pub fn end(&mut self, why: &str) {
        self.release();
        if let Some((uuid, failure)) = self.job.take() {
            let what = match self.machine.operation() {
                DataOperation::BACKUP => "backup",
                DataOperation::RECOVER_FILEHIST => "file history",
                _ => "restore",
            };
            let message = failure.unwrap_or_else(|| format!("the {what} did not finish: {why}"));
            info!("{message}");
            self.ctx
                .shared
                .registry
                .job_end(&uuid, DataHaltReason::ABORTED.0, message);
        }
    }

    /// A MOVER_CONNECT(LOCAL) of this session answered DATA_LISTEN(LOCAL): DATA takes its
    /// end of the pipe and is connected.
    pub fn adopt_local(&mut self) {
        if self.machine.state() != DataState::LISTEN {
            return;
        }
        if let Some(end) = self.link.take_for_data() {
            self.conn = Some(Conn::Local(end));
            self.machine.connected(Addr::Local);
            self.publish();
        }
    }

    /// Answers a DATA request. `align` is how this session's mover wants reads rounded
    /// ([`super::mover::MoverServer::read_alignment`]).
    pub async fn handle(
        &mut self,
        h: &Header,
        req: Request,
        out: &mut Outbox,
        align: u64,
    ) -> std::io::Result<()> {
        // the DMA may start the operation as soon as the peer's CONNECT returned, before our
        // listener's accept has been seen here: give it a moment rather than refuse
        if matches!(
            req,
            Request::DataStartBackup(_)
                | Request::DataStartRecover(_)
                | Request::DataStartRecoverFilehist(_)
        ) && self.machine.state() == DataState::LISTEN
            && self.listen_cancel.is_some()
        {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while self.machine.state() == DataState::LISTEN {
                match tokio::time::timeout_at(deadline, self.events.recv()).await {
                    Ok(Some(ev)) => self.on_event(ev, out).await?,
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let result: Result<(), Refusal> = match req {
            Request::DataGetState(_) => {
                return out
                    .reply(h, Reply::DataGetState(self.machine.report()))
                    .await
            }
            Request::DataListen(r) => return self.listen(h, r.addr_type, out).await,
            Request::DataConnect(r) => return self.connect(h, r.addr, out).await,
            Request::CabDataConnPrepare(r) => self.prepare(r),
            Request::DataAbort(_) => match self.machine.check_abort() {
                Ok(()) => {
                    let why = "the operation was aborted by the DMA (DATA_ABORT)";
                    self.halt(DataHaltReason::ABORTED, Some(why), out).await?;
                    Ok(())
                }
                Err(r) => Err(r),
            },
            Request::DataStop(_) => self.machine.check_stop().map(|()| {
                self.ctx.entry.update(|i| {
                    i.data.data_path = None;
                    i.data.backup_engine = None;
                    i.data.snapshot = None;
                });
                self.release();
                self.run = None;
                self.env = None;
                self.machine.stopped();
            }),
            Request::DataStartBackup(r) => return self.start_backup(h, r, out).await,
            Request::DataStartRecover(r) => {
                return self.start_recover(h, r, false, out, align).await
            }
            Request::DataStartRecoverFilehist(r) => {
                return self.start_recover(h, r, true, out, align).await
            }
            Request::DataGetEnv(_) => match &self.env {
                Some(env) => {
                    let body = Reply::DataGetEnv(DataGetEnvReply {
                        error: NdmpError::NO_ERR,
                        env: env.clone(),
                    });
                    return out.reply(h, body).await;
                }
                None => Err(Refusal::new(
                    NdmpError::ILLEGAL_STATE_ERR,
                    "no backup has started: there is no environment to return",
                )),
            },
            other => {
                let why = format!("{:?} is not supported by this server yet", other.code());
                return out
                    .refuse(h, Refusal::new(NdmpError::NOT_SUPPORTED_ERR, why))
                    .await;
            }
        };
        self.publish();
        match result {
            Ok(()) => out.ok(h).await,
            Err(r) => out.refuse(h, r).await,
        }
    }

    async fn start_backup(
        &mut self,
        h: &Header,
        r: DataStartBackupRequest,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        let (exports, butype) = match self.start_checks("DATA_START_BACKUP", &r.butype_name) {
            Ok(e) => e,
            Err(e) => return out.refuse(h, e).await,
        };
        let env = match env::parse_backup(&r.env, &exports) {
            Ok(e) => e,
            Err(e) => return out.refuse(h, e).await,
        };
        let find_changes = match env::lookup(&env.received, "FIND_CHANGES").map(str::trim) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("auto") => false,
            Some(v) if v.eq_ignore_ascii_case("walk") => true,
            Some(v) => {
                let why = format!("FIND_CHANGES {v:?} is not auto or walk");
                return out
                    .refuse(h, Refusal::new(NdmpError::ILLEGAL_ARGS_ERR, why))
                    .await;
            }
        };
        // The date goes before the snapshot: a file changed between the two is then newer
        // than the date the next incremental starts from, so it is not lost.
        let dump_date = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let plan = match self.snapshot_plan(&env).await {
            Ok(p) => p,
            Err(e) => return out.refuse(h, e).await,
        };
        let shared = self.ctx.shared.clone();
        let fs = env.filesystem.to_string_lossy().into_owned();
        let base_date = match env.base_date {
            Some(d) => d,
            None if env.level == 0 => 0,
            None => dumpdates::base_date(&shared.config().data_dir, &fs, env.level),
        };
        let incremental = plan.held.is_some() && env.level > 0;
        let changes_note = (incremental && find_changes).then(|| {
            let text = "FIND_CHANGES=walk: finding the changed files by reading every file's \
                        attributes"
                .to_string();
            (false, text)
        });
        let find = (incremental && !find_changes).then(|| backup::Find {
            filesystem: fs.clone(),
            level: env.level,
            base_date,
        });
        let Some(conn) = self.conn.take() else {
            return out.refuse(h, conn_gone()).await;
        };
        let exclude: Vec<String> = env.exclude.iter().chain(&plan.exclude).cloned().collect();
        let snapshot = plan.held.as_ref().map(|h| h.path().display().to_string());
        let dump = DumpOptions {
            level: env.level,
            base_date,
            dump_date,
            label: "ndmpd".into(),
            host: shared.host.hostname.clone(),
            filesystem: fs.clone(),
            exclude: exclude.clone(),
            ..DumpOptions::default()
        };
        let format = match butype {
            Butype::Dump => backup::Format::Dump(dump),
            Butype::Tar => backup::Format::Tar(TarOptions {
                base_date: (env.level > 0).then_some(base_date),
                exclude,
                ..TarOptions::default()
            }),
        };
        let abort = Arc::new(AtomicBool::new(false));
        let (interrupt, conn) = conn.interruptible(&abort);
        let (tx, rx) = mpsc::channel(16);
        let keep = (env.update && plan.held.is_some() && plan.keep_base).then(|| backup::Keep {
            filesystem: fs.clone(),
            level: env.level,
            date: dump_date,
        });
        let job = backup::Job {
            env: env.clone(),
            root: plan.root,
            hold: plan.held,
            find,
            keep,
            format,
            conn,
            bytes: self.machine.bytes().clone(),
            abort: abort.clone(),
            out: tx,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("backup-{}", self.ctx.entry.id))
            .spawn(move || backup::run(job));
        if let Err(e) = spawned {
            let why = format!("cannot start the backup: {e}");
            return out
                .refuse(h, Refusal::new(NdmpError::NO_MEM_ERR, why))
                .await;
        }
        let mut shown = env.received.clone();
        shown.retain(|p| !p.name.to_string().eq_ignore_ascii_case("LEVEL"));
        shown.push(Pval::new("LEVEL", &env.level.to_string()));
        if env::lookup(&shown, "TYPE").is_none() {
            shown.push(Pval::new("TYPE", butype.name()));
        }
        let level = env.level;
        self.run = Some(Running {
            out: rx,
            abort,
            interrupt,
            backup: Some((env, dump_date)),
        });
        info!(filesystem = %fs, level, base_date, "backup started");
        self.started(Start {
            op: DataOperation::BACKUP,
            butype,
            path: Some(fs.clone()),
            description: format!("NDMP backup of {fs} ({}, level {level})", butype.name()),
            env: shown,
        });
        self.ctx
            .entry
            .update(|i| i.data.snapshot = snapshot.clone());
        if let (Some(s), Some((uuid, _))) = (snapshot, &self.job) {
            self.ctx.shared.registry.job_snapshot(uuid, s);
        }
        out.ok(h).await?;
        for (warning, text) in plan.note.into_iter().chain(changes_note) {
            let t = if warning {
                LogType::WARNING
            } else {
                LogType::NORMAL
            };
            info!("{text}");
            out.log(t, &text, None).await?;
        }
        Ok(())
    }

    /// What the backup reads (the snapshot taken now, or the live tree, after `SNAPSHOT`);
    /// a snapshot that is required and cannot be taken refuses the backup in words.
    async fn snapshot_plan(&self, env: &BackupEnv) -> Result<snapshot::Plan, Refusal> {
        let want = snapshot::want(env::lookup(&env.received, "SNAPSHOT"))
            .map_err(|why| Refusal::new(NdmpError::ILLEGAL_ARGS_ERR, why))?;
        let exports = self.ctx.shared.config().exports.clone();
        let (fs, session) = (env.filesystem.clone(), self.ctx.entry.id);
        tokio::task::spawn_blocking(move || snapshot::prepare(&exports, &fs, want, session))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|why| Refusal::new(NdmpError::IO_ERR, why))
    }

    /// The thread runs: ACTIVE, the environment DATA_GET_ENV returns, the REST view's job.
    fn started(&mut self, s: Start) {
        // checked CONNECTED when the request arrived, and nothing since could change that
        if let Err(r) = self.machine.start(s.op) {
            tracing::error!("DATA did not start: {}", r.why);
        }
        self.env = Some(s.env);
        let (path, engine) = (s.path, s.butype.name());
        self.ctx.entry.update(|i| {
            i.data.data_path = path;
            i.data.backup_engine = Some(engine);
            i.data.snapshot = None;
        });
        let uuid = self.ctx.shared.registry.job_start(
            self.ctx.entry.id,
            s.description,
            self.machine.bytes().clone(),
        );
        self.job = Some((uuid, None));
        self.publish();
    }

    /// What DATA_START_BACKUP and DATA_START_RECOVER both need: a data connection and a
    /// butype we offer. Returns the export roots, resolved, and the butype.
    fn start_checks(
        &self,
        what: &str,
        butype: &NdmpString,
    ) -> Result<(Vec<PathBuf>, Butype), Refusal> {
        self.machine.check_operation(what)?;
        let name = butype.to_string();
        let Some(butype) = Butype::parse(&name) else {
            return Err(Refusal::new(
                NdmpError::ILLEGAL_ARGS_ERR,
                format!("backup type {name:?} is not offered (this server offers dump and tar)"),
            ));
        };
        let configured = &self.ctx.shared.config().exports;
        if configured.is_empty() {
            let why = format!(
                "this server has no export root, so it can neither back up nor restore: {}",
                crate::config::HOW_TO_EXPORT
            );
            return Err(Refusal::new(NdmpError::ILLEGAL_ARGS_ERR, why));
        }
        let exports: Vec<PathBuf> = configured
            .iter()
            .filter_map(|e| e.path.canonicalize().ok())
            .collect();
        if exports.is_empty() {
            let missing: Vec<PathBuf> = configured.iter().map(|e| e.path.clone()).collect();
            return Err(Refusal::new(
                NdmpError::ILLEGAL_ARGS_ERR,
                format!(
                    "no export root of this server exists ({}): create it or fix the \
                     configuration",
                    env::roots(&missing)
                ),
            ));
        }
        Ok((exports, butype))
    }

    /// DATA_START_RECOVER: the selected names (all without an nlist) recreated at their
    /// destinations, by direct access when every nlist entry has an fh_info and DIRECT is
    /// not N, else by reading the whole image. DATA_START_RECOVER_FILEHIST (`list`): the
    /// image's file history posted, nothing written.
    async fn start_recover(
        &mut self,
        h: &Header,
        r: DataStartRecoverRequest,
        list: bool,
        out: &mut Outbox,
        align: u64,
    ) -> std::io::Result<()> {
        let what = if list {
            "DATA_START_RECOVER_FILEHIST"
        } else {
            "DATA_START_RECOVER"
        };
        let (exports, butype) = match self.start_checks(what, &r.butype_name) {
            Ok(e) => e,
            Err(e) => return out.refuse(h, e).await,
        };
        let (mode, opts, nlist, dest) = if list {
            let hist = match env::lookup(&r.env, "HIST").map(env::hist) {
                Some(Some(h)) => h,
                _ => env::Hist::Node,
            };
            let opts = RecoverOptions::default();
            (recover::Mode::FileHist(hist), opts, Vec::new(), None)
        } else {
            let plan = match recover_plan(&r, &exports) {
                Ok(p) => p,
                Err(e) => return out.refuse(h, e).await,
            };
            let mode = recover_mode(&r, &plan, align);
            if let Some(text) = mode.1 {
                out.log(LogType::WARNING, text, None).await?;
            }
            let dest = plan.opts.dest_root.to_string_lossy().into_owned();
            (mode.0, plan.opts, plan.nlist, Some(dest))
        };
        let Some(conn) = self.conn.take() else {
            return out.refuse(h, conn_gone()).await;
        };
        let direct = matches!(mode, recover::Mode::Direct { .. });
        let abort = Arc::new(AtomicBool::new(false));
        let (interrupt, conn) = conn.interruptible(&abort);
        let (tx, rx) = mpsc::channel(16);
        let job = recover::Job {
            butype,
            mode,
            opts,
            nlist,
            conn,
            bytes: self.machine.bytes().clone(),
            abort: abort.clone(),
            out: tx,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("recover-{}", self.ctx.entry.id))
            .spawn(move || recover::run(job));
        if let Err(e) = spawned {
            let why = format!("cannot start the recover: {e}");
            return out
                .refuse(h, Refusal::new(NdmpError::NO_MEM_ERR, why))
                .await;
        }
        self.run = Some(Running {
            out: rx,
            abort,
            interrupt,
            backup: None,
        });
        info!(destination = ?dest, direct, list, "recover started");
        let description = match &dest {
            _ if list => format!("NDMP file history of a {} image", butype.name()),
            Some(d) => format!("NDMP restore into {d} ({})", butype.name()),
            None => format!("NDMP restore ({})", butype.name()),
        };
        self.started(Start {
            op: if list {
                DataOperation::RECOVER_FILEHIST
            } else {
                DataOperation::RECOVER
            },
            butype,
            path: dest,
            description,
            env: r.env.clone(),
        });
        out.ok(h).await?;
        if direct {
            // the recover thread asks for each file's bytes itself
            return Ok(());
        }
        // the whole image, in order: the DMA turns this into MOVER_READ
        self.notify_read(0, i64::MAX as u64, out).await
    }

    async fn notify_read(
        &mut self,
        offset: u64,
        length: u64,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        self.machine.read_notice(offset, length);
        out.post(Request::NotifyDataRead(NotifyDataReadPost {
            offset,
            length,
        }))
        .await
    }

    /// What the backup or recover thread produced: posts go to the DMA, the end halts DATA.
    async fn on_out(&mut self, o: Out, out: &mut Outbox) -> std::io::Result<()> {
        let active = self.machine.is_active();
        let fh = o.fh_entries();
        crate::metrics::fh_unqueue(fh);
        match o {
            // after an abort nothing more is reported
            Out::Post(_) | Out::Fh { .. } if !active => Ok(()),
            Out::Post(r) => out
                .post(r)
                .await
                .inspect(|()| crate::metrics::fh_posted(fh)),
            Out::Fh { code, body, .. } => out
                .post_encoded(code, body)
                .await
                .inspect(|()| crate::metrics::fh_posted(fh)),
            Out::Read { offset, length } => self.notify_read(offset, length, out).await,
            Out::Estimate(n) => {
                if let Some((uuid, _)) = &self.job {
                    self.ctx.shared.registry.job_estimate(uuid, n);
                }
                self.machine.set_estimate(n);
                Ok(())
            }
            Out::Done(_) if !active => {
                self.run = None;
                Ok(())
            }
            Out::Done(result) => {
                let run = self.run.take();
                match result {
                    Ok(sum) => {
                        let reason = match run.and_then(|mut r| r.backup.take()) {
                            Some((env, date)) => {
                                self.backup_succeeded(&env, date, sum, out).await?;
                                DataHaltReason::SUCCESSFUL
                            }
                            None if self.machine.operation() == DataOperation::RECOVER_FILEHIST => {
                                let text =
                                    format!("file history of {} image bytes posted", sum.bytes);
                                info!("{text}");
                                out.log(LogType::NORMAL, &text, None).await?;
                                DataHaltReason::SUCCESSFUL
                            }
                            None => self.recover_done(sum, out).await?,
                        };
                        self.halt(reason, None, out).await
                    }
                    Err(why) => {
                        let what = if self.machine.operation() == DataOperation::BACKUP {
                            "backup"
                        } else {
                            "recover"
                        };
                        let text = format!("{what} failed: {why}");
                        if let Some((_, failure)) = &mut self.job {
                            *failure = Some(text.clone());
                        }
                        self.halt(DataHaltReason::INTERNAL_ERROR, Some(&text), out)
                            .await
                    }
                }
            }
        }
    }

    async fn backup_succeeded(
        &mut self,
        benv: &BackupEnv,
        dump_date: i64,
        sum: crate::format::dump::Summary,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        let fs = benv.filesystem.to_string_lossy().into_owned();
        let token = env::make_token(benv.level, dump_date);
        if let Some(e) = self.env.as_mut() {
            e.push(Pval::new("DUMP_DATE", &token.to_string()));
        }
        if benv.update {
            let dir = self.ctx.shared.config().data_dir.clone();
            let (level, date) = (benv.level, dump_date);
            let fs2 = fs.clone();
            let recorded =
                tokio::task::spawn_blocking(move || dumpdates::record(&dir, &fs2, level, date))
                    .await;
            if let Ok(Err(e)) | Err(e) = recorded.map_err(std::io::Error::other) {
                let text = format!("dumpdates not updated: {e}");
                out.log(LogType::WARNING, &text, None).await?;
            }
        }
        let text = format!(
            "backup of {fs} level {} done: {} bytes, {} directories, {} files, {} skipped",
            benv.level, sum.bytes, sum.dirs, sum.files, sum.skipped
        );
        info!("{text}");
        out.log(LogType::NORMAL, &text, None).await
    }

    /// The recover reader finished: a restore that left entries out (refused names, files
    /// kept, entries it could not write) is not a success, and the halt and the job say how
    /// many; each one already had its LOG_FILE or LOG_MESSAGE.
    async fn recover_done(
        &mut self,
        sum: crate::format::dump::Summary,
        out: &mut Outbox,
    ) -> std::io::Result<DataHaltReason> {
        let text = format!(
            "recover done: {} image bytes read, {} directories, {} files, {} not restored",
            sum.bytes, sum.dirs, sum.files, sum.skipped
        );
        if sum.skipped == 0 {
            info!("{text}");
            out.log(LogType::NORMAL, &text, None).await?;
            return Ok(DataHaltReason::SUCCESSFUL);
        }
        let failure = format!(
            "recover incomplete: {} entries were not restored (refused or kept; the DMA's \
             log names each), {} files and {} directories were",
            sum.skipped, sum.files, sum.dirs
        );
        tracing::warn!("{failure}");
        out.log(LogType::WARNING, &text, None).await?;
        out.log(LogType::ERROR, &failure, None).await?;
        if let Some((_, f)) = &mut self.job {
            *f = Some(failure);
        }
        Ok(DataHaltReason::INTERNAL_ERROR)
    }

    /// An operator canceled the job (REST): an active operation halts ABORTED.
    pub async fn cancel(&mut self, out: &mut Outbox) -> std::io::Result<()> {
        if self.machine.is_active() {
            info!("job canceled by the operator");
            let why = "the job was canceled by the operator";
            self.halt(DataHaltReason::ABORTED, Some(why), out).await?;
        }
        Ok(())
    }

    /// Enters HALTED (unless already there) and tells the DMA, as every entry must; `why`
    /// says why a halt other than SUCCESSFUL happened, in a LOG_MESSAGE before the notice
    /// (`None` where the words were posted already).
    pub async fn halt(
        &mut self,
        reason: DataHaltReason,
        why: Option<&str>,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        self.release();
        if self.machine.state() == DataState::HALTED {
            return Ok(());
        }
        if let Some(why) = why {
            let text = format!("DATA halted {reason:?}: {why}");
            let log_type = if reason == DataHaltReason::ABORTED {
                info!("{text}");
                LogType::WARNING
            } else {
                tracing::warn!("{text}");
                LogType::ERROR
            };
            out.log(log_type, &text, None).await?;
        }
        if let Some((uuid, failure)) = self.job.take() {
            let message = match reason {
                DataHaltReason::SUCCESSFUL => "success".to_string(),
                DataHaltReason::ABORTED => "Canceled".to_string(),
                other => {
                    failure.unwrap_or_else(|| name(other, DataHaltReason::name).to_lowercase())
                }
            };
            let code = if reason == DataHaltReason::SUCCESSFUL {
                0
            } else {
                reason.0
            };
            self.ctx.shared.registry.job_end(&uuid, code, message);
        }
        self.machine.halted(reason);
        info!(reason = ?reason, "data halted");
        self.publish();
        out.post(Request::NotifyDataHalted(NotifyDataHaltedPost { reason }))
            .await
    }

    /// NDMP_CAB_DATA_CONN_PREPARE: the DMA names the coming operation's volume before the
    /// data connection exists. It is kept for the next DATA_LISTEN or DATA_CONNECT.
    fn prepare(&mut self, r: CabDataConnPrepareRequest) -> Result<(), Refusal> {
        if self.machine.state() != DataState::IDLE {
            return Err(Refusal::new(
                NdmpError::ILLEGAL_STATE_ERR,
                "CAB data connection prepare comes before DATA_LISTEN or DATA_CONNECT, \
                 with the DATA server IDLE",
            ));
        }
        if let Some(t) = r.addr_type() {
            if !matches!(t, AddrType::LOCAL | AddrType::TCP | AddrType::TCP_IPV6) {
                return Err(Refusal::new(
                    NdmpError::ILLEGAL_ARGS_ERR,
                    format!("CAB data connection prepare for address type {t:?}: this server has LOCAL, TCP and TCP_IPV6"),
                ));
            }
        }
        let fs = env::lookup_bytes(&r.env, "FILESYSTEM")
            .map(|v| String::from_utf8_lossy(v).into_owned());
        info!(
            bu_type = %r.bu_type,
            filesystem = fs.as_deref().unwrap_or("(none)"),
            lead_word = ?r.lead_word,
            "CAB data connection prepared"
        );
        self.ctx.entry.add_extension(CLASS_CAB, 1, false);
        self.prepared = Some(r);
        Ok(())
    }

    /// Consumes a CAB prepare for a DATA_LISTEN/CONNECT of `addr_type` (`what`): the
    /// affinity to add to offered addresses, or the precondition error when the prepare
    /// named another kind of connection. On one node every volume is local.
    fn take_prepared(&mut self, addr_type: AddrType, what: &str) -> Result<Vec<Pval>, Refusal> {
        let Some(p) = &self.prepared else {
            return Ok(Vec::new());
        };
        // TCP and TCP_IPV6 are one kind: a DMA prepares "a network connection" and picks
        // the family from the peer's address afterwards
        let network = |t: AddrType| matches!(t, AddrType::TCP | AddrType::TCP_IPV6);
        if let Some(t) = p.addr_type() {
            if t != addr_type && !(network(t) && network(addr_type)) {
                return Err(Refusal::new(
                    NdmpError::PRECONDITION_ERR,
                    format!(
                        "{what}: CAB data connection prepare precondition error: the prepare \
                         was for address type {t:?}, this is {addr_type:?}"
                    ),
                ));
            }
        }
        self.prepared = None;
        Ok(vec![Pval::new("AFFINITY", "local")])
    }

    async fn listen(
        &mut self,
        h: &Header,
        addr_type: AddrType,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        if let Err(r) = self.machine.check_start(addr_type) {
            return out.refuse(h, r).await;
        }
        let affinity = match self.take_prepared(addr_type, "DATA_LISTEN") {
            Ok(a) => a,
            Err(r) => return out.refuse(h, r).await,
        };
        let connect_addr = if matches!(addr_type, AddrType::TCP | AddrType::TCP_IPV6) {
            let ports = self
                .ctx
                .shared
                .config()
                .mover
                .data_ports
                .map(|[a, b]| (a, b));
            let l = if addr_type == AddrType::TCP_IPV6 {
                self.ctx.entry.add_extension(CLASS_CAE, 1, false);
                net::listen_ipv6(self.ctx.local, ports).await.map(|l| {
                    let mut offered = l.offered;
                    for a in &mut offered {
                        a.addr_env.extend(affinity.clone());
                    }
                    (
                        l.listener,
                        Addr::TcpIpv6 {
                            tcp_ipv6_addr: offered,
                        },
                    )
                })
            } else {
                net::listen(self.ctx.local, ports).await.map(|l| {
                    let mut offered = l.offered;
                    for a in &mut offered {
                        a.addr_env.extend(affinity.clone());
                    }
                    (l.listener, Addr::Tcp { tcp_addr: offered })
                })
            };
            let (listener, connect_addr) = match l {
                Ok(l) => l,
                Err(e) => {
                    let why = format!("cannot listen for a data connection: {e}");
                    return out.refuse(h, Refusal::new(NdmpError::IO_ERR, why)).await;
                }
            };
            let cancel = CancellationToken::new();
            let events = self.events_tx.clone();
            let stop = cancel.clone();
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
            self.listen_cancel = Some(cancel);
            connect_addr
        } else {
            self.link.data_listen();
            Addr::Local
        };
        self.machine.listening();
        self.publish();
        let body = Reply::DataListen(ListenReply {
            error: NdmpError::NO_ERR,
            connect_addr,
        });
        out.reply(h, body).await
    }

    async fn connect(&mut self, h: &Header, addr: Addr, out: &mut Outbox) -> std::io::Result<()> {
        if let Err(r) = self.machine.check_start(addr.addr_type()) {
            return out.refuse(h, r).await;
        }
        if let Err(r) = self.take_prepared(addr.addr_type(), "DATA_CONNECT") {
            return out.refuse(h, r).await;
        }
        if addr.addr_type() == AddrType::TCP_IPV6 {
            self.ctx.entry.add_extension(CLASS_CAE, 1, false);
        }
        match net::tcp_targets(&addr) {
            Some(targets) => {
                let per_try =
                    Duration::from_secs(self.ctx.shared.config().mover.connect_timeout_secs);
                let stream = match net::connect_any(&targets, per_try).await {
                    Ok(s) => s,
                    Err(e) => {
                        let why = format!("data connect failed: {e}");
                        return out
                            .refuse(h, Refusal::new(NdmpError::CONNECT_ERR, why))
                            .await;
                    }
                };
                let peer = stream.peer_addr().map(net::peer_addr).unwrap_or_default();
                match stream
                    .into_std()
                    .and_then(|s| s.set_nonblocking(false).map(|()| s))
                {
                    Ok(s) => self.conn = Some(Conn::Tcp(s)),
                    Err(e) => {
                        let why = format!("data connect failed: {e}");
                        return out
                            .refuse(h, Refusal::new(NdmpError::CONNECT_ERR, why))
                            .await;
                    }
                }
                self.machine.connected(peer);
            }
            None => match self.link.data_connect() {
                Some(end) => {
                    self.conn = Some(Conn::Local(end));
                    self.machine.connected(Addr::Local);
                }
                None => {
                    let why = "no MOVER_LISTEN(LOCAL) is waiting on this connection";
                    return out
                        .refuse(h, Refusal::new(NdmpError::ILLEGAL_STATE_ERR, why))
                        .await;
                }
            },
        }
        info!("data connected");
        self.publish();
        out.ok(h).await
    }

    /// What the listening task found.
    async fn on_event(&mut self, ev: DataEvent, out: &mut Outbox) -> std::io::Result<()> {
        if self.machine.state() != DataState::LISTEN {
            // an abort crossed the connection: it is dropped
            return Ok(());
        }
        self.listen_cancel = None;
        let failed = match ev {
            DataEvent::Connected(s, peer) => {
                let _ = s.set_nodelay(true);
                match s
                    .into_std()
                    .and_then(|s| s.set_nonblocking(false).map(|()| s))
                {
                    Ok(s) => {
                        self.conn = Some(Conn::Tcp(s));
                        self.machine.connected(net::peer_addr(peer));
                        info!(%peer, "data connection accepted");
                        self.publish();
                        return Ok(());
                    }
                    Err(e) => e.to_string(),
                }
            }
            DataEvent::Failed(e) => e,
        };
        let text = format!("data connection failed: {failed}");
        self.halt(DataHaltReason::CONNECT_ERROR, Some(&text), out)
            .await
    }
}

fn conn_gone() -> Refusal {
    Refusal::new(NdmpError::ILLEGAL_STATE_ERR, "the data connection is gone")
}

/// Direct access when DIRECT is not N and every nlist entry carries an fh_info; DIRECT=Y
/// without them falls back to reading the whole image, and says so (the warning returned).
fn recover_mode(
    r: &DataStartRecoverRequest,
    plan: &RecoverPlan,
    align: u64,
) -> (recover::Mode, Option<&'static str>) {
    let asked = env::lookup(&r.env, "DIRECT").and_then(env::flag);
    let located = !r.nlist.is_empty() && r.nlist.iter().all(|n| n.fh_info != u64::MAX);
    if asked == Some(false) || !located {
        let warning = (asked == Some(true)).then_some(
            "DIRECT=Y but the name list has no fh_info for every entry: reading the whole image",
        );
        return (recover::Mode::Sequential, warning);
    }
    let entries = r
        .nlist
        .iter()
        .zip(&plan.opts.select)
        .zip(&plan.nlist)
        .map(|((n, sel), (path, name))| recover::DarEntry {
            fh_info: n.fh_info,
            dest: sel.dest.clone().unwrap_or_default(),
            path: path.clone(),
            name: name.clone(),
        })
        .collect();
    (recover::Mode::Direct { entries, align }, None)
}
