//! Slows down repeated authentication failures from one peer address, so password guessing
//! costs time while a DMA that mistyped once is barely delayed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// The longest delay imposed on one attempt.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// Peers remembered at most; beyond this the stalest are dropped, so a flood of addresses
/// cannot grow the table without bound.
const MAX_PEERS: usize = 10_000;

/// The failure count and the time of the last failure of each peer address.
#[derive(Debug, Default)]
pub struct Throttle {
    peers: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Throttle {
    /// Records a failure and returns how long to wait before answering it: nothing for the
    /// first, then 250 ms doubling per further failure, up to 5 s.
    pub fn failure(&self, ip: IpAddr) -> Duration {
        crate::metrics::AUTH_FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.len() >= MAX_PEERS {
            peers.retain(|_, (_, t)| now.duration_since(*t) < FORGET_AFTER);
            if peers.len() >= MAX_PEERS {
                if let Some(oldest) = peers.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k) {
                    peers.remove(&oldest);
                }
            }
        }
        let e = peers.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) > FORGET_AFTER {
            e.0 = 0;
        }
        e.0 = e.0.saturating_add(1);
        e.1 = now;
        delay_for(e.0)
    }

    /// A success clears the peer's record.
    pub fn success(&self, ip: IpAddr) {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
    }

    /// Failures currently counted against `ip`.
    pub fn failures(&self, ip: IpAddr) -> u32 {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .map(|e| e.0)
            .unwrap_or(0)
    }
}

fn delay_for(failures: u32) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let ms = 250u64.saturating_mul(1 << (failures - 2).min(16));
    Duration::from_millis(ms).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_reset() {
        let t = Throttle::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(t.failure(ip), Duration::ZERO);
        assert_eq!(t.failure(ip), Duration::from_millis(250));
        assert_eq!(t.failure(ip), Duration::from_millis(500));
        for _ in 0..20 {
            t.failure(ip);
        }
        assert_eq!(t.failure(ip), MAX_DELAY);
        assert_eq!(t.failure(other), Duration::ZERO, "peers are counted apart");
        t.success(ip);
        assert_eq!(t.failures(ip), 0);
        assert_eq!(t.failure(ip), Duration::ZERO);
    }
}
