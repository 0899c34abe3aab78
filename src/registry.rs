//! The live view of every NDMP session: who is connected, as whom, and what their DATA, MOVER,
//! TAPE and SCSI servers are doing. Sessions update it; the REST view reads snapshots of it.

use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;

/// What one session looks like from outside. Later servers fill the sub-records.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// The registry's number for the session, counting from 1; REST paths and kills use it.
    pub id: u64,
    /// The DMA's end of the control connection.
    pub client_address: SocketAddr,
    /// Our end of the control connection: which listening address the DMA reached.
    pub local_address: SocketAddr,
    /// Set once CONNECT_CLIENT_AUTH succeeds.
    pub user: Option<String>,
    /// How the user logged in: "md5", "text" or "none"; set with `user`.
    pub auth_method: Option<&'static str>,
    /// Always 4: CONNECT_OPEN refuses every other version, so there is nothing to record.
    pub protocol_version: u16,
    /// Seconds since the Unix epoch.
    pub start_time: u64,
    /// The DATA server's state.
    pub data: DataInfo,
    /// The MOVER server's state.
    pub mover: MoverInfo,
    /// The tape drive the session has open, if any.
    pub tape: TapeInfo,
    /// The SCSI device the session has open, if any.
    pub scsi: ScsiInfo,
    /// The extension classes in effect: selected by CONFIG_SET_EXT_LIST, or used.
    pub extensions: Vec<ExtensionInfo>,
}

/// One extension class in effect in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExtensionInfo {
    /// The class number, e.g. 0x2051.
    pub class: u16,
    /// The class version in effect.
    pub version: u16,
    /// Whether CONFIG_SET_EXT_LIST selected it (`false`: the DMA used it without).
    pub negotiated: bool,
}

/// The DATA server as the REST view shows it. The names are the NDMP enum names
/// (DATA_GET_STATE's), so the view can map them to ONTAP's words in one place.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DataInfo {
    /// The DATA state's NDMP name without its prefix: "IDLE", "ACTIVE", "HALTED"...
    pub state: &'static str,
    /// The operation running or last run ("BACKUP", "RECOVER"...); "NOACTION" before one
    /// starts and again after DATA_STOP.
    pub operation: &'static str,
    /// Why DATA halted; "NA" while it has not.
    pub halt_reason: &'static str,
    /// Always 0 in the stored record: [`SessionEntry::snapshot`] fills in the live count.
    pub bytes_processed: u64,
    /// "TCP address:port" or "LOCAL"; none while IDLE or LISTEN.
    pub connection: Option<String>,
    /// What is being backed up or restored into (ONTAP's `data.path`).
    pub data_path: Option<String>,
    /// The image format, "dump" or "tar" (ONTAP's `backup_engine`).
    pub backup_engine: Option<&'static str>,
    /// The snapshot the running or last backup reads, when not the live tree.
    pub snapshot: Option<String>,
}

/// The MOVER server as the REST view shows it, in the NDMP enum names MOVER_GET_STATE uses.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MoverInfo {
    /// The MOVER state's NDMP name without its prefix: "IDLE", "LISTEN", "ACTIVE"...
    pub state: &'static str,
    /// "NOACTION", "READ" or "WRITE".
    pub mode: &'static str,
    /// Why the mover paused; "NA" unless it is PAUSED.
    pub pause_reason: &'static str,
    /// Why the mover halted; "NA" while it has not.
    pub halt_reason: &'static str,
    /// Always 0 in the stored record: [`SessionEntry::snapshot`] fills in the live count.
    pub bytes_moved: u64,
    /// The record size MOVER_SET_RECORD_SIZE last set; 0 before the first.
    pub record_size: u32,
    /// "TCP address:port", "LOCAL" or "IPC" while the mover is connected, else none.
    pub connection: Option<String>,
}

/// The tape drive a session has open; both fields are none while it has none.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TapeInfo {
    /// The drive's name, as TAPE_OPEN gave it.
    pub device: Option<String>,
    /// How it was opened, in ONTAP's words: "read", "read_write" or "raw".
    pub mode: Option<&'static str>,
}

/// The SCSI device (a changer or a tape drive) a session has open; all none while it has none.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScsiInfo {
    /// The device's name, as SCSI_OPEN gave it.
    pub device: Option<String>,
    /// Where the device sits on the SCSI bus (SCSI_GET_STATE's controller, target, LUN).
    pub host_adapter: Option<i32>,
    /// The target part of that address.
    pub target_id: Option<i32>,
    /// The LUN part of that address.
    pub lun_id: Option<i32>,
}

impl SessionInfo {
    fn new(id: u64, client_address: SocketAddr, local_address: SocketAddr) -> Self {
        SessionInfo {
            id,
            client_address,
            local_address,
            user: None,
            auth_method: None,
            protocol_version: 4,
            start_time: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            data: DataInfo {
                state: "IDLE",
                operation: "NOACTION",
                halt_reason: "NA",
                ..DataInfo::default()
            },
            mover: MoverInfo {
                state: "IDLE",
                mode: "NOACTION",
                pause_reason: "NA",
                halt_reason: "NA",
                ..MoverInfo::default()
            },
            tape: TapeInfo::default(),
            scsi: ScsiInfo::default(),
            extensions: Vec::new(),
        }
    }
}

/// What an operator asks of a running session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Abort the DATA operation (a job canceled).
    CancelData,
}

/// Live byte counters of a session's DATA and MOVER: (bytes_processed, bytes_moved).
pub type Counters = Box<dyn Fn() -> (u64, u64) + Send + Sync>;

/// One registered session: its public info and the handle that ends it.
pub struct SessionEntry {
    /// The same number as `SessionInfo::id`, readable without the lock.
    pub id: u64,
    info: Mutex<SessionInfo>,
    kill: CancellationToken,
    /// Operator requests for the session's own loop.
    cancel: tokio::sync::mpsc::UnboundedSender<Op>,
    ops: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Op>>>,
    /// Read at each snapshot, so a watcher sees bytes grow between state changes.
    counters: std::sync::OnceLock<Counters>,
}

impl std::fmt::Debug for SessionEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEntry")
            .field("id", &self.id)
            .finish()
    }
}

impl SessionEntry {
    /// A copy of the current info; the lock is held only for the copy.
    pub fn snapshot(&self) -> SessionInfo {
        let mut i = lock(&self.info).clone();
        if let Some(c) = self.counters.get() {
            (i.data.bytes_processed, i.mover.bytes_moved) = c();
        }
        i
    }

    /// Where the live byte counters are; set once, when the session starts.
    pub fn set_counters(&self, c: Counters) {
        let _ = self.counters.set(c);
    }

    /// The receiving end of operator requests; the session takes it once.
    pub fn take_ops(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Op>> {
        lock(&self.ops).take()
    }

    /// Changes the info in place.
    pub fn update(&self, f: impl FnOnce(&mut SessionInfo)) {
        f(&mut lock(&self.info))
    }

    /// Whether extension `class` is in effect in this session.
    pub fn has_extension(&self, class: u16) -> bool {
        lock(&self.info).extensions.iter().any(|e| e.class == class)
    }

    /// Records extension `class` at `version` as in effect; a class already there stays as
    /// it is (selected first, then used, is still "negotiated").
    pub fn add_extension(&self, class: u16, version: u16, negotiated: bool) {
        let mut i = lock(&self.info);
        if !i.extensions.iter().any(|e| e.class == class) {
            i.extensions.push(ExtensionInfo {
                class,
                version,
                negotiated,
            });
        }
    }

    /// Resolves when the session has been asked to end (kill or server shutdown).
    pub fn kill_token(&self) -> &CancellationToken {
        &self.kill
    }
}

/// A poisoned lock only means another session panicked mid-update; the info is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every live session, by id, and the backup and recover operations they ran.
#[derive(Debug, Default)]
pub struct Registry {
    next_id: AtomicU64,
    sessions: Mutex<BTreeMap<u64, Arc<SessionEntry>>>,
    jobs: Mutex<Vec<JobEntry>>,
}

/// How long a finished job stays visible.
pub const JOB_KEEP: std::time::Duration = std::time::Duration::from_secs(300);

/// One backup or recover operation, as ONTAP's `/api/cluster/jobs` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    /// A random UUID, the job's name in REST paths.
    pub uuid: String,
    /// The session running it.
    pub session: u64,
    /// A line for people: "NDMP backup of /srv (dump, level 0)" and the like.
    pub description: String,
    /// "running", "success" or "failure" (the REST view adds "paused").
    pub state: &'static str,
    /// Empty while running; then "success", "Canceled", or what went wrong.
    pub message: String,
    /// 0 on success, else the DATA halt reason's number.
    pub code: u32,
    /// Seconds since the Unix epoch.
    pub start_time: u64,
    /// Seconds since the Unix epoch; none while the job runs.
    pub end_time: Option<u64>,
    /// Bytes processed so far; frozen when the job ends.
    pub bytes: u64,
    /// Bytes the whole operation is expected to move, once the DATA server knows.
    pub estimate: Option<u64>,
    /// The snapshot a backup reads instead of the live tree, while it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

#[derive(Debug)]
struct JobEntry {
    info: JobInfo,
    bytes: Arc<AtomicU64>,
    ended: Option<std::time::Instant>,
    /// Cancels a job run outside a session (the scheduler's); none: ask the session.
    cancel: Option<CancellationToken>,
}

fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random (version 4) UUID.
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // without randomness, the clock keeps UUIDs apart
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = t.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::wire::xdr::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Registry {
    /// An empty registry; the first session gets id 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a new connection. Dropping the returned guard removes it again, so a session
    /// that ends in any way (close, error, panic, kill) leaves the registry.
    pub fn register(
        self: &Arc<Self>,
        client: SocketAddr,
        local: SocketAddr,
        kill: CancellationToken,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (cancel, ops) = tokio::sync::mpsc::unbounded_channel();
        let entry = Arc::new(SessionEntry {
            cancel,
            ops: Mutex::new(Some(ops)),
            id,
            info: Mutex::new(SessionInfo::new(id, client, local)),
            kill,
            counters: std::sync::OnceLock::new(),
        });
        lock(&self.sessions).insert(id, entry.clone());
        Registration {
            registry: self.clone(),
            entry,
        }
    }

    /// How many sessions are registered now.
    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// True when no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Snapshots of every session, by id.
    pub fn list(&self) -> Vec<SessionInfo> {
        let entries: Vec<Arc<SessionEntry>> = lock(&self.sessions).values().cloned().collect();
        entries.iter().map(|e| e.snapshot()).collect()
    }

    /// Records a backup or recover starting in `session`; returns the job's UUID.
    pub fn job_start(&self, session: u64, description: String, bytes: Arc<AtomicU64>) -> String {
        let uuid = new_uuid();
        let mut jobs = lock(&self.jobs);
        jobs.retain(|j| j.ended.is_none_or(|t| t.elapsed() < JOB_KEEP));
        jobs.push(JobEntry {
            info: JobInfo {
                uuid: uuid.clone(),
                session,
                description,
                state: "running",
                message: String::new(),
                code: 0,
                start_time: epoch_secs(),
                end_time: None,
                bytes: 0,
                estimate: None,
                snapshot: None,
            },
            bytes,
            ended: None,
            cancel: None,
        });
        uuid
    }

    /// Records a job run outside any session (a scheduled backup, a catalog restore);
    /// cancelling it cancels `cancel`. Its session is 0.
    pub fn job_start_cancellable(
        &self,
        description: String,
        bytes: Arc<AtomicU64>,
        cancel: CancellationToken,
    ) -> String {
        let uuid = self.job_start(0, description, bytes);
        if let Some(j) = lock(&self.jobs).iter_mut().find(|j| j.info.uuid == uuid) {
            j.cancel = Some(cancel);
        }
        uuid
    }

    /// Records which snapshot job `uuid` reads; unknown jobs are ignored.
    pub fn job_snapshot(&self, uuid: &str, snapshot: String) {
        if let Some(j) = lock(&self.jobs).iter_mut().find(|j| j.info.uuid == uuid) {
            j.info.snapshot = Some(snapshot);
        }
    }

    /// Records how many bytes job `uuid` expects to move in all; unknown jobs are ignored.
    pub fn job_estimate(&self, uuid: &str, total: u64) {
        if let Some(j) = lock(&self.jobs).iter_mut().find(|j| j.info.uuid == uuid) {
            j.info.estimate = Some(total);
        }
    }

    /// The job ended: `code` 0 is success.
    pub fn job_end(&self, uuid: &str, code: u32, message: String) {
        if let Some(j) = lock(&self.jobs).iter_mut().find(|j| j.info.uuid == uuid) {
            if j.ended.is_some() {
                return;
            }
            j.info.bytes = j.bytes.load(Ordering::Relaxed);
            j.info.state = if code == 0 { "success" } else { "failure" };
            j.info.code = code;
            j.info.message = message;
            j.info.end_time = Some(epoch_secs());
            j.ended = Some(std::time::Instant::now());
        }
    }

    /// Every job still kept, oldest first, with live byte counts.
    pub fn jobs(&self) -> Vec<JobInfo> {
        let mut jobs = lock(&self.jobs);
        jobs.retain(|j| j.ended.is_none_or(|t| t.elapsed() < JOB_KEEP));
        jobs.iter()
            .map(|j| {
                let mut i = j.info.clone();
                if j.ended.is_none() {
                    i.bytes = j.bytes.load(Ordering::Relaxed);
                }
                i
            })
            .collect()
    }

    /// Asks the session running job `uuid` to abort its DATA operation. False when no such
    /// job is running.
    pub fn job_cancel(&self, uuid: &str) -> bool {
        let (session, token) = match lock(&self.jobs)
            .iter()
            .find(|j| j.info.uuid == uuid && j.ended.is_none())
        {
            Some(j) => (j.info.session, j.cancel.clone()),
            None => return false,
        };
        if let Some(t) = token {
            t.cancel();
            return true;
        }
        let id = session;
        let entry = lock(&self.sessions).get(&id).cloned();
        entry.is_some_and(|e| e.cancel.send(Op::CancelData).is_ok())
    }

    /// A snapshot of session `id`, if it is still registered.
    pub fn get(&self, id: u64) -> Option<SessionInfo> {
        let entry = lock(&self.sessions).get(&id).cloned();
        entry.map(|e| e.snapshot())
    }

    /// Asks a session to end. False if there is no such session.
    pub fn kill(&self, id: u64) -> bool {
        match lock(&self.sessions).get(&id) {
            Some(e) => {
                e.kill.cancel();
                true
            }
            None => false,
        }
    }
}

/// Keeps a session registered while it lives.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    entry: Arc<SessionEntry>,
}

impl Registration {
    /// The registered session, to update and to watch for kills.
    pub fn entry(&self) -> &Arc<SessionEntry> {
        &self.entry
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.registry.sessions).remove(&self.entry.id);
        // however the session ended, none of its jobs may stay "running" with nobody to end
        // it; the session ends them itself with a better message when it can
        let running: Vec<String> = lock(&self.registry.jobs)
            .iter()
            .filter(|j| j.info.session == self.entry.id && j.ended.is_none())
            .map(|j| j.info.uuid.clone())
            .collect();
        for uuid in running {
            self.registry.job_end(
                &uuid,
                JOB_ABORTED,
                "the session ended before the operation did".into(),
            );
        }
    }
}

/// The code of a job that ended because its session or DMA went away (NDMP's
/// DATA_HALT_ABORTED).
pub const JOB_ABORTED: u32 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_update_kill_and_drop() {
        let reg = Arc::new(Registry::new());
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:10000".parse().unwrap();
        let r1 = reg.register(a, b, CancellationToken::new());
        let r2 = reg.register(a, b, CancellationToken::new());
        assert_eq!(reg.len(), 2);
        assert_ne!(r1.entry().id, r2.entry().id);
        r1.entry().update(|i| i.user = Some("ndmp".into()));
        assert_eq!(
            reg.get(r1.entry().id).unwrap().user.as_deref(),
            Some("ndmp")
        );
        assert!(reg.kill(r2.entry().id));
        assert!(r2.entry().kill_token().is_cancelled());
        assert!(!r1.entry().kill_token().is_cancelled());
        let id = r2.entry().id;
        drop(r2);
        assert!(reg.get(id).is_none());
        assert!(!reg.kill(id));
        assert_eq!(reg.list().len(), 1);
    }

    #[test]
    fn a_session_that_goes_ends_its_running_jobs() {
        let reg = Arc::new(Registry::new());
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let r = reg.register(peer, peer, CancellationToken::new());
        let id = r.entry().id;
        let bytes = Arc::new(AtomicU64::new(7));
        let done = reg.job_start(id, "done".into(), bytes.clone());
        reg.job_end(&done, 0, "success".into());
        let running = reg.job_start(id, "running".into(), bytes);
        drop(r);
        let jobs = reg.jobs();
        let j = jobs.iter().find(|j| j.uuid == running).unwrap();
        assert_eq!((j.state, j.code), ("failure", JOB_ABORTED));
        assert!(j.end_time.is_some());
        assert_eq!(j.message, "the session ended before the operation did");
        let d = jobs.iter().find(|j| j.uuid == done).unwrap();
        assert_eq!((d.state, d.message.as_str()), ("success", "success"));
        assert!(!reg.job_cancel(&running), "an ended job cannot be canceled");
    }

    #[test]
    fn a_job_outside_a_session_is_cancelled_through_its_token() {
        let reg = Registry::new();
        let token = CancellationToken::new();
        let uuid = reg.job_start_cancellable("scheduled".into(), Arc::default(), token.clone());
        assert!(reg.job_cancel(&uuid));
        assert!(token.is_cancelled());
        reg.job_end(&uuid, 1, "Canceled".into());
        assert!(!reg.job_cancel(&uuid));
        assert_eq!(reg.jobs()[0].session, 0);
    }
}
