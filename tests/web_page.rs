//! The operator's web page in a real browser: headless Chromium, driven over the DevTools
//! protocol (a small websocket client below), loads `/` of the ndmpd binary during a LOCAL
//! backup held at a mover window end, shows the job's and the session's progress and the
//! library as the REST API reports them, disables its buttons for a read-only login; its
//! "Cancel" really aborts the backup (NDMP DATA halts ABORTED, the job ends "Canceled") and its
//! "Kill" ends the session; a backup in the catalog shows in the library as what vtape1 holds.

mod common;
use common::tree::assert_only_file;

use common::served::{base64, unchunk};
use ndmpd::client::Client;
use ndmpd::wire::header::Body;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::Request;
use serde_json::{json, Value};
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The mover window: 100 records of 10240 bytes; the backup is held at its end.
const W: u64 = 100 * 10240;

/// How long anything below may take before the test gives up (never asserted on).
const PATIENCE: Duration = Duration::from_secs(60);

const ADMIN: (&str, &str) = ("operator", "op-secret");
const VIEWER: (&str, &str) = ("viewer", "view-secret");

// ---- a DevTools protocol client over a hand-rolled websocket (RFC 6455, client side) -------

/// Headless Chromium in its own process group with a private profile; killed (the whole
/// group: its zygote and renderers too) when dropped.
struct Chromium {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _profile: tempfile::TempDir,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created; no memory is involved
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Chromium {
    fn start() -> Chromium {
        let profile = tempfile::tempdir().unwrap();
        let log = profile.path().join("chromium.log");
        let child = Command::new("chromium")
            .args([
                "--headless=new",
                // root in a container has no user namespace for the sandbox
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0)
            .spawn()
            .expect("chromium starts");
        // it writes the port it chose into the profile once it listens
        let active = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + PATIENCE;
        let port = loop {
            if let Some(p) = std::fs::read_to_string(&active)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
            {
                break p;
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open its DevTools port: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Chromium {
            child,
            port,
            log,
            _profile: profile,
        }
    }

    /// The DevTools websocket path of the first page (the about:blank tab).
    fn page_path(&self) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (status, body) = http(
                ([127, 0, 0, 1], self.port).into(),
                "GET",
                "/json/list",
                None,
            );
            let list: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let page = list.as_array().and_then(|l| {
                l.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            });
            if let Some(url) = page {
                let path = url.split_once("://").unwrap().1;
                return path[path.find('/').unwrap()..].to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no page target ({status}): {body}\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One DevTools session with a page.
struct Cdp {
    ws: TcpStream,
    next_id: u64,
    /// The messages of the JavaScript dialogs (confirm, prompt) the page opened; each was
    /// accepted, a prompt with `prompt_text`.
    dialogs: Vec<String>,
    prompt_text: String,
}

impl Cdp {
    fn connect(port: u16, path: &str) -> Cdp {
        let mut ws = TcpStream::connect(("127.0.0.1", port)).unwrap();
        ws.set_read_timeout(Some(PATIENCE)).unwrap();
        // the key is fixed: this client does not need to tell its handshakes apart
        write!(
            ws,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: bmRtcGQtd2ViLXRlc3QtLQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8];
            ws.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "handshake: {head}");
        Cdp {
            ws,
            next_id: 1,
            dialogs: Vec::new(),
            prompt_text: String::new(),
        }
    }

    /// Sends one masked text frame (a client must mask, RFC 6455 5.3).
    fn send_frame(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut f = vec![0x81u8];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend((n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend((n as u64).to_be_bytes());
            }
        }
        let mask = [0x5au8, 0x17, 0xc3, 0x9e];
        f.extend(mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.ws.write_all(&f).unwrap();
    }

    /// The next whole text message (fragments joined; pings answered).
    fn recv_text(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.ws.read_exact(&mut h).expect("a DevTools message");
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.ws.read_exact(&mut b).unwrap();
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.ws.read_exact(&mut b).unwrap();
                len = u64::from_be_bytes(b);
            }
            let mut mask = None;
            if h[1] & 0x80 != 0 {
                let mut m = [0u8; 4];
                self.ws.read_exact(&mut m).unwrap();
                mask = Some(m);
            }
            let mut data = vec![0u8; len as usize];
            self.ws.read_exact(&mut data).unwrap();
            if let Some(m) = mask {
                data.iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b ^= m[i % 4]);
            }
            match opcode {
                0x9 => {
                    // pong with the ping's payload
                    let mut f = vec![0x8a, 0x80 | data.len() as u8, 0, 0, 0, 0];
                    f.extend(&data);
                    self.ws.write_all(&f).unwrap();
                }
                0x8 => panic!("chromium closed the DevTools connection"),
                0xa => {}
                _ => {
                    message.extend(data);
                    if fin {
                        return String::from_utf8(message).unwrap();
                    }
                }
            }
        }
    }

    fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let m = json!({"id": id, "method": method, "params": params});
        self.send_frame(&m.to_string());
        id
    }

    /// Calls `method`; its result. A JavaScript dialog the page opens meanwhile is accepted.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params);
        loop {
            let m: Value = serde_json::from_str(&self.recv_text()).unwrap();
            if m["id"] == id {
                assert!(m.get("error").is_none(), "{method}: {m}");
                return m["result"].clone();
            }
            if m["method"] == "Page.javascriptDialogOpening" {
                self.dialogs
                    .push(m["params"]["message"].as_str().unwrap_or("").to_string());
                let text = self.prompt_text.clone();
                self.send(
                    "Page.handleJavaScriptDialog",
                    json!({"accept": true, "promptText": text}),
                );
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is truthy in the page (the page polls every 1.5 s); its value.
    fn wait_for(&mut self, what: &str, expr: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let v = self.eval(expr);
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return v;
            }
            if Instant::now() > deadline {
                let dom = self.eval("document.body.innerText");
                panic!(
                    "the page never showed {what}; it shows:\n{}",
                    dom.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Loads `url` with HTTP basic auth as `login` on every request the page makes.
    fn open_as(&mut self, url: &str, login: (&str, &str)) {
        let cred = base64(format!("{}:{}", login.0, login.1).as_bytes());
        self.call(
            "Network.setExtraHTTPHeaders",
            json!({"headers": {"Authorization": format!("Basic {cred}")}}),
        );
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for(
            "its login",
            &format!(
                "document.getElementById('login')?.textContent.startsWith('{}')",
                login.0
            ),
        );
    }
}

// ---- plain HTTP to the REST view -------------------------------------------------------------

/// One HTTP/1.1 request; the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, login: Option<(&str, &str)>) -> (u16, String) {
    let (status, _, body) = http_full(addr, method, path, login);
    (status, body)
}

fn http_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    login: Option<(&str, &str)>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some((u, p)) = login {
        let cred = base64(format!("{u}:{p}").as_bytes());
        req.push_str(&format!(
            "Authorization: Basic {cred}\r\nAccept: application/json\r\n"
        ));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // by Content-Length or chunks, not to EOF: Chromium's DevTools server keeps the
    // connection open whatever the request says
    let mut r = std::io::BufReader::new(s);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        assert!(
            r.read_line(&mut head).unwrap() > 0,
            "the answer ended in its head: {head}"
        );
    }
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let lower = head.to_ascii_lowercase();
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|n| n.trim().parse::<usize>().unwrap());
    let body = if lower.contains("transfer-encoding: chunked") {
        let mut raw = String::new();
        while !raw.ends_with("\r\n0\r\n\r\n") && !raw.starts_with("0\r\n\r\n") {
            assert!(r.read_line(&mut raw).unwrap() > 0, "a cut chunked body");
        }
        unchunk(&raw)
    } else if let Some(n) = length {
        let mut b = vec![0u8; n];
        r.read_exact(&mut b).unwrap();
        String::from_utf8(b).unwrap()
    } else {
        let mut raw = String::new();
        r.read_to_string(&mut raw).unwrap();
        raw
    };
    (status, head, body)
}

/// The bytes the REST API gives for job `uuid` and for session `id` (what the page's bars show:
/// for a session the more of its DATA's and its mover's).
fn rest_bytes(rest: SocketAddr, uuid: &str, id: &str) -> (u64, u64) {
    let j = rest_json(rest, &format!("/api/cluster/jobs/{uuid}?fields=progress"));
    let s = rest_json(
        rest,
        &format!("/api/protocols/ndmp/sessions?id={id}&fields=*"),
    );
    let s = &s["records"][0];
    let moved = s["mover"]["bytes_moved"].as_u64().unwrap();
    let read = s["data"]["bytes_processed"].as_u64().unwrap();
    (j["progress"]["bytes"].as_u64().unwrap(), moved.max(read))
}

fn rest_json(rest: SocketAddr, path: &str) -> Value {
    let (status, body) = http(rest, "GET", path, Some(ADMIN));
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

// ---- the backup ------------------------------------------------------------------------------

/// 4 MiB of incompressible bytes and a small file: several windows' worth.
fn tree(root: &Path) -> std::path::PathBuf {
    let dir = root.join("tree");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut x: u32 = 0x2545_f491;
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

/// The next NOTIFY_MOVER_PAUSED, NOTIFY_MOVER_HALTED or NOTIFY_DATA_HALTED.
async fn next_notice(c: &mut Client) -> Request {
    loop {
        let m = c
            .recv(PATIENCE)
            .await
            .unwrap()
            .expect("the server closed the connection");
        if let Body::Request(
            r @ (Request::NotifyMoverPaused(_)
            | Request::NotifyMoverHalted(_)
            | Request::NotifyDataHalted(_)),
        ) = m.body
        {
            return r;
        }
    }
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    for (name, pw) in [ADMIN, VIEWER] {
        std::fs::write(dir.join(format!("{name}.pw")), format!("{pw}\n")).unwrap();
    }
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\nrest_listen = \"127.0.0.1:0\"\ndata_dir = \"{d}/data\"\n\
         [[export]]\npath = \"{d}\"\n\
         [[tape]]\nname = \"vtape0\"\nkind = \"virtual\"\n\
         [[tape]]\nname = \"vtape1\"\nkind = \"virtual\"\n\
         [[changer]]\nname = \"changer0\"\nkind = \"virtual\"\n\
         [[rest.account]]\nname = \"{a}\"\npassword_file = \"{d}/{a}.pw\"\nrole = \"admin\"\n\
         [[rest.account]]\nname = \"{v}\"\npassword_file = \"{d}/{v}.pw\"\nrole = \"readonly\"\n",
        d = dir.display(),
        a = ADMIN.0,
        v = VIEWER.0,
    );
    let path = dir.join("ndmpd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The run described at the top.
#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_a_held_backup_and_cancels_it() {
    if !common::require_tool("chromium", "chromium") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let server = common::served::start(dir.path(), &config);
    let rest = server.rest;
    let fs = tree(dir.path());

    // `/` is the page, behind the same login as the API, from this origin only
    let (status, head, _) = http_full(rest, "GET", "/", None);
    assert_eq!(status, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{head}"
    );
    let (status, head, body) = http_full(rest, "GET", "/", Some(VIEWER));
    assert_eq!(status, 200, "{body}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/html"), "{head}");
    assert!(
        lower.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(body.contains("<script src=\"/web/app.js\""), "{body}");
    assert_eq!(http(rest, "GET", "/web/app.js", Some(VIEWER)).0, 200);
    assert_eq!(http(rest, "GET", "/web/nothing.js", Some(VIEWER)).0, 404);

    // a LOCAL backup, held at the end of the first mover window
    let mut c = Client::connect(server.addr).await.unwrap();
    c.auth_text("ndmp", server.password.as_bytes())
        .await
        .unwrap();
    common::mover::local_backup_connected(&mut c, W).await;
    c.call_ok(Request::DataStartBackup(DataStartBackupRequest {
        butype_name: "dump".into(),
        env: vec![Pval::new("FILESYSTEM", fs.to_str().unwrap())],
    }))
    .await
    .unwrap();
    match next_notice(&mut c).await {
        Request::NotifyMoverPaused(p) => {
            assert_eq!(p.reason, MoverPauseReason::EOW);
            assert_eq!(p.seek_position, W);
        }
        other => panic!("{other:?}"),
    }
    let jobs = rest_json(rest, "/api/cluster/jobs?fields=*");
    let job = jobs["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["state"] == "paused")
        .unwrap_or_else(|| panic!("no held job: {jobs}"))
        .clone();
    let uuid = job["uuid"].as_str().unwrap().to_string();
    let held = job["progress"]["bytes"].as_u64().unwrap();
    assert!(held > 0, "{job}");
    let session_id = job["session"]["id"].as_str().unwrap().to_string();
    let session = rest_json(
        rest,
        &format!("/api/protocols/ndmp/sessions?id={session_id}&fields=*"),
    );
    let session = &session["records"][0];
    assert_eq!(session["mover"]["bytes_moved"], W, "{session}");

    // the library resource, in the shape openapi.json gives
    let library = rest_json(rest, "/api/ndmpd/library");
    let doc = rest_json(rest, "/api/openapi.json");
    let mut bad = Vec::new();
    common::openapi::violations(
        &library,
        &doc["components"]["schemas"]["ndmpd_library"],
        &doc,
        "library",
        &mut bad,
    );
    assert!(bad.is_empty(), "{bad:#?}");
    let vtape0 = library["drives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "vtape0")
        .unwrap_or_else(|| panic!("{library}"));
    assert_eq!(vtape0["state"], "in use", "{vtape0}");
    let label = vtape0["cartridge"]["label"].as_str().unwrap().to_string();
    assert_eq!(
        vtape0["cartridge"]["blank"], false,
        "the held backup wrote: {vtape0}"
    );

    let browser = Chromium::start();
    let page_url = format!("http://{rest}/");
    let job_row = format!("document.querySelector('#jobs tr[data-uuid=\"{uuid}\"]')");
    let session_row = format!("document.querySelector('#sessions tr[data-id=\"{session_id}\"]')");
    let (bars, mut cdp) = tokio::task::block_in_place(|| {
        let mut cdp = Cdp::connect(browser.port, &browser.page_path());
        cdp.call("Page.enable", json!({}));
        cdp.call("Network.enable", json!({}));

        // read-only: the same rows, every button disabled
        cdp.open_as(&page_url, VIEWER);
        cdp.wait_for(
            "the held job",
            &format!("{job_row}?.querySelector('button.cancel')"),
        );
        cdp.wait_for(
            "its session",
            &format!("{session_row}?.querySelector('button.kill')"),
        );
        assert_eq!(
            cdp.eval("document.getElementById('login').textContent"),
            "viewer (readonly: buttons disabled)"
        );
        let buttons = cdp.eval(
            "[...document.querySelectorAll('main button:not([type=submit])')].map(b => b.disabled)",
        );
        let buttons = buttons.as_array().unwrap();
        assert!(
            buttons.len() >= 2,
            "a Kill and a Cancel at least: {buttons:?}"
        );
        assert!(buttons.iter().all(|d| d == true), "{buttons:?}");

        // an administrator: the same page with live buttons
        cdp.open_as(&page_url, ADMIN);
        cdp.wait_for(
            "the held job's Cancel enabled",
            &format!("{job_row}?.querySelector('button.cancel:not([disabled])')"),
        );
        // the progress bars show the bytes the REST API gives: growing while the DATA server
        // fills what the held mover leaves it room for, then the held value
        let deadline = Instant::now() + PATIENCE;
        let mut readings: Vec<(Option<u64>, Option<u64>, u64, u64)> = Vec::new();
        let bars = loop {
            let dom = cdp.eval(&format!(
                "[{job_row}, {session_row}].map(r => Number(r?.querySelector('progress').dataset.bytes))"
            ));
            let (j, s) = rest_bytes(rest, &uuid, &session_id);
            readings.push((dom[0].as_u64(), dom[1].as_u64(), j, s));
            if (dom[0].as_u64(), dom[1].as_u64()) == (Some(j), Some(s)) {
                break (j, s);
            }
            assert!(
                Instant::now() < deadline,
                "the bars never showed the REST API's bytes: {readings:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let shown: Vec<u64> = readings.iter().filter_map(|r| r.0).collect();
        assert!(
            shown.windows(2).all(|w| w[0] <= w[1]) && shown[0] >= held,
            "the job's bar never goes back: {readings:?}"
        );
        assert_eq!(
            cdp.eval(&format!("{job_row}.dataset.state")),
            "paused",
            "the held job"
        );
        // the library panel: vtape0 in use with the cartridge the backup writes
        let drive = cdp.wait_for(
            "the library",
            "(r => r && [...r.cells].map(c => c.textContent))(document.querySelector('#library tr[data-drive=\"vtape0\"]'))",
        );
        assert_eq!(drive[0], "vtape0", "{drive}");
        assert_eq!(drive[2], "in use", "{drive}");
        assert_eq!(drive[3], label.as_str(), "{drive}");
        // no scheduler configured: the npm.backup panels say so (or list what REST lists)
        let (status, body) = http(
            rest,
            "GET",
            "/api/npm.backup/2.0/scheduled_backups",
            Some(ADMIN),
        );
        let schedules = cdp.wait_for(
            "the schedules panel",
            "document.querySelector('#schedules').textContent",
        );
        if status == 404 {
            assert_eq!(schedules, "not configured", "{body}");
            // the catalog panel too: its servers answer 404 the same way
            let (status, body) = http(rest, "GET", "/api/npm.backup/2.0/servers", Some(ADMIN));
            assert_eq!(status, 404, "{body}");
            let catalog = cdp.wait_for(
                "the catalog panel",
                "document.querySelector('#catalog').textContent",
            );
            assert_eq!(catalog, "not configured");
        } else {
            let n = serde_json::from_str::<Value>(&body).unwrap()["items"]
                .as_array()
                .map_or(0, |a| a.len());
            let rows = cdp.eval("document.querySelectorAll('#schedules tbody tr').length");
            assert_eq!(rows, n, "{body}");
        }

        // Cancel, through the page: confirm() is accepted, the page PATCHes the job
        cdp.eval(&format!(
            "{job_row}.querySelector('button.cancel').click(); true"
        ));
        cdp.wait_for(
            "the job ended",
            &format!("{job_row}?.dataset.state === 'failure'"),
        );
        cdp.wait_for(
            "the cancel's outcome",
            "document.getElementById('notice').textContent === 'job canceled'",
        );
        (bars, cdp)
    });
    assert!(bars.0 >= held && held > 0, "{bars:?}");
    assert!(bars.1 >= W, "the session moved a window at least: {bars:?}");
    assert_eq!(
        cdp.dialogs,
        ["Cancel this job? Its operation is aborted."],
        "one confirm, the cancel's"
    );

    // over NDMP: the DATA server halted ABORTED
    match next_notice(&mut c).await {
        Request::NotifyDataHalted(h) => assert_eq!(h.reason, DataHaltReason::ABORTED),
        other => panic!("{other:?}"),
    }
    // over REST: the job ended as a cancel ends it
    let job = rest_json(rest, &format!("/api/cluster/jobs/{uuid}?fields=*"));
    assert_eq!(job["state"], "failure", "{job}");
    assert_eq!(job["message"], "Canceled", "{job}");

    // the session is still there (its mover paused): Kill, through the page
    tokio::task::block_in_place(|| {
        cdp.wait_for(
            "the session's Kill",
            &format!("{session_row}?.querySelector('button.kill:not([disabled])')"),
        );
        cdp.eval(&format!(
            "{session_row}.querySelector('button.kill').click(); true"
        ));
        cdp.wait_for(
            "the kill's outcome",
            &format!(
                "document.getElementById('notice').textContent === 'session {session_id} killed'"
            ),
        );
        cdp.wait_for("the session gone", &format!("!{session_row}"));
    });
    assert_eq!(
        cdp.dialogs.last().map(String::as_str),
        Some(format!("Kill NDMP session {session_id}? Its DATA and MOVER halt ABORTED.").as_str())
    );
    let left = rest_json(
        rest,
        &format!("/api/protocols/ndmp/sessions?id={session_id}"),
    );
    assert_eq!(left["num_records"], 0, "{left}");
    // over NDMP: the server ended the control connection (recv gives up after PATIENCE
    // and fails the test otherwise)
    while c.recv(PATIENCE).await.unwrap().is_some() {}

    // a backup with the bundled DMA into the catalog the server reads: the library says what
    // the cartridge in vtape1 holds, over REST and on the page
    let catalog = dir.path().join("data/catalog.db");
    let sub = fs.join("sub");
    let out = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(["dma", "backup", "--server", &server.addr.to_string()])
        .args(["--tape", "vtape1", "--password-file"])
        .arg(dir.path().join("data/password"))
        .arg("--catalog")
        .arg(&catalog)
        .arg(&sub)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let library = rest_json(rest, "/api/ndmpd/library");
    assert_eq!(
        library["catalog"],
        json!({"path": catalog.display().to_string(), "error": null})
    );
    let vtape1 = library["drives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "vtape1")
        .unwrap_or_else(|| panic!("{library}"));
    let holds = &vtape1["cartridge"]["holds"];
    assert_eq!(holds.as_array().map(Vec::len), Some(1), "{vtape1}");
    assert_eq!(
        (
            &holds[0]["backup_id"],
            &holds[0]["tape_file"],
            &holds[0]["status"]
        ),
        (&json!(1), &json!(0), &json!("completed")),
        "{vtape1}"
    );
    assert_eq!(holds[0]["path"], sub.display().to_string(), "{vtape1}");
    tokio::task::block_in_place(|| {
        cdp.open_as(&page_url, ADMIN);
        let shown = cdp.wait_for(
            "vtape1's holdings",
            "document.querySelector('#library tr[data-drive=\"vtape1\"] ul.holds')?.textContent",
        );
        assert_eq!(
            shown,
            format!(
                "backup 1: {} level 0 (completed), tape file 0",
                sub.display()
            )
        );
    });
    drop(browser);
}

// ---- the scheduler's panels: Run now, the search, Restore --------------------------------

/// The NDMP login the scheduling ndmpd's DMA uses on its own tape server and on the filer.
const DMA_PW: &str = "dma-pw";

/// The catalog the scheduler is told to keep outside the data directory.
fn elsewhere(dir: &Path) -> std::path::PathBuf {
    dir.join("elsewhere/cat.db")
}

/// A scheduling ndmpd's config: a one-drive virtual library, the two REST accounts, a
/// `[scheduler]` whose catalog is not `DATA_DIR/catalog.db`, the filer at `filer` backing
/// up `tree`, and a schedule "manual" whose rule (1 January) does not fire during a test.
fn write_scheduler_config(dir: &Path, filer: SocketAddr, tree: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    // the generated login's password file, written first: the DMA login is ndmp/DMA_PW
    std::fs::write(data.join("password"), format!("{DMA_PW}\n")).unwrap();
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\nrest_listen = \"127.0.0.1:0\"\ndata_dir = \"{data}\"\n\
         [[export]]\npath = \"{d}\"\n\
         [[tape]]\nname = \"vtape0\"\nkind = \"virtual\"\n\
         [[changer]]\nname = \"changer0\"\nkind = \"virtual\"\n\
         [[rest.account]]\nname = \"{a}\"\npassword = \"{ap}\"\nrole = \"admin\"\n\
         [[rest.account]]\nname = \"{v}\"\npassword = \"{vp}\"\nrole = \"readonly\"\n\
         [scheduler]\nenabled = true\nuser = \"ndmp\"\npassword_file = \"{data}/password\"\n\
         drive = \"vtape0\"\nchanger = \"changer0\"\ncatalog = \"{cat}\"\nmissed = \"skip\"\n\
         [[backup_server]]\nname = \"filer\"\nhost = \"127.0.0.1\"\nport = {port}\npath = \"{tree}\"\n\
         [[schedule]]\nname = \"manual\"\ndescription = \"run by hand\"\nserver = \"filer\"\n\
         rrule = \"FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1\"\nretention = 3\n\
         [[schedule]]\nname = \"paused\"\nserver = \"filer\"\nrrule = \"FREQ=DAILY\"\n\
         active = false\n",
        data = data.display(),
        d = dir.display(),
        a = ADMIN.0,
        ap = ADMIN.1,
        v = VIEWER.0,
        vp = VIEWER.1,
        cat = elsewhere(dir).display(),
        port = filer.port(),
        tree = tree.display(),
    );
    let path = dir.join("ndmpd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A filer (a second ndmpd taking the DMA login) holding a small tree of every kind of file,
/// and the scheduling ndmpd started on [`write_scheduler_config`]; the filer's tree, and the
/// scheduler's directory.
fn filer_and_scheduler() -> (
    common::daemon::Daemon,
    std::path::PathBuf,
    common::served::Server,
    tempfile::TempDir,
) {
    let pwdir = tempfile::tempdir().unwrap();
    let pw = pwdir.path().join("pw");
    std::fs::write(&pw, format!("{DMA_PW}\n")).unwrap();
    let filer = common::daemon::spawn(&["--user", "ndmp", "--password-file", pw.to_str().unwrap()]);
    let tree = filer.dir.path().join("tree");
    common::tree::build(&tree);
    let dir = tempfile::tempdir().unwrap();
    let config = write_scheduler_config(dir.path(), filer.addr, &tree);
    let server = common::served::start(dir.path(), &config);
    (filer, tree, server, dir)
}

/// The npm.backup id of the backup server "filer".
fn filer_id(rest: SocketAddr) -> i64 {
    let servers = rest_json(rest, "/api/npm.backup/2.0/servers");
    servers["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "filer")
        .and_then(|s| s["id"].as_i64())
        .unwrap_or_else(|| panic!("no server \"filer\": {servers}"))
}

impl Cdp {
    /// A real mouse click (press and release of the left button) in the middle of the element
    /// `selector` names, scrolled into view first; false when there is no such element.
    fn click(&mut self, selector: &str) -> bool {
        let at = self.eval(&format!(
            "(e => {{ if (!e) return null; e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})\
             (document.querySelector({}))",
            json!(selector)
        ));
        let Some(xy) = at.as_array() else {
            return false;
        };
        let (x, y) = (xy[0].as_f64().unwrap(), xy[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
        true
    }

    /// Types `text` into the element `selector` names, as a keyboard would (after clearing it).
    fn type_into(&mut self, selector: &str, text: &str) {
        self.eval(&format!(
            "(e => {{ e.value = ''; e.focus(); return true; }})(document.querySelector({}))",
            json!(selector)
        ));
        self.call("Input.insertText", json!({"text": text}));
    }

    /// The job UUID the page's notice names (`… (job UUID)`), once it shows one that is not
    /// in `seen`.
    fn noticed_job(&mut self, what: &str, seen: &[String]) -> String {
        let uuid = self.wait_for(
            what,
            &format!(
                "(m => m && !{}.includes(m[1]) && m[1])\
                 (/\\(job ([0-9a-f-]+)\\)$/.exec(document.getElementById('notice').textContent))",
                json!(seen)
            ),
        );
        uuid.as_str().unwrap().to_string()
    }

    /// Waits for job `uuid`'s row in the jobs panel to show an ended state; that state.
    fn job_ended(&mut self, uuid: &str) -> String {
        let row = format!("document.querySelector('#jobs tr[data-uuid=\"{uuid}\"]')");
        self.wait_for(&format!("job {uuid} in the jobs panel"), &row);
        let state = self.wait_for(
            &format!("job {uuid} ended"),
            &format!(
                "(s => s && !['running', 'paused', 'queued'].includes(s) && s)({row}?.dataset.state)"
            ),
        );
        state.as_str().unwrap().to_string()
    }

    /// The text of each cell of the row `selector` names, once it exists.
    fn cells(&mut self, what: &str, selector: &str) -> Vec<String> {
        let v = self.wait_for(
            what,
            &format!(
                "(r => r && [...r.cells].map(c => c.textContent))(document.querySelector({}))",
                json!(selector)
            ),
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    }
}

/// The scheduler's panels driven by a person in the browser, against a real filer: the
/// schedule shows with its next run; its **Run now** runs a backup the jobs panel shows ending
/// `success` and the catalog panel then lists; the search box finds a file of it; **Restore**
/// of the backup (the destination given at the page's prompt) and of the one file found both
/// end `success` and bring back the tree identical and the file byte for byte; the library
/// panel shows the backup on its cartridge from the scheduler's catalog (not
/// `DATA_DIR/catalog.db`); a read-only login sees the three buttons disabled, and clicking them
/// does nothing.
#[test]
fn the_page_runs_a_schedule_now_searches_and_restores() {
    if !common::require_tool("chromium", "chromium") {
        return;
    }
    let (filer, tree, server, dir) = filer_and_scheduler();
    let rest = server.rest;
    // the schedule as REST gives it, to read the page's "next run" against (a GET: nothing
    // below is driven over REST)
    let schedules = rest_json(rest, "/api/npm.backup/2.0/scheduled_backups");
    let schedule = schedules["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "manual")
        .unwrap_or_else(|| panic!("no schedule \"manual\": {schedules}"))
        .clone();
    let sid = schedule["id"].as_str().unwrap().to_string();
    let next = schedule["next_backup"]
        .as_u64()
        .unwrap_or_else(|| panic!("no next run: {schedule}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        next > now && next <= now + 367 * 86_400,
        "next run {next}, now {now}: {schedule}"
    );

    let browser = Chromium::start();
    let page_url = format!("http://{rest}/");
    let mut cdp = Cdp::connect(browser.port, &browser.page_path());
    cdp.call("Page.enable", json!({}));
    cdp.call("Network.enable", json!({}));
    cdp.open_as(&page_url, ADMIN);

    // the schedule with its next run
    let sched_row = format!("#schedules tr[data-schedule=\"{sid}\"]");
    let cells = cdp.cells("the schedule", &sched_row);
    let next_shown = cdp.eval(&format!("new Date({next} * 1000).toLocaleString()"));
    assert_eq!(
        (
            cells[0].as_str(),
            cells[1].as_str(),
            cells[2].as_str(),
            cells[4].as_str()
        ),
        ("manual", "run by hand", "filer", "active"),
        "{cells:?}"
    );
    assert_eq!(
        cells[5],
        next_shown.as_str().unwrap(),
        "next run: {cells:?}"
    );
    assert_eq!(cells[6], "–", "never run yet: {cells:?}");
    // an inactive schedule has no next run
    let paused = cdp.wait_for(
        "the inactive schedule",
        "(r => r && [...r.cells].map(c => c.textContent))([...document.querySelectorAll('#schedules tr[data-schedule]')]\
         .find(r => r.cells[0].textContent === 'paused'))",
    );
    assert_eq!(
        (&paused[4], &paused[5]),
        (&json!("inactive"), &json!("–")),
        "{paused}"
    );
    assert_eq!(
        cdp.eval("document.querySelectorAll('#catalog tr[data-backup]').length"),
        0,
        "no backup before Run now"
    );

    // Run now: a job that ends success, then the backup in the catalog panel
    assert!(cdp.click(&format!("{sched_row} button.run:not([disabled])")));
    let run_job = cdp.noticed_job("the run's job", &[]);
    assert_eq!(
        cdp.eval("document.getElementById('notice').textContent"),
        format!("schedule manual started (job {run_job})")
    );
    assert_eq!(cdp.job_ended(&run_job), "success");
    let backup_row = cdp.cells(
        "the backup in the catalog panel",
        "#catalog tr[data-backup]",
    );
    assert_eq!(
        cdp.eval("document.querySelectorAll('#catalog tr[data-backup]').length"),
        1,
        "one backup: {backup_row:?}"
    );
    assert_eq!(backup_row[1], "filer", "{backup_row:?}");
    // "NAME — DESCRIPTION", the name the schedule's and the run's time
    let (backup_name, desc) = backup_row[2]
        .split_once(" — ")
        .unwrap_or_else(|| panic!("{backup_row:?}"));
    assert!(backup_name.starts_with("manual "), "{backup_row:?}");
    assert_eq!(desc, "run by hand", "{backup_row:?}");
    assert_eq!(backup_row[3], "completed", "{backup_row:?}");
    let backup = cdp
        .eval("document.querySelector('#catalog tr[data-backup]').dataset.backup")
        .as_str()
        .unwrap()
        .to_string();
    // the schedule's last run shows
    cdp.wait_for(
        "the schedule's last run",
        &format!(
            "document.querySelector({})?.cells[6].textContent !== '–'",
            json!(sched_row)
        ),
    );
    // the library panel: the backup on its cartridge, from the scheduler's catalog
    let held = cdp.wait_for(
        "the backup on a cartridge in the library panel",
        &format!(
            "[...document.querySelectorAll('#library ul.holds li')].map(l => l.textContent)\
             .find(t => t.includes({}))",
            json!(format!(
                ": {} level 0 (completed), tape file 0",
                tree.display()
            ))
        ),
    );
    assert!(held.as_str().unwrap().starts_with("backup "), "{held}");
    let cat_note = cdp.eval("document.querySelector('#library p:last-child').textContent");
    assert_eq!(
        cat_note,
        format!(
            "holdings from the catalog {}",
            elsewhere(dir.path()).display()
        )
    );

    // the search box: typed, then its button; the hit names the file and the backup
    cdp.type_into("#search-name", "b.txt");
    assert!(cdp.click("#search button[type=submit]"));
    let hit_sel = "#search-results tr[data-path$=\"/sub/b.txt\"]";
    let hit = cdp.cells("the search hit", hit_sel);
    assert!(hit[0].ends_with("sub/b.txt"), "{hit:?}");
    assert_eq!(hit[1], "68.4 KiB", "70000 bytes: {hit:?}");
    assert_eq!(hit[3], backup, "the hit's backup: {hit:?}");
    assert_eq!(hit[4], "filer", "{hit:?}");
    let hit_path = hit[0].clone();

    // Restore of the whole backup: the page asks where, the job ends success, the tree is back
    let whole = filer.dir.path().join("whole");
    cdp.prompt_text = whole.display().to_string();
    assert!(cdp.click("#catalog tr[data-backup] button.restore:not([disabled])"));
    let restore_job = cdp.noticed_job("the restore's job", std::slice::from_ref(&run_job));
    assert_eq!(
        cdp.dialogs.last().map(String::as_str),
        Some(format!("Restore backup {backup_name} to which directory on filer?").as_str()),
        "{:?}",
        cdp.dialogs
    );
    assert_eq!(cdp.job_ended(&restore_job), "success");
    common::tree::assert_same(&tree, &whole);

    // Restore of the one file the search found: only it comes back, byte for byte
    let part = filer.dir.path().join("part");
    cdp.prompt_text = part.display().to_string();
    assert!(cdp.click(&format!("{hit_sel} button.restore:not([disabled])")));
    let file_job = cdp.noticed_job("the file restore's job", &[run_job.clone(), restore_job]);
    assert_eq!(
        cdp.dialogs.last().map(String::as_str),
        Some(format!("Restore {hit_path} to which directory on filer?").as_str())
    );
    assert_eq!(cdp.job_ended(&file_job), "success");
    assert_only_file(&part, &tree, "sub/b.txt");
    assert_eq!(cdp.dialogs.len(), 2, "{:?}", cdp.dialogs);

    // what the page showed is what the catalog holds
    let list = rest_json(
        rest,
        &format!("/api/npm.backup/2.0/backups/server/{}", filer_id(rest)),
    );
    assert_eq!(list["completed"][0]["id"], backup.as_str(), "{list}");
    assert_eq!(list["completed"][0]["sid"], sid.as_str(), "{list}");

    // read-only: the same rows, Run now and both Restores disabled; clicks do nothing
    cdp.open_as(&page_url, VIEWER);
    cdp.cells("the schedule", &sched_row);
    cdp.cells("the backup", "#catalog tr[data-backup]");
    cdp.type_into("#search-name", "b.txt");
    assert!(cdp.click("#search button[type=submit]"));
    cdp.cells("the search hit", hit_sel);
    let disabled = cdp.eval(&format!(
        "[{}, '#catalog tr[data-backup] button.restore', {}]\
         .map(s => document.querySelector(s)?.disabled)",
        json!(format!("{sched_row} button.run")),
        json!(format!("{hit_sel} button.restore"))
    ));
    assert_eq!(
        disabled,
        json!([true, true, true]),
        "Run now, Restore, Restore"
    );
    let jobs_before = rest_json(rest, "/api/cluster/jobs")["num_records"].clone();
    for b in [
        format!("{sched_row} button.run"),
        "#catalog tr[data-backup] button.restore".to_string(),
        format!("{hit_sel} button.restore"),
    ] {
        assert!(cdp.click(&b), "{b}");
    }
    // a poll of the page later (the notice would show a start, or a refusal, by then)
    cdp.eval("new Promise(r => setTimeout(() => r(true), 2000))");
    assert_eq!(cdp.dialogs.len(), 2, "no prompt for a read-only login");
    assert_eq!(
        cdp.eval("document.getElementById('notice').textContent"),
        ""
    );
    assert_eq!(
        rest_json(rest, "/api/cluster/jobs")["num_records"],
        jobs_before
    );
    drop(browser);
}

/// `/api/ndmpd/library` reads the catalog the scheduler writes: with `[scheduler] catalog`
/// outside the data directory, a scheduled backup shows as what its cartridge holds.
#[test]
fn the_library_reads_the_schedulers_catalog() {
    let (_filer, tree, server, dir) = filer_and_scheduler();
    let rest = server.rest;
    let schedules = rest_json(rest, "/api/npm.backup/2.0/scheduled_backups");
    let sid = schedules["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "manual")
        .unwrap_or_else(|| panic!("{schedules}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = http(
        rest,
        "POST",
        &format!("/api/npm.backup/2.0/scheduled_backups/items/{sid}/run"),
        Some(ADMIN),
    );
    assert_eq!(status, 202, "{body}");
    let uuid = serde_json::from_str::<Value>(&body).unwrap()["job"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + PATIENCE;
    let job = loop {
        let j = rest_json(rest, &format!("/api/cluster/jobs/{uuid}?fields=*"));
        if !["running", "queued"].contains(&j["state"].as_str().unwrap_or("")) {
            break j;
        }
        assert!(Instant::now() < deadline, "the run did not end: {j}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(job["state"], "success", "{job}");
    let list = rest_json(
        rest,
        &format!("/api/npm.backup/2.0/backups/server/{}", filer_id(rest)),
    );
    let b = &list["completed"][0];
    let label = b["media"][0]["cartridge"]
        .as_str()
        .unwrap_or_else(|| panic!("no cartridge: {list}"));

    let library = rest_json(rest, "/api/ndmpd/library");
    assert_eq!(
        library["catalog"],
        json!({"path": elsewhere(dir.path()).display().to_string(), "error": null}),
        "{library}"
    );
    assert!(
        !dir.path().join("data/catalog.db").exists(),
        "a second catalog was created"
    );
    let carts: Vec<&Value> = ["drives", "slots", "import_export"]
        .iter()
        .flat_map(|k| library[*k].as_array().unwrap())
        .map(|p| &p["cartridge"])
        .chain(library["outside"].as_array().unwrap())
        .filter(|c| !c.is_null())
        .collect();
    let cart = carts
        .iter()
        .find(|c| c["label"] == label)
        .unwrap_or_else(|| panic!("no cartridge {label}: {library}"));
    let holds = cart["holds"].as_array().unwrap();
    assert_eq!(holds.len(), 1, "{cart}");
    assert_eq!(holds[0]["path"], tree.display().to_string(), "{cart}");
    assert_eq!(holds[0]["status"], "completed", "{cart}");
    assert_eq!(holds[0]["tape_file"], 0, "{cart}");
    assert_eq!(holds[0]["bytes"], b["size"], "{cart} vs {b}");
    // no other cartridge claims it
    let others = carts
        .iter()
        .filter(|c| c["label"] != label)
        .flat_map(|c| c["holds"].as_array().unwrap())
        .count();
    assert_eq!(others, 0, "{library}");
}
