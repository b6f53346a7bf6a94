//! The client core: connect, authenticate, send and receive decrypted events,
//! talk privately with one member, leave with keys wiped. Every front end
//! (terminal, scripting mode, examples, tests) goes through [`Client`].
//!
//! This file holds the client's state, what the front ends call, and the
//! event pump ([`Client::next_event`]). Two parts of `impl Client` live
//! beside it: `frames` (one handler per kind of frame from the server) and
//! `reconnect` (getting a lost connection back). The parts without I/O
//! that it drives are `private`, `receipts` and `transfers`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

mod frames;
mod reconnect;

use reconnect::Broken;

use super::error::ClientError;
pub use super::event::{ChatMessage, Event, PrivateMessage, Transport, Waiting};
use super::files::{self, FileError, ReceivedFile};
use super::login::{Connection, Link, LoginFailed, ResumeState, RoomIdentity, protocol};
use super::private::{Outgoing as PrivateOutgoing, PrivateChats, PrivateError};
use super::receipts::Receipts;
use super::transfers::Transfers;
use crate::crypto::Password;
use crate::crypto::private::SafetyCode;
use crate::protocol::limits::{MAX_PRIVATE_TEXT_LEN, MAX_ROOM_MEMBERS, SERVER_SILENCE_LIMIT};
use crate::protocol::wire::{
    ClientFrame, KnockOutcome, MessagePlaintext, ServerEvent, ServerFrame, UserInfo,
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
        // Let in at a locked room: by whom, as the members saw it.
        if let Some(by) = link.admitted_by {
            client.pending.push_back(Event::KnockResolved {
                user: client.config.username.clone(),
                outcome: KnockOutcome::Admitted,
                by: Some(by),
            });
        }
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

    /// The text of our message `reference` while it awaits the server's
    /// receipt (native rooms): what a front end shows as pending.
    pub fn awaiting_text(&self, reference: u64) -> Option<&str> {
        self.receipts.awaiting_text(reference)
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
    /// come back as an [`Event::PrivateNotSent`] if it fails. [`ClientError::Private`]
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

    /// Whether a message of ours awaits the server's receipt, or a private
    /// one its private session. Each one ends as [`Event::Sent`] or, at the
    /// latest after the ack timeout, [`Event::SendFailed`]; a private one as
    /// [`Event::Private`] or, at the latest at the handshake deadline,
    /// [`Event::PrivateNotSent`]. So waiting for this to clear is bounded.
    pub fn awaiting_receipts(&self) -> bool {
        self.receipts.awaiting() || self.private.queued()
    }

    /// Whether events are queued that [`Client::next_event`] returns at
    /// once: a lost connection reports every unconfirmed message together.
    pub fn has_events_ready(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The events already received and not yet returned, without waiting
    /// or any I/O: for a front end that is leaving to settle what it shows
    /// (a private message its handshake sent just now, say).
    pub fn take_ready_events(&mut self) -> Vec<Event> {
        self.pending.drain(..).collect()
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
                self.lost(super::error::plain_io(&e))?;
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
    /// after `RECONNECT_ATTEMPTS` tries, or at once when the server says no.
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
                self.lost(super::error::frame_reason(&e))?;
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
                self.lost(super::error::plain_io(&e))?;
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
