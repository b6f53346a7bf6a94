//! Joining: a login becomes a member, afresh or by taking over its own
//! session, and gets its `init` (and a native joiner its history after it).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::sync::oneshot;

use super::names::Replacing;
use super::{
    Admission, HistoryCursor, Kick, Member, Membership, NameReservation, Outbound, Resume, Room,
    RoomError, State, broadcast_presence,
};
use crate::protocol::encode;
use crate::protocol::limits::LEGACY_MAX_LINE;
use crate::protocol::wire::{ServerEvent, UserInfo};
use crate::server::limits::SessionRate;
use crate::server::outbox::Outbox;

impl Room {
    /// Turns an authenticated login into a member: queues its `init`, then
    /// tells everyone else.
    ///
    /// A takeover replaces the member's old connection in place, under the
    /// same `user_id`, so the others see no leave and join (see
    /// [`Room::reserve`] for which connection it may replace). A `resume`
    /// gets only the messages after its `after_seq`.
    ///
    /// A locked room refuses with [`RoomError::Locked`]
    /// unless a member `admitted` this login; checking and joining happen
    /// under one lock, so nobody slips in as the room is being locked.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        self: &Arc<Self>,
        reservation: &NameReservation,
        legacy: bool,
        outbox: Outbox,
        kick: oneshot::Sender<Kick>,
        admitted: Option<Admission>,
        resume: Option<Resume>,
    ) -> Result<Membership, RoomError> {
        let mut state = self.lock();
        // Taking over one's own session is no newcomer's entry: no knock.
        if let Some(by) = &state.locked
            && admitted.is_none()
            && reservation.takeover_of.is_none()
        {
            return Err(RoomError::Locked { by: by.clone() });
        }
        let generation = state.next_generation;
        state.next_generation += 1;
        let username = reservation.name.clone();
        let member = Member {
            user_id: reservation.user_id.clone(),
            generation,
            username: username.clone(),
            resume_token: self.resume_token(&reservation.user_id),
            legacy,
            outbox,
            kick: Some(kick),
            rate: SessionRate::default(),
        };
        let history = match &reservation.takeover_of {
            Some(old) => self.take_over(&mut state, old, member, resume)?,
            None => {
                let admitted_by = admitted.and_then(|a| a.by);
                self.admit_new(&mut state, member, resume, admitted_by.as_deref())?
            }
        };
        let (user_id, rate) = state
            .members
            .iter()
            .find(|m| m.generation == generation)
            .map(|m| (m.user_id.clone(), m.rate.clone()))
            .unwrap_or_default();
        drop(state);
        // Membership now owns the name; the reservation's drop leaves it alone.
        Ok(Membership {
            room: Arc::clone(self),
            user_id,
            generation,
            username,
            history,
            rate,
        })
    }

    /// Puts `member` in the place of the connection `old`, which holds its
    /// session now, under the session's `user_id`: the others see no leave
    /// and no join, and the old connection is kicked as
    /// [`Kick::Replaced`]. Returns the joiner's history cursor.
    pub(super) fn take_over(
        &self,
        state: &mut State,
        old: &Replacing,
        mut member: Member,
        resume: Option<Resume>,
    ) -> Result<Option<HistoryCursor>, RoomError> {
        let Some(pos) = old.position(state) else {
            // Gone since the proof was checked: it left, or another
            // login took it over first.
            return Err(RoomError::NameTaken);
        };
        member.user_id = old.user_id.clone();
        // The session keeps its resume token: a client that loses this
        // connection before reading `init` can still prove it next time.
        member.resume_token = state.members[pos].resume_token.clone();
        // Nor does taking the session over refill its rate bucket.
        member.rate = state.members[pos].rate.clone();
        let (init, cursor) = self.init_frame(state, &member, resume, None);
        let _ = member.outbox.push(&init);
        let mut old = std::mem::replace(&mut state.members[pos], member);
        if let Some(kick) = old.kick.take() {
            let _ = kick.send(Kick::Replaced);
        }
        Ok(cursor)
    }

    /// Adds `member` to the room as a newcomer, if the room has space, and
    /// tells everyone else it joined. Returns the joiner's history cursor.
    pub(super) fn admit_new(
        &self,
        state: &mut State,
        member: Member,
        resume: Option<Resume>,
        admitted_by: Option<&str>,
    ) -> Result<Option<HistoryCursor>, RoomError> {
        if state.members.len() >= self.config.max_users {
            return Err(RoomError::Full(self.config.max_users));
        }
        let (init, cursor) = self.init_frame(state, &member, resume, admitted_by);
        // The new member's queue is empty, so its `init` always fits, and
        // it is the first frame the member's connection sends.
        let _ = member.outbox.push(&init);
        let joined = encode::encode(&ServerEvent::UserJoined {
            user_id: member.user_id.clone(),
            username: member.username.clone(),
        });
        let user_id = member.user_id.clone();
        state.members.push(member);
        state.empty_since = None;
        broadcast_presence(state, &joined, Some(&user_id));
        Ok(cursor)
    }

    /// The joiner's `init` frame. A 1.x joiner finds the newest history that
    /// fits its line limit in it; a native joiner gets a count, and the
    /// returned cursor says which messages follow in `history` frames.
    fn init_frame(
        &self,
        state: &State,
        joiner: &Member,
        resume: Option<Resume>,
        admitted_by: Option<&str>,
    ) -> (Outbound, Option<HistoryCursor>) {
        let legacy = joiner.legacy;
        let mut users: Vec<UserInfo> = state
            .members
            .iter()
            .filter(|m| m.user_id != joiner.user_id)
            .map(|m| UserInfo {
                user_id: m.user_id.clone(),
                username: m.username.clone(),
            })
            .collect();
        users.push(UserInfo {
            user_id: joiner.user_id.clone(),
            username: joiner.username.clone(),
        });
        // A reconnecting member gets what it missed: the messages after the
        // last one it saw, and whether the history still held all of them.
        let after = resume.map_or(0, |r| r.after_seq);
        let complete = resume.map(|resume| {
            let first_kept = state.history.entries.front().map(|e| e.seq);
            let missed_any = state.next_seq > resume.after_seq.saturating_add(1);
            !missed_any
                || first_kept.is_some_and(|first| first <= resume.after_seq.saturating_add(1))
        });
        let native = (!legacy).then_some(());
        let init = ServerEvent::Init {
            messages: Vec::new(),
            users,
            room_salt: native.map(|()| self.room_salt_b64.clone()),
            user_id: native.map(|()| joiner.user_id.clone()),
            room_id: native.map(|()| self.id.clone()),
            resume_token: native.map(|()| STANDARD.encode(joiner.resume_token.as_bytes())),
            // Echoed under the seal: the request itself came in clear.
            after_seq: resume.map(|r| r.after_seq),
            complete,
            locked: native.and(state.locked.clone()),
            knocking: match native {
                Some(()) => state.knocks.iter().map(|k| k.username.clone()).collect(),
                None => Vec::new(),
            },
            history: native.map(|()| state.history.len_after(after) as u64),
            max_file_size: native.map(|()| self.config.max_file_size),
            admitted_by: native.and(admitted_by.map(str::to_owned)),
        };
        if !legacy {
            let until = state.next_seq.saturating_sub(1);
            let cursor = HistoryCursor { after, until };
            return (encode::init_frame(&init, []), Some(cursor));
        }
        // Legacy clients read lines of at most 64 KiB: send the newest history that fits.
        let budget = LEGACY_MAX_LINE - 1;
        let mut used = encode::init_len(&init);
        let mut first_kept = state.history.entries.len();
        for (i, entry) in state.history.entries.iter().enumerate().rev() {
            if entry.seq <= after {
                break;
            }
            let cost = entry.data_json.len() + 1;
            if used + cost > budget {
                break;
            }
            used += cost;
            first_kept = i;
        }
        let kept = state.history.entries.iter().skip(first_kept);
        (encode::init_frame(&init, kept.map(|e| &*e.data_json)), None)
    }
}
