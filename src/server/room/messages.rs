//! The room's messages: the history they are kept in (ciphertext only),
//! posting and clearing, a native joiner's history a part at a time, and
//! private frames, which are relayed and never kept.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use zeroize::Zeroize;

use super::{
    HistoryCursor, Membership, Outbound, PrivateRefusal, Room, Superseded, broadcast,
    broadcast_filtered,
};
use crate::protocol::encode;
use crate::protocol::wire::{MessageData, ServerEvent};
use crate::server::limits::{HISTORY_MAX_BYTES, HISTORY_PART};
use crate::server::outbox::Urgency;

/// One stored message: its `data` object, serialized once.
pub(super) struct Stored {
    /// Its sequence number: what a resume and a history replay pick messages
    /// by.
    pub(super) seq: u64,
    /// When it was posted, for `--expire`.
    at: Instant,
    /// The `data` object as sent, shared by every frame that carries it.
    pub(super) data_json: Arc<str>,
}

impl Drop for Stored {
    /// Ciphertext only, but a room that ends should leave nothing behind:
    /// the last holder of a stored message wipes it.
    fn drop(&mut self) {
        if let Some(text) = Arc::get_mut(&mut self.data_json) {
            text.zeroize();
        }
    }
}

/// The messages kept for joiners, within the room's bounds.
pub(super) struct History {
    /// Stored messages, oldest first, in sequence order.
    pub(super) entries: VecDeque<Stored>,
    /// Their total size, held to the room's byte bound.
    pub(super) bytes: usize,
}

impl History {
    /// Messages kept with a sequence number after `after`.
    pub(super) fn len_after(&self, after: u64) -> usize {
        self.entries.len() - self.entries.partition_point(|e| e.seq <= after)
    }
}

impl Room {
    /// The next part of a native joiner's history, oldest first, or `None`
    /// once it is all sent (messages cleared or dropped from the history in
    /// the meantime are skipped).
    pub fn history_part(&self, cursor: &mut HistoryCursor) -> Option<Outbound> {
        let state = self.lock();
        let entries = &state.history.entries;
        let start = entries.partition_point(|e| e.seq <= cursor.after);
        let mut size = encode::HISTORY_OVERHEAD;
        let mut end = start;
        for entry in entries.range(start..) {
            if entry.seq > cursor.until {
                break;
            }
            let cost = entry.data_json.len() + 1;
            if end > start && size + cost > HISTORY_PART {
                break;
            }
            size += cost;
            end += 1;
            cursor.after = entry.seq;
        }
        if end == start {
            cursor.after = cursor.until;
            return None;
        }
        let part = entries.range(start..end).map(|e| &*e.data_json);
        Some(encode::history_frame(part))
    }

    pub(super) fn post(&self, who: &Membership, token: String) -> Result<u64, Superseded> {
        let mut state = self.lock();
        who.holds(&state)?;
        let seq = state.next_seq;
        state.next_seq += 1;
        let data = MessageData {
            id: seq.to_string(),
            seq: Some(seq),
            text: token,
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            username: who.username.clone(),
        };
        let data_json = encode::message_data(&data);
        let frame = encode::message_frame(&data_json);
        let history = &mut state.history;
        history.bytes += data_json.len();
        history.entries.push_back(Stored {
            seq,
            at: Instant::now(),
            data_json,
        });
        while history.entries.len() > self.config.history_messages
            || history.bytes > self.config.history_bytes.min(HISTORY_MAX_BYTES)
        {
            match history.entries.pop_front() {
                Some(old) => history.bytes -= old.data_json.len(),
                None => break,
            }
        }
        broadcast(&mut state, &frame);
        Ok(seq)
    }

    pub(super) fn clear(&self, who: &Membership) -> Result<(), Superseded> {
        let mut state = self.lock();
        who.holds(&state)?;
        state.history.entries.clear();
        state.history.bytes = 0;
        // Native members are told who; 1.x clients get their own line.
        let by = Some(who.username.clone());
        let named = encode::encode(&ServerEvent::Cleared { by });
        broadcast_filtered(&mut state, &named, Urgency::Now, |m| !m.legacy);
        let unnamed = encode::encode(&ServerEvent::Cleared { by: None });
        broadcast_filtered(&mut state, &unnamed, Urgency::Now, |m| m.legacy);
        Ok(())
    }

    pub(super) fn send_private(
        &self,
        who: &Membership,
        to: &str,
        body: String,
    ) -> Result<(), PrivateRefusal> {
        if who.user_id == to {
            return Err(PrivateRefusal::ToSelf);
        }
        let mut state = self.lock();
        who.holds(&state)?;
        let addressee = state
            .members
            .iter()
            .find(|m| m.user_id == to)
            .ok_or(PrivateRefusal::NoSuchUser)?;
        // A 1.x client does not know the frame and must never receive it.
        if addressee.legacy {
            return Err(PrivateRefusal::LegacyAddressee(addressee.username.clone()));
        }
        let frame = encode::encode(&ServerEvent::Private {
            from: who.user_id.clone(),
            from_name: who.username.clone(),
            body,
        });
        broadcast_filtered(&mut state, &frame, Urgency::Now, |m| m.user_id == to);
        Ok(())
    }

    /// Drops history messages older than `max_age` (`--expire`).
    pub fn expire(&self, max_age: Duration) {
        let mut state = self.lock();
        let now = Instant::now();
        let history = &mut state.history;
        while let Some(oldest) = history.entries.front() {
            if now.duration_since(oldest.at) < max_age {
                break;
            }
            let old = history.entries.pop_front().expect("front exists");
            history.bytes -= old.data_json.len();
        }
    }

    /// Messages held in history right now.
    pub fn history_len(&self) -> usize {
        self.lock().history.entries.len()
    }
}
