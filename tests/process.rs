//! The `ndmpd` binary as an operator runs it: first start on embedded defaults, SIGTERM, and
//! 1,000 concurrent authenticated idle sessions with the server's memory per session measured.

use ndmpd::client::Client;
use ndmpd::wire::header::Body;
use ndmpd::wire::messages::Void;
use ndmpd::wire::types::ConnectionStatusReason;
use ndmpd::wire::Request;
use std::process::Command;
use std::time::Duration;

mod common;
use common::daemon::spawn;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_generates_a_private_password_and_sigterm_exits_cleanly() {
    let mut d = spawn(&[]);
    assert_eq!(
        d.password.len(),
        24,
        "first start prints the generated password"
    );
    let pwfile = d.dir.path().join("data/password");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&pwfile).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(d.addr.ip().is_loopback());

    let mut c = Client::connect(d.addr).await.unwrap();
    c.auth_md5("ndmp", d.password.as_bytes()).await.unwrap();
    // the export given with --export (spawn passes its directory)
    match c.call_ok(Request::ConfigGetFsInfo(Void)).await.unwrap() {
        ndmpd::wire::Reply::ConfigGetFsInfo(f) => assert_eq!(
            f.fs_info[0].fs_logical_device.to_string(),
            d.dir.path().display().to_string()
        ),
        other => panic!("{other:?}"),
    }

    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    let m = c.recv(Duration::from_secs(10)).await.unwrap().unwrap();
    assert!(matches!(
        m.body,
        Body::Request(Request::NotifyConnectionStatus(ref p)) if p.reason == ConnectionStatusReason::SHUTDOWN
    ));
    let status = tokio::task::spawn_blocking(move || {
        let st = d.child.wait().unwrap();
        (st, d)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_reuses_the_password_without_printing_it() {
    let d = spawn(&[]);
    let data = d.dir.path().join("data");
    // the first daemon holds the port, so this one reads its settings and stops at bind
    let out = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(["serve", "--listen", &d.addr.to_string()])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(&d.password),
        "password printed again: {text}"
    );
    assert!(text.contains("password in"), "{text}");
    assert_eq!(out.status.code(), Some(1), "bind failure is reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_authenticated_sessions() {
    const N: usize = 1000;
    let conf = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        conf.path(),
        "listen = [\"127.0.0.1:0\"]\nmax_sessions = 1100\n[[export]]\npath = \"/tmp\"\n",
    )
    .unwrap();
    let d = spawn(&["--config", conf.path().to_str().unwrap()]);
    let pid = d.child.id();
    // warm up: one session, so the runtime's threads and buffers exist before the baseline
    let mut first = Client::connect(d.addr).await.unwrap();
    first.auth_md5("ndmp", d.password.as_bytes()).await.unwrap();
    let before = rss_kib(pid);
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        let mut c = Client::connect(d.addr).await.unwrap();
        c.auth_md5("ndmp", d.password.as_bytes()).await.unwrap();
        clients.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    // every one of them is still served
    for c in clients.iter_mut() {
        c.call_ok(Request::ConfigGetHostInfo(Void)).await.unwrap();
    }
    let per_session = (after.saturating_sub(before)) * 1024 / N as u64;
    println!(
        "{N} idle authenticated sessions: server RSS {before} KiB -> {after} KiB, {per_session} bytes per session"
    );
    assert!(
        per_session < 256 * 1024,
        "{per_session} bytes per idle session"
    );
}
