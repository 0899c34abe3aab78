//! `GET /metrics` against a real Prometheus: it scrapes the ndmpd binary every second with
//! basic auth during a LOCAL backup held at mover window ends, and PromQL through its HTTP API
//! sees `ndmp_session_mover_bytes_moved` grow window by window; `promtool check metrics` is
//! clean on a scraped body, and the server series count what really happened.

mod common;

use ndmpd::client::Client;
use ndmpd::wire::header::Body;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::Request;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The mover window: 100 records of 10240 bytes, so each pause is at a whole record.
const W: u64 = 100 * 10240;

/// How long anything below may take before the test gives up (never asserted on).
const PATIENCE: Duration = Duration::from_secs(90);

/// A Prometheus server on a free loopback port scraping `target` every second.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    fn start(target: std::net::SocketAddr, user: &str, password: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let pw_file = dir.path().join("password");
        std::fs::write(&pw_file, password).unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: ndmpd\n    static_configs:\n      - targets: ['{target}']\n    \
                 basic_auth:\n      username: {user}\n      password_file: {}\n",
                pw_file.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus starts");
        let mut p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + PATIENCE;
        // refused until it listens (curl fails), 503 while it loads
        let ready_url = p.url("/-/ready");
        let ready = || {
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &ready_url])
                .output()
                .is_ok_and(|o| o.stdout == b"200")
        };
        while !ready() {
            let said = || std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}):\n{}", said());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never became ready:\n{}",
                said()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The samples of instant query `q`: each series' labels and value.
    fn query(&self, q: &str) -> Vec<(Value, String)> {
        let out = curl(&[
            "--get",
            "--data-urlencode",
            &format!("query={q}"),
            &self.url("/api/v1/query"),
        ]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(v["status"], "success", "{out}");
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"].clone(),
                    r["value"][1].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Why the last scrape of ndmpd failed, if it did (for failure messages).
    fn scrape_error(&self) -> String {
        curl(&[&self.url("/api/v1/targets")])
    }

    /// Waits until `q` has exactly one sample and its value is `want`; returns its labels.
    fn wait_for(&self, q: &str, want: u64) -> Value {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            let r = self.query(q);
            if let [(labels, v)] = r.as_slice() {
                if *v == want.to_string() {
                    return labels.clone();
                }
            }
            seen.push(r);
            assert!(
                Instant::now() < deadline,
                "{q} never became {want}; saw {:?}; targets: {}",
                seen.last(),
                self.scrape_error()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// curl's standard output; it must exit 0.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {args:?}: {:?}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

/// `GET /metrics` from the daemon with `auth` ("user:password"): the status and the body.
fn scrape(d: &common::daemon::Daemon, auth: Option<&str>) -> (String, String) {
    let url = format!("http://{}/metrics", d.rest.unwrap());
    let mut args = vec!["-w", "\n%{http_code}"];
    if let Some(a) = auth {
        args.extend(["-u", a]);
    }
    args.push(&url);
    let out = curl(&args);
    let (body, code) = out.rsplit_once('\n').unwrap();
    (code.to_string(), body.to_string())
}

/// The value of the sample line `series` (name and labels exactly as exposed) in `body`.
fn value(body: &str, series: &str) -> Option<String> {
    let head = format!("{series} ");
    body.lines()
        .find_map(|l| l.strip_prefix(head.as_str()))
        .map(str::to_string)
}

/// Scrapes until the sample `series` reads `want`.
fn wait_sample(d: &common::daemon::Daemon, auth: &str, series: &str, want: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (code, body) = scrape(d, Some(auth));
        assert_eq!(code, "200", "{body}");
        if value(&body, series).as_deref() == Some(want) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never read {want}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tree whose dump image is well over three windows: one file of 4 MiB that does not
/// compress, in a directory whose name needs escaping in a label value.
fn tree(root: &Path) -> PathBuf {
    let dir = root.join("tree \"q\" \\ b");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut x: u32 = 0x1234_5678;
    let data: Vec<u8> = (0..4 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(dir.join("big"), &data).unwrap();
    std::fs::write(dir.join("sub").join("small"), b"small").unwrap();
    dir.canonicalize().unwrap()
}

/// The next NOTIFY_MOVER_PAUSED, NOTIFY_MOVER_HALTED or NOTIFY_DATA_HALTED; the file-history
/// entries of the posts before it are added to `fh`.
async fn next_notice(c: &mut Client, fh: &mut u64) -> Request {
    loop {
        let m = c
            .recv(Duration::from_secs(60))
            .await
            .unwrap()
            .expect("the server closed the connection");
        if let Body::Request(r) = m.body {
            *fh += ndmpd::data::backup::fh_entries(&r);
            if matches!(
                r,
                Request::NotifyMoverPaused(_)
                    | Request::NotifyMoverHalted(_)
                    | Request::NotifyDataHalted(_)
            ) {
                return r;
            }
        }
    }
}

async fn paused_at(c: &mut Client, fh: &mut u64, at: u64) {
    match next_notice(c, fh).await {
        Request::NotifyMoverPaused(p) => {
            assert_eq!(p.reason, MoverPauseReason::EOW);
            assert_eq!(p.seek_position, at);
        }
        other => panic!("{other:?}"),
    }
}

/// The run described at the top, step by step.
#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_a_growing_backup() {
    let tools = [
        ("prometheus", "prometheus"),
        ("promtool", "prometheus"),
        ("curl", "curl"),
    ];
    if !tools.iter().all(|(t, p)| common::require_tool(t, p)) {
        return;
    }
    let d = common::daemon::spawn(&[]);
    let auth = format!("ndmp:{}", d.password);
    let fs = tree(d.dir.path());

    // the same credentials as the rest of the view: none or wrong ones are refused
    assert_eq!(scrape(&d, None).0, "401");
    let (code, _) = scrape(&d, Some("ndmp:wrong"));
    assert_eq!(code, "401");
    // a connection that has not authenticated yet is counted as waiting, the failure above
    // as a failure
    let raw = std::net::TcpStream::connect(d.addr).unwrap();
    wait_sample(&d, &auth, "ndmpd_connections_unauthenticated", "1");
    wait_sample(&d, &auth, "ndmpd_auth_failures_total", "1");
    drop(raw);
    wait_sample(&d, &auth, "ndmpd_connections_unauthenticated", "0");

    let prom = Prometheus::start(d.rest.unwrap(), "ndmp", &d.password);

    let mut c = Client::connect(d.addr).await.unwrap();
    c.auth_text("ndmp", d.password.as_bytes()).await.unwrap();
    common::mover::local_backup_connected(&mut c, W).await;
    c.call_ok(Request::DataStartBackup(DataStartBackupRequest {
        butype_name: "dump".into(),
        env: vec![
            Pval::new("FILESYSTEM", fs.to_str().unwrap()),
            Pval::new("HIST", "y"),
        ],
    }))
    .await
    .unwrap();
    let mut fh = 0;

    // window 1: Prometheus sees exactly its bytes moved
    paused_at(&mut c, &mut fh, W).await;
    let labels = tokio::task::block_in_place(|| prom.wait_for("ndmp_session_mover_bytes_moved", W));
    // Harvest's labels, with the values the REST view gives for the same session
    let sessions = curl(&[
        "-u",
        &auth,
        &format!(
            "http://{}/api/protocols/ndmp/sessions?fields=*",
            d.rest.unwrap()
        ),
    ]);
    let sessions: Value = serde_json::from_str(&sessions).unwrap();
    let rec = sessions["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["client_port"] == c.local_addr().port())
        .unwrap_or_else(|| panic!("our session is not listed: {sessions}"));
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (label, want) in [
        ("uuid", s(&rec["uuid"])),
        ("backup_engine", "dump".into()),
        ("client_address", "127.0.0.1".into()),
        ("client_port", c.local_addr().port().to_string()),
        ("operation", "backup".into()),
        ("data_path", fs.to_str().unwrap().into()),
        ("mode", "read".into()),
        ("node", s(&rec["node"]["name"])),
        ("source_address", "127.0.0.1".into()),
        ("svm", s(&rec["svm"]["name"])),
        ("tape_device", "vtape0".into()),
        ("tape_mode", "write".into()),
    ] {
        assert_eq!(
            labels[label].as_str(),
            Some(want.as_str()),
            "{label}: {labels}"
        );
    }
    assert_eq!(
        labels["job"], "ndmpd",
        "scraped by the configured job: {labels}"
    );

    // window 2: the value Prometheus has grows to two windows
    c.call_ok(common::mover::window(W, W)).await.unwrap();
    c.call_ok(Request::MoverContinue(Void)).await.unwrap();
    paused_at(&mut c, &mut fh, 2 * W).await;
    tokio::task::block_in_place(|| prom.wait_for("ndmp_session_mover_bytes_moved", 2 * W));
    let data = tokio::task::block_in_place(|| prom.query("ndmp_session_data_bytes_processed"));
    let processed: u64 = data[0].1.parse().unwrap();
    assert!(processed >= 2 * W, "{data:?}");

    // the body itself, while paused: the server series and a clean promtool
    let (code, body) = scrape(&d, Some(&auth));
    assert_eq!(code, "200");
    let esc = fs
        .to_str()
        .unwrap()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    assert!(
        body.contains(&format!("data_path=\"{esc}\"")),
        "the path escaped in the label:\n{body}"
    );
    for (series, want) in [
        ("ndmpd_tape_written_bytes_total{drive=\"vtape0\"}", 2 * W),
        ("ndmpd_tape_read_bytes_total{drive=\"vtape0\"}", 0),
        (
            "ndmpd_tape_record_write_seconds_count{drive=\"vtape0\"}",
            200,
        ),
        (
            "ndmpd_tape_record_write_seconds_bucket{drive=\"vtape0\",le=\"+Inf\"}",
            200,
        ),
        ("ndmpd_sessions_mover{state=\"paused\"}", 1),
        ("ndmpd_sessions_data{state=\"active\"}", 1),
        ("ndmpd_jobs{state=\"paused\"}", 1),
        ("ndmpd_jobs{state=\"running\"}", 0),
        ("ndmpd_snapshots_held{held_by=\"backup\"}", 0),
        ("ndmpd_auth_failures_total", 1),
    ] {
        assert_eq!(
            value(&body, series),
            Some(want.to_string()),
            "{series}:\n{body}"
        );
    }
    assert_eq!(
        value(
            &body,
            &format!(
                "ndmpd_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some("1".into())
    );
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {:?} {said}",
        out.status
    );

    // the rest of the image: every file-history entry the DMA got was counted as posted, and
    // nothing is left queued
    c.call_ok(common::mover::window(2 * W, u64::MAX - 2 * W))
        .await
        .unwrap();
    c.call_ok(Request::MoverContinue(Void)).await.unwrap();
    let mut halts = 0;
    while halts < 2 {
        match next_notice(&mut c, &mut fh).await {
            Request::NotifyMoverHalted(h) => {
                assert_eq!(h.reason, MoverHaltReason::CONNECT_CLOSED);
                halts += 1;
            }
            Request::NotifyDataHalted(h) => {
                assert_eq!(h.reason, DataHaltReason::SUCCESSFUL);
                halts += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    let moved = common::mover::mover_state(&mut c).await.bytes_moved;
    assert!(moved > 3 * W, "{moved}");
    assert!(fh > 0, "HIST=y posts file history");
    let body = wait_sample(
        &d,
        &auth,
        "ndmpd_file_history_posted_total",
        &fh.to_string(),
    );
    for (series, want) in [
        ("ndmpd_file_history_queued", 0),
        ("ndmpd_tape_written_bytes_total{drive=\"vtape0\"}", moved),
    ] {
        assert_eq!(
            value(&body, series),
            Some(want.to_string()),
            "{series}:\n{body}"
        );
    }
    let body = wait_sample(&d, &auth, "ndmpd_jobs{state=\"success\"}", "1");
    assert_eq!(
        value(&body, "ndmpd_jobs{state=\"paused\"}").as_deref(),
        Some("0")
    );
    // and Prometheus saw the end as well
    tokio::task::block_in_place(|| prom.wait_for("ndmp_session_mover_bytes_moved", moved));
}
