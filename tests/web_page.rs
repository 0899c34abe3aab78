//! The operator's web page in a real browser: headless Chromium, driven over the DevTools
//! protocol (a small websocket client below), loads `/` of the ndmpd binary during a LOCAL
//! backup held at a mover window end, shows the job's and the session's progress and the
//! library as the REST API reports them, disables its buttons for a read-only login; its
//! "Cancel" really aborts the backup (NDMP DATA halts ABORTED, the job ends "Canceled") and its
//! "Kill" ends the session; a backup in the catalog shows in the library as what vtape1 holds.

mod common;

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
