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
use crate::crypto::srp::{ClientSession, SrpError};
use crate::crypto::transport::{Side, derive_keys};
use crate::crypto::{Password, RoomCipher};
use crate::protocol::limits::{
    CLIENT_MAX_LINE, MAX_PRIVATE_TEXT_LEN, PRE_AUTH_MAX_LINE, SERVER_SILENCE_LIMIT,
};
use crate::protocol::wire::{
    Challenge, ClientFrame, ErrorCode, ErrorReply, HandshakeRequest, MessageData, NATIVE_PROTOCOL,
    PrivateEnvelope, Reply, ServerEvent, ServerFrame, UserInfo, Welcome,
};
use crate::protocol::{FrameReader, FrameWriter, token, username};

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
    /// Wiped as soon as the room key is derived.
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
}

/// Whether the session is hidden from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Native cmd-chat: every frame after SRP is sealed.
    Sealed,
    /// cmd-chat 1.x server: frames after SRP are readable on the wire.
    Legacy,
}

/// A member of a room.
pub struct Client {
    reader: FrameReader<OwnedReadHalf>,
    writer: FrameWriter<OwnedWriteHalf>,
    cipher: RoomCipher,
    transport: Transport,
    username: String,
    server: String,
    /// Members by id, in join order.
    users: Vec<UserInfo>,
    /// Events decoded but not yet handed out (the history from `init`).
    pending: VecDeque<Event>,
    /// Messages replayed at join.
    history_count: usize,
    /// Sequence numbers for servers that send none (cmd-chat 1.x).
    local_seq: u64,
    /// When the server was last heard from; native servers ping regularly.
    last_heard: tokio::time::Instant,
    /// Private conversations, with their keys.
    private: PrivateChats,
    /// `(user_id, name)` of members who left lately, newest last.
    departed: VecDeque<(String, String)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server)
            .field("username", &self.username)
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
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&config.server)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(source)) => {
                    return Err(ClientError::Connect {
                        addr: config.server,
                        source,
                    });
                }
                Err(_) => {
                    return Err(ClientError::Connect {
                        addr: config.server,
                        source: std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
                    });
                }
            };
        let _ = stream.set_nodelay(true);
        match tokio::time::timeout(LOGIN_TIMEOUT, Self::login(stream, config)).await {
            Ok(result) => result,
            Err(_) => Err(protocol("the server did not complete the login in time")),
        }
    }

    async fn login(stream: TcpStream, config: ClientConfig) -> Result<Self, ClientError> {
        let ClientConfig {
            server,
            username,
            password,
            allow_legacy,
        } = config;
        let (read, write) = stream.into_split();
        let mut reader = FrameReader::new(read, PRE_AUTH_MAX_LINE);
        let mut writer = FrameWriter::new(write);

        let srp = ClientSession::new();
        writer
            .write(&HandshakeRequest::SrpInit {
                username: username.clone(),
                a: STANDARD.encode(srp.public()),
                native: Some(NATIVE_PROTOCOL),
            })
            .await?;
        writer.flush().await?;

        let challenge = match read_reply::<Challenge>(&mut reader).await? {
            Reply::Ok(c) => c,
            Reply::Error(e) => return Err(refusal(e, &username, Stage::Init)),
        };
        let transport = match challenge.native {
            Some(NATIVE_PROTOCOL) => Transport::Sealed,
            Some(other) => {
                return Err(protocol(format!(
                    "the server speaks native protocol {other}; upgrade cmd-chat"
                )));
            }
            None if allow_legacy => Transport::Legacy,
            None => return Err(ClientError::LegacyServer(server)),
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
        writer
            .write(&HandshakeRequest::SrpVerify {
                user_id: challenge.user_id.clone(),
                m: STANDARD.encode(proof.m()),
            })
            .await?;
        writer.flush().await?;

        let welcome = match read_reply::<Welcome>(&mut reader).await? {
            Reply::Ok(w) => w,
            Reply::Error(e) => return Err(refusal(e, &username, Stage::Verify)),
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

        let (messages, users, sealed_salt) = match reader.read::<ServerFrame>().await? {
            Some(ServerFrame::Event(ServerEvent::Init {
                messages,
                users,
                room_salt,
            })) => (messages, users, room_salt),
            Some(ServerFrame::Error(e)) => return Err(refusal(e, &username, Stage::Verify)),
            Some(_) => return Err(protocol("expected the room's init frame")),
            None => {
                return Err(ClientError::ConnectionLost(
                    "closed before the room opened".into(),
                ));
            }
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

        let username_for_private = username.clone();
        let mut client = Client {
            reader,
            writer,
            cipher,
            transport,
            username,
            server,
            users,
            pending: VecDeque::new(),
            history_count: messages.len(),
            local_seq: 0,
            last_heard: tokio::time::Instant::now(),
            private: PrivateChats::new(&username_for_private),
            departed: VecDeque::new(),
        };
        for data in messages {
            let event = client.message_event(data, true);
            client.pending.push_back(event);
        }
        Ok(client)
    }

    /// Our own name in the room.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// `host:port` of the server.
    pub fn server(&self) -> &str {
        &self.server
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

    /// Encrypts `text` with the room key and sends it. The server echoes it
    /// back to everyone, us included. [`ClientError::MessageTooLong`] leaves
    /// the session usable: nothing was sent.
    pub async fn send(&mut self, text: &str) -> Result<(), ClientError> {
        let token = self.cipher.encrypt(text);
        match token::check_shape(&token) {
            Ok(()) => {}
            Err(token::TokenError::TooLong) => return Err(ClientError::MessageTooLong),
            Err(e) => return Err(ClientError::Protocol(e.to_string())),
        }
        self.send_frame(&ClientFrame::Message { text: token }).await
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
        if name == self.username {
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
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            // Private handshake answers are queued while frames are read;
            // a flush cancelled last time finishes here.
            if self.writer.has_unsent() {
                self.writer.flush().await?;
            }
            let now = tokio::time::Instant::now();
            let expired = self.private.expire(now);
            self.pending.extend(expired);
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            let read = self.reader.read::<ServerFrame>();
            let read = match self.transport {
                // Native servers ping; silence means the connection is dead.
                // A private handshake's deadline may come first.
                Transport::Sealed => {
                    let silence = self.last_heard + SERVER_SILENCE_LIMIT;
                    let deadline = self
                        .private
                        .next_deadline()
                        .map_or(silence, |d| d.min(silence));
                    match tokio::time::timeout_at(deadline, read).await {
                        Ok(read) => read,
                        Err(_) if deadline < silence => continue,
                        Err(_) => {
                            return Err(ClientError::ConnectionLost(
                                "the server stopped answering".into(),
                            ));
                        }
                    }
                }
                Transport::Legacy => read.await,
            };
            let frame = match read {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    return Err(ClientError::ConnectionLost(
                        "the server closed the connection".into(),
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            self.last_heard = tokio::time::Instant::now();
            if let ServerFrame::Event(ServerEvent::Ping) = frame {
                self.send_frame(&ClientFrame::Pong).await?;
                continue;
            }
            if let Some(event) = self.apply(frame)? {
                return Ok(event);
            }
        }
    }

    fn apply(&mut self, frame: ServerFrame) -> Result<Option<Event>, ClientError> {
        let event = match frame {
            ServerFrame::Error(e) => match e.code {
                Some(ErrorCode::ShuttingDown) => return Err(ClientError::RoomClosed),
                Some(ErrorCode::TooSlow | ErrorCode::Idle) => {
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
                _ => Event::Error { message: e.error },
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
