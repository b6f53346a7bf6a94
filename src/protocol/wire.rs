//! Every JSON line cmd-chat sends or receives, as types.
//!
//! The shapes are those of cmd-chat 1.x; native peers add a `native` field to
//! `srp_init` (which the original ignores) and then wrap every later line in a
//! [`Sealed`] record of one or more frames. Unknown fields are ignored, so 1.x peers' extras pass.

use serde::{Deserialize, Serialize};

/// Version of the sealed native protocol this build speaks. 2: a sealed
/// record may hold several frames. 3: in rooms that admit native clients
/// only, a message's token holds its writer's name ([`MessagePlaintext`]).
/// 4: the proofs and the transport key are bound to a transcript of the
/// whole cleartext handshake (`protocol::handshake`), and a reconnect's
/// resume proof travels in `srp_init`.
pub const NATIVE_PROTOCOL: u32 = 4;

/// Client → server, before authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum HandshakeRequest {
    SrpInit {
        username: String,
        /// The client's public value `A`, standard base64.
        #[serde(rename = "A")]
        a: String,
        /// Present (with [`NATIVE_PROTOCOL`]) when the client wants the sealed transport.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        native: Option<u32>,
        /// Reconnecting: the `user_id` of this member's previous session, so
        /// its name, possibly still held by a connection the server has not
        /// yet seen die, can be taken over (see `resume_proof`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<String>,
        /// Reconnecting: the `room_id` of the room `resume` and `after_seq`
        /// refer to. A server restarted on the same address is another room,
        /// whose ids and sequence numbers mean nothing here: a server whose
        /// own id differs treats the login as a fresh join.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room_id: Option<String>,
        /// Reconnecting: `HMAC-SHA256(resume_token, digest of this srp_init)`,
        /// standard base64 (see `protocol::handshake`). It proves the
        /// previous session's secret without revealing it, and is bound to
        /// this login's fresh `A`, so replaying it gets nobody a login they
        /// can finish. A server checks it once `srp_init` has parsed, before
        /// the guessing guard, so a member coming back is not held to the
        /// room-wide guessing budget.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_proof: Option<String>,
    },
    SrpVerify {
        user_id: String,
        /// The client's proof `M`, standard base64.
        #[serde(rename = "M")]
        m: String,
        /// Reconnecting: the last sequence number this member saw; the
        /// history that follows `init` then holds only the messages after
        /// it (if `srp_init` named this room), and `init` says so in its
        /// own `after_seq`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_seq: Option<u64>,
    },
}

/// Server → client: the answer to `srp_init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub user_id: String,
    #[serde(rename = "B")]
    pub b: String,
    pub salt: String,
    /// Sent in clear to legacy clients only; native clients get it sealed in `init`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_salt: Option<String>,
    /// Echoes the native protocol version when the server will seal the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<u32>,
    /// Native-only rooms: how to stretch the password before SRP and the room key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf: Option<KdfSpec>,
}

/// The password stretch a native-only room uses (see `crypto::kdf`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfSpec {
    /// Always `"argon2id"`; anything else is refused by clients.
    pub alg: String,
    /// The per-room KDF salt, standard base64.
    pub salt: String,
    #[serde(flatten)]
    pub params: crate::crypto::kdf::KdfParams,
}

/// Server → client: the answer to a correct `srp_verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    #[serde(rename = "H_AMK")]
    pub h_amk: String,
    /// For cmd-chat 1.x clients, which build a Fernet from it and abort the
    /// login if that fails, then never use it: a fresh random Fernet key
    /// (standard base64 of its url-safe base64 form), unrelated to the SRP
    /// key. Never sent to native clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
}

/// A machine-readable reason that accompanies every error line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line was not a request the server understands at this point.
    BadRequest,
    /// The SRP proof was wrong: wrong password.
    AuthFailed,
    /// Another member has the name (told only to a login that proved the password).
    NameTaken,
    /// The name breaks the username rules.
    NameInvalid,
    /// The server admits native clients only.
    LegacyRefused,
    /// The room has reached its member limit.
    RoomFull,
    /// Too many logins in progress; try again shortly.
    Busy,
    /// The handshake took too long.
    Timeout,
    /// A message was refused (not a Fernet token, too long); the member stays.
    MessageRefused,
    /// The member did not read its messages fast enough and was disconnected.
    TooSlow,
    /// The server is shutting down.
    ShuttingDown,
    /// Too many messages, or too many failed logins: wait and try again.
    RateLimited,
    /// No sign of life from the member within the idle deadline.
    Idle,
    /// The member reconnected and its new connection took this one's place.
    Replaced,
    /// A private message named someone who is not in the room (any more).
    NoSuchUser,
    /// A private message to or from a cmd-chat 1.x client, which cannot take part.
    PrivateUnsupported,
    /// The room is locked and this login cannot knock: a cmd-chat 1.x client
    /// (it cannot wait to be admitted), or too many people already waiting.
    RoomLocked,
    /// The room is locked and a member turned the knock down.
    KnockDenied,
    /// The room is locked and no member answered the knock in time.
    KnockExpired,
}

/// `{"error": "...", "code": "..."}`: a refusal, in the shape 1.x clients know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// The client's reference of the message this refusal is about.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<u64>,
    /// The addressee of a refused private frame (its `user_id`), so the sender
    /// knows which conversation failed. Native only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

impl ErrorReply {
    pub fn new(code: ErrorCode, error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            code: Some(code),
            reference: None,
            to: None,
        }
    }

    /// The same refusal, about the message the client numbered `reference`.
    pub fn about_message(mut self, reference: Option<u64>) -> Self {
        self.reference = reference;
        self
    }

    /// The same refusal, about a private frame to `user_id`.
    pub fn about(mut self, user_id: impl Into<String>) -> Self {
        self.to = Some(user_id.into());
        self
    }
}

/// A reply that is either the expected value or an error line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Reply<T> {
    Error(ErrorReply),
    Ok(T),
}

/// Client → server, once a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// A message; `text` is a Fernet token made with the room key.
    Message {
        text: String,
        /// The sender's own number for this message (native only), echoed
        /// in the `sent` acknowledgement or in a refusal.
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
    },
    /// Empty the room's history for everyone.
    Clear,
    /// A clean goodbye (native only), so the server can tell it from a cut connection.
    Leave,
    /// The answer to [`ServerEvent::Ping`] (native only).
    Pong,
    /// A private frame for one member only (native only). `body` is a Fernet
    /// token under the room key around a [`PrivateEnvelope`]; the server
    /// checks its shape, relays it to `to` alone and never stores it.
    Private {
        /// The addressee's `user_id`.
        to: String,
        body: String,
    },
    /// Close the room to newcomers: from now on they knock and wait (native only).
    Lock,
    /// Open the room again; everyone still knocking is let in (native only).
    Unlock,
    /// Let a knocking newcomer in (native only).
    Admit { user: String },
    /// Turn a knocking newcomer away (native only).
    Deny { user: String },
    /// Starts sharing a file (native only). `meta` is a Fernet token of
    /// [`FileMeta`] made with the room key, so the server sees neither the
    /// name nor the hash; it sees `chunks`, which it needs to bound the
    /// transfer, and which the frame sizes reveal anyway.
    FileOffer {
        id: String,
        chunks: u32,
        meta: String,
    },
    /// One piece of a file offered before: a Fernet token of at most
    /// [`FILE_CHUNK`](super::limits::FILE_CHUNK) bytes, sent in order.
    FileChunk {
        id: String,
        index: u32,
        data: String,
    },
    /// The sender gives up on a transfer it started.
    FileCancel { id: String },
}

/// What a file offer says about the file, encrypted under the file key
/// inside [`ClientFrame::FileOffer`]: the server never sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Who offers it. Receivers take a file only from the member the server
    /// says offered it, so the server cannot pass one member's file off as
    /// another's; the chunks are bound to this description by `sha256`.
    pub from: String,
    /// The name on the sender's disk, without directories. Receivers clean it
    /// again before using it as a default file name.
    pub name: String,
    /// Bytes in the file.
    pub size: u64,
    /// SHA-256 of the contents, lower-case hex; receivers check it.
    pub sha256: String,
}

/// How a knock on a locked room ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnockOutcome {
    /// A member let the newcomer in (or unlocked the room).
    Admitted,
    /// A member turned the newcomer away.
    Denied,
    /// Nobody answered in time.
    Expired,
    /// The newcomer gave up waiting (its connection closed).
    Withdrawn,
}

/// A member as listed in `init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub user_id: String,
    pub username: String,
}

/// A stored message, as relayed and replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageData {
    pub id: String,
    /// Server-assigned, increasing; absent from cmd-chat 1.x servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The Fernet token.
    pub text: String,
    /// RFC 3339, UTC, set by the server.
    pub timestamp: String,
    pub username: String,
}

/// What a message's Fernet token holds in a room that admits native clients
/// only: the text and the name of the member who wrote it. The server never
/// holds the room key, so it can relay and store a message but cannot change
/// the name inside; a client that is told "ann" sent a token written by
/// "bob" says so instead of showing it. Rooms that admit cmd-chat 1.x
/// clients carry the text alone, as 1.x does. (The room key is shared, so
/// this binds a message to a name against the server, not against another
/// member who knows the password.)
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagePlaintext<'a> {
    #[serde(borrow)]
    pub from: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub text: std::borrow::Cow<'a, str>,
}

/// Server → client, once a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    Init {
        messages: Vec<MessageData>,
        users: Vec<UserInfo>,
        /// Native sessions only: the room salt, which never crosses the wire in clear.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room_salt: Option<String>,
        /// Native sessions only: this member's id (kept across a takeover).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
        /// Native sessions only: a random id of this room, drawn when the
        /// server starts. A reconnecting member names it in `srp_init`; a
        /// different one after a reconnect means the server was restarted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room_id: Option<String>,
        /// Native sessions only: the secret that lets this member take its
        /// session over after a lost connection. Standard base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
        /// After a reconnect: the `after_seq` the server resumed from, as
        /// it received it. `srp_verify` travels before the session is sealed,
        /// so the client checks this sealed copy against what it asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_seq: Option<u64>,
        /// After a reconnect: whether `messages` holds everything said since
        /// the member's `after_seq` (false if the history dropped some).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        complete: Option<bool>,
        /// Native sessions only: who locked the room, if it is locked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locked: Option<String>,
        /// Native sessions only: newcomers knocking right now, so a new member
        /// can answer them too.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        knocking: Vec<String>,
        /// Native sessions only: how many messages of history follow in
        /// `history` frames (`messages` is then empty). The history goes out
        /// in parts so that neither end holds all of it in one frame.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        history: Option<u64>,
        /// Native sessions only: the largest file the room relays, in bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_file_size: Option<u64>,
        /// Native sessions only: the member who let this newcomer in at a
        /// locked room (older peers ignore it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        admitted_by: Option<String>,
    },
    UserJoined {
        user_id: String,
        username: String,
    },
    UserLeft {
        user_id: String,
    },
    Message {
        data: MessageData,
    },
    /// Native sessions only: a part of the history announced by `init`,
    /// oldest first.
    History {
        messages: Vec<MessageData>,
    },
    /// Someone emptied the history; native members are told who (a 1.x
    /// client gets the 1.x line, which names nobody).
    Cleared {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// The server is going away (native only). This server says so with
    /// the error `shutting_down` instead; clients take either.
    Closing {
        reason: String,
    },
    /// Keep-alive (native only); the member answers with `pong`.
    Ping,
    /// The server stored the sender's message `reference` as `seq` (native only).
    Sent {
        #[serde(rename = "ref")]
        reference: u64,
        seq: u64,
    },
    /// Something members should know, from the server itself (native only),
    /// such as failed login attempts.
    Notice {
        text: String,
    },
    /// A private frame from another member, for us alone (native only).
    Private {
        /// The sender's `user_id`.
        from: String,
        /// The sender's name, as the server knows it.
        from_name: String,
        /// As sent: a Fernet token around a [`PrivateEnvelope`].
        body: String,
    },
    /// Sent instead of `init` to a newcomer who logged in to a locked room
    /// (native only): it waits until a member admits or denies it, or for
    /// `timeout_secs`.
    Waiting {
        locked_by: String,
        timeout_secs: u64,
    },
    /// A member locked the room (native only).
    Locked {
        by: String,
    },
    /// A member unlocked the room (native only).
    Unlocked {
        by: String,
    },
    /// A newcomer with the password is waiting to be let in (native only).
    Knock {
        user: String,
    },
    /// A knock was answered, expired or withdrawn (native only). `by` names
    /// the member who admitted or denied.
    KnockResolved {
        user: String,
        outcome: KnockOutcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Another member starts sharing a file (native only); see
    /// [`ClientFrame::FileOffer`].
    FileOffer {
        from: String,
        id: String,
        chunks: u32,
        meta: String,
    },
    /// A piece of a file (native only); see [`ClientFrame::FileChunk`].
    FileChunk {
        from: String,
        id: String,
        index: u32,
        data: String,
    },
    /// To a file's sender only: chunk `index` has been passed on and the room
    /// can take more. The server holds these back while receivers are behind,
    /// which is what paces the sender.
    FileAck {
        id: String,
        index: u32,
    },
    /// A transfer ended before its last chunk (native only): the sender left
    /// or cancelled, or this receiver fell too far behind. Receivers drop what
    /// they have of it.
    FileAborted {
        from: String,
        id: String,
        reason: String,
    },
}

/// Anything a member can receive: an event or an error line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ServerFrame {
    Error(ErrorReply),
    Event(ServerEvent),
}

impl ServerFrame {
    /// Parses a frame as its derived `Deserialize` does, taking a direct
    /// route for the frames a member receives all the time.
    ///
    /// `ServerFrame` is untagged and `ServerEvent` internally tagged, so serde
    /// buffers every frame into an intermediate tree, field by field, before
    /// it can choose a variant: a tenth of a busy client's CPU went there
    /// (BENCHMARKS.md). A message or history frame as a cmd-chat server writes
    /// it has exactly two keys, `type` first, so its second value parses
    /// straight into its one field, each message with exactly the fields a
    /// cmd-chat server writes (`ExactMessageData`). Anything else, or
    /// anything that does not parse that way, takes the derived route, so
    /// the result is the same.
    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        fn inner<'a>(text: &'a str, head: &str) -> Option<&'a str> {
            text.strip_prefix(head)?.strip_suffix('}')
        }
        if let Some(data) = inner(text, MESSAGE_HEAD)
            && let Ok(data) = serde_json::from_str::<ExactMessageData>(data)
        {
            return Ok(Self::Event(ServerEvent::Message { data: data.into() }));
        }
        if let Some(messages) = inner(text, HISTORY_HEAD)
            && let Ok(messages) = serde_json::from_str::<Vec<ExactMessageData>>(messages)
        {
            let messages = messages.into_iter().map(MessageData::from).collect();
            return Ok(Self::Event(ServerEvent::History { messages }));
        }
        serde_json::from_str(text)
    }
}

/// [`MessageData`] with no field but its own, for the direct route of
/// [`ServerFrame::from_json`]. An unknown field's value is skipped more
/// loosely than the derived route, which buffers and checks every value,
/// so a frame with one (a 1.x server's `user_ip`) takes the derived route.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExactMessageData {
    id: String,
    #[serde(default)]
    seq: Option<u64>,
    text: String,
    timestamp: String,
    username: String,
}

impl From<ExactMessageData> for MessageData {
    fn from(m: ExactMessageData) -> Self {
        Self {
            id: m.id,
            seq: m.seq,
            text: m.text,
            timestamp: m.timestamp,
            username: m.username,
        }
    }
}

/// How a server writes the start of a message frame, up to its `data`.
const MESSAGE_HEAD: &str = r#"{"type":"message","data":"#;
/// How a server writes the start of a history frame, up to its `messages`.
const HISTORY_HEAD: &str = r#"{"type":"history","messages":"#;

/// `{"sealed": base64}`: one AEAD-sealed line of a native session, holding
/// one or more newline-separated frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub sealed: String,
}

/// What a private frame's body holds once opened with the room key. The
/// public keys travel inside the room encryption, as the messages do; a
/// message's text is encrypted again with the pair's own key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PrivateEnvelope {
    /// Opens a private session: the sender's ephemeral X25519 public key,
    /// standard base64.
    Hello {
        #[serde(rename = "pub")]
        public: String,
    },
    /// Accepts one: the answerer's ephemeral public key, standard base64.
    HelloAck {
        #[serde(rename = "pub")]
        public: String,
    },
    /// A message: its number (also its nonce) and its ChaCha20-Poly1305
    /// ciphertext, standard base64.
    Msg { n: u64, ct: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(
        value: T,
        expected: serde_json::Value,
    ) {
        assert_eq!(serde_json::to_value(&value).unwrap(), expected);
        assert_eq!(serde_json::from_value::<T>(expected).unwrap(), value);
    }

    /// Lines exactly as cmd-chat 1.x writes them, from one run of its code
    /// paths with srp 1.0.22 (password "correct horse"): each is
    /// `json.dumps(d)` of a dict built with its keys in the order the 1.x
    /// client (`srp_authenticate`, `input_loop`) and server (`_handle_auth`,
    /// `_handle_chat`, `models.Message`) build it, so Python's separators
    /// `", "` and `": "`, and values of their real types and sizes: a 4-byte
    /// SRP salt, a 16-byte room salt, the `user_id` a `uuid4` string, the
    /// timestamp `datetime.now(timezone.utc).isoformat()`, and the verify
    /// reply's `session_key` the standard base64 of the url-safe base64 of K.
    mod cmd_chat_1x {
        pub const SRP_INIT: &str = r#"{"cmd": "srp_init", "username": "old", "A": "Se/NjhwxS6RyKOl5zUyZMXUdhe+refN7iUop6lgFwePG671/QIBFoBuhwF7bW49yUoGUQBbGqNsjmlcCLqrQVPQLlUYL80KZ4tXjl1aBXeWxcgCpr1YJnHi88yU40Y9TU0KOKEiZuYOP/jQWHshpfxLHxxX+T0SvDf7skbW9KFV9pyBHUbMAg6CafIyD/b60LMjXNwFFcxNPKSr+xmOkHqkNmBSdizn7KP5jDXahzAVAUhcBarsMZY1Hi3jHUwBY/aEVGswhsHga2jp5B9W58ClPX9zEy2EYkXOAAuDCJMOU5l8CwqWWnQFJ1xN0mfn7bIWiaYOR9qsDgODQIZkIOw=="}"#;
        pub const CHALLENGE: &str = r#"{"user_id": "85a6eb10-025f-4895-a3ed-f4ea93ed8457", "B": "UInXimJOjByI5dBg/Fl/ysMn0xuV1luz9z7RF6KA9rea5gJp5WDq58Ny0akXDYQjcJTqG4CYuYTgf50G31nR2MNqDZbEFHrOFe4VHc4ppV8EXSKjuG0g/z8Ci7lOUxU8NP/qAjNfhMOxnGA9ds0G/ejcIqmWuuFfVSSJgwg/KEmIhzevpQHbRZYSZRCc3WZjGN+qyGGsL4HNC1veqNNefba0Et/CGQG5jSMoFbna+9MwQHua41cWINu2n40QGVWWGDK28DQ5L4iQ7H9P+ttJ4URh57/YSiN+0IoYTxNENEQWxZeX22xTc6wRHBSKs+FAekMHgU+ustrWIBgTljJy6g==", "salt": "t7gXBw==", "room_salt": "G+GSFVW+3XMoWYC+Lg1qMg=="}"#;
        pub const SRP_VERIFY: &str = r#"{"cmd": "srp_verify", "user_id": "85a6eb10-025f-4895-a3ed-f4ea93ed8457", "M": "sNu2W2TEqK21pOcH7BNw5qiZN4+K9ZxaD+JH51X8Pk4="}"#;
        pub const WELCOME: &str = r#"{"H_AMK": "4U0GL7HxeK/BULl0zSvCw2//bcYXufsI6e3YDX7A3uM=", "session_key": "cWxRbUlGVjNzanBsbzBjTGdNc1hXTjk1cGhLV0dfdGZhSEN0MWFnY3UwVT0="}"#;
        /// The server's refusal of a wrong proof (`SRPAuthManager.verify_auth`).
        pub const WRONG_PASSWORD: &str = r#"{"error": "Authentication failed"}"#;
        pub const SEND: &str = r#"{"type": "message", "text": "gAAAAABrE9WlEPJbv3RQplFU6FBGav1C9zxl_NZ7Qt7Y4QDYZEX45lWKBrT19zt4UE492GO_Cvy2fvfO0NlQ-57v-8oIjJMaKw=="}"#;
        pub const INIT: &str = r#"{"type": "init", "messages": [{"id": "d8236cfa-b6f7-4009-8d63-3cb38d3f91fd", "text": "gAAAAABrE9WlEPJbv3RQplFU6FBGav1C9zxl_NZ7Qt7Y4QDYZEX45lWKBrT19zt4UE492GO_Cvy2fvfO0NlQ-57v-8oIjJMaKw==", "timestamp": "2026-12-05T09:13:09.363828+00:00", "user_ip": "127.0.0.1", "username": "old"}], "users": [{"user_id": "85a6eb10-025f-4895-a3ed-f4ea93ed8457", "username": "old"}]}"#;
        pub const MESSAGE: &str = r#"{"type": "message", "data": {"id": "d8236cfa-b6f7-4009-8d63-3cb38d3f91fd", "text": "gAAAAABrE9WlEPJbv3RQplFU6FBGav1C9zxl_NZ7Qt7Y4QDYZEX45lWKBrT19zt4UE492GO_Cvy2fvfO0NlQ-57v-8oIjJMaKw==", "timestamp": "2026-12-05T09:13:09.363828+00:00", "user_ip": "127.0.0.1", "username": "old"}}"#;
        pub const USER_JOINED: &str = r#"{"type": "user_joined", "user_id": "85a6eb10-025f-4895-a3ed-f4ea93ed8457", "username": "old"}"#;
        pub const USER_LEFT: &str =
            r#"{"type": "user_left", "user_id": "85a6eb10-025f-4895-a3ed-f4ea93ed8457"}"#;
        pub const CLEARED: &str = r#"{"type": "cleared"}"#;
        pub const USER_ID: &str = "85a6eb10-025f-4895-a3ed-f4ea93ed8457";
        pub const TOKEN: &str = "gAAAAABrE9WlEPJbv3RQplFU6FBGav1C9zxl_NZ7Qt7Y4QDYZEX45lWKBrT19zt4UE492GO_Cvy2fvfO0NlQ-57v-8oIjJMaKw==";
    }

    /// A line as Python's `json.dumps` spaces it: what `serde_json` writes,
    /// with a space after every `,` and `:` outside strings. (The lines
    /// compared here are ASCII, so `ensure_ascii` changes nothing.)
    fn python_spacing(compact: &str) -> String {
        let mut out = String::with_capacity(compact.len() + compact.len() / 8);
        let (mut in_string, mut escaped) = (false, false);
        for c in compact.chars() {
            out.push(c);
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
            } else if c == '"' {
                in_string = true;
            } else if c == ',' || c == ':' {
                out.push(' ');
            }
        }
        out
    }

    /// Parses a 1.x line into `T`, and checks that `T` writes it back byte
    /// for byte as 1.x wrote it (same keys, same order, same types).
    fn same_as_1x<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(
        line: &str,
        expected: T,
    ) {
        assert_eq!(serde_json::from_str::<T>(line).unwrap(), expected, "{line}");
        assert_eq!(
            python_spacing(&serde_json::to_string(&expected).unwrap()),
            line
        );
    }

    #[test]
    fn python_spacing_leaves_strings_alone() {
        assert_eq!(
            python_spacing(r#"{"a":"x, y: \"z,\" \\","b":[1,{"c":null}]}"#),
            r#"{"a": "x, y: \"z,\" \\", "b": [1, {"c": null}]}"#
        );
    }

    #[test]
    fn handshake_lines_match_cmd_chat_1x() {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        use cmd_chat_1x::*;

        let a = "Se/NjhwxS6RyKOl5zUyZMXUdhe+refN7iUop6lgFwePG671/QIBFoBuhwF7bW49yUoGUQBbGqNsjmlcCLqrQVPQLlUYL80KZ4tXjl1aBXeWxcgCpr1YJnHi88yU40Y9TU0KOKEiZuYOP/jQWHshpfxLHxxX+T0SvDf7skbW9KFV9pyBHUbMAg6CafIyD/b60LMjXNwFFcxNPKSr+xmOkHqkNmBSdizn7KP5jDXahzAVAUhcBarsMZY1Hi3jHUwBY/aEVGswhsHga2jp5B9W58ClPX9zEy2EYkXOAAuDCJMOU5l8CwqWWnQFJ1xN0mfn7bIWiaYOR9qsDgODQIZkIOw==";
        same_as_1x(
            SRP_INIT,
            HandshakeRequest::SrpInit {
                username: "old".into(),
                a: a.into(),
                native: None,
                resume: None,
                room_id: None,
                resume_proof: None,
            },
        );
        same_as_1x(
            SRP_VERIFY,
            HandshakeRequest::SrpVerify {
                user_id: USER_ID.into(),
                m: "sNu2W2TEqK21pOcH7BNw5qiZN4+K9ZxaD+JH51X8Pk4=".into(),
                after_seq: None,
            },
        );
        let challenge = Challenge {
            user_id: USER_ID.into(),
            b: serde_json::from_str::<serde_json::Value>(CHALLENGE).unwrap()["B"]
                .as_str()
                .unwrap()
                .into(),
            salt: "t7gXBw==".into(),
            room_salt: Some("G+GSFVW+3XMoWYC+Lg1qMg==".into()),
            native: None,
            kdf: None,
        };
        same_as_1x(CHALLENGE, challenge.clone());
        assert_eq!(
            serde_json::from_str::<Reply<Challenge>>(CHALLENGE).unwrap(),
            Reply::Ok(challenge)
        );
        let welcome = Welcome {
            h_amk: "4U0GL7HxeK/BULl0zSvCw2//bcYXufsI6e3YDX7A3uM=".into(),
            session_key: Some(
                "cWxRbUlGVjNzanBsbzBjTGdNc1hXTjk1cGhLV0dfdGZhSEN0MWFnY3UwVT0=".into(),
            ),
        };
        same_as_1x(WELCOME, welcome.clone());
        assert_eq!(
            serde_json::from_str::<Reply<Welcome>>(WELCOME).unwrap(),
            Reply::Ok(welcome.clone())
        );
        // What the 1.x client makes of it: `Fernet(base64.b64decode(session_key))`,
        // which takes the url-safe base64 of exactly 32 bytes and nothing else.
        let fernet_key = STANDARD.decode(welcome.session_key.unwrap()).unwrap();
        assert_eq!(URL_SAFE.decode(&fernet_key).unwrap().len(), 32);
        // A refusal has no code from 1.x; ours adds one, which 1.x ignores.
        same_as_1x(
            WRONG_PASSWORD,
            ErrorReply {
                error: "Authentication failed".into(),
                code: None,
                reference: None,
                to: None,
            },
        );
        assert!(matches!(
            serde_json::from_str::<Reply<Welcome>>(WRONG_PASSWORD).unwrap(),
            Reply::Error(ErrorReply { code: None, .. })
        ));
    }

    #[test]
    fn events_match_cmd_chat_1x() {
        use cmd_chat_1x::*;

        same_as_1x(
            SEND,
            ClientFrame::Message {
                text: TOKEN.into(),
                reference: None,
            },
        );
        let data = MessageData {
            id: "d8236cfa-b6f7-4009-8d63-3cb38d3f91fd".into(),
            seq: None,
            text: TOKEN.into(),
            timestamp: "2026-12-05T09:13:09.363828+00:00".into(),
            username: "old".into(),
        };
        let user = UserInfo {
            user_id: USER_ID.into(),
            username: "old".into(),
        };
        // 1.x servers write the sender's address into every message; we read
        // past it, and our own server never writes it.
        let without_ip = |line: &str| line.replace(r#", "user_ip": "127.0.0.1""#, "");
        let message = ServerEvent::Message { data: data.clone() };
        for parsed in [
            ServerFrame::from_json(MESSAGE).unwrap(),
            serde_json::from_str::<ServerFrame>(MESSAGE).unwrap(),
        ] {
            assert_eq!(parsed, ServerFrame::Event(message.clone()));
        }
        same_as_1x(&without_ip(MESSAGE), message);
        let init = ServerEvent::Init {
            messages: vec![data],
            users: vec![user.clone()],
            room_salt: None,
            user_id: None,
            room_id: None,
            resume_token: None,
            after_seq: None,
            complete: None,
            locked: None,
            knocking: vec![],
            history: None,
            max_file_size: None,
            admitted_by: None,
        };
        assert_eq!(
            serde_json::from_str::<ServerFrame>(INIT).unwrap(),
            ServerFrame::Event(init.clone())
        );
        same_as_1x(&without_ip(INIT), init);
        same_as_1x(
            USER_JOINED,
            ServerEvent::UserJoined {
                user_id: user.user_id.clone(),
                username: user.username,
            },
        );
        same_as_1x(
            USER_LEFT,
            ServerEvent::UserLeft {
                user_id: user.user_id,
            },
        );
        same_as_1x(CLEARED, ServerEvent::Cleared { by: None });
        // The 1.x client never sends `clear`, but the 1.x server takes this line.
        same_as_1x(r#"{"type": "clear"}"#, ClientFrame::Clear);
    }

    /// What native peers add to the 1.x shapes (not written by 1.x).
    #[test]
    fn native_extras_round_trip() {
        round_trip(
            HandshakeRequest::SrpInit {
                username: "ann".into(),
                a: "QQ==".into(),
                native: Some(1),
                resume: Some("u1".into()),
                room_id: Some("r1".into()),
                resume_proof: Some("UA==".into()),
            },
            json!({"cmd": "srp_init", "username": "ann", "A": "QQ==", "native": 1,
                   "resume": "u1", "room_id": "r1", "resume_proof": "UA=="}),
        );
        round_trip(
            HandshakeRequest::SrpVerify {
                user_id: "u1".into(),
                m: "TQ==".into(),
                after_seq: Some(5),
            },
            json!({"cmd": "srp_verify", "user_id": "u1", "M": "TQ==", "after_seq": 5}),
        );
        round_trip(
            Welcome {
                h_amk: "SA==".into(),
                session_key: None,
            },
            json!({"H_AMK": "SA=="}),
        );
        round_trip(
            ServerEvent::Message {
                data: MessageData {
                    id: "7".into(),
                    seq: Some(7),
                    text: "gAAA".into(),
                    timestamp: "2026-01-01T00:00:00.000Z".into(),
                    username: "ann".into(),
                },
            },
            json!({"type": "message", "data": {"id": "7", "seq": 7, "text": "gAAA",
                   "timestamp": "2026-01-01T00:00:00.000Z", "username": "ann"}}),
        );
        round_trip(ServerEvent::Ping, json!({"type": "ping"}));
        round_trip(ClientFrame::Pong, json!({"type": "pong"}));
        round_trip(
            Challenge {
                user_id: "u".into(),
                b: "Qg==".into(),
                salt: "cw==".into(),
                room_salt: None,
                native: Some(1),
                kdf: Some(KdfSpec {
                    alg: "argon2id".into(),
                    salt: "a2Rm".into(),
                    params: crate::crypto::kdf::KdfParams {
                        m_kib: 65536,
                        t: 3,
                        p: 1,
                    },
                }),
            },
            json!({"user_id": "u", "B": "Qg==", "salt": "cw==", "native": 1,
                   "kdf": {"alg": "argon2id", "salt": "a2Rm", "m_kib": 65536, "t": 3, "p": 1}}),
        );
        round_trip(
            ClientFrame::Message {
                text: "gAAA".into(),
                reference: Some(4),
            },
            json!({"type": "message", "text": "gAAA", "ref": 4}),
        );
        round_trip(
            ServerEvent::Sent {
                reference: 4,
                seq: 9,
            },
            json!({"type": "sent", "ref": 4, "seq": 9}),
        );
    }

    #[test]
    fn private_frames() {
        round_trip(
            ClientFrame::Private {
                to: "u2".into(),
                body: "gAAA".into(),
            },
            json!({"type": "private", "to": "u2", "body": "gAAA"}),
        );
        round_trip(
            ServerEvent::Private {
                from: "u1".into(),
                from_name: "ann".into(),
                body: "gAAA".into(),
            },
            json!({"type": "private", "from": "u1", "from_name": "ann", "body": "gAAA"}),
        );
        round_trip(
            PrivateEnvelope::Hello {
                public: "cHVi".into(),
            },
            json!({"kind": "hello", "pub": "cHVi"}),
        );
        round_trip(
            PrivateEnvelope::HelloAck {
                public: "cHVi".into(),
            },
            json!({"kind": "hello_ack", "pub": "cHVi"}),
        );
        round_trip(
            PrivateEnvelope::Msg {
                n: 3,
                ct: "Y3Q=".into(),
            },
            json!({"kind": "msg", "n": 3, "ct": "Y3Q="}),
        );
        round_trip(
            ErrorReply::new(ErrorCode::NoSuchUser, "gone").about("u2"),
            json!({"error": "gone", "code": "no_such_user", "to": "u2"}),
        );
    }

    #[test]
    fn lock_and_knock_frames() {
        round_trip(ClientFrame::Lock, json!({"type": "lock"}));
        round_trip(ClientFrame::Unlock, json!({"type": "unlock"}));
        round_trip(
            ClientFrame::Admit { user: "cat".into() },
            json!({"type": "admit", "user": "cat"}),
        );
        round_trip(
            ClientFrame::Deny { user: "cat".into() },
            json!({"type": "deny", "user": "cat"}),
        );
        round_trip(
            ServerEvent::Waiting {
                locked_by: "ann".into(),
                timeout_secs: 120,
            },
            json!({"type": "waiting", "locked_by": "ann", "timeout_secs": 120}),
        );
        round_trip(
            ServerEvent::Cleared {
                by: Some("ann".into()),
            },
            json!({"type": "cleared", "by": "ann"}),
        );
        round_trip(
            ServerEvent::Locked { by: "ann".into() },
            json!({"type": "locked", "by": "ann"}),
        );
        round_trip(
            ServerEvent::Unlocked { by: "ann".into() },
            json!({"type": "unlocked", "by": "ann"}),
        );
        round_trip(
            ServerEvent::Knock { user: "cat".into() },
            json!({"type": "knock", "user": "cat"}),
        );
        round_trip(
            ServerEvent::KnockResolved {
                user: "cat".into(),
                outcome: KnockOutcome::Admitted,
                by: Some("ann".into()),
            },
            json!({"type": "knock_resolved", "user": "cat", "outcome": "admitted", "by": "ann"}),
        );
        round_trip(
            ServerEvent::KnockResolved {
                user: "cat".into(),
                outcome: KnockOutcome::Expired,
                by: None,
            },
            json!({"type": "knock_resolved", "user": "cat", "outcome": "expired"}),
        );
        round_trip(
            ServerEvent::Init {
                messages: vec![],
                users: vec![],
                room_salt: Some("cg==".into()),
                user_id: None,
                room_id: None,
                resume_token: None,
                after_seq: None,
                complete: None,
                locked: Some("ann".into()),
                knocking: vec!["cat".into()],
                max_file_size: Some(5 << 20),
                history: Some(3),
                admitted_by: Some("ann".into()),
            },
            json!({"type": "init", "messages": [], "users": [], "room_salt": "cg==",
                   "locked": "ann", "knocking": ["cat"], "max_file_size": 5_242_880,
                   "history": 3, "admitted_by": "ann"}),
        );
        round_trip(
            ServerEvent::History { messages: vec![] },
            json!({"type": "history", "messages": []}),
        );
        // A 1.x-shaped init has none of the native extras.
        let init: ServerEvent =
            serde_json::from_value(json!({"type": "init", "messages": [], "users": []})).unwrap();
        assert!(matches!(
            init,
            ServerEvent::Init { locked: None, ref knocking, max_file_size: None, .. } if knocking.is_empty()
        ));
    }

    #[test]
    fn a_resumed_init_names_its_room_and_where_it_resumed() {
        round_trip(
            ServerEvent::Init {
                messages: vec![],
                users: vec![],
                room_salt: Some("cg==".into()),
                user_id: Some("u1".into()),
                room_id: Some("r1".into()),
                resume_token: Some("dA==".into()),
                after_seq: Some(7),
                complete: Some(true),
                locked: None,
                knocking: vec![],
                max_file_size: Some(1),
                history: Some(2),
                admitted_by: None,
            },
            json!({"type": "init", "messages": [], "users": [], "room_salt": "cg==",
                   "user_id": "u1", "room_id": "r1", "resume_token": "dA==", "after_seq": 7,
                   "complete": true, "max_file_size": 1, "history": 2}),
        );
    }

    #[test]
    fn file_frames() {
        round_trip(
            ClientFrame::FileOffer {
                id: "f1".into(),
                chunks: 3,
                meta: "gAAA".into(),
            },
            json!({"type": "file_offer", "id": "f1", "chunks": 3, "meta": "gAAA"}),
        );
        round_trip(
            ClientFrame::FileChunk {
                id: "f1".into(),
                index: 0,
                data: "gAAB".into(),
            },
            json!({"type": "file_chunk", "id": "f1", "index": 0, "data": "gAAB"}),
        );
        round_trip(
            ClientFrame::FileCancel { id: "f1".into() },
            json!({"type": "file_cancel", "id": "f1"}),
        );
        round_trip(
            ServerEvent::FileOffer {
                from: "ann".into(),
                id: "f1".into(),
                chunks: 3,
                meta: "gAAA".into(),
            },
            json!({"type": "file_offer", "from": "ann", "id": "f1", "chunks": 3, "meta": "gAAA"}),
        );
        round_trip(
            ServerEvent::FileChunk {
                from: "ann".into(),
                id: "f1".into(),
                index: 2,
                data: "gAAB".into(),
            },
            json!({"type": "file_chunk", "from": "ann", "id": "f1", "index": 2, "data": "gAAB"}),
        );
        round_trip(
            ServerEvent::FileAck {
                id: "f1".into(),
                index: 2,
            },
            json!({"type": "file_ack", "id": "f1", "index": 2}),
        );
        round_trip(
            ServerEvent::FileAborted {
                from: "ann".into(),
                id: "f1".into(),
                reason: "ann left".into(),
            },
            json!({"type": "file_aborted", "from": "ann", "id": "f1", "reason": "ann left"}),
        );
        round_trip(
            FileMeta {
                from: "ann".into(),
                name: "a.txt".into(),
                size: 3,
                sha256: "ab".into(),
            },
            json!({"from": "ann", "name": "a.txt", "size": 3, "sha256": "ab"}),
        );
    }

    #[test]
    fn error_lines_and_extras() {
        let frame: ServerFrame = serde_json::from_value(json!({"error": "Name taken"})).unwrap();
        assert_eq!(
            frame,
            ServerFrame::Error(ErrorReply {
                error: "Name taken".into(),
                code: None,
                reference: None,
                to: None,
            })
        );
        // A 1.x server's message carries `user_ip`, which is ignored.
        let frame: ServerFrame = serde_json::from_value(json!({"type": "message", "data": {
            "id": "x", "text": "t", "timestamp": "now", "username": "u", "user_ip": "10.0.0.1"}}))
        .unwrap();
        assert!(matches!(
            frame,
            ServerFrame::Event(ServerEvent::Message { .. })
        ));
        let reply: Reply<Welcome> =
            serde_json::from_value(json!({"H_AMK": "SA==", "session_key": "eA=="})).unwrap();
        assert!(matches!(reply, Reply::Ok(_)));
    }

    /// The direct route of `ServerFrame::from_json` gives what the derived
    /// parser gives, for the frames it takes and for those it must leave.
    #[test]
    fn server_frames_parse_the_same_by_either_route() {
        let data = MessageData {
            id: "m1".into(),
            seq: Some(7),
            text: "gAAAAA".into(),
            timestamp: "2026-11-22T04:00:00Z".into(),
            username: "ann".into(),
        };
        let message = serde_json::to_string(&ServerEvent::Message { data: data.clone() }).unwrap();
        let history = serde_json::to_string(&ServerEvent::History {
            messages: vec![data.clone(), data],
        })
        .unwrap();
        assert!(message.starts_with(MESSAGE_HEAD) && history.starts_with(HISTORY_HEAD));
        let frames = [
            message.clone(),
            history.clone(),
            // Not how a server writes them: the derived route decides.
            message.replace(r#"}}"#, r#"},"error":"x"}"#),
            message.replace(r#""data":{"#, r#""data":{"seq":"nine","#),
            message.replace(r#"}}"#, r#"}} "#),
            format!("{message}}}"),
            history.replace("]}", "],\"x\":1}"),
            r#"{"type":"message","data":{}}"#.into(),
            r#"{"type":"message","data":"#.into(),
            r#"{"error":"Name taken"}"#.into(),
            r#"{"type":"ping"}"#.into(),
            r#"{"data":{},"type":"message"}"#.into(),
            // Values the derived route refuses in a field it does not know.
            message.replace(r#""username""#, r#""x":1e400,"username""#),
            message.replace(r#""username""#, r#""x":"\ud800","username""#),
            message.replace(
                r#""username""#,
                &format!(r#""x":{}{},"username""#, "[".repeat(200), "]".repeat(200)),
            ),
            history.replace(r#""username""#, r#""x":1e400,"username""#),
            // A 1.x server's message: known to both routes' outcome.
            message.replace(r#""username""#, r#""user_ip":"10.0.0.1","username""#),
        ];
        for frame in frames {
            let derived = serde_json::from_str::<ServerFrame>(&frame).map_err(|e| e.to_string());
            let direct = ServerFrame::from_json(&frame).map_err(|e| e.to_string());
            assert_eq!(direct, derived, "{frame}");
        }
        assert!(matches!(
            ServerFrame::from_json(&message),
            Ok(ServerFrame::Event(ServerEvent::Message { .. }))
        ));
        assert!(matches!(
            ServerFrame::from_json(&history),
            Ok(ServerFrame::Event(ServerEvent::History { messages })) if messages.len() == 2
        ));
    }
}
