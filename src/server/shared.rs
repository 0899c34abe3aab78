//! What the sessions of one server share, and what the interface servers of one session
//! share: kept apart from the listeners so every server module can use them.

use super::admission::Admission;
use super::sysinfo::HostInfo;
use crate::auth::Throttle;
use crate::config::{Config, Credentials};
use crate::registry::{Registry, SessionEntry};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Product strings CONFIG_GET_SERVER_INFO shows after authentication: the vendor name.
pub const VENDOR: &str = "ndmpd project";
/// The product name, shown with [`VENDOR`].
pub const PRODUCT: &str = "ndmpd";
/// The revision: the crate's version, shown with [`VENDOR`].
pub const REVISION: &str = env!("CARGO_PKG_VERSION");

/// What every session shares.
pub struct Shared {
    /// The configuration, as read at start-up.
    pub config: Config,
    /// The accounts DMAs (and REST clients) may log in as.
    pub users: Vec<Credentials>,
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
