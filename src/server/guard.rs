//! Online password guessing, bounded.
//!
//! Every wrong password costs the guesser: after [`FREE_FAILURES`] failures an
//! address must wait before it may try again, and the wait doubles with each
//! further failure up to [`MAX_LOCKOUT`]. Across all addresses, at most
//! [`GLOBAL_FAILURES_PER_MINUTE`] failures are allowed per minute; once that
//! budget is spent, new logins are refused until it refills. Members already
//! in the room are never affected: the guard only gates new logins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures an address may make before it has to wait (typos happen).
pub const FREE_FAILURES: u32 = 3;
/// First wait after the free failures; doubles with each further failure.
pub const BASE_LOCKOUT: Duration = Duration::from_secs(2);
/// Longest wait imposed on one address.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(300);
/// An address's record is forgotten this long after its last failure.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);
/// Failed logins allowed per minute across all addresses.
pub const GLOBAL_FAILURES_PER_MINUTE: u32 = 30;
/// Addresses tracked at once; beyond it the oldest records are dropped first.
pub const MAX_TRACKED_ADDRESSES: usize = 4096;

/// Why a login may not be tried now, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This address failed too often.
    Address { retry_after: Duration },
    /// The whole room is under a guessing attack.
    Global { retry_after: Duration },
}

struct Record {
    failures: u32,
    locked_until: Instant,
    last_failure: Instant,
}

/// Failure bookkeeping; the caller passes the clock so tests can drive it.
pub struct GuessGuard {
    addresses: HashMap<IpAddr, Record>,
    /// Token bucket of allowed failures: `tokens` of [`GLOBAL_FAILURES_PER_MINUTE`].
    tokens: f64,
    refilled_at: Instant,
}

/// Guessers rotate IPv6 addresses within their /64: count the prefix.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl GuessGuard {
    pub fn new(now: Instant) -> Self {
        Self {
            addresses: HashMap::new(),
            tokens: f64::from(GLOBAL_FAILURES_PER_MINUTE),
            refilled_at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let per_sec = f64::from(GLOBAL_FAILURES_PER_MINUTE) / 60.0;
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(GLOBAL_FAILURES_PER_MINUTE));
        self.refilled_at = now;
    }

    /// Starts a login from `ip`: refused while the address or the room is
    /// locked out, otherwise charged at once as if it failed. A correct
    /// password refunds it ([`GuessGuard::succeeded`]). Charging up front is
    /// what bounds guesses made in parallel: a guesser cannot start many
    /// logins on one allowance and have the failures counted only later.
    pub fn begin(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        self.check(ip, now)?;
        self.failed(ip, now);
        Ok(())
    }

    /// May `ip` start a login now?
    fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if let Some(record) = self.addresses.get(&key(ip))
            && record.locked_until > now
        {
            return Err(Refusal::Address {
                retry_after: record.locked_until - now,
            });
        }
        self.refill(now);
        if self.tokens < 1.0 {
            let per_sec = f64::from(GLOBAL_FAILURES_PER_MINUTE) / 60.0;
            return Err(Refusal::Global {
                retry_after: Duration::from_secs_f64((1.0 - self.tokens) / per_sec),
            });
        }
        Ok(())
    }

    /// Counts an attempt from `ip` against its allowance and the room's.
    fn failed(&mut self, ip: IpAddr, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(0.0);
        self.forget_old(now);
        let record = self.addresses.entry(key(ip)).or_insert(Record {
            failures: 0,
            locked_until: now,
            last_failure: now,
        });
        record.failures += 1;
        record.last_failure = now;
        if record.failures > FREE_FAILURES {
            let doublings = (record.failures - FREE_FAILURES - 1).min(16);
            let wait = BASE_LOCKOUT.saturating_mul(1 << doublings).min(MAX_LOCKOUT);
            record.locked_until = now + wait;
        }
    }

    /// A correct password from `ip` clears its record and gives back the
    /// room-wide allowance its login was charged.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.addresses.remove(&key(ip));
        self.tokens = (self.tokens + 1.0).min(f64::from(GLOBAL_FAILURES_PER_MINUTE));
    }

    fn forget_old(&mut self, now: Instant) {
        self.addresses.retain(|_, r| {
            now.saturating_duration_since(r.last_failure) < FAILURE_MEMORY || r.locked_until > now
        });
        if self.addresses.len() >= MAX_TRACKED_ADDRESSES {
            let oldest = self
                .addresses
                .iter()
                .min_by_key(|(_, r)| r.last_failure)
                .map(|(ip, _)| *ip);
            if let Some(ip) = oldest {
                self.addresses.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn free_failures_then_doubling_waits() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        for _ in 0..FREE_FAILURES {
            assert_eq!(guard.check(A, t0), Ok(()));
            guard.failed(A, t0);
        }
        assert_eq!(guard.check(A, t0), Ok(()), "typos are free");
        guard.failed(A, t0);
        assert_eq!(
            guard.check(A, t0),
            Err(Refusal::Address {
                retry_after: BASE_LOCKOUT
            })
        );
        assert_eq!(guard.check(B, t0), Ok(()), "other addresses are unaffected");
        let t1 = t0 + BASE_LOCKOUT;
        assert_eq!(guard.check(A, t1), Ok(()));
        guard.failed(A, t1);
        assert_eq!(
            guard.check(A, t1),
            Err(Refusal::Address {
                retry_after: BASE_LOCKOUT * 2
            })
        );
        guard.succeeded(A);
        assert_eq!(guard.check(A, t1), Ok(()));
    }

    #[test]
    fn logins_started_in_parallel_are_charged_up_front() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        // 128 logins started at once from one address, none finished yet.
        let started = (0..128).filter(|_| guard.begin(A, t0).is_ok()).count();
        assert_eq!(started, FREE_FAILURES as usize + 1);
        // Across many addresses, the room-wide budget bounds them.
        let mut guard = GuessGuard::new(t0);
        let started = (0..1000u32)
            .filter(|i| {
                let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
                guard.begin(ip, t0).is_ok()
            })
            .count();
        assert_eq!(started, GLOBAL_FAILURES_PER_MINUTE as usize);
        // A success gives its allowance back.
        guard.succeeded(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000)));
        assert_eq!(guard.begin(B, t0), Ok(()));
    }

    #[test]
    fn waits_are_capped() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        for _ in 0..40 {
            guard.failed(A, t0);
        }
        match guard.check(A, t0) {
            Err(Refusal::Address { retry_after }) => assert_eq!(retry_after, MAX_LOCKOUT),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn global_budget_bounds_failures_per_minute() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        let mut allowed = 0;
        // Many addresses, one guess each, all within one instant.
        for i in 0..1000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            if guard.check(ip, t0).is_ok() {
                allowed += 1;
                guard.failed(ip, t0);
            }
        }
        assert_eq!(allowed, GLOBAL_FAILURES_PER_MINUTE);
        assert!(matches!(guard.check(A, t0), Err(Refusal::Global { .. })));
        // A minute later the budget is back.
        assert_eq!(guard.check(A, t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn ipv6_guessers_are_counted_per_64() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        for i in 0..=FREE_FAILURES {
            let ip: IpAddr = format!("2001:db8::{}", i + 1).parse().unwrap();
            guard.failed(ip, t0);
        }
        let fresh: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert!(matches!(
            guard.check(fresh, t0),
            Err(Refusal::Address { .. })
        ));
    }

    #[test]
    fn tracking_is_bounded() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 + 100) {
            guard.tokens = 100.0;
            guard.failed(IpAddr::V4(std::net::Ipv4Addr::from(i)), t0);
        }
        assert!(guard.addresses.len() <= MAX_TRACKED_ADDRESSES);
    }
}
