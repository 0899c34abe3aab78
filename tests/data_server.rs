//! The DATA interface over real sockets: ndmjob's conformance suite, and data connections
//! to the mover over LOCAL (one session) and TCP (two sessions), in both directions.

mod common;

use ndmpd::client::Client;
use ndmpd::wire::header::Body;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::{NdmpError, Reply, Request};
use std::time::Duration;

const PW: &[u8] = b"data-pw";

async fn client(t: &common::TestServer) -> Client {
    let mut c = Client::connect(t.addr).await.unwrap();
    c.auth_text("ndmp", PW).await.unwrap();
    c
}

async fn data_state(c: &mut Client) -> DataGetStateReply {
    match c.call_ok(Request::DataGetState(Void)).await.unwrap() {
        Reply::DataGetState(s) => s,
        other => panic!("{other:?}"),
    }
}

async fn mover_state(c: &mut Client) -> MoverGetStateReply {
    match c.call_ok(Request::MoverGetState(Void)).await.unwrap() {
        Reply::MoverGetState(s) => s,
        other => panic!("{other:?}"),
    }
}

/// Record size, tape open read/write, open window: a mover ready to LISTEN or CONNECT.
async fn mover_ready(c: &mut Client) {
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
}

/// A mover ready for a backup, listening LOCAL, with this session's DATA server connected.
async fn local_pair(c: &mut Client) {
    mover_ready(c).await;
    c.call_ok(Request::MoverListen(MoverListenRequest {
        mode: MoverMode::READ,
        addr_type: AddrType::LOCAL,
    }))
    .await
    .unwrap();
    c.call_ok(Request::DataConnect(DataConnectRequest {
        addr: Addr::Local,
    }))
    .await
    .unwrap();
}

async fn wait_mover(c: &mut Client, want: MoverState) {
    for _ in 0..500 {
        if mover_state(c).await.state == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("mover never reached {want:?}");
}

async fn wait_data(c: &mut Client, want: DataState) -> DataGetStateReply {
    for _ in 0..500 {
        let s = data_state(c).await;
        if s.state == want {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("data never reached {want:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_test_data_passes_every_step() {
    let t = common::start("ndmp", PW, |_| {}).await;
    let agent = format!("127.0.0.1:{}/4t,ndmp,data-pw", t.addr.port());
    let text = tokio::task::spawn_blocking(move || {
        common::ndmjob(&["-o", "test-data", "-vv", "-D", &agent])
    })
    .await
    .unwrap();
    assert!(
        text.contains("FINAL test-data Passed -- pass=24 warn=0 fail=0 (total 24)"),
        "{text}"
    );
    assert!(text.contains("LOCAL and TCP addressing tested."), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn local_pairing_in_both_directions_and_abort_notifies() {
    let t = common::start("ndmp", PW, |_| {}).await;
    let mut c = client(&t).await;
    // mover listens, DATA connects
    local_pair(&mut c).await;
    wait_mover(&mut c, MoverState::ACTIVE).await;
    let d = data_state(&mut c).await;
    assert_eq!(
        (d.state, d.data_connection_addr),
        (DataState::CONNECTED, Addr::Local)
    );
    let info = t.registry.list().pop().unwrap();
    assert_eq!(
        (info.data.state, info.data.connection.as_deref()),
        ("CONNECTED", Some("LOCAL"))
    );
    c.call_ok(Request::DataAbort(Void)).await.unwrap();
    let halted = c.take_posts().into_iter().find_map(|m| match m.body {
        Body::Request(Request::NotifyDataHalted(h)) => Some(h.reason),
        _ => None,
    });
    assert_eq!(halted, Some(DataHaltReason::ABORTED));
    let d = data_state(&mut c).await;
    assert_eq!(
        (d.state, d.halt_reason),
        (DataState::HALTED, DataHaltReason::ABORTED)
    );
    c.call_ok(Request::DataStop(Void)).await.unwrap();
    // DATA closed its end: the mover sees the end of the stream
    wait_mover(&mut c, MoverState::HALTED).await;
    c.call_ok(Request::MoverStop(Void)).await.unwrap();

    // DATA listens, mover connects
    let r = c
        .call_ok(Request::DataListen(DataListenRequest {
            addr_type: AddrType::LOCAL,
        }))
        .await
        .unwrap();
    assert!(matches!(
        r,
        Reply::DataListen(ListenReply {
            connect_addr: Addr::Local,
            ..
        })
    ));
    c.call_ok(Request::MoverConnect(MoverConnectRequest {
        mode: MoverMode::READ,
        addr: Addr::Local,
    }))
    .await
    .unwrap();
    assert_eq!(mover_state(&mut c).await.state, MoverState::ACTIVE);
    assert_eq!(data_state(&mut c).await.state, DataState::CONNECTED);
    c.call_ok(Request::MoverAbort(Void)).await.unwrap();
    c.call_ok(Request::DataAbort(Void)).await.unwrap();
    c.call_ok(Request::DataStop(Void)).await.unwrap();
    c.call_ok(Request::MoverStop(Void)).await.unwrap();
    // with nobody listening, LOCAL connects are refused plainly
    let e = c
        .call(Request::DataConnect(DataConnectRequest {
            addr: Addr::Local,
        }))
        .await
        .unwrap()
        .error()
        .unwrap();
    assert_eq!(e, NdmpError::ILLEGAL_STATE_ERR);
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_between_two_sessions_either_side_listening() {
    let t = common::start("ndmp", PW, |_| {}).await;
    let (mut tape, mut data) = (client(&t).await, client(&t).await);
    mover_ready(&mut tape).await;
    // DATA listens (swap-connect), mover connects
    let r = data
        .call_ok(Request::DataListen(DataListenRequest {
            addr_type: AddrType::TCP,
        }))
        .await
        .unwrap();
    let Reply::DataListen(ListenReply { connect_addr, .. }) = r else {
        panic!("{r:?}")
    };
    tape.call_ok(Request::MoverConnect(MoverConnectRequest {
        mode: MoverMode::READ,
        addr: connect_addr,
    }))
    .await
    .unwrap();
    let d = wait_data(&mut data, DataState::CONNECTED).await;
    let Addr::Tcp { tcp_addr } = d.data_connection_addr else {
        panic!("{d:?}")
    };
    assert_eq!(tcp_addr.len(), 1);
    assert!(tcp_addr[0].ip().is_loopback());
    data.call_ok(Request::DataAbort(Void)).await.unwrap();
    data.call_ok(Request::DataStop(Void)).await.unwrap();
    wait_mover(&mut tape, MoverState::HALTED).await;
    tape.call_ok(Request::MoverStop(Void)).await.unwrap();
    // mover listens, DATA connects
    let r = tape
        .call_ok(Request::MoverListen(MoverListenRequest {
            mode: MoverMode::READ,
            addr_type: AddrType::TCP,
        }))
        .await
        .unwrap();
    let Reply::MoverListen(ListenReply { connect_addr, .. }) = r else {
        panic!("{r:?}")
    };
    data.call_ok(Request::DataConnect(DataConnectRequest {
        addr: connect_addr,
    }))
    .await
    .unwrap();
    assert_eq!(data_state(&mut data).await.state, DataState::CONNECTED);
    wait_mover(&mut tape, MoverState::ACTIVE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_backup_reports_history_env_and_registry_and_refuses_bad_filesystems() {
    let t = common::start("ndmp", PW, |_| {}).await;
    let tree = t.dir.path().join("tree");
    common::tree::build(&tree);
    let mut c = client(&t).await;
    local_pair(&mut c).await;
    let start = |fs: &str, butype: &str| {
        Request::DataStartBackup(DataStartBackupRequest {
            butype_name: butype.into(),
            env: vec![Pval::new("FILESYSTEM", fs), Pval::new("HIST", "y")],
        })
    };
    // outside the export root, and an unknown format: refused, state unchanged
    for (fs, butype) in [("/etc", "dump"), (tree.to_str().unwrap(), "tar-ish")] {
        let e = c.call(start(fs, butype)).await.unwrap().error().unwrap();
        assert_eq!(e, NdmpError::ILLEGAL_ARGS_ERR, "{fs} {butype}");
    }
    let logged = c.take_posts().into_iter().filter(|m| {
        matches!(&m.body, Body::Request(Request::LogMessage(l)) if l.log_type == LogType::ERROR)
    });
    assert_eq!(logged.count(), 2);
    assert_eq!(data_state(&mut c).await.state, DataState::CONNECTED);

    c.call_ok(start(tree.to_str().unwrap(), "dump"))
        .await
        .unwrap();
    let info = t.registry.list().pop().unwrap().data;
    assert_eq!(
        (info.operation, info.backup_engine),
        ("BACKUP", Some("dump"))
    );
    assert_eq!(info.data_path.as_deref(), tree.to_str());
    let (mut dirs, mut nodes) = (0, 0);
    let reason = loop {
        let m = c.recv(Duration::from_secs(30)).await.unwrap().unwrap();
        match m.body {
            Body::Request(Request::FhAddDir(d)) => dirs += d.dirs.len(),
            Body::Request(Request::FhAddNode(n)) => nodes += n.nodes.len(),
            Body::Request(Request::NotifyDataHalted(h)) => break h.reason,
            _ => {}
        }
    };
    assert_eq!(reason, DataHaltReason::SUCCESSFUL);
    // 11 names plus "." and ".." of 4 directories; 11 inodes (7 files, one with two names,
    // and 4 directories)
    assert_eq!((dirs, nodes), (11 + 2 * 4, 11));
    let d = data_state(&mut c).await;
    assert_eq!(
        (d.state, d.operation),
        (DataState::HALTED, DataOperation::BACKUP)
    );
    assert!(d.bytes_processed > 270_000, "{}", d.bytes_processed);
    let Reply::DataGetEnv(env) = c.call_ok(Request::DataGetEnv(Void)).await.unwrap() else {
        panic!()
    };
    let names: Vec<String> = env.env.iter().map(|p| p.name.to_string()).collect();
    for n in ["FILESYSTEM", "HIST", "LEVEL", "TYPE", "DUMP_DATE"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    // the mover saw the end of the stream and wrote it all
    wait_mover(&mut c, MoverState::HALTED).await;
    assert_eq!(mover_state(&mut c).await.bytes_moved, d.bytes_processed);
    c.call_ok(Request::DataStop(Void)).await.unwrap();
    c.call_ok(Request::MoverStop(Void)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn abort_ends_a_backup_stuck_behind_a_paused_mover() {
    let t = common::start("ndmp", PW, |_| {}).await;
    let tree = t.dir.path().join("tree");
    common::tree::build(&tree);
    let mut c = client(&t).await;
    mover_ready(&mut c).await;
    // a one-record window: the mover pauses at once and the backup fills the pipe and waits
    c.call_ok(Request::MoverSetWindow(MoverRangeRequest {
        offset: 0,
        length: 10240,
    }))
    .await
    .unwrap();
    c.call_ok(Request::MoverListen(MoverListenRequest {
        mode: MoverMode::READ,
        addr_type: AddrType::LOCAL,
    }))
    .await
    .unwrap();
    c.call_ok(Request::DataConnect(DataConnectRequest {
        addr: Addr::Local,
    }))
    .await
    .unwrap();
    c.call_ok(Request::DataStartBackup(DataStartBackupRequest {
        butype_name: "dump".into(),
        env: vec![Pval::new("FILESYSTEM", tree.to_str().unwrap())],
    }))
    .await
    .unwrap();
    wait_mover(&mut c, MoverState::PAUSED).await;
    let s = mover_state(&mut c).await;
    assert_eq!(s.pause_reason, MoverPauseReason::EOW);
    assert_eq!(data_state(&mut c).await.state, DataState::ACTIVE);
    c.call_ok(Request::DataAbort(Void)).await.unwrap();
    let d = data_state(&mut c).await;
    assert_eq!(
        (d.state, d.halt_reason),
        (DataState::HALTED, DataHaltReason::ABORTED)
    );
    let halted = c.take_posts().into_iter().any(|m| {
        matches!(m.body, Body::Request(Request::NotifyDataHalted(h)) if h.reason == DataHaltReason::ABORTED)
    });
    assert!(halted);
    // the writer thread let go of the pipe: the session can stop, abort and close everything
    c.call_ok(Request::DataStop(Void)).await.unwrap();
    c.call_ok(Request::MoverAbort(Void)).await.unwrap();
    c.call_ok(Request::MoverStop(Void)).await.unwrap();
    c.call_ok(Request::TapeClose(Void)).await.unwrap();
    // and the session is still answering
    assert_eq!(data_state(&mut c).await.state, DataState::IDLE);
}

#[tokio::test(flavor = "multi_thread")]
async fn path_history_names_every_inode_by_its_path() {
    let t = common::start("ndmp", PW, |_| {}).await;
    let tree = t.dir.path().join("tree");
    common::tree::build(&tree);
    let mut c = client(&t).await;
    local_pair(&mut c).await;
    c.call_ok(Request::DataStartBackup(DataStartBackupRequest {
        butype_name: "dump".into(),
        env: vec![
            Pval::new("FILESYSTEM", tree.to_str().unwrap()),
            Pval::new("HIST", "f"),
        ],
    }))
    .await
    .unwrap();
    let mut paths = Vec::new();
    loop {
        let m = c.recv(Duration::from_secs(30)).await.unwrap().unwrap();
        match m.body {
            Body::Request(Request::FhAddFile(f)) => {
                for file in f.files {
                    let FileName::Unix { unix_name } = &file.name[0] else {
                        panic!()
                    };
                    assert_eq!(file.fh_info % 1024, 0);
                    paths.push(unix_name.to_string());
                }
            }
            Body::Request(Request::FhAddDir(_) | Request::FhAddNode(_)) => {
                panic!("node history for HIST=f")
            }
            Body::Request(Request::NotifyDataHalted(h)) => {
                assert_eq!(h.reason, DataHaltReason::SUCCESSFUL);
                break;
            }
            _ => {}
        }
    }
    paths.sort();
    // one entry per inode: the hard link's second name is not repeated
    let want = [
        "/",
        "/a.txt",
        "/empty",
        "/empty-dir",
        "/link",
        "/name with space ü.txt",
        "/sparse",
        "/sub",
        "/sub/b.txt",
        "/sub/deeper",
        "/sub/deeper/c.bin",
    ];
    assert_eq!(paths, want);
}

/// DATA_ABORT of a running LOCAL backup closes DATA's end of the pipe: the mover writes what
/// it has and halts CONNECT_CLOSED on its own, without a MOVER_ABORT from the DMA.
#[tokio::test(flavor = "multi_thread")]
async fn data_abort_mid_backup_lets_the_local_mover_halt() {
    let t = common::start("ndmp", PW, |c| c.library.cartridge_capacity = 2 << 30).await;
    let tree = t.dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    for n in 0..3 {
        common::fulltree::noise_file(&tree.join(format!("f{n}")), 200, n);
    }
    let mut c = client(&t).await;
    local_pair(&mut c).await;
    c.call_ok(Request::DataStartBackup(DataStartBackupRequest {
        butype_name: "dump".into(),
        env: vec![Pval::new("FILESYSTEM", tree.to_str().unwrap())],
    }))
    .await
    .unwrap();
    for _ in 0..500 {
        if mover_state(&mut c).await.bytes_moved > 1 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.call_ok(Request::DataAbort(Void)).await.unwrap();
    wait_mover(&mut c, MoverState::HALTED).await;
    let m = mover_state(&mut c).await;
    assert_eq!(m.halt_reason, MoverHaltReason::CONNECT_CLOSED);
}
