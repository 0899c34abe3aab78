//! Writes out a restore's small regular files on worker threads while the reader goes on
//! parsing the image: creating, filling, attributes and naming are the kernel's work.
//!
//! A restore of many small files is bound by one thread's system calls (an unnamed inode,
//! a write, chmod, times, a link and a close per file, most of it in the file system),
//! while the reader itself needs little CPU. Files whose whole data the reader holds go to
//! a few threads that each do all of one file's calls, so the second core works too. What
//! stays on the reader's thread: directories (made before their files are handed over),
//! hard links (their first name must exist before the others), large files (written as
//! their data streams in) and the final directory attributes (applied after `drain`).
//! Each file keeps the crash safety of `fsops::Staging`: it has no name until complete.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::fsops::{self, Attrs, Obj, ParentDir, Staging, XattrList};

/// Files at most this long are written by the workers (whole, from the reader's copy).
pub const SMALL_FILE: u64 = 64 * 1024;

/// Files handed over together: one wake-up of a worker per batch, not per file (a wake-up
/// per file cost a fifth of the workers' time).
const BATCH: usize = 32;

/// Batches queued for the workers, at most: with one batch per worker in hand, this bounds
/// the memory held to (4 + workers) × 32 files of 64 KiB.
const QUEUE: usize = 4;

/// One small regular file to write out, all of its data and attributes known.
pub struct SmallFile {
    /// Its parent directory (already made by the reader).
    pub dir: Arc<ParentDir>,
    /// Its name in `dir`.
    pub name: Vec<u8>,
    /// The name to report it under.
    pub path: Vec<u8>,
    /// The whole content (no holes).
    pub data: Vec<u8>,
    /// Mode, owner and times.
    pub attrs: Attrs,
    /// Extended attributes, ready for setxattr.
    pub xattrs: XattrList,
    /// Whether to give it its owner (the restore runs as root and owners are restored).
    pub owner: bool,
    /// Leave an existing non-directory at its name alone (`RecoverOptions::keep_existing`).
    pub keep: bool,
    /// The reader's own note, handed back in `Done` (tar: the archive path and destination
    /// that later hard links to this file need).
    pub tag: Option<(Vec<u8>, Vec<u8>)>,
}

/// What became of a `SmallFile`.
pub struct Done {
    /// The name it is reported under.
    pub path: Vec<u8>,
    /// Restored, or why not.
    pub res: Result<(), String>,
    /// Attributes that could not be set (the file is restored without them).
    pub warnings: Vec<String>,
    /// `SmallFile::tag`.
    pub tag: Option<(Vec<u8>, Vec<u8>)>,
    /// The data buffer, going back to the finisher for the next file.
    spare: Vec<u8>,
}

/// The worker threads, started on the first file handed over.
pub struct Finisher {
    workers: usize,
    jobs: Option<Sender<Vec<SmallFile>>>,
    done: Option<Receiver<Vec<Done>>>,
    /// Files gathered for the next batch.
    batch: Vec<SmallFile>,
    /// Files finished on this thread (no workers), not yet collected.
    ready: std::collections::VecDeque<Done>,
    /// What this thread learnt about staging, when it writes files itself.
    staging: Staging,
    threads: Vec<JoinHandle<()>>,
    /// Handed over and not yet collected.
    pending: usize,
    /// Emptied data buffers coming back from the workers.
    spares: Vec<Vec<u8>>,
}

impl Finisher {
    /// A finisher of `workers` threads (none started yet); 0 means "as many as CPUs, at most 4".
    pub fn new(workers: usize) -> Self {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
        } else {
            workers
        };
        Finisher {
            workers,
            jobs: None,
            done: None,
            batch: Vec::new(),
            ready: std::collections::VecDeque::new(),
            staging: Staging::default(),
            threads: Vec::new(),
            pending: 0,
            spares: Vec::new(),
        }
    }

    /// The finisher a whole-image restore uses: as many workers as CPUs (at most 4), or as
    /// `NDMPD_RESTORE_WORKERS` says (0: none, every file written on the reader's thread, as
    /// a baseline to measure against).
    pub fn configured() -> Option<Self> {
        match std::env::var("NDMPD_RESTORE_WORKERS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            Some(0) => None,
            Some(n) => Some(Finisher::new(n)),
            None => Some(Finisher::new(0)),
        }
    }

    /// An empty buffer to gather a small file's data in, reused from an earlier file.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.spares.pop().unwrap_or_default()
    }

    fn start(&mut self) -> std::io::Result<()> {
        let (jobs, rx) = crossbeam_channel::bounded::<Vec<SmallFile>>(QUEUE);
        let (done_tx, done) = crossbeam_channel::unbounded();
        for i in 0..self.workers {
            let rx = rx.clone();
            let tx = done_tx.clone();
            let t = std::thread::Builder::new()
                .name(format!("restore-w{i}"))
                .spawn(move || worker(&rx, &tx))?;
            self.threads.push(t);
        }
        self.jobs = Some(jobs);
        self.done = Some(done);
        Ok(())
    }

    /// Hands `f` to the workers (in batches; waiting while `QUEUE` batches are queued), or
    /// writes it on this thread when no worker could be started. Finished files are
    /// collected with `collect`.
    pub fn submit(&mut self, f: SmallFile) {
        self.batch.push(f);
        if self.batch.len() >= BATCH {
            self.send();
        }
    }

    fn send(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        if self.jobs.is_none() && self.workers > 0 && self.start().is_err() {
            // No threads to be had (a process limit): this thread does the work.
            self.workers = 0;
        }
        let batch = std::mem::take(&mut self.batch);
        let batch = match &self.jobs {
            Some(jobs) => match jobs.send(batch) {
                Ok(()) => {
                    self.pending += 1;
                    return;
                }
                Err(e) => e.0,
            },
            None => batch,
        };
        let staging = &mut self.staging;
        self.ready
            .extend(batch.into_iter().map(|f| finish(f, staging)));
    }

    /// Whether files handed over are not collected yet.
    pub fn busy(&self) -> bool {
        self.pending > 0 || !self.batch.is_empty() || !self.ready.is_empty()
    }

    /// A finished file, if one is waiting (`wait`: everything handed over is sent to the
    /// workers, and this blocks until a file is finished, while any is out).
    pub fn collect(&mut self, wait: bool) -> Option<Done> {
        if wait {
            self.send();
        }
        if self.ready.is_empty() && self.pending > 0 {
            let rx = self.done.as_ref()?;
            let got = if wait {
                rx.recv().ok()
            } else {
                rx.try_recv().ok()
            };
            if let Some(batch) = got {
                self.pending -= 1;
                self.ready = batch.into();
            }
        }
        let mut d = self.ready.pop_front()?;
        let mut spare = std::mem::take(&mut d.spare);
        spare.clear();
        self.spares.push(spare);
        Some(d)
    }
}

impl Drop for Finisher {
    fn drop(&mut self) {
        // Queued files are still written (each is complete); then the threads end.
        self.send();
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn worker(rx: &Receiver<Vec<SmallFile>>, tx: &Sender<Vec<Done>>) {
    let mut staging = Staging::default();
    while let Ok(batch) = rx.recv() {
        let done = batch.into_iter().map(|f| finish(f, &mut staging)).collect();
        if tx.send(done).is_err() {
            return;
        }
    }
}

/// All of one file's calls, in the order the reader's own path makes them: an unnamed
/// inode with its mode, the data, owner and mode, attributes, times, then its name.
fn finish(f: SmallFile, staging: &mut Staging) -> Done {
    let mut warnings = Vec::new();
    let res = write_out(&f, staging, &mut warnings);
    Done {
        path: f.path,
        res,
        warnings,
        tag: f.tag,
        spare: f.data,
    }
}

fn write_out(
    f: &SmallFile,
    staging: &mut Staging,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let (file, staged, fresh) = staging
        .create_fresh(&f.dir, &f.name, f.attrs.mode)
        .map_err(|e| e.to_string())?;
    let res = fill(&file, f, fresh, warnings);
    if let Err(e) = res {
        fsops::unstage(f.dir.as_fd(), &staged);
        return Err(e);
    }
    staging
        .publish_new(f.dir.as_fd(), &file, staged, &f.name, f.keep)
        .map_err(|e| e.to_string())
}

fn fill(
    file: &File,
    f: &SmallFile,
    fresh: fsops::Fresh,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    if !f.data.is_empty() {
        file.write_all_at(&f.data, 0).map_err(|e| e.to_string())?;
    }
    fsops::owner_mode_fresh(file, &f.attrs, f.owner, fresh)
        .map_err(|e| format!("setting owner or mode: {e}"))?;
    for e in fsops::set_xattrs(&Obj::Fd(file.as_raw_fd()), &f.xattrs) {
        warnings.push(format!("{}: {e}", String::from_utf8_lossy(&f.path)));
    }
    fsops::times(&Obj::Fd(file.as_raw_fd()), &f.attrs).map_err(|e| format!("setting times: {e}"))
}

/// Puts a piece of a small file's data at `off` in `v` (pieces come in order; a gap reads
/// as zeros).
pub fn put_at(v: &mut Vec<u8>, off: u64, piece: &[u8]) {
    let off = off as usize;
    if v.len() == off {
        v.extend_from_slice(piece);
        return;
    }
    let end = off + piece.len();
    if v.len() < end {
        v.resize(end, 0);
    }
    v[off..end].copy_from_slice(piece);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn attrs(mode: u32, mtime: i64) -> Attrs {
        Attrs {
            mode,
            uid: 0,
            gid: 0,
            atime: (mtime, 0),
            mtime: (mtime, 5),
        }
    }

    /// Every file handed over comes back reported once, written with its data, mode and
    /// times; a name taken by a directory is reported with the reason and nothing else of
    /// it is left; the buffers come back for reuse.
    #[test]
    fn workers_write_every_file_and_report_each_once() {
        let tmp = tempfile::tempdir().unwrap();
        let root = fsops::open_root(tmp.path()).unwrap();
        let dir = fsops::Parents::default().open(root.as_fd(), b"d").unwrap();
        std::fs::create_dir(tmp.path().join("d/taken")).unwrap();
        let mut fin = Finisher::new(2);
        let n = 300;
        for i in 0..n {
            let mut data = fin.buffer();
            put_at(&mut data, 0, &vec![i as u8; i * 7]);
            let name = if i == 150 {
                b"taken".to_vec()
            } else {
                format!("f{i}").into_bytes()
            };
            fin.submit(SmallFile {
                dir: dir.clone(),
                path: [b"d/", &name[..]].concat(),
                name,
                data,
                attrs: attrs(0o640, 1_000_000 + i as i64),
                xattrs: Vec::new(),
                owner: false,
                keep: false,
                tag: Some((vec![], i.to_le_bytes().to_vec())),
            });
        }
        let mut seen = std::collections::BTreeMap::new();
        while let Some(d) = fin.collect(true) {
            assert!(d.warnings.is_empty());
            let i = usize::from_le_bytes(d.tag.unwrap().1.try_into().unwrap());
            assert!(seen.insert(i, (d.path, d.res)).is_none(), "{i} twice");
        }
        assert_eq!(seen.len(), n);
        assert!(!fin.busy());
        assert!(fin.buffer().capacity() > 0, "buffers come back");
        for (i, (path, res)) in seen {
            if i == 150 {
                assert_eq!(path, b"d/taken");
                assert_eq!(res.unwrap_err(), "a directory is in the way");
                continue;
            }
            res.unwrap();
            let p = tmp.path().join(format!("d/f{i}"));
            assert_eq!(std::fs::read(&p).unwrap(), vec![i as u8; i * 7]);
            let m = std::fs::metadata(&p).unwrap();
            assert_eq!(m.mode() & 0o7777, 0o640);
            assert_eq!((m.mtime(), m.mtime_nsec()), (1_000_000 + i as i64, 5));
        }
        // nothing but the restored files and the directory in the way: no temporary names
        assert_eq!(std::fs::read_dir(tmp.path().join("d")).unwrap().count(), n);
    }

    #[test]
    fn put_at_places_pieces_and_fills_gaps_with_zeros() {
        let mut v = Vec::new();
        put_at(&mut v, 0, b"ab");
        put_at(&mut v, 4, b"cd");
        put_at(&mut v, 2, b"x");
        assert_eq!(v, [b'a', b'b', b'x', 0, b'c', b'd']);
    }
}
