//! The room: who is in it, what they have said (ciphertext only), and the
//! fan-out of every event to every member. Private frames go to their
//! addressee alone and are never stored.
//!
//! All state sits behind one mutex that is held only for short, non-blocking
//! work: every member's outbound queue is bounded and filled with `try_send`,
//! so one slow reader never holds up the others. Doing the fan-out under the
//! lock gives every member the same order of events, and gives a joiner its
//! `init` snapshot and then exactly the events after it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;
use zeroize::Zeroize;

use super::limits::HISTORY_MAX_BYTES;
pub use super::outbox::Outbound;
use super::outbox::Outbox;
use crate::protocol::limits::LEGACY_MAX_LINE;
use crate::protocol::wire::{ErrorCode, MessageData, ServerEvent, UserInfo};

/// Why a member was removed by the room rather than leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// Its outbound queue filled up: it is not reading.
    TooSlow,
}

/// Why the room refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("the name is taken by someone in the room")]
    NameTaken,
    #[error("the room is full ({0} members)")]
    Full(usize),
}

impl RoomError {
    pub fn code(&self) -> ErrorCode {
        match self {
            RoomError::NameTaken => ErrorCode::NameTaken,
            RoomError::Full(_) => ErrorCode::RoomFull,
        }
    }
}

/// Why a private frame was not relayed. The sender is told; nothing else happens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivateRefusal {
    #[error(
        "that member is not in the room (they may have just left); the private message was not delivered"
    )]
    NoSuchUser,
    #[error("{0} uses cmd-chat 1.x, which cannot receive private messages")]
    LegacyAddressee(String),
    #[error("a private message to yourself is not relayed")]
    ToSelf,
}

impl PrivateRefusal {
    pub fn code(&self) -> ErrorCode {
        match self {
            PrivateRefusal::NoSuchUser => ErrorCode::NoSuchUser,
            PrivateRefusal::LegacyAddressee(_) => ErrorCode::PrivateUnsupported,
            PrivateRefusal::ToSelf => ErrorCode::BadRequest,
        }
    }
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
}

struct Member {
    user_id: String,
    username: String,
    /// cmd-chat 1.x clients get no native-only frames (notices).
    legacy: bool,
    outbox: Outbox,
    /// Fired when the room removes the member; taken when used.
    kick: Option<oneshot::Sender<Kick>>,
}

/// One stored message: its `data` object, serialized once.
struct Stored {
    data_json: Arc<str>,
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

struct History {
    entries: VecDeque<Stored>,
    bytes: usize,
}

struct State {
    /// Every name in use: by a member, or reserved by a login in progress.
    names: HashMap<String, String>,
    /// Members in join order.
    members: Vec<Member>,
    history: History,
    next_seq: u64,
}

/// The shared room. Cheap to reach from every connection through an `Arc`.
pub struct Room {
    config: RoomConfig,
    /// Base64 room salt for native `init` frames.
    room_salt_b64: String,
    state: Mutex<State>,
}

/// A name held for a login in progress. Dropping it frees the name, so a
/// failed or abandoned login never leaves it taken.
pub struct NameReservation {
    room: Arc<Room>,
    name: String,
    user_id: String,
}

impl NameReservation {
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for NameReservation {
    fn drop(&mut self) {
        let mut state = self.room.lock();
        if state.names.get(&self.name) == Some(&self.user_id)
            && !state.members.iter().any(|m| m.user_id == self.user_id)
        {
            state.names.remove(&self.name);
        }
    }
}

/// Membership held by a connection; dropping it leaves the room.
pub struct Membership {
    room: Arc<Room>,
    user_id: String,
    username: String,
}

impl Membership {
    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// Stores and relays a message whose shape has already been checked.
    pub fn post(&self, token: String) {
        self.room.post(&self.username, token);
    }

    /// Empties the history for everyone.
    pub fn clear(&self) {
        self.room.clear();
    }

    /// Relays a private frame, whose body's shape has already been checked,
    /// to the member `to` (a `user_id`) alone. It is not stored.
    pub fn send_private(&self, to: &str, body: String) -> Result<(), PrivateRefusal> {
        self.room
            .send_private(&self.user_id, &self.username, to, body)
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.room.leave(&self.user_id);
    }
}

impl Room {
    pub fn new(config: RoomConfig, room_salt_b64: String) -> Arc<Self> {
        Arc::new(Self {
            config,
            room_salt_b64,
            state: Mutex::new(State {
                names: HashMap::new(),
                members: Vec::new(),
                history: History {
                    entries: VecDeque::new(),
                    bytes: 0,
                },
                next_seq: 1,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; the state stays usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `name` atomically, so two simultaneous logins cannot both take it.
    pub fn reserve(self: &Arc<Self>, name: &str) -> Result<NameReservation, RoomError> {
        let mut state = self.lock();
        if state.names.contains_key(name) {
            return Err(RoomError::NameTaken);
        }
        let user_id = uuid::Uuid::new_v4().to_string();
        state.names.insert(name.to_owned(), user_id.clone());
        Ok(NameReservation {
            room: Arc::clone(self),
            name: name.to_owned(),
            user_id,
        })
    }

    /// Turns an authenticated login into a member: queues its `init`, then
    /// tells everyone else.
    pub fn join(
        self: &Arc<Self>,
        reservation: NameReservation,
        legacy: bool,
        outbox: Outbox,
        kick: oneshot::Sender<Kick>,
    ) -> Result<Membership, RoomError> {
        let mut state = self.lock();
        if state.members.len() >= self.config.max_users {
            return Err(RoomError::Full(self.config.max_users));
        }
        let user_id = reservation.user_id.clone();
        let username = reservation.name.clone();
        let member = Member {
            user_id: user_id.clone(),
            username: username.clone(),
            legacy,
            outbox,
            kick: Some(kick),
        };
        let init = self.init_frame(&state, legacy, &member);
        state.members.push(member);
        let joined = to_json(&ServerEvent::UserJoined {
            user_id: user_id.clone(),
            username: username.clone(),
        });
        // The new member's queue is empty, so its `init` always fits.
        let _ = state
            .members
            .last()
            .expect("just pushed")
            .outbox
            .push(&init);
        broadcast(&mut state, &joined, Some(&user_id));
        drop(state);
        // Membership now owns the name; the reservation's drop leaves it alone.
        drop(reservation);
        Ok(Membership {
            room: Arc::clone(self),
            user_id,
            username,
        })
    }

    fn init_frame(&self, state: &State, legacy: bool, joiner: &Member) -> Outbound {
        let mut users: Vec<UserInfo> = state
            .members
            .iter()
            .map(|m| UserInfo {
                user_id: m.user_id.clone(),
                username: m.username.clone(),
            })
            .collect();
        users.push(UserInfo {
            user_id: joiner.user_id.clone(),
            username: joiner.username.clone(),
        });
        let users_json = serde_json::to_string(&users).expect("user list serializes");
        let mut head = String::from("{\"type\":\"init\",");
        if !legacy {
            head.push_str("\"room_salt\":\"");
            head.push_str(&self.room_salt_b64);
            head.push_str("\",");
        }
        head.push_str("\"users\":");
        head.push_str(&users_json);
        head.push_str(",\"messages\":[");
        let tail = "]}";
        // Legacy clients read lines of at most 64 KiB: send the newest history that fits.
        let budget = if legacy {
            LEGACY_MAX_LINE - 1
        } else {
            usize::MAX
        };
        let mut used = head.len() + tail.len();
        let mut first_kept = state.history.entries.len();
        for (i, entry) in state.history.entries.iter().enumerate().rev() {
            let cost = entry.data_json.len() + 1;
            if used + cost > budget {
                break;
            }
            used += cost;
            first_kept = i;
        }
        let mut frame = String::with_capacity(used);
        frame.push_str(&head);
        for (n, entry) in state.history.entries.iter().skip(first_kept).enumerate() {
            if n > 0 {
                frame.push(',');
            }
            frame.push_str(&entry.data_json);
        }
        frame.push_str(tail);
        frame.into()
    }

    fn post(&self, username: &str, token: String) {
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        let data = MessageData {
            id: seq.to_string(),
            seq: Some(seq),
            text: token,
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            username: username.to_owned(),
        };
        let data_json: Arc<str> = serde_json::to_string(&data)
            .expect("message serializes")
            .into();
        let frame: Outbound = format!("{{\"type\":\"message\",\"data\":{data_json}}}").into();
        let history = &mut state.history;
        history.bytes += data_json.len();
        history.entries.push_back(Stored { data_json });
        while history.entries.len() > self.config.history_messages
            || history.bytes > self.config.history_bytes.min(HISTORY_MAX_BYTES)
        {
            match history.entries.pop_front() {
                Some(old) => history.bytes -= old.data_json.len(),
                None => break,
            }
        }
        broadcast(&mut state, &frame, None);
    }

    fn clear(&self) {
        let mut state = self.lock();
        state.history.entries.clear();
        state.history.bytes = 0;
        broadcast(&mut state, &to_json(&ServerEvent::Cleared), None);
    }

    fn send_private(
        &self,
        from: &str,
        from_name: &str,
        to: &str,
        body: String,
    ) -> Result<(), PrivateRefusal> {
        if from == to {
            return Err(PrivateRefusal::ToSelf);
        }
        let mut state = self.lock();
        let addressee = state
            .members
            .iter()
            .find(|m| m.user_id == to)
            .ok_or(PrivateRefusal::NoSuchUser)?;
        // A 1.x client does not know the frame and must never receive it.
        if addressee.legacy {
            return Err(PrivateRefusal::LegacyAddressee(addressee.username.clone()));
        }
        let frame = to_json(&ServerEvent::Private {
            from: from.to_owned(),
            from_name: from_name.to_owned(),
            body,
        });
        broadcast_filtered(&mut state, &frame, |m| m.user_id == to);
        Ok(())
    }

    /// Tells native members something from the server itself.
    pub fn notice(&self, text: &str) {
        let frame = to_json(&ServerEvent::Notice {
            text: text.to_owned(),
        });
        let mut state = self.lock();
        let legacy: Vec<String> = state
            .members
            .iter()
            .filter(|m| m.legacy)
            .map(|m| m.user_id.clone())
            .collect();
        broadcast_filtered(&mut state, &frame, |m| !legacy.contains(&m.user_id));
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

    fn leave(&self, user_id: &str) {
        let mut state = self.lock();
        remove_member(&mut state, user_id);
    }

    /// Members right now, in join order (for logs and tests).
    pub fn member_names(&self) -> Vec<String> {
        self.lock()
            .members
            .iter()
            .map(|m| m.username.clone())
            .collect()
    }

    /// Messages held in history right now.
    pub fn history_len(&self) -> usize {
        self.lock().history.entries.len()
    }

    /// Drops the history and every member's queue (server shutdown).
    pub fn close(&self) {
        let mut state = self.lock();
        state.history.entries.clear();
        state.history.bytes = 0;
        state.members.clear();
        state.names.clear();
    }
}

fn to_json(event: &ServerEvent) -> Outbound {
    serde_json::to_string(event)
        .expect("event serializes")
        .into()
}

/// Queues `frame` to every member but `except`; members whose queue is full
/// are removed (and told why), which may cascade into more `user_left` frames.
fn broadcast(state: &mut State, frame: &Outbound, except: Option<&str>) {
    broadcast_filtered(state, frame, |m| Some(m.user_id.as_str()) != except);
}

fn broadcast_filtered(state: &mut State, frame: &Outbound, include: impl Fn(&Member) -> bool) {
    let mut too_slow = Vec::new();
    for member in state.members.iter().filter(|m| include(m)) {
        if member.outbox.push(frame).is_err() {
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
    if state.names.get(&member.username) == Some(&member.user_id) {
        state.names.remove(&member.username);
    }
    let left = to_json(&ServerEvent::UserLeft {
        user_id: member.user_id,
    });
    broadcast(state, &left, None);
}
