//! What the client core tells its front ends: the [`Event`]s a session
//! yields, with the decrypted messages they carry (wiped when dropped), and
//! the few facts about a session they show. Kept apart from the core so that
//! the parts the core drives (private conversations, receipts) can speak in
//! events without depending on the core.

use std::time::Duration;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::protocol::wire::KnockOutcome;

/// A decrypted chat message. The plaintext is wiped when the value is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct ChatMessage {
    /// The server's sequence number.
    pub seq: u64,
    /// The writer's name, shown with the message, and how our own messages are
    /// told from others'.
    pub from: String,
    /// The decrypted text, sanitized only when it is shown.
    pub text: String,
    /// RFC 3339, as stamped by the server.
    pub timestamp: String,
    /// Replayed from history at join, rather than said live.
    pub history: bool,
    /// `Some(when it was written)`, RFC 3339, if the message's token was
    /// made long before the server says it received it
    /// (`RELAYED_AGAIN_AFTER`): the server relayed an old message again
    /// as if it were new. The words and the writer are genuine; the moment
    /// is not, and the message is shown as relayed again, not as fresh.
    pub relayed_again: Option<String>,
}

impl ChatMessage {
    /// What the writer says they do, for a `/me` message (`/me waves`:
    /// `waves`), which the 1.x protocol carries as its text.
    pub fn action(&self) -> Option<&str> {
        self.text.strip_prefix("/me ")
    }
}

/// How much older than the server's stamp a message's own timestamp (its
/// Fernet token's, by the writer's clock) may be before it is shown as
/// relayed again: generous, so that members' clocks may disagree.
pub const RELAYED_AGAIN_AFTER: Duration = Duration::from_secs(10 * 60);

/// A server's time stamp: RFC 3339, or, from cmd-chat 1.x servers, a
/// naive ISO 8601 time meant as UTC. `None` if it is neither.
/// What the front ends say for [`Event::PrivateNotSent`].
pub(crate) fn private_not_sent(to: &str, count: usize, reason: &str) -> String {
    match count {
        1 => format!("1 private message to {to} was not sent: {reason}"),
        n => format!("{n} private messages to {to} were not sent: {reason}"),
    }
}

pub(crate) fn parse_stamp(stamp: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(stamp)
        .map(|t| t.to_utc())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|t| t.and_utc())
        })
        .ok()
}

/// When `token` was written, if that is more than [`RELAYED_AGAIN_AFTER`]
/// before `server_stamp`. Unreadable stamps claim nothing.
pub(super) fn written_long_before(token: &str, server_stamp: &str) -> Option<String> {
    let written = crate::crypto::room_key::token_written_at(token)?;
    let stamped = parse_stamp(server_stamp)?;
    let written = chrono::DateTime::from_timestamp(i64::try_from(written).ok()?, 0)?;
    let age = stamped.signed_duration_since(written).to_std().ok()?;
    (age > RELAYED_AGAIN_AFTER).then(|| written.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// A private message, to us or from us: only the two members can read it.
/// The plaintext is wiped when the value is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct PrivateMessage {
    /// Who wrote it: the peer, or our own name for one we sent.
    pub from: String,
    /// Whom it was for: us, or the peer we sent it to.
    pub to: String,
    /// The decrypted text, which only the two of us could read.
    pub text: String,
}

/// Something that happened in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Message(ChatMessage),
    /// A private message we received, or one of ours as it is sent (after
    /// the handshake, so queued ones appear when they really leave).
    Private(PrivateMessage),
    /// The safety code of the private session with `user`, as asked for
    /// with [`Client::verify`](super::Client::verify): it matches the one `user` sees unless someone
    /// substituted keys in the middle.
    Verify {
        user: String,
        code: String,
    },
    Joined {
        user: String,
    },
    Left {
        user: String,
    },
    /// Someone emptied the history: `by` them, if the server says (1.x
    /// servers do not).
    Cleared {
        by: Option<String>,
    },
    /// A problem that does not end the session: a refused message, a message
    /// that would not decrypt.
    Error {
        message: String,
    },
    /// Something the server tells every member, such as failed login attempts.
    Notice {
        message: String,
    },
    /// The server stored our message `reference` as number `seq`.
    Sent {
        reference: u64,
        seq: u64,
    },
    /// The `count` oldest of our private messages to `to` that were still
    /// waiting for the private session with them were never sent: it could
    /// not be set up, or it ended first. (One already sent that the server
    /// refuses comes as an [`Event::Error`].)
    PrivateNotSent {
        to: String,
        count: usize,
        reason: String,
    },
    /// Our message `reference` was not confirmed; [`Client::resend`](super::Client::resend) can try again.
    SendFailed {
        reference: u64,
        reason: String,
    },
    /// The connection was lost; attempt `attempt` to get it back is coming.
    Reconnecting {
        attempt: u32,
        reason: String,
    },
    /// The server was restarted while we were away, so we came back to a
    /// new room: a new room key, new member ids, numbers starting again.
    /// What the old room held is gone, anything said there after we lost
    /// the connection was never seen, and private sessions start afresh.
    /// [`Event::Reconnected`] follows, with the new room's history; no
    /// [`Event::Left`] or [`Event::Joined`] come for the members of either
    /// room ([`Client::users`](super::Client::users) lists the new one's).
    RoomRestarted,
    /// Back in the room. Who left and who joined meanwhile follow as
    /// [`Event::Left`] and [`Event::Joined`], then the `missed` messages
    /// said meanwhile; `complete` is false if the room's history no longer
    /// held all of them. After [`Event::RoomRestarted`], `missed` counts
    /// the new room's history, which is all there is to miss there:
    /// `complete` is true.
    Reconnected {
        missed: usize,
        complete: bool,
    },
    /// A member locked the room: newcomers must knock and be admitted.
    Locked {
        by: String,
    },
    /// A member opened the room again.
    Unlocked {
        by: String,
    },
    /// Someone with the password is waiting to be let in: answer with
    /// [`Client::admit`](super::Client::admit) or [`Client::deny`](super::Client::deny).
    Knock {
        user: String,
    },
    /// A knock was answered, expired or withdrawn. `by` is the member who
    /// admitted or denied.
    KnockResolved {
        user: String,
        outcome: KnockOutcome,
        by: Option<String>,
    },
    /// We started sending a file.
    FileSending {
        name: String,
        size: u64,
    },
    /// Someone started sending a file; it is received into memory.
    FileIncoming {
        from: String,
        name: String,
        size: u64,
    },
    /// A transfer moved on by a tenth or more.
    FileProgress {
        /// Ours going out, or someone's coming in.
        sending: bool,
        /// The sender (our own name when `sending`).
        from: String,
        name: String,
        done: u64,
        size: u64,
    },
    /// We finished sending a file: the room has passed all of it on.
    FileSent {
        name: String,
        size: u64,
    },
    /// A file arrived whole and matched its checksum. It is held in memory
    /// as number `n` until [`Client::save_file`](super::Client::save_file) writes it.
    FileReceived {
        n: usize,
        from: String,
        name: String,
        size: u64,
    },
    /// A transfer failed: ours (`sending`) or someone's; nothing was kept.
    FileFailed {
        sending: bool,
        from: String,
        name: String,
        reason: String,
    },
}

/// The room is locked: the login waits for a member to let us in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// Who locked the room.
    pub locked_by: String,
    /// How long the server lets us wait for an answer.
    pub timeout: Duration,
}

/// Whether the session is hidden from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Native cmd-chat: every frame after SRP is sealed.
    Sealed,
    /// cmd-chat 1.x server: frames after SRP are readable on the wire.
    Legacy,
}
