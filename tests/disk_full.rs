//! A disk filling up under the virtual cartridges, end to end: a backup onto a cartridge whose
//! filesystem runs out pauses EOM (never a halt on ENOSPC), goes on on a cartridge on a
//! filesystem with room, and restores identical from both; through our client and with
//! Amanda's ndmjob changing cartridges by robot.

mod common;

use common::mover::{listen, mover_post, mover_state, open, void, window};

use common::tmpfs::Tmpfs;
use ndmpd::client::Client;
use ndmpd::config::{DeviceKind, TapeConfig};
use ndmpd::tape::library::{Library, Place};
use ndmpd::tape::vtape::{Vtape, DISK_FLOOR, DISK_MARGIN};
use ndmpd::tape::TapeDevice;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::{Reply, Request};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PW: &[u8] = b"disk-pw";
const RS: u32 = 64 << 10;
const ALL: u64 = u64::MAX;
const MIB: u64 = 1 << 20;
/// Far beyond any filesystem here, so only the disk limits these cartridges.
const BIG: u64 = 1 << 40;
/// What the small filesystem holds beyond the margin: about this much goes on its cartridge.
const ROOM: u64 = 3 * MIB;

fn statvfs_free(p: &Path) -> u64 {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: a NUL-terminated path; statvfs fills the struct it is given.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) }, 0);
    // SAFETY: statvfs returned 0.
    let s = unsafe { s.assume_init() };
    s.f_bavail * s.f_frsize
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 253) as u8 ^ (i >> 12) as u8)
        .collect()
}

async fn tape_state(c: &mut Client) -> TapeGetStateReply {
    match c.call_ok(void(Request::TapeGetState)).await.unwrap() {
        Reply::TapeGetState(s) => s,
        other => panic!("{other:?}"),
    }
}

/// Every record of a cartridge's first tape file, concatenated.
fn on_tape(p: &Path) -> Vec<u8> {
    let mut v = Vtape::open(p, false).unwrap();
    let mut buf = vec![0u8; RS as usize];
    let mut out = Vec::new();
    while let Ok((n, _)) = v.read_record(&mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// A cartridge of `BIG` capacity in each of `dirs`, and a server with them in drives t0, t1...
async fn server_with(dirs: &[&Path]) -> (common::TestServer, Vec<PathBuf>) {
    let carts: Vec<PathBuf> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let p = dir.join(format!("D{i}.vtape"));
            Vtape::create(&p, &format!("D{i}"), BIG).unwrap();
            p
        })
        .collect();
    let drives = carts.clone();
    let t = common::start("ndmp", PW, move |cfg| {
        for (i, p) in drives.iter().enumerate() {
            cfg.tapes.push(TapeConfig {
                name: format!("t{i}"),
                kind: DeviceKind::Virtual,
                path: Some(p.clone()),
            });
        }
    })
    .await;
    (t, carts)
}

/// Backs `data` up from t0 on, as a DMA does: at each EOM it asks TAPE_GET_STATE, closes
/// the tape (its filemark) and goes on on the next drive. Returns each pause's seek position
/// and the tape state then.
async fn backup_across(c: &mut Client, data: &[u8]) -> Vec<(u64, TapeGetStateReply)> {
    c.call_ok(Request::MoverSetRecordSize(MoverSetRecordSizeRequest {
        len: RS,
    }))
    .await
    .unwrap();
    c.call_ok(open("t0", TapeOpenMode::RDWR)).await.unwrap();
    c.call_ok(window(0, ALL)).await.unwrap();
    let mut sock = listen(c, MoverMode::READ).await;
    let feed = data.to_vec();
    let writer = tokio::spawn(async move {
        sock.write_all(&feed).await.unwrap();
        sock.shutdown().await.unwrap();
    });
    let mut pauses = Vec::new();
    loop {
        match mover_post(c).await {
            Request::NotifyMoverPaused(p) => {
                assert_eq!(p.reason, MoverPauseReason::EOM, "{p:?}");
                assert!(
                    pauses.is_empty(),
                    "a second EOM, on the cartridge with room"
                );
                pauses.push((p.seek_position, tape_state(c).await));
                c.call_ok(void(Request::TapeClose)).await.unwrap();
                c.call_ok(open("t1", TapeOpenMode::RDWR)).await.unwrap();
                let at = p.seek_position;
                c.call_ok(window(at, ALL - at)).await.unwrap();
                c.call_ok(void(Request::MoverContinue)).await.unwrap();
            }
            Request::NotifyMoverHalted(h) => {
                assert_eq!(h.reason, MoverHaltReason::CONNECT_CLOSED, "{h:?}");
                break;
            }
            _ => unreachable!(),
        }
    }
    writer.await.unwrap();
    let s = mover_state(c).await;
    assert_eq!(s.bytes_moved, data.len() as u64);
    c.call_ok(void(Request::MoverStop)).await.unwrap();
    c.call_ok(void(Request::TapeClose)).await.unwrap();
    pauses
}

/// Reads the stream back from `drives`, changing to the next at each filemark.
async fn restore_across(c: &mut Client, drives: &[&str]) -> Vec<u8> {
    c.call_ok(open(drives[0], TapeOpenMode::READ))
        .await
        .unwrap();
    c.call_ok(window(0, ALL)).await.unwrap();
    let mut sock = listen(c, MoverMode::WRITE).await;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        sock.read_to_end(&mut got).await.unwrap();
        got
    });
    c.call_ok(Request::MoverRead(MoverRangeRequest {
        offset: 0,
        length: ALL,
    }))
    .await
    .unwrap();
    let mut next = 1;
    loop {
        match mover_post(c).await {
            Request::NotifyMoverPaused(p) => {
                assert_eq!(p.reason, MoverPauseReason::EOF, "{p:?}");
                if next == drives.len() {
                    c.call_ok(void(Request::MoverClose)).await.unwrap();
                    continue;
                }
                c.call_ok(void(Request::TapeClose)).await.unwrap();
                c.call_ok(open(drives[next], TapeOpenMode::READ))
                    .await
                    .unwrap();
                next += 1;
                let at = p.seek_position;
                c.call_ok(window(at, ALL - at)).await.unwrap();
                c.call_ok(void(Request::MoverContinue)).await.unwrap();
            }
            Request::NotifyMoverHalted(h) => {
                assert_eq!(h.reason, MoverHaltReason::CONNECT_CLOSED, "{h:?}");
                break;
            }
            _ => unreachable!(),
        }
    }
    c.call_ok(void(Request::MoverStop)).await.unwrap();
    c.call_ok(void(Request::TapeClose)).await.unwrap();
    reader.await.unwrap()
}

/// Both cartridges are whole, each with one filemark, and hold the stream split at `at`.
fn assert_split(carts: &[PathBuf], data: &[u8], at: u64) {
    for p in carts {
        let i = Vtape::inspect(p).unwrap();
        assert!(i.crc_ok(), "{i}");
        assert_eq!(i.filemarks, 1, "{i}");
    }
    let (a, b) = (on_tape(&carts[0]), on_tape(&carts[1]));
    assert_eq!(a.len() as u64, at);
    assert!(
        [a, b].concat() == data,
        "the cartridges do not hold the stream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_onto_a_filling_disk_pauses_eom_and_goes_on_on_a_cartridge_with_room() {
    let small = Tmpfs::mount(DISK_MARGIN + ROOM);
    let roomy = tempfile::tempdir().unwrap();
    let (t, carts) = server_with(&[small.path(), roomy.path()]).await;
    let mut c = t.client().await;

    // TAPE_GET_STATE: the space is the small filesystem's, not the cartridge's terabyte
    c.call_ok(open("t0", TapeOpenMode::READ)).await.unwrap();
    let s = tape_state(&mut c).await;
    let free = statvfs_free(small.path());
    assert_eq!((s.total_space, s.space_remain), (free, free));
    assert!(free < DISK_MARGIN + ROOM, "{free}");
    c.call_ok(void(Request::TapeClose)).await.unwrap();

    // 8 MiB onto a disk with 3 MiB to spare before its margin
    let data = pattern((8 * MIB) as usize + 777);
    let pauses = backup_across(&mut c, &data).await;
    assert_eq!(pauses.len(), 1, "no EOM on the filling disk");
    let (first, s) = &pauses[0];
    assert!(
        *first > ROOM - MIB && *first <= ROOM,
        "{first} bytes went onto the small disk"
    );
    // the cartridge is full because its disk is: the margin is what is left
    assert!(
        s.space_remain < DISK_MARGIN && s.space_remain > DISK_MARGIN - MIB,
        "{s:?}"
    );
    let headers = 32 * first.div_ceil(u64::from(RS));
    assert_eq!(s.total_space - s.space_remain, first + headers, "{s:?}");
    assert!(statvfs_free(small.path()) > DISK_FLOOR);
    assert_split(&carts, &data, *first);

    let back = restore_across(&mut c, &["t0", "t1"]).await;
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the stream read back differs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_onto_a_full_disk_pauses_eom_before_its_first_record() {
    let small = Tmpfs::mount(DISK_MARGIN + ROOM);
    let roomy = tempfile::tempdir().unwrap();
    let (t, carts) = server_with(&[small.path(), roomy.path()]).await;
    // something else took the disk: less than the floor is left
    let take = statvfs_free(small.path()) - DISK_FLOOR / 2;
    std::fs::write(small.path().join("filler"), vec![1u8; take as usize]).unwrap();
    let left = statvfs_free(small.path());
    assert!(left < DISK_FLOOR, "{left}");

    let mut c = t.client().await;
    let data = pattern((2 * MIB) as usize + 5);
    let pauses = backup_across(&mut c, &data).await;
    assert_eq!(pauses.len(), 1, "no EOM on the full disk");
    let (first, s) = &pauses[0];
    assert_eq!(*first, 0, "nothing fits on the full disk");
    assert_eq!((s.total_space, s.space_remain), (left, left));
    // nothing went to the full cartridge (so no filemark was owed either): it is blank
    let i = Vtape::inspect(&carts[0]).unwrap();
    assert_eq!((i.records, i.filemarks), (0, 0), "{i}");
    let i = Vtape::inspect(&carts[1]).unwrap();
    assert_eq!((i.filemarks, i.crc_ok()), (1, true), "{i}");
    assert!(
        on_tape(&carts[1]) == data,
        "the second cartridge does not hold the stream"
    );
    let back = restore_across(&mut c, &["t1"]).await;
    assert!(back == data, "the stream read back differs");
}

fn run_ndmjob(cmd: &str) -> String {
    let args: Vec<&str> = cmd.split_whitespace().collect();
    tokio::task::block_in_place(|| common::ndmjob(&args))
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_spans_a_backup_from_a_full_disk_onto_the_next_cartridge_and_restores_it() {
    let small = Tmpfs::mount(DISK_MARGIN + ROOM);
    let roomy = tempfile::tempdir().unwrap();
    let t = common::start("ndmp", PW, |_| {}).await;
    let a = format!("127.0.0.1:{}/4t,ndmp,disk-pw", t.addr.port());
    let lib = Library::new(&t.cfg);
    // ndmjob's robot jobs want the drive empty
    lib.unload("vtape0").unwrap();
    // the spares in slots 3 and 4 become a cartridge on the small disk and one on a disk
    // with room; the library's cartridge files point at them
    for (label, dir) in [("VT0003", small.path()), ("VT0004", roomy.path())] {
        let real = dir.join(format!("{label}.vtape"));
        Vtape::create(&real, label, BIG).unwrap();
        let in_lib = lib.resolve(label).unwrap();
        std::fs::remove_file(&in_lib).unwrap();
        let _ = std::fs::remove_file(in_lib.with_extension("vtape.idx"));
        std::os::unix::fs::symlink(&real, &in_lib).unwrap();
    }
    assert_eq!(lib.contents().at(&Place::Slot(3)).unwrap().label, "VT0003");
    assert_eq!(lib.contents().at(&Place::Slot(4)).unwrap().label, "VT0004");

    let tree = t.dir.path().join("tree");
    common::tree::build(&tree);
    common::fulltree::noise_file(&tree.join("noise-a"), 4, 1);
    common::fulltree::noise_file(&tree.join("noise-b"), 3, 2);
    // The second medium has no size: ndmjob (3.5.1) then sets the window (offset, all ones),
    // NDMP_LENGTH_INFINITY after an offset, which the mover takes as "to the end".
    let media = "-m @1003 -m @1004";
    let out = run_ndmjob(&format!(
        "-c -v -D {a} -T {a} -r changer0 -f vtape0 {media} -B dump -C {}",
        s(&tree)
    ));
    assert!(out.contains("Operation requires next tape"), "{out}");
    assert!(out.contains("At EOM, not writing filemarks"), "{out}");
    assert!(out.contains("load slot @1004 into drive @1"), "{out}");
    assert!(out.contains("Operation ended OKAY"), "{out}");
    assert!(!out.contains("had problems"), "{out}");
    // the image is split across the two, the first up to its disk's margin
    let i3 = Vtape::inspect(&lib.resolve("VT0003").unwrap()).unwrap();
    let i4 = Vtape::inspect(&lib.resolve("VT0004").unwrap()).unwrap();
    assert!(i3.crc_ok() && i4.crc_ok(), "{i3}\n{i4}");
    let (b3, b4) = (i3.files[0].bytes, i4.files[0].bytes);
    assert!(b3 > ROOM - MIB && b3 <= ROOM, "{i3}");
    assert!(b3 + b4 > 7 * MIB, "{i3}\n{i4}");
    assert!(statvfs_free(small.path()) > DISK_FLOOR);

    // `ndmpd vtape list` says which limit each cartridge meets
    let list = std::process::Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(["vtape", "--data-dir"])
        .arg(&t.cfg.data_dir)
        .arg("list")
        .output()
        .unwrap();
    assert!(list.status.success(), "{list:?}");
    let list = String::from_utf8(list.stdout).unwrap();
    let line = |label: &str| {
        list.lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} in\n{list}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(
        list.lines().next().unwrap().contains("remaining limit"),
        "{list}"
    );
    // label, used (2 words), capacity (2), remaining (2), limit
    assert_eq!(line("VT0003")[7], "disk", "{list}");
    assert_eq!(line("VT0004")[7], "disk", "{list}");
    assert_eq!(line("VT0002")[7], "capacity", "{list}");

    let dest = t.dir.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let out = run_ndmjob(&format!(
        "-x -v -D {a} -T {a} -r changer0 -f vtape0 {media} -B dump -C {}",
        s(&dest)
    ));
    assert!(out.contains("Operation requires next tape"), "{out}");
    assert!(out.contains("Operation ended OKAY"), "{out}");
    common::tree::assert_same(&tree, &dest);
    assert!(common::fulltree::same_contents(
        &tree.join("noise-a"),
        &dest.join("noise-a")
    ));
}
