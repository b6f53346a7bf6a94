//! What a connection holds while it is in the room, and every action a
//! member takes, each checked against the connection's place.

use std::collections::HashSet;
use std::sync::Arc;

use super::{
    Decision, Outbound, PrivateRefusal, Room, RoomError, State, Superseded, remove_member,
};
use crate::server::limits::SessionRate;

/// Membership held by a connection; dropping it leaves the room.
///
/// Every action goes through it, and the room checks, under the same lock
/// as the action, that this connection still holds the member's place
/// (same `user_id` and `generation`). A connection that was removed or
/// taken over may still be working through frames it had already read,
/// before it notices its kick; those actions are refused with
/// [`Superseded`] instead of speaking for a member it no longer is, or for
/// whoever took the name since.
pub struct Membership {
    /// The room acted on, and left when this is dropped.
    pub(super) room: Arc<Room>,
    /// The member's id, with `generation` telling whether this connection still
    /// holds its place.
    pub(super) user_id: String,
    /// Which connection of the member this is; a takeover gives the
    /// member a new one, and this one then holds nothing.
    pub(super) generation: u64,
    /// The member's name, stamped on what it posts and on its private frames.
    pub(super) username: String,
    /// A native joiner's history, still to be sent after `init`.
    pub(super) history: Option<HistoryCursor>,
    /// The session's `--rate` bucket, handed to the connection's frame loop.
    pub(super) rate: SessionRate,
}

/// Where a native joiner's history replay stands: the messages with
/// `after < seq <= until` are still to be sent, a part at a time, as the
/// member's connection takes them ([`Room::history_part`]). Parts are built
/// from the room's history when they are sent, so a joiner, however slow,
/// never costs more than one part of memory beyond the shared history.
#[derive(Debug, Clone, Copy)]
pub struct HistoryCursor {
    /// The last message sent so far (or before the replay, the last one the
    /// member saw).
    pub(super) after: u64,
    /// The newest message when the member joined: later ones reach it live, not
    /// in the replay.
    pub(super) until: u64,
}

impl Membership {
    /// Whether this connection still holds the member's place.
    pub(super) fn holds(&self, state: &State) -> Result<(), Superseded> {
        if state
            .members
            .iter()
            .any(|m| m.user_id == self.user_id && m.generation == self.generation)
        {
            Ok(())
        } else {
            Err(Superseded)
        }
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// The session's `--rate` bucket, shared with any connection that takes
    /// the session over.
    pub fn rate(&self) -> SessionRate {
        self.rate.clone()
    }

    /// The history to send right after `init` (native joiners only).
    pub fn take_history(&mut self) -> Option<HistoryCursor> {
        self.history.take()
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// Stores and relays a message whose shape has already been checked;
    /// returns its sequence number.
    pub fn post(&self, token: String) -> Result<u64, Superseded> {
        self.room.post(self, token)
    }

    /// Empties the history for everyone.
    pub fn clear(&self) -> Result<(), Superseded> {
        self.room.clear(self)
    }

    /// Relays a private frame, whose body's shape has already been checked,
    /// to the member `to` (a `user_id`) alone. It is not stored.
    pub fn send_private(&self, to: &str, body: String) -> Result<(), PrivateRefusal> {
        self.room.send_private(self, to, body)
    }

    /// Locks the room to newcomers; native members see who did.
    pub fn lock(&self) -> Result<(), RoomError> {
        self.room.lock_room(self)
    }

    /// Opens the room again and lets everyone knocking in.
    pub fn unlock(&self) -> Result<(), RoomError> {
        self.room.unlock_room(self)
    }

    /// Admits or denies the newcomer called `user`.
    pub fn answer(&self, user: &str, admit: bool) -> Result<(), RoomError> {
        let decision = if admit {
            Decision::Admitted {
                by: Some(self.username.clone()),
            }
        } else {
            Decision::Denied {
                by: self.username.clone(),
            }
        };
        self.room.answer(self, user, decision)
    }

    /// Starts relaying a file: queues the offer to every native member but
    /// this one, and returns who got it, the only members its chunks go to.
    pub fn offer_file(&self, frame: &Outbound) -> Result<HashSet<String>, Superseded> {
        self.room.offer_file(self, frame)
    }

    /// Relays a chunk of a file this member offered to `receivers`. A
    /// receiver whose queue already holds more than
    /// [`FILE_RECEIVER_QUEUE_MAX`](crate::server::limits::FILE_RECEIVER_QUEUE_MAX) is taken off the transfer and sent
    /// `aborted` instead: better one lost file than a member disconnected
    /// for being slow. Receivers that left are forgotten.
    pub fn relay_file_chunk(
        &self,
        receivers: &mut HashSet<String>,
        frame: &Outbound,
        aborted: &Outbound,
    ) -> Result<(), Superseded> {
        self.room.relay_file_chunk(self, receivers, frame, aborted)
    }

    /// The room, for what any connection may do (tell receivers a file ended).
    pub fn room(&self) -> &Room {
        &self.room
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.room.leave(&self.user_id, self.generation);
    }
}

/// What a reconnecting member asks for.
#[derive(Debug, Clone, Copy)]
pub struct Resume {
    /// The last sequence number the member saw.
    pub after_seq: u64,
}

impl Room {
    /// The member leaves, unless a later connection of its own took its
    /// place (then `generation` no longer matches and nothing happens).
    fn leave(&self, user_id: &str, generation: u64) {
        let mut state = self.lock();
        if state
            .members
            .iter()
            .any(|m| m.user_id == user_id && m.generation == generation)
        {
            remove_member(&mut state, user_id);
        }
    }
}
