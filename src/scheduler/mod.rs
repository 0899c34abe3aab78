//! The backup scheduler inside `ndmpd serve`: runs the bundled DMA's backup of each schedule's
//! server on its RRULE, onto this server's library, then applies retention and recycling.
//!
//! RRULEs are evaluated with the `rrule` crate (0.14): a maintained, pure-Rust RFC 5545
//! implementation (BYxxx expansion, BYSETPOS, COUNT/UNTIL, time zones via chrono-tz), which
//! the seed's recurrence_rule objects map onto one to one; writing our own would mean
//! re-deriving RFC 5545's expansion rules and their edge cases.

mod handle;
pub mod rule;
mod run;

pub use handle::{Operation, SchedulerHandle, Settings};
pub use rule::{next_after, rrule_from_object, rrule_from_text, Rule};

use handle::{lock, Inner};

use crate::catalog::{Catalog, NewSchedule, NewServer};
use crate::config::{Config, MissedRuns};
use crate::registry::Registry;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Copies the config's servers and schedules into the catalog (`source = "config"`):
/// added, updated by name, and config ones the file no longer has removed.
pub fn sync_config(cat: &Catalog, cfg: &Config, default_user: &str) -> Result<(), String> {
    let e = |e: crate::catalog::CatalogError| e.to_string();
    for b in &cfg.backup_servers {
        let new = NewServer {
            name: b.name.clone(),
            description: b.description.clone(),
            host: b.host.clone(),
            port: b.port,
            path: b.path.clone(),
            user: b.user.clone().unwrap_or_else(|| default_user.to_string()),
            password_file: b.password_file.clone(),
            butype: b.butype.clone(),
            source: "config".into(),
        };
        match cat.server_by_name(&b.name).map_err(e)? {
            Some(s) if s.source != "config" => {
                return Err(format!(
                    "[[backup_server]] {:?}: a server of that name was made over REST; rename one",
                    b.name
                ))
            }
            Some(s) => cat.update_server(s.id, &new).map_err(e)?,
            None => drop(cat.insert_server(&new).map_err(e)?),
        }
    }
    for s in &cfg.schedules {
        let server = cat
            .server_by_name(&s.server)
            .map_err(e)?
            .ok_or_else(|| format!("schedule {:?}: no server {:?}", s.name, s.server))?;
        let new = NewSchedule {
            name: s.name.clone(),
            description: s.description.clone(),
            active: s.active,
            server_id: server.id,
            rrule: s.rrule.clone(),
            retention: s.retention,
            retry_attempts: s.retry_attempts,
            retry_delay_secs: s.retry_delay_secs(),
            level: s.level,
            source: "config".into(),
        };
        match cat.schedule_by_name(&s.name).map_err(e)? {
            Some(old) if old.source != "config" => {
                return Err(format!(
                    "[[schedule]] {:?}: a schedule of that name was made over REST; rename one",
                    s.name
                ))
            }
            Some(old) => cat.update_schedule(&old.id, &new).map_err(e)?,
            None => drop(cat.insert_schedule(&new).map_err(e)?),
        }
    }
    for old in cat.schedules().map_err(e)? {
        if old.source == "config" && !cfg.schedules.iter().any(|s| s.name == old.name) {
            cat.delete_schedule(&old.id).map_err(e)?;
        }
    }
    for old in cat.servers().map_err(e)? {
        if old.source == "config" && !cfg.backup_servers.iter().any(|s| s.name == old.name) {
            // a REST schedule may still use it: then it stays
            let _ = cat.delete_server(old.id);
        }
    }
    Ok(())
}

/// Starts the scheduler: the config's definitions go into the catalog, missed runs are run
/// (or skipped), and the planner runs until `shutdown`.
pub fn start(
    cfg: &Config,
    settings: Settings,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<SchedulerHandle, String> {
    let cat = Catalog::open(&settings.catalog).map_err(|e| e.to_string())?;
    sync_config(&cat, cfg, &settings.user)?;
    let h = SchedulerHandle {
        inner: Arc::new(Inner {
            settings,
            registry,
            shutdown,
            changed: Notify::new(),
            drive: tokio::sync::Mutex::new(()),
            busy: Mutex::new(HashSet::new()),
            current: Mutex::new(None),
        }),
    };
    let planner = h.clone();
    tokio::spawn(async move { planner.plan(cat).await });
    Ok(h)
}

impl SchedulerHandle {
    /// Starts a run of schedule `schedule_id` now; returns its registry job's UUID.
    pub fn run_now(&self, schedule_id: &str) -> Result<String, String> {
        let cat = self.catalog()?;
        let s = cat
            .schedule(schedule_id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no schedule {schedule_id}"))?;
        self.launch(&s.id, &s.name)
            .ok_or_else(|| format!("schedule {} is already running or queued", s.name))
    }

    /// A schedule was created, edited or deleted: plan again.
    pub fn changed(&self) {
        self.inner.changed.notify_one();
    }

    /// A reloaded configuration (SIGHUP): its servers and schedules replace the config-defined
    /// ones in the catalog (REST-made ones stay), then the planner plans again.
    pub fn reload(&self, cfg: &Config) -> Result<(), String> {
        sync_config(&self.catalog()?, cfg, &self.inner.settings.user)?;
        self.changed();
        Ok(())
    }

    /// Restores `paths` (all of it when empty) of catalog backup `backup_uuid` to
    /// `destination` on its DATA server; returns the registry job's UUID.
    pub fn restore(
        &self,
        backup_uuid: &str,
        paths: Vec<String>,
        destination: String,
    ) -> Result<String, String> {
        let cat = self.catalog()?;
        let b = cat
            .backup_by_uuid(backup_uuid)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no backup {backup_uuid}"))?;
        if b.media.is_empty() {
            return Err(format!(
                "backup {backup_uuid} ({}) has nothing on tape{}",
                b.status.as_str(),
                if b.expired {
                    ": it expired and its cartridge was recycled"
                } else {
                    ""
                }
            ));
        }
        if destination.is_empty() {
            return Err("give a destination directory on the backup's server".into());
        }
        Ok(run::start_restore(self.clone(), b, paths, destination))
    }

    /// What runs now, if anything.
    pub fn current(&self) -> Option<Operation> {
        let mut op = lock(&self.inner.current).clone()?;
        if let Some(j) = self
            .inner
            .registry
            .jobs()
            .into_iter()
            .find(|j| j.uuid == op.job)
        {
            op.completed = j.bytes;
            op.total = j.estimate;
        }
        Some(op)
    }

    /// The catalog, opened for one use.
    fn catalog(&self) -> Result<Catalog, String> {
        Catalog::open(&self.inner.settings.catalog).map_err(|e| e.to_string())
    }

    /// Queues a run unless the schedule has one queued or running; the job's UUID.
    fn launch(&self, id: &str, name: &str) -> Option<String> {
        if !lock(&self.inner.busy).insert(id.to_string()) {
            return None;
        }
        Some(run::start_backup(
            self.clone(),
            id.to_string(),
            name.to_string(),
        ))
    }

    /// The planner: runs missed runs once (or skips them), then each schedule at its times.
    async fn plan(self, cat: Catalog) {
        let now = crate::catalog::now();
        if self.inner.settings.missed == MissedRuns::Once {
            for s in cat.schedules().unwrap_or_default() {
                let missed = s
                    .last_backup
                    .or(s.next_backup.map(|n| n.saturating_sub(1)))
                    .and_then(|last| next_after(&s.rrule, last))
                    .is_some_and(|due| due <= now);
                if s.active && missed {
                    tracing::info!(
                        "schedule {}: a run was missed while ndmpd was down; running it now",
                        s.name
                    );
                    self.launch(&s.id, &s.name);
                }
            }
        }
        let mut next: std::collections::HashMap<String, u64> = Default::default();
        loop {
            let now = crate::catalog::now();
            let schedules = cat.schedules().unwrap_or_default();
            next.retain(|id, _| schedules.iter().any(|s| &s.id == id && s.active));
            for s in schedules.iter().filter(|s| s.active) {
                let due = *next
                    .entry(s.id.clone())
                    .or_insert_with(|| next_after(&s.rrule, now).unwrap_or(u64::MAX));
                if due <= now {
                    self.launch(&s.id, &s.name);
                    let n = next_after(&s.rrule, now).unwrap_or(u64::MAX);
                    next.insert(s.id.clone(), n);
                }
                let n = next[&s.id];
                if s.next_backup != (n != u64::MAX).then_some(n) {
                    let _ =
                        cat.set_schedule_times(&s.id, s.last_backup, (n != u64::MAX).then_some(n));
                }
            }
            let soonest = next.values().copied().min().unwrap_or(u64::MAX);
            let wait = soonest.saturating_sub(crate::catalog::now()).clamp(0, 3600);
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = self.inner.changed.notified() => {
                    // edited rules get their next time afresh
                    next.clear();
                }
                _ = tokio::time::sleep(std::time::Duration::from_millis(
                    if wait == 0 { 200 } else { wait * 1000 })) => {}
            }
        }
    }
}
