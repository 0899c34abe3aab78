//! Operations of one server that must not wait for each other: two backups at once onto two
//! drives, and a backup while a restore runs. Each is held mid-way by its mover's window (a
//! pause, not a clock), so both are seen ACTIVE at the same moment; one then finishes while
//! the other is still held, and every image restores identical.

mod common;

use common::mover::{mover_state, open, void, window};
use ndmpd::client::Client;
use ndmpd::tape::library::Library;
use ndmpd::tape::vtape::Vtape;
use ndmpd::tape::TapeDevice;
use ndmpd::wire::header::Body;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::{Reply, Request};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PW: &[u8] = b"concurrency-pw";
/// One mover record: a window of one record pauses an operation at its start.
const REC: u32 = 10240;

async fn server() -> common::TestServer {
    common::start("ndmp", PW, |_| {}).await
}

/// The test tree, plus a file of its own so that two trees make different images.
fn tree(t: &common::TestServer, name: &str) -> PathBuf {
    let p = t.dir.path().join(name);
    common::tree::build(&p);
    let own: Vec<u8> = (0..300_000u32)
        .map(|i| (i * 7 + name.len() as u32) as u8)
        .collect();
    std::fs::write(p.join(format!("{name}.bin")), own).unwrap();
    p
}

async fn data_state(c: &mut Client) -> DataGetStateReply {
    match c.call_ok(void(Request::DataGetState)).await.unwrap() {
        Reply::DataGetState(s) => s,
        other => panic!("{other:?}"),
    }
}

/// Waits (a bounded number of looks) for the mover to pause at the end of its window: EOW
/// writing a backup, SEEK reading for a restore.
async fn paused(c: &mut Client) {
    for _ in 0..3000 {
        let m = mover_state(c).await;
        if m.state == MoverState::PAUSED {
            let at_end = [MoverPauseReason::EOW, MoverPauseReason::SEEK];
            assert!(at_end.contains(&m.pause_reason), "{m:?}");
            return;
        }
        // LISTEN until the LOCAL connection is taken up
        let going = [MoverState::LISTEN, MoverState::ACTIVE];
        assert!(going.contains(&m.state), "{m:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the mover never paused");
}

/// A LOCAL dump backup of `tree` onto `drive` with a mover window of `win` bytes, started.
async fn start_backup(c: &mut Client, drive: &str, tree: &Path, win: u64) {
    for r in [
        Request::MoverSetRecordSize(MoverSetRecordSizeRequest { len: REC }),
        open(drive, TapeOpenMode::RDWR),
        window(0, win),
        Request::MoverListen(MoverListenRequest {
            mode: MoverMode::READ,
            addr_type: AddrType::LOCAL,
        }),
        Request::DataConnect(DataConnectRequest { addr: Addr::Local }),
        Request::DataStartBackup(DataStartBackupRequest {
            butype_name: "dump".into(),
            env: vec![
                Pval::new("FILESYSTEM", tree.to_str().unwrap()),
                Pval::new("HIST", "y"),
            ],
        }),
    ] {
        c.call_ok(r).await.unwrap();
    }
}

/// A LOCAL recover of the whole dump image on `drive` into `dest`, window `win`, started.
async fn start_restore(c: &mut Client, drive: &str, dest: &Path, win: u64) {
    let dest = dest.to_str().unwrap();
    for r in [
        Request::MoverSetRecordSize(MoverSetRecordSizeRequest { len: REC }),
        open(drive, TapeOpenMode::READ),
        window(0, win),
        Request::MoverListen(MoverListenRequest {
            mode: MoverMode::WRITE,
            addr_type: AddrType::LOCAL,
        }),
        Request::DataConnect(DataConnectRequest { addr: Addr::Local }),
        Request::DataStartRecover(DataStartRecoverRequest {
            env: vec![Pval::new("TYPE", "dump"), Pval::new("PREFIX", dest)],
            nlist: vec![Name {
                original_path: "/".into(),
                destination_path: dest.into(),
                name: "".into(),
                other_name: "".into(),
                node: u64::MAX,
                fh_info: u64::MAX,
            }],
            butype_name: "dump".into(),
        }),
    ] {
        c.call_ok(r).await.unwrap();
    }
    // the DATA server asks for the image through the DMA: MOVER_READ of what it names
    loop {
        let m = c.recv(Duration::from_secs(60)).await.unwrap().unwrap();
        if let Body::Request(Request::NotifyDataRead(r)) = m.body {
            let range = MoverRangeRequest {
                offset: r.offset,
                length: r.length,
            };
            c.call_ok(Request::MoverRead(range)).await.unwrap();
            break;
        }
    }
}

/// Opens the paused mover's window from `from` to the end of the stream and goes on.
async fn resume(c: &mut Client, from: u64) {
    c.call_ok(window(from, u64::MAX - from)).await.unwrap();
    c.call_ok(void(Request::MoverContinue)).await.unwrap();
}

/// Waits for NOTIFY_DATA_HALTED, which must say SUCCESSFUL, then stops DATA and the mover
/// and closes the tape (its filemark ends a backup's image).
async fn finish(c: &mut Client) {
    loop {
        let m = c
            .recv(Duration::from_secs(120))
            .await
            .unwrap()
            .expect("the server closed the connection");
        match m.body {
            Body::Request(Request::NotifyDataHalted(h)) => {
                assert_eq!(h.reason, DataHaltReason::SUCCESSFUL);
                break;
            }
            Body::Request(Request::LogMessage(l)) => {
                assert_ne!(l.log_type, LogType::ERROR, "{}", l.entry)
            }
            _ => {}
        }
    }
    c.call_ok(void(Request::DataStop)).await.unwrap();
    // a backup's mover halts when DATA closes the connection; a restore's may still be
    // reading past the image's end
    for _ in 0..3000 {
        match mover_state(c).await.state {
            MoverState::HALTED => break,
            MoverState::ACTIVE | MoverState::PAUSED => {
                c.call_ok(void(Request::MoverAbort)).await.unwrap();
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    c.call_ok(void(Request::MoverStop)).await.unwrap();
    c.call_ok(void(Request::TapeClose)).await.unwrap();
}

/// Tape file 0 of the cartridge in `drive`, as one image file.
fn image(t: &common::TestServer, drive: &str) -> PathBuf {
    let cart = Library::new(&t.cfg).resolve(drive).unwrap();
    let mut v = Vtape::open(&cart, false).unwrap();
    let mut img = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    while let Ok((n, _)) = v.read_record(&mut buf) {
        img.extend_from_slice(&buf[..n]);
    }
    let p = t.dir.path().join(format!("{drive}.dump"));
    std::fs::write(&p, img).unwrap();
    p
}

/// The stock `restore -x` of `drive`'s image gives `tree` back.
fn restores_identical(t: &common::TestServer, drive: &str, tree: &Path) {
    let dest = t.dir.path().join(format!("restored-{drive}"));
    std::fs::create_dir(&dest).unwrap();
    common::tree::restore_x(&image(t, drive), &dest);
    common::tree::assert_same(tree, &dest);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_backups_at_once_onto_two_drives() {
    if !common::require_tool("restore", "dump") {
        return;
    }
    let t = server().await;
    let (a, b) = (tree(&t, "a"), tree(&t, "b"));
    let (mut ca, mut cb) = (t.client().await, t.client().await);
    start_backup(&mut ca, "vtape0", &a, u64::from(REC)).await;
    paused(&mut ca).await;
    start_backup(&mut cb, "vtape1", &b, u64::from(REC)).await;
    paused(&mut cb).await;
    // both in flight at once: neither waited for the other to start
    assert_eq!(data_state(&mut ca).await.state, DataState::ACTIVE);
    assert_eq!(data_state(&mut cb).await.state, DataState::ACTIVE);
    // the second runs to its end while the first is held
    resume(&mut cb, u64::from(REC)).await;
    finish(&mut cb).await;
    assert_eq!(data_state(&mut ca).await.state, DataState::ACTIVE);
    assert_eq!(mover_state(&mut ca).await.state, MoverState::PAUSED);
    resume(&mut ca, u64::from(REC)).await;
    finish(&mut ca).await;
    let t2 = &t;
    tokio::task::block_in_place(|| {
        restores_identical(t2, "vtape0", &a);
        restores_identical(t2, "vtape1", &b);
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_runs_while_a_restore_is_under_way() {
    if !common::require_tool("restore", "dump") {
        return;
    }
    let t = server().await;
    let (a, b) = (tree(&t, "a"), tree(&t, "b"));
    let mut cr = t.client().await;
    start_backup(&mut cr, "vtape0", &a, u64::MAX).await;
    finish(&mut cr).await;

    let dest = t.dir.path().join("restored-while");
    std::fs::create_dir(&dest).unwrap();
    let mut cb = t.client().await;
    start_restore(&mut cr, "vtape0", &dest, u64::from(REC)).await;
    paused(&mut cr).await;
    start_backup(&mut cb, "vtape1", &b, u64::from(REC)).await;
    paused(&mut cb).await;
    assert_eq!(data_state(&mut cr).await.state, DataState::ACTIVE);
    assert_eq!(data_state(&mut cb).await.state, DataState::ACTIVE);
    // the backup ends while the restore is held mid-image
    resume(&mut cb, u64::from(REC)).await;
    finish(&mut cb).await;
    assert_eq!(data_state(&mut cr).await.state, DataState::ACTIVE);
    assert_eq!(mover_state(&mut cr).await.state, MoverState::PAUSED);
    resume(&mut cr, u64::from(REC)).await;
    finish(&mut cr).await;
    common::tree::assert_same(&a, &dest);
    let t2 = &t;
    tokio::task::block_in_place(|| restores_identical(t2, "vtape1", &b));
}
