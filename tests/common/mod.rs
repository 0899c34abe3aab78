//! What the end-to-end tests share: an in-process server on a free loopback port with a fresh
//! data directory, the current defaults (two virtual drives) and one login.
#![allow(dead_code)] // each test binary uses a different part

pub mod btrfs;
pub mod daemon;
pub mod fulltree;
pub mod golden;
pub mod mover;
pub mod openapi;
pub mod pcapw;
pub mod readers;
pub mod rest;
pub mod served;
pub mod stockdump;
pub mod surgery;
pub mod tmpfs;
pub mod tree;

use ndmpd::config::{Config, Credentials, Export};
use ndmpd::registry::Registry;
use ndmpd::server::Server;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub struct TestServer {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub done: tokio::task::JoinHandle<std::io::Result<()>>,
    pub registry: Arc<Registry>,
    /// The REST view's address.
    pub rest: Option<SocketAddr>,
    pub cfg: Config,
    pub dir: tempfile::TempDir,
    /// The one login.
    pub user: String,
    pub password: Vec<u8>,
}

impl TestServer {
    /// A control connection logged in with TEXT auth.
    pub async fn client(&self) -> ndmpd::client::Client {
        let mut c = ndmpd::client::Client::connect(self.addr).await.unwrap();
        c.auth_text(&self.user, &self.password).await.unwrap();
        c
    }
}

/// The NDMP error `r` is answered with (NO_ERR included).
pub async fn ndmp_err(
    c: &mut ndmpd::client::Client,
    r: ndmpd::wire::Request,
) -> ndmpd::wire::NdmpError {
    c.call(r).await.unwrap().error().unwrap()
}

/// Starts a server whose only login is `user`/`password`; `tweak` adjusts the config first.
pub async fn start(user: &str, password: &[u8], tweak: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        data_dir: dir.path().join("data"),
        exports: vec![Export::new(dir.path().to_owned())],
        ..Config::default()
    };
    cfg.library.cartridge_capacity = 64 << 20;
    cfg.apply_embedded_defaults();
    // many servers run at once: no fixed port
    cfg.rest_listen = Some("127.0.0.1:0".parse().unwrap());
    // the REST tests log in with the one DMA login
    cfg.rest.dma_users_are_admins = true;
    tweak(&mut cfg);
    cfg.validate().unwrap();
    let users = vec![Credentials {
        name: user.into(),
        password: password.to_vec(),
    }];
    let server = Server::bind(cfg.clone(), users).await.unwrap();
    let addr = server.local_addrs()[0];
    let rest = server.rest_addr();
    let stop = server.shutdown_token();
    let registry = server.registry();
    let done = tokio::spawn(server.run());
    TestServer {
        addr,
        stop,
        done,
        registry,
        rest,
        cfg,
        dir,
        user: user.into(),
        password: password.to_vec(),
    }
}

/// Whether this is a CI run (`CI=true bash .ci/run`): there, a peer tool a test needs is part
/// of the install, so its absence fails the test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// What a test does when something it needs is not here (`why`): under CI it fails, saying
/// why; elsewhere it prints a note, and the caller returns and passes.
pub fn skip(why: &str) {
    assert!(
        !in_ci(),
        "{why}: a broken install under CI, not a reason to skip"
    );
    eprintln!("NOTE: {why}; skipping");
}

/// The path of `tool`, searched on PATH and in the sbin directories (where restore, dump
/// and mke2fs live, which a user's PATH may lack). When it is missing, [`skip`] names it and
/// the Debian `package` that provides it (under CI the test fails), and this returns None.
pub fn find_tool(tool: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file());
    if found.is_none() {
        skip(&format!(
            "{tool} is not installed: apt-get install {package} (scripts/test.sh installs it)"
        ));
    }
    found
}

/// Whether `tool` is installed; see [`find_tool`]: false (after a note) means skip the test,
/// and under CI a missing tool fails it instead.
pub fn require_tool(tool: &str, package: &str) -> bool {
    find_tool(tool, package).is_some()
}

/// Amanda's DMA.
pub const NDMJOB: &str = "/usr/lib/amanda/ndmjob";

/// Runs ndmjob with `args` under a 120 s timeout; returns stdout and stderr together.
pub fn ndmjob(args: &[&str]) -> String {
    assert!(
        std::path::Path::new(NDMJOB).exists(),
        "{NDMJOB} is missing: apt-get install amanda-common (scripts/test.sh installs it)"
    );
    let out = std::process::Command::new("timeout")
        .args(["-k", "5", "120", NDMJOB])
        .args(args)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
