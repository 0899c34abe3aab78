//! The npm.backup resources' shared state (catalog, scheduler, password directory) and their
//! error helpers, apart from the handlers so that the REST state can hold it without a cycle.

use super::query::RestError;
use crate::catalog::Catalog;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The prefix every npm.backup resource is under.
pub const PREFIX: &str = "/api/npm.backup/2.0";

/// ndmpd's code for a change that conflicts with what exists (a config-defined entry, a
/// name taken, a server a schedule uses): HTTP 409.
pub const CONFLICT: &str = "1";

/// Rows a contents or search answer holds when the request gives no `limit`, and at most.
pub(super) const DEFAULT_LIMIT: u64 = 1000;
pub(super) const MAX_LIMIT: u64 = 100_000;

/// What the resources ask of the scheduler: run a schedule now, restore a backup (each as a
/// registry job, answering its UUID), and re-plan after a change.
pub trait Scheduling: Send + Sync {
    /// Runs schedule `id` now, as a job; its UUID.
    fn run_now(&self, id: &str) -> Result<String, String>;
    /// Restores `paths` (all when empty) of the backup with REST id `uuid` to `destination`
    /// on its server, as a job; its UUID.
    fn restore(
        &self,
        uuid: &str,
        paths: Vec<String>,
        destination: String,
    ) -> Result<String, String>;
    /// Schedules were created, changed or deleted over REST.
    fn changed(&self);
}

impl Scheduling for crate::scheduler::SchedulerHandle {
    fn run_now(&self, id: &str) -> Result<String, String> {
        crate::scheduler::SchedulerHandle::run_now(self, id)
    }
    fn restore(
        &self,
        uuid: &str,
        paths: Vec<String>,
        destination: String,
    ) -> Result<String, String> {
        crate::scheduler::SchedulerHandle::restore(self, uuid, paths, destination)
    }
    fn changed(&self) {
        crate::scheduler::SchedulerHandle::changed(self)
    }
}

/// What the npm.backup handlers share: the catalog, the scheduler, where passwords go.
pub struct Npm {
    pub(super) catalog_path: PathBuf,
    pub(super) catalog: Mutex<Option<Catalog>>,
    /// Passwords given over REST are kept in files here (mode 0600).
    pub(super) password_dir: PathBuf,
    pub(super) scheduler: Option<Arc<dyn Scheduling>>,
    pub(super) system_id: String,
}

impl Npm {
    /// The resources over the catalog at `catalog_path`; run-now and restores go to
    /// `scheduler` (without one they answer 503 in words); passwords given over REST are kept
    /// under `data_dir`.
    pub fn new(
        catalog_path: PathBuf,
        data_dir: &std::path::Path,
        scheduler: Option<Arc<dyn Scheduling>>,
        system_id: String,
    ) -> Npm {
        Npm {
            catalog_path,
            catalog: Mutex::new(None),
            password_dir: data_dir.join("backup-servers"),
            scheduler,
            system_id,
        }
    }

    /// Runs `f` on the open catalog (opened at first use, kept open).
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&mut Catalog) -> Result<T, RestError>,
    ) -> Result<T, RestError> {
        let mut g = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(Catalog::open(&self.catalog_path).map_err(db)?);
        }
        match g.as_mut() {
            Some(c) => f(c),
            None => Err(internal("the catalog is not open")),
        }
    }

    pub(super) fn scheduler(&self) -> Result<&dyn Scheduling, RestError> {
        self.scheduler.as_deref().ok_or_else(|| {
            RestError::new(
                503,
                "the scheduler is not running: add a [scheduler] section to the config file and reload",
                super::codes::OTHER,
                None,
            )
        })
    }
}

pub(super) fn internal(why: impl std::fmt::Display) -> RestError {
    RestError::new(
        500,
        format!("internal error: {why}"),
        super::codes::OTHER,
        None,
    )
}

/// A catalog error: a refusal (a name taken, a server in use) is a 409 in its words.
pub(super) fn db(e: crate::catalog::CatalogError) -> RestError {
    match e {
        crate::catalog::CatalogError::Refused(why) => RestError::new(409, why, CONFLICT, None),
        e => internal(e),
    }
}

pub(super) fn not_found(what: &str, id: &str, target: &str) -> RestError {
    RestError::not_found(format!("{what} {id} does not exist"), Some(target)).with_arguments(&[id])
}

pub(super) fn conflict(message: String, target: &str) -> RestError {
    RestError::new(409, message, CONFLICT, Some(target))
}
