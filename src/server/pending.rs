//! Connections that have not logged in yet, bounded in all and per address.
//!
//! Each holds a task, a socket and buffers until it proves the password or
//! its handshake deadline passes. `--max-pending` bounds them in all; on its
//! own, one address opening that many sockets and saying nothing would turn
//! every newcomer away, members reconnecting after a network blip included.
//! So one address (an IPv6 /64, as the guessing guard counts them) may hold
//! at most [`PENDING_PER_ADDRESS`] of those places, counted from the moment
//! its connection is accepted, before it has sent a byte.
//!
//! A few addresses together can still take every place that way. A
//! connection that has not sent its first line yet has cost the server only
//! a socket, so it holds its place only until someone needs it: when every
//! place is taken, a newcomer takes the place of the oldest connection that
//! is still silent, which is told the server is busy and closed. Only
//! connections doing real work (their first line received, SRP under way)
//! make newcomers wait. The place taken is one of the address that holds
//! the most silent places (its oldest), so a flood from a few addresses
//! takes its own places back first and a newcomer from anywhere else keeps
//! its place for as long as it takes to speak.
//!
//! Strangers doing real work can still take every place, from enough
//! addresses. Members coming back after a network blip prove a resume
//! token in that first line, which no stranger holds; so one place in
//! [`RETURNING_SHARE`] is never held by a stranger who has spoken, and a
//! returning member finds one free (or held by a silent connection, which
//! gives way) unless other returning members hold them all.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use super::guard::{Login, address_key};
use super::limits::{PENDING_PER_ADDRESS, RETURNING_SHARE};

/// Why an accepted connection was turned away at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crowded {
    /// `--max-pending` connections are logging in, and all of them have
    /// sent their first line.
    Room,
    /// This address holds [`PENDING_PER_ADDRESS`] of them.
    Address,
}

/// The pending connections, counted.
pub struct Pending {
    /// `--max-pending`: places in all.
    max: usize,
    /// Who holds the places; one lock, so that taking a silent connection's
    /// place and that connection speaking up cannot both happen.
    state: Mutex<State>,
}

/// The places, as [`Pending`] counts them.
struct State {
    /// Places held now, at most [`Pending::max`].
    held: usize,
    /// Of those, the places held by strangers whose first line came: at
    /// most [`Pending::stranger_places`].
    strangers: usize,
    /// Places held, by address key; an address holding none has no entry,
    /// so this never has more than `--max-pending` entries.
    by_address: HashMap<IpAddr, usize>,
    /// The holders that have not sent a whole line yet: the places a
    /// newcomer may take.
    silent: Silent,
    /// The id of the next connection admitted.
    next_id: u64,
}

/// The silent holders, by address, in the order they give way.
#[derive(Default)]
struct Silent {
    /// Each address's silent holders, oldest first (ids only grow), with
    /// the token that tells a holder its place is gone.
    by_address: HashMap<IpAddr, BTreeMap<u64, CancellationToken>>,
    /// The addresses that hold silent places, the next to give way last:
    /// the most silent places, then the oldest silent holder.
    order: BTreeSet<(usize, Reverse<u64>, IpAddr)>,
}

impl Silent {
    fn insert(&mut self, address: IpAddr, id: u64, token: CancellationToken) {
        self.change(address, |ids| {
            ids.insert(id, token);
        });
    }

    fn remove(&mut self, address: IpAddr, id: u64) {
        self.change(address, |ids| {
            ids.remove(&id);
        });
    }

    /// Takes the place that gives way next: the oldest silent holder of the
    /// address holding the most silent places.
    fn pop(&mut self) -> Option<(IpAddr, CancellationToken)> {
        let &(_, _, address) = self.order.last()?;
        let token = self.change(address, |ids| ids.pop_first().map(|(_, t)| t))?;
        Some((address, token))
    }

    /// Applies `f` to `address`'s holders, keeping [`Silent::order`] right.
    fn change<R>(
        &mut self,
        address: IpAddr,
        f: impl FnOnce(&mut BTreeMap<u64, CancellationToken>) -> R,
    ) -> R {
        let key = |ids: &BTreeMap<u64, CancellationToken>| {
            let (&oldest, _) = ids.first_key_value()?;
            Some((ids.len(), Reverse(oldest), address))
        };
        let ids = self.by_address.entry(address).or_default();
        if let Some(before) = key(ids) {
            self.order.remove(&before);
        }
        let result = f(ids);
        match key(ids) {
            Some(after) => {
                self.order.insert(after);
            }
            None => {
                self.by_address.remove(&address);
            }
        }
        result
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.by_address.is_empty() && self.order.is_empty()
    }
}

impl State {
    /// Gives back one place held by `address`.
    fn release(&mut self, address: IpAddr) {
        self.held -= 1;
        if let Some(held) = self.by_address.get_mut(&address) {
            *held -= 1;
            if *held == 0 {
                self.by_address.remove(&address);
            }
        }
    }
}

/// One pending connection's place, given back when dropped (once the login
/// is over, however it ended), or taken by a newcomer while the connection
/// is still silent.
pub struct PendingSlot {
    /// Where the place is counted.
    pending: Arc<Pending>,
    /// The address key the place counts against.
    address: IpAddr,
    /// This connection's entry in [`State::silent`] while it is silent.
    id: u64,
    /// Cancelled when a newcomer took the place; the place is then no
    /// longer this slot's to give back.
    taken: CancellationToken,
    /// Who spoke, once the first line came and the place was kept.
    spoke: Option<Login>,
}

/// Why a connection that sent its first line may not keep its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// A newcomer took it while the connection was still silent.
    Taken,
    /// A stranger, and strangers hold every place not kept for members
    /// coming back.
    StrangersFull,
}

impl Pending {
    pub fn new(max_pending: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max_pending,
            state: Mutex::new(State {
                held: 0,
                strangers: 0,
                by_address: HashMap::new(),
                silent: Silent::default(),
                next_id: 0,
            }),
        })
    }

    /// Places strangers may hold once they have spoken: all but those kept
    /// for members coming back.
    fn stranger_places(&self) -> usize {
        self.max - self.max / RETURNING_SHARE
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a connection just accepted from `ip`. When every place
    /// is held, a silent holder's place is taken (see [`Silent::pop`]; its
    /// [`PendingSlot::taken`] completes); when none is silent, the
    /// connection is turned away.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<PendingSlot, Crowded> {
        let address = address_key(ip);
        let mut state = self.state();
        let held = state.by_address.get(&address).copied().unwrap_or(0);
        if held >= PENDING_PER_ADDRESS {
            return Err(Crowded::Address);
        }
        if state.held >= self.max {
            let (victim, token) = state.silent.pop().ok_or(Crowded::Room)?;
            token.cancel();
            state.release(victim);
        }
        state.held += 1;
        *state.by_address.entry(address).or_insert(0) += 1;
        let id = state.next_id;
        state.next_id += 1;
        let taken = CancellationToken::new();
        state.silent.insert(address, id, taken.clone());
        Ok(PendingSlot {
            pending: Arc::clone(self),
            address,
            id,
            taken,
            spoke: None,
        })
    }
}

impl PendingSlot {
    /// The connection sent its first line, as `who`: from now on it keeps
    /// its place until its login is over, unless a newcomer took the place
    /// first or `who` is a stranger and strangers hold all of theirs.
    pub fn spoke(&mut self, who: Login) -> Result<(), Lost> {
        let mut state = self.pending.state();
        if self.taken.is_cancelled() {
            return Err(Lost::Taken);
        }
        if who == Login::Stranger && state.strangers >= self.pending.stranger_places() {
            return Err(Lost::StrangersFull);
        }
        state.silent.remove(self.address, self.id);
        if who == Login::Stranger {
            state.strangers += 1;
        }
        self.spoke = Some(who);
        Ok(())
    }

    /// Completes once a newcomer has taken this place (never, once
    /// [`spoke`](Self::spoke) has succeeded).
    pub async fn taken(&self) {
        self.taken.cancelled().await;
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut state = self.pending.state();
        // Under the lock: a place taken was given back by whoever took it.
        if !self.taken.is_cancelled() {
            state.silent.remove(self.address, self.id);
            state.release(self.address);
        }
        if self.spoke == Some(Login::Stranger) {
            state.strangers -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn held(pending: &Pending) -> usize {
        pending.state().held
    }

    #[test]
    fn one_address_holds_a_bounded_share() {
        let pending = Pending::new(PENDING_PER_ADDRESS + 2);
        let mut a: Vec<_> = (0..PENDING_PER_ADDRESS)
            .map(|_| pending.admit(ip("192.0.2.1")).unwrap())
            .collect();
        for slot in &mut a {
            assert_eq!(slot.spoke(Login::Returning), Ok(()));
        }
        assert_eq!(pending.admit(ip("192.0.2.1")).err(), Some(Crowded::Address));
        // Another /64 host is the same address; another address is not.
        let mut v6 = pending.admit(ip("2001:db8::1")).unwrap();
        let mut v6b = pending.admit(ip("2001:db8::2")).unwrap();
        assert_eq!(v6.spoke(Login::Returning), Ok(()));
        assert_eq!(v6b.spoke(Login::Returning), Ok(()));
        assert_eq!(pending.admit(ip("192.0.2.2")).err(), Some(Crowded::Room));
        drop(a);
        assert!(pending.state().by_address.len() == 1);
        assert!(pending.admit(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn a_newcomer_takes_the_place_of_the_oldest_silent_connection() {
        let pending = Pending::new(3);
        let mut oldest = pending.admit(ip("192.0.2.1")).unwrap();
        let mut working = pending.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(working.spoke(Login::Stranger), Ok(()));
        let mut younger = pending.admit(ip("192.0.2.3")).unwrap();
        let mut newcomer = pending.admit(ip("192.0.2.4")).unwrap();
        assert!(
            oldest.taken.is_cancelled(),
            "the oldest silent one gave way"
        );
        assert!(!younger.taken.is_cancelled() && !working.taken.is_cancelled());
        assert_eq!(
            oldest.spoke(Login::Stranger),
            Err(Lost::Taken),
            "too late to speak up"
        );
        assert_eq!(held(&pending), 3);
        assert!(!pending.state().by_address.contains_key(&ip("192.0.2.1")));
        // Dropping the evicted slot gives nothing back twice.
        drop(oldest);
        assert_eq!(held(&pending), 3);
        // Once everyone has spoken, newcomers are turned away.
        assert_eq!(younger.spoke(Login::Stranger), Ok(()));
        assert_eq!(newcomer.spoke(Login::Stranger), Ok(()));
        assert_eq!(pending.admit(ip("192.0.2.5")).err(), Some(Crowded::Room));
        drop((working, younger, newcomer));
        assert_eq!(held(&pending), 0);
        assert!(pending.state().silent.is_empty());
        assert!(pending.state().by_address.is_empty());
    }

    #[test]
    fn strangers_leave_places_for_members_coming_back() {
        const MAX: usize = 8;
        let kept = MAX / RETURNING_SHARE;
        assert!(kept > 0);
        let pending = Pending::new(MAX);
        let admit = |i: usize| pending.admit(ip(&format!("192.0.2.{i}"))).unwrap();
        let mut strangers: Vec<_> = (0..MAX - kept).map(admit).collect();
        for slot in &mut strangers {
            assert_eq!(slot.spoke(Login::Stranger), Ok(()));
        }
        let mut late = admit(100);
        assert_eq!(late.spoke(Login::Stranger), Err(Lost::StrangersFull));
        drop(late);
        let mut back: Vec<_> = (0..kept).map(|i| admit(200 + i)).collect();
        for slot in &mut back {
            assert_eq!(slot.spoke(Login::Returning), Ok(()));
        }
        assert_eq!(held(&pending), MAX);
        // A stranger's login over: its place is a stranger's again.
        strangers.pop();
        let mut next = admit(101);
        assert_eq!(next.spoke(Login::Stranger), Ok(()));
        drop((strangers, next, back));
        assert_eq!(pending.state().strangers, 0);
        assert_eq!(held(&pending), 0);
    }

    #[test]
    fn the_address_holding_the_most_silent_places_gives_way_first() {
        let pending = Pending::new(4);
        let lone = pending.admit(ip("192.0.2.1")).unwrap();
        let flood: Vec<_> = (0..3)
            .map(|_| pending.admit(ip("192.0.2.9")).unwrap())
            .collect();
        // The lone connection is the oldest, but the flood gives way.
        let newcomer = pending.admit(ip("192.0.2.2")).unwrap();
        assert!(flood[0].taken.is_cancelled(), "the flood's oldest");
        assert!(!lone.taken.is_cancelled());
        let _next = pending.admit(ip("192.0.2.3")).unwrap();
        assert!(flood[1].taken.is_cancelled());
        // One silent place each now: the oldest of them gives way.
        let _last = pending.admit(ip("192.0.2.4")).unwrap();
        assert!(lone.taken.is_cancelled() && !flood[2].taken.is_cancelled());
        assert!(!newcomer.taken.is_cancelled());
        assert_eq!(held(&pending), 4);
    }
}
