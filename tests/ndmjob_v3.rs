//! NDMP v3 end to end: Amanda's ndmjob with v3 agents (`/3t`) against ndmpd — the query,
//! its test-tape, test-mover and test-data suites, and dump and tar backups restored
//! identical over LOCAL and TCP, in full and by direct access (`-J`).

mod common;

use std::path::Path;

const PW: &str = "v3-pw";

async fn server() -> common::TestServer {
    common::start("ndmp", PW.as_bytes(), |c| {
        c.library.cartridge_capacity = 256 << 20
    })
    .await
}

/// The ndmjob agent string of `t` for protocol `version`.
fn agent(t: &common::TestServer, version: u16) -> String {
    format!("127.0.0.1:{}/{version}t,ndmp,{PW}", t.addr.port())
}

async fn ndmjob(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::ndmjob(&args)
    })
    .await
    .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `-q` over v3 logs in, lists the host, the butypes with v3's file-history bit (which v4
/// has not), the file systems and the tape drives.
#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_v3_query_lists_everything() {
    let t = server().await;
    let text = ndmjob(strings(&["-q", "-D", &agent(&t, 3), "-T", &agent(&t, 3)])).await;
    for want in [
        "Backup type info of dump format",
        "Backup type info of tar format",
        "backup-file-history   yes",
        "File system ",
        "vtape0",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    assert!(!text.contains("connect-open-failed"), "{text}");
    // the same query over v4 has no such bit
    let text = ndmjob(strings(&["-q", "-D", &agent(&t, 4)])).await;
    assert!(text.contains("Backup type info of dump format"), "{text}");
    assert!(!text.contains("backup-file-history   yes"), "{text}");
}

/// A version that is neither 3 nor 4 is refused at CONNECT_OPEN.
#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_v2_is_refused_at_connect_open() {
    let t = server().await;
    let a = format!("127.0.0.1:{}/2t,ndmp,{PW}", t.addr.port());
    let text = ndmjob(strings(&["-q", "-D", &a])).await;
    assert!(text.contains("connect-open-failed"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_v3_test_tape_passes_every_reachable_step() {
    let t = server().await;
    let text = ndmjob(strings(&[
        "-o",
        "test-tape",
        "-vv",
        "-T",
        &agent(&t, 3),
        "-f",
        "vtape0",
    ]))
    .await;
    let passed = text.matches("-- Passed").count();
    let failed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("-- Failed") || l.contains("-- Almost"))
        .collect();
    // ndmjob's own client cannot send the zero-length TAPE_WRITE of T-BW #6, in any version
    assert!(
        failed.iter().all(|l| l.contains("T-BW #6")),
        "unexpected failures: {failed:?}\n{text}"
    );
    assert!(text.contains("NDMP3_TAPE_OPEN"), "not v3:\n{text}");
    assert!(passed >= 17, "only {passed} steps passed:\n{text}");
}

/// test-mover over v3 sets the window after MOVER_LISTEN, which v3 allows.
#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_v3_test_mover_passes_every_step() {
    let t = server().await;
    let text = ndmjob(strings(&[
        "-o",
        "test-mover",
        "-vv",
        "-T",
        &agent(&t, 3),
        "-f",
        "vtape0",
    ]))
    .await;
    assert!(
        text.contains("FINAL test-mover Passed -- pass=100 warn=0 fail=0 (total 100)"),
        "{text}"
    );
    assert!(text.contains("LOCAL and TCP addressing tested."), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_v3_test_data_passes_every_step() {
    let t = server().await;
    let text = ndmjob(strings(&["-o", "test-data", "-vv", "-D", &agent(&t, 3)])).await;
    assert!(
        text.contains("FINAL test-data Passed -- pass=24 warn=0 fail=0 (total 24)"),
        "{text}"
    );
    assert!(text.contains("LOCAL and TCP addressing tested."), "{text}");
}

fn ok(text: &str) {
    assert!(text.contains("Operation ended OKAY"), "{text}");
}

fn same_file(a: &Path, b: &Path) {
    assert_eq!(
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        "{}",
        b.display()
    );
}

/// For dump and tar: a v3 backup with history, then a full extract and a DAR of two files
/// (`-J`, v3's destination directory in the name list) over LOCAL and over TCP, each
/// restoring identical.
#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_v3_backups_restore_identical_over_local_and_tcp() {
    let t = server().await;
    let tree = t.dir.path().join("tree");
    common::tree::build(&tree);
    let a = agent(&t, 3);
    for (bu, tape) in [("dump", "vtape0"), ("tar", "vtape1")] {
        let index = t.dir.path().join(format!("index-{bu}"));
        let idx = index.to_str().unwrap();
        let text = ndmjob(strings(&[
            "-c",
            "-v",
            "-D",
            &a,
            "-B",
            bu,
            "-f",
            tape,
            "-C",
            tree.to_str().unwrap(),
            "-I",
            idx,
        ]))
        .await;
        ok(&text);
        for two in [false, true] {
            let mut base = strings(&["-x", "-v", "-D", &a]);
            if two {
                base.extend(strings(&["-T", &a]));
            }
            let full = t.dir.path().join(format!("full-{bu}-{two}"));
            let mut args = base.clone();
            args.extend(strings(&[
                "-B",
                bu,
                "-f",
                tape,
                "-C",
                full.to_str().unwrap(),
            ]));
            ok(&ndmjob(args).await);
            common::tree::assert_same(&tree, &full);

            let dar = t.dir.path().join(format!("dar-{bu}-{two}"));
            let mut args = base.clone();
            args.extend(strings(&[
                "-B",
                bu,
                "-f",
                tape,
                "-C",
                dar.to_str().unwrap(),
                "-J",
                idx,
                "/a.txt",
                "/sub/deeper/c.bin",
            ]));
            let text = ndmjob(args).await;
            ok(&text);
            assert!(
                text.contains("LOG_FILE messages: 2 OK, 0 ERROR, total 2 of 2"),
                "{text}"
            );
            same_file(&tree.join("a.txt"), &dar.join("a.txt"));
            same_file(
                &tree.join("sub/deeper/c.bin"),
                &dar.join("sub/deeper/c.bin"),
            );
        }
    }
}

/// The crate's client speaks v3 once CONNECT_OPEN(3) is agreed: the server's v3 replies come
/// back as the v4 values the library uses (MOVER_LISTEN's one TCP address, TAPE_GET_STATE
/// without the partition bit), and v4-only requests are refused as unknown.
#[tokio::test(flavor = "multi_thread")]
async fn the_client_library_speaks_v3() {
    use ndmpd::wire::messages::*;
    use ndmpd::wire::types::*;
    use ndmpd::wire::{NdmpError, Reply, Request};
    let t = server().await;
    let mut c = ndmpd::client::Client::connect(t.addr).await.unwrap();
    c.open(3).await.unwrap();
    assert_eq!(c.version(), 3);
    c.auth_text("ndmp", PW.as_bytes()).await.unwrap();
    c.call_ok(Request::TapeOpen(TapeOpenRequest {
        device: "vtape0".into(),
        mode: TapeOpenMode::RDWR,
    }))
    .await
    .unwrap();
    let Reply::TapeGetState(s) = c.call_ok(Request::TapeGetState(Void)).await.unwrap() else {
        panic!("not a tape state");
    };
    assert_eq!(
        s.unsupported & 0x40,
        0,
        "the v3 partition bit is folded away"
    );
    c.call_ok(Request::MoverSetRecordSize(MoverSetRecordSizeRequest {
        len: 10240,
    }))
    .await
    .unwrap();
    let Reply::MoverListen(l) = c
        .call_ok(Request::MoverListen(MoverListenRequest {
            mode: MoverMode::READ,
            addr_type: AddrType::TCP,
        }))
        .await
        .unwrap()
    else {
        panic!("not a listen reply");
    };
    let Addr::Tcp { tcp_addr } = &l.connect_addr else {
        panic!("{:?}", l.connect_addr);
    };
    assert_eq!(tcp_addr.len(), 1, "v3 carries one address");
    assert_ne!(tcp_addr[0].port, 0);
    // v3 allows the window after LISTEN
    c.call_ok(Request::MoverSetWindow(MoverRangeRequest {
        offset: 0,
        length: u64::MAX,
    }))
    .await
    .unwrap();
    let Reply::MoverGetState(m) = c.call_ok(Request::MoverGetState(Void)).await.unwrap() else {
        panic!("not a mover state");
    };
    assert_eq!(m.state, MoverState::LISTEN);
    assert_eq!(m.window_length, u64::MAX);
    let r = c.call(Request::ConfigGetExtList(Void)).await;
    assert!(
        matches!(
            r,
            Err(ndmpd::client::ClientError::Ndmp {
                error: NdmpError::NOT_SUPPORTED_ERR,
                ..
            })
        ),
        "{r:?}"
    );
}
