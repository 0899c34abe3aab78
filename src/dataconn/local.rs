//! The LOCAL data connection (spec: NDMP_ADDR_LOCAL): DATA and MOVER of one session joined
//! in-process by channels of whole record buffers, so no socket and no per-record copy.

use crate::format::out::ImageOut;
use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Records in flight each way: enough to keep the tape streaming while the other side
/// hiccups, small enough to bound memory by a few records.
const DEPTH: usize = 8;

/// How often a blocked end looks at its abort flag.
pub const POLL: Duration = Duration::from_millis(100);

/// Creates a connected pair for records of `record_size` bytes.
pub fn pipe(record_size: usize) -> (MoverEnd, DataEnd) {
    let (full_tx, full_rx) = bounded(DEPTH);
    let (free_tx, free_rx) = bounded(DEPTH + 2);
    let (out_tx, out_rx) = bounded(DEPTH);
    let closed = Arc::new(AtomicBool::new(false));
    (
        MoverEnd {
            full: full_rx,
            free: free_tx,
            out: out_tx,
            closed: closed.clone(),
        },
        DataEnd {
            record_size,
            cur: Vec::with_capacity(record_size),
            full: Some(full_tx),
            free: free_rx,
            out: out_rx,
            chunk: Bytes::new(),
            closed,
            abort: None,
        },
    )
}

/// The mover's side.
#[derive(Debug)]
pub struct MoverEnd {
    full: Receiver<Vec<u8>>,
    free: Sender<Vec<u8>>,
    out: Sender<Bytes>,
    closed: Arc<AtomicBool>,
}

impl MoverEnd {
    /// Backup: replaces `buf` with the next record from DATA (the old buffer goes back for
    /// reuse). Returns its length: the record size, less only for the last one, 0 at the end
    /// of the stream.
    pub fn next_record(&mut self, buf: &mut Vec<u8>, abort: &AtomicBool) -> io::Result<usize> {
        loop {
            if abort.load(Ordering::Relaxed) {
                return Err(aborted());
            }
            match self.full.recv_timeout(POLL) {
                Ok(rec) => {
                    let old = std::mem::replace(buf, rec);
                    let _ = self.free.try_send(old);
                    return Ok(buf.len());
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
    }

    /// Like [`MoverEnd::next_record`], but waits at most `wait`: `None` if no record came.
    pub fn next_record_within(
        &mut self,
        buf: &mut Vec<u8>,
        wait: Duration,
    ) -> io::Result<Option<usize>> {
        match self.full.recv_timeout(wait) {
            Ok(rec) => {
                let old = std::mem::replace(buf, rec);
                let _ = self.free.try_send(old);
                Ok(Some(buf.len()))
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Ok(Some(0)),
        }
    }

    /// Recover: hands a slice of a tape record to DATA without copying it.
    pub fn send(&mut self, chunk: Bytes, abort: &AtomicBool) -> io::Result<()> {
        let mut chunk = chunk;
        loop {
            if abort.load(Ordering::Relaxed) {
                return Err(aborted());
            }
            match self.out.send_timeout(chunk, POLL) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(c)) => chunk = c,
                Err(SendTimeoutError::Disconnected(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the DATA server closed the LOCAL connection",
                    ))
                }
            }
        }
    }

    /// A record from DATA is waiting.
    pub fn record_ready(&self) -> bool {
        !self.full.is_empty()
    }

    /// DATA has gone away.
    pub fn peer_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

/// The DATA server's side: `io::Write` for backup, `io::Read` for recover.
#[derive(Debug)]
pub struct DataEnd {
    record_size: usize,
    cur: Vec<u8>,
    full: Option<Sender<Vec<u8>>>,
    free: Receiver<Vec<u8>>,
    out: Receiver<Bytes>,
    chunk: Bytes,
    closed: Arc<AtomicBool>,
    abort: Option<Arc<AtomicBool>>,
}

impl DataEnd {
    /// A flag that, once set, makes a write blocked on a paused mover give up.
    pub fn set_abort(&mut self, abort: Arc<AtomicBool>) {
        self.abort = Some(abort);
    }

    fn ship(&mut self) -> io::Result<()> {
        let next = self
            .free
            .try_recv()
            .map(|mut b| {
                b.clear();
                b
            })
            .unwrap_or_else(|_| Vec::with_capacity(self.record_size));
        let rec = std::mem::replace(&mut self.cur, next);
        self.send(rec)
    }

    fn send(&mut self, mut rec: Vec<u8>) -> io::Result<()> {
        let tx = self.full.as_ref().ok_or_else(closed_pipe)?;
        loop {
            if self
                .abort
                .as_ref()
                .is_some_and(|a| a.load(Ordering::Relaxed))
            {
                return Err(aborted());
            }
            match tx.send_timeout(rec, POLL) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(r)) => rec = r,
                Err(SendTimeoutError::Disconnected(_)) => return Err(closed_pipe()),
            }
        }
    }

    /// Ends the backup stream: the partial last record goes out and the mover sees the end.
    pub fn finish(&mut self) -> io::Result<()> {
        if !self.cur.is_empty() {
            self.ship()?;
        }
        self.full = None;
        Ok(())
    }
}

/// An abort. Not `Interrupted`: `write_all` and `read_exact` retry those, and would spin.
fn aborted() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "aborted")
}

fn closed_pipe() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the mover closed the LOCAL connection",
    )
}

impl io::Write for DataEnd {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.record_size - self.cur.len();
        let n = room.min(data.len());
        self.cur.extend_from_slice(&data[..n]);
        if self.cur.len() == self.record_size {
            self.ship()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Backup: a writer fills whole records in place and they go to the mover as they are.
impl ImageOut for DataEnd {
    fn chunk(&self) -> usize {
        self.record_size
    }

    fn hand_over(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        if !self.cur.is_empty() || buf.len() != self.record_size {
            // bytes written before, or not a record: they go through the record being filled
            return io::Write::write_all(self, buf);
        }
        // a buffer the mover is done with, whatever its old contents: the writer overwrites
        // all of it, so it is not cleared
        let next = self
            .free
            .try_recv()
            .unwrap_or_else(|_| vec![0; self.record_size]);
        let rec = std::mem::replace(buf, next);
        self.send(rec)
    }
}

impl DataEnd {
    /// Like `read`, but waits at most `wait` for the mover's next chunk: Ok(0) then too.
    pub fn read_within(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<usize> {
        if self.chunk.is_empty() {
            match self.out.recv_timeout(wait) {
                Ok(c) => self.chunk = c,
                Err(_) => return Ok(0),
            }
        }
        io::Read::read(self, buf)
    }
}

impl DataEnd {
    /// Like `fill_buf`, but waits at most `wait` for the mover's next chunk: empty then too.
    pub fn fill_within(&mut self, wait: Duration) -> io::Result<&[u8]> {
        if self.chunk.is_empty() {
            if let Ok(c) = self.out.recv_timeout(wait) {
                self.chunk = c;
            }
        }
        Ok(&self.chunk)
    }
}

impl io::Read for DataEnd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = io::BufRead::fill_buf(self)?;
        let n = buf.len().min(chunk.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        io::BufRead::consume(self, n);
        Ok(n)
    }
}

/// Recover: the mover's record buffers are the read buffer, so a reader can take file data
/// straight out of them, and dropping a consumed chunk lets the mover reuse its buffer.
impl io::BufRead for DataEnd {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.chunk.is_empty() {
            match self.out.recv() {
                Ok(c) => self.chunk = c,
                Err(_) => break,
            }
        }
        Ok(&self.chunk)
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.chunk.len());
        bytes::Buf::advance(&mut self.chunk, n);
        if self.chunk.is_empty() {
            // the last reference to the mover's record goes now, not at the next fill
            self.chunk = Bytes::new();
        }
    }
}

impl Drop for DataEnd {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn backup_records_arrive_whole_and_the_last_one_short() {
        let (mut m, mut d) = pipe(4);
        let t = std::thread::spawn(move || {
            d.write_all(b"abcdefghij").unwrap();
            d.finish().unwrap();
        });
        let abort = AtomicBool::new(false);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            let n = m.next_record(&mut buf, &abort).unwrap();
            if n == 0 {
                break;
            }
            got.push(buf.clone());
        }
        t.join().unwrap();
        assert_eq!(
            got,
            vec![b"abcd".to_vec(), b"efgh".to_vec(), b"ij".to_vec()]
        );
    }

    /// A writer's whole records go to the mover as they are (the same allocation), and it
    /// gets a record-sized buffer back; after a plain write they go through the copy, so
    /// the stream keeps its order either way.
    #[test]
    fn whole_records_are_handed_over_without_a_copy() {
        let (mut m, mut d) = pipe(4);
        let abort = AtomicBool::new(false);
        let mut buf = b"abcd".to_vec();
        let sent = buf.as_ptr() as usize;
        d.hand_over(&mut buf).unwrap();
        assert_eq!(buf.len(), 4, "a record-sized buffer comes back");
        let mut rec = Vec::new();
        assert_eq!(m.next_record(&mut rec, &abort).unwrap(), 4);
        assert_eq!(rec, b"abcd");
        assert_eq!(rec.as_ptr() as usize, sent, "the very buffer, not a copy");
        d.write_all(b"ef").unwrap();
        buf.copy_from_slice(b"ghij");
        d.hand_over(&mut buf).unwrap();
        d.finish().unwrap();
        let mut got = Vec::new();
        while m.next_record(&mut rec, &abort).unwrap() > 0 {
            got.extend_from_slice(&rec);
        }
        assert_eq!(got, b"efghij");
    }

    #[test]
    fn recover_chunks_read_back_in_order_and_drop_is_seen() {
        let (mut m, mut d) = pipe(4);
        let abort = AtomicBool::new(false);
        m.send(Bytes::from_static(b"hello "), &abort).unwrap();
        m.send(Bytes::from_static(b"world"), &abort).unwrap();
        drop(m);
        let mut s = String::new();
        d.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello world");
        let (m, d) = pipe(4);
        assert!(!m.peer_closed());
        drop(d);
        assert!(m.peer_closed());
    }

    #[test]
    fn an_aborted_mover_stops_waiting() {
        let (mut m, _d) = pipe(4);
        let abort = AtomicBool::new(true);
        let mut buf = Vec::new();
        let e = m.next_record(&mut buf, &abort).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
    }
}
