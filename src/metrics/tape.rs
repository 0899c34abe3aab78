//! The tape side of the metrics: a device wrapper that counts each drive's bytes and record
//! write times into its [`DriveStats`](super::DriveStats).

use super::{drive, DriveStats};
use crate::tape::{Spaced, TapeDevice, TapeError, TapeStatus, Written};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// A tape device that counts what goes through it into its drive's [`DriveStats`]; everything
/// else passes straight on. The library wraps every drive it opens in one.
#[derive(Debug)]
pub struct Metered {
    inner: Box<dyn TapeDevice>,
    stats: Arc<DriveStats>,
}

/// `device`, counted as drive `name`.
pub fn metered(name: &str, device: Box<dyn TapeDevice>) -> Box<dyn TapeDevice> {
    Box::new(Metered {
        inner: device,
        stats: drive(name),
    })
}

impl TapeDevice for Metered {
    fn write_record(&mut self, data: &[u8]) -> Result<Written, TapeError> {
        let t = Instant::now();
        let r = self.inner.write_record(data);
        if let Ok(w) = &r {
            self.stats.write_latency.observe_n(t.elapsed(), 1);
            self.stats
                .written
                .fetch_add(w.bytes as u64, Ordering::Relaxed);
        }
        r
    }

    /// A batch written in one call counts as that many records of an equal share of its time:
    /// the device does not say how long each took.
    fn write_records(&mut self, records: &[&[u8]]) -> (usize, Result<(), TapeError>) {
        let t = Instant::now();
        let (n, r) = self.inner.write_records(records);
        if n > 0 {
            let each = t.elapsed() / n as u32;
            self.stats.write_latency.observe_n(each, n as u64);
            let bytes: usize = records[..n].iter().map(|r| r.len()).sum();
            self.stats
                .written
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
        (n, r)
    }

    fn read_record(&mut self, buf: &mut [u8]) -> Result<(usize, usize), TapeError> {
        let r = self.inner.read_record(buf);
        if let Ok((n, _)) = &r {
            self.stats.read.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn write_filemarks(&mut self, count: u32) -> Result<(), TapeError> {
        self.inner.write_filemarks(count)
    }

    fn space_filemarks(&mut self, count: i64) -> Result<Spaced, TapeError> {
        self.inner.space_filemarks(count)
    }

    fn space_records(&mut self, count: i64) -> Result<Spaced, TapeError> {
        self.inner.space_records(count)
    }

    fn rewind(&mut self) -> Result<(), TapeError> {
        self.inner.rewind()
    }

    fn unload(&mut self) -> Result<(), TapeError> {
        self.inner.unload()
    }

    fn ready(&mut self) -> Result<(), TapeError> {
        self.inner.ready()
    }

    fn status(&mut self) -> Result<TapeStatus, TapeError> {
        self.inner.status()
    }

    fn flush(&mut self) -> Result<(), TapeError> {
        self.inner.flush()
    }
}
