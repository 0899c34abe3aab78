//! The scheduler's shared state and settings (the handle REST and the server hold), kept apart
//! from its planner and runs so that neither imports the other back.

use crate::config::{Config, MissedRuns};
use crate::registry::Registry;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What runs now, for device_status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Operation {
    /// "backup" or "restore".
    pub kind: &'static str,
    /// The registry job's UUID.
    pub job: String,
    /// The schedule, for a backup.
    pub schedule_id: Option<String>,
    /// The catalog backup written or read.
    pub backup_id: Option<i64>,
    /// A line for people.
    pub description: String,
    /// Bytes so far.
    pub completed: u64,
    /// Bytes expected in all, once known.
    pub total: Option<u64>,
    /// "running", "retrying in N s", …
    pub status: String,
    /// Start, seconds since the epoch.
    pub started: u64,
}

/// The scheduler's settings, resolved from the config at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The catalog database.
    pub catalog: PathBuf,
    /// Runs missed while down: once at start-up, or skipped.
    pub missed: MissedRuns,
    /// The NDMP server whose drive takes the images, host:port.
    pub tape_server: String,
    /// Login for the tape server and for backup servers without their own.
    pub user: String,
    /// Its password.
    pub password: Vec<u8>,
    /// The tape drive.
    pub drive: String,
    /// The changer that loads it.
    pub changer: String,
    /// Tape record size.
    pub record_size: u32,
}

pub(crate) struct Inner {
    pub(super) settings: Settings,
    pub(super) registry: Arc<Registry>,
    pub(super) shutdown: CancellationToken,
    /// Re-plan: a schedule was created, edited or deleted.
    pub(super) changed: Notify,
    /// One job at a time on the drive.
    pub(super) drive: tokio::sync::Mutex<()>,
    /// Schedules with a run queued or running: not queued twice.
    pub(super) busy: Mutex<HashSet<String>>,
    pub(super) current: Mutex<Option<Operation>>,
}

/// The scheduler, as REST and the server reach it; clones share it.
#[derive(Clone)]
pub struct SchedulerHandle {
    pub(super) inner: Arc<Inner>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Settings {
    /// The scheduler's settings from the config: `None` when there is no enabled
    /// `[scheduler]`; an error in words when its password cannot be read.
    pub fn from_config(
        cfg: &Config,
        listen: &[std::net::SocketAddr],
    ) -> Result<Option<Settings>, String> {
        let Some(s) = cfg.scheduler.as_ref().filter(|s| s.enabled) else {
            return Ok(None);
        };
        let pw_file = s
            .password_file
            .clone()
            .unwrap_or_else(|| cfg.data_dir.join("password"));
        let password = read_password(&pw_file)?;
        let tape_server = match &s.tape_server {
            Some(t) => t.clone(),
            None => listen
                .first()
                .map(|a| a.to_string())
                .ok_or("the scheduler has no tape_server and the server no listen address")?,
        };
        Ok(Some(Settings {
            catalog: cfg.catalog_path(),
            missed: s.missed,
            tape_server,
            user: s.user.clone(),
            password,
            drive: s.drive.clone(),
            changer: s.changer.clone(),
            record_size: u32::try_from(s.record_size).unwrap_or(256 << 10),
        }))
    }
}

/// The first line of a password file.
pub(crate) fn read_password(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read(path)
        .map_err(|e| format!("scheduler password file {}: {e}", path.display()))?;
    let line = text.split(|b| *b == b'\n').next().unwrap_or(&[]);
    Ok(line.strip_suffix(b"\r").unwrap_or(line).to_vec())
}
