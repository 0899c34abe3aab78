//! A real DMA against ndmpd: Amanda's `ndmjob -q` must print our host, server, fs and tape
//! information with TEXT and with MD5 auth, and fail cleanly on a wrong password.

mod common;

use std::process::Command;

const NDMJOB: &str = "/usr/lib/amanda/ndmjob";

async fn start() -> common::TestServer {
    common::start("ndmp", b"query-pw", |_| {}).await
}

async fn ndmjob(args: Vec<String>) -> String {
    assert!(
        std::path::Path::new(NDMJOB).exists(),
        "{NDMJOB} is missing: apt-get install amanda-common (scripts/test.sh installs it)"
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["-k", "5", "60", NDMJOB])
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_query_with_text_and_md5() {
    let t = start().await;
    let port = t.addr.port();
    for flag in ["t", "m"] {
        let agent = format!("127.0.0.1:{port}/4{flag},ndmp,query-pw");
        let out = ndmjob(vec![
            "-q".into(),
            "-D".into(),
            agent.clone(),
            "-T".into(),
            agent,
        ])
        .await;
        assert!(out.contains("Data Agent 127.0.0.1 NDMPv4"), "{out}");
        assert!(out.contains("Tape Agent 127.0.0.1 NDMPv4"), "{out}");
        assert!(out.contains("os_type    Linux"), "{out}");
        assert!(out.contains("product    ndmpd"), "{out}");
        assert!(out.contains("NDMP4_AUTH_MD5"), "{out}");
        assert!(
            out.contains(&format!("File system {}", t.dir.path().display())),
            "{out}"
        );
        assert!(out.contains("device     vtape0"), "{out}");
        assert!(!out.contains("err "), "ndmjob reported an error:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_query_with_a_wrong_password_is_refused() {
    let t = start().await;
    for (flag, err) in [
        ("t", "connect-auth-text-failed"),
        ("m", "connect-auth-md5-failed"),
    ] {
        let agent = format!("127.0.0.1:{}/4{flag},ndmp,nope", t.addr.port());
        let out = ndmjob(vec!["-q".into(), "-D".into(), agent]).await;
        assert!(out.contains(err), "{out}");
        assert!(!out.contains("Host info"), "{out}");
    }
}
