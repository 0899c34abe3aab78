//! Three-way operations between two `ndmpd` processes driven by one DMA: a mover-to-mover tape
//! copy, and a dump backup and restore with DATA on one server and the tape on the other.

mod common;

use common::daemon::{spawn, Daemon};
use ndmpd::client::Client;
use ndmpd::wire::header::Body;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::{NdmpError, Opaque, Reply, Request};
use std::time::Duration;

const ALL: u64 = u64::MAX;

async fn client(d: &Daemon) -> Client {
    let mut c = Client::connect(d.addr).await.unwrap();
    c.auth_md5("ndmp", d.password.as_bytes()).await.unwrap();
    c
}

fn open(mode: TapeOpenMode) -> Request {
    Request::TapeOpen(TapeOpenRequest {
        device: "vtape0".into(),
        mode,
    })
}

fn mtio(tape_op: MtioOp) -> Request {
    Request::TapeMtio(TapeMtioRequest { tape_op, count: 1 })
}

fn record_size(len: u32) -> Request {
    Request::MoverSetRecordSize(MoverSetRecordSizeRequest { len })
}

fn window() -> Request {
    Request::MoverSetWindow(MoverRangeRequest {
        offset: 0,
        length: ALL,
    })
}

async fn state(c: &mut Client) -> MoverGetStateReply {
    match c.call_ok(Request::MoverGetState(Void)).await.unwrap() {
        Reply::MoverGetState(s) => s,
        other => panic!("{other:?}"),
    }
}

async fn mover_post(c: &mut Client) -> Request {
    loop {
        let m = c.recv(Duration::from_secs(60)).await.unwrap().unwrap();
        if let Body::Request(r @ (Request::NotifyMoverPaused(_) | Request::NotifyMoverHalted(_))) =
            m.body
        {
            return r;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tape_to_tape_copy_between_two_servers() {
    let (a, b) = (spawn(&[]), spawn(&[]));
    let (mut ca, mut cb) = (client(&a).await, client(&b).await);

    // the source: 40 records of 32 KiB and a short one, then a filemark
    let records: Vec<Vec<u8>> = (0..41u32)
        .map(|r| {
            let len = if r == 40 { 1000 } else { 32 << 10 };
            (0..len)
                .map(|i| (i as u32 ^ r.wrapping_mul(2654435761)) as u8)
                .collect()
        })
        .collect();
    let stream: Vec<u8> = records.concat();
    ca.call_ok(open(TapeOpenMode::RDWR)).await.unwrap();
    for rec in &records {
        let data = Opaque(bytes::Bytes::copy_from_slice(rec));
        ca.call_ok(Request::TapeWrite(TapeWriteRequest { data_out: data }))
            .await
            .unwrap();
    }
    ca.call_ok(mtio(MtioOp::EOF)).await.unwrap();
    ca.call_ok(mtio(MtioOp::REW)).await.unwrap();
    ca.call_ok(Request::TapeClose(Void)).await.unwrap();

    // A's mover listens to send its tape; B's mover connects to receive it
    ca.call_ok(record_size(32 << 10)).await.unwrap();
    ca.call_ok(open(TapeOpenMode::READ)).await.unwrap();
    ca.call_ok(window()).await.unwrap();
    let listened = ca
        .call_ok(Request::MoverListen(MoverListenRequest {
            mode: MoverMode::WRITE,
            addr_type: AddrType::TCP,
        }))
        .await
        .unwrap();
    let Reply::MoverListen(ListenReply { connect_addr, .. }) = listened else {
        panic!("{listened:?}")
    };
    cb.call_ok(record_size(64 << 10)).await.unwrap();
    cb.call_ok(open(TapeOpenMode::RDWR)).await.unwrap();
    cb.call_ok(window()).await.unwrap();
    cb.call_ok(Request::MoverConnect(MoverConnectRequest {
        mode: MoverMode::READ,
        addr: connect_addr.clone(),
    }))
    .await
    .unwrap();
    let sb = state(&mut cb).await;
    assert_eq!((sb.state, sb.mode), (MoverState::ACTIVE, MoverMode::READ));
    // B reports the peer it reached, which is where A listened
    let (Addr::Tcp { tcp_addr: got }, Addr::Tcp { tcp_addr: offered }) =
        (&sb.data_connection_addr, &connect_addr)
    else {
        panic!("{sb:?}")
    };
    assert_eq!(
        (got[0].ip(), got[0].port),
        (offered[0].ip(), offered[0].port)
    );

    for _ in 0..500 {
        if state(&mut ca).await.state == MoverState::ACTIVE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ca.call_ok(Request::MoverRead(MoverRangeRequest {
        offset: 0,
        length: ALL,
    }))
    .await
    .unwrap();
    match mover_post(&mut ca).await {
        Request::NotifyMoverPaused(p) => {
            assert_eq!(p.reason, MoverPauseReason::EOF);
            assert_eq!(p.seek_position, stream.len() as u64);
        }
        other => panic!("{other:?}"),
    }
    // the DMA ends the copy by closing the sender; the receiver sees the end of the stream
    ca.call_ok(Request::MoverClose(Void)).await.unwrap();
    match mover_post(&mut ca).await {
        Request::NotifyMoverHalted(h) => assert_eq!(h.reason, MoverHaltReason::CONNECT_CLOSED),
        other => panic!("{other:?}"),
    }
    match mover_post(&mut cb).await {
        Request::NotifyMoverHalted(h) => assert_eq!(h.reason, MoverHaltReason::CONNECT_CLOSED),
        other => panic!("{other:?}"),
    }
    assert_eq!(state(&mut ca).await.bytes_moved, stream.len() as u64);
    let sb = state(&mut cb).await;
    assert_eq!(sb.bytes_moved, stream.len() as u64);
    assert_eq!(sb.record_num, (stream.len() as u32).div_ceil(64 << 10));
    for c in [&mut ca, &mut cb] {
        c.call_ok(Request::MoverStop(Void)).await.unwrap();
        c.call_ok(Request::TapeClose(Void)).await.unwrap();
    }

    // B's tape holds the same stream in 64 KiB records, a short one last, then a filemark
    cb.call_ok(open(TapeOpenMode::READ)).await.unwrap();
    let mut copy = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let r = cb
            .call(Request::TapeRead(TapeReadRequest { count: 1 << 20 }))
            .await
            .unwrap();
        let Reply::TapeRead(r) = r else { panic!() };
        if r.error == NdmpError::EOF_ERR {
            break;
        }
        assert_eq!(r.error, NdmpError::NO_ERR);
        sizes.push(r.data_in.0.len());
        copy.extend_from_slice(&r.data_in.0);
    }
    assert!(copy == stream, "the copy differs from the source");
    let (last, full) = sizes.split_last().unwrap();
    assert!(full.iter().all(|&s| s == 64 << 10), "{sizes:?}");
    assert_eq!(*last, stream.len() % (64 << 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_backup_with_data_on_one_server_and_tape_on_another() {
    let pwdir = tempfile::tempdir().unwrap();
    let pwfile = pwdir.path().join("pw");
    std::fs::write(&pwfile, "three-way-pw\n").unwrap();
    let login = [
        "--user",
        "ndmp",
        "--password-file",
        pwfile.to_str().unwrap(),
    ];
    let (a, b) = (spawn(&login), spawn(&login));
    let tree = a.dir.path().join("tree");
    common::tree::build(&tree);
    // the bundled DMA: DATA on A, mover and tape on B, over TCP
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(["dma", "backup", "--server", &a.addr.to_string()])
        .args(["--tape-server", &b.addr.to_string(), "--tape", "vtape0"])
        .args(["--password-file", pwfile.to_str().unwrap()])
        .arg(&tree)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("(level 0) onto vtape0"), "{text}");
    // read the image back from B's tape and extract it with the stock restore
    let mut cb = Client::connect(b.addr).await.unwrap();
    cb.auth_md5("ndmp", b"three-way-pw").await.unwrap();
    cb.call_ok(open(TapeOpenMode::READ)).await.unwrap();
    let mut img = Vec::new();
    loop {
        let Reply::TapeRead(r) = cb
            .call(Request::TapeRead(TapeReadRequest { count: 1 << 20 }))
            .await
            .unwrap()
        else {
            panic!()
        };
        if r.error != NdmpError::NO_ERR {
            assert_eq!(r.error, NdmpError::EOF_ERR);
            break;
        }
        img.extend_from_slice(&r.data_in.0);
    }
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("image.dump");
    std::fs::write(&path, img).unwrap();
    let dest = work.path().join("restored");
    std::fs::create_dir(&dest).unwrap();
    common::tree::restore_x(&path, &dest);
    common::tree::assert_same(&tree, &dest);
    cb.call_ok(Request::TapeClose(Void)).await.unwrap();
    drop(cb);

    // and back through both servers: the mover of B reads, the DATA server of A writes
    let back = a.dir.path().join("back");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(["dma", "restore", "--server", &a.addr.to_string()])
        .args(["--tape-server", &b.addr.to_string(), "--tape", "vtape0"])
        .args(["--password-file", pwfile.to_str().unwrap()])
        .arg(&back)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    common::tree::assert_same(&tree, &back);

    // the image's contents, listed through both servers
    let dma = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ndmpd"))
            .args(["dma"])
            .args(args)
            .args(["--server", &a.addr.to_string()])
            .args(["--tape-server", &b.addr.to_string(), "--tape", "vtape0"])
            .args(["--password-file", pwfile.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = dma(&["list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let line = text
        .lines()
        .find(|l| l.contains(" /a.txt @"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("-rw-------"), "{line}");
    assert!(line.contains(" 6 "), "size of a.txt: {line}");
    assert!(text
        .lines()
        .any(|l| l.starts_with("d") && l.contains(" /sub/deeper @")));
    // a file that exists is kept unless --force
    std::fs::write(back.join("a.txt"), b"changed").unwrap();
    let back_s = back.to_str().unwrap();
    let out = dma(&["restore", back_s, "/a.txt"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not replaced"),
        "{out:?}"
    );
    assert_eq!(std::fs::read(back.join("a.txt")).unwrap(), b"changed");
    let out = dma(&["restore", "--force", back_s, "/a.txt"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(back.join("a.txt")).unwrap(), b"hello\n");
}
