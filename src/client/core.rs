//! The client core: connect, authenticate, send and receive decrypted events,
//! talk privately with one member, leave with keys wiped. Every front end
//! (terminal, scripting mode, examples, tests) goes through [`Client`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use super::error::ClientError;
use super::event::written_long_before;
pub use super::event::{ChatMessage, Event, PrivateMessage, Transport, Waiting};
use super::files::{self, FileError, ReceivedFile};
use super::login::{
    Connection, Link, LoginFailed, ResumeRequest, ResumeState, RoomIdentity, protocol,
};
use super::private::{Outgoing as PrivateOutgoing, PrivateChats, PrivateError};
use super::receipts::Receipts;
use super::transfers::Transfers;
use crate::crypto::Password;
use crate::crypto::private::SafetyCode;
use crate::protocol::limits::{MAX_PRIVATE_TEXT_LEN, MAX_ROOM_MEMBERS, SERVER_SILENCE_LIMIT};
use crate::protocol::wire::{
    ClientFrame, ErrorCode, ErrorReply, MessageData, MessagePlaintext, PrivateEnvelope,
    ServerEvent, ServerFrame, UserInfo,
};
use crate::protocol::{FrameError, token, username};

/// Time allowed to open the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Logins a busy room refuses before the client gives up: with the delays
/// doubling from [`BUSY_FIRST_DELAY`], about six seconds of waiting.
const BUSY_ATTEMPTS: u32 = 5;
const BUSY_FIRST_DELAY: Duration = Duration::from_millis(400);
/// Time allowed for the whole login once connected (not counting a wait at
/// a locked room).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest a client waits at a locked room, whatever the server says.
pub const KNOCK_WAIT_MAX: Duration = Duration::from_secs(15 * 60);
/// Beyond the server's own knock deadline, time allowed for its answer to arrive.
pub const KNOCK_WAIT_GRACE: Duration = Duration::from_secs(10);

/// What to connect to and as whom.
#[derive(Debug)]
pub struct ClientConfig {
    /// `host:port` of the server.
    pub server: String,
    /// The name to join under; checked before anything is sent.
    pub username: String,
    /// Kept for logging in again after a lost connection; wiped when the
    /// client is dropped.
    pub password: Password,
    /// Accept a cmd-chat 1.x server, whose sessions are readable on the wire.
    pub allow_legacy: bool,
}

/// Members that left recently, remembered so that a refusal about one of them
/// that arrives after the departure can still name them.
const DEPARTED_MEMORY: usize = 64;

/// Reconnection attempts before giving up, with backoff between them.
pub const RECONNECT_ATTEMPTS: u32 = 12;
/// First wait before reconnecting; it doubles up to [`RECONNECT_MAX_DELAY`].
pub const RECONNECT_FIRST_DELAY: Duration = Duration::from_millis(200);
/// Longest wait between two reconnection attempts.
pub const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(10);
/// A reconnection lost again sooner than this counts as a failed attempt
/// (the next run of attempts starts that much further on): a server that
/// takes every resume and drops it at once is given up on after
/// [`RECONNECT_ATTEMPTS`], like one that refuses.
pub const RECONNECT_STABLE_AFTER: Duration = Duration::from_secs(10);
/// Time [`Client::leave`] gives the server to take its last frames: leaving
/// must not wait on a server that stopped reading.
pub const LEAVE_DEADLINE: Duration = Duration::from_secs(2);

/// The connection is gone and the client is trying to get it back.
struct Broken {
    /// Why the connection was lost, for the error if we give up.
    reason: String,
    /// Which attempt of this run is next (from 1), for the backoff and the
    /// limit of [`RECONNECT_ATTEMPTS`].
    attempt: u32,
    /// When the next attempt may start: the backoff is over.
    next_try: tokio::time::Instant,
    /// The attempt under way. It runs as a task of its own so that a
    /// `next_event` call cancelled by other input (a `select!` moving on)
    /// resumes it rather than starting over.
    attempt_task: Option<tokio::task::JoinHandle<Result<Link, LoginFailed>>>,
}

impl Drop for Broken {
    fn drop(&mut self) {
        if let Some(task) = self.attempt_task.take() {
            task.abort();
        }
    }
}

/// A member of a room.
pub struct Client {
    /// The connection and the room key: replaced whole on a reconnect.
    conn: Connection,
    /// Whether the server is native or 1.x, as the first login found; a
    /// reconnection happens only to a native one.
    transport: Transport,
    /// Kept (wiped on drop) so a lost connection can log in again.
    config: ClientConfig,
    /// Members by id, in join order.
    users: Vec<UserInfo>,
    /// Events decoded but not yet handed out (history, reconnect results).
    pending: VecDeque<Event>,
    /// Messages replayed at join.
    history_count: usize,
    /// Whether messages in `history` frames are history (at join) or were
    /// missed while reconnecting (they are then shown as live).
    replay_is_history: bool,
    /// Sequence numbers for servers that send none (cmd-chat 1.x).
    local_seq: u64,
    /// The last sequence number seen, where a resumed session picks up.
    last_seq: u64,
    /// When the server was last heard from; native servers ping regularly.
    last_heard: tokio::time::Instant,
    /// How long native silence means a dead connection.
    silence_limit: Duration,
    /// Whether to reconnect by itself after losing a native connection.
    reconnect: bool,
    /// What a native server gave us to take this session over after a
    /// lost connection; `None` (1.x servers) means no reconnecting.
    resume: Option<ResumeState>,
    /// The room we are in; after a reconnect, a different one means the
    /// server was restarted and `last_seq` no longer applies.
    room: RoomIdentity,
    /// Set while the connection is lost and being got back: nothing is
    /// sent meanwhile.
    broken: Option<Broken>,
    /// When the last reconnection succeeded.
    reconnected_at: Option<tokio::time::Instant>,
    /// Reconnections in a row that were lost again within
    /// [`RECONNECT_STABLE_AFTER`].
    quick_drops: u32,
    /// Our messages awaiting their receipt, and those that failed.
    receipts: Receipts,
    /// Private conversations, with their keys.
    private: PrivateChats,
    /// `(user_id, name)` of members who left lately, newest last.
    departed: VecDeque<(String, String)>,
    /// Who locked the room, if it is locked.
    locked: Option<String>,
    /// Newcomers knocking right now, in arrival order.
    knocking: Vec<String>,
    /// Files both ways, and those received, with the room's file size limit.
    transfers: Transfers,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.config.server)
            .field("username", &self.config.username)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects, authenticates with SRP, and joins the room. The returned
    /// client first yields the history as [`Event::Message`]s with `history` set.
    ///
    /// At a locked room this waits, silently, until a member admits us; use
    /// [`Client::connect_with`] to tell the person.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        Self::connect_with(config, |_| {}).await
    }

    /// Like [`Client::connect`], calling `on_waiting` if the room is locked
    /// and the login has to wait for a member to admit it. A denial, or no
    /// answer in time, is [`ClientError::NotAdmitted`].
    pub async fn connect_with(
        config: ClientConfig,
        on_waiting: impl FnOnce(&Waiting),
    ) -> Result<Self, ClientError> {
        username::validate(&config.username)?;
        // A room refusing logins for a moment (many people joining at once)
        // is waited out; anything else is the caller's to report.
        let mut on_waiting = Some(on_waiting);
        let mut delay = BUSY_FIRST_DELAY;
        let mut attempt = 1;
        loop {
            let outcome = super::login::open(&config, None, |waiting| {
                if let Some(f) = on_waiting.take() {
                    f(waiting);
                }
            })
            .await;
            match outcome {
                // Refused before our proof went out: nothing was given away.
                Err(LoginFailed {
                    error: ClientError::Busy(_),
                    proof_sent: false,
                }) if attempt < BUSY_ATTEMPTS => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(failed) => return Err(failed.error),
                Ok(link) => return Self::joined(config, link),
            }
        }
    }

    /// Like [`Client::connect_with`], logging in over `stream`, a connection
    /// to `config.server` made by [`super::dial`]: a caller can so report
    /// that nobody listens before it asks for the password. If the server
    /// has given up on `stream` meanwhile (it gives a silent connection a
    /// few seconds), a fresh connection is made.
    pub async fn connect_over(
        stream: tokio::net::TcpStream,
        config: ClientConfig,
        on_waiting: impl FnOnce(&Waiting),
    ) -> Result<Self, ClientError> {
        username::validate(&config.username)?;
        let Some(stream) = super::login::still_open(stream) else {
            return Self::connect_with(config, on_waiting).await;
        };
        match super::login::open_over(stream, &config, None, on_waiting).await {
            Ok(link) => Self::joined(config, link),
            Err(failed) => Err(failed.error),
        }
    }

    /// The client for a login that went through.
    fn joined(config: ClientConfig, link: Link) -> Result<Self, ClientError> {
        let config_username = config.username.clone();
        let history_count = link.replayed();
        let mut client = Client {
            conn: link.conn,
            transport: link.transport,
            config,
            users: link.users,
            pending: VecDeque::new(),
            history_count,
            replay_is_history: true,
            local_seq: 0,
            last_seq: 0,
            last_heard: tokio::time::Instant::now(),
            silence_limit: SERVER_SILENCE_LIMIT,
            reconnect: true,
            resume: link.resume,
            room: link.room,
            broken: None,
            reconnected_at: None,
            quick_drops: 0,
            receipts: Receipts::default(),
            private: PrivateChats::new(&config_username),
            departed: VecDeque::new(),
            locked: link.locked,
            knocking: link.knocking,
            transfers: Transfers::new(&config_username, link.max_file_size),
        };
        for data in link.messages {
            let event = client.message_event(data, true);
            client.pending.extend(event);
        }
        Ok(client)
    }

    /// Whether to reconnect by itself after losing a native connection (on
    /// by default). Without it, a lost connection ends the session.
    pub fn set_reconnect(&mut self, reconnect: bool) {
        self.reconnect = reconnect;
    }

    /// How long a sent message may wait for the server's receipt before it is
    /// reported failed (by default after 10 s).
    pub fn set_ack_timeout(&mut self, timeout: Duration) {
        self.receipts.set_ack_timeout(timeout);
    }

    /// Our member id in a native room (stable across reconnects).
    pub fn user_id(&self) -> Option<&str> {
        self.resume.as_ref().map(|r| r.user_id.as_str())
    }

    /// How long a native server may stay silent before the connection is
    /// taken for dead (the server pings every 20 s; default 75 s).
    pub fn set_silence_limit(&mut self, limit: Duration) {
        self.silence_limit = limit;
    }

    /// Our own name in the room.
    pub fn username(&self) -> &str {
        &self.config.username
    }

    /// `host:port` of the server.
    pub fn server(&self) -> &str {
        &self.config.server
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Names of the members, in join order (ourselves included).
    pub fn users(&self) -> Vec<String> {
        self.users.iter().map(|u| u.username.clone()).collect()
    }

    /// How many history messages were replayed at join.
    pub fn history_count(&self) -> usize {
        self.history_count
    }

    /// Encrypts `text` with the room key and sends it; returns the
    /// reference that [`Event::Sent`] or [`Event::SendFailed`] will name. The
    /// server echoes the message to everyone, us included.
    /// [`ClientError::MessageTooLong`] leaves the session usable: nothing was
    /// sent. While reconnecting, the message is reported failed at once.
    pub async fn send(&mut self, text: &str) -> Result<u64, ClientError> {
        let token = self.seal_message(text);
        match token::check_shape(&token) {
            Ok(()) => {}
            Err(token::TokenError::TooLong) => return Err(ClientError::MessageTooLong),
            Err(e) => return Err(ClientError::Protocol(e.to_string())),
        }
        let reference = self.receipts.next_reference();
        if let Some(broken) = &self.broken {
            let reason = format!("not sent: {}; reconnecting", broken.reason);
            self.fail(reference, Zeroizing::new(text.to_owned()), reason);
            return Ok(reference);
        }
        let native = self.transport == Transport::Sealed;
        if native {
            self.receipts
                .sent(reference, text, tokio::time::Instant::now());
        }
        let frame = ClientFrame::Message {
            text: token,
            reference: native.then_some(reference),
        };
        match self.send_frame(&frame).await {
            Ok(()) => Ok(reference),
            // The reader will notice the lost connection and reconnect.
            // The message is among the unconfirmed ones the reconnection reports failed.
            Err(ClientError::Reconnecting) => Ok(reference),
            Err(e) => Err(e),
        }
    }

    /// Sends again a message reported by [`Event::SendFailed`]; returns its
    /// new reference, or `None` if that message is no longer kept.
    pub async fn resend(&mut self, reference: u64) -> Result<Option<u64>, ClientError> {
        let Some(text) = self.receipts.take_failed(reference) else {
            return Ok(None);
        };
        self.send(&text).await.map(Some)
    }

    /// Records a message as failed and queues the event that says so.
    fn fail(&mut self, reference: u64, text: Zeroizing<String>, reason: String) {
        let failed = self.receipts.failed(reference, text, reason);
        self.pending.push_back(failed);
    }

    /// Empties the room's history for everyone.
    pub async fn clear(&mut self) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Clear).await
    }

    /// Sends `text` to `name` alone, end-to-end encrypted with keys only the
    /// two of you hold. The first message to someone runs a key exchange
    /// first; it and anything sent meanwhile are queued and go out, in order,
    /// once it completes (each shows up as an [`Event::Private`] then), or
    /// come back as an [`Event::Error`] if it fails. [`ClientError::Private`]
    /// leaves the session usable: nothing was sent.
    pub async fn send_private(&mut self, name: &str, text: &str) -> Result<(), ClientError> {
        self.connected()?;
        let id = self.private_peer(name)?;
        if text.len() > MAX_PRIVATE_TEXT_LEN {
            return Err(PrivateError::TooLong.into());
        }
        let out = self
            .private
            .send(&id, name, text, tokio::time::Instant::now())?;
        self.apply_private(out.frames, out.events)?;
        self.flush().await?;
        Ok(())
    }

    /// Asks for the safety code of the private session with `name`; it
    /// arrives as an [`Event::Verify`], after a key exchange if there was no
    /// session yet.
    pub async fn verify(&mut self, name: &str) -> Result<(), ClientError> {
        self.connected()?;
        let id = self.private_peer(name)?;
        let out = self.private.verify(&id, name, tokio::time::Instant::now());
        self.apply_private(out.frames, out.events)?;
        self.flush().await?;
        Ok(())
    }

    /// The safety code of the private session with `name`, if there is one.
    pub fn safety_code(&self, name: &str) -> Option<SafetyCode> {
        let user = self.users.iter().find(|u| u.username == name)?;
        self.private.safety_code(&user.user_id)
    }

    /// The `user_id` of the member called `name`, if a private message can
    /// go to them.
    fn private_peer(&self, name: &str) -> Result<String, PrivateError> {
        if self.transport == Transport::Legacy {
            return Err(PrivateError::LegacyServer);
        }
        if name == self.config.username {
            return Err(PrivateError::ToSelf);
        }
        self.users
            .iter()
            .find(|u| u.username == name)
            .map(|u| u.user_id.clone())
            .ok_or_else(|| PrivateError::NoSuchUser(name.to_owned()))
    }

    /// Queues the private frames (wrapped in the room encryption) for the
    /// next flush, and the events for [`Client::next_event`].
    fn apply_private(
        &mut self,
        frames: Vec<PrivateOutgoing>,
        events: Vec<Event>,
    ) -> Result<(), ClientError> {
        for PrivateOutgoing { to, envelope } in frames {
            let json =
                Zeroizing::new(serde_json::to_string(&envelope).expect("envelopes serialize"));
            let body = self.conn.cipher.encrypt(&json);
            self.conn.writer.queue(&ClientFrame::Private { to, body })?;
        }
        self.pending.extend(events);
        Ok(())
    }

    /// The name of the member `user_id`, present or recently departed.
    fn name_of(&self, user_id: &str) -> Option<String> {
        self.users
            .iter()
            .find(|u| u.user_id == user_id)
            .map(|u| u.username.clone())
            .or_else(|| {
                self.departed
                    .iter()
                    .rev()
                    .find(|(id, _)| id == user_id)
                    .map(|(_, name)| name.clone())
            })
    }

    /// Who locked the room, if it is locked.
    pub fn locked_by(&self) -> Option<&str> {
        self.locked.as_deref()
    }

    /// Newcomers waiting to be let in, in the order they knocked.
    pub fn knocking(&self) -> &[String] {
        &self.knocking
    }

    /// The largest file this room takes, in bytes.
    pub fn max_file_size(&self) -> u64 {
        self.transfers.max_file_size()
    }

    /// 1.x servers know nothing of locks or files; asking one would be
    /// answered with confusion, so it is refused here, before sending.
    fn require_native(&self, what: &'static str) -> Result<(), ClientError> {
        match self.transport {
            Transport::Sealed => Ok(()),
            Transport::Legacy => Err(ClientError::NeedsNative(what)),
        }
    }

    /// Locks the room: newcomers must knock and be admitted. Every member
    /// sees [`Event::Locked`] with our name; a refusal (already locked)
    /// comes back as an [`Event::Error`].
    pub async fn lock(&mut self) -> Result<(), ClientError> {
        self.require_native("locking the room")?;
        self.send_frame(&ClientFrame::Lock).await
    }

    /// Opens the room again; everyone knocking is let in.
    pub async fn unlock(&mut self) -> Result<(), ClientError> {
        self.require_native("unlocking the room")?;
        self.send_frame(&ClientFrame::Unlock).await
    }

    /// Lets the knocking newcomer `user` in.
    pub async fn admit(&mut self, user: &str) -> Result<(), ClientError> {
        self.require_native("admitting newcomers")?;
        self.send_frame(&ClientFrame::Admit { user: user.into() })
            .await
    }

    /// Turns the knocking newcomer `user` away.
    pub async fn deny(&mut self, user: &str) -> Result<(), ClientError> {
        self.require_native("turning newcomers away")?;
        self.send_frame(&ClientFrame::Deny { user: user.into() })
            .await
    }

    /// Starts sending the file at `path` to the room: it is read whole (up to
    /// [`Client::max_file_size`]) and goes out in encrypted chunks as the
    /// room takes them, while [`Client::next_event`] is being called.
    /// Progress and the end come as events. One file at a time.
    pub async fn send_file(&mut self, path: &Path) -> Result<(), ClientError> {
        self.require_native("sharing files")?;
        self.transfers.not_sending()?;
        let contents = files::read_for_sending(path, self.transfers.max_file_size()).await?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        self.send_file_bytes(&name, contents).await
    }

    /// Like [`Client::send_file`], for contents already in memory.
    pub async fn send_file_bytes(
        &mut self,
        name: &str,
        contents: zeroize::Zeroizing<Vec<u8>>,
    ) -> Result<(), ClientError> {
        self.require_native("sharing files")?;
        self.connected()?;
        let now = tokio::time::Instant::now();
        let out = self
            .transfers
            .send(&self.conn.cipher, name, contents, now)?;
        self.queue_frames(out.frames)?;
        self.pending.extend(out.events);
        self.flush().await?;
        Ok(())
    }

    /// Whether a file of ours is still on its way.
    pub fn sending(&self) -> bool {
        self.transfers.sending()
    }

    /// Whether a message of ours awaits the server's receipt. Each one ends
    /// as [`Event::Sent`] or, at the latest after the ack timeout,
    /// [`Event::SendFailed`], so waiting for this to clear is bounded.
    pub fn awaiting_receipts(&self) -> bool {
        self.receipts.awaiting()
    }

    /// Whether events are queued that [`Client::next_event`] returns at
    /// once: a lost connection reports every unconfirmed message together.
    pub fn has_events_ready(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Files received whole, oldest first, numbered for [`Client::save_file`].
    pub fn received_files(&self) -> impl Iterator<Item = &ReceivedFile> {
        self.transfers.received()
    }

    /// Writes received file `n` to `path` (a file, or a directory to put it
    /// in), or without a path to its cleaned name in the current directory.
    /// Never overwrites: an existing file is [`FileError::Exists`]. Returns
    /// where it was written. This is the only way cmd-chat writes a file.
    pub async fn save_file(
        &mut self,
        n: usize,
        path: Option<&Path>,
    ) -> Result<PathBuf, ClientError> {
        let Some(file) = self.transfers.received_mut(n) else {
            return Err(FileError::NoSuchFile(n).into());
        };
        let target =
            files::save_target(path, &file.name, n).map_err(|source| FileError::Write {
                path: PathBuf::from("."),
                source,
            })?;
        files::write_new(&target, &file.contents).await?;
        file.saved = Some(target.clone());
        Ok(target)
    }

    /// Queues `frames` for the next flush.
    fn queue_frames(&mut self, frames: Vec<ClientFrame>) -> Result<(), ClientError> {
        for frame in &frames {
            self.conn.writer.queue(frame)?;
        }
        Ok(())
    }

    /// Gives up on the outgoing file: the room has not taken any of it for
    /// [`FILE_STALL_TIMEOUT`](super::files::FILE_STALL_TIMEOUT).
    fn stall_outgoing(&mut self) -> Result<(), ClientError> {
        let out = self.transfers.stalled();
        self.queue_frames(out.frames)?;
        self.pending.extend(out.events);
        Ok(())
    }

    async fn send_frame(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.connected()?;
        self.conn.writer.queue(frame)?;
        self.flush().await
    }

    /// Refuses to act while reconnecting: what would be sent is lost with
    /// the old connection. The error leaves the session usable.
    fn connected(&self) -> Result<(), ClientError> {
        match &self.broken {
            Some(_) => Err(ClientError::Reconnecting),
            None => Ok(()),
        }
    }

    /// Sends what is queued, unless the server takes nothing for the silence
    /// limit: a server that stops reading is as dead as one that stops
    /// talking, and must not hold us in a write any more than in a read (a
    /// slow link that keeps taking bytes is fine). Cancel-safe.
    async fn flush_within_silence(&mut self) -> Result<(), FrameError> {
        self.conn
            .writer
            .flush_unless_stalled(Some(self.silence_limit))
            .await
    }

    /// Sends what is queued. A connection that turns out to be gone starts
    /// the reconnection (and is reported as [`ClientError::Reconnecting`]),
    /// or ends the session when reconnecting is off.
    async fn flush(&mut self) -> Result<(), ClientError> {
        match self.flush_within_silence().await {
            Ok(()) => Ok(()),
            Err(FrameError::Io(e)) => {
                self.lost(e.to_string())?;
                Err(ClientError::Reconnecting)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The next event. Cancel-safe, so it can sit in a `select!` beside input.
    ///
    /// A lost native connection is not an error here: the client reports
    /// [`Event::Reconnecting`], logs in again with backoff, takes its session
    /// over, and reports [`Event::Reconnected`] followed by exactly the
    /// messages it missed. It gives up (with [`ClientError::ConnectionLost`])
    /// after [`RECONNECT_ATTEMPTS`], or at once when the server says no.
    ///
    /// It also keeps an outgoing file moving: chunks go out as the server
    /// acknowledges earlier ones.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            // Private handshake answers are queued while frames are read;
            // a flush cancelled last time finishes here.
            if self.broken.is_none()
                && self.conn.writer.has_unsent()
                && let Err(e) = self.flush_within_silence().await
            {
                self.lost(e.to_string())?;
            }
            // Most calls have no private handshake under way: no clock read.
            if self.private.next_deadline().is_some() {
                let expired = self.private.expire(tokio::time::Instant::now());
                self.pending.extend(expired);
            }
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            if self.broken.is_some() {
                if let Some(event) = self.try_reconnect().await? {
                    return Ok(event);
                }
                continue;
            }
            let Some(frame) = self.read_frame().await? else {
                continue;
            };
            if let ServerFrame::Event(ServerEvent::Ping) = frame {
                match self.send_frame(&ClientFrame::Pong).await {
                    Ok(()) | Err(ClientError::Reconnecting) => continue,
                    Err(e) => return Err(e),
                }
            }
            // Synchronous: a cancelled call never leaves a frame half applied.
            self.apply(frame)?;
        }
    }

    /// The next frame from the server, or `None` if a deadline passed
    /// first or the connection was lost (either is dealt with: events
    /// queued, or the reconnection started). Cancel-safe.
    async fn read_frame(&mut self) -> Result<Option<ServerFrame>, ClientError> {
        // A frame left in the record read last is there at once: no
        // deadline to arm (a busy member's records hold dozens).
        let deadline = if self.conn.reader.has_buffered_frame() {
            None
        } else {
            self.read_deadline()
        };
        let read = self.conn.reader.read_server_frame();
        let read = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                Ok(read) => read,
                Err(_) => {
                    self.deadline_passed()?;
                    return Ok(None);
                }
            },
            None => read.await,
        };
        let frame = match read {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                self.lost("the server closed the connection".into())?;
                return Ok(None);
            }
            Err(FrameError::Io(e)) => {
                self.lost(e.to_string())?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        // Heard from as of the end of the record just used up: measured
        // from when its frames were consumed, a slow consumer of a long
        // record is not mistaken for a silent server.
        if !self.conn.reader.has_buffered_frame() {
            self.last_heard = tokio::time::Instant::now();
        }
        Ok(Some(frame))
    }

    /// When the server's silence means the connection is dead: native
    /// servers ping, 1.x servers never do.
    fn silence_deadline(&self) -> Option<tokio::time::Instant> {
        match self.transport {
            Transport::Sealed => Some(self.last_heard + self.silence_limit),
            Transport::Legacy => None,
        }
    }

    /// How long a read may wait: until whichever comes first of silence, a
    /// receipt overdue, a private handshake's deadline, and an outgoing
    /// file the room stopped taking.
    fn read_deadline(&self) -> Option<tokio::time::Instant> {
        [
            self.silence_deadline(),
            self.receipts.deadline(),
            self.private.next_deadline(),
            self.transfers.stall_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The read deadline passed: overdue messages fail, then a silent
    /// server is taken for lost or, failing that, a stalled file is given
    /// up. (Private handshakes expire at the top of [`Client::next_event`].)
    fn deadline_passed(&mut self) -> Result<(), ClientError> {
        let now = tokio::time::Instant::now();
        let expired = self.receipts.expire(now);
        self.pending.extend(expired);
        if self.silence_deadline().is_some_and(|d| d <= now) {
            self.lost("the server stopped answering".into())
        } else if self.transfers.stall_deadline().is_some_and(|d| d <= now) {
            self.stall_outgoing()
        } else {
            Ok(())
        }
    }

    /// The connection is gone: start reconnecting, or give up if we can't.
    fn lost(&mut self, reason: String) -> Result<(), ClientError> {
        if !self.reconnect || self.transport != Transport::Sealed || self.resume.is_none() {
            return Err(ClientError::ConnectionLost(reason));
        }
        match self.reconnected_at.take() {
            Some(at) if at.elapsed() < RECONNECT_STABLE_AFTER => self.quick_drops += 1,
            _ => self.quick_drops = 0,
        }
        if self.quick_drops >= RECONNECT_ATTEMPTS {
            return Err(ClientError::ConnectionLost(format!(
                "{reason} (gave up: the server dropped {RECONNECT_ATTEMPTS} reconnections in a row at once)"
            )));
        }
        let attempt = 1 + self.quick_drops;
        // Transfers do not survive the connection: say which ended.
        let ended = self.transfers.connection_lost();
        self.pending.extend(ended);
        // What was in flight may or may not have been stored: say so.
        let lost = self.receipts.connection_lost();
        self.pending.extend(lost);
        self.pending.push_back(Event::Reconnecting {
            attempt,
            reason: reason.clone(),
        });
        self.broken = Some(Broken {
            reason,
            attempt,
            next_try: tokio::time::Instant::now() + reconnect_delay(attempt),
            attempt_task: None,
        });
        Ok(())
    }

    /// One reconnection attempt, after its backoff. `Ok(Some(event))` reports
    /// the next attempt; `Ok(None)` means back in the room (events queued).
    async fn try_reconnect(&mut self) -> Result<Option<Event>, ClientError> {
        match self.reconnect_attempt().await {
            Ok(link) => {
                self.rejoin(link);
                Ok(None)
            }
            Err(failed) => self.attempt_failed(failed).map(Some),
        }
    }

    /// The outcome of the reconnection attempt under way, started once its
    /// backoff is over if there is none. Cancel-safe: the attempt is a task
    /// of its own, which a cancelled call leaves running for the next.
    async fn reconnect_attempt(&mut self) -> Result<Link, LoginFailed> {
        let broken = self.broken.as_ref().expect("only called while broken");
        if broken.attempt_task.is_none() {
            tokio::time::sleep_until(broken.next_try).await;
            let task = self.log_in_again();
            self.broken.as_mut().expect("still broken").attempt_task = Some(task);
        }
        let broken = self.broken.as_mut().expect("still broken");
        let task = broken.attempt_task.as_mut().expect("just started");
        let outcome = task.await.unwrap_or_else(|_| {
            Err(LoginFailed::after_proof(protocol(
                "the reconnection attempt failed",
            )))
        });
        broken.attempt_task = None;
        outcome
    }

    /// Starts logging in again, in a task of its own, asking to take this
    /// session over where it left off.
    fn log_in_again(&self) -> tokio::task::JoinHandle<Result<Link, LoginFailed>> {
        let config = ClientConfig {
            server: self.config.server.clone(),
            username: self.config.username.clone(),
            password: self.config.password.clone(),
            allow_legacy: self.config.allow_legacy,
        };
        let resume = self.resume.as_ref().map(|r| ResumeRequest {
            session: ResumeState {
                user_id: r.user_id.clone(),
                token: r.token.clone(),
            },
            room_id: self.room.id.clone(),
            after_seq: self.last_seq,
        });
        tokio::spawn(async move { super::login::open(&config, resume.as_ref(), |_| {}).await })
    }

    /// A reconnection attempt failed: the event announcing the next one,
    /// or the error that ends the session.
    fn attempt_failed(&mut self, failed: LoginFailed) -> Result<Event, ClientError> {
        match failed {
            // Refused or cut before our proof went out: worth trying again,
            // a room refusing logins for a moment too. Never once the proof
            // has gone out (see `LoginFailed`).
            LoginFailed {
                error: e,
                proof_sent: false,
            } if e.is_transient() || matches!(e, ClientError::LockedOut(_)) => {
                let broken = self.broken.as_mut().expect("still broken");
                if broken.attempt >= RECONNECT_ATTEMPTS {
                    return Err(ClientError::ConnectionLost(format!(
                        "{} (gave up after {} attempts to reconnect)",
                        broken.reason, broken.attempt
                    )));
                }
                broken.attempt += 1;
                broken.next_try = tokio::time::Instant::now() + reconnect_delay(broken.attempt);
                Ok(Event::Reconnecting {
                    attempt: broken.attempt,
                    reason: e.to_string(),
                })
            }
            // The room took this password minutes ago; refusing it now
            // means the login was changed on its way (each field of it is
            // bound into the proof), unless the host restarted the room
            // with another password.
            LoginFailed {
                error: ClientError::WrongPassword,
                ..
            } => Err(ClientError::Tampered(
                "the room refused on reconnecting the password it took before \
                 (unless its host restarted it with another password)"
                    .into(),
            )),
            failed => Err(failed.error),
        }
    }

    /// Back in the room over `link`: adopts the new connection and the
    /// room's state, reports [`Event::Reconnected`], what changed among the
    /// members meanwhile, and the messages missed.
    fn rejoin(&mut self, link: Link) {
        self.broken = None;
        self.reconnected_at = Some(tokio::time::Instant::now());
        let missed = link.replayed();
        // The room key comes with it: a restarted server's is new.
        self.conn = link.conn;
        self.locked = link.locked;
        self.knocking = link.knocking;
        self.transfers.set_max_file_size(link.max_file_size);
        // A restarted server is a new room: its numbers start again, and
        // whoever we knew there is gone.
        let restarted = link.room != self.room;
        if restarted {
            self.room = link.room;
            self.last_seq = 0;
            self.departed.clear();
            self.pending.push_back(Event::RoomRestarted);
        }
        // A new member id means the old session ended on the server (the
        // others saw us leave): private sessions with it are gone too.
        let same_member = match (&self.resume, &link.resume) {
            (Some(old), Some(new)) => old.user_id == new.user_id,
            _ => false,
        };
        let mut ours: Vec<String> = self.resume.iter().map(|r| r.user_id.clone()).collect();
        ours.extend(link.resume.iter().map(|r| r.user_id.clone()));
        if link.resume.is_some() {
            self.resume = link.resume;
        }
        self.last_heard = tokio::time::Instant::now();
        self.replay_is_history = false;
        self.pending.push_back(Event::Reconnected {
            missed,
            complete: link.complete.unwrap_or(false),
        });
        if restarted {
            // Nobody we knew is in the new room: RoomRestarted says so once,
            // rather than a leave and a join per member.
            self.users = link.users;
        } else {
            // Before any reset below, so what waited for a departed member
            // is reported as not sent.
            self.reconcile_members(link.users, &ours);
        }
        if !same_member || restarted {
            self.private = PrivateChats::new(&self.config.username);
        }
        for data in link.messages {
            let event = self.message_event(data, false);
            self.pending.extend(event);
        }
    }

    /// Back in the same room after a reconnect: takes the server's member
    /// list `users` and reports the difference from ours as if it had been
    /// seen live, [`Event::Left`] for each member gone (as a live
    /// `user_left`, keys and all), then [`Event::Joined`] for each newcomer
    /// in the server's order. A member id whose name changed is both. Our
    /// own entries, under any of the ids in `ours`, are no event.
    fn reconcile_members(&mut self, users: Vec<UserInfo>, ours: &[String]) {
        let me = self.config.username.clone();
        let is_us = |u: &UserInfo| u.username == me || ours.contains(&u.user_id);
        let same = |a: &UserInfo, b: &UserInfo| a.user_id == b.user_id && a.username == b.username;
        let old = std::mem::take(&mut self.users);
        let joined: Vec<String> = users
            .iter()
            .filter(|u| !is_us(u) && !old.iter().any(|o| same(o, u)))
            .map(|u| u.username.clone())
            .collect();
        for user in old {
            if !is_us(&user) && !users.iter().any(|u| same(u, &user)) {
                self.member_left(user);
            }
        }
        self.pending
            .extend(joined.into_iter().map(|user| Event::Joined { user }));
        self.users = users;
    }

    /// Applies one frame from the server: its events join `pending`, in
    /// order. Pings are answered before this. An error ends the session.
    fn apply(&mut self, frame: ServerFrame) -> Result<(), ClientError> {
        let event = match frame {
            ServerFrame::Error(refusal) => return self.on_refusal(refusal),
            ServerFrame::Event(event) => event,
        };
        match event {
            ServerEvent::Message { data } => {
                let event = self.message_event(data, false);
                self.pending.extend(event);
            }
            ServerEvent::History { messages } => self.on_history(messages),
            ServerEvent::Sent { reference, seq } => {
                self.receipts.confirmed(reference);
                self.pending.push_back(Event::Sent { reference, seq });
            }
            ServerEvent::UserJoined { user_id, username } => self.on_joined(user_id, username)?,
            ServerEvent::UserLeft { user_id } => self.on_left(&user_id),
            ServerEvent::Private {
                from,
                from_name,
                body,
            } => self.private_frame(&from, &from_name, &body)?,
            ServerEvent::Cleared => self.pending.push_back(Event::Cleared),
            ServerEvent::Notice { text } => self.pending.push_back(Event::Notice { message: text }),
            ServerEvent::Ping => {}
            ServerEvent::Closing { .. } => return Err(ClientError::RoomClosed),
            ServerEvent::Init { .. } => return Err(protocol("a second init frame")),
            ServerEvent::Waiting { .. } => return Err(protocol("a waiting frame after init")),
            ServerEvent::Locked { by } => {
                self.locked = Some(by.clone());
                self.pending.push_back(Event::Locked { by });
            }
            ServerEvent::Unlocked { by } => {
                self.locked = None;
                self.pending.push_back(Event::Unlocked { by });
            }
            ServerEvent::Knock { user } => self.on_knock(user)?,
            ServerEvent::KnockResolved { user, outcome, by } => {
                self.knocking.retain(|u| *u != user);
                let event = Event::KnockResolved { user, outcome, by };
                self.pending.push_back(event);
            }
            ServerEvent::FileOffer {
                from,
                id,
                chunks,
                meta,
            } => self.on_file_offer(from, id, chunks, &meta),
            ServerEvent::FileChunk {
                from,
                id,
                index,
                data,
            } => self.on_file_chunk(&from, &id, index, &data),
            ServerEvent::FileAck { id, index } => self.on_file_ack(&id, index)?,
            ServerEvent::FileAborted { from, id, reason } => {
                let event = self.transfers.aborted(from, &id, reason);
                self.pending.extend(event);
            }
        }
        Ok(())
    }

    /// The server refused something or is sending us away: a refusal of a
    /// private frame goes to that conversation, one of our messages is
    /// reported failed, anything else is shown.
    fn on_refusal(&mut self, refusal: ErrorReply) -> Result<(), ClientError> {
        match refusal.code {
            Some(ErrorCode::ShuttingDown) => return Err(ClientError::RoomClosed),
            Some(ErrorCode::TooSlow | ErrorCode::Idle | ErrorCode::Replaced) => {
                return Err(ClientError::Kicked(refusal.error));
            }
            _ => {}
        }
        if let Some(to) = refusal.to {
            let name = self.name_of(&to).unwrap_or_else(|| "someone".into());
            let unreachable = matches!(
                refusal.code,
                Some(ErrorCode::NoSuchUser | ErrorCode::PrivateUnsupported)
            );
            let events = self
                .private
                .refused(&to, &name, &refusal.error, unreachable);
            self.pending.extend(events);
            return Ok(());
        }
        let failed = refusal
            .reference
            .and_then(|reference| self.receipts.refused(reference, refusal.error.clone()));
        let event = failed.unwrap_or(Event::Error {
            message: refusal.error,
        });
        self.pending.push_back(event);
        Ok(())
    }

    /// Messages replayed: history at join, or what was missed while
    /// reconnecting (shown as live).
    fn on_history(&mut self, messages: Vec<MessageData>) {
        let history = self.replay_is_history;
        for data in messages {
            let event = self.message_event(data, history);
            self.pending.extend(event);
        }
    }

    /// A member joined.
    fn on_joined(&mut self, user_id: String, username: String) -> Result<(), ClientError> {
        // An id we know under another name is someone else now (as on a
        // reconnect): the member it was has left, and the keys agreed with
        // them go too, so they can never speak for the new name.
        if let Some(pos) = self.users.iter().position(|u| u.user_id == user_id) {
            let known = self.users.remove(pos);
            if known.username != username {
                self.member_left(known);
            }
        } else if self.users.len() >= MAX_ROOM_MEMBERS {
            return Err(too_many_members());
        }
        // Likewise a name we know under another id: whoever held it has
        // left, with the keys agreed with them, so the newcomer never
        // inherits a verified name.
        if let Some(pos) = self.users.iter().position(|u| u.username == username) {
            let known = self.users.remove(pos);
            self.member_left(known);
        }
        self.users.push(UserInfo {
            user_id,
            username: username.clone(),
        });
        self.pending.push_back(Event::Joined { user: username });
        Ok(())
    }

    /// A member left; one we do not know is no event.
    fn on_left(&mut self, user_id: &str) {
        if let Some(pos) = self.users.iter().position(|u| u.user_id == user_id) {
            let user = self.users.remove(pos);
            self.member_left(user);
        }
    }

    /// A newcomer knocks at the locked room (again, if they were already).
    fn on_knock(&mut self, user: String) -> Result<(), ClientError> {
        self.knocking.retain(|u| *u != user);
        if self.knocking.len() >= MAX_ROOM_MEMBERS {
            return Err(too_many_members());
        }
        self.knocking.push(user.clone());
        self.pending.push_back(Event::Knock { user });
        Ok(())
    }

    /// Someone offers a file.
    fn on_file_offer(&mut self, from: String, id: String, chunks: u32, meta: &str) {
        let event = self
            .transfers
            .offered(&self.conn.cipher, from, id, chunks, meta);
        self.pending.extend(event);
    }

    /// A piece of someone's file.
    fn on_file_chunk(&mut self, from: &str, id: &str, index: u32, data: &str) {
        let events = self
            .transfers
            .chunk(&self.conn.cipher, from, id, index, data);
        self.pending.extend(events);
    }

    /// The server passed on our chunks up to `index`: more go out.
    fn on_file_ack(&mut self, id: &str, index: u32) -> Result<(), ClientError> {
        let now = tokio::time::Instant::now();
        let out = self.transfers.acked(&self.conn.cipher, id, index, now);
        self.queue_frames(out.frames)?;
        self.pending.extend(out.events);
        Ok(())
    }

    /// A member is gone (the caller has taken it out of `users`): its
    /// private keys go now, anything still waiting for it fails, and a
    /// refusal about it that arrives later can still name it.
    fn member_left(&mut self, user: UserInfo) {
        let UserInfo { user_id, username } = user;
        let failed = self.private.departed(&user_id);
        if self.departed.len() == DEPARTED_MEMORY {
            self.departed.pop_front();
        }
        self.departed.push_back((user_id, username.clone()));
        self.pending.push_back(Event::Left { user: username });
        self.pending.extend(failed);
    }

    /// Opens a private frame's room encryption and hands the envelope to the
    /// conversation with its sender.
    fn private_frame(
        &mut self,
        from: &str,
        from_name: &str,
        body: &str,
    ) -> Result<(), ClientError> {
        // The name the server gives must be the member's name we know, so a
        // confused server cannot make one member's keys speak for another.
        let Some(name) = self
            .users
            .iter()
            .find(|u| u.user_id == from && u.username == from_name)
            .map(|u| u.username.clone())
        else {
            self.pending.push_back(Event::Error {
                message: "a private message came from someone who is not in the room; ignored"
                    .into(),
            });
            return Ok(());
        };
        let envelope = self
            .conn
            .cipher
            .decrypt(body)
            .map_err(|e| e.to_string())
            .map(Zeroizing::new)
            .and_then(|json| {
                serde_json::from_str::<PrivateEnvelope>(&json)
                    .map_err(|_| "its envelope is malformed".to_owned())
            });
        match envelope {
            Ok(envelope) => {
                let out = self.private.receive(from, &name, envelope);
                self.apply_private(out.frames, out.events)
            }
            Err(why) => {
                self.pending.push_back(Event::Error {
                    message: format!("a private message from {name} could not be read: {why}"),
                });
                Ok(())
            }
        }
    }

    /// `None` for a message already shown: the server numbers a room's
    /// messages in increasing order, so one at or below the last number
    /// seen is a replay (a server cannot forge a message, but it could
    /// repeat one), not shown twice.
    fn message_event(&mut self, mut data: MessageData, history: bool) -> Option<Event> {
        let seq = match data.seq {
            Some(seq) if seq <= self.last_seq => return None,
            Some(seq) => seq,
            // 1.x servers number nothing: count here.
            None => {
                self.local_seq += 1;
                self.local_seq
            }
        };
        self.last_seq = self.last_seq.max(seq);
        let from = std::mem::take(&mut data.username);
        Some(match self.open_message(&data.text, &from) {
            Ok(text) => Event::Message(ChatMessage {
                seq,
                from,
                text,
                relayed_again: written_long_before(&data.text, &data.timestamp),
                timestamp: std::mem::take(&mut data.timestamp),
                history,
            }),
            Err(why) => Event::Error {
                message: format!("message {seq} from {from}: {why}; not shown"),
            },
        })
    }

    /// The Fernet token for `text`: with our name inside it in rooms whose
    /// messages carry one.
    fn seal_message(&self, text: &str) -> String {
        if !self.conn.names_inside {
            return self.conn.cipher.encrypt(text);
        }
        let plaintext = MessagePlaintext {
            from: self.config.username.as_str().into(),
            text: text.into(),
        };
        let json = Zeroizing::new(serde_json::to_string(&plaintext).expect("plaintexts serialize"));
        self.conn.cipher.encrypt(&json)
    }

    /// The text of the token `token` the server says `from` sent. In rooms
    /// whose messages carry their writer's name, that name must be `from`:
    /// otherwise the server (which cannot write a token) has moved one
    /// member's words under another's name.
    fn open_message(&self, token: &str, from: &str) -> Result<String, String> {
        let text = self.conn.cipher.decrypt(token).map_err(|e| e.to_string())?;
        if !self.conn.names_inside {
            return Ok(text);
        }
        let text = Zeroizing::new(text);
        let inside: MessagePlaintext<'_> = serde_json::from_str(&text).map_err(|_| {
            "its token does not name its writer, as every message in this room must".to_owned()
        })?;
        if inside.from != from {
            return Err(format!(
                "written by {}, but the server says {from} sent it",
                inside.from
            ));
        }
        Ok(inside.text.into_owned())
    }

    /// Leaves the room cleanly. Dropping the client also leaves and wipes the
    /// keys; this also tells a native server it was on purpose.
    pub async fn leave(mut self) -> Result<(), ClientError> {
        // Already gone: there is nobody to tell.
        if self.broken.is_some() {
            return Ok(());
        }
        let goodbye = async {
            if self.transport == Transport::Sealed {
                self.conn.writer.queue(&ClientFrame::Leave)?;
            }
            self.conn.writer.shutdown().await
        };
        match tokio::time::timeout(LEAVE_DEADLINE, goodbye).await {
            Ok(done) => Ok(done?),
            // Gone either way; the server will notice.
            Err(_) => Ok(()),
        }
    }
}

pub(super) fn too_many_members() -> ClientError {
    protocol(format!(
        "the server announced more than {MAX_ROOM_MEMBERS} members, which no room holds"
    ))
}

/// The wait before reconnection attempt `attempt` (from 1): doubling from
/// [`RECONNECT_FIRST_DELAY`] up to [`RECONNECT_MAX_DELAY`].
fn reconnect_delay(attempt: u32) -> Duration {
    RECONNECT_FIRST_DELAY
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(RECONNECT_MAX_DELAY)
}
