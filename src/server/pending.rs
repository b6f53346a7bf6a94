//! Connections that have not logged in yet, bounded in all and per address.
//!
//! Each holds a task, a socket and buffers until it proves the password or
//! its handshake deadline passes. `--max-pending` bounds them in all; on its
//! own, one address opening that many sockets and saying nothing would turn
//! every newcomer away, members reconnecting after a network blip included.
//! So one address (an IPv6 /64, as the guessing guard counts them) may hold
//! at most [`PENDING_PER_ADDRESS`] of those places, counted from the moment
//! its connection is accepted, before it has sent a byte.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::guard::address_key;
use super::limits::PENDING_PER_ADDRESS;

/// Why an accepted connection was turned away at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crowded {
    /// `--max-pending` connections are logging in.
    Room,
    /// This address holds [`PENDING_PER_ADDRESS`] of them.
    Address,
}

/// The pending connections, counted.
pub struct Pending {
    all: Arc<Semaphore>,
    /// Places held, by address key; an address holding none has no entry,
    /// so this never has more than `--max-pending` entries.
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

/// One pending connection's place, given back when dropped (once the login
/// is over, however it ended).
pub struct PendingSlot {
    _place: OwnedSemaphorePermit,
    pending: Arc<Pending>,
    address: IpAddr,
}

impl Pending {
    pub fn new(max_pending: usize) -> Arc<Self> {
        Arc::new(Self {
            all: Arc::new(Semaphore::new(max_pending)),
            by_address: Mutex::new(HashMap::new()),
        })
    }

    /// A place for a connection just accepted from `ip`.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<PendingSlot, Crowded> {
        let address = address_key(ip);
        let mut by_address = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        let held = by_address.get(&address).copied().unwrap_or(0);
        if held >= PENDING_PER_ADDRESS {
            return Err(Crowded::Address);
        }
        let place = Arc::clone(&self.all)
            .try_acquire_owned()
            .map_err(|_| Crowded::Room)?;
        by_address.insert(address, held + 1);
        Ok(PendingSlot {
            _place: place,
            pending: Arc::clone(self),
            address,
        })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut by_address = self
            .pending
            .by_address
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(held) = by_address.get_mut(&self.address) {
            *held -= 1;
            if *held == 0 {
                by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_holds_a_bounded_share() {
        let pending = Pending::new(PENDING_PER_ADDRESS + 2);
        let a: Vec<_> = (0..PENDING_PER_ADDRESS)
            .map(|_| pending.admit(ip("192.0.2.1")).unwrap())
            .collect();
        assert_eq!(pending.admit(ip("192.0.2.1")).err(), Some(Crowded::Address));
        // Another /64 host is the same address; another address is not.
        let _v6 = pending.admit(ip("2001:db8::1")).unwrap();
        let _v6b = pending.admit(ip("2001:db8::2")).unwrap();
        assert_eq!(pending.admit(ip("192.0.2.2")).err(), Some(Crowded::Room));
        drop(a);
        assert!(pending.by_address.lock().unwrap().len() == 1);
        assert!(pending.admit(ip("192.0.2.1")).is_ok());
    }
}
