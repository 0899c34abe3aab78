//! The dump image reader (recover): streams an image once, front to back, and recreates the
//! selected objects under a destination root; also restores single inodes for DAR.
//!
//! What goes wrong in an image and what the reader does about it:
//! - not a dump at all (first record without magic and checksum), not volume 1, a FreeBSD
//!   UFS2 / 4.2BSD / compressed dump, no root directory, or more names than the limits in
//!   `MAX_ENTRIES` / `MAX_NAME_BYTES`: a `RecoverError` before anything is written past
//!   the directories;
//! - a later record that should be a header but has a bad magic or checksum: a `Warning`,
//!   and reading resumes at the next valid header of the same dump (as restore does); the
//!   object being read then is reported as not restored;
//! - end of input before TS_END (or inside a record): `RecoverError::Truncated`, after what
//!   was read has been finished (files closed, directory attributes applied);
//! - refused names in directory data (empty, containing '/' or NUL, "." or ".." other than
//!   the links themselves), mangled entries, objects that cannot be created, attributes
//!   that cannot be set: a `Warning` or an `Event::Restored` with `ok: false`; the rest goes
//!   on.
//!
//! Nothing is created outside `dest_root`: every path is opened one component at a time
//! with O_NOFOLLOW from a descriptor of the root, so neither a symlink already in the
//! destination nor one restored from the image can redirect later objects.

mod header;
mod list;
mod names;

pub use list::list_dump;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::format::finish::{put_at, Finisher, SmallFile, SMALL_FILE};
use crate::format::fsops::{self, Attrs, Obj, ParentDir};
use crate::format::recover::{dest_rel, show, split_last, Reporter, Sel};
use header::{skip_blocks, Block, Header, RecordReader, Tape, CHUNK, MAX_MAP_RECORDS};
use header::{TS_ADDR, TS_BITS, TS_CLRI, TS_END, TS_INODE, TS_TAPE};
use names::Tree;
pub use names::{MAX_ENTRIES, MAX_NAME_BYTES};

use super::record::TP_BSIZE;

pub use crate::format::recover::{Event, RecoverError, RecoverOptions, Selection, Summary};

/// Bytes to read from an inode's `fh_info` to be sure to have all of a file of `size`
/// bytes: its headers (one per 512 blocks, plus one to spare), its data records and one
/// attribute set of at most 4 KiB (doc §12). Assumes at most 512 block entries per header,
/// as our writer writes.
pub fn dar_length(size: u64) -> u64 {
    let n = size.div_ceil(TP_BSIZE as u64);
    TP_BSIZE as u64 * (1 + n.div_ceil(512) + n + 5)
}

/// Restores the objects `opts` selects from the dump image `input`, reading it once, front
/// to back, and stopping after the first TS_END. Names come from the directory pass (kept
/// in memory, bounded by `MAX_ENTRIES` and `MAX_NAME_BYTES`); each selected inode is
/// created at its first selected name and hard-linked at the others; directory attributes
/// are applied at the end, deepest first, so their times stick. Stops with `Aborted` soon
/// after `abort` is set. Error handling: see the module documentation.
pub fn read_dump(
    input: &mut dyn Read,
    opts: &RecoverOptions,
    events: &mut dyn FnMut(Event),
    abort: &AtomicBool,
) -> Result<Summary, RecoverError> {
    let mut input = BufReader::with_capacity(CHUNK, input);
    read_dump_buffered(&mut input, opts, events, abort)
}

/// `read_dump` from an input that buffers itself (the data connection's record buffers):
/// file data goes from the input's buffer to the files, with no copy of its own between.
pub fn read_dump_buffered(
    input: &mut dyn BufRead,
    opts: &RecoverOptions,
    events: &mut dyn FnMut(Event),
    abort: &AtomicBool,
) -> Result<Summary, RecoverError> {
    let sels = opts.selections()?;
    let root = opts.open_dest()?;
    let mut tape = Tape::new(input);
    let mut r = Restorer::new(root, opts, events, sels);
    r.fin = Finisher::configured();
    let res = run(&mut tape, &mut r, abort);
    r.out.sum.bytes = tape.offset;
    match res {
        Ok(()) => Ok(r.out.sum),
        Err(e @ (RecoverError::Truncated { .. } | RecoverError::Input(_))) => {
            // Keep what was read: close the current object, set directory attributes.
            r.incomplete("the image ends inside its data");
            r.data_complete();
            r.finalize();
            r.collect(true);
            r.apply_dir_attrs();
            Err(e)
        }
        Err(e) => {
            r.abandon();
            // Files already handed over are complete: they are written and reported.
            r.collect(true);
            Err(e)
        }
    }
}

/// DAR: restores the one inode whose TS_INODE header starts `input` (the caller has
/// positioned the stream at its `fh_info`) to `dest` (under `opts.dest_root`; absolute, or
/// relative to it), reading its continuation and attribute records and stopping at the
/// next inode's header or at end of input (reading `dar_length(size)` bytes is enough).
/// `expect_inode`, when known, must match the header. A directory is created with its own
/// attributes only. `opts.select` is not used. Reads record by record: buffer `input`
/// if it is a socket.
pub fn read_one(
    input: &mut dyn Read,
    expect_inode: Option<u32>,
    dest: &Path,
    opts: &RecoverOptions,
    events: &mut dyn FnMut(Event),
    abort: &AtomicBool,
) -> Result<Summary, RecoverError> {
    let rel = dest_rel(dest, &opts.dest_root)?;
    let (dir, name) = split_last(&rel);
    if name.is_empty() {
        return Err(RecoverError::BadSelection(format!(
            "{}: the destination root itself",
            dest.display()
        )));
    }
    let root = opts.open_dest()?;
    let mut input = RecordReader::new(input);
    let mut tape = Tape::new(&mut input);
    let h = tape.first()?;
    if h.ctype != TS_INODE || h.is_xattr() {
        return Err(RecoverError::NotInode { offset: 0 });
    }
    if let Some(expected) = expect_inode {
        if expected != h.inumber {
            return Err(RecoverError::WrongInode {
                expected,
                found: h.inumber,
            });
        }
    }
    let mut r = Restorer::new(root, opts, events, Vec::new());
    r.phase = Phase::Files;
    let ino = h.inumber;
    let res = (|| {
        r.start(
            h.clone(),
            vec![Name {
                path: dest.as_os_str().as_bytes().to_vec(),
                dir,
                name,
            }],
        );
        r.blocks(&mut tape, &h)?;
        loop {
            if abort.load(Ordering::Relaxed) {
                return Err(RecoverError::Aborted);
            }
            let got = {
                let ev = &mut *r.out.events;
                tape.next(&mut |s| ev(Event::Warning(s)))?
            };
            match got {
                Some(h) if h.ctype == TS_ADDR && r.cur.is_some() => r.blocks(&mut tape, &h)?,
                Some(h) if h.is_xattr() && h.inumber == ino => {
                    r.data_complete();
                    let blob = r.xattr_blob(&mut tape, &h)?;
                    r.xattr(&h, blob);
                }
                _ => break,
            }
        }
        Ok(())
    })();
    r.out.sum.bytes = tape.offset;
    match res {
        Err(RecoverError::Aborted) => {
            r.abandon();
            Err(RecoverError::Aborted)
        }
        other => {
            r.data_complete();
            r.finalize();
            other.map(|()| r.out.sum)
        }
    }
}

/// A regular file small enough for the `Finisher` whose every block is in this header's
/// map (no holes, no continuation headers), so its data can be gathered whole.
fn small_whole(h: &Header) -> bool {
    if h.size > SMALL_FILE {
        return false;
    }
    let need = h.size.div_ceil(TP_BSIZE as u64) as usize;
    need <= h.entries() && h.addr[..need].iter().all(|&a| a != 0)
}

/// TS_BITS maps up to this many records (8 MiB) are kept to tell "not on this dump"
/// from "missing"; larger ones are read and dropped.
const KEEP_MAP_RECORDS: u32 = 8192;
/// Longest symlink target the kernel accepts, with its NUL.
const MAX_SYMLINK: u64 = 4096;

fn attrs(h: &Header) -> Attrs {
    Attrs {
        mode: h.mode,
        uid: h.uid,
        gid: h.gid,
        atime: nanos(h.atime),
        mtime: nanos(h.mtime),
    }
}

/// A dump time (seconds, microseconds) to (seconds, nanoseconds); a nonsense microsecond
/// field becomes 0, as the kernel would refuse it.
fn nanos((s, us): (u32, u32)) -> (i64, u32) {
    (i64::from(s), if us < 1_000_000 { us * 1000 } else { 0 })
}

fn run(tape: &mut Tape<'_>, r: &mut Restorer<'_>, abort: &AtomicBool) -> Result<(), RecoverError> {
    let first = tape.first()?;
    if first.volume != 1 {
        return Err(RecoverError::NotVolume1(first.volume));
    }
    let mut next = Some(first);
    loop {
        if abort.load(Ordering::Relaxed) {
            return Err(RecoverError::Aborted);
        }
        let h = match next.take() {
            Some(h) => h,
            None => {
                let before = tape.skipped;
                let got = {
                    let ev = &mut *r.out.events;
                    tape.next(&mut |s| ev(Event::Warning(s)))?
                };
                if tape.skipped != before {
                    r.damaged();
                }
                match got {
                    Some(h) => h,
                    None => {
                        return Err(RecoverError::Truncated {
                            offset: tape.offset,
                        })
                    }
                }
            }
        };
        if h.ctype == TS_ADDR {
            if r.cur.is_some() {
                r.blocks(tape, &h)?;
            } else {
                skip_blocks(tape, &h)?;
            }
            continue;
        }
        // Any other header ends the data of the current inode.
        r.data_complete();
        if h.is_xattr() {
            let blob = r.xattr_blob(tape, &h)?;
            r.xattr(&h, blob);
            continue;
        }
        r.finalize();
        match h.ctype {
            TS_TAPE => {}
            TS_CLRI | TS_BITS => r.map(tape, &h)?,
            TS_INODE => r.inode(tape, h)?,
            TS_END => {
                r.end()?;
                if let Some(f) = &r.ended {
                    f.store(true, Ordering::Relaxed);
                }
                drain(tape, r);
                return Ok(());
            }
            other => r.warn(format!(
                "unknown header type {other} before byte {}; skipped",
                tape.offset
            )),
        }
    }
}

/// Reads what follows the first TS_END to the end of input, so a sender is never left
/// blocked: more TS_END records and zero padding are expected, anything else is reported.
fn drain(tape: &mut Tape<'_>, r: &mut Restorer<'_>) {
    let mut buf = [0u8; TP_BSIZE];
    let mut other = 0u64;
    // A read error or a partial last record ends the image just as well.
    while let Ok(true) = tape.record(&mut buf) {
        let end = matches!(header::classify(&buf), header::Kind::Header(o)
            if o.u32(&buf, 0) == TS_END);
        if !end && buf.iter().any(|&b| b != 0) {
            other += 1;
        }
    }
    if other > 0 {
        r.warn(format!(
            "{} bytes of other data after the end of the dump ignored",
            other * TP_BSIZE as u64
        ));
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Phase {
    Start,
    Dirs,
    Files,
}

/// One destination name of an object.
struct Name {
    /// For events.
    path: Vec<u8>,
    /// Parent directory relative to the destination root, and the name in it.
    dir: Vec<u8>,
    name: Vec<u8>,
}

/// Where the data records of the inode being read go.
enum Sink {
    Skip,
    Dir,
    File(FileOut),
    /// A small file's whole data, gathered for a `Finisher` worker.
    Mem(Vec<u8>),
    Link(Vec<u8>),
}

struct Cur {
    ino: u32,
    size: u64,
    next: u64,
    sink: Sink,
    /// A hole where there must be data (symlinks, directories).
    hole: bool,
}

/// An object created (or being created) whose attributes are not all set yet.
struct Pending {
    hdr: Header,
    /// Names still to create; the first one that works is `made`.
    names: Vec<Name>,
    made: Option<(Arc<ParentDir>, Name)>,
    /// A regular file is written unnamed (or under a temporary name) in `made`'s
    /// directory and given its name once complete.
    staged: Option<fsops::Staged>,
    /// What the staged file got at its creation (owner, mode).
    fresh: fsops::Fresh,
    /// The open file (regular files) or directory (DAR).
    fd: Option<File>,
    error: Option<String>,
    data_done: bool,
    /// A small regular file left to the `Finisher`: nothing is created until it is
    /// complete; its data and attributes are kept here until then.
    small: bool,
    data: Option<Vec<u8>>,
    xattrs: fsops::XattrList,
}

/// Pieces of file data at least this long are written straight from the input's buffer;
/// shorter ones are gathered first, so small files take one write each.
const DIRECT: usize = 32 * 1024;

/// Direct writes end on multiples of this (the page size), the rest of a piece is gathered.
const PAGE: u64 = 4096;

/// Writes a regular file's data blocks: long contiguous pieces straight from the input's
/// buffer, short ones gathered into large positioned writes; blocks never written stay
/// holes.
struct FileOut {
    file: File,
    /// Gathered data, `CHUNK` at most; handed from file to file (`Restorer::spare`).
    buf: Vec<u8>,
    at: u64,
    /// End of the data written so far: the size needs setting only when a hole ends it.
    end: u64,
    err: Option<io::Error>,
}

impl FileOut {
    fn new(file: File, mut buf: Vec<u8>) -> Self {
        buf.clear();
        FileOut {
            file,
            buf,
            at: 0,
            end: 0,
            err: None,
        }
    }

    fn put(&mut self, off: u64, data: &[u8]) {
        if self.err.is_some() {
            return;
        }
        self.end = self.end.max(off + data.len() as u64);
        let follows = self.at + self.buf.len() as u64 == off;
        if data.len() >= DIRECT {
            if !follows {
                self.flush();
            }
            // What is gathered and this piece up to a page boundary go out in one call,
            // neither copied; the piece's unaligned tail waits for what follows, so writes
            // stay page-aligned as the input cuts pieces at record and header bounds.
            let end = off + data.len() as u64;
            let k = ((end & !(PAGE - 1)).max(off) - off) as usize;
            let r = if self.buf.is_empty() {
                self.file.write_all_at(&data[..k], off)
            } else {
                write_two_at(&self.file, &self.buf, &data[..k], self.at)
            };
            self.buf.clear();
            if let Err(e) = r {
                self.err = Some(e);
                return;
            }
            self.at = off + k as u64;
            self.buf.extend_from_slice(&data[k..]);
            return;
        }
        if !self.buf.is_empty() && (!follows || self.buf.len() + data.len() > CHUNK) {
            self.flush();
        }
        if self.buf.is_empty() {
            self.at = off;
        }
        self.buf.extend_from_slice(data);
    }

    fn flush(&mut self) {
        if !self.buf.is_empty() && self.err.is_none() {
            if let Err(e) = self.file.write_all_at(&self.buf, self.at) {
                self.err = Some(e);
            }
        }
        self.buf.clear();
    }

    /// The file at its full size (a trailing hole becomes a hole), and the buffer for the
    /// next file.
    fn finish(mut self, size: u64) -> (io::Result<File>, Vec<u8>) {
        self.flush();
        let buf = std::mem::take(&mut self.buf);
        if let Some(e) = self.err {
            return (Err(e), buf);
        }
        // A new file is as long as its data; only a trailing hole needs the size set.
        if self.end != size {
            if let Err(e) = self.file.set_len(size) {
                return (Err(e), buf);
            }
        }
        (Ok(self.file), buf)
    }
}

/// `a` then `b` written at `off` with one vectored call where it takes them whole.
fn write_two_at(file: &File, a: &[u8], b: &[u8], off: u64) -> io::Result<()> {
    let iov = [
        libc::iovec {
            iov_base: a.as_ptr() as *mut libc::c_void,
            iov_len: a.len(),
        },
        libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        },
    ];
    let n = loop {
        // SAFETY: a valid descriptor and two iovecs over live slices, only read from.
        let r = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), 2, off as libc::off_t) };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    // a short write (a full disk, a signal) finishes piece by piece, reporting the error
    if n < a.len() {
        file.write_all_at(&a[n..], off + n as u64)?;
        file.write_all_at(b, off + a.len() as u64)
    } else {
        let k = n - a.len();
        file.write_all_at(&b[k..], off + n as u64)
    }
}

struct Restorer<'e> {
    root: OwnedFd,
    owner: bool,
    /// Leave existing non-directories alone (`RecoverOptions::keep_existing`).
    keep: bool,
    /// `RecoverOptions::ended`.
    ended: Option<std::sync::Arc<AtomicBool>>,
    /// Events and totals.
    out: Reporter<'e>,
    cur: Option<Cur>,
    pending: Option<Pending>,
    tree: Tree,
    sels: Vec<Sel>,
    phase: Phase,
    /// The TS_BITS map when small enough to keep.
    dumped: Option<Vec<u8>>,
    /// Directories restored: (inode, destination), for the final attribute pass.
    made_dirs: Vec<(u32, Vec<u8>)>,
    /// Parent directories of pass IV's objects.
    parents: fsops::Parents,
    /// How new files are kept nameless until complete.
    staging: fsops::Staging,
    /// The gathering buffer of the last file, for the next one.
    spare: Vec<u8>,
    /// Writes small files on other threads (whole-image restores only).
    fin: Option<Finisher>,
}

impl<'e> Restorer<'e> {
    fn new(
        root: OwnedFd,
        opts: &RecoverOptions,
        events: &'e mut dyn FnMut(Event),
        sels: Vec<Sel>,
    ) -> Self {
        Restorer {
            root,
            owner: opts.restore_owner && fsops::is_root(),
            keep: opts.keep_existing,
            out: Reporter {
                events,
                sum: Summary::default(),
            },
            cur: None,
            pending: None,
            tree: Tree::default(),
            sels,
            phase: Phase::Start,
            dumped: None,
            made_dirs: Vec::new(),
            parents: fsops::Parents::default(),
            staging: fsops::Staging::default(),
            spare: Vec::with_capacity(CHUNK),
            ended: opts.ended.clone(),
            fin: None,
        }
    }

    /// Reports the files the finisher has written (`wait`: all of them, waiting).
    fn collect(&mut self, wait: bool) {
        while let Some(d) = self.fin.as_mut().and_then(|f| f.collect(wait)) {
            for w in d.warnings {
                self.warn(w);
            }
            if d.res.is_ok() {
                self.out.sum.files += 1;
            }
            self.out.report(&d.path, d.res);
        }
    }

    fn warn(&mut self, s: String) {
        self.out.warn(s);
    }

    fn report(&mut self, path: &[u8], res: Result<(), String>) {
        self.out.report(path, res);
    }

    /// Records were skipped looking for a header: the object being read is damaged if
    /// its block map was not complete yet (a lost TS_ADDR); a gap after a complete object
    /// only cost the next header.
    fn damaged(&mut self) {
        self.incomplete("the image is damaged in its data");
    }

    /// The object being read is missing data: it is reported not restored, with `why`.
    fn incomplete(&mut self, why: &str) {
        let incomplete = self
            .cur
            .as_ref()
            .is_some_and(|c| c.next.saturating_mul(TP_BSIZE as u64) < c.size);
        if !incomplete {
            return;
        }
        if let Some(p) = &mut self.pending {
            p.error.get_or_insert_with(|| why.into());
        }
    }

    /// A TS_CLRI or TS_BITS map: read, and kept if it is TS_BITS and small.
    fn map(&mut self, tape: &mut Tape<'_>, h: &Header) -> Result<(), RecoverError> {
        if h.count > MAX_MAP_RECORDS {
            return Err(RecoverError::TooLarge(format!(
                "inode map of {} records",
                h.count
            )));
        }
        let keep = h.ctype == TS_BITS && h.count <= KEEP_MAP_RECORDS;
        let mut map = Vec::new();
        let mut buf = [0u8; TP_BSIZE];
        for _ in 0..h.count {
            tape.data(&mut buf)?;
            if keep {
                map.extend_from_slice(&buf);
            }
        }
        if keep {
            self.dumped = Some(map);
        }
        Ok(())
    }

    fn inode(&mut self, tape: &mut Tape<'_>, h: Header) -> Result<(), RecoverError> {
        if h.ifmt() == libc::S_IFDIR {
            if self.phase == Phase::Files {
                self.warn(format!(
                    "directory inode {} comes after the files; skipped",
                    h.inumber
                ));
                return skip_blocks(tape, &h);
            }
            self.phase = Phase::Dirs;
            self.tree.begin_dir(h.clone());
            self.cur = Some(Cur {
                ino: h.inumber,
                size: h.size,
                next: 0,
                sink: Sink::Dir,
                hole: false,
            });
            return self.blocks(tape, &h);
        }
        if self.phase != Phase::Files {
            self.enter_files()?;
        }
        let targets = self.tree.files.take(h.inumber);
        let mut names = Vec::with_capacity(targets.len());
        for t in targets {
            let path = self.tree.entry_path(Tree::target_entry(t));
            match self.tree.file_target(t, &self.sels) {
                Some((dir, name)) => names.push(Name { path, dir, name }),
                None => self.report(&path, Err("no usable destination name".into())),
            }
        }
        if names.is_empty() {
            return skip_blocks(tape, &h);
        }
        self.start(h.clone(), names);
        self.blocks(tape, &h)
    }

    /// Pass III is over: decide where everything goes and create the directories.
    fn enter_files(&mut self) -> Result<(), RecoverError> {
        self.phase = Phase::Files;
        let dumped = self.dumped.take();
        let is_dumped = |ino: u32| -> bool {
            let Some(map) = &dumped else { return true };
            let i = ino.wrapping_sub(1) as usize;
            match map.get(i / 8) {
                Some(b) => b & (1 << (i % 8)) != 0,
                None => true,
            }
        };
        {
            let ev = &mut *self.out.events;
            self.tree
                .resolve(&mut self.sels, &is_dumped, &mut |s| ev(Event::Warning(s)))?;
        }
        self.dumped = dumped;
        for i in 0..self.sels.len() {
            if !self.sels[i].found {
                let p = self.sels[i].comps.join(&b'/');
                self.report(&p, Err("not in the image".into()));
            }
        }
        let order = self.tree.dir_order.clone();
        for d in order {
            let (target, whole, path) = {
                let dd = &self.tree.dirs[&d];
                (
                    dd.target.clone(),
                    dd.whole,
                    dd.path.clone().unwrap_or_default(),
                )
            };
            let Some(target) = target else { continue };
            let res = fsops::ensure_dir(self.root.as_fd(), &target, !target.is_empty());
            match res {
                Ok(_) => {
                    if whole || !target.is_empty() {
                        self.made_dirs.push((d, target));
                        self.out.sum.dirs += 1;
                        self.report(&path, Ok(()));
                    }
                }
                Err(e) => self.report(&path, Err(e.to_string())),
            }
        }
        Ok(())
    }

    /// Creates the object at the first name that works, reporting the ones that fail.
    fn create_first(
        &mut self,
        names: &mut Vec<Name>,
        staged: bool,
        mut make: impl FnMut(&ParentDir, &[u8]) -> io::Result<Option<File>>,
    ) -> Option<(Arc<ParentDir>, Name, Option<File>)> {
        // A single name of a staged file is checked when it is published (its link fails
        // if the name is taken), not looked up first; with more names the first free one
        // is wanted, so each is looked up.
        let staged_single = staged && names.len() == 1;
        while !names.is_empty() {
            let n = names.remove(0);
            let keep = self.keep && !staged_single;
            let res = self
                .parents
                .open(self.root.as_fd(), &n.dir)
                .and_then(|dir| {
                    if keep && fsops::exists(dir.as_fd(), &n.name)? == Some(false) {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            "exists; not replaced (FORCE=Y replaces)",
                        ));
                    }
                    let f = make(&dir, &n.name)?;
                    Ok((dir, f))
                });
            match res {
                Ok((dir, f)) => return Some((dir, n, f)),
                Err(e) => self.report(&n.path, Err(e.to_string())),
            }
        }
        None
    }

    /// Starts a non-directory of pass IV (or any inode for DAR) with its names.
    fn start(&mut self, h: Header, mut names: Vec<Name>) {
        let mut cur = Cur {
            ino: h.inumber,
            size: h.size,
            next: 0,
            sink: Sink::Skip,
            hole: false,
        };
        let mut p = Pending {
            hdr: h.clone(),
            names: Vec::new(),
            made: None,
            staged: None,
            fresh: fsops::Fresh::default(),
            fd: None,
            error: None,
            data_done: false,
            small: false,
            data: None,
            xattrs: Vec::new(),
        };
        match h.ifmt() {
            libc::S_IFREG if self.fin.is_some() && names.len() == 1 && small_whole(&h) => {
                // Staged, single name: the name is checked when the worker links it in.
                match self.create_first(&mut names, true, |_, _| Ok(None)) {
                    Some((dir, n, _)) => {
                        let mut buf = self.fin.as_mut().map(Finisher::buffer).unwrap_or_default();
                        buf.reserve(h.size as usize);
                        cur.sink = Sink::Mem(buf);
                        p.made = Some((dir, n));
                        p.small = true;
                    }
                    None => {
                        self.cur = Some(cur);
                        return;
                    }
                }
            }
            libc::S_IFREG => {
                let mut staged = None;
                let mut staging = self.staging;
                let perm = h.mode;
                let made = self.create_first(&mut names, true, |dir, name| {
                    let (f, s, fresh) = staging.create_fresh(dir, name, perm)?;
                    staged = Some((s, fresh));
                    Ok(Some(f))
                });
                self.staging = staging;
                match made {
                    Some((dir, n, Some(file))) => {
                        if let Some((s, fresh)) = staged {
                            p.staged = Some(s);
                            p.fresh = fresh;
                        }
                        cur.sink = Sink::File(FileOut::new(file, std::mem::take(&mut self.spare)));
                        p.made = Some((dir, n));
                    }
                    _ => {
                        // Every name failed and was reported.
                        self.cur = Some(cur);
                        return;
                    }
                }
            }
            libc::S_IFLNK => {
                if h.size == 0 || h.size >= MAX_SYMLINK {
                    for n in names {
                        self.report(&n.path, Err(format!("symlink of {} bytes", h.size)));
                    }
                    self.cur = Some(cur);
                    return;
                }
                cur.sink = Sink::Link(Vec::with_capacity(h.size as usize));
            }
            libc::S_IFDIR | libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR | libc::S_IFBLK => {}
            other => {
                for n in names {
                    self.report(&n.path, Err(format!("unknown file type {other:o}")));
                }
                self.cur = Some(cur);
                return;
            }
        }
        p.names = names;
        self.cur = Some(cur);
        self.pending = Some(p);
    }

    /// Consumes the block map of a TS_INODE/TS_ADDR header and its data records.
    fn blocks(&mut self, tape: &mut Tape<'_>, h: &Header) -> Result<(), RecoverError> {
        let Some(cur) = &mut self.cur else {
            return skip_blocks(tape, h);
        };
        if matches!(cur.sink, Sink::File(_) | Sink::Mem(_) | Sink::Skip) {
            return Self::file_blocks(cur, &mut self.pending, tape, h);
        }
        let mut buf: Block = [0u8; TP_BSIZE];
        for i in 0..h.entries() {
            let off = cur.next.saturating_mul(TP_BSIZE as u64);
            cur.next += 1;
            if h.addr[i] == 0 {
                if off < cur.size {
                    cur.hole = true;
                }
                continue;
            }
            if let Err(e) = tape.data(&mut buf) {
                if let Some(p) = &mut self.pending {
                    p.error
                        .get_or_insert_with(|| "the image ends inside its data".into());
                }
                return Err(e);
            }
            if off >= cur.size {
                continue;
            }
            let len = (cur.size - off).min(TP_BSIZE as u64) as usize;
            match &mut cur.sink {
                Sink::Skip => {}
                Sink::File(f) => f.put(off, &buf[..len]),
                Sink::Mem(v) => put_at(v, off, &buf[..len]),
                Sink::Link(v) => v.extend_from_slice(&buf[..len]),
                Sink::Dir => {
                    let ev = &mut *self.out.events;
                    self.tree.add_block(
                        cur.ino,
                        &buf[..len],
                        tape.order,
                        tape.newfmt,
                        &mut |s| ev(Event::Warning(s)),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// `blocks` for a regular file (or an object whose data goes nowhere): each run of
    /// consecutive data records goes from the input's buffer to the file in the pieces the
    /// input holds it in.
    fn file_blocks(
        cur: &mut Cur,
        pending: &mut Option<Pending>,
        tape: &mut Tape<'_>,
        h: &Header,
    ) -> Result<(), RecoverError> {
        let entries = h.entries();
        let mut i = 0;
        while i < entries {
            if h.addr[i] == 0 {
                if cur.next.saturating_mul(TP_BSIZE as u64) < cur.size {
                    cur.hole = true;
                }
                cur.next += 1;
                i += 1;
                continue;
            }
            let run = h.addr[i..entries].iter().take_while(|&&a| a != 0).count();
            let mut off = cur.next.saturating_mul(TP_BSIZE as u64);
            cur.next += run as u64;
            i += run;
            let size = cur.size;
            let sink = &mut cur.sink;
            let r = tape.data_run(run, &mut |piece| {
                // data past the file's size (the last record's padding) goes nowhere
                let keep = size.saturating_sub(off).min(piece.len() as u64) as usize;
                match (&mut *sink, keep > 0) {
                    (Sink::File(f), true) => f.put(off, &piece[..keep]),
                    (Sink::Mem(v), true) => put_at(v, off, &piece[..keep]),
                    _ => {}
                }
                off += piece.len() as u64;
            });
            if let Err(e) = r {
                if let Some(p) = pending {
                    p.error
                        .get_or_insert_with(|| "the image ends inside its data".into());
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// The data of the current inode is all read: create what needs its data, then set
    /// owner and mode (before attributes, as restore does).
    fn data_complete(&mut self) {
        let Some(cur) = self.cur.take() else { return };
        let Some(mut p) = self.pending.take() else {
            return;
        };
        if p.data_done || p.hdr.inumber != cur.ino {
            self.pending = Some(p);
            return;
        }
        p.data_done = true;
        let a = attrs(&p.hdr);
        let kind = p.hdr.ifmt();
        match cur.sink {
            Sink::File(f) => {
                let (res, buf) = f.finish(cur.size);
                self.spare = buf;
                match res {
                    Ok(file) => p.fd = Some(file),
                    Err(e) => {
                        p.error.get_or_insert(e.to_string());
                    }
                }
            }
            Sink::Mem(v) => {
                if v.len() as u64 != cur.size {
                    p.error
                        .get_or_insert_with(|| "the image ends inside its data".into());
                }
                p.data = Some(v);
            }
            Sink::Link(target) => {
                if cur.hole || target.len() as u64 != cur.size || target.contains(&0) {
                    p.error
                        .get_or_insert("symlink target missing or damaged in the image".into());
                } else {
                    let made = self.create_first(&mut p.names, false, |dir, name| {
                        fsops::symlink(dir.as_fd(), name, &target).map(|()| None)
                    });
                    p.made = made.map(|(d, n, _)| (d, n));
                }
            }
            Sink::Skip if kind == libc::S_IFDIR => {
                // DAR of a directory: the directory itself, attributes only.
                if let Some(n) = p.names.first() {
                    let rel = if n.dir.is_empty() {
                        n.name.clone()
                    } else {
                        [&n.dir[..], b"/", &n.name[..]].concat()
                    };
                    match fsops::ensure_dir(self.root.as_fd(), &rel, true) {
                        Ok(fd) => {
                            p.fd = Some(File::from(fd));
                            self.out.sum.dirs += 1;
                        }
                        Err(e) => {
                            p.error.get_or_insert(e.to_string());
                        }
                    }
                }
            }
            Sink::Skip => {
                let is_dev = kind == libc::S_IFCHR || kind == libc::S_IFBLK;
                if is_dev && !fsops::is_root() {
                    p.error
                        .get_or_insert("device nodes can only be created as root".into());
                } else {
                    let rdev = if is_dev {
                        fsops::decode_rdev(p.hdr.rdev)
                    } else {
                        0
                    };
                    let mode = p.hdr.mode;
                    let made = self.create_first(&mut p.names, false, |dir, name| {
                        fsops::mknod(dir.as_fd(), name, mode, rdev).map(|()| None)
                    });
                    p.made = made.map(|(d, n, _)| (d, n));
                }
            }
            Sink::Dir => {}
        }
        if p.error.is_none() && !p.small {
            let symlink = kind == libc::S_IFLNK;
            let res = match (&p.fd, &p.made) {
                (Some(f), _) => fsops::owner_mode_fresh(f, &a, self.owner, p.fresh),
                (None, Some((dir, n))) => {
                    fsops::owner_mode(&Obj::At(dir.as_fd(), &n.name), &a, self.owner, symlink)
                }
                (None, None) => Ok(()),
            };
            if let Err(e) = res {
                p.error = Some(format!("setting owner or mode: {e}"));
            }
        }
        self.pending = Some(p);
    }

    /// Reads an attribute record's blob: `c_count` records whatever the block map says,
    /// as restore does; None (and a warning) when it is larger than restore accepts.
    fn xattr_blob(
        &mut self,
        tape: &mut Tape<'_>,
        h: &Header,
    ) -> Result<Option<Vec<u8>>, RecoverError> {
        let mut buf = [0u8; TP_BSIZE];
        let keep = h.size <= fsops::MAX_XATTR_BLOB && h.extattr == header::EXT_XATTR;
        let mut blob = Vec::new();
        for _ in 0..h.entries() {
            tape.data(&mut buf)?;
            if keep {
                blob.extend_from_slice(&buf);
            }
        }
        if !keep {
            if h.extattr == header::EXT_XATTR {
                self.warn(format!(
                    "inode {}: attribute set of {} bytes is too large; not restored",
                    h.inumber, h.size
                ));
            }
            return Ok(None);
        }
        blob.truncate(h.size as usize);
        Ok(Some(blob))
    }

    /// Applies (or, in the directory pass, keeps) an attribute record.
    fn xattr(&mut self, h: &Header, blob: Option<Vec<u8>>) {
        let Some(blob) = blob else { return };
        if self.phase != Phase::Files && self.tree.dirs.contains_key(&h.inumber) {
            if let Err(why) = self.tree.dir_xattr(h.inumber, blob) {
                self.warn(format!(
                    "directory inode {}: attributes not restored: {why}",
                    h.inumber
                ));
            }
            return;
        }
        let Some(p) = &mut self.pending else { return };
        if p.hdr.inumber != h.inumber || p.error.is_some() {
            return;
        }
        let small = p.small;
        let list = match fsops::decode_xattrs(&blob) {
            Ok((list, bad)) => {
                for b in bad {
                    (self.out.events)(Event::Warning(format!("inode {}: {b}", h.inumber)));
                }
                list
            }
            Err(e) => {
                let msg = format!("inode {}: attributes not restored: {e}", h.inumber);
                self.warn(msg);
                return;
            }
        };
        if small {
            if let Some(p) = &mut self.pending {
                p.xattrs.extend(list);
            }
            return;
        }
        let Some(p) = &mut self.pending else { return };
        let errs = match (&p.fd, &p.made) {
            (Some(f), _) => fsops::set_xattrs(&Obj::Fd(f.as_raw_fd()), &list),
            (None, Some((dir, n))) => fsops::set_xattrs(&Obj::At(dir.as_fd(), &n.name), &list),
            (None, None) => Vec::new(),
        };
        for e in errs {
            let path = p.made.as_ref().map(|m| show(&m.1.path)).unwrap_or_default();
            (self.out.events)(Event::Warning(format!("{path}: {e}")));
        }
    }

    /// The object's records are over: set its times, add its other names, report it.
    fn finalize(&mut self) {
        let Some(mut p) = self.pending.take() else {
            return;
        };
        let a = attrs(&p.hdr);
        if p.small {
            return self.hand_over(p, a);
        }
        let Some((dir, first)) = p.made.take() else {
            // Nothing was made at a name: a DAR directory (open in `fd`), or a failure.
            let res = match (&p.fd, p.error.take()) {
                (_, Some(e)) => Err(e),
                (Some(f), None) => fsops::times(&Obj::Fd(f.as_raw_fd()), &a)
                    .map_err(|e| format!("setting times: {e}")),
                (None, None) => Err("not created".to_string()),
            };
            for n in std::mem::take(&mut p.names) {
                self.report(&n.path, res.clone());
            }
            return;
        };
        if p.error.is_none() {
            let res = match &p.fd {
                Some(f) => fsops::times(&Obj::Fd(f.as_raw_fd()), &a),
                None => fsops::times(&Obj::At(dir.as_fd(), &first.name), &a),
            };
            if let Err(e) = res {
                p.error = Some(format!("setting times: {e}"));
            }
        }
        if let Some(staged) = p.staged.take() {
            match (&p.error, &p.fd) {
                (None, Some(f)) => {
                    if let Err(e) =
                        self.staging
                            .publish_new(dir.as_fd(), f, staged, &first.name, self.keep)
                    {
                        p.error = Some(e.to_string());
                    }
                }
                _ => fsops::unstage(dir.as_fd(), &staged),
            }
        }
        drop(p.fd.take());
        let res = match p.error.take() {
            None => Ok(()),
            Some(e) => Err(e),
        };
        if res.is_ok() {
            self.out.sum.files += 1;
        }
        self.report(&first.path, res.clone());
        for n in std::mem::take(&mut p.names) {
            let r = match &res {
                Err(e) => Err(e.clone()),
                Ok(()) => {
                    let keep = self.keep;
                    self.parents
                        .open(self.root.as_fd(), &n.dir)
                        .and_then(|d| {
                            if keep && fsops::exists(d.as_fd(), &n.name)?.is_some() {
                                return Err(io::Error::new(
                                    io::ErrorKind::AlreadyExists,
                                    "exists; not replaced (FORCE=Y replaces)",
                                ));
                            }
                            fsops::link(dir.as_fd(), &first.name, d.as_fd(), &n.name)
                        })
                        .map_err(|e| format!("hard link: {e}"))
                }
            };
            self.report(&n.path, r);
        }
    }

    /// A small file's records are over: the finisher writes it (nothing was created yet,
    /// so a failure has nothing to clean up).
    fn hand_over(&mut self, mut p: Pending, attrs: Attrs) {
        let Some((dir, first)) = p.made.take() else {
            return;
        };
        let data = p.data.take().unwrap_or_default();
        if let Some(e) = p.error.take() {
            self.report(&first.path, Err(e));
            return;
        }
        let Some(fin) = &mut self.fin else { return };
        fin.submit(SmallFile {
            dir,
            name: first.name,
            path: first.path,
            data,
            attrs,
            xattrs: std::mem::take(&mut p.xattrs),
            owner: self.owner,
            keep: self.keep,
            tag: None,
        });
        self.collect(false);
    }

    /// The restore stops in the middle of an object: its temporary file goes.
    fn abandon(&mut self) {
        if let Some(p) = self.pending.take() {
            if let (Some((dir, _)), Some(staged)) = (&p.made, &p.staged) {
                fsops::unstage(dir.as_fd(), staged);
            }
        }
    }

    /// TS_END: report what was selected but never seen, then set directory attributes.
    fn end(&mut self) -> Result<(), RecoverError> {
        if self.phase != Phase::Files {
            self.enter_files()?;
        }
        let missing = self.tree.files.rest();
        for (ino, targets) in missing {
            let on_dump = match &self.dumped {
                None => true,
                Some(map) => {
                    let i = ino.wrapping_sub(1) as usize;
                    map.get(i / 8).is_none_or(|b| b & (1 << (i % 8)) != 0)
                }
            };
            if !on_dump {
                continue;
            }
            for t in targets {
                let path = self.tree.entry_path(Tree::target_entry(t));
                self.report(&path, Err(format!("inode {ino} is not in the image")));
            }
        }
        self.collect(true);
        self.apply_dir_attrs();
        Ok(())
    }

    /// Owner, mode, attributes and times of every restored directory, deepest first.
    fn apply_dir_attrs(&mut self) {
        self.parents.forget();
        let mut dirs = std::mem::take(&mut self.made_dirs);
        dirs.sort_by_key(|(_, t)| {
            std::cmp::Reverse(t.iter().filter(|&&b| b == b'/').count() + usize::from(!t.is_empty()))
        });
        for (ino, target) in dirs {
            let Some(d) = self.tree.dirs.get(&ino) else {
                continue;
            };
            let a = attrs(&d.hdr);
            let xattr = d.xattr.clone();
            let shown = show(&target);
            let fd = match fsops::walk(self.root.as_fd(), &target) {
                Ok(fd) => fd,
                Err(e) => {
                    self.warn(format!("{shown}: directory attributes not set: {e}"));
                    continue;
                }
            };
            let obj = Obj::Fd(fd.as_raw_fd());
            let mut errs = Vec::new();
            if let Err(e) = fsops::owner_mode(&obj, &a, self.owner, false) {
                errs.push(format!("owner or mode: {e}"));
            }
            if let Some(blob) = xattr {
                match fsops::decode_xattrs(&blob) {
                    Ok((list, bad)) => {
                        errs.extend(bad);
                        errs.extend(fsops::set_xattrs(&obj, &list));
                    }
                    Err(e) => errs.push(format!("attributes: {e}")),
                }
            }
            if let Err(e) = fsops::times(&obj, &a) {
                errs.push(format!("times: {e}"));
            }
            for e in errs {
                self.warn(format!("{shown}: {e}"));
            }
        }
    }
}
