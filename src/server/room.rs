//! The room: who is in it, what they have said (ciphertext only), and the
//! fan-out of every event to every member. Private frames go to their
//! addressee alone and are never stored.
//!
//! All state sits behind one mutex that is held only for short, non-blocking
//! work: every member's outbound queue is bounded and filled with `try_send`,
//! so one slow reader never holds up the others. Doing the fan-out under the
//! lock gives every member the same order of events, and gives a joiner its
//! `init` snapshot and then exactly the events after it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::sync::oneshot;
use tokio::time::Instant;
use zeroize::Zeroize;

use crate::crypto::Key32;

use super::limits::{
    FILE_RECEIVER_QUEUE_MAX, HISTORY_MAX_BYTES, HISTORY_PART, MAX_WAITING_KNOCKS, SessionRate,
};
pub use super::outbox::Outbound;
use super::outbox::{Outbox, Urgency};
use crate::protocol::encode;
use crate::protocol::limits::LEGACY_MAX_LINE;
use crate::protocol::username::likenesses;
use crate::protocol::wire::{ErrorCode, KnockOutcome, MessageData, ServerEvent, UserInfo};

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

struct Member {
    user_id: String,
    /// Tells this connection's membership from a later one that took it over.
    generation: u64,
    username: String,
    /// Lets this member take its session over after a lost connection.
    resume_token: Key32,
    /// cmd-chat 1.x clients get no native-only frames (notices).
    legacy: bool,
    outbox: Outbox,
    /// Fired when the room removes the member; taken when used.
    kick: Option<oneshot::Sender<Kick>>,
    /// The session's message rate bucket, kept across takeovers.
    rate: SessionRate,
}

/// One stored message: its `data` object, serialized once.
struct Stored {
    seq: u64,
    /// When it was posted, for `--expire`.
    at: Instant,
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

/// A newcomer waiting at a locked room.
struct Knock {
    /// The login's id, which its [`KnockTicket`] knows it by.
    user_id: String,
    /// The name members see and answer with `/admit <name>`.
    username: String,
    /// Tells the waiting connection the answer; taken when used.
    decide: Option<oneshot::Sender<Decision>>,
}

struct History {
    entries: VecDeque<Stored>,
    bytes: usize,
}

impl History {
    /// Messages kept with a sequence number after `after`.
    fn len_after(&self, after: u64) -> usize {
        self.entries.len() - self.entries.partition_point(|e| e.seq <= after)
    }
}

struct State {
    /// Every name in use, by a member or reserved by a login about to join,
    /// to whose `user_id`. Changed only through `hold_name` and `free_name`.
    names: HashMap<String, String>,
    /// The [`likenesses`] of every name in `names`, to that name: a name
    /// that looks like one in use is refused.
    looks: HashMap<String, String>,
    /// Members in join order.
    members: Vec<Member>,
    history: History,
    next_seq: u64,
    next_generation: u64,
    /// Since when nobody is in the room (`None` while someone is), for `--idle-exit`.
    empty_since: Option<Instant>,
    /// Who locked the room; `None` while anyone with the password walks in.
    locked: Option<String>,
    /// Newcomers knocking at the locked room, in arrival order (at most
    /// [`MAX_WAITING_KNOCKS`]).
    knocks: Vec<Knock>,
}

impl State {
    /// Whether `name`, which looks like `looks` ([`likenesses`]), looks like
    /// a name in use other than itself.
    fn looks_like_another(&self, name: &str, looks: &[String]) -> bool {
        looks
            .iter()
            .any(|key| self.looks.get(key).is_some_and(|held| held != name))
    }

    fn hold_name(&mut self, name: &str, looks: [String; 3], user_id: String) {
        self.names.insert(name.to_owned(), user_id);
        for key in looks {
            self.looks.insert(key, name.to_owned());
        }
    }

    /// Frees `name` if `user_id` holds it.
    fn free_name(&mut self, name: &str, user_id: &str) {
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

/// The shared room. Cheap to reach from every connection through an `Arc`.
pub struct Room {
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
    state: Mutex<State>,
}

/// A name held for a login in progress. Dropping it frees the name, so a
/// failed or abandoned login never leaves it taken.
pub struct NameReservation {
    room: Arc<Room>,
    name: String,
    user_id: String,
    /// Set when the name belongs to this member's own earlier session, which
    /// the login may take over once it proves that session's resume secret.
    takeover_of: Option<Replacing>,
}

/// The connection a takeover login set out to replace: the one holding the
/// member's session when the login began, and no later one.
pub struct Takeover(Replacing);

/// See [`Takeover`].
struct Replacing {
    user_id: String,
    generation: u64,
}

impl Replacing {
    /// Where that connection is among the members, if it still holds the session.
    fn position(&self, state: &State) -> Option<usize> {
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
    room: Arc<Room>,
    user_id: String,
    /// Which connection of the member this is; a takeover gives the
    /// member a new one, and this one then holds nothing.
    generation: u64,
    username: String,
    /// A native joiner's history, still to be sent after `init`.
    history: Option<HistoryCursor>,
    rate: SessionRate,
}

/// Where a native joiner's history replay stands: the messages with
/// `after < seq <= until` are still to be sent, a part at a time, as the
/// member's connection takes them ([`Room::history_part`]). Parts are built
/// from the room's history when they are sent, so a joiner, however slow,
/// never costs more than one part of memory beyond the shared history.
#[derive(Debug, Clone, Copy)]
pub struct HistoryCursor {
    after: u64,
    until: u64,
}

impl Membership {
    /// Whether this connection still holds the member's place.
    fn holds(&self, state: &State) -> Result<(), Superseded> {
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
    /// [`FILE_RECEIVER_QUEUE_MAX`] is taken off the transfer and sent
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
    /// a newer connection of the same member. The replaced connection is kicked ([`Kick::Replaced`]) and
    /// can do nothing in the room from then on (see [`Membership`]).
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
    pub fn join(
        self: &Arc<Self>,
        reservation: &NameReservation,
        legacy: bool,
        outbox: Outbox,
        kick: oneshot::Sender<Kick>,
        admitted: bool,
        resume: Option<Resume>,
    ) -> Result<Membership, RoomError> {
        let mut state = self.lock();
        // Taking over one's own session is no newcomer's entry: no knock.
        if let Some(by) = &state.locked
            && !admitted
            && reservation.takeover_of.is_none()
        {
            return Err(RoomError::Locked { by: by.clone() });
        }
        let generation = state.next_generation;
        state.next_generation += 1;
        let username = reservation.name.clone();
        let history;
        let mut member = Member {
            user_id: reservation.user_id.clone(),
            generation,
            username: username.clone(),
            resume_token: self.resume_token(&reservation.user_id),
            legacy,
            outbox,
            kick: Some(kick),
            rate: SessionRate::default(),
        };
        if let Some(old) = &reservation.takeover_of {
            let Some(pos) = old.position(&state) else {
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
            let (init, cursor) = self.init_frame(&state, &member, resume);
            history = cursor;
            let _ = member.outbox.push(&init);
            let mut old = std::mem::replace(&mut state.members[pos], member);
            if let Some(kick) = old.kick.take() {
                let _ = kick.send(Kick::Replaced);
            }
        } else {
            if state.members.len() >= self.config.max_users {
                return Err(RoomError::Full(self.config.max_users));
            }
            let (init, cursor) = self.init_frame(&state, &member, resume);
            history = cursor;
            // The new member's queue is empty, so its `init` always fits, and
            // it is the first frame the member's connection sends.
            let _ = member.outbox.push(&init);
            let joined = encode::encode(&ServerEvent::UserJoined {
                user_id: member.user_id.clone(),
                username: username.clone(),
            });
            let user_id = member.user_id.clone();
            state.members.push(member);
            state.empty_since = None;
            broadcast_presence(&mut state, &joined, Some(&user_id));
        }
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

    /// The joiner's `init` frame. A 1.x joiner finds the newest history that
    /// fits its line limit in it; a native joiner gets a count, and the
    /// returned cursor says which messages follow in `history` frames.
    fn init_frame(
        &self,
        state: &State,
        joiner: &Member,
        resume: Option<Resume>,
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

    fn post(&self, who: &Membership, token: String) -> Result<u64, Superseded> {
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

    fn clear(&self, who: &Membership) -> Result<(), Superseded> {
        let mut state = self.lock();
        who.holds(&state)?;
        state.history.entries.clear();
        state.history.bytes = 0;
        broadcast(&mut state, &encode::encode(&ServerEvent::Cleared));
        Ok(())
    }

    fn send_private(&self, who: &Membership, to: &str, body: String) -> Result<(), PrivateRefusal> {
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

    /// Tells native members something from the server itself.
    pub fn notice(&self, text: &str) {
        let frame = encode::encode(&ServerEvent::Notice {
            text: text.to_owned(),
        });
        let mut state = self.lock();
        broadcast_filtered(&mut state, &frame, Urgency::Now, |m| !m.legacy);
    }

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

    fn lock_room(&self, who: &Membership) -> Result<(), RoomError> {
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

    fn unlock_room(&self, who: &Membership) -> Result<(), RoomError> {
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

    fn answer(&self, who: &Membership, user: &str, decision: Decision) -> Result<(), RoomError> {
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

    fn offer_file(
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

    fn relay_file_chunk(
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

    /// Bytes waiting in all members' outbound queues (frames shared between
    /// members are counted once per member).
    pub fn queued_bytes(&self) -> usize {
        self.lock()
            .members
            .iter()
            .map(|m| m.outbox.queued_bytes())
            .sum()
    }

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
        state.looks.clear();
        state.knocks.clear();
        state.locked = None;
    }
}

/// Opens the room and lets everyone knocking in; `by` is `None` when it
/// opens because no native member is left to answer knocks.
fn unlock(state: &mut State, by: Option<&str>) -> Result<(), RoomError> {
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
mod tests {
    use super::*;
    use crate::server::limits::MAX_QUEUED_BYTES;
    use crate::server::outbox::{self, Inbox};

    use super::test_room as room;

    /// A member joined with `reservation`, with its queue and its kick.
    struct Joined {
        membership: Membership,
        outbox: Outbox,
        _inbox: Inbox,
        kick: oneshot::Receiver<Kick>,
    }

    fn join(room: &Arc<Room>, reservation: &NameReservation) -> Joined {
        let (outbox, inbox) = outbox::channel();
        let (kick_tx, kick) = oneshot::channel();
        let membership = room
            .join(reservation, false, outbox.clone(), kick_tx, false, None)
            .unwrap();
        Joined {
            membership,
            outbox,
            _inbox: inbox,
            kick,
        }
    }

    /// A fresh member id, as the handler draws for each login.
    fn new_id() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    fn member(room: &Arc<Room>, name: &str) -> Joined {
        join(room, &room.reserve(name, new_id(), None).unwrap())
    }

    /// Every action a member can take, as `old` tries them.
    fn assert_refused_everything(old: &Membership) {
        assert_eq!(old.post("gAAAA".into()), Err(Superseded));
        assert_eq!(old.clear(), Err(Superseded));
        assert_eq!(old.lock(), Err(RoomError::Superseded(Superseded)));
        assert_eq!(old.unlock(), Err(RoomError::Superseded(Superseded)));
        assert_eq!(
            old.answer("cat", true),
            Err(RoomError::Superseded(Superseded))
        );
        assert_eq!(
            old.send_private("someone", "gAAAA".into()),
            Err(PrivateRefusal::Superseded(Superseded))
        );
        assert_eq!(old.offer_file(&"{}".into()), Err(Superseded));
        assert_eq!(
            old.relay_file_chunk(&mut HashSet::new(), &"{}".into(), &"{}".into()),
            Err(Superseded)
        );
    }

    #[test]
    fn a_replaced_connection_can_no_longer_act() {
        let room = room();
        let mut old = member(&room, "ann");
        let takeover = room
            .reserve(
                "ann",
                new_id(),
                room.takeover_target("ann", Some(old.membership.user_id())),
            )
            .unwrap();
        assert!(takeover.is_takeover());
        let new = join(&room, &takeover);
        assert_eq!(old.kick.try_recv(), Ok(Kick::Replaced));
        assert_refused_everything(&old.membership);
        assert_eq!(room.history_len(), 0);
        assert_eq!(room.locked_by(), None);
        assert_eq!(new.membership.post("gAAAA".into()), Ok(1));
        // The old connection's leaving leaves the session in place.
        drop(old);
        assert_eq!(room.member_names(), ["ann"]);
    }

    #[test]
    fn a_takeover_replaces_only_the_connection_it_set_out_to_replace() {
        let room = room();
        let mut old = member(&room, "ann");
        let id = old.membership.user_id().to_owned();
        let slow = room
            .reserve("ann", new_id(), room.takeover_target("ann", Some(&id)))
            .unwrap();
        let fast = room
            .reserve("ann", new_id(), room.takeover_target("ann", Some(&id)))
            .unwrap();
        let mut first = join(&room, &fast);
        assert_eq!(old.kick.try_recv(), Ok(Kick::Replaced));
        // The connection the slow login meant to replace is gone: it joins nothing.
        let (outbox, _inbox) = outbox::channel();
        let (kick, _) = oneshot::channel();
        assert!(matches!(
            room.join(&slow, false, outbox, kick, false, None),
            Err(RoomError::NameTaken)
        ));
        assert!(first.kick.try_recv().is_err(), "the first takeover stays");
        assert_eq!(first.membership.post("gAAAA".into()), Ok(1));
        // A login begun now takes over the current connection.
        let later = room
            .reserve("ann", new_id(), room.takeover_target("ann", Some(&id)))
            .unwrap();
        let _second = join(&room, &later);
        assert_eq!(first.kick.try_recv(), Ok(Kick::Replaced));
        assert_eq!(room.member_names(), ["ann"]);
    }

    #[test]
    fn a_member_removed_as_too_slow_cannot_speak_for_the_next_holder_of_its_name() {
        let room = room();
        let mut old = member(&room, "ann");
        let bob = member(&room, "bob");
        // Ann stops reading: her queue is full, and bob's next message removes her.
        let room_left = MAX_QUEUED_BYTES - old.outbox.queued_bytes();
        old.outbox.push(&"x".repeat(room_left).into()).unwrap();
        bob.membership.post("gAAAA".into()).unwrap();
        assert_eq!(old.kick.try_recv(), Ok(Kick::TooSlow));
        assert_eq!(room.member_names(), ["bob"]);
        // Someone else takes the name; the old connection is nobody now.
        let _ann = member(&room, "ann");
        assert_refused_everything(&old.membership);
        assert_eq!(room.history_len(), 1);
    }
}
