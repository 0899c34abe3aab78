//! The mover engine: one blocking thread per data connection that blocks the image stream
//! into tape records (backup) or serves MOVER_READ ranges from tape records (recover), and
//! pauses for the DMA at the end of the window, the end of the medium and filemarks.

use super::progress::Progress;
use super::state::{Window, INFINITE};
use crate::dataconn::local::POLL;
use crate::dataconn::net::set_rcvlowat;
use crate::dataconn::{Conn, MoverConn};
use crate::tape::library::OpenDrive;
use crate::tape::{TapeDevice, TapeError};
use crate::wire::types::{Addr, MoverHaltReason, MoverMode, MoverPauseReason};
use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes of records gathered before they go to tape in one call.
const BATCH_BYTES: usize = 1 << 20;

/// Most records in one call.
const MAX_BATCH: usize = 16;

/// How long a batch that has begun waits for more records from a producer slower than the
/// tape. One record per tape write costs more than a few at once (vtape's header puts each
/// record off the page boundaries), and the mover is idle meanwhile anyway; the bound keeps a
/// stalled producer's records from waiting long.
const GATHER_WAIT: Duration = Duration::from_millis(10);

/// The session's open tape, shared with the engine while the mover owns it.
pub type SharedDrive = Arc<Mutex<OpenDrive>>;

/// What the session tells a running engine.
#[derive(Debug)]
pub enum Command {
    /// MOVER_CONTINUE, with the tape now open (perhaps another cartridge) and the new window.
    Continue {
        /// The tape to go on with; the engine gave its handle up when it paused.
        drive: SharedDrive,
        /// The window to go on in; the DMA may have set a new one while the mover was paused.
        window: Window,
    },
    /// MOVER_READ.
    Read {
        /// Where in the image stream the DMA wants the bytes from.
        offset: u64,
        /// How many bytes it wants; all ones for "to the end".
        length: u64,
    },
    /// MOVER_CLOSE.
    Close,
    /// MOVER_ABORT (or the session ending).
    Abort,
}

/// What the engine (and its controller) tell the session; each becomes a state change and,
/// for pauses and halts, a NOTIFY to the DMA.
#[derive(Debug)]
pub enum Event {
    /// The peer connected to a listening mover: LISTEN becomes ACTIVE. A mover that
    /// connected itself (MOVER_CONNECT) is ACTIVE already and hears none.
    Active {
        /// Who connected: a TCP address, or LOCAL for this session's own DATA server.
        peer: Addr,
    },
    /// The engine stopped for the DMA and gave the tape back; it waits for a command.
    Paused {
        /// Why: the end of the window or of the medium, a filemark (or the image's end), or
        /// a read outside the window.
        reason: MoverPauseReason,
        /// The stream offset the DMA must go on from (MOVER_GET_STATE's `seek_position`).
        seek_position: u64,
        /// Records went to tape since the last event: a filemark is owed at TAPE_CLOSE.
        wrote: bool,
    },
    /// The engine, or the setup before it, ended; nothing more comes from this run.
    Halted {
        /// Why, for NOTIFY_MOVER_HALTED.
        reason: MoverHaltReason,
        /// For the LOG_MESSAGE that goes with an unexpected halt.
        why: Option<String>,
        /// Records went to tape since the last event, as for `Paused`.
        wrote: bool,
    },
}

/// Everything one run of the engine needs.
pub struct Job {
    /// READ is a backup (data connection to tape); anything else runs a recover.
    pub mode: MoverMode,
    /// Bytes in one tape record, as MOVER_SET_RECORD_SIZE set it; never 0.
    pub record_size: usize,
    /// The session's open tape, held by the engine while it is ACTIVE.
    pub drive: SharedDrive,
    /// The window the mover starts in.
    pub window: Window,
    /// The session's mover counters, moved in place.
    pub progress: Arc<Progress>,
    /// Commands from the session; a closed channel counts as an abort.
    pub commands: Receiver<Command>,
    /// Where pauses and the final halt go.
    pub events: tokio::sync::mpsc::UnboundedSender<Event>,
    /// Set on MOVER_ABORT (and on session end), so the thread stops between records
    /// without waiting for a command.
    pub abort: Arc<AtomicBool>,
}

/// How the engine ended: the Halted event it owes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Halt {
    /// The reason NOTIFY_MOVER_HALTED gives.
    pub reason: MoverHaltReason,
    /// What went wrong, for the log; none for an expected end (abort, close).
    pub why: Option<String>,
}

fn halt(reason: MoverHaltReason, why: Option<String>) -> Halt {
    Halt { reason, why }
}

/// Runs the engine to its halt. Blocks: call it on its own thread.
pub fn run(job: Job, conn: MoverConn) -> Event {
    let mut e = Engine {
        rs: job.record_size,
        drive: Some(job.drive),
        window: job.window,
        progress: job.progress,
        commands: job.commands,
        events: job.events,
        abort: job.abort,
        conn,
        wrote: false,
    };
    let end = match job.mode {
        MoverMode::READ => e.backup(),
        _ => e.recover(),
    };
    drop(e.drive.take());
    if let Conn::Tcp(s) = &e.conn {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
    Event::Halted {
        reason: end.reason,
        why: end.why,
        wrote: e.wrote,
    }
}

struct Engine {
    rs: usize,
    /// Held only while ACTIVE: a paused mover gives the tape back to the DMA.
    drive: Option<SharedDrive>,
    window: Window,
    progress: Arc<Progress>,
    commands: Receiver<Command>,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    abort: Arc<AtomicBool>,
    conn: MoverConn,
    wrote: bool,
}

impl Engine {
    fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    fn on_drive<T>(&mut self, f: impl FnOnce(&mut dyn TapeDevice) -> T) -> Result<T, Halt> {
        let drive = self.drive.as_ref().ok_or_else(|| {
            halt(
                MoverHaltReason::INTERNAL_ERROR,
                Some("the mover has no tape".into()),
            )
        })?;
        let mut d = drive.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(d.device.as_mut()))
    }

    /// Hands the tape back, tells the DMA why, and waits for MOVER_CONTINUE (with the tape
    /// and window to go on with), MOVER_CLOSE or MOVER_ABORT.
    fn pause(&mut self, reason: MoverPauseReason, seek_position: u64) -> Result<(), Halt> {
        self.drive = None;
        let wrote = std::mem::take(&mut self.wrote);
        let _ = self.events.send(Event::Paused {
            reason,
            seek_position,
            wrote,
        });
        loop {
            match self.commands.recv() {
                Ok(Command::Continue { drive, window }) => {
                    self.drive = Some(drive);
                    self.window = window;
                    return Ok(());
                }
                // the session only forwards READ while ACTIVE; one crossing a pause is stale
                Ok(Command::Read { .. }) => continue,
                Ok(Command::Close) => return Err(halt(MoverHaltReason::CONNECT_CLOSED, None)),
                Ok(Command::Abort) | Err(_) => return Err(halt(MoverHaltReason::ABORTED, None)),
            }
        }
    }

    /// The halt for a data connection that failed: an abort if one is under way.
    fn conn_failed(&self, e: io::Error, doing: &str) -> Halt {
        if self.aborted() {
            return halt(MoverHaltReason::ABORTED, None);
        }
        halt(
            MoverHaltReason::CONNECT_CLOSED,
            Some(format!("data connection failed while {doing}: {e}")),
        )
    }

    /// A whole record is waiting on the data connection: reading it will not block.
    fn record_ready(&self) -> bool {
        match &self.conn {
            Conn::Local(end) => end.record_ready(),
            Conn::Tcp(s) => {
                use std::os::fd::AsRawFd;
                let mut n: libc::c_int = 0;
                // SAFETY: FIONREAD stores the readable byte count into the int it is given.
                let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
                r == 0 && n as usize >= self.rs
            }
        }
    }

    /// Like [`Engine::fill`], but waits at most `wait` for the record to begin arriving:
    /// `None` if it did not.
    fn fill_within(&mut self, buf: &mut Vec<u8>, wait: Duration) -> io::Result<Option<usize>> {
        match &mut self.conn {
            Conn::Local(end) => end.next_record_within(buf, wait),
            Conn::Tcp(s) => {
                use std::os::fd::AsRawFd;
                let ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
                let mut pfd = libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, for the length given.
                match unsafe { libc::poll(&mut pfd, 1, ms) } {
                    0 => Ok(None),
                    n if n > 0 => self.fill(buf).map(Some),
                    _ => match io::Error::last_os_error() {
                        e if e.kind() == io::ErrorKind::Interrupted => Ok(None),
                        e => Err(e),
                    },
                }
            }
        }
    }

    /// Reads the next record from the data connection into `buf`: `rs` bytes, fewer only at
    /// the end of the stream, 0 after it.
    fn fill(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match &mut self.conn {
            Conn::Local(end) => end.next_record(buf, &self.abort),
            Conn::Tcp(s) => {
                buf.resize(self.rs, 0);
                let mut got = 0;
                while got < self.rs {
                    match s.read(&mut buf[got..]) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(got)
            }
        }
    }

    fn backup(&mut self) -> Halt {
        if let Conn::Tcp(s) = &self.conn {
            // wake for whole records only: one read per record, and poll means a record is here
            let _ = set_rcvlowat(s, self.rs);
        }
        let end = self.backup_loop();
        // an abort closes the data connection, which can look like its normal end
        if self.aborted() {
            return halt(MoverHaltReason::ABORTED, None);
        }
        match end {
            Ok(()) => halt(MoverHaltReason::CONNECT_CLOSED, None),
            Err(h) => h,
        }
    }

    /// Backup: whole records to tape, a short one at the end of the stream. Records are
    /// gathered into batches of about `BATCH_BYTES` and handed to the tape in one call (the
    /// page cache takes several records at once far faster). A record that met the end of the
    /// medium stays pending and is written first after MOVER_CONTINUE, so no byte is lost or
    /// written twice across cartridges.
    fn backup_loop(&mut self) -> Result<(), Halt> {
        let batch = (BATCH_BYTES / self.rs).clamp(1, MAX_BATCH);
        let mut bufs: Vec<Vec<u8>> = (0..batch).map(|_| Vec::with_capacity(self.rs)).collect();
        let mut lens = vec![0usize; batch];
        let mut pos = self.window.offset;
        // bufs[first..first + count] are read and not yet on tape
        let (mut first, mut count) = (0usize, 0usize);
        let mut ended = false;
        loop {
            if self.aborted() {
                return Err(halt(MoverHaltReason::ABORTED, None));
            }
            if count == 0 {
                if ended {
                    return Ok(());
                }
                first = 0;
                // the first record may wait for data; more join the batch if they are here or
                // come within GATHER_WAIT of the first
                let mut deadline = None;
                while count < batch {
                    let got = if count == 0 || self.record_ready() {
                        self.fill(&mut bufs[count]).map(Some)
                    } else {
                        let until: Instant =
                            *deadline.get_or_insert_with(|| Instant::now() + GATHER_WAIT);
                        match until.checked_duration_since(Instant::now()) {
                            Some(left) if !left.is_zero() => {
                                self.fill_within(&mut bufs[count], left)
                            }
                            _ => Ok(None),
                        }
                    };
                    let got = got.map_err(|e| self.conn_failed(e, "reading the backup stream"))?;
                    let Some(n) = got else { break };
                    if n == 0 {
                        ended = true;
                        break;
                    }
                    lens[count] = n;
                    count += 1;
                    if n < self.rs {
                        ended = true;
                        break;
                    }
                }
                if count == 0 {
                    return Ok(());
                }
            }
            // EOW only when there is data for beyond the window
            let end = self.window.end();
            let mut allowed = 0;
            let mut at = pos;
            while allowed < count && (end == INFINITE || at < end) {
                at += lens[first + allowed] as u64;
                allowed += 1;
            }
            if allowed == 0 {
                self.pause(MoverPauseReason::EOW, pos)?;
                pos = self.window.offset;
                continue;
            }
            let records: Vec<&[u8]> = (first..first + allowed)
                .map(|k| &bufs[k][..lens[k]])
                .collect();
            let (written, result) = self.on_drive(|d| d.write_records(&records))?;
            drop(records);
            let bytes: usize = lens[first..first + written].iter().sum();
            pos += bytes as u64;
            self.progress
                .record_num
                .fetch_add(written as u64, Ordering::Relaxed);
            self.progress
                .bytes_moved
                .fetch_add(bytes as u64, Ordering::Relaxed);
            self.wrote |= written > 0;
            first += written;
            count -= written;
            match result {
                Ok(()) => {}
                Err(TapeError::Eom) => {
                    self.pause(MoverPauseReason::EOM, pos)?;
                    pos = self.window.offset;
                }
                Err(e) => {
                    let moved = self.progress.bytes_moved.load(Ordering::Relaxed);
                    return Err(halt(
                        MoverHaltReason::INTERNAL_ERROR,
                        Some(format!(
                            "tape write failed after {moved} bytes of the stream: {e}"
                        )),
                    ));
                }
            }
        }
    }

    fn recover(&mut self) -> Halt {
        let end = self.recover_loop();
        if self.aborted() {
            return halt(MoverHaltReason::ABORTED, None);
        }
        match end {
            Ok(()) => halt(MoverHaltReason::CONNECT_CLOSED, None),
            Err(h) => h,
        }
    }

    /// Waits for the next MOVER_READ; meanwhile notices the peer going away.
    fn next_read(&mut self) -> Result<(u64, u64), Halt> {
        loop {
            match self.commands.recv_timeout(POLL) {
                Ok(Command::Read { offset, length }) => return Ok((offset, length)),
                Ok(Command::Continue { .. }) => continue,
                Ok(Command::Close) => return Err(halt(MoverHaltReason::CONNECT_CLOSED, None)),
                Ok(Command::Abort) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(halt(MoverHaltReason::ABORTED, None))
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.aborted() {
                        return Err(halt(MoverHaltReason::ABORTED, None));
                    }
                    if self.peer_gone() {
                        return Err(halt(MoverHaltReason::CONNECT_CLOSED, None));
                    }
                }
            }
        }
    }

    /// The peer closed the data connection (recover mode, between reads).
    fn peer_gone(&self) -> bool {
        match &self.conn {
            Conn::Local(end) => end.peer_closed(),
            Conn::Tcp(s) => {
                if s.set_nonblocking(true).is_err() {
                    return true;
                }
                let mut b = [0u8; 1];
                let gone = match s.peek(&mut b) {
                    Ok(n) => n == 0,
                    Err(e) => e.kind() != io::ErrorKind::WouldBlock,
                };
                let _ = s.set_nonblocking(false);
                gone
            }
        }
    }

    fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        match &mut self.conn {
            Conn::Local(end) => end.send(chunk, &self.abort),
            Conn::Tcp(s) => s.write_all(&chunk),
        }
    }

    /// Recover: serves each MOVER_READ from whole tape records, spacing within the window;
    /// outside it pauses SEEK, at a filemark EOF, at blank tape EOM.
    fn recover_loop(&mut self) -> Result<(), Halt> {
        let rs = self.rs as u64;
        // the tape record under the head, counted in records of the stream
        let mut head = self.window.offset / rs;
        let mut cached: Option<(u64, Bytes)> = None;
        let mut spare: Option<BytesMut> = None;
        // records handed to DATA, whose buffers come back once DATA has dropped them
        let mut sent: VecDeque<Bytes> = VecDeque::new();
        loop {
            let (offset, length) = self.next_read()?;
            let mut want = offset;
            let mut left = length;
            while left > 0 {
                if self.aborted() {
                    return Err(halt(MoverHaltReason::ABORTED, None));
                }
                if !self.window.contains(want) {
                    self.pause(MoverPauseReason::SEEK, want)?;
                    head = self.window.offset / rs;
                    cached = None;
                    continue;
                }
                let rec = want / rs;
                let skip = (want % rs) as usize;
                let data = match &cached {
                    Some((r, b)) if *r == rec => b.clone(),
                    _ => {
                        if rec != head {
                            let n = rec as i64 - head as i64;
                            let spaced = self.on_drive(|d| d.space_records(n))?;
                            match spaced {
                                Ok(s) if s.resid == 0 => head = rec,
                                Ok(_) => {
                                    // a filemark or BOT lies between: the DMA must place us
                                    self.pause(MoverPauseReason::SEEK, want)?;
                                    head = self.window.offset / rs;
                                    cached = None;
                                    continue;
                                }
                                Err(e) => return Err(media_error("space", e)),
                            }
                        }
                        // reuse a record's buffer once DATA is done with it: a fresh one costs
                        // an allocation and zeroing of a whole record
                        if let Some((_, old)) = cached.take() {
                            sent.push_back(old);
                        }
                        let mut buf = reusable(&mut sent)
                            .or_else(|| spare.take())
                            .unwrap_or_default();
                        buf.resize(self.rs, 0);
                        match self.on_drive(|d| d.read_record(&mut buf))? {
                            // the rest of a longer record would be lost in the middle of the
                            // stream: a reader downstream would write wrong bytes into files
                            Ok((n, full)) if full > n => {
                                return Err(halt(
                                    MoverHaltReason::MEDIA_ERROR,
                                    Some(longer_record(full, self.rs)),
                                ))
                            }
                            Ok((n, _)) => {
                                buf.truncate(n);
                                head += 1;
                                self.progress.record_num.store(head, Ordering::Relaxed);
                                let b = buf.freeze();
                                cached = Some((rec, b.clone()));
                                b
                            }
                            Err(e @ (TapeError::Eof | TapeError::Eom)) => {
                                spare = Some(buf);
                                let reason = if e == TapeError::Eof {
                                    MoverPauseReason::EOF
                                } else {
                                    MoverPauseReason::EOM
                                };
                                self.pause(reason, want)?;
                                head = self.window.offset / rs;
                                continue;
                            }
                            Err(e) => return Err(media_error("read", e)),
                        }
                    }
                };
                if skip >= data.len() {
                    // past the short last record of the stream: the end of the image
                    self.pause(MoverPauseReason::EOF, want)?;
                    head = self.window.offset / rs;
                    cached = None;
                    continue;
                }
                let take = ((data.len() - skip) as u64)
                    .min(left)
                    .min(self.window.end() - want);
                let chunk = data.slice(skip..skip + take as usize);
                drop(data);
                want += take;
                if left != INFINITE {
                    left -= take;
                }
                // counted before the peer can have the bytes: once it has the last of them it
                // may ask for the next read at once, and that must not find this one pending
                self.progress.bytes_moved.fetch_add(take, Ordering::Relaxed);
                self.progress
                    .bytes_left_to_read
                    .store(left, Ordering::Relaxed);
                self.send(chunk)
                    .map_err(|e| self.conn_failed(e, "sending recovered data"))?;
            }
            self.progress.bytes_left_to_read.store(0, Ordering::Relaxed);
        }
    }
}

/// Records kept for reuse of their buffers: more than the LOCAL connection holds in flight.
const RECYCLE: usize = 16;

/// The buffer of the oldest record in `sent` nobody else holds any more; the list is kept to
/// `RECYCLE` records (older ones are simply dropped).
fn reusable(sent: &mut VecDeque<Bytes>) -> Option<BytesMut> {
    let mut found = None;
    for _ in 0..sent.len() {
        let Some(b) = sent.pop_front() else { break };
        match b.try_into_mut() {
            Ok(m) => {
                found = Some(m);
                break;
            }
            Err(b) => sent.push_back(b),
        }
    }
    while sent.len() > RECYCLE {
        sent.pop_front();
    }
    found
}

/// Why a recovery stops at a record longer than the mover's record size.
pub fn longer_record(full: usize, record_size: usize) -> String {
    format!(
        "tape record of {full} bytes, mover record size {record_size}: set the record size \
         the image was written with (MOVER_SET_RECORD_SIZE {full}, e.g. ndmjob -b {})",
        full / 512
    )
}

fn media_error(what: &str, e: TapeError) -> Halt {
    halt(
        MoverHaltReason::INTERNAL_ERROR,
        Some(format!("tape {what} failed: {e}")),
    )
}

#[cfg(test)]
mod tests;
