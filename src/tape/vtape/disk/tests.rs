//! Cartridges on small tmpfs filesystems that the tests mount themselves: early warning and
//! end of medium before the disk is full, and ENOSPC that loses no whole record.

use super::super::{Limit, Room, Vtape, DATA_START, ITEM_HDR};
use super::{free_bytes_at, FLOOR, MARGIN};
use crate::tape::{TapeDevice, TapeError};
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
/// Far more than any filesystem here: only the disk limits these cartridges.
const BIG: u64 = 1 << 40;

/// A tmpfs of a given size on a fresh directory, unmounted (and removed) when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts it; a machine where root cannot mount tmpfs cannot run these tests, and says so.
    fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let target = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let opts = CString::new(format!("size={bytes}")).unwrap();
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let r = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        assert_eq!(
            r,
            0,
            "cannot mount a {bytes}-byte tmpfs on {}: {} (these tests run as root, as CI does)",
            dir.path().display(),
            std::io::Error::last_os_error()
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = CString::new(self.dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; a lazy unmount also works while a file is still open
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

fn record(k: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (k as usize * 7 + i * 13 + (i >> 9)) as u8)
        .collect()
}

fn free(dir: &Path) -> u64 {
    free_bytes_at(dir).unwrap()
}

/// Fills the filesystem of `dir` with a file until it refuses more, then gives back `leave`
/// bytes; returns the file.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let p = dir.join("filler");
    let mut f = File::create(&p).unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    let mut len = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(n) => len += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", p.display()),
        }
    }
    f.set_len(len.saturating_sub(leave)).unwrap();
    p
}

/// Reads every record of the first tape file from BOT.
fn read_all(t: &mut Vtape) -> Vec<Vec<u8>> {
    t.rewind().unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match t.read_record(&mut buf) {
            Ok((n, full)) => {
                assert_eq!(n, full);
                out.push(buf[..n].to_vec());
            }
            Err(TapeError::Eof | TapeError::Eom) => return out,
            Err(e) => panic!("reading record {}: {e}", out.len()),
        }
    }
}

#[test]
fn a_filling_disk_is_early_warning_then_end_of_medium_never_enospc() {
    let fs = Tmpfs::mount(MARGIN + 4 * MIB);
    let path = fs.path().join("A.vtape");
    Vtape::create(&path, "A", BIG).unwrap();
    let mut t = Vtape::open(&path, true).unwrap();

    // the space figures are the filesystem's, and say so
    let s = t.status().unwrap();
    let room = free(fs.path());
    assert_eq!(s.space_remain, Some(room));
    assert_eq!(s.total_space, Some(room), "nothing used yet");
    let r = Room::of(&path, &Vtape::read_info(&path).unwrap());
    assert_eq!((r.remaining, r.limited_by), (room, Limit::Disk));

    // batches of 64 KiB records, as the mover writes them, to near the margin
    const RS: usize = 64 << 10;
    let mut written: Vec<Vec<u8>> = Vec::new();
    while free(fs.path()) > MARGIN + 2 * MIB {
        let batch: Vec<Vec<u8>> = (0..16)
            .map(|k| record(written.len() as u64 + k, RS))
            .collect();
        let refs: Vec<&[u8]> = batch.iter().map(|b| b.as_slice()).collect();
        assert_eq!(t.write_records(&refs), (16, Ok(())));
        drop(refs);
        written.extend(batch);
    }
    // then one at a time, to see which record warns: the one that left the filesystem
    // under the margin
    let mut warned_at = None;
    while warned_at.is_none() {
        let rec = record(written.len() as u64, RS);
        let before = free(fs.path());
        let w = t.write_record(&rec).unwrap();
        written.push(rec);
        if w.early_warning {
            warned_at = Some((before, free(fs.path())));
        }
        assert!(before > MARGIN, "no early warning with {before} bytes free");
    }
    let (before, after) = warned_at.unwrap();
    assert!(before >= MARGIN, "warned late: {before} bytes free before");
    assert!(
        after < MARGIN + PAGE && after + 2 * (RS as u64 + ITEM_HDR) > MARGIN,
        "the warning came {after} bytes free, not at the {MARGIN}-byte margin"
    );
    let at_warning = written.len();
    assert!(
        (at_warning as u64) * (RS as u64) > 3 * MIB,
        "the disk held only {at_warning} records"
    );
    // the write after the warning is end of medium, as at a cartridge's capacity
    assert_eq!(t.write_record(&record(9999, RS)), Err(TapeError::Eom));
    let s = t.status().unwrap();
    assert!(s.space_remain.unwrap() < MARGIN + PAGE, "{s:?}");

    // a DMA that goes on writing gets the margin, then end of medium, never ENOSPC
    loop {
        let rec = record(written.len() as u64, RS);
        match t.write_record(&rec) {
            Ok(w) => {
                assert!(!w.early_warning, "warned twice");
                written.push(rec);
            }
            Err(TapeError::Eom) => break,
            Err(e) => panic!("record {} past the warning: {e}", written.len()),
        }
    }
    let left = free(fs.path());
    assert!(
        left >= FLOOR && left < FLOOR + 2 * (RS as u64 + ITEM_HDR),
        "end of medium with {left} bytes free"
    );
    assert!(
        written.len() > at_warning + 900,
        "the margin took {} records",
        written.len() - at_warning
    );
    // and again when asked again: the filesystem is the end of this medium
    assert_eq!(t.write_record(&record(1, RS)), Err(TapeError::Eom));
    assert_eq!(t.write_record(&record(2, RS)), Err(TapeError::Eom));
    // the floor keeps room for the filemarks that close the tape file
    t.write_filemarks(2).unwrap();
    let s = t.status().unwrap();
    assert!(
        s.space_remain.unwrap() < FLOOR + 2 * (RS as u64 + ITEM_HDR),
        "{s:?}"
    );

    let back = read_all(&mut t);
    assert_eq!(back.len(), written.len());
    assert!(back == written, "the records read back differ");
    drop(t);
    let i = Vtape::inspect(&path).unwrap();
    assert!(i.crc_ok(), "{i}");
    assert_eq!(
        (i.filemarks, i.files[0].records),
        (2, written.len() as u64),
        "{i}"
    );
}

#[test]
fn enospc_is_end_of_medium_and_every_whole_record_stays_readable() {
    let fs = Tmpfs::mount(MARGIN + 16 * MIB);
    let path = fs.path().join("B.vtape");
    Vtape::create(&path, "B", BIG).unwrap();
    let mut t = Vtape::open(&path, true).unwrap();
    const RS: usize = 256 << 10;
    let mut written = Vec::new();
    for k in 0..3 {
        let rec = record(k, RS);
        assert!(!t.write_record(&rec).unwrap().early_warning);
        written.push(rec);
    }
    let end = DATA_START + 3 * (ITEM_HDR + RS as u64);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), end);

    // another writer fills the disk between two looks at its free space: the next batch
    // gets in part, then ENOSPC
    let filler = fill(fs.path(), 100 * KIB);
    let batch = [record(3, RS), record(4, RS)];
    let refs: Vec<&[u8]> = batch.iter().map(|b| b.as_slice()).collect();
    let (n, r) = t.write_records(&refs);
    assert_eq!((n, r), (0, Err(TapeError::Eom)));
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        end,
        "the torn record was cut off"
    );
    // now the disk is known full: end of medium before writing anything
    assert_eq!(t.write_record(&record(3, RS)), Err(TapeError::Eom));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), end);
    assert!(
        read_all(&mut t) == written,
        "the whole records read back differ"
    );

    // with the disk free again the tape takes records where it stopped
    std::fs::remove_file(&filler).unwrap();
    t.space_filemarks(1).unwrap();
    let rec = record(3, RS);
    assert!(!t.write_record(&rec).unwrap().early_warning);
    written.push(rec);

    // and ENOSPC on a single record (not a batch) is end of medium just the same
    let _filler = fill(fs.path(), 100 * KIB);
    assert_eq!(t.write_record(&record(4, RS)), Err(TapeError::Eom));
    let end = DATA_START + 4 * (ITEM_HDR + RS as u64);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), end);
    drop(t);

    // a fresh open (as a restore does) finds exactly the whole records
    let mut t = Vtape::open(&path, false).unwrap();
    assert!(
        read_all(&mut t) == written,
        "the cartridge lost or changed a record"
    );
    let i = Vtape::inspect(&path).unwrap();
    assert!(i.crc_ok(), "{i}");
    assert_eq!(i.files[0].records, 4, "{i}");
}

#[test]
fn room_is_the_smaller_of_capacity_and_disk() {
    let fs = Tmpfs::mount(MARGIN + 8 * MIB);
    let small = fs.path().join("S.vtape");
    Vtape::create(&small, "S", MIB).unwrap();
    let mut t = Vtape::open(&small, true).unwrap();
    let s = t.status().unwrap();
    assert_eq!((s.total_space, s.space_remain), (Some(MIB), Some(MIB)));
    t.write_record(&record(0, 1000)).unwrap();
    let s = t.status().unwrap();
    assert_eq!(s.space_remain, Some(MIB - 1032));
    let r = Room::of(&small, &Vtape::read_info(&small).unwrap());
    assert_eq!((r.remaining, r.limited_by), (MIB - 1032, Limit::Capacity));
    assert_eq!(r.limited_by.to_string(), "capacity");
    assert_eq!(Room::new(10, 4, Some(6)).limited_by, Limit::Capacity);
    assert_eq!(
        Room::new(10, 4, Some(5)),
        Room {
            remaining: 5,
            limited_by: Limit::Disk
        }
    );
    assert_eq!(Room::new(10, 4, None).remaining, 6);
    assert_eq!(Room::new(10, 12, Some(5)).remaining, 0);
}
