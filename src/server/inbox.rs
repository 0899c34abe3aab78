//! The receiving side of a control connection: RPC record marking read straight from the
//! socket, each fragment paid for from the server-wide record budget before it is buffered.

use crate::wire::record::RecordError;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const LAST_FRAGMENT: u32 = 0x8000_0000;

/// The largest record accepted before authentication: CONNECT_OPEN, CONFIG_GET_SERVER_INFO,
/// CONFIG_GET_AUTH_ATTR and CONNECT_CLIENT_AUTH (two strings) fit many times over.
pub const PRE_AUTH_MAX_RECORD: usize = 8 << 10;

/// Records up to this size are read without drawing on the budget: every request but a large
/// TAPE_WRITE fits, so a DMA's control traffic never waits behind others' large records; a
/// session holds at most one such record at a time, so they are bounded by the sessions.
pub const UNMETERED: usize = 64 << 10;

/// One record received, with its share of the budget: dropping it gives the bytes back.
pub struct Received {
    /// The record's payload: one NDMP message.
    pub record: Bytes,
    _budget: Option<OwnedSemaphorePermit>,
}

/// A fragment whose marker has been read.
#[derive(Debug, Clone, Copy)]
struct Fragment {
    len: usize,
    last: bool,
    /// Its bytes are paid for from the budget and `buf` is ready for them.
    paid: bool,
    filled: usize,
}

/// Reads records from one control connection. Cancel-safe: every await either completes or
/// leaves what was read in `self`, so the session loop may drop `next()` for another event.
pub struct Inbox {
    read: BufReader<OwnedReadHalf>,
    max_record: usize,
    budget: Arc<Semaphore>,
    marker: [u8; 4],
    marker_len: usize,
    /// The fragment being read.
    fragment: Option<Fragment>,
    buf: BytesMut,
    /// Payload of the record's earlier fragments.
    partial: BytesMut,
    /// Budget held for the bytes of this record so far.
    held: Option<OwnedSemaphorePermit>,
}

impl Inbox {
    /// An inbox accepting records up to `max_record` bytes, paid from `budget`.
    pub fn new(read: OwnedReadHalf, max_record: usize, budget: Arc<Semaphore>) -> Inbox {
        Inbox {
            read: BufReader::with_capacity(4096, read),
            max_record,
            budget,
            marker: [0; 4],
            marker_len: 0,
            fragment: None,
            buf: BytesMut::new(),
            partial: BytesMut::new(),
            held: None,
        }
    }

    /// Changes the largest record accepted (raised once the DMA has authenticated).
    pub fn set_max_record(&mut self, max_record: usize) {
        self.max_record = max_record;
    }

    fn truncated(&self) -> RecordError {
        RecordError::Truncated {
            buffered: self.partial.len() + self.fragment.map_or(0, |f| f.filled) + self.marker_len,
        }
    }

    /// The next record; `None` when the peer closed cleanly between records.
    pub async fn next(&mut self) -> Option<Result<Received, RecordError>> {
        loop {
            if self.fragment.is_none() {
                while self.marker_len < 4 {
                    match self.read.read(&mut self.marker[self.marker_len..]).await {
                        Ok(0) if self.marker_len == 0 && self.partial.is_empty() => return None,
                        Ok(0) => return Some(Err(self.truncated())),
                        Ok(n) => self.marker_len += n,
                        Err(e) => return Some(Err(e.into())),
                    }
                }
                self.marker_len = 0;
                let marker = u32::from_be_bytes(self.marker);
                let len = (marker & !LAST_FRAGMENT) as usize;
                // checked before any byte of it is paid for or buffered, so a marker
                // announcing 2 GiB costs nothing
                let size = self.partial.len() as u64 + len as u64;
                if size > self.max_record as u64 {
                    return Some(Err(RecordError::TooLarge {
                        size,
                        limit: self.max_record,
                    }));
                }
                self.fragment = Some(Fragment {
                    len,
                    last: marker & LAST_FRAGMENT != 0,
                    paid: false,
                    filled: 0,
                });
            }
            let Some(mut f) = self.fragment else {
                continue;
            };
            if !f.paid {
                let paid = self.held.as_ref().map_or(0, |p| p.num_permits());
                let size = self.partial.len() + f.len;
                let owed = if size <= UNMETERED {
                    0
                } else {
                    size.saturating_sub(paid)
                };
                if owed > 0 {
                    // back-pressure: while the budget is spent this socket is not read; a
                    // cancelled wait changes nothing, the next call waits again
                    let Ok(p) = self.budget.clone().acquire_many_owned(owed as u32).await else {
                        return Some(Err(RecordError::Io(std::io::Error::other(
                            "the record budget is closed",
                        ))));
                    };
                    match &mut self.held {
                        Some(h) => h.merge(p),
                        None => self.held = Some(p),
                    }
                }
                self.buf = BytesMut::zeroed(f.len);
                f.paid = true;
                self.fragment = Some(f);
            }
            while f.filled < f.len {
                match self.read.read(&mut self.buf[f.filled..]).await {
                    Ok(0) => return Some(Err(self.truncated())),
                    Ok(n) => {
                        f.filled += n;
                        self.fragment = Some(f);
                    }
                    Err(e) => return Some(Err(e.into())),
                }
            }
            let last = f.last;
            self.fragment = None;
            let fragment = std::mem::take(&mut self.buf);
            if !last {
                self.partial.extend_from_slice(&fragment);
                continue;
            }
            let record = if self.partial.is_empty() {
                fragment.freeze()
            } else {
                self.partial.extend_from_slice(&fragment);
                self.partial.split().freeze()
            };
            return Some(Ok(Received {
                record,
                _budget: self.held.take(),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair(max: usize, budget: usize) -> (TcpStream, Inbox, Arc<Semaphore>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        let (r, w) = s.into_split();
        std::mem::forget(w);
        let sem = Arc::new(Semaphore::new(budget));
        (c, Inbox::new(r, max, sem.clone()), sem)
    }

    fn frame(payload: &[u8], last: bool) -> Vec<u8> {
        let mut v = (payload.len() as u32 | if last { LAST_FRAGMENT } else { 0 })
            .to_be_bytes()
            .to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[tokio::test]
    async fn records_of_one_and_several_fragments_and_the_budget_they_hold() {
        let (mut c, mut inbox, budget) = pair(1 << 20, UNMETERED + 4096).await;
        let big = vec![7u8; UNMETERED];
        let mut bytes = frame(b"hello", true);
        bytes.extend(frame(&big, false));
        bytes.extend(frame(b"xyz", true));
        bytes.extend(frame(b"ab", false));
        bytes.extend(frame(b"cd", false));
        bytes.extend(frame(b"e", true));
        c.write_all(&bytes).await.unwrap();
        let full = UNMETERED + 4096;
        let r1 = inbox.next().await.unwrap().unwrap();
        assert_eq!(&r1.record[..], b"hello");
        assert_eq!(
            budget.available_permits(),
            full,
            "small records are not metered"
        );
        let r3 = inbox.next().await.unwrap().unwrap();
        assert_eq!(r3.record.len(), UNMETERED + 3);
        assert_eq!(&r3.record[UNMETERED..], b"xyz");
        assert_eq!(budget.available_permits(), full - UNMETERED - 3);
        let r2 = inbox.next().await.unwrap().unwrap();
        assert_eq!(&r2.record[..], b"abcde");
        drop((r1, r2, r3));
        assert_eq!(budget.available_permits(), full, "the bytes are given back");
        drop(c);
        assert!(
            inbox.next().await.is_none(),
            "a clean close between records"
        );
    }

    #[tokio::test]
    async fn an_oversized_marker_is_refused_before_anything_is_paid_or_buffered() {
        let (mut c, mut inbox, budget) = pair(1024, 4096).await;
        c.write_all(&(0x7fff_ffffu32 | LAST_FRAGMENT).to_be_bytes())
            .await
            .unwrap();
        match inbox.next().await.unwrap() {
            Err(RecordError::TooLarge { size, limit }) => {
                assert_eq!((size, limit), (0x7fff_ffff, 1024))
            }
            other => panic!("{:?}", other.map(|r| r.record)),
        }
        assert_eq!(budget.available_permits(), 4096);
    }

    #[tokio::test]
    async fn a_spent_budget_holds_the_next_record_back_until_bytes_come_back() {
        let rec = UNMETERED + 500;
        let (mut c, mut inbox, budget) = pair(1 << 20, rec + 100).await;
        c.write_all(&frame(&vec![1u8; rec], true)).await.unwrap();
        c.write_all(&frame(&vec![2u8; rec], true)).await.unwrap();
        let first = inbox.next().await.unwrap().unwrap();
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(200), inbox.next()).await;
        assert!(waiting.is_err(), "the second record must wait for budget");
        assert_eq!(budget.available_permits(), 100);
        drop(first);
        // the cancelled wait lost nothing: the record arrives whole
        let second = inbox.next().await.unwrap().unwrap();
        assert_eq!(second.record.len(), rec);
        assert!(second.record.iter().all(|b| *b == 2));
    }

    #[tokio::test]
    async fn a_record_cut_short_is_truncated_not_a_clean_close() {
        let (mut c, mut inbox, _) = pair(1024, 4096).await;
        let f = frame(b"0123456789", true);
        c.write_all(&f[..8]).await.unwrap();
        drop(c);
        assert!(matches!(
            inbox.next().await.unwrap(),
            Err(RecordError::Truncated { .. })
        ));
    }
}
