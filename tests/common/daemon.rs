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
    spawn_in(tempfile::tempdir().unwrap(), extra)
}

/// [`spawn`] in `dir`, whose `data` directory may hold a previous run's state (a restart).
pub fn spawn_in(dir: tempfile::TempDir, extra: &[&str]) -> Daemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0"])
        // there is no implicit export: the working directory is the tests' export root
        .arg("--export")
        .arg(dir.path())
        .args(extra)
        .current_dir(dir.path())
        .env_remove("NDMPD_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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
