//! Online password guessing, bounded.
//!
//! Every wrong password costs the guesser: after [`FREE_FAILURES`] failures an
//! address must wait before it may try again, and the wait doubles with each
//! further failure up to [`MAX_LOCKOUT`]. Across all addresses, at most
//! [`GLOBAL_FAILURES_PER_MINUTE`] failures are allowed per minute; once that
//! budget is spent, new logins are refused until it refills. Members already
//! in the room are never affected: the guard only gates new logins.
//!
//! Logins made in parallel are bounded too, or a guesser could start many on
//! one allowance and have the failures counted only later. A login in
//! progress holds one unit of the room-wide budget until it ends (a correct
//! password, or a login abandoned before its proof was checked, gives it
//! back), and an address may have at most
//! [`PARALLEL_LOGINS_PER_ADDRESS`] logins in progress while it has no failure
//! on record, and one at a time once it has. So an address gets at most
//! [`PARALLEL_LOGINS_PER_ADDRESS`] guesses before its first wait, and the room
//! at most [`GLOBAL_FAILURES_PER_MINUTE`] in flight or failed per minute,
//! while colleagues behind one NAT can still join a meeting together.

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
/// Logins one address with a clean record may have in progress at once: a
/// meeting's worth of people behind one NAT, joining as it starts.
pub const PARALLEL_LOGINS_PER_ADDRESS: u32 = 16;

/// How a login that began ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The password was right.
    Succeeded,
    /// A proof was checked and was wrong: one guess.
    Failed,
    /// It ended before any proof was checked (a timeout, a dropped
    /// connection, a refusal): no guess was made.
    Abandoned,
}

/// Why a login may not be tried now, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This address failed too often.
    Address { retry_after: Duration },
    /// The whole room is under a guessing attack.
    Global { retry_after: Duration },
    /// Too many logins in progress (from this address, or room-wide while
    /// they hold the whole budget); one ends within the handshake timeout.
    Busy,
}

struct Record {
    failures: u32,
    /// Logins from this address that began and have not ended.
    in_flight: u32,
    locked_until: Instant,
    last_failure: Instant,
}

/// Failure bookkeeping; the caller passes the clock so tests can drive it.
pub struct GuessGuard {
    addresses: HashMap<IpAddr, Record>,
    /// Token bucket of allowed failures: `tokens` of [`GLOBAL_FAILURES_PER_MINUTE`].
    /// A login in progress holds one token.
    tokens: f64,
    refilled_at: Instant,
    /// Logins in progress room-wide.
    in_flight: u32,
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
            in_flight: 0,
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

    /// Starts a login from `ip`, or says why it may not start now. Every
    /// login that began must be ended with [`GuessGuard::finish`].
    pub fn begin(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        self.check(ip, now)?;
        self.tokens -= 1.0;
        self.in_flight += 1;
        self.forget_old(now);
        let record = self.addresses.entry(key(ip)).or_insert(Record {
            failures: 0,
            in_flight: 0,
            locked_until: now,
            last_failure: now,
        });
        record.in_flight += 1;
        Ok(())
    }

    /// May `ip` start a login now?
    fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if let Some(record) = self.addresses.get(&key(ip)) {
            if record.locked_until > now {
                return Err(Refusal::Address {
                    retry_after: record.locked_until - now,
                });
            }
            let allowed = if record.failures == 0 {
                PARALLEL_LOGINS_PER_ADDRESS
            } else {
                1
            };
            if record.in_flight >= allowed {
                return Err(Refusal::Busy);
            }
        }
        self.refill(now);
        if self.tokens < 1.0 {
            // Logins in progress give their tokens back as they succeed.
            if f64::from(self.in_flight) >= 1.0 - self.tokens {
                return Err(Refusal::Busy);
            }
            let per_sec = f64::from(GLOBAL_FAILURES_PER_MINUTE) / 60.0;
            return Err(Refusal::Global {
                retry_after: Duration::from_secs_f64((1.0 - self.tokens) / per_sec),
            });
        }
        Ok(())
    }

    /// Ends a login [`GuessGuard::begin`] started. A correct password clears
    /// the address's failures; it and a login abandoned before any proof was
    /// checked give back the room-wide token. A wrong proof keeps the token
    /// and counts against the address.
    pub fn finish(&mut self, ip: IpAddr, outcome: Outcome, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if outcome != Outcome::Failed {
            self.tokens = (self.tokens + 1.0).min(f64::from(GLOBAL_FAILURES_PER_MINUTE));
        }
        let ip = key(ip);
        let Some(record) = self.addresses.get_mut(&ip) else {
            // Forgotten to keep tracking bounded; its token was still counted.
            return;
        };
        record.in_flight = record.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Failed => {}
            Outcome::Succeeded => {
                record.failures = 0;
                record.locked_until = now;
                if record.in_flight == 0 {
                    self.addresses.remove(&ip);
                }
                return;
            }
            Outcome::Abandoned => {
                if record.in_flight == 0 && record.failures == 0 {
                    self.addresses.remove(&ip);
                }
                return;
            }
        }
        record.failures += 1;
        record.last_failure = now;
        if record.failures > FREE_FAILURES {
            let doublings = (record.failures - FREE_FAILURES - 1).min(16);
            let wait = BASE_LOCKOUT.saturating_mul(1 << doublings).min(MAX_LOCKOUT);
            record.locked_until = now + wait;
        }
    }

    fn forget_old(&mut self, now: Instant) {
        self.addresses.retain(|_, r| {
            r.in_flight > 0
                || now.saturating_duration_since(r.last_failure) < FAILURE_MEMORY
                || r.locked_until > now
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

    fn nth(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
    }

    /// One complete login with a wrong password.
    fn fail(guard: &mut GuessGuard, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        guard.begin(ip, now)?;
        guard.finish(ip, Outcome::Failed, now);
        Ok(())
    }

    #[test]
    fn free_failures_then_doubling_waits() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        for _ in 0..FREE_FAILURES {
            assert_eq!(fail(&mut guard, A, t0), Ok(()));
        }
        assert_eq!(fail(&mut guard, A, t0), Ok(()), "typos are free");
        assert_eq!(
            guard.begin(A, t0),
            Err(Refusal::Address {
                retry_after: BASE_LOCKOUT
            })
        );
        assert_eq!(guard.begin(B, t0), Ok(()), "other addresses are unaffected");
        let t1 = t0 + BASE_LOCKOUT;
        assert_eq!(fail(&mut guard, A, t1), Ok(()));
        assert_eq!(
            guard.begin(A, t1),
            Err(Refusal::Address {
                retry_after: BASE_LOCKOUT * 2
            })
        );
        let t2 = t1 + BASE_LOCKOUT * 2;
        assert_eq!(guard.begin(A, t2), Ok(()));
        guard.finish(A, Outcome::Succeeded, t2);
        assert_eq!(
            guard.begin(A, t2),
            Ok(()),
            "a correct password clears the record"
        );
    }

    #[test]
    fn logins_in_parallel_are_bounded_per_address() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        // 128 logins started at once from one address, none finished yet.
        let started = (0..128).filter(|_| guard.begin(A, t0).is_ok()).count();
        assert_eq!(started, PARALLEL_LOGINS_PER_ADDRESS as usize);
        assert_eq!(guard.begin(A, t0), Err(Refusal::Busy));
        // They all fail: the address waits, then may try one at a time.
        for _ in 0..started {
            guard.finish(A, Outcome::Failed, t0);
        }
        assert!(matches!(guard.begin(A, t0), Err(Refusal::Address { .. })));
        let later = t0 + MAX_LOCKOUT;
        assert_eq!(guard.begin(A, later), Ok(()));
        assert_eq!(guard.begin(A, later), Err(Refusal::Busy));
    }

    #[test]
    fn successful_logins_in_parallel_are_never_refused() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        // A meeting starting: 200 people join, 16 at a time from one address.
        for round in 0..200 / PARALLEL_LOGINS_PER_ADDRESS {
            for _ in 0..PARALLEL_LOGINS_PER_ADDRESS {
                assert_eq!(guard.begin(A, t0), Ok(()), "round {round}");
            }
            for _ in 0..PARALLEL_LOGINS_PER_ADDRESS {
                guard.finish(A, Outcome::Succeeded, t0);
            }
        }
        assert!(guard.addresses.is_empty());
    }

    #[test]
    fn logins_in_flight_hold_the_room_wide_budget() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        let started = (0..1000)
            .filter(|&i| guard.begin(nth(i), t0).is_ok())
            .count();
        assert_eq!(started, GLOBAL_FAILURES_PER_MINUTE as usize);
        assert_eq!(guard.begin(B, t0), Err(Refusal::Busy));
        // A success gives its token back.
        guard.finish(nth(0), Outcome::Succeeded, t0);
        assert_eq!(guard.begin(B, t0), Ok(()));
        // Failures keep theirs: the room is then under attack, not busy.
        for i in 1..started as u32 {
            guard.finish(nth(i), Outcome::Failed, t0);
        }
        guard.finish(B, Outcome::Failed, t0);
        assert!(matches!(guard.begin(A, t0), Err(Refusal::Global { .. })));
        // A minute later the budget is back.
        assert_eq!(guard.begin(A, t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn abandoned_logins_are_no_guesses() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        for _ in 0..100 {
            guard.begin(A, t0).unwrap();
            guard.finish(A, Outcome::Abandoned, t0);
        }
        assert!(guard.addresses.is_empty());
        assert_eq!(guard.tokens, f64::from(GLOBAL_FAILURES_PER_MINUTE));
        // An abandoned login does not wipe the failures of an address.
        fail(&mut guard, A, t0).unwrap();
        guard.begin(A, t0).unwrap();
        guard.finish(A, Outcome::Abandoned, t0);
        assert_eq!(guard.addresses[&A].failures, 1);
    }

    #[test]
    fn waits_are_capped() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        for i in 0..40 {
            fail(&mut guard, A, t0 + MAX_LOCKOUT * i).unwrap();
        }
        let t = t0 + MAX_LOCKOUT * 39;
        match guard.begin(A, t) {
            Err(Refusal::Address { retry_after }) => assert_eq!(retry_after, MAX_LOCKOUT),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ipv6_guessers_are_counted_per_64() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        for i in 0..=FREE_FAILURES {
            let ip: IpAddr = format!("2001:db8::{}", i + 1).parse().unwrap();
            fail(&mut guard, ip, t0).unwrap();
        }
        let fresh: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert!(matches!(
            guard.begin(fresh, t0),
            Err(Refusal::Address { .. })
        ));
    }

    #[test]
    fn tracking_is_bounded() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 + 100) {
            guard.tokens = 100.0;
            fail(&mut guard, IpAddr::V4(std::net::Ipv4Addr::from(i)), t0).unwrap();
        }
        assert!(guard.addresses.len() <= MAX_TRACKED_ADDRESSES);
    }
}
