//! The `ndmpd` binary as a separate process: started on a free loopback port with a fresh
//! data directory, its generated password and address read from its first lines.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub password: String,
    /// Where its REST view listens.
    pub rest: Option<SocketAddr>,
    /// The working and data directory, removed when the daemon is dropped.
    pub dir: tempfile::TempDir,
    /// The lines it printed up to the NDMP listening line.
    pub banner: Vec<String>,
}

impl Daemon {
    /// What a daemon started with `debug_log` has logged so far.
    #[allow(dead_code)]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ndmpd.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on a free loopback port with a fresh data directory, no config file and
/// its working directory as export root, and reads the generated password and the listen
/// address from its first lines.
pub fn spawn(extra: &[&str]) -> Daemon {
    spawn_on("127.0.0.1:0", extra, false)
}

/// [`spawn`] in `dir`, whose `data` directory may hold a previous run's state (a restart).
#[allow(dead_code)]
pub fn spawn_in(dir: tempfile::TempDir, extra: &[&str]) -> Daemon {
    spawn_at(dir, "127.0.0.1:0", extra, false)
}

/// [`spawn`] listening on `listen` (e.g. `[::1]:0`); with `debug_log`, the server logs every
/// message at debug level into `dir/ndmpd.log` (see [`Daemon::log`]).
#[allow(dead_code)]
pub fn spawn_on(listen: &str, extra: &[&str], debug_log: bool) -> Daemon {
    spawn_at(tempfile::tempdir().unwrap(), listen, extra, debug_log)
}

fn spawn_at(dir: tempfile::TempDir, listen: &str, extra: &[&str], debug_log: bool) -> Daemon {
    let stderr = if debug_log {
        Stdio::from(std::fs::File::create(dir.path().join("ndmpd.log")).unwrap())
    } else {
        Stdio::null()
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ndmpd"));
    if debug_log {
        cmd.env("NDMPD_LOG", "info,ndmpd::ndmp=debug");
    }
    let mut child = cmd
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", listen, "--rest-listen", "127.0.0.1:0"])
        // there is no implicit export: the working directory is the tests' export root
        .arg("--export")
        .arg(dir.path())
        .args(extra)
        .current_dir(dir.path())
        .env_remove("NDMPD_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut password = String::new();
    let mut rest = None;
    let mut banner = Vec::new();
    let addr;
    loop {
        let line = lines.next().expect("ndmpd printed nothing").unwrap();
        banner.push(line.clone());
        if let Some(rest) = line.split(", password ").nth(1) {
            password = match rest.strip_prefix("in ") {
                // a restart names the file the first start wrote
                Some(file) => std::fs::read_to_string(file.trim())
                    .unwrap()
                    .lines()
                    .next()
                    .unwrap()
                    .to_string(),
                None => rest.split(' ').next().unwrap().to_string(),
            };
        }
        let url = line.strip_prefix("ndmpd: REST view on ");
        if let Some(a) = url.and_then(|u| u.split_once("://")).map(|(_, a)| a) {
            rest = a.split('/').next().and_then(|a| a.parse().ok());
        }
        if let Some(a) = line.strip_prefix("ndmpd: NDMP v4 listening on ") {
            addr = a.parse().unwrap();
            break;
        }
    }
    // keep draining stdout so the server never blocks on a full pipe
    std::thread::spawn(move || for _ in lines {});
    Daemon {
        child,
        addr,
        password,
        rest,
        dir,
        banner,
    }
}
