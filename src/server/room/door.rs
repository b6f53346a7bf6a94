//! The door: a member may lock the room, and then a newcomer with the
//! password knocks and waits until a member admits or denies it, it gives
//! up, or the room opens again.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::{Decision, Membership, NameReservation, Room, RoomError, State, broadcast_filtered};
use crate::protocol::encode;
use crate::protocol::wire::{KnockOutcome, ServerEvent};
use crate::server::limits::MAX_WAITING_KNOCKS;
use crate::server::outbox::Urgency;

/// A newcomer waiting at a locked room.
pub(super) struct Knock {
    /// The login's id, which its [`KnockTicket`] knows it by.
    user_id: String,
    /// The name members see and answer with `/admit <name>`.
    pub(super) username: String,
    /// Tells the waiting connection the answer; taken when used.
    decide: Option<oneshot::Sender<Decision>>,
}

/// A knock waiting for an answer, held by the newcomer's connection.
/// Dropping it before an answer withdraws the knock, and members are told.
pub struct KnockTicket {
    /// Where the knock is registered, to withdraw it on drop.
    room: Arc<Room>,
    /// Which knock is ours.
    user_id: String,
    /// The answer, when a member gives one.
    pub decision: oneshot::Receiver<Decision>,
}

impl KnockTicket {
    /// Gives up waiting because nobody answered in time. Returns `false` if
    /// an answer came first (it is then in [`KnockTicket::decision`]).
    pub fn expire(&self) -> bool {
        self.room.end_knock(&self.user_id, KnockOutcome::Expired)
    }
}

impl Drop for KnockTicket {
    fn drop(&mut self) {
        self.room.end_knock(&self.user_id, KnockOutcome::Withdrawn);
    }
}

impl Room {
    /// Who locked the room, if it is locked.
    pub fn locked_by(&self) -> Option<String> {
        self.lock().locked.clone()
    }

    /// Names of the newcomers knocking right now, in arrival order.
    pub fn knocking(&self) -> Vec<String> {
        self.lock()
            .knocks
            .iter()
            .map(|k| k.username.clone())
            .collect()
    }

    pub(super) fn lock_room(&self, who: &Membership) -> Result<(), RoomError> {
        let mut state = self.lock();
        who.holds(&state)?;
        if let Some(locker) = &state.locked {
            return Err(RoomError::AlreadyLocked { by: locker.clone() });
        }
        state.locked = Some(who.username.clone());
        let frame = encode::encode(&ServerEvent::Locked {
            by: who.username.clone(),
        });
        broadcast_filtered(&mut state, &frame, Urgency::Now, |m| !m.legacy);
        Ok(())
    }

    pub(super) fn unlock_room(&self, who: &Membership) -> Result<(), RoomError> {
        let mut state = self.lock();
        who.holds(&state)?;
        unlock(&mut state, Some(&who.username))
    }

    /// Registers a knock on a locked room and tells the native members.
    /// `Ok(None)` if the room is no longer locked: the caller joins instead.
    pub fn knock(
        self: &Arc<Self>,
        reservation: &NameReservation,
    ) -> Result<Option<KnockTicket>, RoomError> {
        let mut state = self.lock();
        if state.locked.is_none() {
            return Ok(None);
        }
        if state.knocks.len() >= MAX_WAITING_KNOCKS {
            return Err(RoomError::TooManyKnocks);
        }
        let (decide, decision) = oneshot::channel();
        state.knocks.push(Knock {
            user_id: reservation.user_id.clone(),
            username: reservation.name.clone(),
            decide: Some(decide),
        });
        let frame = encode::encode(&ServerEvent::Knock {
            user: reservation.name.clone(),
        });
        broadcast_filtered(&mut state, &frame, Urgency::Now, |m| !m.legacy);
        Ok(Some(KnockTicket {
            room: Arc::clone(self),
            user_id: reservation.user_id.clone(),
            decision,
        }))
    }

    pub(super) fn answer(
        &self,
        who: &Membership,
        user: &str,
        decision: Decision,
    ) -> Result<(), RoomError> {
        let mut state = self.lock();
        who.holds(&state)?;
        let Some(pos) = state.knocks.iter().position(|k| k.username == user) else {
            return Err(RoomError::NoSuchKnock(user.to_owned()));
        };
        let knock = state.knocks.remove(pos);
        resolve(&mut state, knock, decision);
        Ok(())
    }

    /// Ends a knock nobody answered; `false` if it was answered already.
    fn end_knock(&self, user_id: &str, outcome: KnockOutcome) -> bool {
        let mut state = self.lock();
        let Some(pos) = state.knocks.iter().position(|k| k.user_id == user_id) else {
            return false;
        };
        let knock = state.knocks.remove(pos);
        let frame = encode::encode(&ServerEvent::KnockResolved {
            user: knock.username,
            outcome,
            by: None,
        });
        broadcast_filtered(&mut state, &frame, Urgency::Now, |m| !m.legacy);
        true
    }
}
/// Opens the room and lets everyone knocking in; `by` is `None` when it
/// opens because no native member is left to answer knocks.
pub(super) fn unlock(state: &mut State, by: Option<&str>) -> Result<(), RoomError> {
    if state.locked.take().is_none() {
        return Err(RoomError::NotLocked);
    }
    if let Some(by) = by {
        let frame = encode::encode(&ServerEvent::Unlocked { by: by.to_owned() });
        broadcast_filtered(state, &frame, Urgency::Now, |m| !m.legacy);
    }
    for knock in std::mem::take(&mut state.knocks) {
        let decision = Decision::Admitted {
            by: by.map(str::to_owned),
        };
        resolve(state, knock, decision);
    }
    Ok(())
}

/// Tells a knocking newcomer, and the native members, how its knock ended.
fn resolve(state: &mut State, mut knock: Knock, decision: Decision) {
    let (outcome, by) = match &decision {
        Decision::Admitted { by } => (KnockOutcome::Admitted, by.clone()),
        Decision::Denied { by } => (KnockOutcome::Denied, Some(by.clone())),
    };
    if let Some(decide) = knock.decide.take() {
        // The newcomer may just have gone; its ticket then cleans up nothing.
        let _ = decide.send(decision);
    }
    let frame = encode::encode(&ServerEvent::KnockResolved {
        user: knock.username,
        outcome,
        by,
    });
    broadcast_filtered(state, &frame, Urgency::Now, |m| !m.legacy);
}
