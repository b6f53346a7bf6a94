//! Client errors, each with a message a person can act on and an exit code
//! scripts can rely on.

use super::files::FileError;
use crate::protocol::FrameError;
use crate::protocol::username::UsernameError;

/// Exit codes of `cmd-chat`, documented in README.
pub mod exit_code {
    /// Normal end: the person left, or the host closed the room.
    pub const OK: u8 = 0;
    /// Any other failure (for example the server could not bind its address).
    pub const FAILURE: u8 = 1;
    /// Usage error: bad arguments, missing password without a terminal.
    pub const USAGE: u8 = 2;
    /// The server could not be reached.
    pub const CANNOT_CONNECT: u8 = 3;
    /// Wrong password, a server that could not prove it knows the password
    /// (including one that cut the connection after our proof), or a login
    /// refused after too many wrong passwords.
    pub const AUTH_FAILED: u8 = 4;
    /// The username is taken or invalid.
    pub const NAME_REFUSED: u8 = 5;
    /// The server spoke something unexpected, refused us, the sealed channel
    /// broke, or someone on the network altered the login.
    pub const PROTOCOL: u8 = 6;
    /// The connection was lost after joining, or the server dropped us.
    pub const CONNECTION_LOST: u8 = 7;
    /// The room is locked and we were not let in: a member said no, nobody
    /// answered in time, or (a 1.x client) we could not knock at all.
    pub const NOT_ADMITTED: u8 = 8;
}

/// Everything that can end a client session early.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to {addr}: {}. Is the server running, and is the address and port right?",
        plain_io(source)
    )]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("wrong password for this room")]
    WrongPassword,
    #[error(
        "the server could not prove it knows the room password. If you typed it right, \
         this may not be the server you meant to reach"
    )]
    ServerNotAuthentic,
    /// Our password proof went out and the server did not answer it with
    /// its own: it cut the connection, stalled, or said something a
    /// cmd-chat server never says there. Never retried by itself.
    #[error(
        "the server could not prove it knows the room password: {0}. cmd-chat sends its \
         proof once per attempt and does not retry by itself, so a server guessing passwords \
         gets one guess; if this keeps happening, this may not be the server you meant to reach"
    )]
    ServerUnproven(String),
    /// Someone on the network changed the login: the session is abandoned
    /// before anything is said in it.
    #[error(
        "the login was altered on the network: {0}. Nothing was sent in the room; someone \
         between you and the server may be attacking this connection"
    )]
    Tampered(String),
    #[error("login refused: {0}")]
    LockedOut(String),
    #[error("the server is busy: {0}")]
    Busy(String),
    #[error("the name {0:?} is taken in this room, or looks like one that is; pick another")]
    NameTaken(String),
    #[error("invalid username: {0}")]
    InvalidUsername(#[from] UsernameError),
    #[error(
        "{0} is a cmd-chat 1.x server: the room, its member names and its ciphertext would be \
         visible to anyone on the network. Pass --allow-legacy to join anyway"
    )]
    LegacyServer(String),
    #[error("not connected: the client is reconnecting; try again in a moment")]
    Reconnecting,
    #[error("the room is full")]
    RoomFull,
    #[error("the server refused the connection: {0}")]
    Refused(String),
    /// Refused before sending; the session goes on.
    #[error(
        "that message is too long to send: about 44 KiB of text fits in one message (less if it holds many quotes, backslashes or control characters). Nothing was sent"
    )]
    MessageTooLong,
    /// A private message that could not be sent or queued; the session goes on.
    #[error(transparent)]
    Private(#[from] super::private::PrivateError),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server resumed from another point than the one asked for (or
    /// resumed a login that asked for no resume). The request travels before
    /// the session is sealed, so this is what someone on the network altering
    /// it looks like.
    #[error(
        "the server did not {asked} (it {got}): someone on the network may have altered the \
         login. Leaving rather than silently missing messages"
    )]
    ResumeAltered { asked: String, got: String },
    #[error("the connection to the server was lost: {0}")]
    ConnectionLost(String),
    #[error("the room was closed by its host")]
    RoomClosed,
    #[error("disconnected by the server: {0}")]
    Kicked(String),
    #[error("not let in: {0}")]
    NotAdmitted(String),
    /// Refused before sending; the session goes on.
    #[error("{0} needs a native cmd-chat server, and this one is cmd-chat 1.x")]
    NeedsNative(&'static str),
    /// A file could not be sent or saved; the session goes on.
    #[error(transparent)]
    File(#[from] FileError),
}

impl ClientError {
    /// Whether trying again later may work: the connection, not the server's
    /// answer, was the problem.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::ConnectionLost(_)
                | ClientError::Protocol(_)
                | ClientError::Busy(_)
        )
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        use exit_code::*;
        match self {
            ClientError::Connect { .. } | ClientError::Busy(_) => CANNOT_CONNECT,
            ClientError::WrongPassword
            | ClientError::ServerNotAuthentic
            | ClientError::ServerUnproven(_)
            | ClientError::LockedOut(_) => AUTH_FAILED,
            ClientError::NameTaken(_) | ClientError::InvalidUsername(_) => NAME_REFUSED,
            ClientError::LegacyServer(_)
            | ClientError::RoomFull
            | ClientError::Refused(_)
            | ClientError::MessageTooLong
            | ClientError::Private(_)
            | ClientError::NeedsNative(_)
            | ClientError::File(_)
            | ClientError::Protocol(_)
            | ClientError::Tampered(_)
            | ClientError::ResumeAltered { .. } => PROTOCOL,
            // The host ending the meeting is how a meeting ends.
            ClientError::RoomClosed => OK,
            ClientError::ConnectionLost(_) | ClientError::Reconnecting | ClientError::Kicked(_) => {
                CONNECTION_LOST
            }
            ClientError::NotAdmitted(_) => NOT_ADMITTED,
        }
    }
}

impl ClientError {
    /// Whether the session can go on after this error: it refused one
    /// request (a message too long, a file too large, a private message to
    /// nobody, a command a 1.x server lacks, anything while reconnecting)
    /// and the front end says so and carries on. Any other error ends it.
    pub fn is_recoverable(&self) -> bool {
        matches!(
            self,
            ClientError::MessageTooLong
                | ClientError::Reconnecting
                | ClientError::Private(_)
                | ClientError::NeedsNative(_)
                | ClientError::File(_)
        )
    }
}

/// An I/O error as a person reads it (`Connection refused`), without the
/// `(os error 111)` the standard library adds for programmers.
pub(crate) fn plain_io(e: &std::io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map_or_else(|| text.clone(), str::to_owned),
        None => text,
    }
}

/// Why a connection failed, in words: an I/O error as [`plain_io`] gives
/// it, anything else as it says itself.
pub(crate) fn frame_reason(e: &FrameError) -> String {
    match e {
        FrameError::Io(e) => plain_io(e),
        other => other.to_string(),
    }
}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => ClientError::ConnectionLost(plain_io(&e)),
            other => ClientError::Protocol(other.to_string()),
        }
    }
}
