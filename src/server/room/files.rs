//! Files through the room: an offer goes to every native member but the
//! sender, and its chunks only to those who got the offer and keep up.

use std::collections::HashSet;

use super::{Membership, Outbound, Room, Superseded, broadcast_filtered};
use crate::server::limits::FILE_RECEIVER_QUEUE_MAX;
use crate::server::outbox::Urgency;

impl Room {
    pub(super) fn offer_file(
        &self,
        who: &Membership,
        frame: &Outbound,
    ) -> Result<HashSet<String>, Superseded> {
        let mut state = self.lock();
        who.holds(&state)?;
        let receivers: HashSet<String> = state
            .members
            .iter()
            .filter(|m| !m.legacy && m.user_id != who.user_id)
            .map(|m| m.user_id.clone())
            .collect();
        broadcast_filtered(&mut state, frame, Urgency::Now, |m| {
            receivers.contains(&m.user_id)
        });
        Ok(receivers)
    }

    pub(super) fn relay_file_chunk(
        &self,
        who: &Membership,
        receivers: &mut HashSet<String>,
        frame: &Outbound,
        aborted: &Outbound,
    ) -> Result<(), Superseded> {
        let mut state = self.lock();
        who.holds(&state)?;
        receivers.retain(|id| state.members.iter().any(|m| &m.user_id == id));
        let behind: HashSet<String> = state
            .members
            .iter()
            .filter(|m| receivers.contains(&m.user_id))
            .filter(|m| m.outbox.queued_bytes() + frame.len() > FILE_RECEIVER_QUEUE_MAX)
            .map(|m| m.user_id.clone())
            .collect();
        receivers.retain(|id| !behind.contains(id));
        broadcast_filtered(&mut state, aborted, Urgency::Now, |m| {
            behind.contains(&m.user_id)
        });
        broadcast_filtered(&mut state, frame, Urgency::Now, |m| {
            receivers.contains(&m.user_id)
        });
        Ok(())
    }

    /// Tells the receivers of a transfer that it ended early.
    pub fn abort_file(&self, receivers: &HashSet<String>, frame: &Outbound) {
        let mut state = self.lock();
        broadcast_filtered(&mut state, frame, Urgency::Now, |m| {
            receivers.contains(&m.user_id)
        });
    }

    /// The most bytes queued toward any of `receivers` still in the room.
    pub fn file_backlog(&self, receivers: &HashSet<String>) -> usize {
        self.lock()
            .members
            .iter()
            .filter(|m| receivers.contains(&m.user_id))
            .map(|m| m.outbox.queued_bytes())
            .max()
            .unwrap_or(0)
    }
}
