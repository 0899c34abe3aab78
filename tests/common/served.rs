//! The `ndmpd` binary started on a config file the test writes (the snapshot tests), and the
//! small HTTP helpers the raw-socket REST tests share.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The real binary with a config file; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub rest: SocketAddr,
    pub password: String,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on `config` (in `dir`), its log in `dir/server-N.log`; the password is
/// the generated one in `dir/data/password`.
pub fn start(dir: &Path, config: &Path) -> Server {
    let n = std::fs::read_dir(dir).unwrap().count();
    let log = dir.join(format!("server-{n}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("NDMPD_LOG", "info")
        .env_remove("NDMPD_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut rest = None;
    let addr;
    loop {
        let Some(Ok(line)) = lines.next() else {
            panic!(
                "ndmpd stopped: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        if let Some(a) = line.strip_prefix("ndmpd: REST view on http://") {
            rest = a.split('/').next().and_then(|a| a.parse().ok());
        }
        if let Some(a) = line.strip_prefix("ndmpd: NDMP v4 listening on ") {
            addr = a.parse().unwrap();
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let password = std::fs::read_to_string(dir.join("data/password"))
        .unwrap()
        .trim()
        .to_string();
    Server {
        child,
        addr,
        rest: rest.unwrap(),
        password,
        config: config.to_path_buf(),
        log,
    }
}

/// RFC 4648 base64, for the Authorization header.
pub fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes a chunked body.
pub fn unchunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}
