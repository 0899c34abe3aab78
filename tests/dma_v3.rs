//! `ndmpd dma --ndmp-version 3`: the bundled DMA speaking NDMP v3 to `ndmpd serve` (query,
//! backup, restore), to NDMJOB's test daemon, and to a server that refuses version 3.

mod common;

use common::daemon::{spawn_on, Daemon};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const PW: &str = "dma-v3-pw";
/// What `ndmpd serve` logs when a session's CONNECT_OPEN agreed on version 3.
const SPEAKS_V3: &str = "speaking NDMP version 3";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `ndmpd dma ARGS` with the password in the environment.
fn dma(args: &[&str], password: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .arg("dma")
        .args(args)
        .env("NDMPD_PASSWORD", password)
        .env_remove("NDMPD_CATALOG")
        .output()
        .unwrap()
}

fn ok(args: &[&str], password: &str) -> String {
    let out = dma(args, password);
    assert!(
        out.status.success(),
        "dma {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `ndmpd serve` with drive vtape0, logging every session's version, and its work directory.
fn server() -> (Daemon, tempfile::TempDir) {
    let work = tempfile::tempdir().unwrap();
    let pw = work.path().join("pw");
    std::fs::write(&pw, format!("{PW}\n")).unwrap();
    let cfg = work.path().join("ndmpd.toml");
    std::fs::write(&cfg, "[[tape]]\nname = \"vtape0\"\nkind = \"virtual\"\n").unwrap();
    let d = spawn_on(
        "127.0.0.1:0",
        &[
            "--config",
            s(&cfg),
            "--export",
            s(work.path()),
            "--user",
            "ndmp",
            "--password-file",
            s(&pw),
        ],
        true,
    );
    (d, work)
}

#[test]
fn query_backup_and_restore_in_version_3_against_ndmpd_serve() {
    let (d, work) = server();
    let addr = d.addr.to_string();
    let text = ok(&["--ndmp-version", "3", "query", "--server", &addr], PW);
    assert!(text.contains("NDMP version 3"), "{text}");
    let log = d.log();
    assert_eq!(log.matches(SPEAKS_V3).count(), 1, "server log: {log}");

    let tree = work.path().join("data");
    common::tree::build(&tree);
    let catalog = work.path().join("catalog.db");
    let text = ok(
        &[
            "backup",
            "--ndmp-version",
            "3",
            "--server",
            &addr,
            "--catalog",
            s(&catalog),
            s(&tree),
        ],
        PW,
    );
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("backup id "))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no backup id in {text}"))
        .to_string();
    let after_backup = d.log().matches(SPEAKS_V3).count();
    assert!(after_backup >= 2, "the backup spoke v4: {}", d.log());

    let dest: PathBuf = work.path().join("restored");
    ok(
        &[
            "restore",
            "--ndmp-version",
            "3",
            "--server",
            &addr,
            "--catalog",
            s(&catalog),
            "--backup",
            &id,
            s(&dest),
        ],
        PW,
    );
    assert!(
        d.log().matches(SPEAKS_V3).count() > after_backup,
        "the restore spoke v4: {}",
        d.log()
    );
    common::tree::assert_same(&tree, &dest);
}

#[test]
fn a_version_other_than_3_or_4_is_refused_by_the_cli() {
    let out = dma(
        &["--ndmp-version", "2", "query", "--server", "127.0.0.1:9"],
        PW,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ndmp-version"), "{err}");
}

/// One NDMP record: the record mark, then `words` as big-endian 32-bit XDR words.
fn record(words: &[u32]) -> Vec<u8> {
    let mut v = (0x8000_0000u32 | (words.len() as u32 * 4))
        .to_be_bytes()
        .to_vec();
    for w in words {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v
}

/// A server that speaks only v4: it greets with NOTIFY_CONNECTION_STATUS(4) and answers the
/// first CONNECT_OPEN with NDMP_ILLEGAL_ARGS_ERR; what the client asked for comes back.
fn v4_only_server() -> (String, std::thread::JoinHandle<u32>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let h = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        // header: sequence, time, type (0 request, 1 reply), code, reply sequence, error
        let notify = record(&[1, 0, 0, 0x502, 0, 0, 0, 4, 0]);
        c.write_all(&notify).unwrap();
        let mut mark = [0u8; 4];
        c.read_exact(&mut mark).unwrap();
        let len = (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize;
        let mut body = vec![0u8; len];
        c.read_exact(&mut body).unwrap();
        let word = |i: usize| u32::from_be_bytes(body[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!(word(3), 0x900, "the first request is CONNECT_OPEN");
        const ILLEGAL_ARGS_ERR: u32 = 9;
        c.write_all(&record(&[2, 0, 1, 0x900, word(0), 0, ILLEGAL_ARGS_ERR]))
            .unwrap();
        let asked = word(6);
        // the client closes after the refusal
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        asked
    });
    (addr, h)
}

#[test]
fn a_server_refusing_version_3_is_an_error_naming_the_version() {
    let (addr, h) = v4_only_server();
    let out = dma(&["--ndmp-version", "3", "query", "--server", &addr], PW);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CONNECT_OPEN failed")
            && err.contains("the server does not speak NDMP version 3"),
        "{err}"
    );
    assert_eq!(h.join().unwrap(), 3, "CONNECT_OPEN asked for version 3");
}

/// NDMJOB's test daemon on a free port, in its own process group, killed on drop.
struct Ndmjob {
    child: std::process::Child,
    port: u16,
}

impl Drop for Ndmjob {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created; no memory involved.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn ndmjob_daemon() -> Ndmjob {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(common::NDMJOB)
        .args(["-o", "test-daemon", "-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let d = Ndmjob { child, port };
    let (tx, rx) = std::sync::mpsc::channel();
    // keeps draining after READY so the daemon never blocks on a full pipe
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.trim() == "READY" {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("ndmjob test-daemon printed no READY");
    d
}

#[test]
fn query_in_version_3_against_ndmjob() {
    if !Path::new(common::NDMJOB).exists() {
        common::skip("/usr/lib/amanda/ndmjob is not installed: apt-get install amanda-common");
        return;
    }
    let d = ndmjob_daemon();
    let addr = format!("127.0.0.1:{}", d.port);
    // the test daemon's built-in account is ndmp/ndmp
    let text = ok(
        &[
            "--ndmp-version",
            "3",
            "--auth",
            "text",
            "query",
            "--server",
            &addr,
        ],
        "ndmp",
    );
    assert!(text.contains("TEXT as ndmp"), "{text}");
    assert!(text.contains("NDMP version 3"), "{text}");
    assert!(text.contains("NDMJOB"), "{text}");
}
