//! Names: which are in use (by members, or held for logins about to
//! join), reserving one for a login, and which session a reconnecting login
//! may take over instead of being refused the name.

use std::sync::Arc;

use super::{Room, RoomError, State};
use crate::crypto::Key32;
use crate::protocol::username::likenesses;

impl State {
    /// Whether `name`, which looks like `looks` ([`likenesses`]), looks like
    /// a name in use other than itself.
    pub(super) fn looks_like_another(&self, name: &str, looks: &[String]) -> bool {
        looks
            .iter()
            .any(|key| self.looks.get(key).is_some_and(|held| held != name))
    }

    pub(super) fn hold_name(&mut self, name: &str, looks: [String; 3], user_id: String) {
        self.names.insert(name.to_owned(), user_id);
        for key in looks {
            self.looks.insert(key, name.to_owned());
        }
    }

    /// Frees `name` if `user_id` holds it.
    pub(super) fn free_name(&mut self, name: &str, user_id: &str) {
        if self.names.get(name).map(String::as_str) != Some(user_id) {
            return;
        }
        self.names.remove(name);
        for key in likenesses(name) {
            if self.looks.get(&key).is_some_and(|held| held == name) {
                self.looks.remove(&key);
            }
        }
    }
}

/// A name held for a login in progress. Dropping it frees the name, so a
/// failed or abandoned login never leaves it taken.
pub struct NameReservation {
    /// The room holding the name, to free it on drop.
    room: Arc<Room>,
    /// The name reserved, which the member joins under.
    pub(super) name: String,
    /// The login's id, which holds the name until it joins.
    pub(super) user_id: String,
    /// Set when the name belongs to this member's own earlier session, which
    /// the login may take over once it proves that session's resume secret.
    pub(super) takeover_of: Option<Replacing>,
}

/// The connection a takeover login set out to replace: the one holding the
/// member's session when the login began, and no later one.
pub struct Takeover(Replacing);

/// See [`Takeover`].
pub(super) struct Replacing {
    /// The session's id, which the takeover keeps.
    pub(super) user_id: String,
    /// Which connection of the session: the one to replace, and no later one.
    pub(super) generation: u64,
}

impl Replacing {
    /// Where that connection is among the members, if it still holds the session.
    pub(super) fn position(&self, state: &State) -> Option<usize> {
        state
            .members
            .iter()
            .position(|m| m.user_id == self.user_id && m.generation == self.generation)
    }
}

impl NameReservation {
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// Whether this login wants to take over a live session of the same name.
    pub fn is_takeover(&self) -> bool {
        self.takeover_of.is_some()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for NameReservation {
    fn drop(&mut self) {
        let mut state = self.room.lock();
        if !state.members.iter().any(|m| m.user_id == self.user_id) {
            state.free_name(&self.name, &self.user_id);
        }
    }
}

impl Room {
    /// The session a reconnecting login may take over: the connection that
    /// holds `name` now, if it is the session `resume_of` names. Asked when
    /// the login begins, answered to nobody: the login learns whether the
    /// name is in use only from [`Room::reserve`], once it has proved the
    /// password.
    pub fn takeover_target(&self, name: &str, resume_of: Option<&str>) -> Option<Takeover> {
        let resume_of = resume_of?;
        let state = self.lock();
        if state.names.get(name).map(String::as_str) != Some(resume_of) {
            return None;
        }
        // A name held for a login still in progress is not a session.
        let member = state.members.iter().find(|m| m.user_id == resume_of)?;
        Some(Takeover(Replacing {
            user_id: member.user_id.clone(),
            generation: member.generation,
        }))
    }

    /// Reserves `name` for the login that will be member `user_id`,
    /// atomically, so two simultaneous logins cannot both take it. Called
    /// once the login has proved the password, so that only members learn
    /// which names are in use. A reconnecting member's login brings the
    /// session it set out to take over ([`Room::takeover_target`]): if that
    /// connection still holds the name, the reservation is a takeover, to be
    /// allowed only to a login that proved the session's resume token
    /// ([`Room::resume_token`]).
    ///
    /// # Takeovers
    ///
    /// A takeover replaces exactly the connection that held the session
    /// when the login began (its `user_id` and generation), never a later
    /// one. If that connection is gone by the time the login proves itself
    /// and the name is free (it left, and the others saw it leave; or the
    /// room removed it), the login joins afresh as a new member. If another
    /// takeover replaced it first, or the connection goes between the proof
    /// and the join, the login is refused as [`RoomError::NameTaken`]. (The
    /// client does not retry that by itself, as it retries nothing once its
    /// proof has gone out; the person connects again.) So of two takeovers
    /// in flight the first to finish wins, and the older one can never evict
    /// a newer connection of the same member. The replaced connection is
    /// kicked ([`Kick::Replaced`](super::Kick::Replaced)) and can do nothing
    /// in the room from then on (see [`Membership`](super::Membership)).
    pub fn reserve(
        self: &Arc<Self>,
        name: &str,
        user_id: String,
        takeover: Option<Takeover>,
    ) -> Result<NameReservation, RoomError> {
        let looks = likenesses(name);
        let mut state = self.lock();
        if state.looks_like_another(name, &looks) {
            return Err(RoomError::NameTaken);
        }
        let takeover_of = match (state.names.get(name), takeover) {
            // Free: whatever session this login set out to take over has
            // ended, and the password is proved.
            (None, _) => {
                state.hold_name(name, looks, user_id.clone());
                None
            }
            (Some(holder), Some(Takeover(old)))
                if *holder == old.user_id && old.position(&state).is_some() =>
            {
                Some(old)
            }
            // The name is someone else's, or the session this login set out
            // to take over has been taken over since.
            _ => return Err(RoomError::NameTaken),
        };
        Ok(NameReservation {
            room: Arc::clone(self),
            name: name.to_owned(),
            user_id,
            takeover_of,
        })
    }

    /// The resume token of member `user_id`: `HMAC(resume_key, user_id)`.
    /// Derived rather than stored, so a member whose connection the room
    /// already dropped can still prove its session when it comes back (and
    /// so skip the room-wide guessing budget); a takeover keeps the
    /// `user_id`, and so the token.
    pub fn resume_token(&self, user_id: &str) -> Key32 {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.resume_key.as_bytes())
            .expect("HMAC takes any key length");
        mac.update(b"cmd-chat resume token");
        mac.update(user_id.as_bytes());
        Key32::new(mac.finalize().into_bytes().into())
    }
}
