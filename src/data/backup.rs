//! The backup driver: runs the dump writer on a thread of its own into the data connection,
//! turns its history into batched FH_ADD_DIR/FH_ADD_NODE posts, and counts the bytes sent.

use super::env::{BackupEnv, Hist};
pub use super::history::file_stat;
pub(super) use super::history::History;
pub(super) use super::post::log;
pub use super::post::{fh_entries, Out};
use crate::dataconn::DataConn;
use crate::format::changed::Changed;
use crate::format::dump::{self, DumpOptions, Event, Summary};
use crate::format::out::ImageOut;
use crate::wire::types::*;
use crate::wire::Request;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the image is written as.
pub enum Format {
    /// A BSD dump image (butype `dump`).
    Dump(DumpOptions),
    /// A POSIX tar archive (butype `tar`).
    Tar(crate::format::tar::TarOptions),
}

/// One backup run.
pub struct Job {
    /// The validated environment of DATA_START_BACKUP.
    pub env: BackupEnv,
    /// Where the tree is read: FILESYSTEM, or the same place inside a snapshot of it. The
    /// image names paths relative to it, so both give the same image.
    pub root: std::path::PathBuf,
    /// The snapshot `root` is in: removed when the backup ends, before it says so.
    pub hold: Option<crate::snapshot::Held>,
    /// An incremental from a snapshot: ask the snapshot kept by its base backup what
    /// changed, instead of reading every file's attributes.
    pub find: Option<Find>,
    /// UPDATE=Y from a snapshot: keep it as the base of later incrementals on success.
    pub keep: Option<Keep>,
    /// The image format and its options.
    pub format: Format,
    /// Where the image goes: the connection to the mover.
    pub conn: DataConn,
    /// Image bytes sent so far, for DATA_GET_STATE's `bytes_processed`.
    pub bytes: Arc<AtomicU64>,
    /// Set by DATA_ABORT (or the session ending): the writer stops at its next check.
    pub abort: Arc<AtomicBool>,
    /// Bounded: when the DMA reads history slowly the writer waits, replies never do.
    pub out: mpsc::Sender<Out>,
}

/// Which kept base snapshot an incremental asks for its changes.
pub struct Find {
    /// FILESYSTEM, as dumpdates spells it.
    pub filesystem: String,
    /// This backup's level.
    pub level: u32,
    /// Its base date: the DUMP_DATE of the backup whose snapshot is the base.
    pub base_date: i64,
}

/// What a backup's snapshot is kept as when the backup succeeds.
pub struct Keep {
    /// FILESYSTEM, as dumpdates spells it.
    pub filesystem: String,
    /// This backup's level.
    pub level: u32,
    /// This backup's DUMP_DATE.
    pub date: i64,
}

/// For an incremental from a snapshot: the changed set from the base's snapshot, put in the
/// format's options, and a LOG_MESSAGE saying how changes are found (a walk, and why, when
/// no kept base can say).
fn find_changes(find: &Find, hold: &crate::snapshot::Held, format: &mut Format) -> Request {
    let started = Instant::now();
    match hold.changes_since_base(&find.filesystem, find.level, find.base_date) {
        Ok((kept, inos)) => {
            let text = format!(
                "incremental: {} objects may have changed since base snapshot {} (level {}), \
                 found from btrfs generations in {} ms; the other files are not read",
                inos.len(),
                kept.path.display(),
                kept.level,
                started.elapsed().as_millis()
            );
            let changed = Some(Arc::new(Changed::new(inos)));
            match format {
                Format::Dump(o) => o.changed = changed,
                Format::Tar(o) => o.changed = changed,
            }
            tracing::info!("{text}");
            log(LogType::NORMAL, text)
        }
        Err(why) => {
            let text = format!("incremental: finding the changed files by a full walk: {why}");
            tracing::info!("{text}");
            log(LogType::NORMAL, text)
        }
    }
}

/// How often a running backup says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// Counts what goes out for DATA_GET_STATE and logs progress now and then.
struct Counted<W> {
    inner: W,
    bytes: Arc<AtomicU64>,
    out: mpsc::Sender<Out>,
    started: Instant,
    last: Instant,
}

impl<W> Counted<W> {
    fn new(inner: W, bytes: Arc<AtomicU64>, out: mpsc::Sender<Out>) -> Self {
        let now = Instant::now();
        Counted {
            inner,
            bytes,
            out,
            started: now,
            last: now,
        }
    }

    /// Counts `n` bytes gone out, and says how far the backup got when it is time to.
    fn count(&mut self, n: u64) {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        self.progress(total);
    }

    fn progress(&mut self, total: u64) {
        if self.last.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let text = format!(
            "backup: {} MB written, {:.0} MB/s",
            total / 1_000_000,
            total as f64 / secs / 1e6
        );
        let _ = self
            .out
            .blocking_send(Out::Post(log(LogType::NORMAL, text)));
    }
}

impl<W: ImageOut> ImageOut for Counted<W> {
    fn chunk(&self) -> usize {
        self.inner.chunk()
    }

    fn hand_over(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let n = buf.len() as u64;
        self.inner.hand_over(buf)?;
        self.count(n);
        Ok(())
    }
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Runs the backup to its end. Blocks: call it on its own thread.
pub fn run(job: Job) {
    let Job {
        env,
        root,
        hold,
        find,
        keep,
        mut format,
        conn,
        bytes,
        abort,
        out,
    } = job;
    if let (Some(find), Some(hold)) = (&find, &hold) {
        let _ = out.blocking_send(Out::Post(find_changes(find, hold, &mut format)));
    }
    let mut hist = History::new(env.hist, out.clone());
    let want_hist = env.hist != Hist::None;
    let mut member = 0u64;
    let mut write = |w: &mut dyn ImageOut| -> Result<Summary, String> {
        match &format {
            Format::Dump(opts) => {
                let mut events = |e: Event<'_>| match e {
                    Event::History(h) if want_hist => hist.add(h),
                    Event::History(_) => {}
                    Event::Warning(w) => hist.warn(w),
                    Event::Estimate(n) => hist.send(Out::Estimate(n)),
                };
                dump::write_dump_to(&root, opts, w, &mut events, &abort)
            }
            Format::Tar(opts) => {
                use crate::format::tar::{self, Event as T};
                let mut events = |e: T<'_>| match e {
                    T::File {
                        path,
                        stat,
                        fh_info,
                    } if want_hist => {
                        // tar has no inode numbers: members are numbered in archive order
                        member += 1;
                        hist.add_file(path, stat, member, fh_info)
                    }
                    T::File { .. } => {}
                    T::Warning(w) => hist.warn(w),
                    T::Estimate(n) => hist.send(Out::Estimate(n)),
                };
                tar::write_tar_to(&root, opts, w, &mut events, &abort)
            }
        }
        .map_err(|e| e.to_string())
    };
    let result = match conn {
        DataConn::Tcp(s) => {
            // full segments while streaming; the flush at the end uncorks what is held
            let _ = crate::dataconn::net::cork(&s, true);
            let mut w = Counted::new(crate::dataconn::net::Gather::new(&s), bytes, out.clone());
            let r = write(&mut w).and_then(|s| w.flush().map(|()| s).map_err(|e| e.to_string()));
            drop(w);
            let _ = crate::dataconn::net::cork(&s, false);
            // the mover learns the stream ended from the closed connection
            let _ = s.shutdown(std::net::Shutdown::Write);
            r
        }
        DataConn::Local(mut end) => {
            let mut w = Counted::new(&mut end, bytes, out.clone());
            let r = write(&mut w);
            let r = r.and_then(|s| end.finish().map(|()| s).map_err(|e| e.to_string()));
            drop(end);
            r
        }
    };
    hist.flush();
    // the snapshot goes (or is kept) before the end is reported: once the DMA hears of it,
    // no snapshot of this backup is left but a kept base
    match (hold, keep) {
        (Some(h), Some(k)) if result.is_ok() => {
            let text = match h.keep_as_base(&k.filesystem, k.level, k.date) {
                Ok(p) => format!(
                    "snapshot kept as {}: the base of the next incrementals of {} above level {}",
                    p.display(),
                    k.filesystem,
                    k.level
                ),
                Err(why) => format!("{why}; the next incremental walks the tree"),
            };
            hist.send(Out::Post(log(LogType::NORMAL, text)));
        }
        (hold, _) => drop(hold),
    }
    let _ = out.blocking_send(Out::Done(result));
}
