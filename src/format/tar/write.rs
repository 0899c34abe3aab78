//! The tar writer: walks one file system tree depth-first and streams it as a POSIX pax
//! archive (ustar headers, 'x' headers when needed, GNU sparse 1.0 for files with holes).

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use super::header::{self, Block, BLOCK, MAX_SPARSE_ENTRIES};
use crate::format::dump::tree::{glob_match, kind_of, root_dir, DirFd, Stat};
use crate::format::dump::xattr::{self, Source};
use crate::format::dump::{DumpError, FileKind, NodeStat, Summary};
use crate::format::out::{self, ImageOut};

/// A directory listing stats at most this many entries ahead of the walk; the rest are
/// stat'ed when reached, so a huge directory does not hold every entry's metadata.
const STAT_AHEAD: usize = 16 * 1024;
/// Files read ahead of the writer, about (queued batches; one more batch per thread may be
/// in hand); with `AHEAD_SIZE` this bounds the read-ahead's memory to about 18 MiB.
const AHEAD_FILES: usize = 256;
/// Read-ahead threads: the nth batch of a backup's files is read by thread n %
/// AHEAD_THREADS. One thread opening, stat'ing and reading 200,000 small files set the
/// pace of the whole backup while the other core was idle 40% of the time.
const AHEAD_THREADS: usize = 2;
/// Files a read-ahead thread is given and hands over at a time (fewer at the end of a
/// run): one wake-up of the writer per batch rather than per file.
const AHEAD_BATCH: usize = 16;
/// Files up to this size (and without holes) are read whole by the read-ahead thread;
/// larger ones are streamed by the writer.
const AHEAD_SIZE: u64 = 64 * 1024;
const ZEROS: [u8; BLOCK] = [0; BLOCK];
/// Members between two refreshes of the estimate.
const ESTIMATE_EVERY: u64 = 4096;

type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// What to archive.
#[derive(Debug, Clone)]
pub struct TarOptions {
    /// Incremental: only non-directories whose mtime or ctime is at or after this many
    /// seconds since the epoch; every directory is written so that paths exist.
    pub base_date: Option<i64>,
    /// File-name patterns (`*`, `?`) left out of the archive, with their subtrees.
    pub exclude: Vec<String>,
    /// The archive is padded with zeros to a multiple of this after its end marker.
    pub record_size: usize,
    /// For an incremental, when a snapshot provider knows them: the only non-directories
    /// that can have changed. Others are not stat'ed; the archive is the same.
    pub changed: Option<std::sync::Arc<crate::format::changed::Changed>>,
}

impl Default for TarOptions {
    fn default() -> Self {
        TarOptions {
            base_date: None,
            exclude: Vec::new(),
            record_size: 10240,
            changed: None,
        }
    }
}

/// What the writer tells its caller while running.
#[derive(Debug)]
pub enum Event<'a> {
    /// One member, in archive order. `path` is the history path ("/" for the root,
    /// "/sub/b.txt"); `fh_info` the archive offset of the member's first header (its pax
    /// header when it has one). A tar archive carries no link counts: `stat.nlink` is 1.
    /// For a hard-link member, `stat.kind` and `stat.size` are those of the name it links
    /// to; directories, devices and FIFOs have size 0, symlinks the target's length.
    File {
        /// The member's history path.
        path: &'a [u8],
        /// Its attributes, as described above.
        stat: &'a NodeStat,
        /// Archive offset of its first header.
        fh_info: u64,
    },
    /// About how many bytes the archive will have, from the share of the tree walked so
    /// far; sent again every few thousand members as it improves, the first as soon as the
    /// walk has finished one entry.
    Estimate(u64),
    /// Something was left out or changed while it was read; the archive goes on.
    Warning(String),
}

/// Writes a tar archive of the tree at `root` to `out`. See `super::write_tar`.
pub fn write_tar(
    root: &Path,
    opts: &TarOptions,
    out: &mut dyn ImageOut,
    events: &mut dyn FnMut(Event<'_>),
    abort: &AtomicBool,
) -> Result<Summary, DumpError> {
    let md = root_dir(root)?;
    let record = if opts.record_size == 0 {
        10240
    } else {
        opts.record_size
    } as u64;
    let mut w = Walker {
        out: Out(out::Out::new(out)),
        opts,
        dev: md.dev(),
        links: HashMap::new(),
        sum: Summary::default(),
        ahead: None,
        record,
        members: 0,
        est_next: 0,
        hist: Vec::new(),
        recs: Vec::new(),
        tmp: Vec::new(),
    };
    let dev = md.dev();
    std::thread::scope(|s| {
        // data buffers the writer is done with, back to the read-ahead for the next files:
        // no more than the files in flight can use, whatever is sent back
        let (spare, spare_rx) = crossbeam_channel::bounded(AHEAD_FILES);
        let (mut jobs, mut done) = (Vec::new(), Vec::new());
        for _ in 0..AHEAD_THREADS {
            let (job_tx, job_rx) = mpsc::channel();
            let (done_tx, done_rx) =
                mpsc::sync_channel(AHEAD_FILES / AHEAD_BATCH / AHEAD_THREADS - 1);
            let spare_rx = spare_rx.clone();
            std::thread::Builder::new()
                .name("backup-ahead".into())
                .spawn_scoped(s, move || {
                    read_ahead(&job_rx, &done_tx, &spare_rx, dev, abort)
                })
                .map_err(DumpError::Output)?;
            jobs.push(job_tx);
            done.push(done_rx);
        }
        w.ahead = Some(AheadLink {
            jobs,
            done,
            sent: 0,
            got: 0,
            spare,
            ready: std::collections::VecDeque::new(),
        });
        let r = w.run(root, &md, events, abort);
        // the channels go: the read-ahead thread ends
        w.ahead = None;
        r
    })?;
    // The end marker, then zeros up to a whole record.
    w.out.put(&ZEROS)?;
    w.out.put(&ZEROS)?;
    while !w.out.0.off.is_multiple_of(record) {
        let n = (record - w.out.0.off % record).min(BLOCK as u64) as usize;
        w.out.put(&ZEROS[..n])?;
    }
    w.out.0.finish().map_err(DumpError::Output)?;
    w.sum.bytes = w.out.0.off;
    Ok(w.sum)
}

fn excluded(opts: &TarOptions, name: &[u8]) -> bool {
    opts.exclude.iter().any(|p| glob_match(p.as_bytes(), name))
}

/// Whether an incremental leaves `ent` out without a stat: a non-directory the snapshot
/// provider says cannot have changed.
fn unchanged(opts: &TarOptions, ent: &std::fs::DirEntry) -> bool {
    use std::os::unix::fs::DirEntryExt;
    match (&opts.changed, opts.base_date) {
        (Some(c), Some(_)) => {
            ent.file_type().ok().and_then(FileKind::of_entry).is_some() && !c.contains(ent.ino())
        }
        _ => false,
    }
}

/// Whether a non-directory goes on an incremental archive.
fn changed(opts: &TarOptions, m: &Metadata) -> bool {
    opts.base_date
        .is_none_or(|base| m.mtime().max(m.ctime()) >= base)
}

/// The output stream, its buffer (`buf[..len]` waiting) and its byte count (for fh_info
/// and padding).
/// The image buffer with tar's block padding, in the writers' error type.
struct Out<'o>(out::Out<'o>);

impl Out<'_> {
    fn put(&mut self, b: &[u8]) -> Result<(), DumpError> {
        self.0.put(b).map_err(DumpError::Output)
    }

    /// The free end of the buffer, never empty: the buffer is handed on first if full.
    fn room(&mut self) -> Result<&mut [u8], DumpError> {
        self.0.room().map_err(DumpError::Output)
    }

    /// Zeros up to the next block boundary.
    fn pad(&mut self) -> Result<(), DumpError> {
        let r = (self.0.off % BLOCK as u64) as usize;
        if r != 0 {
            self.put(&ZEROS[..BLOCK - r])?;
        }
        Ok(())
    }
}

/// Attributes that go into a header.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, u32),
    atime: (i64, u32),
    ctime: (i64, u32),
    rdev: (u32, u32),
}

impl Meta {
    fn of(md: &Stat) -> Meta {
        let t = |(s, ns): (i64, i64)| (s, ns.clamp(0, 999_999_999) as u32);
        let (major, minor) = if matches!(md.mode & libc::S_IFMT, libc::S_IFCHR | libc::S_IFBLK) {
            (libc::major(md.rdev), libc::minor(md.rdev))
        } else {
            (0, 0)
        };
        Meta {
            mode: md.mode & 0o7777,
            uid: md.uid,
            gid: md.gid,
            mtime: t(md.mtime),
            atime: t(md.atime),
            ctime: t(md.ctime),
            rdev: (major, minor),
        }
    }

    fn stat(&self, kind: FileKind, size: u64) -> NodeStat {
        NodeStat {
            kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            size,
            atime: self.atime.0,
            mtime: self.mtime.0,
            ctime: self.ctime.0,
            nlink: 1,
        }
    }
}

/// One member's header as the writer sees it.
struct Member<'a> {
    /// Archive name ("./sub/b.txt", "./sub/").
    name: &'a [u8],
    typeflag: u8,
    meta: &'a Meta,
    /// Bytes of data after the header.
    size: u64,
    link: &'a [u8],
    xattrs: &'a [(Vec<u8>, Vec<u8>)],
    /// Sparse 1.0: the name in the ustar header and the file's real size.
    sparse: Option<(&'a [u8], u64)>,
}

/// Splits a name into the ustar (prefix, name) fields, if it fits.
fn split_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= header::NAME.1 {
        return Some((&[], name));
    }
    let lo = name.len().saturating_sub(header::NAME.1 + 1);
    let hi = header::PREFIX.1.min(name.len().saturating_sub(2));
    (lo..=hi)
        .find(|&i| name[i] == b'/')
        .map(|i| (&name[..i], &name[i + 1..]))
}

fn put(b: &mut Block, f: (usize, usize), v: &[u8]) {
    let n = v.len().min(f.1);
    b[f.0..f.0 + n].copy_from_slice(&v[..n]);
}

fn put_num(b: &mut Block, f: (usize, usize), v: i64) {
    header::put_num(&mut b[f.0..f.0 + f.1], v);
}

/// A header with the fields every member shares.
fn base_block(name: &[u8], typeflag: u8, mode: u32, uid: u32, gid: u32, mtime: i64) -> Block {
    let mut b = [0u8; BLOCK];
    match split_name(name) {
        Some((prefix, n)) => {
            put(&mut b, header::NAME, n);
            put(&mut b, header::PREFIX, prefix);
        }
        None => put(&mut b, header::NAME, name),
    }
    put_num(&mut b, header::MODE, i64::from(mode));
    put_num(&mut b, header::UID, i64::from(uid));
    put_num(&mut b, header::GID, i64::from(gid));
    put_num(&mut b, header::MTIME, mtime);
    b[header::TYPEFLAG] = typeflag;
    put(&mut b, header::MAGIC, b"ustar\0");
    put(&mut b, header::VERSION, b"00");
    put_num(&mut b, header::DEVMAJOR, 0);
    put_num(&mut b, header::DEVMINOR, 0);
    b
}

fn base_name(name: &[u8]) -> &[u8] {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    match trimmed.iter().rposition(|&c| c == b'/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// `prefix` followed by as much of `tail` as fits in the ustar name field.
fn short_name(prefix: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut buf = [0; header::NAME.1];
    short_name_in(prefix, tail, &mut buf).to_vec()
}

/// `short_name` in a buffer of the caller's (no allocation per member).
fn short_name_in<'b>(prefix: &[u8], tail: &[u8], buf: &'b mut [u8; header::NAME.1]) -> &'b [u8] {
    let n = tail.len().min(buf.len() - prefix.len());
    buf[..prefix.len()].copy_from_slice(prefix);
    buf[prefix.len()..prefix.len() + n].copy_from_slice(&tail[..n]);
    &buf[..prefix.len() + n]
}

/// The pax records a member needs, written into `recs` (emptied first), which stays empty
/// when its ustar header says it all; `tmp` is scratch space for values. Both are the
/// writer's, reused from member to member.
/// Times: mtime goes in a record when it has nanoseconds or does not fit the field; once
/// there is an 'x' header atime and ctime always go in it, and there is one whenever they
/// differ from mtime, so a reader taking a missing atime or ctime for mtime is exact.
fn pax_records(m: &Member<'_>, name_fits: bool, recs: &mut Vec<u8>, tmp: &mut Vec<u8>) {
    recs.clear();
    let mut binary = false;
    if !name_fits {
        header::pax_record(recs, b"path", m.name);
        binary |= std::str::from_utf8(m.name).is_err();
    }
    if let Some((_, realsize)) = m.sparse {
        header::pax_record(recs, b"GNU.sparse.major", b"1");
        header::pax_record(recs, b"GNU.sparse.minor", b"0");
        header::pax_record(recs, b"GNU.sparse.name", m.name);
        tmp.clear();
        header::put_decimal(tmp, realsize);
        header::pax_record(recs, b"GNU.sparse.realsize", tmp);
        binary |= std::str::from_utf8(m.name).is_err();
    }
    if m.link.len() > header::LINKNAME.1 {
        header::pax_record(recs, b"linkpath", m.link);
        binary |= std::str::from_utf8(m.link).is_err();
    }
    if m.size > header::OCTAL_11_MAX {
        tmp.clear();
        header::put_decimal(tmp, m.size);
        header::pax_record(recs, b"size", tmp);
    }
    for (key, id) in [(&b"uid"[..], m.meta.uid), (b"gid", m.meta.gid)] {
        if u64::from(id) > header::OCTAL_7_MAX {
            tmp.clear();
            header::put_decimal(tmp, u64::from(id));
            header::pax_record(recs, key, tmp);
        }
    }
    for (name, value) in m.xattrs {
        let key = match name.as_slice() {
            b"system.posix_acl_access" => Some(&b"SCHILY.acl.access"[..]),
            b"system.posix_acl_default" => Some(&b"SCHILY.acl.default"[..]),
            _ => None,
        };
        // GNU tar's --acls takes the text form and drops the raw attribute.
        if let Some(text) = key.and_then(|k| Some((k, header::acl_to_text(value)?))) {
            header::pax_record(recs, text.0, &text.1);
        }
        tmp.clear();
        tmp.extend_from_slice(b"SCHILY.xattr.");
        tmp.extend_from_slice(name);
        header::pax_record(recs, tmp, value);
    }
    let (mt, at, ct) = (m.meta.mtime, m.meta.atime, m.meta.ctime);
    let mtime_fits = mt.1 == 0 && (0..=header::OCTAL_11_MAX as i64).contains(&mt.0);
    if recs.is_empty() && mtime_fits && at == mt && ct == mt {
        return;
    }
    let times: [(&[u8], (i64, u32), bool); 3] = [
        (b"mtime", mt, !mtime_fits),
        (b"atime", at, true),
        (b"ctime", ct, true),
    ];
    for (key, (secs, ns), wanted) in times {
        if wanted {
            tmp.clear();
            header::put_time(tmp, secs, ns);
            header::pax_record(recs, key, tmp);
        }
    }
    if binary {
        // The charset record belongs before the names it describes.
        tmp.clear();
        header::pax_record(tmp, b"hdrcharset", b"BINARY");
        recs.splice(0..0, tmp.iter().copied());
    }
}

struct Walker<'o, 'p> {
    out: Out<'o>,
    opts: &'p TarOptions,
    /// st_dev of the root: objects elsewhere are left out.
    dev: u64,
    /// First archive name, kind and size of each inode with several names.
    links: HashMap<u64, (Vec<u8>, FileKind, u64)>,
    sum: Summary,
    /// The read-ahead thread, while it runs.
    ahead: Option<AheadLink>,
    /// The archive is padded to a multiple of this (for the estimate).
    record: u64,
    /// Members written so far, and the count at which the estimate is next refreshed.
    members: u64,
    est_next: u64,
    /// The history path of the member being reported.
    hist: Vec<u8>,
    /// A member's pax records, and scratch space for their values.
    recs: Vec<u8>,
    tmp: Vec<u8>,
}

/// Regular files for a read-ahead thread (at most `AHEAD_BATCH`, of one run): their
/// directory and names.
type Job = (Arc<DirFd>, Vec<Box<[u8]>>);

/// The writer's ends of the read-ahead threads' channels: batch n of the regular files to
/// read goes out on `jobs[n % AHEAD_THREADS]`, and comes back read on `done[n %
/// AHEAD_THREADS]`, so the writer takes the files in the walk's order.
struct AheadLink {
    jobs: Vec<mpsc::Sender<Job>>,
    done: Vec<mpsc::Receiver<Vec<Option<ReadAhead>>>>,
    /// Batches sent out, and received back.
    sent: usize,
    got: usize,
    /// The rest of the last batch received.
    ready: std::collections::VecDeque<Option<ReadAhead>>,
    /// Data buffers written out, handed back for the next files: reusing them spares the
    /// allocator fresh (kernel-zeroed) pages for every file.
    spare: crossbeam_channel::Sender<Vec<u8>>,
}

impl AheadLink {
    /// Hands a run of regular files in `dir` to the threads, a batch at a time in turn;
    /// returns how many files it held.
    fn send(&mut self, dir: &Arc<DirFd>, run: impl Iterator<Item = Box<[u8]>>) -> usize {
        let mut run = run.peekable();
        let mut n = 0;
        while run.peek().is_some() {
            let names: Vec<_> = run.by_ref().take(AHEAD_BATCH).collect();
            n += names.len();
            let _ = self.jobs[self.sent % AHEAD_THREADS].send((dir.clone(), names));
            self.sent += 1;
        }
        n
    }

    /// The next file handed over, as read (None: the writer opens it itself); Err when a
    /// thread stopped (the backup is aborted).
    fn next(&mut self) -> Result<Option<ReadAhead>, DumpError> {
        if self.ready.is_empty() {
            let batch = self.done[self.got % AHEAD_THREADS]
                .recv()
                .map_err(|_| DumpError::Aborted)?;
            self.got += 1;
            self.ready.extend(batch);
        }
        Ok(self.ready.pop_front().flatten())
    }
}

/// A small file read whole: its fstat, its data (zeros where it could not be read), how
/// the read went, whether it had grown by the end, and its attributes. An empty file taken
/// by name (`empty_by_name`) has its stat and no buffer.
struct ReadAhead {
    md: Stat,
    data: Vec<u8>,
    rd: Reading,
    grew: bool,
    xattrs: io::Result<Xattrs>,
}

/// A read-ahead thread: for each batch of names, in order, the files read whole or None
/// (the writer then opens it itself: too large, with holes, or not a plain file of this
/// file system, which the writer meets again and reports), handed back as one batch.
fn read_ahead(
    jobs: &mpsc::Receiver<Job>,
    done: &mpsc::SyncSender<Vec<Option<ReadAhead>>>,
    spare: &crossbeam_channel::Receiver<Vec<u8>>,
    dev: u64,
    abort: &AtomicBool,
) {
    // Whether the last file was empty: then the next is tried by name first, since empty
    // files come in crowds (a stat and a listing instead of an open, a stat, a listing, a
    // read and a close); a file with data costs that guess one stat.
    let mut empties = false;
    for (dir, names) in jobs {
        let mut batch = Vec::with_capacity(names.len());
        for name in names {
            if abort.load(Ordering::Relaxed) {
                return;
            }
            let by_name = if empties {
                empty_by_name(&dir, &name, dev)
            } else {
                None
            };
            let r = by_name.or_else(|| {
                open_member(Some(&dir), &name, Path::new(""))
                    .ok()
                    .and_then(|f| read_small(&f, dev, spare.try_recv().unwrap_or_default()))
            });
            empties = r.as_ref().is_some_and(|r| {
                r.md.size == 0 && !r.grew && r.xattrs.as_ref().is_ok_and(|x| x.is_empty())
            });
            batch.push(r);
        }
        if done.send(batch).is_err() {
            return; // the writer stopped
        }
    }
}

/// `name` in `dir` taken by name when it is an empty regular file of this file system
/// without attributes (`Stat::empty_at`); None otherwise: the caller opens it as any other.
fn empty_by_name(dir: &DirFd, name: &[u8], dev: u64) -> Option<ReadAhead> {
    let md = Stat::empty_at(dir.as_fd(), name, dev)?;
    Some(ReadAhead {
        md,
        data: Vec::new(),
        rd: Reading::default(),
        grew: false,
        xattrs: Ok(Vec::new()),
    })
}

/// Reads a small regular file without holes whole, as `Walker::copy` would, into `data`
/// (a spare buffer). Growth is seen by asking for one byte more than the size: a local file
/// system's read stops short only at the end, so no second `fstat` is needed.
fn read_small(f: &File, dev: u64, mut data: Vec<u8>) -> Option<ReadAhead> {
    let md = f.metadata().ok()?;
    let size = md.size();
    if !md.is_file() || md.dev() != dev || size > AHEAD_SIZE || md.blocks() * 512 < size {
        return None;
    }
    let xattrs = xattr::read_all(Source::Fd(f.as_raw_fd()));
    let (rd, grew) = read_whole(f, size as usize, &mut data);
    Some(ReadAhead {
        md: Stat::from(&md),
        data,
        rd,
        grew,
        xattrs,
    })
}

/// Reads the first `size` bytes of `f` into `data` (zeros where the file ended first or a
/// read failed), asking for one byte more to learn whether the file has grown past `size`.
fn read_whole(f: &File, size: usize, data: &mut Vec<u8>) -> (Reading, bool) {
    data.clear();
    data.resize(size + 1, 0);
    let mut rd = Reading::default();
    let mut got = 0;
    while got < size && !rd.failed && !rd.short {
        match f.read_at(&mut data[got..], got as u64) {
            Ok(0) => rd.short = true,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => rd.failed = true,
        }
    }
    // an empty file is read once too, for its growth alone
    let grew = got > size || (size == 0 && matches!(f.read_at(&mut data[..1], 0), Ok(1)));
    data.truncate(size);
    if got < size {
        data[got..].fill(0);
    }
    (rd, grew)
}

/// A directory being walked: its path, its name relative to the root ("" for the root),
/// the directory itself when it could be opened, and its entries, sorted, still to visit.
struct Frame {
    dir: PathBuf,
    rel: Vec<u8>,
    fd: Option<Arc<DirFd>>,
    names: Vec<(Box<[u8]>, Pre)>,
    next: usize,
    /// Entries before this one were handed to the read-ahead thread when they were
    /// `Pre::File`.
    queued: usize,
}

/// What the listing of a directory already knows of an entry.
enum Pre {
    /// Its lstat (taken relative to the listed directory: one name to look up).
    Stat(io::Result<Metadata>),
    /// A regular file per the directory entry, on a full backup: it is opened straight
    /// away and its fstat is the only one.
    File,
    /// Nothing yet (past `STAT_AHEAD`): stat'ed when the walk reaches it.
    Later,
}

fn join_rel(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut r = dir.to_vec();
    if !r.is_empty() {
        r.push(b'/');
    }
    r.extend_from_slice(name);
    r
}

/// "./" + rel, with a trailing '/' for directories.
fn member_name(rel: &[u8], dir: bool) -> Vec<u8> {
    let mut n = b"./".to_vec();
    n.extend_from_slice(rel);
    if dir && !rel.is_empty() {
        n.push(b'/');
    }
    n
}

fn cpath(p: &Path) -> CString {
    // Paths built from read_dir names never contain NUL; an empty CString only makes the
    // attribute calls fail.
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

impl Walker<'_, '_> {
    fn warn(&self, events: &mut dyn FnMut(Event<'_>), path: &Path, why: impl std::fmt::Display) {
        events(Event::Warning(format!("{}: {why}", path.display())));
    }

    /// Leaves an object out, saying why.
    fn skip(
        &mut self,
        events: &mut dyn FnMut(Event<'_>),
        path: &Path,
        why: impl std::fmt::Display,
    ) {
        self.warn(events, path, format_args!("{why}; not archived"));
        self.sum.skipped += 1;
    }

    fn run(
        &mut self,
        root: &Path,
        md: &Metadata,
        events: &mut dyn FnMut(Event<'_>),
        abort: &AtomicBool,
    ) -> Result<(), DumpError> {
        self.dir(root, b"", md, events)?;
        let names = self.list(root, events);
        let mut stack = vec![Frame {
            dir: root.to_path_buf(),
            rel: Vec::new(),
            fd: DirFd::open(root).ok().map(Arc::new),
            names,
            next: 0,
            queued: 0,
        }];
        while !stack.is_empty() {
            if abort.load(Ordering::Relaxed) {
                return Err(DumpError::Aborted);
            }
            if self.members >= self.est_next {
                self.estimate(&stack, events);
            }
            let Some(top) = stack.last_mut() else { break };
            let at = top.next;
            if let Some(a) = self.ahead.as_mut().filter(|_| at >= top.queued) {
                if let (Some(fd), Some((_, Pre::File))) = (&top.fd, top.names.get(at)) {
                    // The run of files from here to the next other entry: the walk takes
                    // them in this order before anything else.
                    let run = top.names[at..]
                        .iter()
                        .take_while(|e| matches!(e.1, Pre::File))
                        .map(|e| e.0.clone());
                    top.queued = at + a.send(fd, run);
                }
            }
            let queued = at < top.queued;
            let Some((name, pre)) = top.names.get_mut(top.next).map(|e| {
                (
                    std::mem::take(&mut e.0),
                    std::mem::replace(&mut e.1, Pre::Later),
                )
            }) else {
                stack.pop();
                continue;
            };
            top.next += 1;
            let path = top.dir.join(OsStr::from_bytes(&name));
            let rel = join_rel(&top.rel, &name);
            let md = match pre {
                Pre::Stat(r) => r,
                Pre::File if queued => {
                    let got = match &mut self.ahead {
                        Some(a) => a.next()?,
                        None => None,
                    };
                    if let Some(r) = got {
                        self.small_file(&path, &rel, r, events)?;
                    } else {
                        let dirfd = stack.last().and_then(|f| f.fd.as_deref());
                        let opened = open_member(dirfd, &name, &path);
                        self.file(&path, &rel, opened, events, abort)?;
                    }
                    continue;
                }
                Pre::File => {
                    let dirfd = stack.last().and_then(|f| f.fd.as_deref());
                    let opened = open_member(dirfd, &name, &path);
                    self.file(&path, &rel, opened, events, abort)?;
                    continue;
                }
                Pre::Later => std::fs::symlink_metadata(&path),
            };
            let md = match md {
                Ok(m) => m,
                Err(e) => {
                    self.skip(events, &path, e);
                    continue;
                }
            };
            if md.dev() != self.dev {
                self.skip(events, &path, "another file system");
                continue;
            }
            let kind = kind_of(&md);
            if kind == FileKind::Dir {
                self.dir(&path, &rel, &md, events)?;
                let names = self.list(&path, events);
                let fd = DirFd::open(&path).ok().map(Arc::new);
                stack.push(Frame {
                    dir: path,
                    rel,
                    fd,
                    names,
                    next: 0,
                    queued: 0,
                });
                continue;
            }
            if !changed(self.opts, &md) {
                continue;
            }
            match kind {
                FileKind::File => {
                    let dirfd = stack.last().and_then(|f| f.fd.as_deref());
                    let opened = open_member(dirfd, &name, &path);
                    self.file(&path, &rel, opened, events, abort)?
                }
                FileKind::Socket => self.skip(events, &path, "a socket"),
                _ => self.other(&path, &rel, &md, kind, events)?,
            }
        }
        Ok(())
    }

    /// The names of a directory's entries that are not excluded, sorted, with what the
    /// listing learnt of them (see `Pre`).
    fn list(&mut self, dir: &Path, events: &mut dyn FnMut(Event<'_>)) -> Vec<(Box<[u8]>, Pre)> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => {
                self.warn(events, dir, format_args!("cannot read directory: {e}"));
                return Vec::new();
            }
        };
        let mut names: Vec<(Box<[u8]>, Pre)> = Vec::new();
        let mut stated = 0;
        for ent in rd {
            match ent {
                Ok(ent) => {
                    let name = ent.file_name();
                    if excluded(self.opts, name.as_bytes()) {
                        self.sum.skipped += 1;
                    } else if unchanged(self.opts, &ent) {
                        // an incremental would stat it only to leave it out
                    } else {
                        let full = self.opts.base_date.is_none();
                        let pre = if full && ent.file_type().is_ok_and(|t| t.is_file()) {
                            Pre::File
                        } else if stated < STAT_AHEAD {
                            stated += 1;
                            // DirEntry::metadata is an fstatat relative to the listing
                            Pre::Stat(ent.metadata())
                        } else {
                            Pre::Later
                        };
                        names.push((Box::from(name.as_bytes()), pre));
                    }
                }
                Err(e) => {
                    self.warn(events, dir, format_args!("reading directory: {e}"));
                    break;
                }
            }
        }
        names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        names
    }

    fn xattrs(&self, src: Source<'_>, path: &Path, events: &mut dyn FnMut(Event<'_>)) -> Xattrs {
        self.xattrs_of(xattr::read_all(src), path, events)
    }

    /// The attributes read of a member that a pax header can carry, with a warning for
    /// the others (or for a failed read).
    fn xattrs_of(
        &self,
        read: io::Result<Xattrs>,
        path: &Path,
        events: &mut dyn FnMut(Event<'_>),
    ) -> Xattrs {
        match read {
            Ok(list) => list
                .into_iter()
                .filter(|(name, _)| {
                    // A key with '=' cannot be told from its value in a pax record.
                    let ok = !name.contains(&b'=');
                    if !ok {
                        self.warn(
                            events,
                            path,
                            format_args!(
                                "extended attribute {} not archived: its name contains '='",
                                String::from_utf8_lossy(name)
                            ),
                        );
                    }
                    ok
                })
                .collect(),
            Err(e) => {
                self.warn(
                    events,
                    path,
                    format_args!("extended attributes not archived: {e}"),
                );
                Vec::new()
            }
        }
    }

    /// Writes a member's 'x' header (when needed) and ustar header; returns the offset of
    /// the first of them.
    fn header(&mut self, m: &Member<'_>) -> Result<u64, DumpError> {
        let fh = self.out.0.off;
        let hname = m.sparse.map_or(m.name, |s| s.0);
        let name_fits = split_name(hname).is_some();
        let mut recs = std::mem::take(&mut self.recs);
        pax_records(m, name_fits, &mut recs, &mut self.tmp);
        let meta = m.meta;
        if !recs.is_empty() {
            let mut buf = [0; header::NAME.1];
            let xname = short_name_in(b"./PaxHeaders/", base_name(m.name), &mut buf);
            let clamp_id = |v: u32| {
                if u64::from(v) > header::OCTAL_7_MAX {
                    0
                } else {
                    v
                }
            };
            let mut x = base_block(
                xname,
                b'x',
                0o644,
                clamp_id(meta.uid),
                clamp_id(meta.gid),
                meta.mtime.0.clamp(0, header::OCTAL_11_MAX as i64),
            );
            put_num(&mut x, header::SIZE, recs.len() as i64);
            header::seal(&mut x);
            self.out.put(&x)?;
            self.out.put(&recs)?;
            self.out.pad()?;
        }
        self.recs = recs;
        let mut b = base_block(
            hname,
            m.typeflag,
            meta.mode,
            meta.uid,
            meta.gid,
            meta.mtime.0,
        );
        put_num(&mut b, header::SIZE, m.size.min(i64::MAX as u64) as i64);
        put(&mut b, header::LINKNAME, m.link);
        if matches!(m.typeflag, b'3' | b'4') {
            put_num(&mut b, header::DEVMAJOR, i64::from(meta.rdev.0));
            put_num(&mut b, header::DEVMINOR, i64::from(meta.rdev.1));
        }
        header::seal(&mut b);
        self.out.put(&b)?;
        Ok(fh)
    }

    /// Refreshes the estimate from the share of the tree walked so far, as the walk's
    /// position says (each directory's entries taken as equal parts of it): no pass over
    /// the tree before the backup. Called at the walk's loop head, where the entries
    /// before `next` of the top directory are done and, below it, each directory's entry
    /// at `next - 1` is the one being walked.
    fn estimate(&mut self, stack: &[Frame], events: &mut dyn FnMut(Event<'_>)) {
        let (mut done, mut share) = (0f64, 1f64);
        for (i, f) in stack.iter().enumerate() {
            if f.names.is_empty() {
                break;
            }
            let n = f.names.len() as f64;
            let finished = if i + 1 == stack.len() {
                f.next
            } else {
                f.next.saturating_sub(1)
            };
            done += share * finished as f64 / n;
            share /= n;
        }
        if done <= 0.0 {
            return; // nothing finished yet: try again at the next entry
        }
        let ended = self.out.0.off + 2 * BLOCK as u64;
        let total = (self.out.0.off as f64 / done.min(1.0)) as u64;
        events(Event::Estimate(
            total.max(ended).next_multiple_of(self.record),
        ));
        self.est_next = self.members + ESTIMATE_EVERY;
    }

    fn report(&mut self, events: &mut dyn FnMut(Event<'_>), rel: &[u8], stat: &NodeStat, fh: u64) {
        self.members += 1;
        // one buffer for every member's history path
        let mut path = std::mem::take(&mut self.hist);
        path.clear();
        path.push(b'/');
        path.extend_from_slice(rel);
        events(Event::File {
            path: &path,
            stat,
            fh_info: fh,
        });
        self.hist = path;
    }

    fn dir(
        &mut self,
        path: &Path,
        rel: &[u8],
        md: &Metadata,
        events: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), DumpError> {
        let xattrs = self.xattrs(Source::Path(&cpath(path)), path, events);
        let meta = Meta::of(&Stat::from(md));
        let name = member_name(rel, true);
        let fh = self.header(&Member {
            name: &name,
            typeflag: b'5',
            meta: &meta,
            size: 0,
            link: b"",
            xattrs: &xattrs,
            sparse: None,
        })?;
        self.sum.dirs += 1;
        self.report(events, rel, &meta.stat(FileKind::Dir, 0), fh);
        Ok(())
    }

    /// A second or later name of an inode already in the archive: a hard-link member.
    /// Returns false when the inode is not in the archive yet.
    fn hard_link(
        &mut self,
        rel: &[u8],
        md: &Stat,
        events: &mut dyn FnMut(Event<'_>),
    ) -> Result<bool, DumpError> {
        if md.nlink < 2 {
            return Ok(false);
        }
        let Some((first, kind, size)) = self.links.get(&md.ino).cloned() else {
            return Ok(false);
        };
        let meta = Meta::of(md);
        let name = member_name(rel, false);
        let fh = self.header(&Member {
            name: &name,
            typeflag: b'1',
            meta: &meta,
            size: 0,
            link: &first,
            xattrs: &[],
            sparse: None,
        })?;
        self.report(events, rel, &meta.stat(kind, size), fh);
        Ok(true)
    }

    fn remember(&mut self, rel: &[u8], md: &Stat, kind: FileKind, size: u64) {
        if md.nlink > 1 {
            self.links
                .insert(md.ino, (member_name(rel, false), kind, size));
        }
    }

    /// Symlinks, FIFOs and devices.
    fn other(
        &mut self,
        path: &Path,
        rel: &[u8],
        md: &Metadata,
        kind: FileKind,
        events: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), DumpError> {
        let md = &Stat::from(md);
        if self.hard_link(rel, md, events)? {
            return Ok(());
        }
        let target = if kind == FileKind::Symlink {
            match std::fs::read_link(path) {
                Ok(t) if !t.as_os_str().is_empty() => t.into_os_string().into_vec(),
                Ok(_) => {
                    self.skip(events, path, "empty symlink");
                    return Ok(());
                }
                Err(e) => {
                    self.skip(events, path, e);
                    return Ok(());
                }
            }
        } else {
            Vec::new()
        };
        let typeflag = match kind {
            FileKind::Symlink => b'2',
            FileKind::CharDev => b'3',
            FileKind::BlockDev => b'4',
            _ => b'6',
        };
        let xattrs = self.xattrs(Source::Path(&cpath(path)), path, events);
        let meta = Meta::of(md);
        let name = member_name(rel, false);
        let fh = self.header(&Member {
            name: &name,
            typeflag,
            meta: &meta,
            size: 0,
            link: &target,
            xattrs: &xattrs,
            sparse: None,
        })?;
        self.sum.files += 1;
        let size = target.len() as u64;
        self.remember(rel, md, kind, size);
        self.report(events, rel, &meta.stat(kind, size), fh);
        Ok(())
    }

    fn file(
        &mut self,
        path: &Path,
        rel: &[u8],
        opened: io::Result<File>,
        events: &mut dyn FnMut(Event<'_>),
        abort: &AtomicBool,
    ) -> Result<(), DumpError> {
        let f = match opened {
            Ok(f) => f,
            Err(e) => {
                self.skip(events, path, e);
                return Ok(());
            }
        };
        let md = match f.metadata() {
            Ok(m) if m.is_file() && m.dev() != self.dev => {
                self.skip(events, path, "another file system");
                return Ok(());
            }
            Ok(m) if m.is_file() => Stat::from(&m),
            Ok(_) => {
                self.skip(events, path, "replaced during the backup");
                return Ok(());
            }
            Err(e) => {
                self.skip(events, path, e);
                return Ok(());
            }
        };
        if self.hard_link(rel, &md, events)? {
            return Ok(());
        }
        let size = md.size;
        let regions = if md.blocks * 512 < size {
            data_regions(&f, size).filter(|r| r.iter().map(|x| x.1).sum::<u64>() < size)
        } else {
            None
        };
        let xattrs = self.xattrs(Source::Fd(f.as_raw_fd()), path, events);
        let meta = Meta::of(&md);
        let name = member_name(rel, false);
        let fake;
        let (map, data_size, sparse) = match &regions {
            Some(regions) => {
                let map = sparse_map(regions, size);
                let data: u64 = regions.iter().map(|r| r.1).sum();
                fake = sparse_name(rel);
                (
                    map.clone(),
                    map.len() as u64 + data,
                    Some((&fake[..], size)),
                )
            }
            None => (Vec::new(), size, None),
        };
        let fh = self.header(&Member {
            name: &name,
            typeflag: b'0',
            meta: &meta,
            size: data_size,
            link: b"",
            xattrs: &xattrs,
            sparse,
        })?;
        let mut rd = Reading::default();
        match &regions {
            Some(regions) => {
                self.out.put(&map)?;
                for &(off, len) in regions {
                    self.copy(&f, off, len, &mut rd, abort)?;
                }
            }
            None => self.copy(&f, 0, size, &mut rd, abort)?,
        }
        self.out.pad()?;
        let grew = !rd.failed && !rd.short && f.metadata().is_ok_and(|m| m.size() > size);
        self.file_done(events, (path, rel), &md, &meta, fh, &rd, grew);
        Ok(())
    }

    /// A regular file the read-ahead thread read whole: the same member `file` writes.
    fn small_file(
        &mut self,
        path: &Path,
        rel: &[u8],
        r: ReadAhead,
        events: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), DumpError> {
        if self.hard_link(rel, &r.md, events)? {
            return Ok(());
        }
        let xattrs = self.xattrs_of(r.xattrs, path, events);
        let meta = Meta::of(&r.md);
        let name = member_name(rel, false);
        let fh = self.header(&Member {
            name: &name,
            typeflag: b'0',
            meta: &meta,
            size: r.md.size,
            link: b"",
            xattrs: &xattrs,
            sparse: None,
        })?;
        self.out.put(&r.data)?;
        self.out.pad()?;
        self.file_done(events, (path, rel), &r.md, &meta, fh, &r.rd, r.grew);
        // An empty file taken by name had no buffer: only real ones go back, one for each
        // the read-ahead took.
        if let (Some(a), true) = (&self.ahead, r.data.capacity() > 0) {
            let _ = a.spare.try_send(r.data);
        }
        Ok(())
    }

    /// After a regular file's data: what went wrong reading it, then its history.
    #[allow(clippy::too_many_arguments)]
    fn file_done(
        &mut self,
        events: &mut dyn FnMut(Event<'_>),
        (path, rel): (&Path, &[u8]),
        md: &Stat,
        meta: &Meta,
        fh: u64,
        rd: &Reading,
        grew: bool,
    ) {
        let size = md.size;
        if rd.failed {
            self.warn(
                events,
                path,
                "read error; the rest of the file is archived as zeros",
            );
        } else if rd.short {
            self.warn(
                events,
                path,
                format_args!(
                    "shrank during the backup; archived padded with zeros to its {size} bytes"
                ),
            );
        } else if grew {
            self.warn(
                events,
                path,
                format_args!("grew during the backup; only its first {size} bytes are archived"),
            );
        }
        self.sum.files += 1;
        self.remember(rel, md, FileKind::File, size);
        self.report(events, rel, &meta.stat(FileKind::File, size), fh);
    }

    /// Copies `len` bytes of `f` from `off` to the archive; bytes that cannot be read
    /// (the file shrank, or a read error) are written as zeros so the header stays true.
    fn copy(
        &mut self,
        f: &File,
        off: u64,
        len: u64,
        rd: &mut Reading,
        abort: &AtomicBool,
    ) -> Result<(), DumpError> {
        let mut done = 0u64;
        while done < len {
            if abort.load(Ordering::Relaxed) {
                return Err(DumpError::Aborted);
            }
            // Read straight into the output buffer: no copy between file and stream.
            let room = self.out.room()?;
            let n = (len - done).min(room.len() as u64) as usize;
            let room = &mut room[..n];
            let mut got = 0;
            while got < n && !rd.failed && !rd.short {
                match f.read_at(&mut room[got..], off + done + got as u64) {
                    Ok(0) => rd.short = true,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => rd.failed = true,
                }
            }
            room[got..].fill(0);
            self.out.0.advance(n);
            done += n as u64;
        }
        Ok(())
    }
}

/// Opens a member for reading, through its directory when that is open: no symlink
/// followed, O_NONBLOCK so that a FIFO that took a file's place cannot hang the open, and
/// O_NOATIME (which needs ownership or root) so the backup leaves atimes alone.
fn open_member(dir: Option<&DirFd>, name: &[u8], path: &Path) -> io::Result<File> {
    let open = |flags: i32| {
        let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | flags;
        match dir {
            Some(d) => d.open_file(name, flags),
            None => std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(path),
        }
    };
    open(libc::O_NOATIME).or_else(|_| open(0))
}

#[derive(Default)]
struct Reading {
    short: bool,
    failed: bool,
}

/// The data regions (offset, length) of a file per SEEK_DATA/SEEK_HOLE, up to `size`;
/// None when the file system cannot tell, or when there are more regions than a reader
/// accepts (the file is then archived whole).
fn data_regions(f: &File, size: u64) -> Option<Vec<(u64, u64)>> {
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        // SAFETY: lseek on a descriptor we own; the offset is below the file size.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole from here to the end
            }
            return None;
        }
        let data = data as u64;
        if data >= size {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
        if hole < 0 || (hole as u64) <= data {
            return None;
        }
        let hole = (hole as u64).min(size);
        out.push((data, hole - data));
        if out.len() >= MAX_SPARSE_ENTRIES {
            return None;
        }
        pos = hole;
    }
    Some(out)
}

/// The sparse 1.0 map that starts the data area: the number of entries, then each
/// offset and length, one decimal per line, padded with NULs to whole blocks. A file
/// ending in a hole gets a last empty region at its end, as GNU tar writes.
fn sparse_map(regions: &[(u64, u64)], size: u64) -> Vec<u8> {
    let end = regions.last().map_or(0, |r| r.0 + r.1);
    let mut entries: Vec<(u64, u64)> = regions.to_vec();
    if end < size || regions.is_empty() {
        entries.push((size, 0));
    }
    let mut map = format!("{}\n", entries.len()).into_bytes();
    for (off, len) in entries {
        map.extend_from_slice(format!("{off}\n{len}\n").as_bytes());
    }
    map.resize(map.len().next_multiple_of(BLOCK), 0);
    map
}

/// The name a sparse member has in its ustar header, for readers that do not know the
/// format: "<dir>/GNUSparseFile.0/<name>", shortened to fit the name field.
fn sparse_name(rel: &[u8]) -> Vec<u8> {
    let (dir, base) = match rel.iter().rposition(|&c| c == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&b""[..], rel),
    };
    let mut n = member_name(dir, true);
    n.extend_from_slice(b"GNUSparseFile.0/");
    n.extend_from_slice(base);
    if split_name(&n).is_some() {
        return n;
    }
    short_name(b"./GNUSparseFile.0/", base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split() {
        assert_eq!(split_name(b"./a"), Some((&b""[..], &b"./a"[..])));
        let long = [
            b"./".to_vec(),
            vec![b'd'; 120],
            b"/".to_vec(),
            vec![b'f'; 90],
        ]
        .concat();
        let (p, n) = split_name(&long).unwrap();
        assert_eq!((p.len(), n.len()), (122, 90));
        let dir = [b"./".to_vec(), vec![b'd'; 120], b"/".to_vec()].concat();
        assert_eq!(split_name(&dir), None);
        assert_eq!(split_name(&[b'x'; 101]), None);
        assert!(sparse_name(&[b'y'; 200]).len() <= 100);
        assert_eq!(sparse_name(b"sub/s"), b"./sub/GNUSparseFile.0/s");
    }

    /// The estimate comes from the walk, without a pass before it: on a tree of equal
    /// directories of equal files, the one refreshed after 4,096 members is within 5% of the
    /// archive's real size, and every estimate says at least what was already written.
    #[test]
    fn estimate_from_the_walk() {
        let tmp = tempfile::tempdir().unwrap();
        for d in 0..8 {
            let dir = tmp.path().join(format!("d{d}"));
            std::fs::create_dir(&dir).unwrap();
            for f in 0..600 {
                std::fs::write(dir.join(format!("f{f:03}")), [7u8; 1000]).unwrap();
            }
        }
        let mut estimates = Vec::new();
        let mut members = 0u64;
        let mut out = Vec::new();
        let sum = write_tar(
            tmp.path(),
            &TarOptions::default(),
            &mut out::Stream(&mut out),
            &mut |e| match e {
                Event::Estimate(n) => estimates.push((members, n)),
                Event::File { .. } => members += 1,
                Event::Warning(w) => panic!("{w}"),
            },
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(members, 1 + 8 + 8 * 600);
        assert_eq!(sum.bytes, out.len() as u64);
        assert_eq!(estimates.len(), 2, "{estimates:?}");
        assert_eq!(estimates[1].0, estimates[0].0 + ESTIMATE_EVERY);
        let last = estimates[1].1 as f64;
        let real = sum.bytes as f64;
        assert!((last / real - 1.0).abs() < 0.05, "{last} against {real}");
        // each estimate covers what was written before it (4 KiB members at most here)
        for &(m, n) in &estimates {
            assert!(n >= m * 1536, "{n} after {m} members");
        }
    }

    /// A small file read whole: exact at its size; longer than the size its header took is
    /// seen as grown and cut there (an empty one too); shorter, padded with zeros and seen as
    /// short.
    #[test]
    fn small_reads_see_growth_and_shrinking() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        let body: Vec<u8> = (1..=200u8).collect();
        std::fs::write(&p, &body).unwrap();
        let f = File::open(&p).unwrap();
        let mut data = vec![9; 7];
        let (rd, grew) = read_whole(&f, 200, &mut data);
        assert!(!grew && !rd.short && !rd.failed);
        assert_eq!(data, body);
        let (rd, grew) = read_whole(&f, 150, &mut data);
        assert!(grew && !rd.short && !rd.failed);
        assert_eq!(data, &body[..150]);
        let (rd, grew) = read_whole(&f, 300, &mut data);
        assert!(!grew && rd.short && !rd.failed);
        assert_eq!(&data[..200], &body[..]);
        assert!(data[200..].iter().all(|&c| c == 0) && data.len() == 300);
        let (rd, grew) = read_whole(&f, 0, &mut data);
        assert!(grew && !rd.short && data.is_empty());
        let empty = tmp.path().join("e");
        std::fs::write(&empty, b"").unwrap();
        let (rd, grew) = read_whole(&File::open(&empty).unwrap(), 0, &mut data);
        assert!(!grew && !rd.short && !rd.failed && data.is_empty());
    }

    /// After an empty file, the next is tried by name: an empty one without attributes is
    /// taken that way (on Linux 6.13 and later), one with an attribute or data is opened.
    /// Either way GNU tar extracts the same tree: data, modes, times, the attribute, and a
    /// hard link between two empty files.
    #[test]
    fn empty_files_by_name_extract_as_opened_ones() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        for n in ["a0", "a1", "a2", "a3", "a5", "a6"] {
            std::fs::write(src.join(n), if n == "a5" { &b"xyz"[..] } else { b"" }).unwrap();
        }
        std::fs::hard_link(src.join("a3"), src.join("a4")).unwrap();
        std::fs::set_permissions(src.join("a1"), std::fs::Permissions::from_mode(0o640)).unwrap();
        let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_600_000_000, 0);
        File::options()
            .write(true)
            .open(src.join("a1"))
            .unwrap()
            .set_modified(when)
            .unwrap();
        xattr::testing::set_user_note(&src.join("a2"));

        let dir = DirFd::open(&src).unwrap();
        let dev = std::fs::metadata(&src).unwrap().dev();
        match empty_by_name(&dir, b"a1", dev) {
            Some(r) => {
                assert_eq!(r.md.mode & 0o7777, 0o640);
                assert_eq!((r.md.size, r.md.mtime.0), (0, 1_600_000_000));
                assert!(r.data.is_empty() && r.xattrs.unwrap().is_empty());
            }
            None => assert!(!xattr::testing::list_at_expected()),
        }
        assert!(empty_by_name(&dir, b"a2", dev).is_none(), "an attribute");
        assert!(empty_by_name(&dir, b"a5", dev).is_none(), "data");
        assert!(empty_by_name(&dir, b"a3", dev).is_some_and(|r| r.md.nlink == 2));

        let mut out = Vec::new();
        let mut warnings = Vec::new();
        write_tar(
            &src,
            &TarOptions::default(),
            &mut out::Stream(&mut out),
            &mut |e| {
                if let Event::Warning(w) = e {
                    warnings.push(w)
                }
            },
            &AtomicBool::new(false),
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let to = tmp.path().join("to");
        std::fs::create_dir(&to).unwrap();
        std::fs::write(tmp.path().join("a.tar"), &out).unwrap();
        let o = std::process::Command::new("tar")
            .args(["--xattrs", "--xattrs-include=user.*", "-xpf"])
            .arg(tmp.path().join("a.tar"))
            .arg("-C")
            .arg(&to)
            .output()
            .expect("GNU tar");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for n in ["a0", "a1", "a2", "a3", "a4", "a5", "a6"] {
            let (a, b) = (src.join(n), to.join(n));
            assert_eq!(
                std::fs::read(&a).unwrap(),
                std::fs::read(&b).unwrap(),
                "{n}"
            );
            let (ma, mb) = (a.metadata().unwrap(), b.metadata().unwrap());
            assert_eq!((ma.mode(), ma.mtime()), (mb.mode(), mb.mtime()), "{n}");
        }
        let ino = |n: &str| to.join(n).metadata().unwrap().ino();
        assert_eq!(ino("a3"), ino("a4"), "a hard link");
        assert_ne!(ino("a3"), ino("a6"));
        let mut buf = [0u8; 8];
        let q = cpath(&to.join("a2"));
        // SAFETY: NUL-terminated path and name, a buffer of the length given.
        let n = unsafe {
            libc::lgetxattr(
                q.as_ptr(),
                c"user.note".as_ptr(),
                buf.as_mut_ptr().cast(),
                8,
            )
        };
        assert_eq!(&buf[..n.max(0) as usize], b"v");
    }

    #[test]
    fn map_text() {
        let m = sparse_map(&[(0, 10), (4096, 5)], 10000);
        assert_eq!(&m[..22], b"3\n0\n10\n4096\n5\n10000\n0\n");
        assert_eq!(m.len(), 512);
        assert!(sparse_map(&[], 77).starts_with(b"1\n77\n0\n"));
    }
}
