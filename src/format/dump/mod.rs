//! The BSD/Linux `dump` image format: a writer that turns one directory tree into the stream
//! stock `restore` reads, reporting file history, and (`reader`) the way back to files.

pub mod reader;
mod record;
pub(crate) mod tree;
mod types;
pub(crate) mod xattr;

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::format::out::{ImageOut, Out, Stream};
use record::{Dinode, Record, TP_BSIZE};
use tree::Stat;
pub use tree::IDENTITY_LIMIT;
pub use types::{DumpError, DumpOptions, Event, FileKind, HistEvent, NodeStat};

pub use crate::format::recover::Summary;

/// Writes a dump image of the tree at `root` to `out`, reporting history and warnings
/// through `events`, and stopping with `DumpError::Aborted` soon after `abort` is set.
///
/// A mapping pass walks the tree once and keeps only directory metadata; then the image is
/// written front to back without seeking: TS_TAPE, the two inode maps, every dumped
/// directory breadth-first (so each directory is named by its parent's history entries
/// before its own Node event; restore accepts any directory order), every other dumped
/// inode in ascending inode number (restore's selective extraction needs that order), and
/// TS_END up to a whole tape block. File data is streamed in chunks; holes found with
/// SEEK_DATA/SEEK_HOLE stay holes. Inode numbers are the real ones where they fit (rule on
/// `IDENTITY_LIMIT`), so successive levels agree and `restore -r` can apply them in turn.
pub fn write_dump(
    root: &Path,
    opts: &DumpOptions,
    out: &mut dyn Write,
    events: &mut dyn FnMut(Event<'_>),
    abort: &AtomicBool,
) -> Result<Summary, DumpError> {
    write_dump_to(root, opts, &mut Stream(out), events, abort)
}

/// [`write_dump`] into an image sink: file data is read straight into the buffers the sink
/// takes whole (the LOCAL connection's tape records), in the sink's chunk size.
pub fn write_dump_to(
    root: &Path,
    opts: &DumpOptions,
    out: &mut dyn ImageOut,
    events: &mut dyn FnMut(Event<'_>),
    abort: &AtomicBool,
) -> Result<Summary, DumpError> {
    let tree = tree::Tree::scan(root, opts, events, abort)?;
    events(Event::Estimate(tree.estimate));
    if tree.overflowed && opts.level > 0 {
        events(Event::Warning(format!(
            "{}: some inode numbers are 0-2 or above {IDENTITY_LIMIT}; their dump numbers may differ \
             from the base dump's, so an incremental restore can misplace them",
            root.display()
        )));
    }
    let mut w = Writer::new(out, opts);
    let mut sum = Summary {
        skipped: tree.skipped,
        ..Summary::default()
    };
    run(&tree, opts, &mut w, events, abort, &mut sum)?;
    sum.bytes = w.offset();
    Ok(sum)
}

fn run(
    tree: &tree::Tree,
    opts: &DumpOptions,
    w: &mut Writer<'_>,
    events: &mut dyn FnMut(Event<'_>),
    abort: &AtomicBool,
    sum: &mut Summary,
) -> Result<(), DumpError> {
    let vol = record::VolumeInfo {
        level: opts.level,
        label: opts.label.as_bytes(),
        filesys: opts.filesystem.as_bytes(),
        host: opts.host.as_bytes(),
        ntrec: opts.ntrec.max(1),
    };
    let mut tape = record::tape_header(w.date, w.ddate, &vol);
    w.header(&mut tape)?;

    // Both maps cover the same range: restore sizes its maps from TS_CLRI's count.
    let max_ino = tree.nodes.iter().map(|n| n.num).max().unwrap_or(2);
    let map_records = max_ino.div_ceil(record::INODES_PER_MAP_RECORD);
    let mut in_use: Vec<u32> = tree.nodes.iter().map(|n| n.num).collect();
    in_use.sort_unstable();
    w.map(record::TS_CLRI, map_records, &in_use)?;
    let mut order: Vec<u32> = (0..tree.nodes.len() as u32)
        .filter(|&i| tree.nodes[i as usize].dumped)
        .collect();
    order.sort_unstable_by_key(|&i| tree.nodes[i as usize].num);
    let dumped_nums: Vec<u32> = order.iter().map(|&i| tree.nodes[i as usize].num).collect();
    w.map(record::TS_BITS, map_records, &dumped_nums)?;
    drop(in_use);
    drop(dumped_nums);

    // Pass III: directories.
    for dir in &tree.dirs {
        if abort.load(Ordering::Relaxed) {
            return Err(DumpError::Aborted);
        }
        let node = &tree.nodes[dir.node as usize];
        if !node.dumped {
            continue;
        }
        let num = node.num;
        let parent = tree.nodes[dir.parent as usize].num;
        let mut packer = record::DirPacker::new();
        packer.push(num, 4, b".");
        packer.push(parent, 4, b"..");
        hist_dir(events, num, b".", num);
        hist_dir(events, num, b"..", parent);
        for (name, child) in &dir.entries {
            let c = &tree.nodes[*child as usize];
            packer.push(c.num, dtype(c.kind), name);
            hist_dir(events, num, name, c.num);
        }
        let data = packer.finish();
        let path = tree.path(dir.node);
        if data.len() as u64 >= record::MAX_DIR_SIZE {
            return Err(DumpError::DirectoryTooLarge(path));
        }
        let st = Stat::from(&dir.md);
        let mut d = dinode(&st, dir.md.nlink() as u32);
        d.size = data.len() as u64;
        let fh = w.offset();
        w.mem_inode(num, &d, &data)?;
        let cpath = cpath(&path);
        w.xattrs(num, &d, xattr::Source::Path(&cpath), &path, events)?;
        sum.dirs += 1;
        let stat = node_stat(&st, dir.md.nlink() as u32);
        events(Event::History(HistEvent::Node {
            inode: u64::from(num),
            stat: &stat,
            fh_info: fh,
        }));
    }

    // Pass IV: everything else, ascending inode number. Read-ahead threads open, stat and
    // read small files ahead, batch by batch in turn, while this one writes them in order.
    std::thread::scope(|s| {
        let order = &order;
        let mut rxs = Vec::with_capacity(AHEAD_THREADS);
        // data buffers the writer is done with, back to the read-ahead for the next files:
        // no more than the files in flight can use, whatever is sent back
        let (spare_tx, spare_rx) = crossbeam_channel::bounded::<Vec<u8>>(AHEAD_FILES);
        for k in 0..AHEAD_THREADS {
            let (tx, rx) =
                std::sync::mpsc::sync_channel(AHEAD_FILES / AHEAD_BATCH / AHEAD_THREADS - 1);
            rxs.push(rx);
            let spare = spare_rx.clone();
            std::thread::Builder::new()
                .name("backup-ahead".into())
                .spawn_scoped(s, move || read_ahead(tree, order, k, &tx, &spare, abort))
                .map_err(DumpError::Output)?;
        }
        let ahead = Ahead {
            rxs: &rxs,
            spare: &spare_tx,
        };
        pass_iv(tree, order, &ahead, w, events, abort, sum)
        // rxs go here: a read-ahead still running sees the writer gone and stops
    })?;

    // TS_END, repeated to fill the last tape block.
    let ntrec = u64::from(opts.ntrec.max(1));
    loop {
        let mut end = record::base_header(
            record::TS_END,
            w.date,
            w.ddate,
            map_records * record::INODES_PER_MAP_RECORD,
        );
        w.header(&mut end)?;
        if w.rec().is_multiple_of(ntrec) {
            break;
        }
    }
    w.out.finish().map_err(DumpError::Output)
}

/// Files read ahead of the writer at most; with `AHEAD_SIZE` this bounds the read-ahead's
/// memory to 16 MiB.
const AHEAD_FILES: usize = 256;
/// Files the read-ahead hands over in one message: a channel send, and a wake-up of a
/// writer waiting for it, per file were 8% of a backup of 200,000 small files.
const AHEAD_BATCH: usize = 32;
/// Read-ahead threads: batch n of the regular files is read by thread n % AHEAD_THREADS.
/// One thread opening, stat'ing and reading 200,000 small files set the pace of the whole
/// backup (60% of the server's samples); two keep both cores and more reads in flight.
const AHEAD_THREADS: usize = 2;
/// Files up to this size (and without holes) are read whole by the read-ahead thread;
/// larger ones are streamed by the writer.
const AHEAD_SIZE: u64 = 64 * 1024;

/// The writer's ends of the read-ahead: the threads' batches, and where buffers go back.
struct Ahead<'a> {
    rxs: &'a [std::sync::mpsc::Receiver<Vec<AheadFile>>],
    spare: &'a crossbeam_channel::Sender<Vec<u8>>,
}

/// A regular file as the read-ahead thread left it for the writer.
struct AheadFile {
    /// Its node and path.
    node: u32,
    path: std::path::PathBuf,
    /// Read whole, or None: the writer opens and reads it itself (large, with holes, or
    /// anything went wrong, which the writer then meets again and reports).
    read: Option<ReadAhead>,
}

/// A small file read whole: its fstat, its data padded with zeros to whole 1 KiB blocks
/// (as `FileReader` gives it), whether a read failed, and its attributes.
struct ReadAhead {
    md: Stat,
    data: Vec<u8>,
    failed: bool,
    xattrs: io::Result<xattr::Attrs>,
}

/// Read-ahead thread `k`: its batches of the regular files of `order` (every
/// `AHEAD_THREADS`th batch of `AHEAD_BATCH` files), in that order, down `tx`.
fn read_ahead(
    tree: &tree::Tree,
    order: &[u32],
    k: usize,
    tx: &std::sync::mpsc::SyncSender<Vec<AheadFile>>,
    spare: &crossbeam_channel::Receiver<Vec<u8>>,
    abort: &AtomicBool,
) {
    let mut dirs = DirCache::default();
    let mut batch = Vec::with_capacity(AHEAD_BATCH);
    let mut nth = 0usize;
    for &i in order {
        if abort.load(Ordering::Relaxed) {
            return;
        }
        let node = &tree.nodes[i as usize];
        if node.kind != FileKind::File {
            continue;
        }
        let mine = (nth / AHEAD_BATCH) % AHEAD_THREADS == k;
        nth += 1;
        if !mine {
            continue;
        }
        let path = tree.path(i);
        let by_name = if node.empty {
            read_empty(&mut dirs, tree, i)
        } else {
            None
        };
        let read = by_name.or_else(|| {
            dirs.open(tree, i, &path)
                .ok()
                .and_then(|f| read_small(&f, node, tree.dev, spare))
        });
        batch.push(AheadFile {
            node: i,
            path,
            read,
        });
        if batch.len() == AHEAD_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(AHEAD_BATCH));
            if tx.send(full).is_err() {
                return; // the writer stopped
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
}

/// A file the scan found empty, taken by name in its directory (`Stat::empty_at`) when it
/// still is that inode, empty and without attributes. None otherwise, or when the kernel
/// cannot be asked by name: the caller then opens it, and the descriptor settles everything.
/// (A name replaced between the stat and the list could lend this file another's empty list;
/// a backup of a tree that changes under it keeps each file's own stat, not a point in time.)
fn read_empty(dirs: &mut DirCache, tree: &tree::Tree, i: u32) -> Option<ReadAhead> {
    let (dir, name) = dirs.dir(tree, i)?;
    let md =
        Stat::empty_at(dir, name, tree.dev).filter(|md| md.ino == tree.nodes[i as usize].ino)?;
    Some(ReadAhead {
        md,
        data: Vec::new(),
        failed: false,
        xattrs: Ok(Vec::new()),
    })
}

/// Reads a small file without holes whole, into a buffer the writer gave back when there is
/// one; None when it is not one, or is no longer the object the maps were built from.
fn read_small(
    f: &File,
    node: &tree::Node,
    dev: u64,
    spare: &crossbeam_channel::Receiver<Vec<u8>>,
) -> Option<ReadAhead> {
    let md = Stat::from(&f.metadata().ok()?);
    let size = md.size;
    if !(md.dev == dev && md.ino == node.ino && md.is_file())
        || size > AHEAD_SIZE
        || md.blocks * 512 < size
    {
        return None;
    }
    let want = (size.div_ceil(TP_BSIZE as u64) as usize) * TP_BSIZE;
    // a reused buffer is not cleared: `FileReader::read` writes each of its bytes, the
    // file's or zeros (zeroing a fresh one per file was 2% of a small-file backup's samples)
    let mut data = spare.try_recv().unwrap_or_default();
    if data.len() < want {
        data.resize(want, 0);
    } else {
        data.truncate(want);
    }
    let mut reader = FileReader {
        f,
        size,
        failed: false,
    };
    reader.read(0, &mut data);
    let failed = reader.failed;
    Some(ReadAhead {
        md,
        data,
        failed,
        xattrs: xattr::read_all(xattr::Source::Fd(f.as_raw_fd())),
    })
}

/// Pass IV's writing side: every dumped non-directory of `order`, regular files taken
/// from the read-ahead thread's `rx`.
fn pass_iv(
    tree: &tree::Tree,
    order: &[u32],
    ahead: &Ahead<'_>,
    w: &mut Writer<'_>,
    events: &mut dyn FnMut(Event<'_>),
    abort: &AtomicBool,
    sum: &mut Summary,
) -> Result<(), DumpError> {
    let mut dirs = DirCache::default();
    let mut batch = Vec::new().into_iter();
    let mut batches = 0usize;
    for &i in order {
        if abort.load(Ordering::Relaxed) {
            return Err(DumpError::Aborted);
        }
        let node = &tree.nodes[i as usize];
        let written = match node.kind {
            FileKind::Dir => continue,
            FileKind::File => {
                // The read-ahead stops early only on an abort.
                let a = match batch.next() {
                    Some(a) => a,
                    None => {
                        let rx = &ahead.rxs[batches % ahead.rxs.len()];
                        batches += 1;
                        batch = rx.recv().map_err(|_| DumpError::Aborted)?.into_iter();
                        batch.next().ok_or(DumpError::Aborted)?
                    }
                };
                debug_assert_eq!(a.node, i);
                match a.read {
                    Some(mut r) => {
                        let data = std::mem::take(&mut r.data);
                        let written = w.small_file(node, &a.path, r, &data, events);
                        // kept when there is room and it holds memory (an empty file's has
                        // none); otherwise, or with the read-ahead done, it is freed here
                        if data.capacity() > 0 {
                            let _ = ahead.spare.try_send(data);
                        }
                        written?
                    }
                    None => {
                        let f = dirs.open(tree, i, &a.path);
                        w.file(node, tree.dev, &a.path, f, events, abort)?
                    }
                }
            }
            _ => w.other(node, tree.dev, &tree.path(i), events)?,
        };
        match written {
            Some((fh, md)) => {
                sum.files += 1;
                let stat = node_stat(&md, node.names);
                events(Event::History(HistEvent::Node {
                    inode: u64::from(node.num),
                    stat: &stat,
                    fh_info: fh,
                }));
            }
            None => sum.skipped += 1,
        }
    }
    Ok(())
}

/// The directory of the last file opened in pass IV, kept open: inode order mostly follows
/// creation order, so runs of files share a directory and each open looks up one name.
#[derive(Default)]
struct DirCache {
    dir: Option<(u32, Option<tree::DirFd>)>,
}

impl DirCache {
    /// The open directory of node `i` and its name there; None when the directory cannot
    /// be opened.
    fn dir<'t>(
        &mut self,
        tree: &'t tree::Tree,
        i: u32,
    ) -> Option<(std::os::fd::BorrowedFd<'_>, &'t [u8])> {
        use std::os::fd::AsFd;
        let (d, e) = tree.nodes[i as usize].loc;
        self.enter(tree, d);
        let fd = self.dir.as_ref()?.1.as_ref()?.as_fd();
        Some((fd, &tree.dirs[d as usize].entries[e as usize].0))
    }

    /// Keeps directory `d` open (or the failure to open it) unless it is already.
    fn enter(&mut self, tree: &tree::Tree, d: u32) {
        if self.dir.as_ref().is_none_or(|c| c.0 != d) {
            let fd = tree::DirFd::open(&tree.path(tree.dirs[d as usize].node)).ok();
            self.dir = Some((d, fd));
        }
    }

    /// Opens node `i` (at `path`) for reading without following a symlink, without
    /// touching its atime where the kernel allows that.
    fn open(&mut self, tree: &tree::Tree, i: u32, path: &Path) -> io::Result<File> {
        let (d, e) = tree.nodes[i as usize].loc;
        self.enter(tree, d);
        let name = &tree.dirs[d as usize].entries[e as usize].0;
        let open = |flags: i32| match self.dir.as_ref().and_then(|c| c.1.as_ref()) {
            Some(fd) => fd.open_file(name, libc::O_NOFOLLOW | flags),
            None => std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | flags)
                .open(path),
        };
        // O_NOATIME keeps the backup from touching atimes; it needs ownership (or root).
        open(libc::O_NOATIME).or_else(|_| open(0))
    }
}

fn hist_dir(events: &mut dyn FnMut(Event<'_>), dir: u32, name: &[u8], inode: u32) {
    events(Event::History(HistEvent::Dir {
        dir_inode: u64::from(dir),
        name,
        inode: u64::from(inode),
    }));
}

/// Directory-entry type of a kind (the st_mode type nibble, doc §5.1).
fn dtype(kind: FileKind) -> u8 {
    let ifmt = match kind {
        FileKind::Dir => libc::S_IFDIR,
        FileKind::File => libc::S_IFREG,
        FileKind::Symlink => libc::S_IFLNK,
        FileKind::Fifo => libc::S_IFIFO,
        FileKind::Socket => libc::S_IFSOCK,
        FileKind::CharDev => libc::S_IFCHR,
        FileKind::BlockDev => libc::S_IFBLK,
    };
    record::dtype_of(ifmt)
}

fn cpath(p: &Path) -> CString {
    // Paths from read_dir never contain NUL; an empty CString only makes the calls fail.
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

fn dinode(md: &Stat, nlink: u32) -> Dinode {
    let rdev = match md.mode & libc::S_IFMT {
        libc::S_IFCHR | libc::S_IFBLK => {
            record::encode_rdev(libc::major(md.rdev), libc::minor(md.rdev))
        }
        _ => 0,
    };
    Dinode {
        mode: md.mode,
        nlink,
        uid: md.uid,
        gid: md.gid,
        size: md.size,
        atime: record::time32(md.atime.0, md.atime.1),
        mtime: record::time32(md.mtime.0, md.mtime.1),
        ctime: record::time32(md.ctime.0, md.ctime.1),
        rdev,
    }
}

fn node_stat(md: &Stat, nlink: u32) -> NodeStat {
    NodeStat {
        kind: FileKind::of_mode(md.mode).unwrap_or(FileKind::File),
        mode: md.mode & 0o7777,
        uid: md.uid,
        gid: md.gid,
        size: md.size,
        atime: md.atime.0,
        mtime: md.mtime.0,
        ctime: md.ctime.0,
        nlink,
    }
}

/// File data is read in runs of at most this many bytes between two looks at the abort flag.
const CHUNK: usize = 256 * 1024;

/// The output side: records are counted by the output's offset (for c_tapea and fh_info);
/// file data is read straight into the output buffer.
struct Writer<'o> {
    out: Out<'o>,
    date: u32,
    ddate: u32,
}

impl<'o> Writer<'o> {
    fn new(out: &'o mut dyn ImageOut, opts: &DumpOptions) -> Self {
        Writer {
            out: Out::new(out),
            date: record::date32(opts.dump_date),
            ddate: if opts.level == 0 {
                0
            } else {
                record::date32(opts.base_date)
            },
        }
    }

    fn offset(&self) -> u64 {
        self.out.off
    }

    /// Records written so far: every write is whole 1 KiB records.
    fn rec(&self) -> u64 {
        self.out.off / TP_BSIZE as u64
    }

    fn header(&mut self, r: &mut Record) -> Result<(), DumpError> {
        record::seal(r, self.rec());
        self.out.put(r).map_err(DumpError::Output)
    }

    /// Writes whole records; `data.len()` must be a multiple of 1 KiB.
    fn data(&mut self, data: &[u8]) -> Result<(), DumpError> {
        debug_assert_eq!(data.len() % TP_BSIZE, 0);
        self.out.put(data).map_err(DumpError::Output)
    }

    /// TS_CLRI or TS_BITS and its bitmap records; `nums` ascending.
    fn map(&mut self, c_type: u32, records: u32, nums: &[u32]) -> Result<(), DumpError> {
        let mut h = record::base_header(
            c_type,
            self.date,
            self.ddate,
            records * record::INODES_PER_MAP_RECORD,
        );
        record::put_u32(&mut h, record::OFF_COUNT, records);
        self.header(&mut h)?;
        let mut it = nums.iter().peekable();
        for r in 0..records {
            let mut block = [0u8; TP_BSIZE];
            let first = r * record::INODES_PER_MAP_RECORD + 1;
            while let Some(&&n) = it.peek() {
                if n >= first + record::INODES_PER_MAP_RECORD {
                    break;
                }
                let bit = (n - first) as usize;
                block[bit / 8] |= 1 << (bit % 8);
                it.next();
            }
            self.data(&block)?;
        }
        Ok(())
    }

    /// An inode header template: TS_INODE with the dinode filled in.
    fn template(&self, num: u32, d: &Dinode) -> Record {
        let mut h = record::base_header(record::TS_INODE, self.date, self.ddate, num);
        record::set_dinode(&mut h, d);
        h
    }

    /// Writes the header(s) for `n` blocks starting at block `first` with the given map;
    /// the first header of an inode is TS_INODE, continuations TS_ADDR.
    fn block_header(&mut self, tmpl: &Record, first: u64, map: &[bool]) -> Result<(), DumpError> {
        let mut h = *tmpl;
        if first > 0 {
            record::put_u32(&mut h, record::OFF_TYPE, record::TS_ADDR);
        }
        record::put_u32(&mut h, record::OFF_COUNT, map.len() as u32);
        for (i, &on) in map.iter().enumerate() {
            h[record::OFF_ADDR + i] = u8::from(on);
        }
        self.header(&mut h)
    }

    /// An inode whose contents are in memory and have no holes (directory, symlink,
    /// attribute blob).
    fn mem_inode_tmpl(&mut self, tmpl: &Record, data: &[u8]) -> Result<(), DumpError> {
        let blocks = data.len().div_ceil(TP_BSIZE);
        if blocks == 0 {
            return self.block_header(tmpl, 0, &[]);
        }
        let all = [true; record::MAX_ADDR];
        let mut b = 0;
        while b < blocks {
            let n = (blocks - b).min(record::MAX_ADDR);
            self.block_header(tmpl, b as u64, &all[..n])?;
            let start = b * TP_BSIZE;
            let end = ((b + n) * TP_BSIZE).min(data.len());
            self.out.put(&data[start..end]).map_err(DumpError::Output)?;
            let pad = (b + n) * TP_BSIZE - end;
            self.out
                .put(&[0u8; TP_BSIZE][..pad])
                .map_err(DumpError::Output)?;
            b += n;
        }
        Ok(())
    }

    fn mem_inode(&mut self, num: u32, d: &Dinode, data: &[u8]) -> Result<(), DumpError> {
        let tmpl = self.template(num, d);
        self.mem_inode_tmpl(&tmpl, data)
    }

    /// Writes the attribute record of an inode if it has attributes the format can carry.
    fn xattrs(
        &mut self,
        num: u32,
        d: &Dinode,
        src: xattr::Source<'_>,
        path: &Path,
        events: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), DumpError> {
        self.xattrs_of(num, d, xattr::read_all(src), path, events)
    }

    /// Writes the attribute record of an inode from attributes already read.
    fn xattrs_of(
        &mut self,
        num: u32,
        d: &Dinode,
        read: io::Result<xattr::Attrs>,
        path: &Path,
        events: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), DumpError> {
        let attrs = match read {
            Ok(a) => a,
            Err(e) => {
                events(Event::Warning(format!(
                    "{}: extended attributes not dumped: {e}",
                    path.display()
                )));
                return Ok(());
            }
        };
        if attrs.is_empty() {
            return Ok(());
        }
        let enc = xattr::encode(&attrs);
        for (name, why) in &enc.dropped {
            events(Event::Warning(format!(
                "{}: extended attribute {} not dumped: {why}",
                path.display(),
                String::from_utf8_lossy(name)
            )));
        }
        if enc.blob.is_empty() {
            return Ok(());
        }
        let mut tmpl = self.template(num, d);
        record::set_xattr_flags(&mut tmpl);
        record::set_size(&mut tmpl, enc.blob.len() as u64);
        self.mem_inode_tmpl(&tmpl, &enc.blob)
    }

    /// A regular file. Returns its TS_INODE offset and the metadata written, or None when
    /// it vanished or is no longer the object the maps were built from.
    fn file(
        &mut self,
        node: &tree::Node,
        dev: u64,
        path: &Path,
        opened: io::Result<File>,
        events: &mut dyn FnMut(Event<'_>),
        abort: &AtomicBool,
    ) -> Result<Option<(u64, Stat)>, DumpError> {
        let f = match opened {
            Ok(f) => f,
            Err(e) => {
                not_dumped(events, path, e);
                return Ok(None);
            }
        };
        let md = match f.metadata() {
            Ok(m) if m.dev() == dev && m.ino() == node.ino && m.is_file() => Stat::from(&m),
            Ok(_) => {
                not_dumped(events, path, "replaced during the dump");
                return Ok(None);
            }
            Err(e) => {
                not_dumped(events, path, e);
                return Ok(None);
            }
        };
        let d = dinode(&md, node.names);
        let tmpl = self.template(node.num, &d);
        let fh = self.offset();
        let size = md.size;
        let blocks = size.div_ceil(TP_BSIZE as u64);
        if blocks == 0 {
            self.block_header(&tmpl, 0, &[])?;
        }
        let dense = md.blocks * 512 >= size;
        let mut reader = FileReader {
            f: &f,
            size,
            failed: false,
        };
        let mut b = 0u64;
        while b < blocks {
            if abort.load(Ordering::Relaxed) {
                return Err(DumpError::Aborted);
            }
            let n = (blocks - b).min(record::MAX_ADDR as u64) as usize;
            // Blocks for every byte: no holes to look for (the tar writer's rule too).
            let map = if dense {
                vec![true; n]
            } else {
                data_map(&f, b, n, size)
            };
            self.block_header(&tmpl, b, &map)?;
            // Stream each run of data blocks in chunks.
            let mut i = 0;
            while i < n {
                if !map[i] {
                    i += 1;
                    continue;
                }
                let mut j = i;
                while j < n && map[j] && (j - i) < CHUNK / TP_BSIZE {
                    j += 1;
                }
                let len = (j - i) * TP_BSIZE;
                let off = (b + i as u64) * TP_BSIZE as u64;
                // read straight into the output buffer: no copy between file and stream
                let mut done = 0;
                while done < len {
                    let room = self.out.room().map_err(DumpError::Output)?;
                    let n = room.len().min(len - done);
                    reader.read(off + done as u64, &mut room[..n]);
                    self.out.advance(n);
                    done += n;
                }
                i = j;
            }
            b += n as u64;
        }
        if reader.failed {
            events(Event::Warning(format!(
                "{}: read error; the rest of the file is dumped as zeros",
                path.display()
            )));
        }
        self.xattrs(node.num, &d, xattr::Source::Fd(f.as_raw_fd()), path, events)?;
        Ok(Some((fh, md)))
    }

    /// A regular file the read-ahead thread read whole: the same records `file` writes.
    fn small_file(
        &mut self,
        node: &tree::Node,
        path: &Path,
        r: ReadAhead,
        data: &[u8],
        events: &mut dyn FnMut(Event<'_>),
    ) -> Result<Option<(u64, Stat)>, DumpError> {
        let d = dinode(&r.md, node.names);
        let tmpl = self.template(node.num, &d);
        let fh = self.offset();
        let blocks = data.len() / TP_BSIZE;
        let all = [true; record::MAX_ADDR];
        if blocks == 0 {
            self.block_header(&tmpl, 0, &[])?;
        }
        let mut b = 0;
        while b < blocks {
            let n = (blocks - b).min(record::MAX_ADDR);
            self.block_header(&tmpl, b as u64, &all[..n])?;
            self.data(&data[b * TP_BSIZE..(b + n) * TP_BSIZE])?;
            b += n;
        }
        if r.failed {
            events(Event::Warning(format!(
                "{}: read error; the rest of the file is dumped as zeros",
                path.display()
            )));
        }
        self.xattrs_of(node.num, &d, r.xattrs, path, events)?;
        Ok(Some((fh, r.md)))
    }

    /// Symlinks, FIFOs, sockets and devices.
    fn other(
        &mut self,
        node: &tree::Node,
        dev: u64,
        path: &Path,
        events: &mut dyn FnMut(Event<'_>),
    ) -> Result<Option<(u64, Stat)>, DumpError> {
        let md = match std::fs::symlink_metadata(path) {
            Ok(m) if m.dev() == dev && m.ino() == node.ino && tree::kind_of(&m) == node.kind => {
                Stat::from(&m)
            }
            Ok(_) => {
                not_dumped(events, path, "replaced during the dump");
                return Ok(None);
            }
            Err(e) => {
                not_dumped(events, path, e);
                return Ok(None);
            }
        };
        let mut d = dinode(&md, node.names);
        let fh = self.offset();
        if node.kind == FileKind::Symlink {
            let target = match std::fs::read_link(path) {
                Ok(t) if !t.as_os_str().is_empty() => t,
                Ok(_) => {
                    events(Event::Warning(format!(
                        "{}: empty symlink; not dumped",
                        path.display()
                    )));
                    return Ok(None);
                }
                Err(e) => {
                    not_dumped(events, path, e);
                    return Ok(None);
                }
            };
            let bytes = target.as_os_str().as_bytes();
            d.size = bytes.len() as u64;
            self.mem_inode(node.num, &d, bytes)?;
        } else {
            d.size = 0;
            self.mem_inode(node.num, &d, &[])?;
        }
        let cp = cpath(path);
        self.xattrs(node.num, &d, xattr::Source::Path(&cp), path, events)?;
        Ok(Some((fh, md)))
    }
}

/// Reads file data at fixed offsets, turning a short file or a read error into zeros so
/// the image keeps the size announced in the header.
struct FileReader<'f> {
    f: &'f File,
    size: u64,
    failed: bool,
}

impl FileReader<'_> {
    fn read(&mut self, off: u64, buf: &mut [u8]) {
        let mut done = 0;
        while done < buf.len() && !self.failed {
            let at = off + done as u64;
            if at >= self.size {
                break;
            }
            // Never read past the recorded size: a file that grew is cut there.
            let want = ((self.size - at) as usize).min(buf.len() - done);
            match self.f.read_at(&mut buf[done..done + want], at) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.failed = true,
            }
        }
        buf[done..].fill(0);
    }
}

/// Which of `n` 1 KiB blocks starting at block `first` hold data, per SEEK_DATA/SEEK_HOLE.
/// A block is data if any byte of it is; when the file system cannot tell, all are data.
fn data_map(f: &File, first: u64, n: usize, size: u64) -> Vec<bool> {
    let bs = TP_BSIZE as u64;
    let start = first * bs;
    let end = ((first + n as u64) * bs).min(size);
    let mut map = vec![false; n];
    let fd = f.as_raw_fd();
    let mut pos = start;
    while pos < end {
        // SAFETY: lseek on a descriptor we own; offsets are within i64 for real files.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole from here to the end of the file
            }
            map.fill(true);
            return map;
        }
        let data = data as u64;
        if data >= end {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
        let hole = if hole < 0 {
            end
        } else {
            (hole as u64).clamp(data, end)
        };
        let from = ((data - start) / bs) as usize;
        let to = ((hole - start).div_ceil(bs) as usize).min(n);
        map[from..to].fill(true);
        if hole <= data {
            break;
        }
        pos = hole;
    }
    map
}

/// A file that changed or vanished since the scan is left out, with a warning saying why.
fn not_dumped(events: &mut dyn FnMut(Event<'_>), path: &Path, why: impl std::fmt::Display) {
    events(Event::Warning(format!(
        "{}: {why}; not dumped",
        path.display()
    )));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The read-ahead reuses the writer's old buffers: none of their bytes may reach the
    /// image, neither in a file's data nor in the padding of its last block.
    #[test]
    fn a_reused_buffer_brings_none_of_its_old_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        let f = File::open(&p).unwrap();
        let md = f.metadata().unwrap();
        let node = tree::Node {
            kind: FileKind::File,
            ino: md.ino(),
            loc: (0, 0),
            names: 1,
            num: 2,
            dumped: true,
            empty: false,
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        for old in [
            vec![0xAA; 3 * TP_BSIZE],
            vec![0xAA; 10],
            vec![0xAA; TP_BSIZE],
        ] {
            tx.send(old).unwrap();
            let r = read_small(&f, &node, md.dev(), &rx).unwrap();
            assert!(rx.is_empty(), "the spare buffer is taken");
            assert_eq!(r.data.len(), TP_BSIZE);
            assert_eq!(&r.data[..5], b"hello");
            assert!(r.data[5..].iter().all(|&b| b == 0), "padding is zeros");
        }
        // a file that shrank after its stat: what is gone reads as zeros
        let mut buf = vec![0xAA; 3 * TP_BSIZE];
        let mut reader = FileReader {
            f: &f,
            size: 3000,
            failed: false,
        };
        reader.read(0, &mut buf);
        assert_eq!(&buf[..5], b"hello");
        assert!(buf[5..].iter().all(|&b| b == 0));
    }

    /// An empty file without attributes is stat'ed by name and not opened; one with an
    /// attribute, one with data, and one that grew after the scan go the open way.
    #[test]
    fn an_empty_file_is_taken_by_name_unless_it_has_attributes_or_grew() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for n in ["empty", "attr", "data", "grows"] {
            std::fs::write(root.join(n), if n == "data" { &b"x"[..] } else { b"" }).unwrap();
        }
        xattr::testing::set_user_note(&root.join("attr"));
        let tree = tree::Tree::scan(
            root,
            &DumpOptions::default(),
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
        let node = |name: &[u8]| {
            tree.dirs[0]
                .entries
                .iter()
                .find(|e| &*e.0 == name)
                .map(|e| e.1)
                .unwrap()
        };
        std::fs::write(root.join("grows"), b"more").unwrap();
        let mut dirs = DirCache::default();
        let i = node(b"empty");
        assert!(tree.nodes[i as usize].empty);
        match read_empty(&mut dirs, &tree, i) {
            Some(r) => {
                assert_eq!((r.md.size, r.md.ino), (0, tree.nodes[i as usize].ino));
                assert!(r.md.is_file() && r.data.is_empty());
                assert!(r.xattrs.unwrap().is_empty());
            }
            None => assert!(!xattr::testing::list_at_expected()),
        }
        assert!(tree.nodes[node(b"attr") as usize].empty);
        assert!(read_empty(&mut dirs, &tree, node(b"attr")).is_none());
        assert!(!tree.nodes[node(b"data") as usize].empty);
        assert!(tree.nodes[node(b"grows") as usize].empty);
        assert!(read_empty(&mut dirs, &tree, node(b"grows")).is_none());
    }
}
