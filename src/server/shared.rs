//! What the sessions of one server share, and what the interface servers of one session
//! share: kept apart from the listeners so every server module can use them.

use super::admission::Admission;
use super::sysinfo::HostInfo;
use crate::auth::Throttle;
use crate::config::{Config, Credentials};
use crate::registry::{Registry, SessionEntry};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;

/// Product strings CONFIG_GET_SERVER_INFO shows after authentication: the vendor name.
pub const VENDOR: &str = "ndmpd project";
/// The product name, shown with [`VENDOR`].
pub const PRODUCT: &str = "ndmpd";
/// The revision: the crate's version, shown with [`VENDOR`].
pub const REVISION: &str = env!("CARGO_PKG_VERSION");

/// What every session shares.
pub struct Shared {
    /// The configuration: read at start-up, replaced by a reload (SIGHUP). Read it through
    /// [`Shared::config`].
    config: RwLock<Arc<Config>>,
    /// The accounts DMAs (and REST clients) may log in as; replaced by a reload.
    users: RwLock<Arc<Vec<Credentials>>>,
    /// What CONFIG_GET_HOST_INFO reports.
    pub host: HostInfo,
    /// Every live session and job, for the REST view.
    pub registry: Arc<Registry>,
    /// The tape drives and cartridges TAPE_OPEN and SCSI_OPEN reach.
    pub library: Arc<crate::tape::library::Library>,
    /// Delays repeated authentication failures, per peer address.
    pub throttle: Arc<Throttle>,
    /// The NDMP settings changed at run time through the REST view: whether connections are
    /// accepted, the authentication types, a DMA login.
    pub settings: Arc<crate::settings::Settings>,
    /// Cancelled to shut the server down; each session's kill token is a child of it.
    pub shutdown: CancellationToken,
    /// Who may connect and wait to authenticate; authenticated sessions' own limit.
    pub(crate) admission: Arc<Admission>,
    /// Bytes of received records all sessions may hold at once.
    pub(crate) record_budget: Arc<tokio::sync::Semaphore>,
    /// The backup scheduler, once `ndmpd serve` started it (a `[scheduler]` is configured).
    pub scheduler: std::sync::OnceLock<crate::scheduler::SchedulerHandle>,
}

impl Shared {
    /// Everything but the reloadable parts, which [`Shared::config`] and [`Shared::users`]
    /// give.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        admission: Arc<Admission>,
        record_budget: Arc<tokio::sync::Semaphore>,
        config: Config,
        users: Vec<Credentials>,
        host: HostInfo,
        registry: Arc<Registry>,
        library: Arc<crate::tape::library::Library>,
        throttle: Arc<Throttle>,
        settings: Arc<crate::settings::Settings>,
    ) -> Shared {
        Shared {
            config: RwLock::new(Arc::new(config)),
            users: RwLock::new(Arc::new(users)),
            host,
            registry,
            library,
            throttle,
            settings,
            shutdown: CancellationToken::new(),
            admission,
            record_budget,
            scheduler: std::sync::OnceLock::new(),
        }
    }

    /// The configuration now in force. A session that keeps the `Arc` keeps the version it
    /// started an operation with; the next call sees a reload.
    pub fn config(&self) -> Arc<Config> {
        // a poisoned lock still holds a whole config: writers only swap the Arc
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The DMA logins now in force.
    pub fn users(&self) -> Arc<Vec<Credentials>> {
        self.users.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts a reloaded configuration and its logins in force for what comes next; sessions
    /// go on with the devices and files they hold.
    pub fn replace(&self, config: Config, users: Vec<Credentials>) {
        self.library.set_drives(config.tapes.clone());
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(users);
    }
}

/// What every interface server of one session shares: the server's state, the session's
/// registry entry, and both ends of the control connection.
#[derive(Clone)]
pub(crate) struct Ctx {
    /// The server's shared state.
    pub shared: Arc<Shared>,
    /// This session in the registry (the REST view).
    pub entry: Arc<SessionEntry>,
    /// The DMA's end of the control connection.
    pub peer: SocketAddr,
    /// Our end: data connections listen on its address.
    pub local: SocketAddr,
}
