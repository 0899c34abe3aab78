//! The TAPE interface over real sockets: drive names, locking across sessions, the implicit
//! filemark, reads/writes/MTIO/GET_STATE semantics, ejects, and ndmjob's conformance suite.

mod common;

use ndmpd::client::Client;
use ndmpd::tape::library::Library;
use ndmpd::tape::vtape::Vtape;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::{NdmpError, Opaque, Reply, Request};
use std::time::Duration;

const PW: &[u8] = b"tape-pw";

type T = common::TestServer;

async fn start() -> T {
    common::start("ndmp", PW, |_| {}).await
}

async fn client(t: &T) -> Client {
    t.client().await
}

async fn err(c: &mut Client, r: Request) -> NdmpError {
    common::ndmp_err(c, r).await
}

fn open(dev: &str, mode: TapeOpenMode) -> Request {
    Request::TapeOpen(TapeOpenRequest {
        device: dev.into(),
        mode,
    })
}

fn write(data: &[u8]) -> Request {
    Request::TapeWrite(TapeWriteRequest {
        data_out: Opaque(bytes::Bytes::copy_from_slice(data)),
    })
}

fn mtio(op: MtioOp, count: u32) -> Request {
    Request::TapeMtio(TapeMtioRequest { tape_op: op, count })
}

async fn read(c: &mut Client, count: u32) -> (NdmpError, Vec<u8>) {
    match c
        .call(Request::TapeRead(TapeReadRequest { count }))
        .await
        .unwrap()
    {
        Reply::TapeRead(r) => (r.error, r.data_in.0.to_vec()),
        other => panic!("{other:?}"),
    }
}

async fn resid(c: &mut Client, op: MtioOp, count: u32) -> (NdmpError, u32) {
    match c.call(mtio(op, count)).await.unwrap() {
        Reply::TapeMtio(r) => (r.error, r.resid_count),
        other => panic!("{other:?}"),
    }
}

async fn state(c: &mut Client) -> TapeGetStateReply {
    match c.call(Request::TapeGetState(Void)).await.unwrap() {
        Reply::TapeGetState(s) => s,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn only_configured_drive_names_open() {
    let t = start().await;
    let mut c = client(&t).await;
    let cart = Library::new(&t.cfg).resolve("vtape0").unwrap();
    for bad in [
        "bogus",
        "../vtape0",
        "/dev/null",
        "/etc/passwd",
        cart.to_str().unwrap(),
        "vtape0/",
        "",
    ] {
        assert_eq!(
            err(&mut c, open(bad, TapeOpenMode::READ)).await,
            NdmpError::NO_DEVICE_ERR,
            "{bad:?}"
        );
    }
    assert_eq!(
        err(&mut c, open("vtape0", TapeOpenMode(123))).await,
        NdmpError::ILLEGAL_ARGS_ERR
    );
    assert_eq!(
        err(&mut c, open("vtape0", TapeOpenMode::RDWR)).await,
        NdmpError::NO_ERR
    );
    assert_eq!(
        err(&mut c, open("vtape1", TapeOpenMode::READ)).await,
        NdmpError::DEVICE_OPENED_ERR
    );
    let info = &t.registry.list()[0];
    assert_eq!(info.tape.device.as_deref(), Some("vtape0"));
    assert_eq!(info.tape.mode, Some("read_write"));
    assert_eq!(
        err(&mut c, Request::TapeClose(Void)).await,
        NdmpError::NO_ERR
    );
    assert_eq!(
        err(&mut c, Request::TapeClose(Void)).await,
        NdmpError::DEV_NOT_OPEN_ERR
    );
    assert!(t.registry.list()[0].tape.device.is_none());
}

#[tokio::test]
async fn a_drive_is_exclusive_until_its_session_ends() {
    let t = start().await;
    let mut a = client(&t).await;
    let mut b = client(&t).await;
    assert_eq!(
        err(&mut a, open("vtape0", TapeOpenMode::READ)).await,
        NdmpError::NO_ERR
    );
    assert_eq!(
        err(&mut b, open("vtape0", TapeOpenMode::READ)).await,
        NdmpError::DEVICE_BUSY_ERR
    );
    assert_eq!(
        err(&mut b, open("vtape1", TapeOpenMode::READ)).await,
        NdmpError::NO_ERR
    );
    // a dropped connection releases the drive
    drop(a);
    let mut freed = false;
    for _ in 0..100 {
        let mut c = client(&t).await;
        if err(&mut c, open("vtape0", TapeOpenMode::READ)).await == NdmpError::NO_ERR {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "drive still locked after its session ended");
}

#[tokio::test]
async fn records_filemarks_and_the_implicit_filemark() {
    let t = start().await;
    let mut c = client(&t).await;
    assert_eq!(
        err(&mut c, open("vtape0", TapeOpenMode::RDWR)).await,
        NdmpError::NO_ERR
    );
    let recs: Vec<Vec<u8>> = [1usize, 3, 512, 10_000, 65_537]
        .iter()
        .map(|n| (0..*n).map(|i| (i * 7 + n) as u8).collect())
        .collect();
    for r in &recs {
        match c.call(write(r)).await.unwrap() {
            Reply::TapeWrite(w) => {
                assert_eq!(w.error, NdmpError::NO_ERR);
                assert_eq!(w.count as usize, r.len());
            }
            other => panic!("{other:?}"),
        }
    }
    let s = state(&mut c).await;
    assert_eq!((s.file_num, s.blockno), (0, 5));
    assert_eq!(s.total_space, 64 << 20);
    assert!(s.space_remain < s.total_space);
    assert_eq!(s.block_size, 0);
    // REW after writing first writes the filemark the spec requires
    assert_eq!(resid(&mut c, MtioOp::REW, 1).await, (NdmpError::NO_ERR, 0));
    for r in &recs {
        let (e, data) = read(&mut c, 1 << 20).await;
        assert_eq!(e, NdmpError::NO_ERR);
        assert_eq!(&data, r);
    }
    // at the filemark: EOF, and again EOF (the head stays on its BOT side)
    assert_eq!(read(&mut c, 100).await.0, NdmpError::EOF_ERR);
    assert_eq!(read(&mut c, 100).await.0, NdmpError::EOF_ERR);
    assert_eq!(resid(&mut c, MtioOp::FSF, 1).await, (NdmpError::NO_ERR, 0));
    assert_eq!(read(&mut c, 100).await.0, NdmpError::EOM_ERR);
    // spacing: back over the filemark and two records
    assert_eq!(resid(&mut c, MtioOp::BSF, 1).await, (NdmpError::NO_ERR, 0));
    assert_eq!(resid(&mut c, MtioOp::BSR, 2).await, (NdmpError::NO_ERR, 0));
    assert_eq!(read(&mut c, 1 << 20).await.1, recs[3]);
    // FSR stops at the filemark with a resid
    assert_eq!(resid(&mut c, MtioOp::FSR, 5).await, (NdmpError::NO_ERR, 4));
    // short read: the rest of the record is discarded
    assert_eq!(resid(&mut c, MtioOp::REW, 0).await.0, NdmpError::NO_ERR);
    assert_eq!(resid(&mut c, MtioOp::FSR, 2).await, (NdmpError::NO_ERR, 0));
    assert_eq!(read(&mut c, 10).await.1, recs[2][..10]);
    assert_eq!(read(&mut c, 1 << 20).await.1, recs[3]);
    // zero-length read and write are no-ops
    assert_eq!(read(&mut c, 0).await, (NdmpError::NO_ERR, vec![]));
    match c.call(write(&[])).await.unwrap() {
        Reply::TapeWrite(w) => assert_eq!((w.error, w.count), (NdmpError::NO_ERR, 0)),
        other => panic!("{other:?}"),
    }
    // close after more data writes the implicit filemark
    assert_eq!(resid(&mut c, MtioOp::REW, 0).await.0, NdmpError::NO_ERR);
    assert_eq!(resid(&mut c, MtioOp::FSF, 1).await, (NdmpError::NO_ERR, 0));
    c.call_ok(write(b"second file")).await.unwrap();
    assert_eq!(
        err(&mut c, Request::TapeClose(Void)).await,
        NdmpError::NO_ERR
    );
    let cart = Library::new(&t.cfg).resolve("vtape0").unwrap();
    let i = Vtape::inspect(&cart).unwrap();
    assert_eq!(i.filemarks, 2, "{i}");
    assert!(i.crc_ok());
}

#[tokio::test]
async fn permissions_and_protection() {
    let t = start().await;
    let mut c = client(&t).await;
    assert_eq!(err(&mut c, write(b"x")).await, NdmpError::DEV_NOT_OPEN_ERR);
    assert_eq!(
        err(&mut c, Request::TapeGetState(Void)).await,
        NdmpError::DEV_NOT_OPEN_ERR
    );
    assert_eq!(
        err(&mut c, open("vtape0", TapeOpenMode::READ)).await,
        NdmpError::NO_ERR
    );
    assert_eq!(err(&mut c, write(b"x")).await, NdmpError::PERMISSION_ERR);
    assert_eq!(
        err(&mut c, mtio(MtioOp::EOF, 1)).await,
        NdmpError::PERMISSION_ERR
    );
    assert_eq!(
        err(&mut c, mtio(MtioOp(99), 1)).await,
        NdmpError::ILLEGAL_ARGS_ERR
    );
    assert_eq!(
        err(&mut c, Request::TapeClose(Void)).await,
        NdmpError::NO_ERR
    );

    let lib = Library::new(&t.cfg);
    Vtape::set_write_protect(&lib.resolve("vtape1").unwrap(), true).unwrap();
    assert_eq!(
        err(&mut c, open("vtape1", TapeOpenMode::RDWR)).await,
        NdmpError::WRITE_PROTECT_ERR
    );
    assert_eq!(
        err(&mut c, open("vtape1", TapeOpenMode::READ)).await,
        NdmpError::NO_ERR
    );
    assert_ne!(state(&mut c).await.flags & tape_state::WR_PROT, 0);
}

#[tokio::test]
async fn eject_leaves_the_cartridge_in_the_drive_for_the_robot() {
    let t = start().await;
    let mut c = client(&t).await;
    assert_eq!(
        err(&mut c, open("vtape0", TapeOpenMode::RDWR)).await,
        NdmpError::NO_ERR
    );
    assert_eq!(resid(&mut c, MtioOp::OFF, 1).await.0, NdmpError::NO_ERR);
    assert_eq!(
        err(&mut c, write(b"x")).await,
        NdmpError::NO_TAPE_LOADED_ERR
    );
    assert_eq!(
        err(&mut c, Request::TapeClose(Void)).await,
        NdmpError::NO_ERR
    );
    assert_eq!(
        err(&mut c, open("vtape0", TapeOpenMode::READ)).await,
        NdmpError::NO_TAPE_LOADED_ERR
    );
    // the cartridge waits, unloaded, in the drive for the robot or an operator
    let lib = Library::new(&t.cfg);
    let vt = lib
        .cartridges()
        .into_iter()
        .find(|c| c.loaded_in.as_deref() == Some("vtape0"));
    assert!(vt.is_some(), "still in the drive after OFF");
    assert!(lib.load("vtape0", "VT0003").is_err(), "the drive is full");
    let (label, to) = lib.unload("vtape0").unwrap().unwrap();
    assert_eq!(to, Some(ndmpd::tape::library::Place::Slot(1)), "home slot");
    lib.load("vtape0", &label).unwrap();
    assert_eq!(
        err(&mut c, open("vtape0", TapeOpenMode::READ)).await,
        NdmpError::NO_ERR
    );
    assert_eq!(resid(&mut c, MtioOp::TUR, 0).await.0, NdmpError::NO_ERR);
}

#[tokio::test]
async fn a_killed_session_still_writes_its_filemark() {
    let t = start().await;
    let mut c = client(&t).await;
    assert_eq!(
        err(&mut c, open("vtape1", TapeOpenMode::RDWR)).await,
        NdmpError::NO_ERR
    );
    c.call_ok(write(b"unterminated")).await.unwrap();
    let id = t.registry.list()[0].id;
    assert!(t.registry.kill(id));
    // the notice arrives once the session has closed its tape
    let _ = c.recv(Duration::from_secs(10)).await;
    for _ in 0..100 {
        if t.registry.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cart = Library::new(&t.cfg).resolve("vtape1").unwrap();
    let i = Vtape::inspect(&cart).unwrap();
    assert_eq!(i.filemarks, 1, "{i}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_test_tape_passes_every_reachable_step() {
    let t = start().await;
    let agent = format!("127.0.0.1:{}/4t,ndmp,tape-pw", t.addr.port());
    let text = tokio::task::spawn_blocking(move || {
        common::ndmjob(&["-o", "test-tape", "-vv", "-T", &agent, "-f", "vtape0"])
    })
    .await
    .unwrap();
    let passed = text.matches("-- Passed").count();
    let failed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("-- Failed") || l.contains("-- Almost"))
        .collect();
    // ndmjob's own client cannot send the zero-length TAPE_WRITE of T-BW #6 to any server
    assert!(
        failed.iter().all(|l| l.contains("T-BW #6")),
        "unexpected failures: {failed:?}\n{text}"
    );
    assert!(passed >= 17, "only {passed} steps passed:\n{text}");
}
