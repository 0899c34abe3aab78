//! The DATA interface of a session (spec §3.5): data connections (LISTEN, CONNECT, and the
//! LOCAL pairing with this session's mover), ABORT, STOP, GET_STATE and NOTIFY_DATA_HALTED.

use super::session::Session;
use crate::data::backup::{self, Out};
use crate::data::env::{self, BackupEnv};
use crate::data::paths::{recover_plan, RecoverPlan};
use crate::data::recover;
use crate::data::{dumpdates, Butype, DataConn, DataMachine};
use crate::error::Refusal;
use crate::format::dump::reader::RecoverOptions;
use crate::format::dump::DumpOptions;
use crate::format::tar::TarOptions;
use crate::mover::local::DataEnd;
use crate::mover::net;
use crate::wire::header::Header;
use crate::wire::messages::*;
use crate::wire::types::*;
use crate::wire::{NdmpError, NdmpString, Reply, Request};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

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
    /// The backup under way (or just finished).
    pub(super) run: Option<Running>,
    /// What DATA_GET_ENV returns once an operation has started.
    env: Option<Vec<Pval>>,
    /// The REST view's job for the operation under way: its UUID, and why it failed.
    job: Option<(String, Option<String>)>,
}

/// A backup thread and what the session needs to finish it.
pub(super) struct Running {
    out: mpsc::Receiver<Out>,
    abort: Arc<AtomicBool>,
    /// A second handle on a TCP connection, to unblock a writer stuck on a paused mover.
    interrupt: Option<std::net::TcpStream>,
    /// For a backup: its environment and date, for dumpdates and DUMP_DATE at the end.
    backup: Option<(BackupEnv, i64)>,
}

/// The next thing the backup thread says; pends forever when none runs.
pub(super) async fn next_out(run: &mut Option<Running>) -> Option<Out> {
    match run.as_mut() {
        Some(r) => r.out.recv().await,
        None => std::future::pending().await,
    }
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
            run: None,
            env: None,
            job: None,
        }
    }
}

impl DataSession {
    /// MOVER_CONNECT(LOCAL): if DATA listens LOCAL, it takes its end of the pipe.
    /// False (and the end dropped) when DATA is not listening LOCAL.
    pub fn accept_local(&mut self, end: DataEnd) -> bool {
        if !(self.local_listen && self.machine.state == DataState::LISTEN) {
            return false;
        }
        self.local_listen = false;
        self.conn = Some(DataConn::Local(end));
        self.machine.connected(Addr::Local);
        true
    }

    pub fn listening_local(&self) -> bool {
        self.local_listen && self.machine.state == DataState::LISTEN
    }

    /// Drops the connection and any listener, and stops a running backup.
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
        let operation = match m.operation {
            DataOperation::BACKUP => "BACKUP",
            DataOperation::RECOVER => "RECOVER",
            DataOperation::RECOVER_FILEHIST => "RECOVER_FILEHIST",
            _ => "NOACTION",
        };
        let bytes = m.bytes_processed.load(Ordering::Relaxed);
        self.entry.update(|i| {
            i.data.state = state;
            i.data.operation = operation;
            i.data.halt_reason = halt_reason;
            i.data.connection = connection;
            i.data.bytes_processed = bytes;
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
                self.entry.update(|i| {
                    i.data.data_path = None;
                    i.data.backup_engine = None;
                });
                self.data.release();
                self.data.run = None;
                self.data.env = None;
                self.data.machine.stopped();
            }),
            Request::DataStartBackup(r) => return self.data_start_backup(h, r).await,
            Request::DataStartRecover(r) => return self.data_start_recover(h, r, false).await,
            Request::DataStartRecoverFilehist(r) => {
                return self.data_start_recover(h, r, true).await
            }
            Request::DataGetEnv(_) => match &self.data.env {
                Some(env) => {
                    let body = Reply::DataGetEnv(DataGetEnvReply {
                        error: NdmpError::NO_ERR,
                        env: env.clone(),
                    });
                    return self.reply(h, body).await;
                }
                None => Err(Refusal {
                    error: NdmpError::ILLEGAL_STATE_ERR,
                    why: "no backup has started: there is no environment to return".into(),
                }),
            },
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

    async fn data_start_backup(
        &mut self,
        h: &Header,
        r: DataStartBackupRequest,
    ) -> std::io::Result<()> {
        let (exports, butype) = match self.start_checks("DATA_START_BACKUP", &r.butype_name) {
            Ok(e) => e,
            Err(e) => return self.refuse(h, e.error, &e.why).await,
        };
        let env = match env::parse_backup(&r.env, &exports) {
            Ok(e) => e,
            Err(e) => return self.refuse(h, e.error, &e.why).await,
        };
        let Some(conn) = self.data.conn.take() else {
            let why = "the data connection is gone";
            return self.refuse(h, NdmpError::ILLEGAL_STATE_ERR, why).await;
        };
        let fs = env.filesystem.to_string_lossy().into_owned();
        let base_date = match env.base_date {
            Some(d) => d,
            None if env.level == 0 => 0,
            None => dumpdates::base_date(&self.shared.config.data_dir, &fs, env.level),
        };
        let dump_date = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let dump = DumpOptions {
            level: env.level,
            base_date,
            dump_date,
            label: "ndmpd".into(),
            host: self.shared.host.hostname.clone(),
            filesystem: fs.clone(),
            exclude: env.exclude.clone(),
            ..DumpOptions::default()
        };
        let format = match butype {
            Butype::Dump => backup::Format::Dump(dump),
            Butype::Tar => backup::Format::Tar(TarOptions {
                base_date: (env.level > 0).then_some(base_date),
                exclude: env.exclude.clone(),
                ..TarOptions::default()
            }),
        };
        let abort = Arc::new(AtomicBool::new(false));
        let (interrupt, conn) = interruptible(conn, &abort);
        let (tx, out) = mpsc::channel(16);
        let job = backup::Job {
            env: env.clone(),
            format,
            conn,
            bytes: self.data.machine.bytes_processed.clone(),
            abort: abort.clone(),
            out: tx,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("backup-{}", self.entry.id))
            .spawn(move || backup::run(job));
        if let Err(e) = spawned {
            let why = format!("cannot start the backup: {e}");
            return self.refuse(h, NdmpError::NO_MEM_ERR, &why).await;
        }
        let mut shown = env.received.clone();
        shown.retain(|p| !p.name.to_string().eq_ignore_ascii_case("LEVEL"));
        shown.push(Pval::new("LEVEL", &env.level.to_string()));
        if env::lookup(&shown, "TYPE").is_none() {
            shown.push(Pval::new("TYPE", butype.name()));
        }
        self.data.env = Some(shown);
        let level = env.level;
        self.data.run = Some(Running {
            out,
            abort,
            interrupt,
            backup: Some((env, dump_date)),
        });
        self.data.machine.state = DataState::ACTIVE;
        self.data.machine.operation = DataOperation::BACKUP;
        let path = fs.clone();
        self.entry.update(|i| {
            i.data.data_path = Some(path);
            i.data.backup_engine = Some(butype.name());
        });
        info!(filesystem = %fs, level, base_date, "backup started");
        self.job_start(format!(
            "NDMP backup of {fs} ({}, level {level})",
            butype.name()
        ));
        self.publish_data();
        self.ok(h).await
    }

    /// What DATA_START_BACKUP and DATA_START_RECOVER both need: a data connection and a
    /// butype we offer. Returns the export roots, resolved, and the butype.
    fn start_checks(
        &self,
        what: &str,
        butype: &NdmpString,
    ) -> Result<(Vec<PathBuf>, Butype), Refusal> {
        if self.data.machine.state != DataState::CONNECTED {
            return Err(Refusal {
                error: NdmpError::ILLEGAL_STATE_ERR,
                why: format!("{what} needs a data connection (DATA_CONNECT or DATA_LISTEN)"),
            });
        }
        let name = butype.to_string();
        let Some(butype) = Butype::parse(&name) else {
            return Err(Refusal {
                error: NdmpError::ILLEGAL_ARGS_ERR,
                why: format!(
                    "backup type {name:?} is not offered (this server offers dump and tar)"
                ),
            });
        };
        let exports = self
            .shared
            .config
            .exports
            .iter()
            .filter_map(|e| e.path.canonicalize().ok())
            .collect();
        Ok((exports, butype))
    }

    /// DATA_START_RECOVER: the selected names (all without an nlist) recreated at their
    /// destinations, by direct access when every nlist entry has an fh_info and DIRECT is
    /// not N, else by reading the whole image. DATA_START_RECOVER_FILEHIST (`list`): the
    /// image's file history posted, nothing written.
    async fn data_start_recover(
        &mut self,
        h: &Header,
        r: DataStartRecoverRequest,
        list: bool,
    ) -> std::io::Result<()> {
        let what = if list {
            "DATA_START_RECOVER_FILEHIST"
        } else {
            "DATA_START_RECOVER"
        };
        let (exports, butype) = match self.start_checks(what, &r.butype_name) {
            Ok(e) => e,
            Err(e) => return self.refuse(h, e.error, &e.why).await,
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
                Err(e) => return self.refuse(h, e.error, &e.why).await,
            };
            let mode = self.recover_mode(&r, &plan).await?;
            let dest = plan.opts.dest_root.to_string_lossy().into_owned();
            (mode, plan.opts, plan.nlist, Some(dest))
        };
        let Some(conn) = self.data.conn.take() else {
            let why = "the data connection is gone";
            return self.refuse(h, NdmpError::ILLEGAL_STATE_ERR, why).await;
        };
        let direct = matches!(mode, recover::Mode::Direct { .. });
        let abort = Arc::new(AtomicBool::new(false));
        let (interrupt, conn) = interruptible(conn, &abort);
        let (tx, out) = mpsc::channel(16);
        let job = recover::Job {
            butype,
            mode,
            opts,
            nlist,
            conn,
            bytes: self.data.machine.bytes_processed.clone(),
            abort: abort.clone(),
            out: tx,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("recover-{}", self.entry.id))
            .spawn(move || recover::run(job));
        if let Err(e) = spawned {
            let why = format!("cannot start the recover: {e}");
            return self.refuse(h, NdmpError::NO_MEM_ERR, &why).await;
        }
        self.data.env = Some(r.env.clone());
        self.data.run = Some(Running {
            out,
            abort,
            interrupt,
            backup: None,
        });
        self.data.machine.state = DataState::ACTIVE;
        self.data.machine.operation = if list {
            DataOperation::RECOVER_FILEHIST
        } else {
            DataOperation::RECOVER
        };
        self.entry.update(|i| {
            i.data.data_path = dest.clone();
            i.data.backup_engine = Some(butype.name());
        });
        info!(destination = ?dest, direct, list, "recover started");
        self.job_start(match &dest {
            _ if list => format!("NDMP file history of a {} image", butype.name()),
            Some(d) => format!("NDMP restore into {d} ({})", butype.name()),
            None => format!("NDMP restore ({})", butype.name()),
        });
        self.publish_data();
        self.ok(h).await?;
        if direct {
            // the recover thread asks for each file's bytes itself
            return Ok(());
        }
        // the whole image, in order: the DMA turns this into MOVER_READ
        self.notify_data_read(0, i64::MAX as u64).await
    }

    async fn notify_data_read(&mut self, offset: u64, length: u64) -> std::io::Result<()> {
        self.data.machine.read_offset = offset;
        self.data.machine.read_length = length;
        self.post(Request::NotifyDataRead(NotifyDataReadPost {
            offset,
            length,
        }))
        .await
    }

    /// Direct access when DIRECT is not N and every nlist entry carries an fh_info; DIRECT=Y
    /// without them falls back to reading the whole image, and says so.
    async fn recover_mode(
        &mut self,
        r: &DataStartRecoverRequest,
        plan: &RecoverPlan,
    ) -> std::io::Result<recover::Mode> {
        let asked = env::lookup(&r.env, "DIRECT").and_then(env::flag);
        let located = !r.nlist.is_empty() && r.nlist.iter().all(|n| n.fh_info != u64::MAX);
        if asked == Some(false) || !located {
            if asked == Some(true) {
                let text = "DIRECT=Y but the name list has no fh_info for every entry: \
                            reading the whole image";
                self.log(LogType::WARNING, text).await?;
            }
            return Ok(recover::Mode::Sequential);
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
        // a mover of this session gets reads in whole records (one of another session or
        // server is the DMA's business: ours takes any offset)
        let align = match self.mover.machine.state {
            MoverState::IDLE => 1,
            _ => u64::from(self.mover.machine.record_size).max(1),
        };
        Ok(recover::Mode::Direct { entries, align })
    }

    /// What the backup thread produced: posts go to the DMA, the end halts DATA.
    pub(super) async fn on_backup_out(&mut self, o: Out) -> std::io::Result<()> {
        let active = self.data.machine.state == DataState::ACTIVE;
        match o {
            // after an abort nothing more is reported
            Out::Post(_) if !active => Ok(()),
            Out::Post(r) => self.post(r).await,
            Out::Read { offset, length } => self.notify_data_read(offset, length).await,
            Out::Estimate(n) => {
                if let Some((uuid, _)) = &self.data.job {
                    self.shared.registry.job_estimate(uuid, n);
                }
                self.data.machine.estimate = Some((n, std::time::Instant::now()));
                Ok(())
            }
            Out::Done(_) if !active => {
                self.data.run = None;
                Ok(())
            }
            Out::Done(result) => {
                let run = self.data.run.take();
                self.publish_bytes();
                match result {
                    Ok(sum) => {
                        match run.and_then(|r| r.backup) {
                            Some((env, date)) => self.backup_succeeded(&env, date, sum).await?,
                            None => {
                                let text = if self.data.machine.operation
                                    == DataOperation::RECOVER_FILEHIST
                                {
                                    format!("file history of {} image bytes posted", sum.bytes)
                                } else {
                                    format!(
                                        "recover done: {} image bytes read, {} directories, \
                                         {} files, {} not restored",
                                        sum.bytes, sum.dirs, sum.files, sum.skipped
                                    )
                                };
                                info!("{text}");
                                self.log(LogType::NORMAL, &text).await?
                            }
                        }
                        self.data_halt(DataHaltReason::SUCCESSFUL).await
                    }
                    Err(why) => {
                        let what = if self.data.machine.operation == DataOperation::BACKUP {
                            "backup"
                        } else {
                            "recover"
                        };
                        let text = format!("{what} failed: {why}");
                        if let Some((_, failure)) = &mut self.data.job {
                            *failure = Some(text.clone());
                        }
                        self.log(LogType::ERROR, &text).await?;
                        self.data_halt(DataHaltReason::INTERNAL_ERROR).await
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
    ) -> std::io::Result<()> {
        let fs = benv.filesystem.to_string_lossy().into_owned();
        let token = env::make_token(benv.level, dump_date);
        if let Some(e) = self.data.env.as_mut() {
            e.push(Pval::new("DUMP_DATE", &token.to_string()));
        }
        if benv.update {
            let dir = self.shared.config.data_dir.clone();
            let (level, date) = (benv.level, dump_date);
            let fs2 = fs.clone();
            let recorded =
                tokio::task::spawn_blocking(move || dumpdates::record(&dir, &fs2, level, date))
                    .await;
            if let Ok(Err(e)) | Err(e) = recorded.map_err(std::io::Error::other) {
                self.log(LogType::WARNING, &format!("dumpdates not updated: {e}"))
                    .await?;
            }
        }
        let text = format!(
            "backup of {fs} level {} done: {} bytes, {} directories, {} files, {} skipped",
            benv.level, sum.bytes, sum.dirs, sum.files, sum.skipped
        );
        info!("{text}");
        self.log(LogType::NORMAL, &text).await
    }

    fn publish_bytes(&self) {
        let n = self.data.machine.bytes_processed.load(Ordering::Relaxed);
        self.entry.update(|i| i.data.bytes_processed = n);
    }

    async fn log(&mut self, log_type: LogType, text: &str) -> std::io::Result<()> {
        self.post(Request::LogMessage(LogMessagePost {
            log_type,
            message_id: 0,
            entry: text.into(),
            associated_message_valid: HasAssociatedMessage::NO_ASSOCIATED_MESSAGE,
            associated_message_sequence: 0,
        }))
        .await
    }

    /// Enters HALTED (unless already there) and tells the DMA, as every entry must.
    pub(super) async fn data_halt(&mut self, reason: DataHaltReason) -> std::io::Result<()> {
        self.data.release();
        if self.data.machine.state == DataState::HALTED {
            return Ok(());
        }
        if let Some((uuid, failure)) = self.data.job.take() {
            let message = match reason {
                DataHaltReason::SUCCESSFUL => "success".to_string(),
                DataHaltReason::ABORTED => "Canceled".to_string(),
                other => failure.unwrap_or_else(|| halt_name(other).to_lowercase()),
            };
            let code = if reason == DataHaltReason::SUCCESSFUL {
                0
            } else {
                reason.0
            };
            self.shared.registry.job_end(&uuid, code, message);
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

    /// A backup or recover starts: the REST view shows it as a job.
    fn job_start(&mut self, description: String) {
        let bytes = self.data.machine.bytes_processed.clone();
        let uuid = self
            .shared
            .registry
            .job_start(self.entry.id, description, bytes);
        self.data.job = Some((uuid, None));
    }

    /// The session is ending: connections and listeners go.
    pub(super) fn release_data(&mut self) {
        self.data.release();
    }
}

/// The connection with what unblocks it on abort: a second TCP handle to shut down, or the
/// abort flag a LOCAL pipe watches.
fn interruptible(
    conn: DataConn,
    abort: &Arc<AtomicBool>,
) -> (Option<std::net::TcpStream>, DataConn) {
    match conn {
        DataConn::Tcp(s) => (s.try_clone().ok(), DataConn::Tcp(s)),
        DataConn::Local(mut end) => {
            end.set_abort(abort.clone());
            (None, DataConn::Local(end))
        }
    }
}
