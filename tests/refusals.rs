//! Every class of refusal a DMA can meet, provoked on the real server: the error code, and
//! the LOG_MESSAGE in words tied to the request that arrived before its reply. Also the
//! bundled DMA printing those words, the start-up banner and warnings, and the debug log of
//! every message.

mod common;

use ndmpd::client::{Client, ClientError};
use ndmpd::wire::header::Body;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::{MessageCode, NdmpError, Opaque, Request};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const USER: &str = "ndmp";
const PW: &[u8] = b"refusal-pw";

async fn login(t: &common::TestServer) -> Client {
    let mut c = Client::connect(t.addr).await.unwrap();
    c.auth_text(USER, PW).await.unwrap();
    c
}

/// The code `req` is refused with (in the body or the header) and the words the server
/// posted about it before the reply.
async fn refusal(c: &mut Client, req: Request) -> (NdmpError, String) {
    let code = match c.call(req).await {
        Ok(r) => r.error().expect("a reply with an error field"),
        Err(ClientError::Ndmp { error, .. }) => error,
        Err(e) => panic!("{e}"),
    };
    let why = c.last_why().unwrap_or_default().to_string();
    (code, why)
}

/// Asserts `req` is refused with `code` and words containing each of `words`.
async fn assert_refused(c: &mut Client, req: Request, code: NdmpError, words: &[&str]) {
    let what = req.code();
    let (got, why) = refusal(c, req).await;
    assert_eq!(got, code, "{what:?}: {why}");
    for w in words {
        assert!(why.contains(w), "{what:?} {got:?}: {why:?} lacks {w:?}");
    }
}

fn backup(fs: Option<&str>, butype: &str) -> Request {
    let env = fs
        .map(|f| vec![Pval::new("FILESYSTEM", f)])
        .unwrap_or_default();
    Request::DataStartBackup(DataStartBackupRequest {
        butype_name: butype.into(),
        env,
    })
}

fn recover_to(dest: &str) -> Request {
    Request::DataStartRecover(DataStartRecoverRequest {
        env: vec![],
        nlist: vec![Name {
            original_path: "/f".into(),
            destination_path: dest.into(),
            ..Default::default()
        }],
        butype_name: "dump".into(),
    })
}

/// This session's DATA server connected to its mover over LOCAL, ready to start.
async fn data_connected(c: &mut Client) {
    common::mover::local_backup_connected(c, u64::MAX).await;
}

#[tokio::test]
async fn data_refusals_say_what_and_why() {
    let t = common::start(USER, PW, |_| {}).await;
    let export = t.dir.path().canonicalize().unwrap();
    let root = export.display().to_string();
    let mut c = login(&t).await;
    // state: nothing is connected yet
    assert_refused(
        &mut c,
        backup(Some(&root), "dump"),
        NdmpError::ILLEGAL_STATE_ERR,
        &["DATA_START_BACKUP needs a data connection"],
    )
    .await;
    data_connected(&mut c).await;
    // the environment and the path, checked against the export root
    assert_refused(
        &mut c,
        backup(Some("/etc"), "dump"),
        NdmpError::ILLEGAL_ARGS_ERR,
        &[&format!(
            "FILESYSTEM /etc is not inside an export root ({root})"
        )],
    )
    .await;
    assert_refused(
        &mut c,
        backup(None, "dump"),
        NdmpError::ILLEGAL_ARGS_ERR,
        &["FILESYSTEM is missing"],
    )
    .await;
    assert_refused(
        &mut c,
        backup(Some(&format!("{root}/nothere")), "dump"),
        NdmpError::ILLEGAL_ARGS_ERR,
        &["nothere", "No such file"],
    )
    .await;
    assert_refused(
        &mut c,
        backup(Some(&root), "cpio"),
        NdmpError::ILLEGAL_ARGS_ERR,
        &["backup type \"cpio\" is not offered", "dump and tar"],
    )
    .await;
    // nlist destinations
    assert_refused(
        &mut c,
        recover_to("/etc/x"),
        NdmpError::ILLEGAL_ARGS_ERR,
        &["destination \"/etc/x\" is not inside an export root", &root],
    )
    .await;
    assert_refused(
        &mut c,
        recover_to("relative/x"),
        NdmpError::ILLEGAL_ARGS_ERR,
        &["is not an absolute path"],
    )
    .await;
    assert_refused(
        &mut c,
        Request::DataGetEnv(Void),
        NdmpError::ILLEGAL_STATE_ERR,
        &["no backup has started"],
    )
    .await;
}

#[tokio::test]
async fn device_names_are_refused_with_the_names_there_are() {
    let t = common::start(USER, PW, |_| {}).await;
    let mut c = login(&t).await;
    assert_refused(
        &mut c,
        Request::TapeOpen(TapeOpenRequest {
            device: "vtape9".into(),
            mode: TapeOpenMode::READ,
        }),
        NdmpError::NO_DEVICE_ERR,
        &["no such drive 'vtape9': drives are vtape0, vtape1"],
    )
    .await;
    assert_refused(
        &mut c,
        Request::ScsiOpen(ScsiOpenRequest { device: "x".into() }),
        NdmpError::NO_DEVICE_ERR,
        &["no such changer 'x': changers are changer0"],
    )
    .await;
    // nothing open: the state itself is the answer, and it is said in words too
    assert_refused(
        &mut c,
        Request::TapeRead(TapeReadRequest { count: 10 }),
        NdmpError::DEV_NOT_OPEN_ERR,
        &["no tape is open on this connection (TAPE_OPEN first)"],
    )
    .await;
    assert_refused(
        &mut c,
        Request::TapeMtio(TapeMtioRequest {
            tape_op: MtioOp::FSF,
            count: 1,
        }),
        NdmpError::DEV_NOT_OPEN_ERR,
        &["no tape is open"],
    )
    .await;
    assert_refused(
        &mut c,
        Request::ScsiGetState(Void),
        NdmpError::DEV_NOT_OPEN_ERR,
        &["no SCSI device is open on this connection"],
    )
    .await;
    // a tape read at a filemark: a condition, still explained
    c.call_ok(Request::TapeOpen(TapeOpenRequest {
        device: "vtape1".into(),
        mode: TapeOpenMode::RDWR,
    }))
    .await
    .unwrap();
    c.call_ok(Request::TapeMtio(TapeMtioRequest {
        tape_op: MtioOp::EOF,
        count: 1,
    }))
    .await
    .unwrap();
    c.call_ok(Request::TapeMtio(TapeMtioRequest {
        tape_op: MtioOp::REW,
        count: 1,
    }))
    .await
    .unwrap();
    assert_refused(
        &mut c,
        Request::TapeRead(TapeReadRequest { count: 512 }),
        NdmpError::EOF_ERR,
        &["TAPE_READ on vtape1: a filemark was reached"],
    )
    .await;
    assert_refused(
        &mut c,
        Request::ScsiOpen(ScsiOpenRequest {
            device: "changer0".into(),
        }),
        NdmpError::DEVICE_OPENED_ERR,
        &["a device is already open on this connection"],
    )
    .await;
}

#[tokio::test]
async fn mover_connect_and_header_refusals_say_what_and_why() {
    let t = common::start(USER, PW, |_| {}).await;
    // before authentication
    let mut c = Client::connect(t.addr).await.unwrap();
    assert_refused(
        &mut c,
        Request::DataGetState(Void),
        NdmpError::NOT_AUTHORIZED_ERR,
        &[
            "DATA_GET_STATE needs a logged-in session",
            "CONNECT_CLIENT_AUTH",
        ],
    )
    .await;
    let (code, why) = refusal(
        &mut c,
        Request::ConnectClientAuth(ConnectClientAuthRequest {
            auth_data: AuthData::Text(AuthText {
                auth_id: "ndmp".into(),
                auth_password: "wrong".into(),
            }),
        }),
    )
    .await;
    assert_eq!(code, NdmpError::NOT_AUTHORIZED_ERR);
    assert!(
        why.contains("authentication of user \"ndmp\" failed: unknown user or wrong password"),
        "{why}"
    );
    assert_refused(
        &mut c,
        Request::ConnectClientAuth(ConnectClientAuthRequest {
            auth_data: AuthData::None,
        }),
        NdmpError::ILLEGAL_ARGS_ERR,
        &["authentication method NONE is not offered (this server offers MD5, TEXT)"],
    )
    .await;
    c.auth_text(USER, PW).await.unwrap();
    // the mover's state table
    assert_refused(
        &mut c,
        Request::MoverContinue(Void),
        NdmpError::ILLEGAL_STATE_ERR,
        &["the mover is not PAUSED"],
    )
    .await;
    assert_refused(
        &mut c,
        Request::MoverListen(MoverListenRequest {
            mode: MoverMode::READ,
            addr_type: AddrType::TCP,
        }),
        NdmpError::PRECONDITION_ERR,
        &["MOVER_SET_RECORD_SIZE"],
    )
    .await;
    // a code nobody implements: refused in the header, with words all the same
    let unknown = Request::Unknown {
        code: MessageCode(0x0777),
        body: Opaque(Default::default()),
    };
    assert_refused(
        &mut c,
        unknown,
        NdmpError::NOT_SUPPORTED_ERR,
        &["message 0x777 is not supported"],
    )
    .await;
}

/// The position of the first post that `f` picks.
fn position(posts: &[ndmpd::wire::header::Message], f: impl Fn(&Request) -> bool) -> usize {
    posts
        .iter()
        .position(|m| matches!(&m.body, Body::Request(r) if f(r)))
        .unwrap_or_else(|| panic!("not posted: {posts:?}"))
}

fn log_saying(r: &Request, words: &str) -> bool {
    matches!(r, Request::LogMessage(l) if l.entry.to_string().contains(words))
}

#[tokio::test]
async fn halts_other_than_success_say_why_before_the_notice() {
    let t = common::start(USER, PW, |_| {}).await;
    let mut c = login(&t).await;
    c.call_ok(Request::DataListen(DataListenRequest {
        addr_type: AddrType::TCP,
    }))
    .await
    .unwrap();
    c.call_ok(Request::DataAbort(Void)).await.unwrap();
    let posts = c.take_posts();
    let log = position(&posts, |r| {
        log_saying(
            r,
            "DATA halted ABORTED: the operation was aborted by the DMA (DATA_ABORT)",
        )
    });
    let halted = position(
        &posts,
        |r| matches!(r, Request::NotifyDataHalted(h) if h.reason == DataHaltReason::ABORTED),
    );
    assert!(log < halted, "{posts:?}");

    c.call_ok(Request::MoverSetRecordSize(MoverSetRecordSizeRequest {
        len: 10240,
    }))
    .await
    .unwrap();
    c.call_ok(Request::TapeOpen(TapeOpenRequest {
        device: "vtape0".into(),
        mode: TapeOpenMode::RDWR,
    }))
    .await
    .unwrap();
    c.call_ok(Request::MoverSetWindow(MoverRangeRequest {
        offset: 0,
        length: u64::MAX,
    }))
    .await
    .unwrap();
    c.call_ok(Request::MoverListen(MoverListenRequest {
        mode: MoverMode::READ,
        addr_type: AddrType::TCP,
    }))
    .await
    .unwrap();
    c.call_ok(Request::MoverAbort(Void)).await.unwrap();
    let posts = c.take_posts();
    let log = position(&posts, |r| {
        log_saying(r, "MOVER halted ABORTED: the DMA aborted it (MOVER_ABORT)")
    });
    let halted = position(
        &posts,
        |r| matches!(r, Request::NotifyMoverHalted(h) if h.reason == MoverHaltReason::ABORTED),
    );
    assert!(log < halted, "{posts:?}");
}

#[tokio::test]
async fn without_an_export_backup_and_restore_say_how_to_add_one() {
    let t = common::start(USER, PW, |cfg| cfg.exports.clear()).await;
    let mut c = login(&t).await;
    data_connected(&mut c).await;
    for req in [backup(Some("/tmp"), "dump"), recover_to("/tmp/x")] {
        assert_refused(
            &mut c,
            req,
            NdmpError::ILLEGAL_ARGS_ERR,
            &[
                "this server has no export root",
                "--export DIR",
                "[[export]] path = \"DIR\"",
            ],
        )
        .await;
    }
}

/// `ndmpd serve` with `args`, `env` and its data under `dir`, stderr into `dir/stderr`:
/// the child, its NDMP address and the stdout lines up to the one that gives it.
struct Serve {
    child: Child,
    addr: SocketAddr,
    banner: Vec<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
    serve_in(dir, dir, args, env)
}

/// [`serve`] with `cwd` as the working directory.
fn serve_in(dir: &Path, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0"])
        .args(args)
        .current_dir(cwd)
        .env_remove("NDMPD_PASSWORD")
        .env_remove("NDMPD_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    let addr = loop {
        let line = lines.next().expect("ndmpd printed no address").unwrap();
        banner.push(line.clone());
        if let Some(a) = line.strip_prefix("ndmpd: NDMP v4 listening on ") {
            break a.parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Serve {
        child,
        addr,
        banner,
    }
}

fn dma(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .arg("dma")
        .args(args)
        .env_remove("NDMPD_PASSWORD")
        .output()
        .unwrap()
}

#[test]
fn the_bundled_dma_prints_the_servers_words() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    std::fs::create_dir(&export).unwrap();
    let s = serve(dir.path(), &["--export", export.to_str().unwrap()], &[]);
    let pw = dir.path().join("data/password");
    let out = dma(&[
        "backup",
        "--server",
        &s.addr.to_string(),
        "--password-file",
        pw.to_str().unwrap(),
        "/etc",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let export = export.canonicalize().unwrap();
    let expected = format!(
        "DATA_START_BACKUP failed: ILLEGAL_ARGS_ERR: FILESYSTEM /etc is not inside an export \
         root ({})",
        export.display()
    );
    assert!(err.contains(&expected), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_from_root_without_config_nothing_is_exported_and_it_says_how() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve_in(dir.path(), Path::new("/"), &[], &[]);
    let banner = s.banner.join("\n");
    for words in [
        "ndmpd: warning: no export root: DMAs can neither back up nor restore; start ndmpd \
         serve with --export DIR, or add [[export]] path = \"DIR\" to its config file",
        "ndmpd: no export root: start ndmpd serve with --export DIR",
        "ndmpd: drive vtape0 -> cartridge ",
        "ndmpd: drive vtape1 -> cartridge ",
        "ndmpd: changer changer0 -> virtual library (8 slots, 1 import/export",
        "ndmpd: REST view on http://127.0.0.1:",
        "ndmpd: first start. DMA login: user ndmp, password ",
    ] {
        assert!(banner.contains(words), "{words:?} not in:\n{banner}");
    }
    assert!(!banner.contains("ndmpd: export "), "{banner}");
    let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(
        log.contains("WARN") && log.contains("no export root"),
        "{log}"
    );
    // and a DMA hears the same when it tries
    let pw = std::fs::read_to_string(dir.path().join("data/password")).unwrap();
    let mut c = Client::connect(s.addr).await.unwrap();
    c.auth_md5(USER, pw.trim().as_bytes()).await.unwrap();
    data_connected(&mut c).await;
    assert_refused(
        &mut c,
        backup(Some("/"), "dump"),
        NdmpError::ILLEGAL_ARGS_ERR,
        &["this server has no export root", "--export DIR"],
    )
    .await;
}

#[test]
fn missing_devices_and_an_exported_root_are_warned_about_and_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ndmpd.toml");
    let pw = dir.path().join("backup.password");
    std::fs::write(&pw, "backup-pw\n").unwrap();
    std::fs::write(
        &config,
        format!("[[auth.users]]\nname = \"backup\"\npassword_file = {pw:?}\n")
            + "[[export]]\npath = \"/\"\n\
         [[tape]]\nname = \"st9\"\nkind = \"device\"\npath = \"/dev/ndmpd-test-nst9\"\n\
         [[changer]]\nname = \"robot\"\nkind = \"device\"\npath = \"/dev/ndmpd-test-sg9\"\n",
    )
    .unwrap();
    let s = serve(dir.path(), &["--config", config.to_str().unwrap()], &[]);
    let banner = s.banner.join("\n");
    let login = format!(
        "ndmpd: DMA login: user backup (password from {})",
        pw.display()
    );
    for words in [
        login.as_str(),
        "ndmpd: warning: export /: the whole file system is exported",
        "ndmpd: warning: tape drive st9 is the device /dev/ndmpd-test-nst9, which cannot be \
         opened (No such file or directory",
        "ndmpd: warning: changer robot is the device /dev/ndmpd-test-sg9, which cannot be \
         opened (No such file or directory",
        "ndmpd: export /\n",
        "ndmpd: drive st9 -> device /dev/ndmpd-test-nst9",
        "ndmpd: changer robot -> device /dev/ndmpd-test-sg9",
    ] {
        assert!(banner.contains(words), "{words:?} not in:\n{banner}");
    }
    let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(
        log.contains("WARN") && log.contains("tape drive st9") && log.contains("changer robot"),
        "{log}"
    );
    assert!(s.addr.port() != 0);
}

#[test]
fn debug_logs_one_line_per_message_each_way() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(
        dir.path(),
        &["--export", dir.path().to_str().unwrap()],
        &[("NDMPD_LOG", "debug")],
    );
    let pw = dir.path().join("data/password");
    let out = dma(&[
        "query",
        "--server",
        &s.addr.to_string(),
        "--password-file",
        pw.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the session's lines are written before the DMA hears its replies; the close may lag
    drop(s);
    let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("ndmpd::ndmp")).collect();
    let one = |words: &[&str]| {
        let n = lines
            .iter()
            .filter(|l| {
                l.contains("DEBUG")
                    && l.contains("session{id=")
                    && words.iter().all(|w| l.contains(w))
            })
            .count();
        assert_eq!(n, 1, "{words:?} in:\n{}", lines.join("\n"));
    };
    one(&["send #1 NOTIFY_CONNECTION_STATUS post: CONNECTED"]);
    one(&["recv #", " CONNECT_OPEN request: version 4"]);
    one(&["send #", " CONNECT_OPEN reply to #", "NO_ERR"]);
    // asked by the login and again by the query's list of methods
    assert!(lines
        .iter()
        .any(|l| l.contains("CONFIG_GET_AUTH_ATTR request: MD5")));
    one(&["CONNECT_CLIENT_AUTH request: MD5 user ndmp"]);
    one(&["CONNECT_CLIENT_AUTH reply to #", "NO_ERR"]);
    for code in [
        "CONFIG_GET_HOST_INFO",
        "CONFIG_GET_SERVER_INFO",
        "CONFIG_GET_CONNECTION_TYPE",
        "CONFIG_GET_BUTYPE_INFO",
        "CONFIG_GET_FS_INFO",
        "CONFIG_GET_TAPE_INFO",
        "CONFIG_GET_SCSI_INFO",
        "CONFIG_GET_EXT_LIST",
    ] {
        one(&["recv #", &format!(" {code} request")]);
        one(&["send #", &format!(" {code} reply to #"), "NO_ERR"]);
    }
    one(&["CONFIG_GET_HOST_INFO reply to #", "NO_ERR: host "]);
}

#[tokio::test]
async fn an_empty_drive_says_how_to_load_it() {
    let t = common::start(USER, PW, |_| {}).await;
    let library = ndmpd::tape::library::Library::new(&t.cfg);
    library.unload("vtape1").unwrap();
    let mut c = login(&t).await;
    assert_refused(
        &mut c,
        Request::TapeOpen(TapeOpenRequest {
            device: "vtape1".into(),
            mode: TapeOpenMode::READ,
        }),
        NdmpError::NO_TAPE_LOADED_ERR,
        &[
            "no cartridge is loaded in drive vtape1",
            "ndmpd vtape load vtape1 LABEL",
        ],
    )
    .await;
}
