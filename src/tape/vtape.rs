//! File-backed virtual tape cartridges: one file per cartridge holding records and filemarks
//! with the semantics of a real drive (spec §3.4), CRC-checked and safe against torn writes.
//!
//! # On-disk layout
//!
//! All integers little-endian.
//!
//! ```text
//! 0      header slot A (512 bytes)  magic "NDMPVTAP", version 2, flags (bit 0: write
//! 512    header slot B (512 bytes)  protect), update counter, capacity, tape id, generation,
//!                                   created, data offset, label (≤ 128 bytes), at 200 the
//!                                   overwrite start (0: none), CRC-32
//! 1024   zero up to 4096
//! 4096   item, item, ...            one per record or filemark, back to back
//!        end of data = end of file (after a crash: plus a torn item, or what an overwrite
//!        in place left of older items; cut at the next writable open)
//!
//! item = 32-byte header + payload
//!   0  magic  "VTRC" record | "VTFM" filemark
//!   4  len    payload bytes (1 ..= 16 MiB for a record, 0 for a filemark)
//!   8  seq    item number from BOT (records and filemarks)
//!  16  crc    CRC-32 of the payload (0 for a filemark)
//!  20  gen    the cartridge generation the item was written in
//!  28  hcrc   CRC-32 of header bytes 0..28, preceded by the tape id when gen > 0
//! ```
//!
//! Version 1 (still read; rewritten as 2 at the first header rewrite) had no overwrite start
//! and zero in `gen`, which means the same in version 2.
//!
//! The header is rewritten (write protect, erase, generation bump) into the older slot and
//! synced, so a torn rewrite leaves the previous version; the valid slot with the higher update
//! counter wins.
//!
//! Writing over items (after rewinding or spacing back) overwrites them in place rather than
//! cutting them off the file first: on the disks measured that halves the time of
//! overwriting a cartridge. Before the first byte goes over an item, the generation is bumped
//! and the offset where the overwrite starts is recorded in the header, synced. From that
//! offset on only items of the current generation are data; the first header that is not
//! (an older item, or bytes from inside one) is end of data. A flush or close cuts off what
//! is left after end of data, so a closed cartridge again ends at its end of data.
//!
//! Appends are crash-safe because items are only ever added at the end and each header checks
//! itself: at open the headers are walked from the last known-good item, and a tail that ends
//! inside an item (a partial header, or a valid header whose payload runs past the end of the
//! file, or an all-zero header a crash left unfilled) is a torn write and is dropped (cut from
//! the file when the cartridge is opened writable). A complete header that fails its CRC is
//! not torn but damaged: it is kept, and reading there reports an I/O error. The payload CRC is
//! checked on every read, so corruption is never returned as data.
//!
//! Positions are item numbers. An in-memory [`index::Index`] holds the items as runs of equal
//! items (kind and length), so a tape of equal-size records costs a few words and every
//! spacing or status figure is a binary search, with no I/O. So that opening a big cartridge
//! does not read one header per record, the index is saved next to the cartridge as
//! `<cartridge>.idx` (on flush, unload, close, and after a long scan) together with the
//! cartridge's tape id and generation. It is only a cache: at open it is used when tape id and
//! generation match, it fits in the file and the header of its last item agrees, and the
//! headers after it are then walked as usual; otherwise all headers are walked. Before
//! truncating items that a saved index describes, the generation is bumped and synced, so a
//! stale index is never trusted. Erase gives the cartridge a new tape id.
//!
//! Capacity counts item bytes (headers included), so it bounds the file size. The early-warning
//! zone is the last 1% of the capacity or 64 MiB, whichever is smaller.
//!
//! The filesystem under the cartridge limits it as well as its capacity (`vtape/disk.rs`): a
//! record that leaves less than [`DISK_MARGIN`] free reports early warning, one that would
//! leave less than [`DISK_FLOOR`] is end of medium, and a write the filesystem refuses with
//! ENOSPC is cut back to the last whole record and is end of medium too, never an I/O error.

pub mod copy;
mod disk;
mod format;
mod index;
mod inspect;

pub use disk::{FLOOR as DISK_FLOOR, MARGIN as DISK_MARGIN};
pub use format::VtapeInfo;
pub use inspect::{BadRecord, Inspection, TapeFile};

use self::format::{ew_mark, io_err, mode_read_only};
use self::format::{
    read_full_at, sidecar, CartHeader, Damage, ItemHeader, Verdict, DATA_START, ITEM_HDR,
    MAX_LABEL, MAX_RECORD, SLOT,
};
use self::index::{Index, Item};
use super::{Spaced, TapeDevice, TapeError, TapeStatus, Written};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Most records one vectored write takes (well under IOV_MAX with two slices each).
const MAX_BATCH: usize = 64;

/// Largest capacity accepted, far beyond any tape, so offset arithmetic cannot overflow.
const MAX_CAPACITY: u64 = 1 << 60;
/// Discarded tails of truncated reads are CRC-checked through a buffer this big.
const SCRATCH: usize = 64 << 10;
/// Save the index after opening walked this many headers, so the next open is quick.
const SAVE_AFTER_SCAN: u64 = 4096;
/// Filemarks written per system call.
const FM_BATCH: u64 = 1024;
/// The file system block (and page) size that writes over old items are padded to.
const BLOCK: u64 = 4096;
/// Zeros for that padding.
static ZEROS: [u8; BLOCK as usize] = [0; BLOCK as usize];
/// Bytes written between two starts of write-back (`Vtape::write_behind`).
const WRITE_BEHIND: u64 = 8 << 20;

/// What stops a cartridge from taking more: its own capacity or the filesystem it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    /// The capacity in the cartridge header.
    Capacity,
    /// The free space of the filesystem holding the cartridge file.
    Disk,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Capacity => "capacity",
            Limit::Disk => "disk",
        })
    }
}

/// How many more bytes a cartridge takes, and which limit that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Room {
    /// The smaller of the capacity not yet used and the free space of the filesystem.
    pub remaining: u64,
    /// Which of the two `remaining` is (the capacity when they are equal).
    pub limited_by: Limit,
}

impl Room {
    /// The room of a cartridge of `capacity` bytes with `used` of them used, on a filesystem
    /// with `disk_free` bytes free (`None`: unknown, so not a limit).
    pub fn new(capacity: u64, used: u64, disk_free: Option<u64>) -> Room {
        let left = capacity.saturating_sub(used);
        match disk_free {
            Some(free) if free < left => Room {
                remaining: free,
                limited_by: Limit::Disk,
            },
            _ => Room {
                remaining: left,
                limited_by: Limit::Capacity,
            },
        }
    }

    /// The room of the cartridge file at `path` that `info` describes, asking its filesystem.
    pub fn of(path: &Path, info: &VtapeInfo) -> Room {
        Room::new(info.capacity, info.used, disk::free_bytes_at(path).ok())
    }
}

fn sidecar_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".idx");
    PathBuf::from(s)
}

fn new_tape_id() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        // without the OS generator, time and pid still make a collision unlikely
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        t ^ (u64::from(std::process::id()) << 32)
    })
}

/// How the walk over item headers ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tail {
    /// At the end of the file.
    Clean,
    /// In a torn item starting at the index's end, or in what an overwrite in place left
    /// of older items.
    Torn,
    /// At a complete header that is not valid; nothing after it can be located.
    Damaged(String),
}

/// Walks item headers from the index's end to `file_len`, adding each complete item. Reads
/// only headers. Returns how it ended and how many headers it read.
fn scan_headers(
    f: &File,
    hdr: &CartHeader,
    ix: &mut Index,
    file_len: u64,
) -> Result<(Tail, u64), TapeError> {
    let mut n = 0;
    loop {
        let off = ix.end();
        if off >= file_len {
            return Ok((Tail::Clean, n));
        }
        let remain = file_len - off;
        let mut b = [0u8; ITEM_HDR as usize];
        if remain < ITEM_HDR || !read_full_at(f, &mut b, off)? {
            return Ok((Tail::Torn, n));
        }
        n += 1;
        match hdr.judge(&b, off, ix.items(), remain) {
            Verdict::Item(h) => ix.push(h.filemark, h.len),
            Verdict::Torn => return Ok((Tail::Torn, n)),
            Verdict::Damaged(Damage::Sequence(seq)) => {
                return Ok((
                    Tail::Damaged(format!(
                        "item header at byte offset {off} has sequence {seq} instead of {}",
                        ix.items()
                    )),
                    n,
                ))
            }
            Verdict::Damaged(Damage::Header(fault)) => {
                return Ok((
                    Tail::Damaged(format!(
                        "corrupt item header at byte offset {off} ({fault:?})"
                    )),
                    n,
                ))
            }
        }
    }
}

/// One open cartridge, positioned like a tape head.
pub struct Vtape {
    file: File,
    path: PathBuf,
    hdr: CartHeader,
    index: Index,
    /// Head position: the item number the next read or write meets (BOT side of it).
    pos: u64,
    /// Opened for writing and not write protected.
    can_write: bool,
    /// Write-protect flag or file without write permission.
    protected: bool,
    /// Unreadable data after end of the index (see [`Tail::Damaged`]).
    damage: Option<String>,
    /// Bytes after the index's end that must go before the next append (torn or damaged data
    /// a read-only open left, or a failed write).
    tail_dirty: bool,
    /// The OS file offset, when known: sequential I/O then skips the seek.
    cursor: Option<u64>,
    /// Data before this offset has been handed to the disk's write-back (`write_behind`).
    kicked: u64,
    /// Early warning was reported and the head has not been back before the mark since (nor
    /// has the filesystem had the margin free again).
    ew_reported: bool,
    /// The next record write fails with Eom (the write after the early-warning one).
    eom_next: bool,
    unloaded: bool,
    /// The file's length: end of data, or beyond it while an overwrite in place has older
    /// items left after it.
    file_len: u64,
    /// Items `0..cover` may be described by a sidecar index carrying the current generation;
    /// writing at an item before `cover` first bumps the generation.
    cover: u64,
    /// The index changed since the sidecar was last saved.
    index_dirty: bool,
    scratch: Vec<u8>,
    /// Free space of the filesystem under the cartridge, as last seen.
    disk: disk::Watch,
}

impl fmt::Debug for Vtape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vtape")
            .field("path", &self.path)
            .field("label", &self.hdr.label)
            .field("pos", &self.pos)
            .field("items", &self.index.items())
            .field("can_write", &self.can_write)
            .field("unloaded", &self.unloaded)
            .finish()
    }
}

impl Vtape {
    /// New blank cartridge file; fails if `path` exists.
    pub fn create(path: &Path, label: &str, capacity: u64) -> Result<(), TapeError> {
        if label.len() > MAX_LABEL {
            return Err(io_err(format!("label longer than {MAX_LABEL} bytes")));
        }
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(io_err(format!("invalid cartridge capacity {capacity}")));
        }
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| io_err(format!("{}: {e}", path.display())))?;
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let hdr = CartHeader {
            update: 1,
            write_protected: false,
            capacity,
            tape_id: new_tape_id(),
            generation: 0,
            created,
            label: label.to_string(),
            stale_from: None,
            slot: 0,
        };
        let mut page = vec![0u8; DATA_START as usize];
        page[..SLOT].copy_from_slice(&hdr.encode());
        let older = CartHeader { update: 0, ..hdr };
        page[SLOT..2 * SLOT].copy_from_slice(&older.encode());
        f.write_all_at(&page, 0)?;
        f.sync_all()?;
        // an index left by an earlier cartridge of this name has another tape id; tidy it up
        let _ = std::fs::remove_file(sidecar_path(path));
        Ok(())
    }

    /// Opens for reading, or for reading and writing. Read-only when `writable` is false, when
    /// the file has no write permission, or when the cartridge's write-protect flag is set
    /// (then writes give `TapeError::WriteProtected`). Positioned at BOT.
    pub fn open(path: &Path, writable: bool) -> Result<Vtape, TapeError> {
        let ctx = |e: io::Error| io_err(format!("{}: {e}", path.display()));
        let meta = std::fs::metadata(path).map_err(ctx)?;
        let mut file_ro = mode_read_only(&meta);
        let mut rw = false;
        let file = if writable && !file_ro {
            match OpenOptions::new().read(true).write(true).open(path) {
                Ok(f) => {
                    rw = true;
                    f
                }
                Err(e)
                    if e.kind() == io::ErrorKind::PermissionDenied
                        || e.raw_os_error() == Some(libc::EROFS) =>
                {
                    file_ro = true;
                    File::open(path).map_err(ctx)?
                }
                Err(e) => return Err(ctx(e)),
            }
        } else {
            File::open(path).map_err(ctx)?
        };
        let hdr = CartHeader::read(&file)?;
        let protected = hdr.write_protected || file_ro;
        let can_write = rw && !protected;
        let file_len = file.metadata()?.len();

        let (sc_index, cover) = load_sidecar(path, &file, &hdr, file_len);
        let have_sidecar = sc_index.is_some();
        let mut index = sc_index.unwrap_or_else(|| Index::new(DATA_START));
        let (tail, scanned) = scan_headers(&file, &hdr, &mut index, file_len)?;
        let mut t = Vtape {
            file,
            path: path.to_path_buf(),
            hdr,
            index,
            pos: 0,
            can_write,
            protected,
            damage: None,
            tail_dirty: false,
            cursor: None,
            kicked: 0,
            ew_reported: false,
            eom_next: false,
            unloaded: false,
            file_len,
            cover,
            // only a writer saves the index (it alone knows when to bump the generation); it
            // does so when the saved one is missing or behind
            index_dirty: can_write && (!have_sidecar || scanned > 0),
            scratch: Vec::new(),
            disk: disk::Watch::new(),
        };
        match tail {
            Tail::Clean => {}
            Tail::Torn if can_write => {
                // drop the torn write now, so the file again ends at end of data
                t.set_len(t.index.end())?;
            }
            Tail::Torn => t.tail_dirty = true,
            Tail::Damaged(why) => {
                t.damage = Some(why);
                t.tail_dirty = true;
            }
        }
        if t.index_dirty && scanned >= SAVE_AFTER_SCAN {
            t.save_sidecar();
        }
        Ok(t)
    }

    /// The header and fill level of this open cartridge; `used` runs to end of data.
    pub fn info(&self) -> VtapeInfo {
        VtapeInfo {
            label: self.hdr.label.clone(),
            capacity: self.hdr.capacity,
            early_warning: ew_mark(self.hdr.capacity),
            write_protected: self.protected,
            used: self.index.used(),
        }
    }

    /// Tape files up to end of data, counted as [`Vtape::inspect`] does: one per filemark,
    /// plus one for records after the last filemark; 0 for a blank cartridge. From the index,
    /// so no record is read.
    pub fn tape_files(&self) -> u64 {
        let items = self.index.items();
        self.index.filemarks() + u64::from(self.index.file_start(items) < items)
    }

    /// Header only, cheap: `used` is taken from the file size.
    pub fn read_info(path: &Path) -> Result<VtapeInfo, TapeError> {
        let f = File::open(path).map_err(|e| io_err(format!("{}: {e}", path.display())))?;
        let hdr = CartHeader::read(&f)?;
        let meta = f.metadata()?;
        Ok(VtapeInfo {
            label: hdr.label,
            capacity: hdr.capacity,
            early_warning: ew_mark(hdr.capacity),
            write_protected: hdr.write_protected || mode_read_only(&meta),
            used: meta.len().saturating_sub(DATA_START),
        })
    }

    /// Read-only look at a cartridge: per tape file (between filemarks) the record count,
    /// bytes, smallest/largest record; filemark count; end-of-data; and a full CRC check that
    /// names the first bad record (file number, record number, byte offset).
    pub fn inspect(path: &Path) -> Result<Inspection, TapeError> {
        inspect::inspect(path)
    }

    /// Sets or clears the write-protect flag in the cartridge header of `path` (the file's
    /// permission bits are left alone). Fails if the file cannot be opened read-write or its
    /// header is not a cartridge header.
    pub fn set_write_protect(path: &Path, on: bool) -> Result<(), TapeError> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_err(format!("{}: {e}", path.display())))?;
        let mut hdr = CartHeader::read(&f)?;
        if hdr.write_protected != on {
            hdr.write_protected = on;
            hdr.rewrite(&f)?;
        }
        Ok(())
    }

    /// Back to blank, keeping label and capacity. Fails on a write-protected cartridge.
    pub fn erase(path: &Path) -> Result<(), TapeError> {
        let meta =
            std::fs::metadata(path).map_err(|e| io_err(format!("{}: {e}", path.display())))?;
        if mode_read_only(&meta) {
            return Err(TapeError::WriteProtected);
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::PermissionDenied => TapeError::WriteProtected,
                _ => io_err(format!("{}: {e}", path.display())),
            })?;
        let mut hdr = CartHeader::read(&f)?;
        if hdr.write_protected {
            return Err(TapeError::WriteProtected);
        }
        // new identity first: from here on no saved index matches, whatever happens next
        hdr.tape_id = new_tape_id();
        hdr.generation += 1;
        hdr.stale_from = None;
        hdr.rewrite(&f)?;
        f.set_len(DATA_START)?;
        f.sync_all()?;
        let _ = std::fs::remove_file(sidecar_path(path));
        Ok(())
    }

    /// The cartridge file this tape was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn loaded(&self) -> Result<(), TapeError> {
        if self.unloaded {
            Err(TapeError::NoTape)
        } else {
            Ok(())
        }
    }

    /// Writes the sidecar index (best effort: it is only a cache).
    fn save_sidecar(&mut self) {
        let sc = sidecar::Sidecar {
            tape_id: self.hdr.tape_id,
            generation: self.hdr.generation,
            items: self.index.items(),
            end: self.index.end(),
            runs: self.index.to_runs(),
        };
        let bytes = sidecar::encode(&sc);
        let dst = sidecar_path(&self.path);
        let mut tmp = dst.clone().into_os_string();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let r = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &dst));
        match r {
            Ok(()) => {
                self.cover = self.cover.max(sc.items);
                self.index_dirty = false;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::debug!("vtape {}: index not saved: {e}", self.path.display());
            }
        }
    }

    /// Makes item `i` the end of data before writing there. Items from `i` on are written
    /// over in place, not cut off the file: freeing a gigabyte of blocks and allocating it
    /// again costs more than writing it (on this project's test disk, overwriting a 1.2 GB
    /// cartridge and syncing it took 0.6 s in place against 1.3 s cut first). So that what is
    /// left of the old items after the new end of data is never read as data, even after a
    /// crash, the generation is bumped and the overwrite's start recorded, durably, before
    /// the first byte goes over them. A tail that is not items (torn, damaged) is cut off.
    fn cut(&mut self, i: u64) -> Result<(), TapeError> {
        let overwrite = i < self.index.items();
        if overwrite || self.cover > i {
            let mut next = self.hdr.clone();
            next.generation += 1;
            if overwrite {
                next.stale_from = Some(self.index.offset(i));
            }
            next.rewrite(&self.file)?;
            self.hdr = next;
            self.cover = 0;
        }
        if overwrite || self.tail_dirty {
            if self.tail_dirty {
                self.set_len(self.index.offset(i))?;
            }
            self.index.truncate(i);
            self.damage = None;
            self.tail_dirty = false;
            self.index_dirty = true;
        }
        Ok(())
    }

    /// Cuts the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file_len = len;
        // space given back: the next write asks the filesystem afresh
        self.disk.forget();
        Ok(())
    }

    /// Cuts off what an overwrite in place left after end of data, so the cartridge again
    /// takes only the disk space its data needs.
    fn drop_stale(&mut self) -> Result<(), TapeError> {
        if self.can_write && !self.tail_dirty && self.file_len > self.index.end() {
            self.set_len(self.index.end())?;
        }
        Ok(())
    }

    fn seek_to(&mut self, off: u64) -> io::Result<()> {
        if self.cursor != Some(off) {
            self.cursor = None;
            self.file.seek(SeekFrom::Start(off))?;
            self.cursor = Some(off);
        }
        Ok(())
    }

    /// One vectored write at `off` (more only if the kernel takes less). Writing over old
    /// items, a write that would end inside a block of them ends that block with zeros (see
    /// [`Vtape::pad`]).
    fn write_at(&mut self, off: u64, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        self.seek_to(off)?;
        self.cursor = None;
        let mut total: usize = bufs.iter().map(|b| b.len()).sum();
        let end = off + total as u64;
        let pad = self.pad(end);
        let mut padded;
        let mut bufs = if pad > 0 {
            padded = bufs.to_vec();
            padded.push(IoSlice::new(&ZEROS[..pad]));
            total += pad;
            &mut padded[..]
        } else {
            bufs
        };
        while !bufs.is_empty() {
            match self.file.write_vectored(bufs) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.cursor = Some(off + total as u64);
        self.write_behind(off, off + total as u64);
        // only bytes past the file's old end took space from the filesystem
        self.disk.wrote(end.saturating_sub(self.file_len));
        self.file_len = self.file_len.max(end);
        Ok(())
    }

    /// Zeros to add after a write ending at `end` so that it ends on a block boundary, when
    /// that block holds old items. A write that ends inside a block the page cache does not
    /// hold makes the kernel read that block from disk first, waiting for it: writing over a
    /// cartridge whose pages had left the cache, one read per write call took a bench-tree
    /// backup from 0.5 s to 1.1 s. Everything after the write's end is past end of data, so
    /// zeros there change nothing, and the next write goes over them in the cache. A block
    /// reaching past the file's end is left alone (the file never grows by padding).
    fn pad(&self, end: u64) -> usize {
        let rem = (end % BLOCK) as usize;
        let block_end = end - rem as u64 + BLOCK;
        if rem == 0 || block_end > self.file_len {
            0
        } else {
            BLOCK as usize - rem
        }
    }

    /// Starts the disk writing what was written so far, every `WRITE_BEHIND` bytes, without
    /// waiting for it. A file mark or close syncs the cartridge (`flush`); left to the page
    /// cache, a gigabyte written at memory speed would only then start going to disk, and
    /// the backup would wait for all of it at its end (a 1 GiB backup: about 0.6 s writing,
    /// then 1 s in that sync). Started as it goes, the disk works while the backup does.
    fn write_behind(&mut self, off: u64, end: u64) {
        if off < self.kicked {
            // written again before what was handed over: start over from there
            self.kicked = off;
        }
        if end < self.kicked + WRITE_BEHIND {
            return;
        }
        // SAFETY: a valid descriptor; the call only starts write-back of the range.
        // An error (a file system without it) costs nothing: the final sync still writes all.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                self.kicked as libc::off64_t,
                (end - self.kicked) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.kicked = end;
    }

    /// One vectored read at `off`; a short file is an error.
    fn read_at(&mut self, off: u64, bufs: &mut [IoSliceMut<'_>]) -> io::Result<()> {
        self.seek_to(off)?;
        self.cursor = None;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut bufs = bufs;
        while !bufs.is_empty() {
            match self.file.read_vectored(bufs) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => IoSliceMut::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.cursor = Some(off + total as u64);
        Ok(())
    }

    /// Where item `i` is, for error messages: file number, record number within it, offset.
    fn describe(&self, i: u64) -> String {
        let file = self.index.fm_before(i);
        let rec = i - self.index.file_start(i);
        format!(
            "file {file} record {rec} at byte offset {}",
            self.index.offset(i)
        )
    }

    /// Checks the header read for item `i` against what the index says is there.
    fn check_header(
        &self,
        b: &[u8; ITEM_HDR as usize],
        i: u64,
        it: Item,
    ) -> Result<ItemHeader, TapeError> {
        match ItemHeader::decode(b, self.hdr.tape_id) {
            Ok(h) if h.seq == i && h.filemark == it.filemark && h.len == it.len => Ok(h),
            Ok(_) => Err(io_err(format!(
                "item header does not match the index: {}",
                self.describe(i)
            ))),
            Err(_) => Err(io_err(format!("corrupt item header: {}", self.describe(i)))),
        }
    }

    fn ew_mark(&self) -> u64 {
        ew_mark(self.hdr.capacity)
    }

    /// Bytes of the file from item `i` on, which a write there goes over rather than adds.
    fn freed_by_cut(&self, i: u64) -> u64 {
        self.file_len
            .saturating_sub(self.index.offset(i.min(self.index.items())))
    }

    /// A write at `off` failed: cuts the file back to `off`, so the cartridge again ends at
    /// its last whole item, and says what the writer is told. A full filesystem is end of
    /// medium (the torn bytes, if the cut fails, go before the next append or at the next
    /// open, as after a crash).
    fn write_failed(&mut self, off: u64, e: io::Error) -> TapeError {
        self.tail_dirty = true;
        let _ = self.set_len(off);
        self.disk.forget();
        if disk::is_full(&e) {
            tracing::info!(
                "vtape {}: the filesystem is full: end of medium after {} bytes",
                self.path.display(),
                self.index.used()
            );
            self.ew_reported = true;
            self.eom_next = false;
            return TapeError::Eom;
        }
        e.into()
    }

    /// Checks a write of `bytes` at the head against the capacity; returns where it starts
    /// and ends, in used bytes.
    fn room(&self, bytes: u64) -> Result<(u64, u64), TapeError> {
        let start = self.index.offset(self.pos) - DATA_START;
        let end = start + bytes;
        if end > self.hdr.capacity {
            return Err(io_err("physical end of medium"));
        }
        Ok((start, end))
    }

    fn stop_forward(&self) -> Result<TapeError, TapeError> {
        match &self.damage {
            Some(why) => Err(io_err(why.clone())),
            None => Ok(TapeError::Eom),
        }
    }
}

/// The sidecar index, when it describes this cartridge exactly; and the `cover` to start with.
fn load_sidecar(path: &Path, f: &File, hdr: &CartHeader, file_len: u64) -> (Option<Index>, u64) {
    let sp = sidecar_path(path);
    let bytes = match File::open(&sp) {
        Ok(sf) => {
            let mut b = Vec::new();
            match sf.take(sidecar::MAX_BYTES + 1).read_to_end(&mut b) {
                Ok(_) if b.len() as u64 <= sidecar::MAX_BYTES => b,
                _ => return (None, 0),
            }
        }
        Err(_) => return (None, 0),
    };
    // one that cannot be decoded, or belongs to another tape or generation, is never trusted
    let Some(sc) = sidecar::decode(&bytes) else {
        return (None, 0);
    };
    if sc.tape_id != hdr.tape_id || sc.generation != hdr.generation {
        return (None, 0);
    }
    // ours but not matching the file (truncated behind our back, or a crash lost data it
    // describes): it could match again after appends, so treat it as covering everything
    let stale = (None, u64::MAX);
    let Some(ix) = Index::from_runs(DATA_START, &sc.runs, file_len) else {
        return stale;
    };
    if ix.items() != sc.items || ix.end() != sc.end {
        return stale;
    }
    if let Some(last) = sc.items.checked_sub(1) {
        let Some(it) = ix.get(last) else { return stale };
        let mut b = [0u8; ITEM_HDR as usize];
        match read_full_at(f, &mut b, it.off) {
            Ok(true) => {}
            _ => return stale,
        }
        match ItemHeader::decode(&b, hdr.tape_id) {
            Ok(h) if h.seq == last && h.filemark == it.filemark && h.len == it.len => {}
            _ => return stale,
        }
    }
    let items = ix.items();
    (Some(ix), items)
}

impl TapeDevice for Vtape {
    fn write_record(&mut self, data: &[u8]) -> Result<Written, TapeError> {
        self.loaded()?;
        if !self.can_write {
            return Err(TapeError::WriteProtected);
        }
        if data.is_empty() {
            // spec §3.4.6: a zero-length TAPE_WRITE does nothing
            return Ok(Written {
                bytes: 0,
                early_warning: false,
            });
        }
        if data.len() > MAX_RECORD {
            return Err(io_err(format!(
                "record of {} bytes exceeds the largest block ({MAX_RECORD})",
                data.len()
            )));
        }
        if self.eom_next {
            self.eom_next = false;
            return Err(TapeError::Eom);
        }
        let len = data.len() as u32;
        let (start, end) = match self.room(ITEM_HDR + u64::from(len)) {
            Ok(r) => r,
            Err(e) => {
                // A record bigger than the warning zone on a small cartridge: with no warning
                // given yet, this refusal is the warning, so a DMA changes cartridges rather
                // than failing the job.
                let start = self.index.offset(self.pos) - DATA_START;
                if !self.ew_reported || start <= self.ew_mark() {
                    self.ew_reported = true;
                    return Err(TapeError::Eom);
                }
                return Err(e);
            }
        };
        let i = self.pos;
        let disk = self
            .disk
            .outlook(&self.file, self.freed_by_cut(i), end - start);
        if disk.after == disk::Zone::Full {
            // the filesystem is the end of this medium, however often it is asked
            self.ew_reported = true;
            return Err(TapeError::Eom);
        }
        self.cut(i)?;
        let off = self.index.end();
        let h = ItemHeader {
            filemark: false,
            len,
            seq: i,
            crc: crc32fast::hash(data),
            generation: self.hdr.generation,
        }
        .encode(self.hdr.tape_id);
        if let Err(e) = self.write_at(off, &mut [IoSlice::new(&h), IoSlice::new(data)]) {
            return Err(self.write_failed(off, e));
        }
        self.index.push(false, len);
        self.index_dirty = true;
        self.pos = i + 1;
        let mark = self.ew_mark();
        if start <= mark && disk.before == disk::Zone::Clear {
            self.ew_reported = false;
        }
        let early_warning = (end > mark || disk.after != disk::Zone::Clear) && !self.ew_reported;
        if early_warning {
            self.ew_reported = true;
            self.eom_next = true;
        }
        Ok(Written {
            bytes: data.len(),
            early_warning,
        })
    }

    /// Records that all end before the early-warning mark go out in one vectored write: page
    /// cache copies of several records at once run far faster than one per record. Anything
    /// unusual (warning zone, pending EOM, odd sizes) takes the one-at-a-time path.
    fn write_records(&mut self, records: &[&[u8]]) -> (usize, Result<(), TapeError>) {
        let plain = records.len() > 1
            && records.len() <= MAX_BATCH
            && self.loaded().is_ok()
            && self.can_write
            && !self.eom_next
            && records
                .iter()
                .all(|r| !r.is_empty() && r.len() <= MAX_RECORD);
        if !plain {
            return crate::tape::write_each(self, records);
        }
        let total: u64 = records.iter().map(|r| ITEM_HDR + r.len() as u64).sum();
        let start = self.index.offset(self.pos) - DATA_START;
        if start + total > self.ew_mark() {
            return crate::tape::write_each(self, records);
        }
        let i = self.pos;
        let disk = self.disk.outlook(&self.file, self.freed_by_cut(i), total);
        if disk.after != disk::Zone::Clear {
            // near the filesystem's margin: one record at a time finds the warning
            return crate::tape::write_each(self, records);
        }
        if let Err(e) = self.cut(i) {
            return (0, Err(e));
        }
        let off = self.index.end();
        let (generation, tape_id) = (self.hdr.generation, self.hdr.tape_id);
        let headers: Vec<[u8; ITEM_HDR as usize]> = records
            .iter()
            .enumerate()
            .map(|(k, r)| {
                ItemHeader {
                    filemark: false,
                    len: r.len() as u32,
                    seq: i + k as u64,
                    crc: crc32fast::hash(r),
                    generation,
                }
                .encode(tape_id)
            })
            .collect();
        let mut iov: Vec<IoSlice<'_>> = headers
            .iter()
            .zip(records)
            .flat_map(|(h, r)| [IoSlice::new(h), IoSlice::new(r)])
            .collect();
        if let Err(e) = self.write_at(off, &mut iov) {
            return (0, Err(self.write_failed(off, e)));
        }
        for r in records {
            self.index.push(false, r.len() as u32);
        }
        self.index_dirty = true;
        self.pos = i + records.len() as u64;
        // every record started (and ended) before the mark
        self.ew_reported = false;
        (records.len(), Ok(()))
    }

    fn read_record(&mut self, buf: &mut [u8]) -> Result<(usize, usize), TapeError> {
        self.loaded()?;
        if buf.is_empty() {
            // spec §3.4.7: a zero-count read does nothing
            return Ok((0, 0));
        }
        self.eom_next = false;
        let i = self.pos;
        let Some(it) = self.index.get(i) else {
            return Err(self.stop_forward()?);
        };
        let mut hb = [0u8; ITEM_HDR as usize];
        if it.filemark {
            self.read_at(it.off, &mut [IoSliceMut::new(&mut hb)])?;
            self.check_header(&hb, i, it)?;
            // the head stays on the filemark's BOT side
            return Err(TapeError::Eof);
        }
        let full = it.len as usize;
        let copy = full.min(buf.len());
        self.read_at(
            it.off,
            &mut [IoSliceMut::new(&mut hb), IoSliceMut::new(&mut buf[..copy])],
        )?;
        // the index knows the length, so the head can pass a bad record like a drive would
        self.pos = i + 1;
        let h = self.check_header(&hb, i, it)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&buf[..copy]);
        let mut rest = full - copy;
        if rest > 0 {
            // a short buffer: the excess is discarded but still checked
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.resize(SCRATCH, 0);
            let mut at = it.off + ITEM_HDR + copy as u64;
            while rest > 0 {
                let n = rest.min(SCRATCH);
                let r = self.read_at(at, &mut [IoSliceMut::new(&mut scratch[..n])]);
                if let Err(e) = r {
                    self.scratch = scratch;
                    return Err(e.into());
                }
                crc.update(&scratch[..n]);
                rest -= n;
                at += n as u64;
            }
            self.scratch = scratch;
        }
        if crc.finalize() != h.crc {
            return Err(io_err(format!("CRC mismatch in {}", self.describe(i))));
        }
        Ok((copy, full))
    }

    fn write_filemarks(&mut self, count: u32) -> Result<(), TapeError> {
        self.loaded()?;
        if !self.can_write {
            return Err(TapeError::WriteProtected);
        }
        if count == 0 {
            return Ok(());
        }
        let (start, _) = self.room(ITEM_HDR * u64::from(count))?;
        let i = self.pos;
        self.cut(i)?;
        let mut done = 0u64;
        let mut batch = Vec::new();
        while done < u64::from(count) {
            let n = (u64::from(count) - done).min(FM_BATCH);
            batch.clear();
            for k in 0..n {
                let h = ItemHeader {
                    filemark: true,
                    len: 0,
                    seq: i + done + k,
                    crc: 0,
                    generation: self.hdr.generation,
                };
                batch.extend_from_slice(&h.encode(self.hdr.tape_id));
            }
            let off = self.index.end();
            if let Err(e) = self.write_at(off, &mut [IoSlice::new(&batch)]) {
                let e = self.write_failed(off, e);
                self.pos = self.index.items();
                return Err(e);
            }
            self.index.push_run(true, 0, n);
            self.index_dirty = true;
            done += n;
        }
        self.pos = self.index.items();
        // a filemark never reports early warning; one written from before the mark (with the
        // filesystem's margin free) leaves it to the next record to report
        if start <= self.ew_mark() && self.disk.clear() {
            self.ew_reported = false;
        }
        Ok(())
    }

    fn space_filemarks(&mut self, count: i64) -> Result<Spaced, TapeError> {
        self.loaded()?;
        self.eom_next = false;
        let n = count.unsigned_abs();
        let ix = &self.index;
        let here = ix.fm_before(self.pos);
        let (resid, stopped) = if count == 0 {
            (0, None)
        } else if count > 0 {
            let avail = ix.filemarks() - here;
            match (n <= avail).then(|| ix.fm_item(here + n - 1)).flatten() {
                Some(f) => {
                    self.pos = f + 1;
                    (0, None)
                }
                None => {
                    // blank tape: on the EOT side of the last item
                    self.pos = ix.items();
                    (n - avail, Some(self.stop_forward()?))
                }
            }
        } else if n <= here {
            // on the BOT side of the last filemark passed
            self.pos = ix.fm_item(here - n).unwrap_or(0);
            (0, None)
        } else {
            self.pos = 0;
            (n - here, Some(TapeError::Bot))
        };
        Ok(Spaced {
            resid: u32::try_from(resid).unwrap_or(u32::MAX),
            stopped,
        })
    }

    fn space_records(&mut self, count: i64) -> Result<Spaced, TapeError> {
        self.loaded()?;
        self.eom_next = false;
        let n = count.unsigned_abs();
        let (resid, stopped) = if count == 0 {
            (0, None)
        } else if count > 0 {
            let next = self.index.next_fm(self.pos);
            let k = next - self.pos;
            if n <= k {
                self.pos += n;
                (0, None)
            } else {
                self.pos = next;
                let why = if next < self.index.items() {
                    // on the BOT side of the filemark, not crossing it
                    TapeError::Eof
                } else {
                    self.stop_forward()?
                };
                (n - k, Some(why))
            }
        } else {
            let start = self.index.file_start(self.pos);
            let k = self.pos - start;
            if n <= k {
                self.pos -= n;
                (0, None)
            } else {
                self.pos = start;
                // on the EOT side of the filemark, or at BOT
                let why = if start > 0 {
                    TapeError::Eof
                } else {
                    TapeError::Bot
                };
                (n - k, Some(why))
            }
        };
        Ok(Spaced {
            resid: u32::try_from(resid).unwrap_or(u32::MAX),
            stopped,
        })
    }

    fn rewind(&mut self) -> Result<(), TapeError> {
        self.loaded()?;
        self.pos = 0;
        self.eom_next = false;
        Ok(())
    }

    fn unload(&mut self) -> Result<(), TapeError> {
        self.loaded()?;
        self.flush()?;
        self.pos = 0;
        self.eom_next = false;
        self.unloaded = true;
        Ok(())
    }

    fn ready(&mut self) -> Result<(), TapeError> {
        self.loaded()
    }

    fn status(&mut self) -> Result<TapeStatus, TapeError> {
        self.loaded()?;
        let file = self.index.fm_before(self.pos);
        let block = self.pos - self.index.file_start(self.pos);
        // the filesystem's free space limits what is left as much as the capacity does
        let used = self.index.used();
        // what an overwrite in place has not yet reached is space the tape already holds
        let reusable = self.file_len.saturating_sub(self.index.end());
        let free = disk::free_bytes(&self.file)
            .ok()
            .map(|f| f.saturating_add(reusable));
        let room = Room::new(self.hdr.capacity, used, free);
        Ok(TapeStatus {
            file_num: u32::try_from(file).ok(),
            block_no: u32::try_from(block).ok(),
            block_size: 0,
            soft_errors: Some(0),
            total_space: Some(used.saturating_add(room.remaining)),
            space_remain: Some(room.remaining),
            write_protected: self.protected,
        })
    }

    fn flush(&mut self) -> Result<(), TapeError> {
        if self.can_write {
            self.drop_stale()?;
            self.file.sync_data()?;
            if self.index_dirty {
                self.save_sidecar();
            }
        }
        Ok(())
    }
}

impl Drop for Vtape {
    fn drop(&mut self) {
        let _ = self.drop_stale();
        if self.index_dirty {
            self.save_sidecar();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_warning_zone() {
        assert_eq!(ew_mark(100), 99);
        assert_eq!(ew_mark(1 << 30), (1 << 30) - (1 << 30) / 100);
        assert_eq!(ew_mark(100 << 30), (100 << 30) - (64 << 20));
        assert_eq!(ew_mark(50), 50);
    }

    /// Write-back is started behind the writes, every `WRITE_BEHIND` bytes, and starts over
    /// from where the tape is written again after a rewind.
    #[test]
    fn write_back_follows_the_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t");
        Vtape::create(&path, "WB", 1 << 30).unwrap();
        let mut t = Vtape::open(&path, true).unwrap();
        let rec = vec![7u8; 256 << 10];
        for _ in 0..4 {
            t.write_record(&rec).unwrap();
        }
        assert_eq!(
            t.kicked, 0,
            "less than WRITE_BEHIND written: nothing started"
        );
        let recs: Vec<&[u8]> = vec![&rec[..]; 16];
        for _ in 0..3 {
            assert_eq!(t.write_records(&recs).0, 16);
        }
        let end = t.index.end();
        assert!(end > WRITE_BEHIND, "{end}");
        assert!(
            t.kicked >= WRITE_BEHIND && end - t.kicked < WRITE_BEHIND,
            "{} {end}",
            t.kicked
        );
        t.rewind().unwrap();
        t.write_record(&rec).unwrap();
        assert!(t.kicked < WRITE_BEHIND, "{}", t.kicked);
    }
}
