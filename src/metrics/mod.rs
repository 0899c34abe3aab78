//! Prometheus metrics: the process-wide counters the code that does the work moves (tape
//! drives, admission, authentication, file history); [`expose`] serves them at `GET /metrics`.
//!
//! The counters are statics, as in every Prometheus client: the code that counts (the tape
//! device wrapper, the admission counters, the failure throttle, the file-history queue) has
//! no handle on a server object, and one process serves one set of metrics. This file imports
//! nothing of the crate, so anything may count without an import cycle.

pub mod expose;
pub mod tape;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Failed authentications, NDMP and REST alike (both go through the failure throttle).
pub static AUTH_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Connections admitted and not yet authenticated.
pub static UNAUTHENTICATED: AtomicI64 = AtomicI64::new(0);

/// File-history entries (files, directories, nodes) sent to DMAs.
pub static FH_POSTED: AtomicU64 = AtomicU64::new(0);

/// File-history entries a backup produced that wait for the session to post them.
pub static FH_QUEUED: AtomicI64 = AtomicI64::new(0);

/// Upper bounds of the latency buckets, in seconds: from a page-cache write of a virtual
/// cartridge (tens of microseconds) to a real drive repositioning (seconds).
pub const BOUNDS: [f64; 16] = [
    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    1.0, 5.0, 30.0,
];

/// A latency histogram over [`BOUNDS`], lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket, not cumulative; the last one is above every bound.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Counts `n` observations of `each`.
    pub fn observe_n(&self, each: Duration, n: u64) {
        let secs = each.as_secs_f64();
        let i = BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BOUNDS.len());
        self.buckets[i].fetch_add(n, Ordering::Relaxed);
        let nanos = u64::try_from(each.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos
            .fetch_add(nanos.saturating_mul(n), Ordering::Relaxed);
    }

    /// The cumulative counts per bound, the total count and the sum in seconds. The count is
    /// the buckets' own total, so `+Inf` and `_count` always agree with the buckets.
    pub fn read(&self) -> (Vec<u64>, u64, f64) {
        let mut acc = 0;
        let mut cumulative = Vec::with_capacity(BOUNDS.len());
        for (i, b) in self.buckets.iter().enumerate() {
            acc += b.load(Ordering::Relaxed);
            if i < BOUNDS.len() {
                cumulative.push(acc);
            }
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (cumulative, acc, sum)
    }
}

/// What one tape drive has done since the server started.
#[derive(Debug, Default)]
pub struct DriveStats {
    /// Bytes written in records (filemarks are not data).
    pub written: AtomicU64,
    /// Bytes read from records.
    pub read: AtomicU64,
    /// How long each record write took.
    pub write_latency: Histogram,
}

/// The counters of every drive opened so far, by name.
pub type Drives = BTreeMap<String, Arc<DriveStats>>;
static DRIVES: Mutex<Drives> = Mutex::new(BTreeMap::new());

/// Every drive opened so far, by name.
pub fn drives() -> std::sync::MutexGuard<'static, Drives> {
    DRIVES.lock().unwrap_or_else(|p| p.into_inner())
}

/// The counters of drive `name`, made at its first open.
pub fn drive(name: &str) -> Arc<DriveStats> {
    drives().entry(name.to_string()).or_default().clone()
}

/// `n` file-history entries are about to go into a session's queue.
pub fn fh_enqueue(n: u64) {
    FH_QUEUED.fetch_add(n as i64, Ordering::Relaxed);
}

/// `n` entries left the queue: taken by the session, refused by a closed queue, or drained
/// from the queue of a session going away.
pub fn fh_unqueue(n: u64) {
    FH_QUEUED.fetch_sub(n as i64, Ordering::Relaxed);
}

/// `n` entries were posted to the DMA.
pub fn fh_posted(n: u64) {
    FH_POSTED.fetch_add(n, Ordering::Relaxed);
}
