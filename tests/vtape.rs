//! The file-backed virtual tape against NDMP's tape semantics: records, filemarks, spacing,
//! early warning, torn writes, corruption, protection, inspection, and a model-based proptest.

use ndmpd::tape::vtape::{Vtape, VtapeInfo};
use ndmpd::tape::{Spaced, TapeDevice, TapeError, Written};
use proptest::prelude::*;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

const HDR: u64 = 32;
const DATA: u64 = 4096;
const MIB: u64 = 1 << 20;

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn new_cart(dir: &Path, name: &str, capacity: u64) -> PathBuf {
    let p = dir.join(format!("{name}.vtape"));
    Vtape::create(&p, name, capacity).unwrap();
    p
}

fn open_rw(p: &Path) -> Vtape {
    Vtape::open(p, true).unwrap()
}

fn spaced(resid: u32, stopped: Option<TapeError>) -> Spaced {
    Spaced { resid, stopped }
}

fn ok(bytes: usize) -> Result<Written, TapeError> {
    Ok(Written {
        bytes,
        early_warning: false,
    })
}

fn read(t: &mut Vtape, size: usize) -> Result<Vec<u8>, TapeError> {
    let mut buf = vec![0u8; size];
    let (n, _) = t.read_record(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn is_io(r: &Result<impl std::fmt::Debug, TapeError>, what: &str) -> bool {
    matches!(r, Err(TapeError::Io(m)) if m.contains(what))
}

/// `(file_num, block_no)` from GET_STATE.
fn at(t: &mut Vtape) -> (u32, u32) {
    let s = t.status().unwrap();
    (s.file_num.unwrap(), s.block_no.unwrap())
}

fn flip(p: &Path, off: u64) {
    let f = OpenOptions::new().read(true).write(true).open(p).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, off).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, off).unwrap();
}

fn sidecar(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}.idx", p.display()))
}

const SIZES: [usize; 15] = [
    1,
    2,
    3,
    511,
    512,
    513,
    4095,
    4096,
    4097,
    65535,
    65536,
    65537,
    (1 << 20) - 1,
    1 << 20,
    (1 << 20) + 3,
];

#[test]
fn record_sizes_and_filemarks_round_trip_after_reopen() {
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "T1", 64 * MIB);
    {
        let mut t = open_rw(&p);
        for (i, &n) in SIZES.iter().enumerate() {
            assert_eq!(t.write_record(&pattern(n, i as u64)), ok(n));
            if i % 3 == 2 {
                t.write_filemarks(1).unwrap();
            }
        }
        t.flush().unwrap();
    }
    // twice: once through the saved index, once walking the headers
    for pass in 0..2 {
        if pass == 1 {
            fs::remove_file(sidecar(&p)).unwrap();
        }
        let mut t = Vtape::open(&p, false).unwrap();
        for (i, &n) in SIZES.iter().enumerate() {
            let mut buf = vec![0u8; 2 << 20];
            let (got, full) = t.read_record(&mut buf).unwrap();
            assert_eq!((got, full), (n, n), "record {i}");
            assert!(buf[..n] == pattern(n, i as u64)[..], "record {i}");
            if i % 3 == 2 {
                // at a filemark: EOF, and again EOF, the head stays on its BOT side
                assert_eq!(t.read_record(&mut buf), Err(TapeError::Eof));
                assert_eq!(t.read_record(&mut buf), Err(TapeError::Eof));
                assert_eq!(t.space_filemarks(1).unwrap(), spaced(0, None));
            }
        }
        assert_eq!(read(&mut t, 10), Err(TapeError::Eom));
        assert_eq!(read(&mut t, 10), Err(TapeError::Eom));
        assert_eq!(at(&mut t), (5, 0));
    }
    let i = Vtape::inspect(&p).unwrap();
    assert!(i.crc_ok(), "{i}");
    assert_eq!(i.records, 15);
    assert_eq!(i.filemarks, 5);
}

#[test]
fn short_reads_truncate_and_report_the_full_length() {
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "T", 16 * MIB);
    let mut t = open_rw(&p);
    let a = pattern(300_000, 1);
    let b = pattern(10, 2);
    t.write_record(&a).unwrap();
    t.write_record(&b).unwrap();
    t.rewind().unwrap();
    let mut buf = [0u8; 7];
    assert_eq!(t.read_record(&mut buf), Ok((7, 300_000)));
    assert_eq!(buf[..], a[..7]);
    assert_eq!(t.read_record(&mut buf), Ok((7, 10)));
    assert_eq!(buf[..], b[..7]);
    // a zero-length read does nothing
    t.rewind().unwrap();
    assert_eq!(t.read_record(&mut []), Ok((0, 0)));
    assert_eq!(at(&mut t), (0, 0));
    // the discarded excess is still checked
    drop(t);
    flip(&p, DATA + HDR + 200_000);
    let mut t = Vtape::open(&p, false).unwrap();
    assert!(is_io(&t.read_record(&mut buf), "CRC mismatch"));
    assert_eq!(t.read_record(&mut buf), Ok((7, 10)));
}

/// file 0: r0 r1 r2 FM | file 1: r3..r7 FM | file 2: FM | file 3: r8 r9 (blank after)
fn spacing_tape(dir: &Path) -> (PathBuf, Vtape) {
    let p = new_cart(dir, "SP", 16 * MIB);
    let mut t = open_rw(&p);
    let mut k = 0;
    for n in [3, 5, 0, 2] {
        for _ in 0..n {
            t.write_record(&pattern(100 + k, k as u64)).unwrap();
            k += 1;
        }
        if k < 10 {
            t.write_filemarks(1).unwrap();
        }
    }
    t.rewind().unwrap();
    (p, t)
}

fn rec(t: &mut Vtape) -> usize {
    read(t, 1000).unwrap().len() - 100
}

#[test]
fn spacing_filemarks_with_resid() {
    let d = tempfile::tempdir().unwrap();
    let (_p, mut t) = spacing_tape(d.path());
    assert_eq!(t.space_filemarks(0).unwrap(), spaced(0, None));
    assert_eq!(t.space_filemarks(1).unwrap(), spaced(0, None));
    assert_eq!(at(&mut t), (1, 0));
    assert_eq!(rec(&mut t), 3);
    assert_eq!(t.space_filemarks(2).unwrap(), spaced(0, None));
    assert_eq!(at(&mut t), (3, 0));
    assert_eq!(rec(&mut t), 8);
    // FSF past end of data: on the EOT side of the last item, with the remainder as resid
    assert_eq!(
        t.space_filemarks(4).unwrap(),
        spaced(4, Some(TapeError::Eom))
    );
    assert_eq!(at(&mut t), (3, 2));
    assert_eq!(read(&mut t, 10), Err(TapeError::Eom));
    // BSF: on the BOT side of the filemark, so the next read meets it
    assert_eq!(t.space_filemarks(-1).unwrap(), spaced(0, None));
    assert_eq!(at(&mut t), (2, 0));
    assert_eq!(read(&mut t, 10), Err(TapeError::Eof));
    assert_eq!(t.space_filemarks(-2).unwrap(), spaced(0, None));
    assert_eq!(at(&mut t), (0, 3));
    assert_eq!(read(&mut t, 10), Err(TapeError::Eof));
    // BSF stops at BOT
    assert_eq!(
        t.space_filemarks(-3).unwrap(),
        spaced(3, Some(TapeError::Bot))
    );
    assert_eq!(at(&mut t), (0, 0));
    assert_eq!(rec(&mut t), 0);
    assert_eq!(
        t.space_filemarks(-1).unwrap(),
        spaced(1, Some(TapeError::Bot))
    );
    // huge counts (e.g. "to end of data") do not overflow
    assert_eq!(t.space_filemarks(i64::MAX).unwrap().resid, u32::MAX);
    assert_eq!(
        t.space_records(i64::MAX).unwrap().stopped,
        Some(TapeError::Eom)
    );
    assert_eq!(at(&mut t), (3, 2));
    assert_eq!(
        t.space_filemarks(i64::MIN).unwrap().stopped,
        Some(TapeError::Bot)
    );
    assert_eq!(at(&mut t), (0, 0));
}

#[test]
fn spacing_records_with_resid() {
    let d = tempfile::tempdir().unwrap();
    let (_p, mut t) = spacing_tape(d.path());
    assert_eq!(t.space_records(2).unwrap(), spaced(0, None));
    assert_eq!(at(&mut t), (0, 2));
    assert_eq!(rec(&mut t), 2);
    // FSR stops on the BOT side of a filemark, and again does not move
    t.rewind().unwrap();
    assert_eq!(t.space_records(5).unwrap(), spaced(2, Some(TapeError::Eof)));
    assert_eq!(at(&mut t), (0, 3));
    assert_eq!(t.space_records(4).unwrap(), spaced(4, Some(TapeError::Eof)));
    assert_eq!(at(&mut t), (0, 3));
    assert_eq!(read(&mut t, 10), Err(TapeError::Eof));
    // BSR stops on the EOT side of a filemark, and again does not move
    t.space_filemarks(1).unwrap();
    t.space_records(3).unwrap();
    assert_eq!(at(&mut t), (1, 3));
    assert_eq!(t.space_records(-2).unwrap(), spaced(0, None));
    assert_eq!(rec(&mut t), 4);
    assert_eq!(
        t.space_records(-9).unwrap(),
        spaced(7, Some(TapeError::Eof))
    );
    assert_eq!(at(&mut t), (1, 0));
    assert_eq!(
        t.space_records(-1).unwrap(),
        spaced(1, Some(TapeError::Eof))
    );
    assert_eq!(rec(&mut t), 3);
    // BSR stops at BOT; FSR at blank tape
    t.rewind().unwrap();
    t.space_records(1).unwrap();
    assert_eq!(
        t.space_records(-3).unwrap(),
        spaced(2, Some(TapeError::Bot))
    );
    assert_eq!(at(&mut t), (0, 0));
    t.space_filemarks(3).unwrap();
    assert_eq!(t.space_records(5).unwrap(), spaced(3, Some(TapeError::Eom)));
    assert_eq!(at(&mut t), (3, 2));
    // between two filemarks there are no records to space over
    t.rewind().unwrap();
    t.space_filemarks(2).unwrap();
    assert_eq!(t.space_records(1).unwrap(), spaced(1, Some(TapeError::Eof)));
    assert_eq!(
        t.space_records(-1).unwrap(),
        spaced(1, Some(TapeError::Eof))
    );
    assert_eq!(at(&mut t), (2, 0));
}

#[test]
fn status_figures() {
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "ST", 10 * MIB);
    let mut t = open_rw(&p);
    let s = t.status().unwrap();
    assert_eq!(s.file_num, Some(0));
    assert_eq!(s.block_no, Some(0));
    assert_eq!(s.block_size, 0);
    assert_eq!(s.total_space, Some(10 * MIB));
    assert_eq!(s.space_remain, Some(10 * MIB));
    assert!(!s.write_protected);
    t.write_record(&[1; 1000]).unwrap();
    t.write_record(&[2; 1000]).unwrap();
    t.write_filemarks(2).unwrap();
    t.write_record(&[3; 10]).unwrap();
    let s = t.status().unwrap();
    assert_eq!((s.file_num, s.block_no), (Some(2), Some(1)));
    assert_eq!(s.space_remain, Some(10 * MIB - (2 * 1032 + 2 * 32 + 42)));
    assert_eq!(t.info().used, 2 * 1032 + 2 * 32 + 42);
    assert_eq!(Vtape::read_info(&p).unwrap().used, 2 * 1032 + 2 * 32 + 42);
}

#[test]
fn early_warning_then_eom_once_then_physical_end() {
    let d = tempfile::tempdir().unwrap();
    let cap = MIB;
    let p = new_cart(d.path(), "EW", cap);
    let mut t = open_rw(&p);
    let mark = t.info().early_warning;
    assert_eq!(mark, cap - cap / 100);
    let rec = vec![7u8; 4000];
    let item = 4000 + HDR;
    let mut n = 0;
    loop {
        let w = t.write_record(&rec).unwrap();
        n += 1;
        assert_eq!(w.bytes, 4000);
        if w.early_warning {
            break;
        }
        assert!(n * item <= mark);
    }
    assert!(n * item > mark);
    // the next write fails with EOM and writes nothing
    let used = t.info().used;
    assert_eq!(t.write_record(&rec), Err(TapeError::Eom));
    assert_eq!(t.info().used, used);
    // filemarks never report EOM
    t.write_filemarks(1).unwrap();
    // then writes succeed until physical end of medium
    let mut more = 0;
    let err = loop {
        match t.write_record(&rec) {
            Ok(w) => {
                assert!(!w.early_warning);
                more += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, TapeError::Io(ref m) if m.contains("physical end")),
        "{err:?}"
    );
    assert!(more > 0);
    let used = t.info().used;
    assert!(used <= cap && used + item > cap);
    // what still fits is still written, up to exactly the capacity
    let left = (cap - used) as usize;
    if left > HDR as usize {
        let n = left - HDR as usize;
        assert_eq!(t.write_record(&vec![1; n]), ok(n));
        assert_eq!(t.info().used, cap);
    }
    // past the end a filemark fails too
    assert!(is_io(&t.write_filemarks(200), "physical end"));
    assert!(is_io(&t.write_record(&[1]), "physical end"));
    // rewriting from BOT frees the space and arms early warning again
    t.rewind().unwrap();
    assert_eq!(t.write_record(&rec), ok(4000));
    assert_eq!(t.status().unwrap().space_remain, Some(cap - item));
}

#[test]
fn early_warning_on_a_reopened_full_tape() {
    let d = tempfile::tempdir().unwrap();
    let cap = MIB;
    let p = new_cart(d.path(), "EW", cap);
    let mut t = open_rw(&p);
    let mark = t.info().early_warning;
    // fill to just past the mark in one record
    t.write_record(&vec![0; (mark - HDR) as usize]).unwrap();
    let w = t.write_record(&[1; 100]).unwrap();
    assert!(w.early_warning);
    drop(t);
    // a new session appending inside the zone is warned once, too
    let mut t = open_rw(&p);
    t.space_records(2).unwrap();
    assert!(t.write_record(&[2; 100]).unwrap().early_warning);
    assert_eq!(t.write_record(&[3; 100]), Err(TapeError::Eom));
    assert_eq!(t.write_record(&[3; 100]), ok(100));
}

#[test]
fn writing_in_the_middle_truncates_the_rest() {
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "MID", 16 * MIB);
    let mut t = open_rw(&p);
    for i in 0..6 {
        t.write_record(&pattern(5000, i)).unwrap();
        t.write_filemarks(1).unwrap();
    }
    t.flush().unwrap();
    t.rewind().unwrap();
    t.space_filemarks(2).unwrap();
    t.space_records(1).unwrap();
    // a filemark in the middle also truncates
    t.write_filemarks(1).unwrap();
    t.write_record(b"new").unwrap();
    let end = t.info().used;
    assert_eq!(end, 2 * (5032 + 32) + 5032 + 32 + 35);
    assert_eq!(read(&mut t, 10), Err(TapeError::Eom));
    drop(t);
    assert_eq!(fs::metadata(&p).unwrap().len(), DATA + end);
    for pass in 0..2 {
        if pass == 1 {
            fs::remove_file(sidecar(&p)).unwrap();
        }
        let mut t = Vtape::open(&p, false).unwrap();
        for i in 0..3 {
            assert_eq!(read(&mut t, 8000).unwrap(), pattern(5000, i));
            assert_eq!(read(&mut t, 8000), Err(TapeError::Eof));
            t.space_filemarks(1).unwrap();
        }
        assert_eq!(read(&mut t, 8000).unwrap(), b"new");
        assert_eq!(read(&mut t, 8000), Err(TapeError::Eom));
    }
    // writing at BOT truncates everything
    let mut t = open_rw(&p);
    t.write_record(b"label").unwrap();
    t.rewind().unwrap();
    assert_eq!(read(&mut t, 100).unwrap(), b"label");
    assert_eq!(read(&mut t, 100), Err(TapeError::Eom));
}

/// One item of a scripted tape: a record's bytes, or a filemark.
type Scripted = Option<Vec<u8>>;

/// Writes `items` from BOT over whatever the cartridge holds; returns each item's byte range.
fn write_script(t: &mut Vtape, items: &[Scripted]) -> Vec<(u64, u64)> {
    t.rewind().unwrap();
    let mut at = DATA;
    let mut ranges = Vec::new();
    for it in items {
        match it {
            Some(d) => t.write_record(d).map(|_| ()).unwrap(),
            None => t.write_filemarks(1).unwrap(),
        }
        let end = at + HDR + it.as_ref().map_or(0, |d| d.len() as u64);
        ranges.push((at, end));
        at = end;
    }
    ranges
}

/// Reads the tape from BOT against `items`; an I/O error is allowed only for the item whose
/// payload holds byte `k` (one the disk had written only in part). Returns how many items
/// were passed before end of data.
fn read_script(t: &mut Vtape, items: &[Scripted], ranges: &[(u64, u64)], k: u64) -> usize {
    let mut j = 0;
    loop {
        match read(t, 20_000) {
            Ok(d) => {
                assert!(
                    j < items.len(),
                    "k={k}: read {} bytes after the last new item",
                    d.len()
                );
                assert_eq!(Some(&d), items[j].as_ref(), "k={k}: item {j}");
            }
            Err(TapeError::Eof) => {
                assert!(
                    j < items.len() && items[j].is_none(),
                    "k={k}: filemark at {j}"
                );
                t.space_filemarks(1).unwrap();
            }
            Err(TapeError::Eom) => return j,
            Err(TapeError::Io(m)) => {
                let (a, b) = ranges[j];
                assert!(a + HDR <= k && k < b, "k={k}: item {j} ({a}..{b}): {m}");
            }
            Err(e) => panic!("k={k}: item {j}: {e:?}"),
        }
        j += 1;
    }
}

/// Overwriting goes over the old items in place instead of cutting them off the file first;
/// whatever of the new items a crash let reach the disk, nothing of the old ones after them
/// ever reads as data, neither when they sit exactly where a next item would (same offset,
/// same number) nor when new headers land inside old payloads.
#[test]
fn an_overwrite_in_place_never_reads_old_items_whatever_a_crash_kept() {
    let rec = |n: usize, seed: u64| Some(pattern(n, seed));
    // the new items' sizes match the old ones', so the old item after the new end has the
    // offset, kind and number the next new one would have
    let aligned: Vec<Scripted> = (0..16)
        .map(|i| if i == 10 { None } else { rec(1000, 500 + i) })
        .collect();
    // other sizes, so new headers and the new end fall inside old payloads
    let shifted: Vec<Scripted> = vec![
        rec(700, 1),
        rec(3, 2),
        None,
        rec(5000, 3),
        rec(1200, 4),
        None,
        rec(12, 5),
    ];
    for (name, items) in [("aligned", aligned), ("shifted", shifted)] {
        let d = tempfile::tempdir().unwrap();
        let p = new_cart(d.path(), "INPLACE", 16 * MIB);
        let mut t = open_rw(&p);
        for f in 0..4u64 {
            for r in 0..10 {
                t.write_record(&pattern(1000, 100 + f * 10 + r)).unwrap();
            }
            t.write_filemarks(1).unwrap();
        }
        t.flush().unwrap();
        drop(t);
        let old = fs::read(&p).unwrap();
        let mut t = open_rw(&p);
        let ranges = write_script(&mut t, &items);
        // dies: no flush, no close, no index saved
        std::mem::forget(t);
        let new = fs::read(&p).unwrap();
        let end = ranges.last().unwrap().1;
        assert_eq!(new.len(), old.len(), "{name}: written over in place");
        assert!(end < old.len() as u64);
        // the last write ended its block with zeros, so the kernel did not read it first
        let block_end = end.div_ceil(4096) * 4096;
        assert!(
            new[end as usize..block_end as usize]
                .iter()
                .all(|&b| b == 0),
            "{name}"
        );
        let whole = |k: u64| ranges.iter().filter(|r| r.1 <= k).count();

        // the crash as it is: every new item, then nothing
        let mut t = Vtape::open(&p, false).unwrap();
        assert_eq!(
            read_script(&mut t, &items, &ranges, end),
            items.len(),
            "{name}"
        );
        drop(t);
        let i = Vtape::inspect(&p).unwrap();
        assert!(i.crc_ok(), "{name}: {i}");
        assert_eq!(i.end_of_data, end, "{name}");
        assert_eq!(i.torn_bytes, old.len() as u64 - end, "{name}");

        // crashes that kept the new bytes only up to k (the header page, synced before the
        // first item was overwritten, is always the new one)
        let mut ks: Vec<u64> = (DATA..end + 64).step_by(7).collect();
        ks.extend(
            ranges
                .iter()
                .flat_map(|&(a, b)| [a, a + 1, a + HDR, b - 1, b]),
        );
        let _ = fs::remove_file(sidecar(&p));
        for k in ks {
            let mut b = new[..k as usize].to_vec();
            b.extend_from_slice(&old[k as usize..]);
            fs::write(&p, &b).unwrap();
            let mut t = Vtape::open(&p, false).unwrap();
            let passed = read_script(&mut t, &items, &ranges, k);
            assert!(passed >= whole(k), "{name}: k={k}: {passed} items");
        }

        // a writable open cuts off what the overwrite left, and appends after the new items
        fs::write(&p, &new).unwrap();
        let mut t = open_rw(&p);
        assert_eq!(fs::metadata(&p).unwrap().len(), end, "{name}");
        t.space_filemarks(10).ok();
        t.write_record(b"after").unwrap();
        drop(t);
        let mut t = Vtape::open(&p, false).unwrap();
        let mut with: Vec<Scripted> = items.clone();
        with.push(Some(b"after".to_vec()));
        let mut r = ranges.clone();
        r.push((end, end + HDR + 5));
        assert_eq!(
            read_script(&mut t, &with, &r, u64::MAX),
            with.len(),
            "{name}"
        );
    }
}

/// A cartridge written before overwrites went in place (format version 1) reads as before,
/// and takes an overwrite in place.
#[test]
fn a_version_1_cartridge_reads_and_is_overwritten_in_place() {
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "OLD", 16 * MIB);
    let mut t = open_rw(&p);
    for r in 0..6 {
        t.write_record(&pattern(3000, r)).unwrap();
    }
    t.write_filemarks(1).unwrap();
    drop(t);
    // version 1: the same bytes with 1 in the version field (generation-0 items are alike)
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    for slot in [0u64, 512] {
        let mut b = [0u8; 512];
        f.read_exact_at(&mut b, slot).unwrap();
        assert_eq!(&b[8..12], &2u32.to_le_bytes());
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32fast::hash(&b[..508]);
        b[508..].copy_from_slice(&crc.to_le_bytes());
        f.write_all_at(&b, slot).unwrap();
    }
    drop(f);
    let _ = fs::remove_file(sidecar(&p));
    let mut t = Vtape::open(&p, false).unwrap();
    for r in 0..6 {
        assert_eq!(read(&mut t, 4000).unwrap(), pattern(3000, r));
    }
    assert_eq!(read(&mut t, 4000), Err(TapeError::Eof));
    drop(t);
    let len = fs::metadata(&p).unwrap().len();
    let mut t = open_rw(&p);
    t.space_records(2).unwrap();
    t.write_record(b"two").unwrap();
    std::mem::forget(t);
    assert_eq!(
        fs::metadata(&p).unwrap().len(),
        len,
        "written over in place"
    );
    let mut t = Vtape::open(&p, false).unwrap();
    for r in 0..2 {
        assert_eq!(read(&mut t, 4000).unwrap(), pattern(3000, r));
    }
    assert_eq!(read(&mut t, 4000).unwrap(), b"two");
    assert_eq!(read(&mut t, 4000), Err(TapeError::Eom));
}

/// A tape ending in `last`, and the offset where `last` starts.
fn torn_fixture(dir: &Path, last_is_filemark: bool) -> (PathBuf, Vec<u8>, u64) {
    let p = new_cart(dir, "TORN", 16 * MIB);
    let mut t = open_rw(&p);
    t.write_record(&pattern(1000, 1)).unwrap();
    t.write_filemarks(1).unwrap();
    t.write_record(&pattern(77, 2)).unwrap();
    t.write_filemarks(1).unwrap();
    let start = DATA + t.info().used;
    if last_is_filemark {
        t.write_filemarks(1).unwrap();
    } else {
        t.write_record(&pattern(700, 3)).unwrap();
    }
    drop(t);
    // a crash leaves no index behind
    fs::remove_file(sidecar(&p)).unwrap();
    (p.clone(), fs::read(&p).unwrap(), start)
}

fn check_intact(t: &mut Vtape) {
    assert_eq!(read(t, 2000).unwrap(), pattern(1000, 1));
    assert_eq!(read(t, 2000), Err(TapeError::Eof));
    t.space_filemarks(1).unwrap();
    assert_eq!(read(t, 2000).unwrap(), pattern(77, 2));
    assert_eq!(read(t, 2000), Err(TapeError::Eof));
    t.space_filemarks(1).unwrap();
}

#[test]
fn a_torn_last_record_is_dropped_at_every_offset() {
    for last_is_filemark in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let (p, bytes, start) = torn_fixture(d.path(), last_is_filemark);
        for cut in start..bytes.len() as u64 {
            fs::write(&p, &bytes[..cut as usize]).unwrap();
            // read-only: the torn tail is ignored but left alone
            let mut t = Vtape::open(&p, false).unwrap();
            check_intact(&mut t);
            assert_eq!(read(&mut t, 10), Err(TapeError::Eom), "cut at {cut}");
            assert_eq!(at(&mut t), (2, 0));
            drop(t);
            assert_eq!(fs::metadata(&p).unwrap().len(), cut);
            let i = Vtape::inspect(&p).unwrap();
            assert!(i.crc_ok(), "{i}");
            assert_eq!((i.filemarks, i.torn_bytes), (2, cut - start));
            // writable: cut back to the last whole item, and appending works
            let mut t = open_rw(&p);
            assert_eq!(fs::metadata(&p).unwrap().len(), start);
            t.space_filemarks(2).unwrap();
            t.write_record(b"after").unwrap();
            t.rewind().unwrap();
            check_intact(&mut t);
            assert_eq!(read(&mut t, 10).unwrap(), b"after");
            assert_eq!(read(&mut t, 10), Err(TapeError::Eom));
        }
    }
}

#[test]
fn zero_filled_tail_from_a_crash_is_torn() {
    let d = tempfile::tempdir().unwrap();
    let (p, bytes, start) = torn_fixture(d.path(), false);
    let mut b = bytes[..start as usize].to_vec();
    b.resize(start as usize + 4096, 0);
    fs::write(&p, &b).unwrap();
    let mut t = open_rw(&p);
    check_intact(&mut t);
    assert_eq!(read(&mut t, 10), Err(TapeError::Eom));
}

#[test]
fn a_stale_index_is_never_trusted() {
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "IDX", 16 * MIB);
    let mut t = open_rw(&p);
    for n in [100, 200, 300] {
        t.write_record(&pattern(n, n as u64)).unwrap();
    }
    t.flush().unwrap();
    drop(t);
    assert!(sidecar(&p).exists());
    // the file loses everything behind the index's back; new records of other sizes end
    // with one at the same offset, length and number as the index's last one
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(DATA)
        .unwrap();
    let mut t = open_rw(&p);
    assert_eq!(read(&mut t, 10), Err(TapeError::Eom));
    for n in [200, 100, 300] {
        t.write_record(&pattern(n, 1000 + n as u64)).unwrap();
    }
    // dies without saving its index
    std::mem::forget(t);
    let mut t = Vtape::open(&p, false).unwrap();
    for n in [200, 100, 300] {
        assert_eq!(read(&mut t, 1000).unwrap(), pattern(n, 1000 + n as u64));
    }
    assert_eq!(read(&mut t, 10), Err(TapeError::Eom));

    // rewriting from BOT after saving the index, then dying: same
    let mut t = open_rw(&p);
    t.flush().unwrap();
    for n in [100, 200, 300] {
        t.write_record(&pattern(n, 2000 + n as u64)).unwrap();
    }
    std::mem::forget(t);
    let mut t = Vtape::open(&p, false).unwrap();
    for n in [100, 200, 300] {
        assert_eq!(read(&mut t, 1000).unwrap(), pattern(n, 2000 + n as u64));
    }
    assert_eq!(read(&mut t, 10), Err(TapeError::Eom));
    drop(t);

    // a damaged index, or another cartridge's, is ignored
    let mut t = open_rw(&p);
    t.write_record(b"x").unwrap();
    t.flush().unwrap();
    drop(t);
    let good = fs::read(sidecar(&p)).unwrap();
    let mut bad = good.clone();
    bad[20] ^= 1;
    fs::write(sidecar(&p), &bad).unwrap();
    // the write at BOT left one record; the damaged index must not make it look otherwise
    let mut t = Vtape::open(&p, false).unwrap();
    assert_eq!(
        t.space_records(10).unwrap(),
        spaced(9, Some(TapeError::Eom))
    );
    drop(t);
    let q = new_cart(d.path(), "OTHER", 16 * MIB);
    fs::copy(sidecar(&p), sidecar(&q)).unwrap();
    fs::write(sidecar(&q), &good).unwrap();
    let mut t = Vtape::open(&q, false).unwrap();
    assert_eq!(read(&mut t, 10), Err(TapeError::Eom));
}

#[test]
fn flipped_payload_byte_is_a_crc_error() {
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "CRC", 16 * MIB);
    let mut t = open_rw(&p);
    t.write_record(&pattern(1000, 1)).unwrap();
    t.write_filemarks(1).unwrap();
    t.write_record(&pattern(1000, 2)).unwrap();
    t.write_record(&pattern(1000, 3)).unwrap();
    t.write_record(&pattern(1000, 4)).unwrap();
    drop(t);
    let bad = DATA + 1032 + 32 + 1032;
    flip(&p, bad + HDR + 999);
    let mut t = Vtape::open(&p, false).unwrap();
    t.space_filemarks(1).unwrap();
    assert_eq!(read(&mut t, 2000).unwrap(), pattern(1000, 2));
    let e = read(&mut t, 2000);
    assert!(is_io(&e, "CRC mismatch"), "{e:?}");
    assert!(
        is_io(&e, &format!("file 1 record 1 at byte offset {bad}")),
        "{e:?}"
    );
    // the head passed the bad record
    assert_eq!(read(&mut t, 2000).unwrap(), pattern(1000, 4));
    let i = Vtape::inspect(&p).unwrap();
    assert!(!i.crc_ok());
    let b = i.first_bad.clone().unwrap();
    assert_eq!((b.file_num, b.record, b.offset), (1, 1, bad), "{i}");
    assert_eq!(i.bad_records, 1);
    assert!(i.to_string().contains("FAILED"));
}

#[test]
fn flipped_header_byte_is_caught() {
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "HDR", 16 * MIB);
    let mut t = open_rw(&p);
    for i in 0..4 {
        t.write_record(&pattern(1000, i)).unwrap();
    }
    t.flush().unwrap();
    drop(t);
    let second = DATA + 1032;
    let last = DATA + 3 * 1032;
    for (target, field) in [(second, 4), (second, 9), (last, 0), (last, 17), (last, 30)] {
        let original = fs::read(&p).unwrap();
        flip(&p, target + field);
        let k = (target - DATA) / 1032;
        for with_index in [true, false] {
            if !with_index {
                let _ = fs::remove_file(sidecar(&p));
            }
            let mut t = Vtape::open(&p, false).unwrap();
            for i in 0..k {
                assert_eq!(read(&mut t, 2000).unwrap(), pattern(1000, i));
            }
            let e = read(&mut t, 2000);
            assert!(
                is_io(&e, "header"),
                "{target}+{field} index {with_index}: {e:?}"
            );
            // a damaged header is not a torn write: a writable open keeps it
            drop(t);
            drop(open_rw(&p));
            assert_eq!(fs::metadata(&p).unwrap().len(), original.len() as u64);
            let i = Vtape::inspect(&p).unwrap();
            assert!(!i.crc_ok());
            assert_eq!(i.first_bad.unwrap().offset, target);
        }
        fs::write(&p, &original).unwrap();
    }
}

#[test]
fn hostile_lengths_are_errors_not_allocations() {
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "BIG", 16 * MIB);
    let mut t = open_rw(&p);
    t.write_record(&[1; 100]).unwrap();
    t.write_record(&[2; 100]).unwrap();
    drop(t);
    fs::remove_file(sidecar(&p)).unwrap();
    // a header with a valid CRC claiming 4 GiB, then one claiming just over the limit
    for len in [u32::MAX, (16 << 20) + 1] {
        let mut h = [0u8; 32];
        h[0..4].copy_from_slice(b"VTRC");
        h[4..8].copy_from_slice(&len.to_le_bytes());
        h[8..16].copy_from_slice(&1u64.to_le_bytes());
        let crc = crc32fast::hash(&h[..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&h, DATA + 132).unwrap();
        drop(f);
        let mut t = Vtape::open(&p, true).unwrap();
        assert_eq!(read(&mut t, 1000).unwrap(), [1; 100]);
        assert!(matches!(read(&mut t, 1000), Err(TapeError::Io(_))));
        assert!(matches!(t.space_records(5), Err(TapeError::Io(_))));
        assert!(matches!(t.space_filemarks(1), Err(TapeError::Io(_))));
        let i = Vtape::inspect(&p).unwrap();
        assert_eq!(i.damaged_at, Some(DATA + 132));
    }
    // a record too big to write is refused
    let mut t = open_rw(&p);
    assert!(matches!(
        t.write_record(&vec![0; (16 << 20) + 1]),
        Err(TapeError::Io(_))
    ));
}

#[test]
fn junk_files_are_io_errors() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("junk.vtape");
    for content in [vec![], vec![0u8; 10], vec![0u8; 8192], pattern(100_000, 9)] {
        fs::write(&p, &content).unwrap();
        assert!(matches!(Vtape::open(&p, false), Err(TapeError::Io(_))));
        assert!(matches!(Vtape::read_info(&p), Err(TapeError::Io(_))));
        assert!(matches!(Vtape::inspect(&p), Err(TapeError::Io(_))));
    }
    assert!(matches!(
        Vtape::open(&d.path().join("missing"), false),
        Err(TapeError::Io(_))
    ));
}

#[test]
fn a_torn_header_slot_falls_back_to_the_other() {
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "SLOT", 16 * MIB);
    Vtape::set_write_protect(&p, true).unwrap();
    Vtape::set_write_protect(&p, false).unwrap();
    Vtape::set_write_protect(&p, true).unwrap();
    let info = Vtape::read_info(&p).unwrap();
    assert!(info.write_protected);
    // the newest slot is torn: the previous version (not protected) is used
    let newest = (0..2)
        .find(|s| {
            let mut q = fs::read(&p).unwrap();
            q[s * 512 + 100] ^= 1;
            fs::write(d.path().join("probe"), &q).unwrap();
            !Vtape::read_info(&d.path().join("probe"))
                .unwrap()
                .write_protected
        })
        .unwrap();
    flip(&p, newest as u64 * 512 + 100);
    assert!(!Vtape::read_info(&p).unwrap().write_protected);
    flip(&p, (1 - newest) as u64 * 512 + 100);
    assert!(Vtape::read_info(&p).is_err());
}

#[test]
fn write_protection_by_flag_and_by_file_permission() {
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "WP", 16 * MIB);
    let mut t = open_rw(&p);
    t.write_record(b"data").unwrap();
    drop(t);

    Vtape::set_write_protect(&p, true).unwrap();
    assert!(Vtape::read_info(&p).unwrap().write_protected);
    let mut t = open_rw(&p);
    assert!(t.info().write_protected);
    assert!(t.status().unwrap().write_protected);
    assert_eq!(t.write_record(b"x"), Err(TapeError::WriteProtected));
    assert_eq!(t.write_filemarks(1), Err(TapeError::WriteProtected));
    assert_eq!(read(&mut t, 10).unwrap(), b"data");
    drop(t);
    assert_eq!(Vtape::erase(&p), Err(TapeError::WriteProtected));
    Vtape::set_write_protect(&p, false).unwrap();
    let mut t = open_rw(&p);
    assert!(!t.info().write_protected);
    t.space_records(1).unwrap();
    assert_eq!(t.write_record(b"more"), ok(4));
    drop(t);

    // opened read-only: no writes, but the cartridge itself is not protected
    let mut t = Vtape::open(&p, false).unwrap();
    assert!(!t.info().write_protected);
    assert_eq!(t.write_record(b"x"), Err(TapeError::WriteProtected));
    drop(t);

    // no write permission on the file (checked by mode, so this holds for root too)
    fs::set_permissions(&p, fs::Permissions::from_mode(0o444)).unwrap();
    assert!(Vtape::read_info(&p).unwrap().write_protected);
    let mut t = open_rw(&p);
    assert!(t.info().write_protected);
    assert_eq!(t.write_record(b"x"), Err(TapeError::WriteProtected));
    assert_eq!(read(&mut t, 10).unwrap(), b"data");
    assert_eq!(read(&mut t, 10).unwrap(), b"more");
    drop(t);
    assert_eq!(Vtape::erase(&p), Err(TapeError::WriteProtected));
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn erase_keeps_label_and_capacity() {
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "ER01", 32 * MIB);
    let mut t = open_rw(&p);
    for i in 0..10 {
        t.write_record(&pattern(10_000, i)).unwrap();
    }
    t.write_filemarks(1).unwrap();
    t.flush().unwrap();
    drop(t);
    Vtape::erase(&p).unwrap();
    let info = Vtape::read_info(&p).unwrap();
    assert_eq!(
        info,
        VtapeInfo {
            label: "ER01".into(),
            capacity: 32 * MIB,
            early_warning: 32 * MIB - 32 * MIB / 100,
            write_protected: false,
            used: 0,
        }
    );
    assert_eq!(fs::metadata(&p).unwrap().len(), DATA);
    let mut t = open_rw(&p);
    assert_eq!(read(&mut t, 100), Err(TapeError::Eom));
    assert_eq!(
        t.space_filemarks(1).unwrap(),
        spaced(1, Some(TapeError::Eom))
    );
    assert_eq!(t.info(), info);
    t.write_record(b"fresh").unwrap();
    drop(t);
    let mut t = Vtape::open(&p, false).unwrap();
    assert_eq!(read(&mut t, 100).unwrap(), b"fresh");
    assert_eq!(read(&mut t, 100), Err(TapeError::Eom));
}

#[test]
fn create_refuses_to_overwrite() {
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "C", MIB);
    assert!(matches!(Vtape::create(&p, "C", MIB), Err(TapeError::Io(_))));
    assert!(Vtape::create(&d.path().join("z"), "Z", 0).is_err());
    assert!(Vtape::create(&d.path().join("l"), &"x".repeat(200), MIB).is_err());
    let i = Vtape::read_info(&p).unwrap();
    assert_eq!((i.label.as_str(), i.capacity, i.used), ("C", MIB, 0));
}

#[test]
fn unload_ejects() {
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "U", MIB);
    let mut t = open_rw(&p);
    t.write_record(b"abc").unwrap();
    t.ready().unwrap();
    t.unload().unwrap();
    assert_eq!(t.ready(), Err(TapeError::NoTape));
    assert_eq!(t.write_record(b"x"), Err(TapeError::NoTape));
    assert_eq!(read(&mut t, 10), Err(TapeError::NoTape));
    assert_eq!(t.status(), Err(TapeError::NoTape));
    assert_eq!(t.rewind(), Err(TapeError::NoTape));
    assert_eq!(t.space_records(1), Err(TapeError::NoTape));
}

#[test]
fn inspect_reports_files() {
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "INS", 16 * MIB);
    let mut t = open_rw(&p);
    for n in [10, 30, 20] {
        t.write_record(&vec![1; n]).unwrap();
    }
    t.write_filemarks(2).unwrap();
    t.write_record(&[5; 5]).unwrap();
    drop(t);
    let i = Vtape::inspect(&p).unwrap();
    assert!(i.crc_ok());
    assert_eq!(i.files.len(), 3);
    let f: Vec<_> = i
        .files
        .iter()
        .map(|f| {
            (
                f.file_num,
                f.records,
                f.bytes,
                f.min_record,
                f.max_record,
                f.terminated,
            )
        })
        .collect();
    assert_eq!(
        f,
        [
            (0, 3, 60, 10, 30, true),
            (1, 0, 0, 0, 0, true),
            (2, 1, 5, 5, 5, false)
        ]
    );
    assert_eq!((i.filemarks, i.records, i.record_bytes), (2, 4, 65));
    let used = 4 * 32 + 65 + 2 * 32;
    assert_eq!(i.end_of_data, DATA + used);
    assert_eq!(i.info.used, used);
    assert_eq!(i.torn_bytes, 0);
    let text = i.to_string();
    assert!(text.contains("label INS"), "{text}");
    assert!(text.contains("CRC check: ok"), "{text}");
    assert!(serde_json::to_string(&i)
        .unwrap()
        .contains("\"filemarks\":2"));
}

#[test]
fn many_records_space_without_scanning() {
    // a run-length index: a hundred thousand records and a few hundred filemarks
    let d = tempfile::tempdir().unwrap();
    let p = new_cart(d.path(), "MANY", 1 << 30);
    let mut t = open_rw(&p);
    for f in 0..300u32 {
        for r in 0..300u32 {
            t.write_record(&[(f + r) as u8; 20]).unwrap();
        }
        t.write_filemarks(1).unwrap();
    }
    t.flush().unwrap();
    drop(t);
    let mut t = Vtape::open(&p, false).unwrap();
    assert_eq!(t.space_filemarks(299).unwrap(), spaced(0, None));
    assert_eq!(t.space_records(123).unwrap(), spaced(0, None));
    assert_eq!(at(&mut t), (299, 123));
    assert_eq!(read(&mut t, 100).unwrap(), [((299 + 123) % 256) as u8; 20]);
    assert_eq!(t.space_filemarks(-150).unwrap(), spaced(0, None));
    assert_eq!(at(&mut t), (149, 300));
    assert_eq!(
        t.space_records(-1000).unwrap(),
        spaced(700, Some(TapeError::Eof))
    );
    assert_eq!(at(&mut t), (149, 0));
}

// ---- model-based property test ----

/// A tape as a list: the obvious implementation of the same rules.
#[derive(Debug, Clone)]
struct Model {
    items: Vec<Option<Vec<u8>>>,
    pos: usize,
    cap: u64,
    ew_reported: bool,
    eom_next: bool,
}

impl Model {
    fn used(&self, upto: usize) -> u64 {
        self.items[..upto]
            .iter()
            .map(|i| HDR + i.as_ref().map_or(0, |d| d.len() as u64))
            .sum()
    }

    fn mark(&self) -> u64 {
        self.cap - (self.cap / 100).min(64 << 20)
    }

    fn write(&mut self, data: &[u8]) -> Result<Written, TapeError> {
        if data.is_empty() {
            return ok(0);
        }
        if self.eom_next {
            self.eom_next = false;
            return Err(TapeError::Eom);
        }
        let start = self.used(self.pos);
        let end = start + HDR + data.len() as u64;
        if end > self.cap {
            // no room and no warning yet: the refusal is the warning
            if !self.ew_reported || start <= self.mark() {
                self.ew_reported = true;
                return Err(TapeError::Eom);
            }
            return Err(TapeError::Io(String::new()));
        }
        self.items.truncate(self.pos);
        self.items.push(Some(data.to_vec()));
        self.pos += 1;
        if start <= self.mark() {
            self.ew_reported = false;
        }
        let early_warning = end > self.mark() && !self.ew_reported;
        if early_warning {
            self.ew_reported = true;
            self.eom_next = true;
        }
        Ok(Written {
            bytes: data.len(),
            early_warning,
        })
    }

    fn filemarks(&mut self, n: u32) -> Result<(), TapeError> {
        if n == 0 {
            return Ok(());
        }
        let start = self.used(self.pos);
        if start + HDR * u64::from(n) > self.cap {
            return Err(TapeError::Io(String::new()));
        }
        self.items.truncate(self.pos);
        for _ in 0..n {
            self.items.push(None);
        }
        self.pos += n as usize;
        if start <= self.mark() {
            self.ew_reported = false;
        }
        Ok(())
    }

    fn read(&mut self, size: usize) -> Result<(Vec<u8>, usize), TapeError> {
        if size == 0 {
            return Ok((vec![], 0));
        }
        self.eom_next = false;
        match self.items.get(self.pos) {
            None => Err(TapeError::Eom),
            Some(None) => Err(TapeError::Eof),
            Some(Some(d)) => {
                self.pos += 1;
                Ok((d[..size.min(d.len())].to_vec(), d.len()))
            }
        }
    }

    fn space_fm(&mut self, count: i64) -> Spaced {
        self.eom_next = false;
        let mut left = count.unsigned_abs() as u32;
        while left > 0 {
            if count > 0 {
                match (self.pos..self.items.len()).find(|&j| self.items[j].is_none()) {
                    Some(j) => self.pos = j + 1,
                    None => {
                        self.pos = self.items.len();
                        return spaced(left, Some(TapeError::Eom));
                    }
                }
            } else {
                match (0..self.pos).rev().find(|&j| self.items[j].is_none()) {
                    Some(j) => self.pos = j,
                    None => {
                        self.pos = 0;
                        return spaced(left, Some(TapeError::Bot));
                    }
                }
            }
            left -= 1;
        }
        spaced(0, None)
    }

    fn space_rec(&mut self, count: i64) -> Spaced {
        self.eom_next = false;
        let mut left = count.unsigned_abs() as u32;
        while left > 0 {
            if count > 0 {
                match self.items.get(self.pos) {
                    None => return spaced(left, Some(TapeError::Eom)),
                    Some(None) => return spaced(left, Some(TapeError::Eof)),
                    Some(Some(_)) => self.pos += 1,
                }
            } else {
                if self.pos == 0 {
                    return spaced(left, Some(TapeError::Bot));
                }
                if self.items[self.pos - 1].is_none() {
                    return spaced(left, Some(TapeError::Eof));
                }
                self.pos -= 1;
            }
            left -= 1;
        }
        spaced(0, None)
    }

    fn status(&self) -> (u32, u32, u64) {
        let before = &self.items[..self.pos];
        let file = before.iter().filter(|i| i.is_none()).count();
        let last_fm = before.iter().rposition(|i| i.is_none());
        let block = self.pos - last_fm.map_or(0, |j| j + 1);
        (
            file as u32,
            block as u32,
            self.cap - self.used(self.items.len()),
        )
    }

    fn reopen(&mut self) {
        self.pos = 0;
        self.ew_reported = false;
        self.eom_next = false;
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write(usize, u64),
    Filemarks(u32),
    Read(usize),
    SpaceFm(i64),
    SpaceRec(i64),
    Rewind,
    Flush,
    /// Close and reopen.
    Reopen,
    /// Die without closing (no index save), optionally leaving a torn item behind.
    Crash(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..700, any::<u64>()).prop_map(|(n, s)| Op::Write(n, s)),
        2 => (0u32..3).prop_map(Op::Filemarks),
        4 => prop_oneof![Just(0usize), 1usize..50, Just(4096)].prop_map(Op::Read),
        2 => (-4i64..=4).prop_map(Op::SpaceFm),
        2 => (-6i64..=6).prop_map(Op::SpaceRec),
        1 => Just(Op::Rewind),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => (0usize..100).prop_map(Op::Crash),
    ]
}

/// Io messages differ; the kind is what must agree.
fn norm<T>(r: Result<T, TapeError>) -> Result<T, TapeError> {
    r.map_err(|e| match e {
        TapeError::Io(_) => TapeError::Io(String::new()),
        e => e,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn matches_the_model(cap in 2_000u64..12_000, ops in prop::collection::vec(op(), 1..80)) {
        let d = tempfile::tempdir().unwrap();
        let p = new_cart(d.path(), "PROP", cap);
        let mut t = open_rw(&p);
        let mut m = Model { items: vec![], pos: 0, cap, ew_reported: false, eom_next: false };
        for (k, op) in ops.iter().enumerate() {
            match op {
                Op::Write(n, seed) => {
                    let data = pattern(*n, *seed);
                    prop_assert_eq!(norm(t.write_record(&data)), m.write(&data), "op {} {:?}", k, op);
                }
                Op::Filemarks(n) => {
                    prop_assert_eq!(norm(t.write_filemarks(*n)), m.filemarks(*n), "op {} {:?}", k, op);
                }
                Op::Read(size) => {
                    let mut buf = vec![0u8; *size];
                    let got = t.read_record(&mut buf).map(|(n, full)| (buf[..n].to_vec(), full));
                    prop_assert_eq!(norm(got), m.read(*size), "op {} {:?}", k, op);
                }
                Op::SpaceFm(c) => prop_assert_eq!(t.space_filemarks(*c), Ok(m.space_fm(*c)), "op {} {:?}", k, op),
                Op::SpaceRec(c) => prop_assert_eq!(t.space_records(*c), Ok(m.space_rec(*c)), "op {} {:?}", k, op),
                Op::Rewind => {
                    t.rewind().unwrap();
                    m.pos = 0;
                    m.eom_next = false;
                }
                Op::Flush => t.flush().unwrap(),
                Op::Reopen => {
                    drop(t);
                    t = open_rw(&p);
                    m.reopen();
                }
                Op::Crash(torn) => {
                    std::mem::forget(t);
                    if *torn > 0 {
                        // the start of a record that never finished
                        let f = OpenOptions::new().append(true).open(&p).unwrap();
                        let mut h = [0u8; 32];
                        h[0..4].copy_from_slice(b"VTRC");
                        h[4..8].copy_from_slice(&5000u32.to_le_bytes());
                        h[8..16].copy_from_slice(&(m.items.len() as u64).to_le_bytes());
                        let c = crc32fast::hash(&h[..28]);
                        h[28..32].copy_from_slice(&c.to_le_bytes());
                        let mut b = h.to_vec();
                        b.extend(pattern(*torn, 7));
                        b.truncate(*torn);
                        std::io::Write::write_all(&mut &f, &b).unwrap();
                    }
                    t = open_rw(&p);
                    m.reopen();
                }
            }
            let s = t.status().unwrap();
            let (file, block, remain) = m.status();
            prop_assert_eq!((s.file_num, s.block_no, s.space_remain), (Some(file), Some(block), Some(remain)), "after op {} {:?}", k, op);
        }
        drop(t);
        let i = Vtape::inspect(&p).unwrap();
        prop_assert!(i.crc_ok());
        prop_assert_eq!(i.filemarks as usize, m.items.iter().filter(|x| x.is_none()).count());
    }

    /// Any single flipped byte: the cartridge still opens or fails cleanly, and every record
    /// read back is either exactly what was written or an error.
    #[test]
    fn corruption_is_never_returned_as_data(
        sizes in prop::collection::vec(0usize..3000, 1..12),
        at in any::<prop::sample::Index>(),
        with_index in any::<bool>(),
    ) {
        let d = tempfile::tempdir().unwrap();
        let p = new_cart(d.path(), "FLIP", 1 << 20);
        let mut t = open_rw(&p);
        let mut written = vec![];
        for (i, &n) in sizes.iter().enumerate() {
            if n == 0 {
                t.write_filemarks(1).unwrap();
                written.push(None);
            } else {
                let data = pattern(n, i as u64);
                t.write_record(&data).unwrap();
                written.push(Some(data));
            }
        }
        t.flush().unwrap();
        drop(t);
        if !with_index {
            fs::remove_file(sidecar(&p)).unwrap();
        }
        let len = fs::metadata(&p).unwrap().len();
        // the header page's unused tail is not covered by anything; flip where it matters
        let spots: Vec<u64> = (0..1024).chain(DATA..len).collect();
        flip(&p, spots[at.index(spots.len())]);
        let Ok(mut t) = Vtape::open(&p, false) else { return Ok(()) };
        let mut buf = vec![0u8; 4096];
        let mut k = 0;
        for _ in 0..2 * written.len() + 2 {
            match t.read_record(&mut buf) {
                Ok((n, full)) => {
                    let want = written.get(k).cloned().flatten();
                    prop_assert_eq!(Some(&buf[..n]), want.as_deref());
                    prop_assert_eq!(n, full);
                    k += 1;
                }
                Err(TapeError::Eof) => {
                    prop_assert!(written.get(k).is_some_and(|w| w.is_none()));
                    t.space_filemarks(1).unwrap();
                    k += 1;
                }
                Err(TapeError::Eom) => break,
                Err(TapeError::Io(_)) => break,
                Err(e) => prop_assert!(false, "{:?}", e),
            }
        }
        let _ = Vtape::inspect(&p);
    }
}

#[test]
fn batched_writes_match_single_writes_and_stop_at_the_warning() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = (0..5).map(|i| pattern(1000 + i * 700, i as u64)).collect();
    let slices: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    let (a, b) = (
        new_cart(dir.path(), "a", 32 * MIB),
        new_cart(dir.path(), "b", 32 * MIB),
    );
    let mut ta = open_rw(&a);
    assert_eq!(ta.write_records(&slices), (5, Ok(())));
    ta.write_filemarks(1).unwrap();
    drop(ta);
    let mut tb = open_rw(&b);
    for r in &slices {
        tb.write_record(r).unwrap();
    }
    tb.write_filemarks(1).unwrap();
    drop(tb);
    // same records, same sequence numbers, intact CRCs, and the bytes read back
    let (ia, ib) = (Vtape::inspect(&a).unwrap(), Vtape::inspect(&b).unwrap());
    assert!(ia.crc_ok(), "{ia}");
    assert_eq!(
        (ia.records, ia.record_bytes, ia.filemarks),
        (ib.records, ib.record_bytes, ib.filemarks)
    );
    let mut t = open_rw(&a);
    for r in &recs {
        assert_eq!(&read(&mut t, 8192).unwrap(), r);
    }
    // a batch that crosses the warning mark stops right after the record that crossed it
    let c = new_cart(dir.path(), "c", 16 * MIB);
    let mut t = open_rw(&c);
    let mark = t.info().early_warning;
    let big = pattern(64 << 10, 9);
    let mut written = 0u64;
    while written + 2 * (64 << 10) < mark {
        t.write_record(&big).unwrap();
        written += (64 << 10) + 32;
    }
    let batch: Vec<&[u8]> = vec![&big; 4];
    let (n, r) = t.write_records(&batch);
    assert!(r.is_ok(), "{n} {r:?}");
    assert!((1..4).contains(&n), "{n}");
    assert!((1..4).contains(&n), "{n}");
    assert_eq!(t.write_record(&big), Err(TapeError::Eom));
}
