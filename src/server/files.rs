//! The server's side of file sharing: relaying, never reading or storing.
//!
//! A file travels as an offer (its name, size and hash sealed with the room
//! key, which the server does not have) and then its chunks, each a Fernet
//! token. The server passes them to the native members who were in the room
//! when the offer came (1.x clients could not parse them), keeps nothing in
//! history, and bounds what a sender can make it do:
//!
//! - a file has at most as many chunks as `--max-file-size` allows, each at
//!   most one encrypted [`FILE_CHUNK`](crate::protocol::limits::FILE_CHUNK),
//!   in order, so every transfer is bounded by (sender, id);
//! - a member has at most [`MAX_TRANSFERS_PER_MEMBER`] transfers open, and
//!   each offer counts against the chat rate (`--rate`), as it reaches every
//!   member;
//! - each relayed chunk is acknowledged to the sender, and a sender may run
//!   at most [`FILE_WINDOW`] chunks ahead of its acknowledgements. The server
//!   holds acknowledgements back while a receiver's queue is long
//!   ([`FILE_BACKLOG_PAUSE`]) or while the sender is over its byte budget
//!   ([`FILE_BYTES_PER_SEC`]). That is what paces a sender: chunks never
//!   count against the chat message rate, and never flood anyone's queue.
//! - a transfer cancelled or refused with chunks still unacknowledged keeps
//!   its place among the sender's open transfers until those chunks would
//!   have been acknowledged, or [`FILE_DRAIN_MAX`] at most: otherwise
//!   cancelling and offering again would start a fresh window each time,
//!   unpaced.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::limits::{
    FILE_BACKLOG_PAUSE, FILE_BYTES_BURST, FILE_BYTES_PER_SEC, FILE_DRAIN_MAX,
    MAX_TRANSFERS_PER_MEMBER,
};
use super::outbox::Outbound;
use super::room::{Membership, Room, Superseded};
use crate::protocol::encode::encode;
use crate::protocol::limits::{
    FILE_CHUNK_TOKEN_MAX, FILE_ID_MAX, FILE_META_TOKEN_MAX, FILE_WINDOW, MAX_FILE_SIZE_CAP,
    file_chunks,
};
use crate::protocol::token::{self, TokenError};
use crate::protocol::wire::ServerEvent;

/// Why a transfer was refused or ended; the text goes to the sender in a
/// `file_aborted` frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileRefusal {
    #[error("file refused: a file id is 1 to {FILE_ID_MAX} letters, digits or dashes")]
    BadId,
    #[error("file refused: a transfer with this id is already open")]
    DuplicateId,
    #[error("file refused: slow down (offers count against the room's message rate)")]
    TooFast,
    #[error(
        "file refused: a cancelled file is still reaching members who are behind; try again in a few seconds"
    )]
    StillDraining,
    #[error(
        "file refused: at most {MAX_TRANSFERS_PER_MEMBER} files at once; wait for one to finish"
    )]
    TooMany,
    #[error("file refused: larger than this room's limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("file refused: its description is not an encrypted Fernet token")]
    BadMeta,
    #[error("file refused: no open transfer has this id")]
    Unknown,
    #[error("file refused: chunk {got} arrived where chunk {expected} was due")]
    OutOfOrder { expected: u32, got: u32 },
    #[error(
        "file refused: more than {FILE_WINDOW} chunks sent ahead of the server's acknowledgements"
    )]
    AheadOfWindow,
    #[error("file refused: a chunk is not an encrypted Fernet token of at most 32 KiB")]
    BadChunk,
    #[error("file refused: files need a native cmd-chat client")]
    Legacy,
    /// The sending connection was removed or taken over; it is ending.
    #[error(transparent)]
    Superseded(#[from] Superseded),
}

/// One file on its way through the room.
struct Transfer {
    /// Chunks the offer announced.
    chunks: u32,
    /// Chunks relayed so far (the index the next one must have).
    relayed: u32,
    /// Chunks acknowledged to the sender so far.
    acked: u32,
    /// Native members who got the offer and are still taking chunks.
    receivers: HashSet<String>,
}

/// A token bucket counting file bytes, allowed to go into debt: a chunk is
/// always relayed, and the debt delays the acknowledgements instead.
struct ByteBudget {
    /// Bytes that may still go out at once; negative while in debt.
    tokens: f64,
    /// When `tokens` was last refilled.
    at: Instant,
}

impl ByteBudget {
    fn new() -> Self {
        Self {
            tokens: FILE_BYTES_BURST as f64,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * FILE_BYTES_PER_SEC as f64).min(FILE_BYTES_BURST as f64);
        self.at = now;
    }

    fn spend(&mut self, bytes: usize, now: Instant) {
        self.refill(now);
        self.tokens -= bytes as f64;
    }

    fn in_credit(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 0.0
    }
}

/// One member's open transfers.
pub(crate) struct Transfers {
    /// By transfer id.
    active: HashMap<String, Transfer>,
    /// The receivers of transfers that ended with chunks unacknowledged, and
    /// when each gives its place back at the latest: each holds a place among
    /// the open transfers until it would have been acknowledged (budget in
    /// credit, receivers caught up).
    draining: Vec<(Instant, HashSet<String>)>,
    /// File bytes this member may send before its acknowledgements slow down.
    budget: ByteBudget,
    /// The most chunks a file may have in this room.
    max_chunks: u64,
    /// `--max-file-size`, for the refusal message.
    max_file_size: u64,
}

/// `id` as the client makes it: a UUID, or anything as tame.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= FILE_ID_MAX
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Transfers {
    pub fn new(max_file_size: u64) -> Self {
        let max_file_size = max_file_size.min(MAX_FILE_SIZE_CAP);
        Self {
            active: HashMap::new(),
            draining: Vec::new(),
            budget: ByteBudget::new(),
            max_chunks: file_chunks(max_file_size),
            max_file_size,
        }
    }

    /// Checks an offer from `sender` and passes it on to the native members.
    pub fn offer(
        &mut self,
        sender: &Membership,
        id: String,
        chunks: u32,
        meta: String,
    ) -> Result<(), FileRefusal> {
        if !valid_id(&id) {
            return Err(FileRefusal::BadId);
        }
        if self.active.contains_key(&id) {
            return Err(FileRefusal::DuplicateId);
        }
        if self.active.len() >= MAX_TRANSFERS_PER_MEMBER {
            return Err(FileRefusal::TooMany);
        }
        if self.active.len() + self.draining.len() >= MAX_TRANSFERS_PER_MEMBER {
            return Err(FileRefusal::StillDraining);
        }
        if chunks == 0 || u64::from(chunks) > self.max_chunks {
            return Err(FileRefusal::TooLarge {
                limit: self.max_file_size,
            });
        }
        token::check_shape_within(&meta, FILE_META_TOKEN_MAX).map_err(|_| FileRefusal::BadMeta)?;
        let frame = encode(&ServerEvent::FileOffer {
            from: sender.username().to_owned(),
            id: id.clone(),
            chunks,
            meta,
        });
        let receivers = sender.offer_file(&frame)?;
        self.active.insert(
            id,
            Transfer {
                chunks,
                relayed: 0,
                acked: 0,
                receivers,
            },
        );
        Ok(())
    }

    /// Checks a chunk and passes it on. A refused chunk ends its transfer
    /// (the receivers are told); the caller tells the sender.
    pub fn chunk(
        &mut self,
        sender: &Membership,
        id: String,
        index: u32,
        data: String,
    ) -> Result<(), FileRefusal> {
        let Some(transfer) = self.active.get(&id) else {
            return Err(FileRefusal::Unknown);
        };
        let problem = if index != transfer.relayed || index >= transfer.chunks {
            Some(FileRefusal::OutOfOrder {
                expected: transfer.relayed,
                got: index,
            })
        } else if transfer.relayed - transfer.acked >= FILE_WINDOW {
            Some(FileRefusal::AheadOfWindow)
        } else {
            match token::check_shape_within(&data, FILE_CHUNK_TOKEN_MAX) {
                Ok(()) => None,
                Err(TokenError::TooLong | TokenError::NotFernet) => Some(FileRefusal::BadChunk),
            }
        };
        if let Some(refusal) = problem {
            self.abort(sender.room(), sender.username(), &id, &refusal.to_string());
            return Err(refusal);
        }
        let aborted = encode(&ServerEvent::FileAborted {
            from: sender.username().to_owned(),
            id: id.clone(),
            reason: "you fell too far behind the room to take this file".into(),
        });
        let transfer = self.active.get_mut(&id).expect("checked above");
        let size = data.len();
        let frame = encode(&ServerEvent::FileChunk {
            from: sender.username().to_owned(),
            id,
            index,
            data,
        });
        sender.relay_file_chunk(&mut transfer.receivers, &frame, &aborted)?;
        self.budget.spend(size, Instant::now());
        transfer.relayed += 1;
        Ok(())
    }

    /// Ends a transfer early and tells its receivers why. Unknown ids are ignored.
    pub fn abort(&mut self, room: &Room, sender: &str, id: &str, reason: &str) {
        if let Some(transfer) = self.active.remove(id) {
            let frame = encode(&ServerEvent::FileAborted {
                from: sender.to_owned(),
                id: id.to_owned(),
                reason: reason.to_owned(),
            });
            room.abort_file(&transfer.receivers, &frame);
            if transfer.acked < transfer.relayed {
                self.draining
                    .push((Instant::now() + FILE_DRAIN_MAX, transfer.receivers));
            }
        }
    }

    /// Ends every open transfer (the sender is leaving).
    pub fn abort_all(&mut self, room: &Room, sender: &str, reason: &str) {
        let ids: Vec<String> = self.active.keys().cloned().collect();
        for id in ids {
            self.abort(room, sender, &id, reason);
        }
    }

    /// Whether acknowledgements (or the end of a cancelled transfer's
    /// unacknowledged chunks) are being held back.
    pub fn holding(&self) -> bool {
        !self.draining.is_empty() || self.active.values().any(|t| t.acked < t.relayed)
    }

    /// The acknowledgements that may go to the sender now: one per transfer
    /// that has unacknowledged chunks, if the sender is within its byte budget
    /// and that transfer's receivers have caught up. A transfer whose last
    /// chunk is acknowledged is finished.
    pub fn release_acks(&mut self, room: &Room) -> Vec<Outbound> {
        let now = Instant::now();
        let in_credit = self.budget.in_credit(now);
        // A draining place is given back once it would have been
        // acknowledged, or when its time is up.
        self.draining.retain(|(until, receivers)| {
            let caught_up = in_credit && room.file_backlog(receivers) <= FILE_BACKLOG_PAUSE;
            now < *until && !caught_up
        });
        if !self.holding() || !in_credit {
            return Vec::new();
        }
        let mut acks = Vec::new();
        let mut finished = Vec::new();
        for (id, transfer) in &mut self.active {
            if transfer.acked == transfer.relayed
                || room.file_backlog(&transfer.receivers) > FILE_BACKLOG_PAUSE
            {
                continue;
            }
            transfer.acked = transfer.relayed;
            acks.push(encode(&ServerEvent::FileAck {
                id: id.clone(),
                // Cumulative: every chunk up to this one.
                index: transfer.relayed - 1,
            }));
            if transfer.acked == transfer.chunks {
                finished.push(id.clone());
            }
        }
        for id in finished {
            self.active.remove(&id);
        }
        acks
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::oneshot;

    use super::*;
    use crate::crypto::{Password, RoomCipher};
    use crate::protocol::limits::FILE_CHUNK;
    use crate::server::outbox::{self, Inbox, Outbox};
    use crate::server::room::Membership;

    use crate::server::room::test_room as room;

    /// A member whose queue the test holds (and does not read).
    fn member(room: &Arc<Room>, name: &str) -> (Membership, Outbox, Inbox) {
        let reservation = room
            .reserve(name, uuid::Uuid::new_v4().to_string(), None)
            .unwrap();
        let (outbox, inbox) = outbox::channel();
        let (kick, _) = oneshot::channel();
        let membership = room
            .join(&reservation, false, outbox.clone(), kick, None, None)
            .unwrap();
        (membership, outbox, inbox)
    }

    fn cipher() -> RoomCipher {
        RoomCipher::from_password(&Password::new("pw".into()), b"salt")
    }

    fn chunk_token() -> String {
        cipher().encrypt_file_part(&[0; FILE_CHUNK])
    }

    #[tokio::test]
    async fn acks_wait_for_a_slow_receiver_and_the_window_is_enforced() {
        let room = room();
        let (ann, _, _ann_inbox) = member(&room, "ann");
        let (_bob, bob_queue, mut bob_inbox) = member(&room, "bob");
        let mut transfers = Transfers::new(5 << 20);
        let token = chunk_token();
        transfers
            .offer(&ann, "f".into(), 20, cipher().encrypt("meta"))
            .unwrap();
        // While bob keeps up, every chunk is acknowledged at once.
        transfers.chunk(&ann, "f".into(), 0, token.clone()).unwrap();
        assert_eq!(transfers.release_acks(&room).len(), 1);
        assert!(!transfers.holding());

        // bob falls behind: acknowledgements are held, and the sender may
        // run only FILE_WINDOW chunks ahead of them.
        bob_queue
            .push(&"x".repeat(FILE_BACKLOG_PAUSE).into())
            .unwrap();
        for index in 1..=FILE_WINDOW {
            transfers
                .chunk(&ann, "f".into(), index, token.clone())
                .unwrap();
            assert!(transfers.release_acks(&room).is_empty());
        }
        assert!(transfers.holding());
        let before = bob_queue.queued_bytes();
        assert_eq!(
            transfers.chunk(&ann, "f".into(), FILE_WINDOW + 1, token.clone()),
            Err(FileRefusal::AheadOfWindow)
        );
        // The transfer is over; bob is told, and was never pushed past the
        // bound that would disconnect him.
        assert!(
            bob_queue.queued_bytes() > before,
            "an aborted frame for bob"
        );
        assert!(bob_queue.queued_bytes() < crate::server::limits::MAX_QUEUED_BYTES);
        assert_eq!(room.member_names(), ["ann", "bob"]);

        // Its unacknowledged chunks still hold a place among ann's
        // transfers, so offering again does not open a fresh window each time.
        assert!(transfers.holding());
        transfers
            .offer(&ann, "g".into(), 20, cipher().encrypt("meta"))
            .unwrap();
        transfers.abort(&room, "ann", "g", "cancelled");
        transfers
            .offer(&ann, "h".into(), 20, cipher().encrypt("meta"))
            .unwrap();
        transfers.chunk(&ann, "h".into(), 0, token.clone()).unwrap();
        transfers.abort(&room, "ann", "h", "cancelled");
        assert_eq!(
            transfers.offer(&ann, "i".into(), 20, cipher().encrypt("meta")),
            Err(FileRefusal::StillDraining)
        );
        // Once bob has caught up, those places are free again.
        while !bob_inbox.is_empty() {
            bob_inbox.recv().await.unwrap();
        }
        assert!(transfers.release_acks(&room).is_empty());
        assert!(!transfers.holding());
        transfers
            .offer(&ann, "i".into(), 20, cipher().encrypt("meta"))
            .unwrap();
    }

    #[test]
    fn a_receiver_who_stays_behind_holds_a_cancelled_place_for_a_bounded_time() {
        let room = room();
        let (ann, _, _ann_inbox) = member(&room, "ann");
        let (_bob, bob_queue, _bob_inbox) = member(&room, "bob");
        let mut transfers = Transfers::new(5 << 20);
        let token = chunk_token();
        bob_queue
            .push(&"x".repeat(FILE_BACKLOG_PAUSE).into())
            .unwrap();
        for id in ["f", "g"] {
            transfers
                .offer(&ann, id.into(), 20, cipher().encrypt("meta"))
                .unwrap();
            transfers.chunk(&ann, id.into(), 0, token.clone()).unwrap();
            transfers.abort(&room, "ann", id, "cancelled");
        }
        let offer = |t: &mut Transfers| t.offer(&ann, "h".into(), 20, cipher().encrypt("meta"));
        assert_eq!(offer(&mut transfers), Err(FileRefusal::StillDraining));
        assert!(transfers.release_acks(&room).is_empty());
        assert!(transfers.holding(), "bob is still behind");
        // FILE_DRAIN_MAX later, bob still behind:
        for (until, _) in &mut transfers.draining {
            *until = Instant::now();
        }
        assert!(transfers.release_acks(&room).is_empty());
        assert!(!transfers.holding());
        assert_eq!(offer(&mut transfers), Ok(()));
    }

    #[test]
    fn a_receiver_far_behind_loses_the_file_not_its_place() {
        let room = room();
        let (ann, _, _ann_inbox) = member(&room, "ann");
        let (_bob, bob_queue, _bob_inbox) = member(&room, "bob");
        let mut transfers = Transfers::new(5 << 20);
        let token = chunk_token();
        transfers
            .offer(&ann, "f".into(), 2, cipher().encrypt("meta"))
            .unwrap();
        bob_queue
            .push(
                &"x".repeat(crate::server::limits::FILE_RECEIVER_QUEUE_MAX)
                    .into(),
            )
            .unwrap();
        transfers.chunk(&ann, "f".into(), 0, token.clone()).unwrap();
        // bob got a short `file_aborted` instead of the chunk, and with no
        // receiver left behind, the sender is acknowledged at once.
        assert!(bob_queue.queued_bytes() < crate::server::limits::FILE_RECEIVER_QUEUE_MAX + 1024);
        assert_eq!(transfers.release_acks(&room).len(), 1);
        assert_eq!(room.member_names(), ["ann", "bob"]);
    }

    #[test]
    fn ids_are_tame() {
        assert!(valid_id("0b9f2c1e-6a3d-4f57-9a8e-3c2b1d0e9f8a"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"a".repeat(FILE_ID_MAX + 1)));
    }

    #[test]
    fn budget_goes_into_debt_and_recovers() {
        let mut budget = ByteBudget::new();
        let now = Instant::now();
        budget.spend(FILE_BYTES_BURST + 1, now);
        assert!(!budget.in_credit(now));
        assert!(budget.in_credit(now + std::time::Duration::from_secs(1)));
    }
}
