//! Logging in, from the TCP connection to the room's `init`: the client's
//! side of the handshake ([`ClientHello`] and its successors do the
//! checking; this does the socket work), a wait at a locked room, and the
//! checks that the room is the one we asked for. [`open`] is what both a
//! first connection and a reconnection call; what a failed login means
//! (whether it may be retried) is [`LoginFailed`].

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::error::ClientError;
use super::event::{Transport, Waiting};
use crate::crypto::{Key32, Password, RoomCipher};
use crate::protocol::handshake::{ClientHello, HandshakeError, ResumeAsk};
use crate::protocol::limits::{
    CLIENT_MAX_LINE, DEFAULT_MAX_FILE_SIZE, MAX_FILE_SIZE_CAP, MAX_ROOM_MEMBERS, PRE_AUTH_MAX_LINE,
};
use crate::protocol::wire::{
    Challenge, ErrorCode, ErrorReply, MessageData, NATIVE_PROTOCOL, Reply, ServerEvent,
    ServerFrame, UserInfo, Welcome,
};
use crate::protocol::{FrameReader, FrameWriter};

use super::core::{
    CONNECT_TIMEOUT, ClientConfig, KNOCK_WAIT_GRACE, KNOCK_WAIT_MAX, LOGIN_TIMEOUT,
    too_many_members,
};

/// What a native server gave this session so it can be resumed.
pub(super) struct ResumeState {
    /// The session's id, which a reconnecting login names to take it over.
    pub(super) user_id: String,
    /// Proves the session is ours when we come back, so the takeover is not a
    /// password guess.
    pub(super) token: Key32,
}

/// What a reconnecting client asks the server for.
pub(super) struct ResumeRequest {
    /// The session to take over if the server still holds it.
    pub(super) session: ResumeState,
    /// The room the session and `after_seq` belong to.
    pub(super) room_id: Option<String>,
    /// The last sequence number seen in that room.
    pub(super) after_seq: u64,
}

/// Which room a connection is in. A server restarted on the same address
/// is a new room: a new id and a new room salt (so a new room key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RoomIdentity {
    /// The room's id (`None` from servers that give none, such as 1.x).
    pub(super) id: Option<String>,
    /// Base64 room salt, which the room key is derived from.
    pub(super) salt: String,
}

/// What is good for one connection only: a reconnection replaces it whole.
pub(super) struct Connection {
    /// Frames from the server, opened with this connection's keys.
    pub(super) reader: FrameReader<OwnedReadHalf>,
    /// Frames to the server, sealed with this connection's keys.
    pub(super) writer: FrameWriter<OwnedWriteHalf>,
    /// The room key, derived from the password and this login's room salt:
    /// a restarted server's salt is new, and so is its room key.
    pub(super) cipher: RoomCipher,
    /// Whether messages carry their writer's name ([`MessagePlaintext`]).
    ///
    /// [`MessagePlaintext`]: crate::protocol::wire::MessagePlaintext
    pub(super) names_inside: bool,
}

/// One live connection, after login, and what the room said at `init`.
pub(super) struct Link {
    /// The connection itself, for the client to keep.
    pub(super) conn: Connection,
    /// Whether the server is native (sealed) or cmd-chat 1.x.
    pub(super) transport: Transport,
    /// The members, in join order, ourselves included.
    pub(super) users: Vec<UserInfo>,
    /// Messages replayed in `init` (all of them from 1.x servers).
    pub(super) messages: Vec<MessageData>,
    /// Messages announced to follow in `history` frames (native servers).
    pub(super) history: u64,
    /// What a native server gave this session so it can be resumed.
    pub(super) resume: Option<ResumeState>,
    /// The room this connection is in.
    pub(super) room: RoomIdentity,
    /// After a reconnect: the `after_seq` the server says it resumed from.
    pub(super) resumed_after: Option<u64>,
    /// After a reconnect: whether `messages` is everything that was missed.
    pub(super) complete: Option<bool>,
    /// Who locked the room, if anyone.
    pub(super) locked: Option<String>,
    /// Newcomers knocking when we came in.
    pub(super) knocking: Vec<String>,
    /// The largest file the room takes, within our own cap.
    pub(super) max_file_size: u64,
    /// The member who let us in at a locked room, if one did.
    pub(super) admitted_by: Option<String>,
}

impl Link {
    /// Messages this login replays: those in `init` and those announced to
    /// follow (however large a number the server claims).
    pub(super) fn replayed(&self) -> usize {
        self.messages
            .len()
            .saturating_add(usize::try_from(self.history).unwrap_or(usize::MAX))
    }
}

/// Maps a server's refusal to the error a person should see.
pub(super) fn refusal(reply: ErrorReply, username: &str, stage: Stage) -> ClientError {
    match reply.code {
        Some(ErrorCode::AuthFailed) => ClientError::WrongPassword,
        Some(ErrorCode::NameTaken) => ClientError::NameTaken(username.to_owned()),
        Some(ErrorCode::NameInvalid) => ClientError::Refused(reply.error),
        Some(ErrorCode::RoomFull) => ClientError::RoomFull,
        Some(ErrorCode::ShuttingDown) => ClientError::RoomClosed,
        Some(ErrorCode::RateLimited) => ClientError::LockedOut(reply.error),
        Some(ErrorCode::Busy) => ClientError::Busy(reply.error),
        Some(ErrorCode::TooSlow | ErrorCode::Idle) => ClientError::Kicked(reply.error),
        Some(ErrorCode::RoomLocked | ErrorCode::KnockDenied | ErrorCode::KnockExpired) => {
            ClientError::NotAdmitted(reply.error)
        }
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
pub(super) enum Stage {
    Init,
    Verify,
}

pub(super) fn protocol(detail: impl Into<String>) -> ClientError {
    ClientError::Protocol(detail.into())
}

/// A login that passed SRP and heard the server's first frame: `init`, or
/// `waiting` at a locked room.
pub(super) struct Login {
    /// Sealed for native servers, like `writer`.
    pub(super) reader: FrameReader<OwnedReadHalf>,
    /// Where the session's frames go, sealed for native servers.
    pub(super) writer: FrameWriter<OwnedWriteHalf>,
    /// Whether the session is sealed.
    pub(super) transport: Transport,
    /// Kept (self-wiping) until the room salt arrives in `init`.
    pub(super) password: Password,
    /// A 1.x server's room salt, from its challenge.
    pub(super) legacy_room_salt: Option<String>,
    /// Whether the room admits native clients only, so its messages carry
    /// their writer's name (see [`MessagePlaintext`](crate::protocol::wire::MessagePlaintext)). Known for certain: such
    /// a room stretches the password, and a login that skipped the stretch
    /// could not have proved itself to the server nor the server to us.
    pub(super) names_inside: bool,
    /// This login's id, from the challenge: `init` must list us under it
    /// (or, taking our session over, under the session's id).
    pub(super) user_id: String,
    /// What the server said after `H_AMK`: `init`, `waiting`, or a refusal.
    pub(super) first: ServerFrame,
}

/// A login that did not go through, and whether our password proof had
/// gone out. Once it has, nothing is retried by itself: a server that is
/// guessing passwords gets one guess per attempt the person makes.
pub(super) struct LoginFailed {
    /// What went wrong, to report if nothing is retried.
    pub(super) error: ClientError,
    /// Whether the server saw our password proof: if it did, the login is not
    /// retried by itself.
    pub(super) proof_sent: bool,
}

impl LoginFailed {
    /// `error`, at the point of the login `progress` tells.
    pub(super) fn at(error: ClientError, progress: &LoginProgress) -> Self {
        match progress.get() {
            LoginProgress::STARTED => Self {
                error,
                proof_sent: false,
            },
            LoginProgress::PROOF_SENT => Self::after_proof(error),
            _ => Self::after_server_proved(error),
        }
    }

    /// `error`, once the server has proved it knows the password: what it
    /// says is what it means, and nothing is retried by itself either.
    pub(super) fn after_server_proved(error: ClientError) -> Self {
        Self {
            error,
            proof_sent: true,
        }
    }

    /// `error`, after our proof went out. A server that knows the password
    /// proves it right after our proof; one that drops us, stalls or says
    /// anything it never says there has not proved it.
    pub(super) fn after_proof(error: ClientError) -> Self {
        let error = match error {
            ClientError::Busy(_) => ClientError::ServerUnproven(
                "it answered our password proof with 'busy', which a cmd-chat server never does"
                    .into(),
            ),
            ClientError::ConnectionLost(reason) | ClientError::Protocol(reason) => {
                ClientError::ServerUnproven(reason)
            }
            other => other,
        };
        Self {
            error,
            proof_sent: true,
        }
    }
}

/// How far a login has got, which decides what its failure means: before
/// our proof, anything may be retried; between our proof and the server's,
/// a failure means the server did not prove the password; after both, the
/// server's word stands.
pub(super) struct LoginProgress(std::sync::atomic::AtomicU8);

impl LoginProgress {
    const STARTED: u8 = 0;
    const PROOF_SENT: u8 = 1;
    const SERVER_PROVED: u8 = 2;

    pub(super) fn new() -> Self {
        Self(std::sync::atomic::AtomicU8::new(Self::STARTED))
    }

    pub(super) fn get(&self) -> u8 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn set(&self, stage: u8) {
        self.0.store(stage, std::sync::atomic::Ordering::Relaxed);
    }
}

impl From<ClientError> for LoginFailed {
    /// An error before the login began (connecting).
    fn from(error: ClientError) -> Self {
        Self {
            error,
            proof_sent: false,
        }
    }
}

/// What a person is told when the client's side of the login stops.
pub(super) fn handshake_error(error: HandshakeError, config: &ClientConfig) -> ClientError {
    match error {
        HandshakeError::Refused { reply, after_proof } => refusal(
            reply,
            &config.username,
            if after_proof {
                Stage::Verify
            } else {
                Stage::Init
            },
        ),
        HandshakeError::LegacyServer => ClientError::LegacyServer(config.server.clone()),
        HandshakeError::Downgrade => ClientError::Tampered(
            "our sealed session came back offered in clear (as cmd-chat 1.x)".into(),
        ),
        HandshakeError::Version(other) => protocol(format!(
            "the server speaks native protocol {other}, this client {NATIVE_PROTOCOL}; \
             the newer of the two must be used on both ends"
        )),
        HandshakeError::Stretch(detail) => ClientError::Tampered(format!(
            "the server asks for a password stretch this client refuses: {detail}"
        )),
        HandshakeError::ServerNotAuthentic => ClientError::ServerNotAuthentic,
        HandshakeError::Protocol(detail) => protocol(detail),
    }
}

/// Opens a TCP connection to `server` (`host:port`), within
/// `CONNECT_TIMEOUT`.
pub async fn dial(server: &str) -> Result<TcpStream, ClientError> {
    let failed = |source| ClientError::Connect {
        addr: server.to_owned(),
        source,
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(failed(source)),
        Err(_) => Err(failed(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "timed out",
        ))),
    }
}

/// `stream`, if the server has neither closed it nor written to it. A
/// cmd-chat server never speaks first, so anything to read (its timeout
/// notice, or the end of the stream) means it has given up on this one.
pub(super) fn still_open(stream: TcpStream) -> Option<TcpStream> {
    let stream = stream.into_std().ok()?;
    match stream.peek(&mut [0u8; 1]) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => TcpStream::from_std(stream).ok(),
        _ => None,
    }
}

/// Opens a connection and logs in, resuming `resume` if given. At a
/// locked room it waits for a member's answer, telling `on_waiting`.
pub(super) async fn open(
    config: &ClientConfig,
    resume: Option<&ResumeRequest>,
    on_waiting: impl FnOnce(&Waiting),
) -> Result<Link, LoginFailed> {
    let stream = dial(&config.server).await?;
    open_over(stream, config, resume, on_waiting).await
}

/// [`open`] over a connection already made.
pub(super) async fn open_over(
    stream: TcpStream,
    config: &ClientConfig,
    resume: Option<&ResumeRequest>,
    on_waiting: impl FnOnce(&Waiting),
) -> Result<Link, LoginFailed> {
    let _ = stream.set_nodelay(true);
    let progress = LoginProgress::new();
    let login = login(stream, config, resume, &progress);
    let login = match tokio::time::timeout(LOGIN_TIMEOUT, login).await {
        Ok(Ok(login)) => login,
        Ok(Err(error)) => return Err(LoginFailed::at(error, &progress)),
        Err(_) => {
            let error = protocol("the server did not complete the login in time");
            return Err(LoginFailed::at(error, &progress));
        }
    };
    // Waiting at a locked room has its own deadline, outside the login's.
    let link = enter(login, &config.username, on_waiting)
        .await
        .map_err(LoginFailed::after_server_proved)?;
    // The server must have resumed exactly where we asked, back in the
    // same room, and not at all otherwise: `after_seq` went in clear, its
    // echo came sealed. (A fresh join someone gave a resume point would
    // silently lose the history before it.)
    let expected = resume
        .filter(|asked| link.room.id.is_some() && link.room.id == asked.room_id)
        .map(|asked| asked.after_seq);
    if link.resumed_after != expected {
        return Err(LoginFailed::after_proof(ClientError::ResumeAltered {
            asked: match expected {
                Some(seq) => format!("resume the session after message {seq}"),
                None => "send the whole history".into(),
            },
            got: match link.resumed_after {
                Some(seq) => format!("sent only what came after message {seq}"),
                None => "did not resume at all".into(),
            },
        }));
    }
    Ok(link)
}

/// SRP through [`ClientHello`] and its successors: this does the socket
/// work and the arithmetic off the reactor; the state machines check
/// what the server says. `progress` follows the proofs.
async fn login(
    stream: TcpStream,
    config: &ClientConfig,
    resume: Option<&ResumeRequest>,
    progress: &LoginProgress,
) -> Result<Login, ClientError> {
    let username = &config.username;
    let (read, write) = stream.into_split();
    let mut reader = FrameReader::new(read, PRE_AUTH_MAX_LINE);
    let mut writer = FrameWriter::new(write);

    let ask = resume.map(|r| ResumeAsk {
        user_id: r.session.user_id.clone(),
        room_id: r.room_id.clone(),
        token: r.session.token.clone(),
        after_seq: r.after_seq,
    });
    let (hello, init) = ClientHello::start(username, config.allow_legacy, ask);
    writer.write(&init).await?;
    writer.flush().await?;

    let challenge = read_reply::<Challenge>(&mut reader).await?;
    let respond = hello
        .read_challenge(challenge)
        .map_err(|e| handshake_error(e, config))?;
    let transport = if respond.legacy() {
        Transport::Legacy
    } else {
        Transport::Sealed
    };
    // Argon2id and SRP's exponentiations: keep them off the reactor.
    let password = config.password.clone();
    let (awaiting, verify) = tokio::task::spawn_blocking(move || respond.respond(&password))
        .await
        .map_err(|_| protocol("internal error"))?
        .map_err(|e| handshake_error(e, config))?;
    progress.set(LoginProgress::PROOF_SENT);
    writer.write(&verify).await?;
    writer.flush().await?;

    let welcome = read_reply::<Welcome>(&mut reader).await?;
    let established = awaiting
        .read_welcome(welcome)
        .map_err(|e| handshake_error(e, config))?;
    progress.set(LoginProgress::SERVER_PROVED);
    if let Some((sealer, opener)) = established.keys {
        writer.seal(sealer);
        reader.seal(opener);
    }
    reader.set_max_line(CLIENT_MAX_LINE);
    let first = read_frame(&mut reader, "closed before the room opened").await?;
    Ok(Login {
        reader,
        writer,
        transport,
        password: established.password,
        legacy_room_salt: established.legacy_room_salt,
        names_inside: established.names_inside,
        user_id: established.user_id,
        first,
    })
}

/// At a locked room: says so, and waits for a member to let us in (the
/// next frame), at most as long as the room said it would wait.
async fn wait_to_be_let_in(
    reader: &mut FrameReader<OwnedReadHalf>,
    locked_by: String,
    timeout_secs: u64,
    on_waiting: impl FnOnce(&Waiting),
) -> Result<ServerFrame, ClientError> {
    let timeout = Duration::from_secs(timeout_secs).min(KNOCK_WAIT_MAX);
    on_waiting(&Waiting { locked_by, timeout });
    let answer = read_frame(reader, "closed while we waited to be let in");
    match tokio::time::timeout(timeout + KNOCK_WAIT_GRACE, answer).await {
        Ok(frame) => frame,
        Err(_) => Err(ClientError::NotAdmitted(
            "nobody let us in to the locked room in time".into(),
        )),
    }
}

/// The member list of `init` as we must find it: not too long, no name
/// twice, and us in it as `username` with id `our_id`.
fn check_members(users: &[UserInfo], our_id: &str, username: &str) -> Result<(), ClientError> {
    if users.len() > MAX_ROOM_MEMBERS {
        return Err(too_many_members());
    }
    // Names are who members are to us (private messages and `/verify`
    // go by name): a room never has two of one name, so a list that
    // does is a server trying to speak for someone.
    let mut names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(protocol(format!(
            "the server listed two members named {}",
            pair[0]
        )));
    }
    if !users
        .iter()
        .any(|u| u.user_id == our_id && u.username == username)
    {
        return Err(ClientError::Tampered(format!(
            "the room does not list us as {username:?}: our name was changed on the way in"
        )));
    }
    Ok(())
}

/// What lets us resume this session after a lost connection, if the room
/// gave it (native rooms do).
fn resume_state(
    user_id: Option<String>,
    token: Option<String>,
) -> Result<Option<ResumeState>, ClientError> {
    let (Some(user_id), Some(token)) = (user_id, token) else {
        return Ok(None);
    };
    let token: [u8; 32] = decode(&token, "resume token")?
        .try_into()
        .map_err(|_| protocol("the resume token is not 32 bytes"))?;
    Ok(Some(ResumeState {
        user_id,
        token: Key32::new(token),
    }))
}

/// Waits at a locked room if need be, then opens the room from `init`.
async fn enter(
    login: Login,
    username: &str,
    on_waiting: impl FnOnce(&Waiting),
) -> Result<Link, ClientError> {
    let Login {
        mut reader,
        writer,
        transport,
        password,
        legacy_room_salt,
        names_inside,
        user_id: login_id,
        mut first,
    } = login;
    if let ServerFrame::Event(ServerEvent::Waiting {
        locked_by,
        timeout_secs,
    }) = first
    {
        first = wait_to_be_let_in(&mut reader, locked_by, timeout_secs, on_waiting).await?;
    }
    let ServerFrame::Event(ServerEvent::Init {
        messages,
        users,
        room_salt: sealed_salt,
        user_id,
        room_id,
        resume_token,
        after_seq: resumed_after,
        complete,
        locked,
        knocking,
        max_file_size,
        history,
        admitted_by,
    }) = first
    else {
        return Err(match first {
            ServerFrame::Error(e) => refusal(e, username, Stage::Verify),
            ServerFrame::Event(_) => protocol("expected the room's init frame"),
        });
    };
    if knocking.len() > MAX_ROOM_MEMBERS {
        return Err(too_many_members());
    }
    // We are in the room under the name we asked for and the id this
    // login was given (or, taking our session over, the session's).
    let our_id = user_id.as_deref().unwrap_or(&login_id);
    check_members(&users, our_id, username)?;
    let room_salt = match transport {
        Transport::Sealed => sealed_salt.ok_or_else(|| protocol("init frame without room salt"))?,
        Transport::Legacy => {
            legacy_room_salt.ok_or_else(|| protocol("the server sent no room salt"))?
        }
    };
    let cipher = RoomCipher::from_password(&password, &decode(&room_salt, "room_salt")?);
    drop(password);
    let resume = resume_state(user_id, resume_token)?;
    Ok(Link {
        conn: Connection {
            reader,
            writer,
            cipher,
            names_inside,
        },
        transport,
        users,
        messages,
        history: history.unwrap_or(0),
        resume,
        room: RoomIdentity {
            id: room_id,
            salt: room_salt,
        },
        resumed_after,
        complete,
        locked,
        knocking,
        max_file_size: max_file_size
            .unwrap_or(DEFAULT_MAX_FILE_SIZE)
            .min(MAX_FILE_SIZE_CAP),
        admitted_by,
    })
}

/// The next frame; the connection closing is [`ClientError::ConnectionLost`]
/// with `closed` as the reason.
pub(super) async fn read_frame(
    reader: &mut FrameReader<OwnedReadHalf>,
    closed: &str,
) -> Result<ServerFrame, ClientError> {
    match reader.read_server_frame().await? {
        Some(frame) => Ok(frame),
        None => Err(ClientError::ConnectionLost(closed.into())),
    }
}

pub(super) async fn read_reply<T: serde::de::DeserializeOwned>(
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
