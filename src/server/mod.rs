//! The NDMP server process: listeners on the control port, one task per control connection,
//! shared state (config, credentials, registry), and graceful shutdown.

mod admission;
mod connect;
mod data;
mod inbox;
mod mover;
mod msglog;
pub mod notify;
mod outbox;
mod scsi;
mod session;
mod shared;
pub mod sysinfo;
mod tape;

use crate::config::{Config, Credentials};
use crate::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::auth::Throttle;
pub use shared::{Shared, PRODUCT, REVISION, VENDOR};

/// A bound server, ready to run.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    rest: Option<TcpListener>,
    /// The REST view's certificate when it serves HTTPS.
    rest_tls: Option<crate::rest::tls::Tls>,
    /// Who may log in to the REST view.
    rest_accounts: Option<crate::rest::accounts::Accounts>,
}

impl Server {
    /// Binds every listen address. `users` are the accounts DMAs may log in as.
    pub async fn bind(config: Config, users: Vec<Credentials>) -> std::io::Result<Server> {
        let mut listeners = Vec::new();
        for addr in &config.listen {
            let l = TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
            })?;
            listeners.push(l);
        }
        // NDMP is what DMAs need: a REST port already taken costs the view, not the server
        let rest = match config.rest_listen {
            Some(addr) => match TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!("REST view disabled: cannot listen on {addr}: {e}");
                    eprintln!("ndmpd: REST view disabled: cannot listen on {addr}: {e}");
                    None
                }
            },
            None => None,
        };
        raise_fd_limit();
        let host = sysinfo::HostInfo::read(&config.data_dir);
        let settings = Arc::new(
            crate::settings::Settings::load(&config.data_dir).map_err(std::io::Error::other)?,
        );
        // a REST view that cannot be secured as configured is a start-up error, not a warning
        let (rest_tls, rest_accounts) = match (&rest, config.rest_listen) {
            (Some(_), Some(addr)) => {
                let tls = if config.rest.use_tls(addr).map_err(std::io::Error::other)? {
                    let t = crate::rest::tls::setup(
                        &config.rest,
                        &config.data_dir,
                        addr,
                        &host.hostname,
                    )
                    .map_err(std::io::Error::other)?;
                    Some(t)
                } else {
                    None
                };
                let accounts =
                    crate::rest::accounts::Accounts::new(&config, &users, settings.clone())
                        .map_err(std::io::Error::other)?;
                (tls, Some(accounts))
            }
            _ => (None, None),
        };
        let library = crate::tape::library::Library::new(&config);
        library
            .prepare(config.library.spare_cartridges)
            .map_err(|e| std::io::Error::other(format!("tape library: {e}")))?;
        Ok(Server {
            shared: Arc::new(Shared::new(
                admission::Admission::new(config.admission.clone(), config.max_sessions),
                Arc::new(tokio::sync::Semaphore::new(config.admission.record_budget)),
                config,
                users,
                host,
                Arc::new(Registry::new()),
                Arc::new(library),
                Arc::new(Throttle::default()),
                settings,
            )),
            listeners,
            rest,
            rest_tls,
            rest_accounts,
        })
    }

    /// Where the REST view listens, when it does.
    pub fn rest_addr(&self) -> Option<SocketAddr> {
        self.rest.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// `https` or `http`: how the REST view is reached.
    pub fn rest_scheme(&self) -> &'static str {
        if self.rest_tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// What the banner says about the REST view: its certificate (the fingerprint in full the
    /// first time) and who may log in.
    pub fn rest_notes(&self) -> Vec<String> {
        let mut out: Vec<String> = self.rest_tls.iter().map(|t| t.describe()).collect();
        if let Some(a) = &self.rest_accounts {
            out.extend(a.describe());
        }
        out
    }

    /// The NDMP control addresses actually bound (a configured port 0 shows its real port).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The tape library: the drives and cartridges the banner lists.
    pub fn library(&self) -> Arc<crate::tape::library::Library> {
        self.shared.library.clone()
    }

    /// The configured media changers.
    pub fn changers(&self) -> Vec<crate::config::ChangerConfig> {
        self.shared.config().changers.clone()
    }

    /// The session registry, to watch sessions from outside (the tests do).
    pub fn registry(&self) -> Arc<Registry> {
        self.shared.registry.clone()
    }

    /// What the server's sessions share (the scheduler's handle goes there).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Cancelling this token shuts the server down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Accepts connections until shutdown, then tells every session (NOTIFY_CONNECTION_STATUS
    /// SHUTDOWN), lets them close their devices, and returns.
    pub async fn run(self) -> std::io::Result<()> {
        let tracker = TaskTracker::new();
        let mut accepts = JoinSet::new();
        let addrs = self.local_addrs();
        for l in self.listeners {
            accepts.spawn(accept_loop(l, self.shared.clone(), tracker.clone()));
        }
        if let (Some(l), Some(accounts)) = (self.rest, self.rest_accounts) {
            let s = &self.shared;
            let identity = crate::rest::Identity::load(
                &s.config().data_dir,
                &s.host.hostname,
                s.config().svm_name.as_deref(),
            );
            let npm = npm_for(s, &identity);
            let state = Arc::new(crate::rest::RestState {
                registry: s.registry.clone(),
                accounts,
                identity,
                throttle: s.throttle.clone(),
                settings: s.settings.clone(),
                auth_methods: s.config().auth.methods.clone(),
                library: Some(s.library.clone()),
                catalog: Some(crate::rest::library::CatalogReader::new(
                    s.config().catalog_path(),
                )),
                npm,
            });
            let tls = self.rest_tls.map(|t| t.config);
            accepts.spawn(crate::rest::serve_with(l, state, tls, s.shutdown.clone()));
        }
        accepts.spawn(give_back_when_idle(self.shared.registry.clone()));
        if let Some(every) = notify::watchdog_interval() {
            accepts.spawn(watchdog(every));
        }
        // the listeners were bound in `bind`: connections are accepted from here on
        notify::notify(&format!(
            "READY=1\nSTATUS={}",
            serving_status(&self.shared.config(), &addrs)
        ));
        self.shared.shutdown.cancelled().await;
        notify::notify("STOPPING=1\nSTATUS=stopping: sessions are closing");
        accepts.abort_all();
        tracker.close();
        // Sessions watch the same token and close themselves; they must write filemarks and
        // release devices, so give them a bounded time before giving up on them.
        if tokio::time::timeout(Duration::from_secs(30), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = tracker.len(),
                "sessions still closing at the shutdown deadline"
            );
        }
        tracing::info!("server stopped");
        Ok(())
    }

    /// A reloader for the configuration this server runs with (SIGHUP).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: self.shared.clone(),
            addrs: self.local_addrs(),
        }
    }
}

/// Puts a new configuration in force in a running server: logins, exports, drives, changers
/// and the mover settings change for what comes next; running sessions keep what they hold.
pub struct Reloader {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
}

impl Reloader {
    /// Puts `new` (validated, with its logins) in force; the caller tells the service
    /// manager when it has logged the outcome. Settings that only take effect at
    /// start-up keep their old values; the returned lines name each as needing a restart.
    pub fn reload(&self, mut new: Config, users: Vec<Credentials>) -> Vec<String> {
        let old = self.shared.config();
        let mut restart = Vec::new();
        macro_rules! keep {
            ($($field:ident).+, $name:expr) => {
                if new.$($field).+ != old.$($field).+ {
                    restart.push(format!("{} changed: it needs a restart, the running value stays", $name));
                    new.$($field).+ = old.$($field).+.clone();
                }
            };
        }
        keep!(listen, "listen");
        keep!(rest_listen, "rest_listen");
        keep!(data_dir, "data_dir");
        keep!(svm_name, "svm_name");
        keep!(max_sessions, "max_sessions");
        keep!(max_record, "max_record");
        keep!(admission, "[admission]");
        keep!(library, "[library]");
        keep!(scheduler, "[scheduler]");
        if let Some(h) = self.shared.scheduler.get() {
            // the schedules themselves change without a restart; one the catalog refuses
            // (its name is REST's) is named in the log and the rest go on
            if let Err(e) = h.reload(&new) {
                restart.push(format!("schedules not reloaded: {e}"));
            }
        }
        self.shared.replace(new, users);
        restart
    }

    /// The STATUS= line for the configuration in force; `READY=1` with it ends a reload.
    pub fn status(&self) -> String {
        serving_status(&self.shared.config(), &self.addrs)
    }
}

/// The STATUS= line systemd shows while the server serves.
fn serving_status(cfg: &Config, addrs: &[SocketAddr]) -> String {
    let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    format!(
        "serving NDMP on {}: {} export(s), {} drive(s), {} changer(s)",
        addrs.join(", "),
        cfg.exports.len(),
        cfg.tapes.len(),
        cfg.changers.len()
    )
}

/// Tells the service manager the server lives: it runs on the runtime that accepts, so a
/// wedged runtime stops the pings and systemd restarts the service.
async fn watchdog(every: Duration) {
    loop {
        notify::notify("WATCHDOG=1");
        tokio::time::sleep(every).await;
    }
}

/// What a connection hears while the NDMP service is switched off.
const DISABLED: &str = "the NDMP service is disabled on this server (an administrator can \
     enable it again: PATCH /api/protocols/ndmp/nodes {\"enabled\": true})";

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tracker: TaskTracker) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, keep serving the others.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // switched off through the REST view: refused like an admission refusal, while
        // sessions already running go on
        let admitted = if shared.settings.enabled() {
            shared
                .admission
                .admit(peer.ip())
                .map_err(|why| why.to_string())
        } else {
            Err(DISABLED.to_string())
        };
        match admitted {
            Ok(ticket) => {
                tracker.spawn(session::run(stream, peer, shared.clone(), ticket));
            }
            Err(why) => {
                if let admission::BurstLog::First { ended } =
                    shared.admission.refused(std::time::Instant::now())
                {
                    if ended > 0 {
                        tracing::warn!("{ended} more connections were refused in the last burst");
                    }
                    tracing::warn!(%peer, "connection refused: {why} (further refusals of this burst are counted, not logged)");
                }
                tracker.spawn(session::refuse(stream, why));
            }
        }
    }
}

/// Many connections each need a descriptor: take the hard limit rather than the soft 1024,
/// so a flood is refused by the admission limits, not by EMFILE at accept.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// How often an idle server checks whether it has memory to give back.
const IDLE_CHECK: Duration = Duration::from_secs(10);

/// Returns freed heap to the system once no session is left. glibc keeps what a burst of
/// sessions freed cached in its per-thread arenas (a 10-minute soak of 20 sessions left RSS
/// 30 MB above the start with nothing in use); an idle file server should not hold it.
async fn give_back_when_idle(registry: Arc<Registry>) {
    let mut busy_since_trim = false;
    loop {
        tokio::time::sleep(IDLE_CHECK).await;
        if !registry.is_empty() || registry.jobs().iter().any(|j| j.end_time.is_none()) {
            busy_since_trim = true;
        } else if busy_since_trim {
            busy_since_trim = false;
            trim_heap();
        }
    }
}

/// Gives free heap pages of every malloc arena back to the kernel.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no arguments
    // that point anywhere.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The npm.backup resources of this server: present when its `[scheduler]` is configured
/// (enabled), over the scheduler's catalog; run-now and restores go to its handle.
fn npm_for(
    shared: &Shared,
    identity: &crate::rest::Identity,
) -> Option<Arc<crate::rest::npm::Npm>> {
    use crate::rest::npm::{Npm, Scheduling};
    let cfg = shared.config();
    cfg.scheduler.as_ref().filter(|s| s.enabled)?;
    let catalog = cfg.catalog_path();
    let handle = shared
        .scheduler
        .get()
        .cloned()
        .map(|h| Arc::new(h) as Arc<dyn Scheduling>);
    Some(Arc::new(Npm::new(
        catalog,
        &cfg.data_dir,
        handle,
        identity.node_uuid.clone(),
    )))
}
