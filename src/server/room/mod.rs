//! The room: who is in it, what they have said (ciphertext only), and the
//! fan-out of every event to every member. Private frames go to their
//! addressee alone and are never stored.
//!
//! All state sits behind one mutex that is held only for short, non-blocking
//! work: every member's outbound queue is bounded and filled with `try_send`,
//! so one slow reader never holds up the others. Doing the fan-out under the
//! lock gives every member the same order of events, and gives a joiner its
//! `init` snapshot and then exactly the events after it.
//!
//! The parts, each about one thing the room does:
//!
//! - `names`: which names are in use, reserving one for a login, and
//!   which session a reconnecting login may take over;
//! - `membership`: what a connection holds while it is in the room, and
//!   every action it takes through it;
//! - `join`: turning a login into a member, afresh or by taking its
//!   session over, and the joiner's `init`;
//! - `messages`: the history, and relaying messages and private frames;
//! - `door`: locking the room, and the knocks of newcomers while it is;
//! - `files`: relaying file offers and chunks to their receivers;
//! - here: the state itself and the fan-out of frames to members.

mod door;
mod files;
mod join;
mod membership;
mod messages;
mod names;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::crypto::Key32;

pub use door::KnockTicket;
use door::{Knock, unlock};
pub use membership::{HistoryCursor, Membership, Resume};
use messages::History;
pub use names::{NameReservation, Takeover};

use super::limits::{MAX_WAITING_KNOCKS, SessionRate};
pub use super::outbox::Outbound;
use super::outbox::{Outbox, Urgency};
use crate::protocol::encode;
use crate::protocol::wire::{ErrorCode, ServerEvent};

/// Why a member was removed by the room rather than leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// Its outbound queue filled up: it is not reading.
    TooSlow,
    /// The same member logged in again (after losing this connection) and
    /// took the session over.
    Replaced,
}

/// A connection acted on a place in the room it no longer holds: the room
/// removed it (too slow to read) or a newer connection of the same member
/// took the session over. Nothing was done, and the connection is ending;
/// its kick says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this connection no longer holds its place in the room")]
pub struct Superseded;

/// Why the room refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error(transparent)]
    Superseded(#[from] Superseded),
    #[error("the name is taken by someone in the room, or looks like one that is")]
    NameTaken,
    #[error("the room is full ({0} members)")]
    Full(usize),
    #[error("the room is locked (by {by})")]
    Locked { by: String },
    #[error(
        "the room is locked and {MAX_WAITING_KNOCKS} people are already waiting to be let in; try again later"
    )]
    TooManyKnocks,
    #[error("the room is already locked (by {by})")]
    AlreadyLocked { by: String },
    #[error("the room is not locked")]
    NotLocked,
    #[error("nobody called {0:?} is waiting to be let in")]
    NoSuchKnock(String),
}

impl RoomError {
    pub fn code(&self) -> ErrorCode {
        match self {
            RoomError::Superseded(_) => ErrorCode::Replaced,
            RoomError::NameTaken => ErrorCode::NameTaken,
            RoomError::Full(_) => ErrorCode::RoomFull,
            RoomError::Locked { .. } | RoomError::TooManyKnocks => ErrorCode::RoomLocked,
            RoomError::AlreadyLocked { .. } | RoomError::NotLocked | RoomError::NoSuchKnock(_) => {
                ErrorCode::BadRequest
            }
        }
    }
}

/// Why a private frame was not relayed. The sender is told; nothing else happens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivateRefusal {
    #[error(transparent)]
    Superseded(#[from] Superseded),
    #[error("that member is not in the room (they may have just left)")]
    NoSuchUser,
    #[error("{0} uses cmd-chat 1.x, which cannot receive private messages")]
    LegacyAddressee(String),
    #[error("a private message to yourself is not relayed")]
    ToSelf,
}

impl PrivateRefusal {
    pub fn code(&self) -> ErrorCode {
        match self {
            PrivateRefusal::Superseded(_) => ErrorCode::Replaced,
            PrivateRefusal::NoSuchUser => ErrorCode::NoSuchUser,
            PrivateRefusal::LegacyAddressee(_) => ErrorCode::PrivateUnsupported,
            PrivateRefusal::ToSelf => ErrorCode::BadRequest,
        }
    }
}

/// A member's answer to a knock, as the waiting newcomer learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let in by `by`; `None` when the room opened because no member was
    /// left to answer.
    Admitted { by: Option<String> },
    /// Turned away by `by`.
    Denied { by: String },
}

/// A knocking newcomer let in: by whom (`None` when the room opened
/// because no member was left to answer). The newcomer's `init` says who.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub by: Option<String>,
}

/// Room settings fixed at start-up.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// History bound by count (`--history`).
    pub history_messages: usize,
    /// History bound by bytes of stored frames.
    pub history_bytes: usize,
    /// Member bound (`--max-users`).
    pub max_users: usize,
    /// Largest file the room relays (`--max-file-size`), announced in native `init`.
    pub max_file_size: u64,
}

/// A member's connection, as the room holds it.
struct Member {
    /// Whom private frames and file chunks are addressed to, and who the others
    /// see leave.
    user_id: String,
    /// Tells this connection's membership from a later one that took it over.
    generation: u64,
    /// The name the others see, freed when the member leaves.
    username: String,
    /// Lets this member take its session over after a lost connection.
    resume_token: Key32,
    /// cmd-chat 1.x clients get no native-only frames (notices).
    legacy: bool,
    /// Where the room queues the member's frames without waiting.
    outbox: Outbox,
    /// Fired when the room removes the member; taken when used.
    kick: Option<oneshot::Sender<Kick>>,
    /// The session's message rate bucket, kept across takeovers.
    rate: SessionRate,
}

/// Everything in the room that changes, behind the room's one lock.
struct State {
    /// Every name in use, by a member or reserved by a login about to join,
    /// to whose `user_id`. Changed only through `hold_name` and `free_name`.
    names: HashMap<String, String>,
    /// The [`likenesses`](crate::protocol::username::likenesses) of every
    /// name in `names`, to that name: a name that looks like one in use is
    /// refused.
    looks: HashMap<String, String>,
    /// Members in join order.
    members: Vec<Member>,
    /// The messages a joiner is sent, within the room's bounds.
    history: History,
    /// The next message's sequence number: they only grow, so a reconnecting
    /// member can say what it last saw.
    next_seq: u64,
    /// The next connection's generation, never reused, so a takeover never
    /// matches an older connection.
    next_generation: u64,
    /// Since when nobody is in the room (`None` while someone is), for `--idle-exit`.
    empty_since: Option<Instant>,
    /// Who locked the room; `None` while anyone with the password walks in.
    locked: Option<String>,
    /// Newcomers knocking at the locked room, in arrival order (at most
    /// [`MAX_WAITING_KNOCKS`]).
    knocks: Vec<Knock>,
}

/// The shared room. Cheap to reach from every connection through an `Arc`.
pub struct Room {
    /// The bounds the room keeps to.
    config: RoomConfig,
    /// Base64 room salt for native `init` frames.
    room_salt_b64: String,
    /// Drawn at start-up and sent in native `init` frames: a reconnecting
    /// member names it, so that a server restarted on the same address (a
    /// new room, whose sequence numbers start again) does not apply an old
    /// room's `after_seq` or member ids to its own.
    id: String,
    /// Drawn at start-up: every member's resume token derives from it
    /// ([`Room::resume_token`]).
    resume_key: Key32,
    /// Everything that changes, behind the one short-held lock.
    state: Mutex<State>,
}

impl Room {
    pub fn new(config: RoomConfig, room_salt_b64: String) -> Arc<Self> {
        Arc::new(Self {
            config,
            room_salt_b64,
            id: uuid::Uuid::new_v4().to_string(),
            resume_key: Key32::new(rand::random()),
            state: Mutex::new(State {
                names: HashMap::new(),
                looks: HashMap::new(),
                members: Vec::new(),
                history: History {
                    entries: VecDeque::new(),
                    bytes: 0,
                },
                next_seq: 1,
                next_generation: 1,
                empty_since: Some(Instant::now()),
                locked: None,
                knocks: Vec::new(),
            }),
        })
    }

    /// This room's id, as native `init` frames give it.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; the state stays usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells native members something from the server itself.
    pub fn notice(&self, text: &str) {
        let frame = encode::encode(&ServerEvent::Notice {
            text: text.to_owned(),
        });
        let mut state = self.lock();
        broadcast_filtered(&mut state, &frame, Urgency::Now, |m| !m.legacy);
    }

    /// Bytes waiting in all members' outbound queues (frames shared between
    /// members are counted once per member).
    pub fn queued_bytes(&self) -> usize {
        self.lock()
            .members
            .iter()
            .map(|m| m.outbox.queued_bytes())
            .sum()
    }

    /// How long the room has been empty (zero while anyone is in it).
    pub fn empty_for(&self) -> Duration {
        self.lock()
            .empty_since
            .map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Members right now, in join order (for logs and tests).
    pub fn member_names(&self) -> Vec<String> {
        self.lock()
            .members
            .iter()
            .map(|m| m.username.clone())
            .collect()
    }

    /// Drops the history and every member's queue (server shutdown).
    pub fn close(&self) {
        let mut state = self.lock();
        state.history.entries.clear();
        state.history.bytes = 0;
        state.members.clear();
        state.names.clear();
        state.looks.clear();
        state.knocks.clear();
        state.locked = None;
    }
}

/// Queues `frame` to every member; members whose queue is full are removed
/// (and told why), which may cascade into more `user_left` frames.
fn broadcast(state: &mut State, frame: &Outbound) {
    broadcast_filtered(state, frame, Urgency::Now, |_| true);
}

/// Tells everyone (but `except`) that someone joined or left: see
/// [`Urgency::Soon`].
fn broadcast_presence(state: &mut State, frame: &Outbound, except: Option<&str>) {
    broadcast_filtered(state, frame, Urgency::Soon, |m| {
        Some(m.user_id.as_str()) != except
    });
}

fn broadcast_filtered(
    state: &mut State,
    frame: &Outbound,
    urgency: Urgency,
    include: impl Fn(&Member) -> bool,
) {
    let mut too_slow = Vec::new();
    for member in state.members.iter().filter(|m| include(m)) {
        if member.outbox.push_with(frame, urgency).is_err() {
            too_slow.push(member.user_id.clone());
        }
    }
    for user_id in too_slow {
        if let Some(kick) = state
            .members
            .iter_mut()
            .find(|m| m.user_id == user_id)
            .and_then(|m| m.kick.take())
        {
            let _ = kick.send(Kick::TooSlow);
        }
        remove_member(state, &user_id);
    }
}

fn remove_member(state: &mut State, user_id: &str) {
    let Some(pos) = state.members.iter().position(|m| m.user_id == user_id) else {
        return;
    };
    let member = state.members.remove(pos);
    state.free_name(&member.username, &member.user_id);
    if state.members.is_empty() {
        state.empty_since = Some(Instant::now());
    }
    let left = encode::encode(&ServerEvent::UserLeft {
        user_id: member.user_id,
    });
    broadcast_presence(state, &left, None);
    // Only native members can answer knocks: with none left, a locked room
    // would turn everyone away until the server stops. It opens instead.
    if state.locked.is_some() && !state.members.iter().any(|m| !m.legacy) {
        let _ = unlock(state, None);
    }
}

/// A small room for unit tests here and in `files`.
#[cfg(test)]
pub(crate) fn test_room() -> Arc<Room> {
    Room::new(
        RoomConfig {
            history_messages: 10,
            history_bytes: 1 << 20,
            max_users: 10,
            max_file_size: 5 << 20,
        },
        "c2FsdA==".into(),
    )
}

#[cfg(test)]
mod tests;
