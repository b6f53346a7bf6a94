//! The client core: connect, authenticate, send and receive decrypted events,
//! talk privately with one member, leave with keys wiped. Every front end
//! (terminal, scripting mode, examples, tests) goes through [`Client`].

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::ClientError;
use super::private::{Outgoing, PrivateChats, PrivateError};
use crate::crypto::kdf::{self, KdfParams};
use crate::crypto::private::SafetyCode;
use crate::crypto::resume::resume_proof;
use crate::crypto::srp::{ClientSession, SrpError};
use crate::crypto::transport::{Side, derive_keys};
use crate::crypto::{Key32, Password, RoomCipher};
use crate::protocol::limits::{
    CLIENT_MAX_LINE, MAX_PRIVATE_TEXT_LEN, PRE_AUTH_MAX_LINE, SERVER_SILENCE_LIMIT,
};
use crate::protocol::wire::{
    Challenge, ClientFrame, ErrorCode, ErrorReply, HandshakeRequest, MessageData, NATIVE_PROTOCOL,
    PrivateEnvelope, Reply, ServerEvent, ServerFrame, UserInfo, Welcome,
};
use crate::protocol::{FrameError, FrameReader, FrameWriter, token, username};

/// Time allowed to open the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the whole login once connected.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);

/// What to connect to and as whom.
#[derive(Debug)]
pub struct ClientConfig {
    /// `host:port` of the server.
    pub server: String,
    pub username: String,
    /// Kept for logging in again after a lost connection; wiped when the
    /// client is dropped.
    pub password: Password,
    /// Accept a cmd-chat 1.x server, whose sessions are readable on the wire.
    pub allow_legacy: bool,
}

/// A decrypted chat message. The plaintext is wiped when the value is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct ChatMessage {
    /// The server's sequence number.
    pub seq: u64,
    pub from: String,
    pub text: String,
    /// RFC 3339, as stamped by the server.
    pub timestamp: String,
    /// Replayed from history at join, rather than said live.
    pub history: bool,
}

/// A private message, to us or from us: only the two members can read it.
/// The plaintext is wiped when the value is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct PrivateMessage {
    pub from: String,
    pub to: String,
    pub text: String,
}

/// Members that left recently, remembered so that a refusal about one of them
/// that arrives after the departure can still name them.
const DEPARTED_MEMORY: usize = 64;

/// Something that happened in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Message(ChatMessage),
    /// A private message we received, or one of ours as it is sent (after
    /// the handshake, so queued ones appear when they really leave).
    Private(PrivateMessage),
    /// The safety code of the private session with `user`, as asked for
    /// with [`Client::verify`]: it matches the one `user` sees unless someone
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
    /// Someone emptied the history.
    Cleared,
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
    /// Our message `reference` was not confirmed; [`Client::resend`] can try again.
    SendFailed {
        reference: u64,
        reason: String,
    },
    /// The connection was lost; attempt `attempt` to get it back is coming.
    Reconnecting {
        attempt: u32,
        reason: String,
    },
    /// Back in the room. `missed` messages said meanwhile follow; `complete`
    /// is false if the room's history no longer held all of them.
    Reconnected {
        missed: usize,
        complete: bool,
    },
}

/// Whether the session is hidden from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Native cmd-chat: every frame after SRP is sealed.
    Sealed,
    /// cmd-chat 1.x server: frames after SRP are readable on the wire.
    Legacy,
}

/// Time the server has to confirm a message before it is reported failed.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Failed messages kept for `/resend`; older ones are forgotten (and wiped).
pub const MAX_FAILED_KEPT: usize = 100;
/// Reconnection attempts before giving up, with backoff between them.
pub const RECONNECT_ATTEMPTS: u32 = 12;
/// First wait before reconnecting; it doubles up to [`RECONNECT_MAX_DELAY`].
pub const RECONNECT_FIRST_DELAY: Duration = Duration::from_millis(200);
/// Longest wait between two reconnection attempts.
pub const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(10);

/// A message sent but not yet confirmed by the server.
struct Unacked {
    reference: u64,
    sent_at: tokio::time::Instant,
    text: Zeroizing<String>,
}

/// The connection is gone and the client is trying to get it back.
struct Broken {
    reason: String,
    attempt: u32,
    next_try: tokio::time::Instant,
}

/// What a native server gave this session so it can be resumed.
struct ResumeState {
    user_id: String,
    token: Key32,
}

/// One live connection, after login.
struct Link {
    reader: FrameReader<OwnedReadHalf>,
    writer: FrameWriter<OwnedWriteHalf>,
    cipher: RoomCipher,
    transport: Transport,
    users: Vec<UserInfo>,
    messages: Vec<MessageData>,
    resume: Option<ResumeState>,
    /// After a reconnect: whether `messages` is everything that was missed.
    complete: Option<bool>,
}

/// A member of a room.
pub struct Client {
    reader: FrameReader<OwnedReadHalf>,
    writer: FrameWriter<OwnedWriteHalf>,
    cipher: RoomCipher,
    transport: Transport,
    /// Kept (wiped on drop) so a lost connection can log in again.
    config: ClientConfig,
    /// Members by id, in join order.
    users: Vec<UserInfo>,
    /// Events decoded but not yet handed out (history, reconnect results).
    pending: VecDeque<Event>,
    /// Messages replayed at join.
    history_count: usize,
    /// Sequence numbers for servers that send none (cmd-chat 1.x).
    local_seq: u64,
    /// The last sequence number seen, where a resumed session picks up.
    last_seq: u64,
    /// When the server was last heard from; native servers ping regularly.
    last_heard: tokio::time::Instant,
    /// How long native silence means a dead connection.
    silence_limit: Duration,
    /// How long a sent message may wait for its receipt.
    ack_timeout: Duration,
    /// Whether to reconnect by itself after losing a native connection.
    reconnect: bool,
    resume: Option<ResumeState>,
    broken: Option<Broken>,
    next_reference: u64,
    unacked: VecDeque<Unacked>,
    /// Messages that were not confirmed, by reference, for [`Client::resend`].
    failed: VecDeque<(u64, Zeroizing<String>)>,
    /// Private conversations, with their keys.
    private: PrivateChats,
    /// `(user_id, name)` of members who left lately, newest last.
    departed: VecDeque<(String, String)>,
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

/// Maps a server's refusal to the error a person should see.
fn refusal(reply: ErrorReply, username: &str, stage: Stage) -> ClientError {
    match reply.code {
        Some(ErrorCode::AuthFailed) => ClientError::WrongPassword,
        Some(ErrorCode::NameTaken) => ClientError::NameTaken(username.to_owned()),
        Some(ErrorCode::NameInvalid) => ClientError::Refused(reply.error),
        Some(ErrorCode::RoomFull) => ClientError::RoomFull,
        Some(ErrorCode::ShuttingDown) => ClientError::RoomClosed,
        Some(ErrorCode::RateLimited) => ClientError::LockedOut(reply.error),
        Some(ErrorCode::TooSlow | ErrorCode::Idle) => ClientError::Kicked(reply.error),
        Some(_) => ClientError::Refused(reply.error),
        // A cmd-chat 1.x server sends bare strings.
        None => {
            let lower = reply.error.to_lowercase();
            if lower.contains("taken") {
                ClientError::NameTaken(username.to_owned())
            } else if stage == Stage::Verify {
                ClientError::WrongPassword
            } else {
                ClientError::Refused(reply.error)
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Init,
    Verify,
}

fn protocol(detail: impl Into<String>) -> ClientError {
    ClientError::Protocol(detail.into())
}

impl Client {
    /// Connects, authenticates with SRP, and joins the room. The returned
    /// client first yields the history as [`Event::Message`]s with `history` set.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        username::validate(&config.username)?;
        let link = Self::open(&config, None, 0).await?;
        let config_username = config.username.clone();
        let mut client = Client {
            reader: link.reader,
            writer: link.writer,
            cipher: link.cipher,
            transport: link.transport,
            config,
            users: link.users,
            pending: VecDeque::new(),
            history_count: link.messages.len(),
            local_seq: 0,
            last_seq: 0,
            last_heard: tokio::time::Instant::now(),
            silence_limit: SERVER_SILENCE_LIMIT,
            ack_timeout: ACK_TIMEOUT,
            reconnect: true,
            resume: link.resume,
            broken: None,
            next_reference: 1,
            unacked: VecDeque::new(),
            failed: VecDeque::new(),
            private: PrivateChats::new(&config_username),
            departed: VecDeque::new(),
        };
        for data in link.messages {
            let event = client.message_event(data, true);
            client.pending.push_back(event);
        }
        Ok(client)
    }

    /// Opens a connection and logs in, resuming `resume` if given.
    async fn open(
        config: &ClientConfig,
        resume: Option<&ResumeState>,
        after_seq: u64,
    ) -> Result<Link, ClientError> {
        let connect = TcpStream::connect(&config.server);
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(ClientError::Connect {
                    addr: config.server.clone(),
                    source,
                });
            }
            Err(_) => {
                return Err(ClientError::Connect {
                    addr: config.server.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
                });
            }
        };
        let _ = stream.set_nodelay(true);
        match tokio::time::timeout(
            LOGIN_TIMEOUT,
            Self::login(stream, config, resume, after_seq),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(protocol("the server did not complete the login in time")),
        }
    }

    async fn login(
        stream: TcpStream,
        config: &ClientConfig,
        resume: Option<&ResumeState>,
        after_seq: u64,
    ) -> Result<Link, ClientError> {
        let username = &config.username;
        let (read, write) = stream.into_split();
        let mut reader = FrameReader::new(read, PRE_AUTH_MAX_LINE);
        let mut writer = FrameWriter::new(write);

        let srp = ClientSession::new();
        writer
            .write(&HandshakeRequest::SrpInit {
                username: username.clone(),
                a: STANDARD.encode(srp.public()),
                native: Some(NATIVE_PROTOCOL),
                resume: resume.map(|r| r.user_id.clone()),
            })
            .await?;
        writer.flush().await?;

        let challenge = match read_reply::<Challenge>(&mut reader).await? {
            Reply::Ok(c) => c,
            Reply::Error(e) => return Err(refusal(e, username, Stage::Init)),
        };
        let transport = match challenge.native {
            Some(NATIVE_PROTOCOL) => Transport::Sealed,
            Some(other) => {
                return Err(protocol(format!(
                    "the server speaks native protocol {other}; upgrade cmd-chat"
                )));
            }
            None if config.allow_legacy => Transport::Legacy,
            None => return Err(ClientError::LegacyServer(config.server.clone())),
        };
        let salt = decode(&challenge.salt, "salt")?;
        let b = decode(&challenge.b, "B")?;
        let stretch = match &challenge.kdf {
            None => None,
            Some(spec) if spec.alg == "argon2id" && spec.params.within_client_limits() => {
                Some((decode(&spec.salt, "kdf salt")?, spec.params))
            }
            Some(spec) => {
                return Err(protocol(format!(
                    "the server asks for password stretching this client refuses ({} {:?}; at most {:?})",
                    spec.alg,
                    spec.params,
                    KdfParams::CLIENT_MAX
                )));
            }
        };
        // Argon2id and SRP's exponentiations: keep them off the reactor.
        let password = config.password.clone();
        let (proof, password) = tokio::task::spawn_blocking(move || {
            let password = match stretch {
                None => password,
                Some((kdf_salt, params)) => kdf::stretch(&password, &kdf_salt, params)
                    .map_err(|e| protocol(e.to_string()))?,
            };
            let proof = srp
                .respond(&password, &salt, &b)
                .map_err(|e| protocol(e.to_string()))?;
            Ok::<_, ClientError>((proof, password))
        })
        .await
        .map_err(|_| protocol("internal error"))??;
        let resuming = resume.filter(|_| transport == Transport::Sealed);
        writer
            .write(&HandshakeRequest::SrpVerify {
                user_id: challenge.user_id.clone(),
                m: STANDARD.encode(proof.m()),
                resume_proof: resuming.map(|r| STANDARD.encode(resume_proof(&r.token, proof.m()))),
                after_seq: resuming.map(|_| after_seq),
            })
            .await?;
        writer.flush().await?;

        let welcome = match read_reply::<Welcome>(&mut reader).await? {
            Reply::Ok(w) => w,
            Reply::Error(e) => return Err(refusal(e, username, Stage::Verify)),
        };
        let key = proof
            .verify_server(&decode(&welcome.h_amk, "H_AMK")?)
            .map_err(|e| match e {
                SrpError::ServerNotAuthentic => ClientError::ServerNotAuthentic,
                other => protocol(other.to_string()),
            })?;
        if transport == Transport::Sealed {
            let (sealer, opener) = derive_keys(&key, Side::Client);
            writer.seal(sealer);
            reader.seal(opener);
        }
        drop(key);
        reader.set_max_line(CLIENT_MAX_LINE);

        let init = match reader.read::<ServerFrame>().await? {
            Some(ServerFrame::Event(init @ ServerEvent::Init { .. })) => init,
            Some(ServerFrame::Error(e)) => return Err(refusal(e, username, Stage::Verify)),
            Some(_) => return Err(protocol("expected the room's init frame")),
            None => {
                return Err(ClientError::ConnectionLost(
                    "closed before the room opened".into(),
                ));
            }
        };
        let ServerEvent::Init {
            messages,
            users,
            room_salt: sealed_salt,
            user_id,
            resume_token,
            complete,
        } = init
        else {
            unreachable!("matched above");
        };
        let room_salt = match transport {
            Transport::Sealed => {
                sealed_salt.ok_or_else(|| protocol("init frame without room salt"))?
            }
            Transport::Legacy => challenge
                .room_salt
                .ok_or_else(|| protocol("the server sent no room salt"))?,
        };
        let cipher = RoomCipher::from_password(&password, &decode(&room_salt, "room_salt")?);
        drop(password);
        let resume = match (user_id, resume_token) {
            (Some(user_id), Some(token)) => {
                let token: [u8; 32] = decode(&token, "resume token")?
                    .try_into()
                    .map_err(|_| protocol("the resume token is not 32 bytes"))?;
                Some(ResumeState {
                    user_id,
                    token: Key32::new(token),
                })
            }
            _ => None,
        };
        Ok(Link {
            reader,
            writer,
            cipher,
            transport,
            users,
            messages,
            resume,
            complete,
        })
    }

    /// Whether to reconnect by itself after losing a native connection (on
    /// by default). Without it, a lost connection ends the session.
    pub fn set_reconnect(&mut self, reconnect: bool) {
        self.reconnect = reconnect;
    }

    /// How long a sent message may wait for the server's receipt before it is
    /// reported failed (default [`ACK_TIMEOUT`]).
    pub fn set_ack_timeout(&mut self, timeout: Duration) {
        self.ack_timeout = timeout;
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
        let token = self.cipher.encrypt(text);
        match token::check_shape(&token) {
            Ok(()) => {}
            Err(token::TokenError::TooLong) => return Err(ClientError::MessageTooLong),
            Err(e) => return Err(ClientError::Protocol(e.to_string())),
        }
        let reference = self.next_reference;
        self.next_reference += 1;
        if let Some(broken) = &self.broken {
            let reason = format!("not sent: {}; reconnecting", broken.reason);
            self.fail(reference, Zeroizing::new(text.to_owned()), reason);
            return Ok(reference);
        }
        let native = self.transport == Transport::Sealed;
        if native {
            self.unacked.push_back(Unacked {
                reference,
                sent_at: tokio::time::Instant::now(),
                text: Zeroizing::new(text.to_owned()),
            });
        }
        let frame = ClientFrame::Message {
            text: token,
            reference: native.then_some(reference),
        };
        match self.send_frame(&frame).await {
            Ok(()) => Ok(reference),
            // The reader will notice the lost connection and reconnect.
            Err(ClientError::ConnectionLost(_)) if native && self.reconnect => Ok(reference),
            Err(e) => Err(e),
        }
    }

    /// Sends again a message reported by [`Event::SendFailed`]; returns its
    /// new reference, or `None` if that message is no longer kept.
    pub async fn resend(&mut self, reference: u64) -> Result<Option<u64>, ClientError> {
        let Some(pos) = self.failed.iter().position(|(r, _)| *r == reference) else {
            return Ok(None);
        };
        let (_, text) = self.failed.remove(pos).expect("position is valid");
        self.send(&text).await.map(Some)
    }

    /// Records a message as failed and queues the event that says so.
    fn fail(&mut self, reference: u64, text: Zeroizing<String>, reason: String) {
        if self.failed.len() >= MAX_FAILED_KEPT {
            self.failed.pop_front();
        }
        self.failed.push_back((reference, text));
        self.pending
            .push_back(Event::SendFailed { reference, reason });
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
        let id = self.private_peer(name)?;
        if text.len() > MAX_PRIVATE_TEXT_LEN {
            return Err(PrivateError::TooLong.into());
        }
        let out = self
            .private
            .send(&id, name, text, tokio::time::Instant::now())?;
        self.apply_private(out.frames, out.events)?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Asks for the safety code of the private session with `name`; it
    /// arrives as an [`Event::Verify`], after a key exchange if there was no
    /// session yet.
    pub async fn verify(&mut self, name: &str) -> Result<(), ClientError> {
        let id = self.private_peer(name)?;
        let out = self.private.verify(&id, name, tokio::time::Instant::now());
        self.apply_private(out.frames, out.events)?;
        self.writer.flush().await?;
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
        frames: Vec<Outgoing>,
        events: Vec<Event>,
    ) -> Result<(), ClientError> {
        for Outgoing { to, envelope } in frames {
            let json =
                Zeroizing::new(serde_json::to_string(&envelope).expect("envelopes serialize"));
            let body = self.cipher.encrypt(&json);
            self.writer.queue(&ClientFrame::Private { to, body })?;
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

    async fn send_frame(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.writer.write(frame).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// The next event. Cancel-safe, so it can sit in a `select!` beside input.
    ///
    /// A lost native connection is not an error here: the client reports
    /// [`Event::Reconnecting`], logs in again with backoff, takes its session
    /// over, and reports [`Event::Reconnected`] followed by exactly the
    /// messages it missed. It gives up (with [`ClientError::ConnectionLost`])
    /// after [`RECONNECT_ATTEMPTS`], or at once when the server says no.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            // Private handshake answers are queued while frames are read;
            // a flush cancelled last time finishes here.
            if self.broken.is_none()
                && self.writer.has_unsent()
                && let Err(e) = self.writer.flush().await
            {
                self.lost(e.to_string())?;
            }
            let now = tokio::time::Instant::now();
            let expired = self.private.expire(now);
            self.pending.extend(expired);
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            if self.broken.is_some() {
                if let Some(event) = self.try_reconnect().await? {
                    return Ok(event);
                }
                continue;
            }
            let silence_deadline = match self.transport {
                // Native servers ping; silence means the connection is dead.
                Transport::Sealed => Some(self.last_heard + self.silence_limit),
                Transport::Legacy => None,
            };
            // Whichever comes first: silence, a receipt overdue, a private
            // handshake's deadline.
            let deadline = [
                silence_deadline,
                self.unacked.front().map(|u| u.sent_at + self.ack_timeout),
                self.private.next_deadline(),
            ]
            .into_iter()
            .flatten()
            .min();
            let read = self.reader.read::<ServerFrame>();
            let read = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                    Ok(read) => read,
                    Err(_) => {
                        let now = tokio::time::Instant::now();
                        self.expire_unacked(now);
                        if silence_deadline.is_some_and(|d| d <= now) {
                            self.lost("the server stopped answering".into())?;
                        }
                        continue;
                    }
                },
                None => read.await,
            };
            let frame = match read {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    self.lost("the server closed the connection".into())?;
                    continue;
                }
                Err(FrameError::Io(e)) => {
                    self.lost(e.to_string())?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.last_heard = tokio::time::Instant::now();
            if let ServerFrame::Event(ServerEvent::Ping) = frame {
                if let Err(e) = self.send_frame(&ClientFrame::Pong).await {
                    self.lost(e.to_string())?;
                }
                continue;
            }
            if let Some(event) = self.apply(frame)? {
                return Ok(event);
            }
        }
    }

    /// Unconfirmed messages past [`ACK_TIMEOUT`] become failures.
    fn expire_unacked(&mut self, now: tokio::time::Instant) {
        while let Some(oldest) = self.unacked.front() {
            if oldest.sent_at + self.ack_timeout > now {
                break;
            }
            let Unacked {
                reference, text, ..
            } = self.unacked.pop_front().expect("front exists");
            self.fail(
                reference,
                text,
                "the server did not confirm it in time".into(),
            );
        }
    }

    /// The connection is gone: start reconnecting, or give up if we can't.
    fn lost(&mut self, reason: String) -> Result<(), ClientError> {
        if !self.reconnect || self.transport != Transport::Sealed || self.resume.is_none() {
            return Err(ClientError::ConnectionLost(reason));
        }
        // What was in flight may or may not have been stored: say so.
        while let Some(Unacked {
            reference, text, ..
        }) = self.unacked.pop_front()
        {
            self.fail(
                reference,
                text,
                "the connection was lost before the server confirmed it".into(),
            );
        }
        self.pending.push_back(Event::Reconnecting {
            attempt: 1,
            reason: reason.clone(),
        });
        self.broken = Some(Broken {
            reason,
            attempt: 1,
            next_try: tokio::time::Instant::now() + RECONNECT_FIRST_DELAY,
        });
        Ok(())
    }

    /// One reconnection attempt, after its backoff. `Ok(Some(event))` reports
    /// the next attempt; `Ok(None)` means back in the room (events queued).
    async fn try_reconnect(&mut self) -> Result<Option<Event>, ClientError> {
        let broken = self.broken.as_ref().expect("only called while broken");
        tokio::time::sleep_until(broken.next_try).await;
        let outcome = Self::open(&self.config, self.resume.as_ref(), self.last_seq).await;
        let link = match outcome {
            Ok(link) => link,
            Err(e) if e.is_transient() => {
                let broken = self.broken.as_mut().expect("still broken");
                if broken.attempt >= RECONNECT_ATTEMPTS {
                    return Err(ClientError::ConnectionLost(format!(
                        "{} (gave up after {} attempts to reconnect)",
                        broken.reason, broken.attempt
                    )));
                }
                broken.attempt += 1;
                let delay = RECONNECT_FIRST_DELAY
                    .saturating_mul(1 << (broken.attempt - 1).min(16))
                    .min(RECONNECT_MAX_DELAY);
                broken.next_try = tokio::time::Instant::now() + delay;
                return Ok(Some(Event::Reconnecting {
                    attempt: broken.attempt,
                    reason: e.to_string(),
                }));
            }
            Err(e) => return Err(e),
        };
        self.broken = None;
        self.reader = link.reader;
        self.writer = link.writer;
        self.cipher = link.cipher;
        self.users = link.users;
        // A new member id means the old session ended on the server (the
        // others saw us leave): private sessions with it are gone too.
        let same_member = match (&self.resume, &link.resume) {
            (Some(old), Some(new)) => old.user_id == new.user_id,
            _ => false,
        };
        if !same_member {
            self.private = PrivateChats::new(&self.config.username);
        }
        if link.resume.is_some() {
            self.resume = link.resume;
        }
        self.last_heard = tokio::time::Instant::now();
        self.pending.push_back(Event::Reconnected {
            missed: link.messages.len(),
            complete: link.complete.unwrap_or(false),
        });
        for data in link.messages {
            let event = self.message_event(data, false);
            self.pending.push_back(event);
        }
        Ok(None)
    }

    fn apply(&mut self, frame: ServerFrame) -> Result<Option<Event>, ClientError> {
        let event = match frame {
            ServerFrame::Error(e) => match e.code {
                Some(ErrorCode::ShuttingDown) => return Err(ClientError::RoomClosed),
                Some(ErrorCode::TooSlow | ErrorCode::Idle | ErrorCode::Replaced) => {
                    return Err(ClientError::Kicked(e.error));
                }
                _ if e.to.is_some() => {
                    let to = e.to.unwrap_or_default();
                    let name = self.name_of(&to).unwrap_or_else(|| "someone".into());
                    let unreachable = matches!(
                        e.code,
                        Some(ErrorCode::NoSuchUser | ErrorCode::PrivateUnsupported)
                    );
                    let events = self.private.refused(&to, &name, &e.error, unreachable);
                    self.pending.extend(events);
                    return Ok(None);
                }
                _ => match e.reference {
                    // A refusal of one of our messages: report that message failed.
                    Some(reference) => {
                        match self.unacked.iter().position(|u| u.reference == reference) {
                            Some(pos) => {
                                let unacked = self.unacked.remove(pos).expect("position is valid");
                                self.fail(reference, unacked.text, e.error);
                                return Ok(None);
                            }
                            None => Event::Error { message: e.error },
                        }
                    }
                    None => Event::Error { message: e.error },
                },
            },
            ServerFrame::Event(event) => match event {
                ServerEvent::Message { data } => self.message_event(data, false),
                ServerEvent::UserJoined { user_id, username } => {
                    self.users.retain(|u| u.user_id != user_id);
                    self.users.push(UserInfo {
                        user_id,
                        username: username.clone(),
                    });
                    Event::Joined { user: username }
                }
                ServerEvent::UserLeft { user_id } => {
                    let Some(pos) = self.users.iter().position(|u| u.user_id == user_id) else {
                        return Ok(None);
                    };
                    let user = self.users.remove(pos).username;
                    // Its keys go now; anything still waiting for it fails.
                    let failed = self.private.departed(&user_id);
                    if self.departed.len() == DEPARTED_MEMORY {
                        self.departed.pop_front();
                    }
                    self.departed.push_back((user_id, user.clone()));
                    self.pending.push_back(Event::Left { user });
                    self.pending.extend(failed);
                    return Ok(None);
                }
                ServerEvent::Cleared => Event::Cleared,
                ServerEvent::Closing { .. } => return Err(ClientError::RoomClosed),
                ServerEvent::Notice { text } => Event::Notice { message: text },
                ServerEvent::Sent { reference, seq } => {
                    self.unacked.retain(|u| u.reference != reference);
                    Event::Sent { reference, seq }
                }
                ServerEvent::Ping => return Ok(None),
                ServerEvent::Private {
                    from,
                    from_name,
                    body,
                } => {
                    self.private_frame(&from, &from_name, &body)?;
                    return Ok(None);
                }
                ServerEvent::Init { .. } => return Err(protocol("a second init frame")),
            },
        };
        Ok(Some(event))
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

    fn message_event(&mut self, mut data: MessageData, history: bool) -> Event {
        let seq = data.seq.unwrap_or_else(|| {
            self.local_seq += 1;
            self.local_seq
        });
        self.last_seq = self.last_seq.max(seq);
        let from = std::mem::take(&mut data.username);
        match self.cipher.decrypt(&data.text) {
            Ok(text) => Event::Message(ChatMessage {
                seq,
                from,
                text,
                timestamp: std::mem::take(&mut data.timestamp),
                history,
            }),
            Err(e) => Event::Error {
                message: format!("message {seq} from {from}: {e}"),
            },
        }
    }

    /// Leaves the room cleanly. Dropping the client also leaves and wipes the
    /// keys; this also tells a native server it was on purpose.
    pub async fn leave(mut self) -> Result<(), ClientError> {
        if self.transport == Transport::Sealed {
            self.writer.write(&ClientFrame::Leave).await?;
        }
        self.writer.flush().await?;
        self.writer.shutdown().await?;
        Ok(())
    }
}

async fn read_reply<T: serde::de::DeserializeOwned>(
    reader: &mut FrameReader<OwnedReadHalf>,
) -> Result<Reply<T>, ClientError> {
    match reader.read::<Reply<T>>().await? {
        Some(reply) => Ok(reply),
        None => Err(ClientError::ConnectionLost(
            "the server closed the connection during login".into(),
        )),
    }
}

fn decode(value: &str, field: &str) -> Result<Vec<u8>, ClientError> {
    STANDARD
        .decode(value.as_bytes())
        .map_err(|_| protocol(format!("the server's {field} is not valid base64")))
}
