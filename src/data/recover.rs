//! The recover driver: reads an image from the data connection on a thread of its own and
//! recreates the selected files (sequentially or by Direct Access Recovery), or lists it.

use super::backup::{log, History, Out};
use super::env::Hist;
use super::Butype;
use crate::dataconn::DataConn;
use crate::format::dump::reader::{self, Event, RecoverError, RecoverOptions, Selection, Summary};
use crate::format::tar;
use crate::wire::messages::LogFilePost;
use crate::wire::types::*;
use crate::wire::{NdmpString, Request};
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How the image is read.
pub enum Mode {
    /// The whole image, in order: the session has asked for all of it.
    Sequential,
    /// Direct Access Recovery: one NOTIFY_DATA_READ per entry at its `fh_info`, in image
    /// order. `align` (the mover's record size when this session owns the mover, else 1)
    /// rounds each read out to whole records, which some movers need.
    Direct {
        /// The entries to recover.
        entries: Vec<DarEntry>,
        /// The record size reads are rounded out to, in bytes.
        align: u64,
    },
    /// DATA_START_RECOVER_FILEHIST: history posts only, nothing restored.
    FileHist(Hist),
}

/// One nlist entry recovered by direct access.
pub struct DarEntry {
    /// The image offset file history gave for the entry.
    pub fh_info: u64,
    /// Where to recreate it.
    pub dest: PathBuf,
    /// Its path in the image ("sub/b.txt"), for a directory's second, sequential pass.
    pub path: Vec<u8>,
    /// The original path as the DMA sent it, for LOG_FILE.
    pub name: NdmpString,
}

/// One recover run.
pub struct Job {
    /// The image's format.
    pub butype: Butype,
    /// Sequential, direct access, or history only.
    pub mode: Mode,
    /// What to recover, where, and how (owners, existing files).
    pub opts: RecoverOptions,
    /// The nlist's original paths as the reader names them ("sub/b.txt"), with the name the
    /// DMA used, for one LOG_FILE each.
    pub nlist: Vec<(Vec<u8>, NdmpString)>,
    /// Where the image comes from: the connection to the mover.
    pub conn: DataConn,
    /// Image bytes taken off the connection so far, for DATA_GET_STATE's
    /// `bytes_processed`.
    pub bytes: Arc<AtomicU64>,
    /// Set by DATA_ABORT (or the session ending): the reader stops at its next check.
    pub abort: Arc<AtomicBool>,
    /// Posts, read requests and the final result, for the session.
    pub out: mpsc::Sender<Out>,
}

/// After the image's end marker, the padding that follows is taken until the mover has sent
/// nothing for this long; then DATA halts without waiting for the DMA to close the mover
/// (which many DMAs do only after DATA has halted).
const LULL: Duration = Duration::from_secs(2);

/// The data connection: counts the image bytes taken off it, and while `ended` is set (the
/// reader has seen the image's end, or DAR drains a request) a read waits at most `LULL`,
/// then fails with TimedOut. As a `BufRead` it lends out the mover's record buffers
/// themselves (LOCAL) or a buffer of its own (TCP).
struct Input {
    conn: DataConn,
    bytes: Arc<AtomicU64>,
    ended: Arc<AtomicBool>,
    timed: bool,
    /// TCP's read buffer: `buf[pos..filled]` is read and not yet consumed.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
}

/// Bytes of TCP input buffered for `BufRead`.
const TCP_BUF: usize = 256 * 1024;

fn quiet() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the mover went quiet")
}

fn timed_out(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock => io::Error::new(io::ErrorKind::TimedOut, e),
        _ => e,
    }
}

impl Input {
    fn new(conn: DataConn, bytes: Arc<AtomicU64>, ended: Arc<AtomicBool>) -> Self {
        Input {
            conn,
            bytes,
            ended,
            timed: false,
            buf: Vec::new(),
            pos: 0,
            filled: 0,
        }
    }

    /// One read off a TCP connection, waiting at most `LULL` once `ended` is set.
    fn tcp_read(
        s: &mut std::net::TcpStream,
        timed: &mut bool,
        lull: bool,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        if lull != *timed {
            *timed = lull;
            s.set_read_timeout(lull.then_some(LULL))?;
        }
        s.read(buf).map_err(timed_out)
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let lull = self.ended.load(Ordering::Relaxed);
        let n = match &mut self.conn {
            DataConn::Tcp(_) if self.pos < self.filled => {
                let n = buf.len().min(self.filled - self.pos);
                buf[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                n
            }
            DataConn::Tcp(s) => Self::tcp_read(s, &mut self.timed, lull, buf)?,
            DataConn::Local(end) if lull => match end.read_within(buf, LULL)? {
                0 => return Err(quiet()),
                n => n,
            },
            DataConn::Local(end) => end.read(buf)?,
        };
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl BufRead for Input {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let lull = self.ended.load(Ordering::Relaxed);
        match &mut self.conn {
            DataConn::Tcp(s) => {
                if self.pos == self.filled {
                    self.buf.resize(TCP_BUF, 0);
                    let n = Self::tcp_read(s, &mut self.timed, lull, &mut self.buf)?;
                    (self.pos, self.filled) = (0, n);
                }
                Ok(&self.buf[self.pos..self.filled])
            }
            DataConn::Local(end) => {
                if lull && end.fill_within(LULL)?.is_empty() {
                    return Err(quiet());
                }
                // holds a chunk now, unless the mover is gone (the end of input)
                end.fill_buf()
            }
        }
    }

    fn consume(&mut self, n: usize) {
        match &mut self.conn {
            DataConn::Tcp(_) => self.pos = (self.pos + n).min(self.filled),
            DataConn::Local(end) => end.consume(n),
        }
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

fn post(out: &mpsc::Sender<Out>, r: Request) {
    let _ = out.blocking_send(Out::Post(r));
}

fn log_file(out: &mpsc::Sender<Out>, name: &NdmpString, ok: bool) {
    let recovery_status = if ok {
        RecoveryStatus::SUCCESSFUL
    } else {
        RecoveryStatus::FAILED_UNDEFINED_ERROR
    };
    post(
        out,
        Request::LogFile(LogFilePost {
            name: name.clone(),
            recovery_status,
        }),
    );
}

/// Runs the recover to its end. Blocks: call it on its own thread.
pub fn run(job: Job) {
    let Job {
        butype,
        mode,
        mut opts,
        nlist,
        conn,
        bytes,
        abort,
        out,
    } = job;
    let ended = Arc::new(AtomicBool::new(false));
    opts.ended = Some(ended.clone());
    let mut input = Input::new(conn, bytes, ended);
    let result = match mode {
        Mode::Sequential => sequential(butype, &mut input, &opts, &nlist, &abort, &out),
        Mode::Direct { entries, align } => {
            let lull = input.ended.clone();
            let mut src = DarSource::new(&mut input, &out, align, lull);
            direct(butype, &mut src, entries, &opts, &abort, &out)
        }
        Mode::FileHist(hist) => {
            let ended = input.ended.clone();
            list(butype, &mut input, hist, &abort, &ended, &out)
        }
    };
    // the mover learns the recover is over from the closed connection, before DATA halts
    drop(input);
    let result = result.map_err(|e| e.to_string());
    let _ = out.blocking_send(Out::Done(result));
}

/// The reader's events: a LOG_FILE for each nlist entry (DMAs count them, one per entry and
/// none per file inside), a warning for whatever failed.
fn events<'a>(
    nlist: &'a [(Vec<u8>, NdmpString)],
    out: &'a mpsc::Sender<Out>,
) -> impl FnMut(Event) + 'a {
    move |e| match e {
        Event::Restored { path, ok, why } => {
            if let Some((_, name)) = nlist.iter().find(|(p, _)| *p == path) {
                log_file(out, name, ok);
            }
            if let Some(w) = why.filter(|_| !ok) {
                post(
                    out,
                    log(
                        LogType::WARNING,
                        format!("{}: {w}", String::from_utf8_lossy(&path)),
                    ),
                );
            }
        }
        Event::Warning(w) => post(out, log(LogType::WARNING, w)),
    }
}

fn sequential(
    butype: Butype,
    input: &mut dyn BufRead,
    opts: &RecoverOptions,
    nlist: &[(Vec<u8>, NdmpString)],
    abort: &AtomicBool,
    out: &mpsc::Sender<Out>,
) -> Result<Summary, RecoverError> {
    let mut ev = events(nlist, out);
    match butype {
        Butype::Dump => reader::read_dump_buffered(input, opts, &mut ev, abort),
        Butype::Tar => tar::read_tar_buffered(input, opts, &mut ev, abort),
    }
}

/// DAR: each entry read from its own offset with just the bytes it needs, in image order.
/// An entry that turns out to be a directory needs its subtree: that entry and every one
/// after it then come from one sequential pass over the image (directories lie at the start
/// of a dump image, so this costs little DAR).
fn direct(
    butype: Butype,
    src: &mut DarSource<'_>,
    mut entries: Vec<DarEntry>,
    opts: &RecoverOptions,
    abort: &AtomicBool,
    out: &mpsc::Sender<Out>,
) -> Result<Summary, RecoverError> {
    // forward through the image: tape drives hate going back
    entries.sort_by_key(|e| e.fh_info);
    let mut sum = Summary::default();
    let mut rest = entries.len();
    for (i, e) in entries.iter().enumerate() {
        // a file's records end where the next selected one starts: never ask for more
        let limit = entries[i + 1..]
            .iter()
            .map(|n| n.fh_info)
            .find(|&f| f > e.fh_info)
            .unwrap_or(u64::MAX);
        src.start(e.fh_info, limit).map_err(RecoverError::Input)?;
        let mut failure = None;
        let mut events = |ev| {
            if let Event::Restored {
                ok: false,
                why: Some(w),
                ..
            } = &ev
            {
                failure.get_or_insert_with(|| w.clone());
            }
            if let Event::Warning(w) = ev {
                post(out, log(LogType::WARNING, w));
            }
        };
        let res = match butype {
            Butype::Dump => reader::read_one(src, None, &e.dest, opts, &mut events, abort),
            Butype::Tar => tar::read_one_tar(src, &e.dest, opts, &mut events, abort),
        };
        match res {
            Ok(s) if s.dirs > 0 => {
                rest = i;
                break;
            }
            Ok(s) => {
                sum.files += s.files;
                sum.skipped += s.skipped;
                if let Some(w) = &failure {
                    post(out, log(LogType::WARNING, format!("{}: {w}", e.name)));
                }
                log_file(out, &e.name, s.skipped == 0 && failure.is_none());
            }
            Err(RecoverError::Aborted) => return Err(RecoverError::Aborted),
            Err(err @ RecoverError::Input(_)) => {
                log_file(out, &e.name, false);
                return Err(err);
            }
            Err(err) => {
                sum.skipped += 1;
                let why = format!("{}: at fh_info {}: {err}", e.name, e.fh_info);
                post(out, log(LogType::WARNING, why));
                log_file(out, &e.name, false);
            }
        }
    }
    if rest < entries.len() {
        let left = &entries[rest..];
        let select = left
            .iter()
            .map(|e| Selection {
                path: e.path.clone(),
                dest: Some(e.dest.clone()),
            })
            .collect();
        let nlist: Vec<(Vec<u8>, NdmpString)> = left
            .iter()
            .map(|e| (e.path.clone(), e.name.clone()))
            .collect();
        let o = RecoverOptions {
            select,
            ..opts.clone()
        };
        src.start_whole().map_err(RecoverError::Input)?;
        let s = sequential(
            butype,
            &mut BufReader::with_capacity(TCP_BUF, &mut *src),
            &o,
            &nlist,
            abort,
            out,
        )?;
        sum.files += s.files;
        sum.dirs += s.dirs;
        sum.skipped += s.skipped;
    }
    src.finish().map_err(RecoverError::Input)?;
    sum.bytes = src.moved;
    Ok(sum)
}

/// DATA_START_RECOVER_FILEHIST: the image's history, posted as a backup posts it.
fn list(
    butype: Butype,
    input: &mut dyn Read,
    mode: Hist,
    abort: &AtomicBool,
    ended: &AtomicBool,
    out: &mpsc::Sender<Out>,
) -> Result<Summary, RecoverError> {
    let mode = match (butype, mode) {
        (Butype::Tar, _) => Hist::Path,
        (Butype::Dump, Hist::None) => Hist::Node,
        (Butype::Dump, m) => m,
    };
    let mut hist = History::new(mode, out.clone());
    let mut warnings = Vec::new();
    let mut member = 0u64;
    let res = match butype {
        Butype::Dump => reader::list_dump(
            input,
            &mut |e| hist.add(e),
            &mut |w| warnings.push(w),
            abort,
            ended,
        ),
        Butype::Tar => tar::list_tar(
            input,
            &mut |e| {
                member += 1;
                hist.add_file(e.path, e.stat, member, e.fh_info)
            },
            &mut |w| warnings.push(w),
            abort,
            ended,
        ),
    };
    for w in warnings {
        hist.warn(w);
    }
    hist.flush();
    res.map(|bytes| Summary {
        bytes,
        ..Summary::default()
    })
}

/// The data connection seen through NOTIFY_DATA_READ requests: reading past what was asked
/// for asks for more (64 KiB, doubling up to 8 MiB), and never beyond the current limit,
/// where it reads as end of input. Only the last entry's request can reach past the image
/// (or the DMA's window), where the mover stops: what is left of a request once the reader
/// is done with it is drained only until the mover goes quiet (`lull`).
struct DarSource<'a> {
    inner: &'a mut dyn Read,
    out: &'a mpsc::Sender<Out>,
    align: u64,
    /// Makes the connection's reads give up with TimedOut after a `LULL`.
    lull: Arc<AtomicBool>,
    /// Image offset of the next byte `read` returns.
    pos: u64,
    /// Bytes of the last request not yet read from the connection.
    avail: u64,
    limit: u64,
    chunk: u64,
    /// Image bytes taken off the connection.
    moved: u64,
    /// The connection ended: no more requests.
    closed: bool,
}

const FIRST_CHUNK: u64 = 64 * 1024;
const MAX_CHUNK: u64 = 8 << 20;
/// NOTIFY_DATA_READ's "to the end of the image".
const WHOLE: u64 = i64::MAX as u64;

impl<'a> DarSource<'a> {
    fn new(
        inner: &'a mut dyn Read,
        out: &'a mpsc::Sender<Out>,
        align: u64,
        lull: Arc<AtomicBool>,
    ) -> Self {
        DarSource {
            inner,
            out,
            align: align.max(1),
            lull,
            pos: 0,
            avail: 0,
            limit: u64::MAX,
            chunk: FIRST_CHUNK,
            moved: 0,
            closed: false,
        }
    }

    /// Reads from `offset` on, up to `limit`: what the last request still holds is used when
    /// `offset` lies in it, else it is drained and a new request made on the next read.
    fn start(&mut self, offset: u64, limit: u64) -> io::Result<()> {
        if offset >= self.pos && offset - self.pos < self.avail {
            self.skip(offset - self.pos)?;
        } else {
            // inside the image: the mover can deliver all of it
            self.drain(false)?;
            self.pos = offset;
        }
        self.limit = limit;
        self.chunk = FIRST_CHUNK;
        Ok(())
    }

    /// The whole image from its start, in one request, as a sequential recover reads it.
    fn start_whole(&mut self) -> io::Result<()> {
        self.start(0, u64::MAX)?;
        self.chunk = WHOLE;
        Ok(())
    }

    /// The end: reads what the last request still holds, so the mover is not left blocked
    /// on it, but gives up when it stops coming (the request ran past the image).
    fn finish(&mut self) -> io::Result<()> {
        self.drain(true)
    }

    fn drain(&mut self, lull: bool) -> io::Result<()> {
        self.lull.store(lull, Ordering::Relaxed);
        let r = self.skip(self.avail);
        self.lull.store(false, Ordering::Relaxed);
        match r {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                self.avail = 0;
                Ok(())
            }
            other => other,
        }
    }

    fn skip(&mut self, mut n: u64) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        while n > 0 && self.avail > 0 {
            let want = n.min(buf.len() as u64).min(self.avail) as usize;
            let got = self.raw(&mut buf[..want])?;
            if got == 0 {
                break;
            }
            n -= got as u64;
            self.pos += got as u64;
        }
        Ok(())
    }

    fn raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n == 0 {
            self.closed = true;
            self.avail = 0;
        }
        self.avail -= n as u64;
        self.moved += n as u64;
        Ok(n)
    }

    fn request(&mut self) -> io::Result<()> {
        let start = self.pos - self.pos % self.align;
        let (offset, length) = if self.chunk == WHOLE {
            (start, WHOLE)
        } else {
            let end = self.pos.saturating_add(self.chunk).min(self.limit);
            let end = end.div_ceil(self.align).saturating_mul(self.align);
            self.chunk = (self.chunk * 2).min(MAX_CHUNK);
            (start, end - start)
        };
        let _ = self.out.blocking_send(Out::Read { offset, length });
        self.avail = length;
        // the record-aligned head before the wanted offset
        let mut head = self.pos - start;
        let mut buf = [0u8; 4096];
        while head > 0 {
            let got = self.raw(&mut buf[..head.min(4096) as usize])?;
            if got == 0 {
                break;
            }
            head -= got as u64;
        }
        Ok(())
    }
}
impl Read for DarSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.limit || buf.is_empty() {
            return Ok(0);
        }
        if self.avail == 0 {
            if self.closed {
                return Ok(0);
            }
            self.request()?;
        }
        let want = (buf.len() as u64)
            .min(self.avail)
            .min(self.limit - self.pos) as usize;
        let n = self.raw(&mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LOG_FILE names the nlist entry with the very bytes the DMA sent, which need not be
    /// UTF-8 and may hold control characters: a DMA matches them against its own list.
    #[test]
    fn log_file_names_the_entry_as_sent() {
        let sent = NdmpString::from(&b"/caf\xe9\tx"[..]);
        let nlist = vec![(b"caf\xe9\tx".to_vec(), sent.clone())];
        let (tx, mut rx) = mpsc::channel(4);
        let mut ev = events(&nlist, &tx);
        ev(Event::Restored {
            path: b"caf\xe9\tx".to_vec(),
            ok: true,
            why: None,
        });
        ev(Event::Restored {
            path: b"other".to_vec(),
            ok: true,
            why: None,
        });
        match rx.try_recv() {
            Ok(Out::Post(Request::LogFile(p))) => {
                assert_eq!(p.name, sent);
                assert_eq!(p.recovery_status, RecoveryStatus::SUCCESSFUL);
            }
            other => panic!("{other:?}"),
        }
        // a name outside the nlist gets no LOG_FILE
        assert!(rx.try_recv().is_err());
    }
}
