//! Connection admission: how many connections may wait to authenticate, from all addresses
//! and from one, so a flood from one place cannot lock DMAs out; refusals logged per burst.

use crate::config::AdmissionConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Refusals within this long of the first are one burst: logged once, counted, summed up.
const BURST: Duration = Duration::from_secs(10);

/// Why a connection was not admitted; the text goes to the peer and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Too many connections waiting to authenticate, from everywhere.
    Unauthenticated(usize),
    /// Too many from this address.
    FromAddress(IpAddr, usize),
    /// The authenticated sessions are at `max_sessions`.
    Sessions(usize),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Unauthenticated(n) => write!(
                f,
                "{n} connections are already waiting to authenticate; try again later"
            ),
            Refused::FromAddress(ip, n) => write!(
                f,
                "{n} connections from {ip} are already waiting to authenticate; try again later"
            ),
            Refused::Sessions(n) => write!(f, "session limit reached ({n}); try again later"),
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    waiting: usize,
    by_address: HashMap<IpAddr, usize>,
    sessions: usize,
    /// The burst of refusals under way: when it began and how many since.
    burst: Option<(Instant, u64)>,
}

/// The admission counters every connection goes through.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionConfig,
    max_sessions: usize,
    counts: Mutex<Counts>,
}

/// A connection's place: waiting to authenticate, then (after [`Ticket::authenticated`]) a
/// session. Dropping it frees the place.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
    authenticated: bool,
}

/// What to log about a refusal: the first of a burst, or the sum of one that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BurstLog {
    /// Nothing: part of a burst already logged.
    Quiet,
    /// The first refusal of a burst; `ended` sums up the previous one, if it had more.
    First {
        /// Refusals of the previous burst after its first.
        ended: u64,
    },
}

impl Admission {
    /// Counters for these limits; `max_sessions` caps authenticated sessions.
    pub fn new(limits: AdmissionConfig, max_sessions: usize) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            max_sessions,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `ip` to wait for authentication, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        let mut c = self.counts();
        if c.sessions >= self.max_sessions {
            return Err(Refused::Sessions(self.max_sessions));
        }
        if c.waiting >= self.limits.max_unauthenticated {
            return Err(Refused::Unauthenticated(c.waiting));
        }
        let from = c.by_address.get(&ip).copied().unwrap_or(0);
        if from >= self.limits.max_unauthenticated_per_address {
            return Err(Refused::FromAddress(ip, from));
        }
        c.waiting += 1;
        crate::metrics::UNAUTHENTICATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *c.by_address.entry(ip).or_default() += 1;
        Ok(Ticket {
            admission: self.clone(),
            ip,
            authenticated: false,
        })
    }

    /// Counts a refusal `now` and says whether to log it.
    pub fn refused(&self, now: Instant) -> BurstLog {
        let mut c = self.counts();
        match &mut c.burst {
            Some((since, n)) if now.duration_since(*since) < BURST => {
                *n += 1;
                BurstLog::Quiet
            }
            other => {
                let ended = other.map_or(0, |(_, n)| n);
                *other = Some((now, 0));
                BurstLog::First { ended }
            }
        }
    }

    /// Connections waiting to authenticate now.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.counts().waiting
    }

    /// Authenticated sessions now.
    #[cfg(test)]
    pub fn sessions(&self) -> usize {
        self.counts().sessions
    }

    /// Seconds a connection may take to authenticate.
    pub fn preauth_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.preauth_timeout_secs)
    }

    fn leave_waiting(c: &mut Counts, ip: IpAddr) {
        c.waiting = c.waiting.saturating_sub(1);
        crate::metrics::UNAUTHENTICATED.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(n) = c.by_address.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                c.by_address.remove(&ip);
            }
        }
    }
}

impl Ticket {
    /// The connection authenticated: it stops waiting and becomes a session. Refused (the
    /// ticket unchanged) when the sessions are at their limit.
    pub fn authenticated(&mut self) -> Result<(), Refused> {
        if self.authenticated {
            return Ok(());
        }
        let a = self.admission.clone();
        let mut c = a.counts();
        if c.sessions >= a.max_sessions {
            return Err(Refused::Sessions(a.max_sessions));
        }
        Admission::leave_waiting(&mut c, self.ip);
        c.sessions += 1;
        self.authenticated = true;
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let a = self.admission.clone();
        let mut c = a.counts();
        if self.authenticated {
            c.sessions = c.sessions.saturating_sub(1);
        } else {
            Admission::leave_waiting(&mut c, self.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per: usize) -> AdmissionConfig {
        AdmissionConfig {
            max_unauthenticated: total,
            max_unauthenticated_per_address: per,
            ..AdmissionConfig::default()
        }
    }

    #[test]
    fn one_address_cannot_take_every_place() {
        let a = Admission::new(limits(5, 2), 10);
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t1 = a.admit(x).unwrap();
        let _t2 = a.admit(x).unwrap();
        assert_eq!(a.admit(x).unwrap_err(), Refused::FromAddress(x, 2));
        let _t3 = a.admit(y).unwrap();
        let _t4 = a.admit(y).unwrap();
        assert_eq!(a.admit(y).unwrap_err(), Refused::FromAddress(y, 2));
        let (z, w): (IpAddr, IpAddr) = ("10.0.0.3".parse().unwrap(), "10.0.0.4".parse().unwrap());
        let _t5 = a.admit(z).unwrap();
        assert_eq!(a.admit(w).unwrap_err(), Refused::Unauthenticated(5));
        drop(t1);
        assert_eq!(a.waiting(), 4);
        assert!(a.admit(x).is_ok(), "a place freed is a place");
    }

    #[test]
    fn authenticated_sessions_leave_the_waiting_room_and_have_their_own_limit() {
        let a = Admission::new(limits(2, 2), 1);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut t = a.admit(ip).unwrap();
        let mut u = a.admit(ip).unwrap();
        t.authenticated().unwrap();
        assert_eq!((a.waiting(), a.sessions()), (1, 1));
        // the waiting room has a place again, the sessions have none
        assert_eq!(u.authenticated().unwrap_err(), Refused::Sessions(1));
        assert_eq!(a.admit(ip).unwrap_err(), Refused::Sessions(1));
        drop(t);
        assert_eq!(a.sessions(), 0);
        u.authenticated().unwrap();
        drop(u);
        assert_eq!((a.waiting(), a.sessions()), (0, 0));
    }

    #[test]
    fn refusals_are_logged_once_per_burst() {
        let a = Admission::new(limits(1, 1), 1);
        let t0 = Instant::now();
        assert_eq!(a.refused(t0), BurstLog::First { ended: 0 });
        for i in 1..100 {
            assert_eq!(a.refused(t0 + Duration::from_millis(i)), BurstLog::Quiet);
        }
        assert_eq!(a.refused(t0 + BURST * 2), BurstLog::First { ended: 99 });
    }
}
