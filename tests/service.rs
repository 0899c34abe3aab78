//! ndmpd as a service manager runs it: the systemd notification protocol (READY, WATCHDOG,
//! RELOADING, STOPPING on a NOTIFY_SOCKET we listen on), SIGHUP reload, and check-config.

mod common;

use ndmpd::client::Client;
use ndmpd::wire::messages::{TapeOpenRequest, Void};
use ndmpd::wire::types::TapeOpenMode;
use ndmpd::wire::{NdmpError, Request};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A daemon started from a config file, with NOTIFY_SOCKET pointing at `notify` and its log
/// in `log`.
struct Service {
    child: Child,
    addr: SocketAddr,
    notify: UnixDatagram,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// The next notification datagram. The read timeout only keeps a broken server from
    /// hanging the test; nothing is asserted about time.
    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification from ndmpd: {e}; log: {}", self.log()));
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// Notifications up to and including the first one holding `line`, returned together.
    fn until(&self, line: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let m = self.next();
            let done = m.lines().any(|l| l == line);
            seen.push(m);
            if done {
                return seen;
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill only sends a signal to our own child
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `ndmpd dma ARGS` against this server as `user` (password file `USER.pw`).
    fn dma(&self, user: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ndmpd"));
        cmd.arg("dma")
            .args(args)
            .args(["--server", &self.addr.to_string(), "--user", user])
            .args(["--password-file", s(&self.path(&format!("{user}.pw")))])
            .env_remove("NDMPD_PASSWORD")
            .env_remove("NDMPD_CATALOG");
        if args[0] != "query" {
            cmd.args(["--catalog", s(&self.path("catalog.db"))]);
        }
        cmd.output().unwrap()
    }
}

/// Config text: users (each with password file DIR/USER.pw), exports, virtual drives, one
/// virtual changer.
fn config(dir: &Path, users: &[&str], exports: &[&str], drives: &[&str]) -> String {
    let mut c = format!(
        "listen = [\"127.0.0.1:0\"]\nrest_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
         [library]\ncartridge_capacity = \"64M\"\n",
        dir.join("data").display()
    );
    for u in users {
        let pw = dir.join(format!("{u}.pw"));
        std::fs::write(&pw, format!("{u}-secret\n")).unwrap();
        c += &format!(
            "[[auth.users]]\nname = \"{u}\"\npassword_file = \"{}\"\n",
            pw.display()
        );
    }
    for e in exports {
        c += &format!("[[export]]\npath = \"{}\"\n", dir.join(e).display());
    }
    for d in drives {
        c += &format!("[[tape]]\nname = \"{d}\"\nkind = \"virtual\"\n");
    }
    c + "[[changer]]\nname = \"changer0\"\nkind = \"virtual\"\n"
}

/// Starts `ndmpd serve --config DIR/ndmpd.toml` with `env`, after writing `cfg` there.
fn start(dir: tempfile::TempDir, cfg: &str, env: &[(&str, &str)]) -> Service {
    let cfg_path = dir.path().join("ndmpd.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let sock = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&sock).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let log = dir.path().join("ndmpd.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(["serve", "--config", s(&cfg_path)])
        .env("NOTIFY_SOCKET", &sock)
        .envs(env.iter().copied())
        .env_remove("WATCHDOG_PID")
        .env_remove("NDMPD_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = match lines.next() {
            Some(l) => l.unwrap(),
            None => panic!(
                "ndmpd ended before listening: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        };
        if let Some(a) = line.strip_prefix("ndmpd: NDMP v4 listening on ") {
            break a.parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Service {
        child,
        addr,
        notify,
        log,
        dir,
    }
}

/// A control connection logged in as `user` with TEXT auth.
async fn login(addr: SocketAddr, user: &str) -> Client {
    let mut c = Client::connect(addr).await.unwrap();
    c.auth_text(user, format!("{user}-secret").as_bytes())
        .await
        .unwrap();
    c
}

async fn err(c: &mut Client, r: Request) -> NdmpError {
    common::ndmp_err(c, r).await
}

fn open(dev: &str) -> Request {
    Request::TapeOpen(TapeOpenRequest {
        device: dev.into(),
        mode: TapeOpenMode::READ,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_after_listening_then_watchdog_then_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &["alpha"], &[], &["vtape0"]);
    // 200 ms: a ping every 100 ms
    let svc = start(dir, &cfg, &[("WATCHDOG_USEC", "200000")]);
    let before = svc.until("READY=1");
    let ready = before.last().unwrap();
    assert!(
        ready.contains(&format!("STATUS=serving NDMP on {}", svc.addr)),
        "{ready:?}"
    );
    // READY means the port takes connections: a DMA logs in at once
    let mut c = login(svc.addr, "alpha").await;
    assert_eq!(
        err(&mut c, Request::ConfigGetServerInfo(Void)).await,
        NdmpError::NO_ERR
    );
    svc.until("WATCHDOG=1");
    svc.until("WATCHDOG=1");
    svc.signal(libc::SIGTERM);
    let rest = svc.until("STOPPING=1");
    assert!(rest.last().unwrap().contains("STATUS=stopping"), "{rest:?}");
    drop(c);
    let mut svc = svc;
    let status = svc.child.wait().unwrap();
    assert!(status.success(), "{status:?}: {}", svc.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn no_watchdog_pings_without_watchdog_usec() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &["alpha"], &[], &["vtape0"]);
    let svc = start(dir, &cfg, &[]);
    let before = svc.until("READY=1");
    svc.signal(libc::SIGTERM);
    let after = svc.until("STOPPING=1");
    let all: Vec<&String> = before.iter().chain(&after).collect();
    assert!(
        all.iter().all(|m| !m.contains("WATCHDOG=1")),
        "pinged without being asked: {all:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_users_exports_and_drives_while_sessions_go_on() {
    let dir = tempfile::tempdir().unwrap();
    for (e, file) in [("a", "one.txt"), ("b", "two.txt")] {
        std::fs::create_dir_all(dir.path().join(e).join("sub")).unwrap();
        std::fs::write(dir.path().join(e).join("sub").join(file), file.repeat(999)).unwrap();
    }
    let cfg = config(dir.path(), &["alpha"], &["a"], &["vtape0", "vtape1"]);
    let svc = start(dir, &cfg, &[]);
    svc.until("READY=1");

    // a session opened before the reload, holding vtape1, which the reload removes
    let mut old = login(svc.addr, "alpha").await;
    assert_eq!(err(&mut old, open("vtape1")).await, NdmpError::NO_ERR);
    std::fs::write(svc.path("beta.pw"), "beta-secret\n").unwrap();
    let refused = svc.dma("beta", &["query"]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "beta before the reload: {refused:?}"
    );
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("NOT_AUTHORIZED_ERR"), "{why}");

    let new_cfg = "max_sessions = 7\n".to_string()
        + &config(
            svc.dir.path(),
            &["alpha", "beta"],
            &["a", "b"],
            &["vtape0", "vtape2"],
        );
    std::fs::write(svc.path("ndmpd.toml"), new_cfg).unwrap();
    svc.signal(libc::SIGHUP);
    let reload = svc.until("READY=1");
    assert!(
        reload[0].starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reload:?}"
    );
    let log = svc.log();
    // stderr is a file here, as under the journal: plain lines without colour codes
    assert!(!log.contains('\u{1b}'), "colour codes in the log: {log}");
    assert!(
        log.contains("max_sessions changed: it needs a restart, the running value stays"),
        "{log}"
    );
    assert!(
        log.contains("configuration reloaded: 2 login(s)")
            && log.contains("drives [vtape0, vtape2]"),
        "{log}"
    );

    // the new user backs up the new export, and it restores identical
    let q = svc.dma("beta", &["query"]);
    let text = String::from_utf8_lossy(&q.stdout);
    assert!(q.status.success(), "{q:?}");
    assert!(
        text.contains("vtape2") && !text.contains("vtape1"),
        "{text}"
    );
    let b = svc.path("b");
    let out = svc.dma("beta", &["backup", "--tape", "vtape0", s(&b)]);
    assert!(out.status.success(), "backup: {out:?}\n{}", svc.log());
    let dest = svc.path("b/restored");
    let out = svc.dma("beta", &["restore", s(&dest)]);
    assert!(out.status.success(), "restore: {out:?}\n{}", svc.log());
    let diff = Command::new("diff")
        .arg("-r")
        .arg(b.join("sub"))
        .arg(dest.join("sub"))
        .output()
        .unwrap();
    assert!(diff.status.success(), "{diff:?}");

    // the session from before the reload still works and keeps its drive until it closes it
    assert_eq!(
        err(&mut old, Request::TapeGetState(Void)).await,
        NdmpError::NO_ERR
    );
    assert_eq!(
        err(&mut old, Request::TapeClose(Void)).await,
        NdmpError::NO_ERR
    );
    assert_eq!(
        err(&mut old, open("vtape1")).await,
        NdmpError::NO_DEVICE_ERR
    );

    // a broken config is refused in the log, and the one in force stays
    std::fs::write(svc.path("ndmpd.toml"), "listen = [\n[[export]]\n").unwrap();
    svc.signal(libc::SIGHUP);
    let refused = svc.until("READY=1");
    assert!(
        refused.last().unwrap().contains("STATUS=reload refused"),
        "{refused:?}"
    );
    let log = svc.log();
    let line = log
        .lines()
        .find(|l| l.contains("reload refused"))
        .unwrap_or_else(|| panic!("no refusal in the log: {log}"));
    assert!(
        line.contains("ndmpd.toml:2:11: unclosed array")
            && line.ends_with("; the configuration in force stays"),
        "{line}"
    );
    let q = svc.dma("beta", &["query"]);
    assert!(q.status.success(), "beta after a refused reload: {q:?}");
    assert_eq!(
        err(&mut old, Request::ConfigGetServerInfo(Void)).await,
        NdmpError::NO_ERR
    );
}

fn check_config(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let text = text.replace("DIR", s(dir.path()));
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(["check-config", s(&path)])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    (
        out.status.code().unwrap(),
        stdout
            .replace(s(&path), "c.toml")
            .replace(s(dir.path()), "DIR"),
    )
}

#[test]
fn check_config_reports_every_problem_with_its_line() {
    let (code, out) = check_config(
        "listen = [\"127.0.0.1:10000\"]\n\
         max_sesions = 3\n\
         \n\
         [[auth.users]]\n\
         name = \"backup\"\n\
         password_file = \"DIR/missing.pw\"\n\
         \n\
         [[export]]\n\
         path = \"DIR/nowhere\"\n\
         \n\
         [[tape]]\n\
         name = \"t0\"\n\
         kind = \"virtual\"\n\
         [[tape]]\n\
         name = \"t0\"\n\
         kind = \"virtual\"\n\
         [mover]\n\
         data_ports = [10, 5]\n",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "c.toml:2:1: error: unknown field `max_sesions`, expected one of `listen`, \
             `rest_listen`, `svm_name`, `data_dir`, `max_sessions`, `max_record`, `auth`, \
             `export`, `tape`, `changer`, `library`, `mover`, `admission`, `rest`, \
             `scheduler`, `backup_server`, `schedule`",
            "c.toml:6:1: error: user \"backup\": cannot read DIR/missing.pw: No such file or \
             directory (os error 2)",
            "c.toml:9:1: error: export DIR/nowhere: No such file or directory (os error 2)",
            "c.toml:15:1: error: device name \"t0\" is configured twice",
            "c.toml:18:1: error: mover.data_ports [10, 5] is not a port range",
            "c.toml: 5 errors, 0 warnings: ndmpd would not start with it",
        ],
        "{out}"
    );
    assert_eq!(code, 1);
}

#[test]
fn check_config_syntax_errors_have_lines_too() {
    let (code, out) = check_config("max_sessions = 4\nlisten = [\"a\"\n[auth]\n");
    assert_eq!(code, 1);
    assert!(out.starts_with("c.toml:3:1: error: "), "{out}");
    let (code, out) = check_config("[[tape]]\nname = \"t\"\n");
    assert_eq!(code, 1);
    assert!(
        out.starts_with("c.toml:1:1: error: missing field `kind`\n"),
        "{out}"
    );
}

#[test]
fn check_config_ok_on_a_clean_file_and_warns_without_failing() {
    let (code, out) = check_config(
        "data_dir = \"DIR/data\"\n[[export]]\npath = \"DIR\"\n[[auth.users]]\nname = \"u\"\npassword = \"p\"\n",
    );
    assert_eq!((code, out.as_str()), (0, "c.toml: OK\n"));
    let (code, out) = check_config("max_sessions = 3\n");
    assert_eq!(code, 0);
    assert!(
        out.starts_with("c.toml: warning: no export root")
            && out.ends_with("c.toml: OK (1 warning)\n"),
        "{out}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(["check-config", "/nonexistent/ndmpd.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/nonexistent/ndmpd.toml: error: cannot read it: No such file or directory (os error 2)\n"
    );
}

#[test]
fn json_log_lines_are_json_objects() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &["alpha"], &[], &["vtape0"]);
    let cfg_path = dir.path().join("ndmpd.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(["serve", "--log-format", "json", "--config", s(&cfg_path)])
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(l)) = out.next() {
        if l.starts_with("ndmpd: NDMP v4 listening on ") {
            break;
        }
    }
    // SAFETY: kill only sends a signal to our own child
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let mut messages = Vec::new();
    for line in err.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        messages.push(v["message"].as_str().unwrap_or("").to_string());
    }
    let drive = format!(
        "drive vtape0 -> cartridge VT0001 ({})",
        dir.path()
            .join("data/vtl/cartridges/VT0001.vtape")
            .display()
    );
    assert!(messages.contains(&drive), "{messages:?}");
    assert!(
        messages.iter().any(|m| m == "server stopped"),
        "{messages:?}"
    );
    assert!(!err.contains('\u{1b}'), "colour codes in the log: {err}");
}

#[test]
fn generate_assets_writes_man_pages_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(["generate-assets", s(dir.path())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut pages: Vec<String> = std::fs::read_dir(dir.path().join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "ndmpd-check-config.1",
            "ndmpd-dma.1",
            "ndmpd-pcap.1",
            "ndmpd-serve.1",
            "ndmpd-vtape.1",
            "ndmpd.1"
        ]
    );
    let page = std::fs::read_to_string(dir.path().join("man/ndmpd-serve.1")).unwrap();
    assert!(page.contains("\n.TH ndmpd-serve 1 "), "{page}");
    assert!(
        page.contains("\\fBndmpd serve\\fR [\\fB\\-\\-config\\fR]"),
        "{page}"
    );
    assert!(
        page.contains("\\fB\\-\\-log\\-format\\fR \\fI<LOG_FORMAT>\\fR [default: plain]"),
        "{page}"
    );
    let bash = std::fs::read_to_string(dir.path().join("completions/ndmpd.bash")).unwrap();
    assert!(bash.contains("check-config") && bash.contains("--log-format"));
    for f in ["completions/_ndmpd", "completions/ndmpd.fish"] {
        let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert!(text.contains("check-config"), "{f}");
    }
}
