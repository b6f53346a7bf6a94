//! Online password guessing, bounded.
//!
//! Every wrong password costs the guesser: after [`FREE_FAILURES`] failures an
//! address must wait before it may try again, and the wait doubles with each
//! further failure up to [`MAX_LOCKOUT`]. Across all addresses, at most
//! [`GLOBAL_FAILURES_PER_MINUTE`] failures are allowed per minute (and a
//! burst of as many); once that budget is spent, new logins are refused until
//! it refills. Members already in the room are never affected: the guard
//! only gates new logins, and a member who comes back after a lost
//! connection with its session's resume proof is held to its address's
//! allowance only ([`Login::Returning`]).
//!
//! The bound is enforced where a guess is tested: a login's proof is checked
//! only after the guard, in the same step, has found its address not locked
//! out and the room's budget not spent ([`GuessGuard::settle`]). Logins
//! started in parallel therefore buy nothing: however many reach
//! `srp_verify` together, the ones past the allowance are refused without
//! their proof being looked at. Separately, an address may have at most
//! [`PARALLEL_LOGINS_PER_ADDRESS`] logins in progress, a limit on the
//! server's work (each costs an exponentiation), not on guessing.

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
/// Logins one address may have in progress at once: a meeting's worth of
/// people behind one NAT, joining as it starts.
pub const PARALLEL_LOGINS_PER_ADDRESS: u32 = 16;

/// Why a login may not go on now, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This address failed too often.
    Address { retry_after: Duration },
    /// The whole room is under a guessing attack.
    Global { retry_after: Duration },
    /// Too many logins in progress from this address; one ends within the
    /// handshake deadline.
    Busy,
}

/// Who a login is, as far as the guard is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// Anyone: held to its address's allowance and to the room's.
    Stranger,
    /// A member coming back, who proved its session's resume token in
    /// `srp_init`. Checking that is no password guess, and only someone who
    /// was let in holds one, so the room-wide budget, which strangers can
    /// spend, never keeps it out; its address's allowance still applies.
    Returning,
}

/// One address's logins and wrong guesses.
struct Record {
    /// Wrong passwords since the last right one: past the free ones, each
    /// doubles the wait.
    failures: u32,
    /// Logins from this address that began and have not ended.
    in_flight: u32,
    /// No guess from this address is checked before then.
    locked_until: Instant,
    /// When it last guessed wrong: the record is forgotten a while after, and
    /// the oldest goes first when too many addresses are tracked.
    last_failure: Instant,
}

/// Failure bookkeeping; the caller passes the clock so tests can drive it.
pub struct GuessGuard {
    /// Each address's failures and waits, so one guesser waits longer and
    /// longer without slowing anyone else.
    addresses: HashMap<IpAddr, Record>,
    /// Token bucket of allowed failures: `tokens` of [`GLOBAL_FAILURES_PER_MINUTE`].
    tokens: f64,
    /// When `tokens` was last topped up, to add what has accrued since.
    refilled_at: Instant,
    /// The first wait after an address's free failures ([`BASE_LOCKOUT`]
    /// unless the server is configured otherwise).
    base_lockout: Duration,
}

/// Guessers rotate IPv6 addresses within their /64: count the prefix.
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
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
        Self::with_base_lockout(now, BASE_LOCKOUT)
    }

    /// A guard whose first wait is `base_lockout`, doubling from there.
    pub fn with_base_lockout(now: Instant, base_lockout: Duration) -> Self {
        Self {
            addresses: HashMap::new(),
            tokens: f64::from(GLOBAL_FAILURES_PER_MINUTE),
            refilled_at: now,
            base_lockout,
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

    /// Starts a login from `ip` (at `srp_init`), or says why it may not
    /// start: an address or room locked out is told so before the server
    /// spends an exponentiation on it. Every login that began must be ended
    /// with [`GuessGuard::end`].
    pub fn begin(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        self.begin_as(ip, now, Login::Stranger)
    }

    /// [`GuessGuard::begin`] for a login of the kind `who`.
    pub fn begin_as(&mut self, ip: IpAddr, now: Instant, who: Login) -> Result<(), Refusal> {
        self.may_guess(ip, now, who)?;
        if self
            .addresses
            .get(&address_key(ip))
            .is_some_and(|r| r.in_flight >= PARALLEL_LOGINS_PER_ADDRESS)
        {
            return Err(Refusal::Busy);
        }
        self.forget_old(now);
        self.addresses
            .entry(address_key(ip))
            .or_insert(Record {
                failures: 0,
                in_flight: 0,
                locked_until: now,
                last_failure: now,
            })
            .in_flight += 1;
        Ok(())
    }

    /// May `ip` have a proof checked now? A returning member is held to its
    /// address's allowance only.
    fn may_guess(&mut self, ip: IpAddr, now: Instant, who: Login) -> Result<(), Refusal> {
        if let Some(record) = self.addresses.get(&address_key(ip))
            && record.locked_until > now
        {
            return Err(Refusal::Address {
                retry_after: record.locked_until - now,
            });
        }
        self.refill(now);
        if who == Login::Stranger && self.tokens < 1.0 {
            let per_sec = f64::from(GLOBAL_FAILURES_PER_MINUTE) / 60.0;
            return Err(Refusal::Global {
                retry_after: Duration::from_secs_f64((1.0 - self.tokens) / per_sec),
            });
        }
        Ok(())
    }

    /// Checks a login's proof (at `srp_verify`) if, and only if, `ip` may
    /// make a guess now, and counts the outcome in the same step: `check`
    /// returns `Ok` for the right password. A refusal means `check` never ran.
    pub fn settle<T, E>(
        &mut self,
        ip: IpAddr,
        now: Instant,
        check: impl FnOnce() -> Result<T, E>,
    ) -> Result<Result<T, E>, Refusal> {
        self.settle_as(ip, now, Login::Stranger, check)
    }

    /// [`GuessGuard::settle`] for a login of the kind `who`. A returning
    /// member's wrong proof counts against its address only.
    pub fn settle_as<T, E>(
        &mut self,
        ip: IpAddr,
        now: Instant,
        who: Login,
        check: impl FnOnce() -> Result<T, E>,
    ) -> Result<Result<T, E>, Refusal> {
        self.may_guess(ip, now, who)?;
        let outcome = check();
        match &outcome {
            Ok(_) => self.succeeded(ip, now),
            Err(_) => self.failed(ip, now, who),
        }
        Ok(outcome)
    }

    /// Ends a login [`GuessGuard::begin`] started, however it ended.
    pub fn end(&mut self, ip: IpAddr) {
        let ip = address_key(ip);
        if let Some(record) = self.addresses.get_mut(&ip) {
            record.in_flight = record.in_flight.saturating_sub(1);
            if record.in_flight == 0 && record.failures == 0 {
                self.addresses.remove(&ip);
            }
        }
    }

    /// A wrong proof from `ip`: counts against its allowance and the room's.
    fn failed(&mut self, ip: IpAddr, now: Instant, who: Login) {
        if who == Login::Stranger {
            self.tokens = (self.tokens - 1.0).max(0.0);
        }
        self.forget_old(now);
        let record = self.addresses.entry(address_key(ip)).or_insert(Record {
            failures: 0,
            in_flight: 0,
            locked_until: now,
            last_failure: now,
        });
        record.failures += 1;
        record.last_failure = now;
        if record.failures > FREE_FAILURES {
            let doublings = (record.failures - FREE_FAILURES - 1).min(16);
            let wait = self
                .base_lockout
                .saturating_mul(1 << doublings)
                .min(MAX_LOCKOUT);
            record.locked_until = now + wait;
        }
    }

    /// A correct password from `ip` clears its failures.
    fn succeeded(&mut self, ip: IpAddr, now: Instant) {
        if let Some(record) = self.addresses.get_mut(&address_key(ip)) {
            record.failures = 0;
            record.locked_until = now;
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
                .filter(|(_, r)| r.in_flight == 0)
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

    /// One complete login whose proof is `right`; `Err` if the guard refused.
    fn login(
        guard: &mut GuessGuard,
        ip: IpAddr,
        right: bool,
        now: Instant,
    ) -> Result<bool, Refusal> {
        guard.begin(ip, now)?;
        let outcome = guard.settle(ip, now, || if right { Ok(()) } else { Err(()) });
        guard.end(ip);
        outcome.map(|checked| checked.is_ok())
    }

    #[test]
    fn free_failures_then_doubling_waits() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        for _ in 0..FREE_FAILURES {
            assert_eq!(login(&mut guard, A, false, t0), Ok(false));
        }
        assert_eq!(login(&mut guard, A, false, t0), Ok(false), "typos are free");
        assert_eq!(
            login(&mut guard, A, true, t0),
            Err(Refusal::Address {
                retry_after: BASE_LOCKOUT
            })
        );
        assert_eq!(
            login(&mut guard, B, true, t0),
            Ok(true),
            "other addresses are unaffected"
        );
        let t1 = t0 + BASE_LOCKOUT;
        assert_eq!(login(&mut guard, A, false, t1), Ok(false));
        assert_eq!(
            guard.begin(A, t1),
            Err(Refusal::Address {
                retry_after: BASE_LOCKOUT * 2
            })
        );
        let t2 = t1 + BASE_LOCKOUT * 2;
        assert_eq!(login(&mut guard, A, true, t2), Ok(true));
        assert_eq!(
            login(&mut guard, A, false, t2),
            Ok(false),
            "a correct password clears the record"
        );
    }

    #[test]
    fn proofs_checked_in_parallel_are_bounded_like_proofs_checked_in_turn() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        // 128 logins started at once from one address: the work limit.
        let started = (0..128).filter(|_| guard.begin(A, t0).is_ok()).count();
        assert_eq!(started, PARALLEL_LOGINS_PER_ADDRESS as usize);
        assert_eq!(guard.begin(A, t0), Err(Refusal::Busy));
        // All reach srp_verify together with wrong proofs: only the free
        // failures and one more are checked.
        let mut checked = 0;
        for _ in 0..started {
            if guard.settle(A, t0, || Err::<(), ()>(())).is_ok() {
                checked += 1;
            }
            guard.end(A);
        }
        assert_eq!(checked, FREE_FAILURES + 1);
        assert!(matches!(guard.begin(A, t0), Err(Refusal::Address { .. })));
    }

    #[test]
    fn a_meeting_joins_at_once() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        // 200 people join, 16 at a time from one address, all right.
        for _ in 0..200 / PARALLEL_LOGINS_PER_ADDRESS {
            for _ in 0..PARALLEL_LOGINS_PER_ADDRESS {
                guard.begin(A, t0).unwrap();
            }
            for _ in 0..PARALLEL_LOGINS_PER_ADDRESS {
                assert_eq!(guard.settle(A, t0, || Ok::<(), ()>(())), Ok(Ok(())));
                guard.end(A);
            }
        }
        assert!(guard.addresses.is_empty());
    }

    #[test]
    fn logins_that_never_show_a_proof_cost_no_budget() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        for i in 0..1000 {
            guard.begin(nth(i), t0).unwrap();
        }
        assert_eq!(
            login(&mut guard, B, true, t0),
            Ok(true),
            "stalled logins hold nothing"
        );
        for i in 0..1000 {
            guard.end(nth(i));
        }
        assert!(guard.addresses.is_empty());
    }

    #[test]
    fn global_budget_bounds_failures_per_minute() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        // Many addresses, one guess each, all within one instant.
        let guesses = (0..1000)
            .filter(|&i| login(&mut guard, nth(i), false, t0).is_ok())
            .count();
        assert_eq!(guesses, GLOBAL_FAILURES_PER_MINUTE as usize);
        assert!(matches!(guard.begin(A, t0), Err(Refusal::Global { .. })));
        // A minute later the budget is back.
        assert_eq!(
            login(&mut guard, A, true, t0 + Duration::from_secs(60)),
            Ok(true)
        );
    }

    #[test]
    fn waits_are_capped() {
        let t0 = Instant::now();
        let mut guard = GuessGuard::new(t0);
        for i in 0..40 {
            login(&mut guard, A, false, t0 + MAX_LOCKOUT * i).unwrap();
        }
        match guard.begin(A, t0 + MAX_LOCKOUT * 39) {
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
            login(&mut guard, ip, false, t0).unwrap();
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
            login(
                &mut guard,
                IpAddr::V4(std::net::Ipv4Addr::from(i)),
                false,
                t0,
            )
            .unwrap();
        }
        assert!(guard.addresses.len() <= MAX_TRACKED_ADDRESSES);
    }
}
