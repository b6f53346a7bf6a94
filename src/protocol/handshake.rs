//! The login, as two state machines without I/O.
//!
//! ```text
//! client                                         server
//!   ClientHello::start      ── srp_init ──▶      ServerHello::read
//!   ClientHello::read_challenge ◀── challenge ── ServerHello::challenge
//!   ClientRespond::respond  ── srp_verify ─▶     ServerAwaitingProof::read_proof
//!   ClientAwaitingWelcome::read_welcome ◀── H_AMK ── welcome
//!   ═══════════════ sealed from here (native) ═══════════════
//! ```
//!
//! Each step takes the frame the peer sent and returns the frame to send
//! and the next state; the caller does the socket work, the SRP arithmetic
//! on the server's login threads, and the checks that need the room (the
//! guessing guard, the name, a resume's token). PROTOCOL.md describes the
//! same exchange for other implementations.
//!
//! # The transcript
//!
//! Everything a native login sends before sealing is hashed, field by field,
//! into a [`Transcript`] (what the client sent and received, what the server
//! received and sent), and the SRP proofs and the transport key are bound to
//! it ([`ClientProof::bind`]). Someone on the path who changes, adds or
//! removes any field (the name, the protocol version, the resume request,
//! the salts, the password stretch, the point a reconnect resumes from)
//! leaves the two ends with different transcripts, and the login fails at
//! the server's check of the client's proof, before anything beyond the
//! challenge (the login's id, `B`, the salts and the stretch's parameters)
//! has left the server. Fields neither end reads (unknown JSON
//! keys) are harmless by construction. A 1.x login has no transcript: its
//! proofs are pysrp's, which a native proof never equals, so a native login
//! cannot be passed off as a 1.x one even in a room that admits both.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::username;
use super::wire::{
    Challenge, ErrorCode, ErrorReply, HandshakeRequest, KdfSpec, NATIVE_PROTOCOL, Reply, Welcome,
};
use crate::crypto::kdf::{self, KdfParams};
use crate::crypto::resume::resume_proof;
use crate::crypto::srp::{ClientProof, ClientSession, N_LEN, SrpError};
use crate::crypto::transport::{DirectionKey, Side, derive_keys};
use crate::crypto::{Key32, Password};

/// A running hash of the fields of a native login that travel in clear.
///
/// Each field goes in as its name, whether it is present, and its value,
/// each length-prefixed, in a fixed order, so no two different handshakes
/// hash alike. Both ends hash the values as they parsed them.
#[derive(Clone)]
pub struct Transcript(Sha256);

impl Transcript {
    const LABEL: &'static [u8] = b"cmd-chat handshake transcript, native protocol 4";

    fn new() -> Self {
        let mut hash = Sha256::new();
        hash.update(Self::LABEL);
        Self(hash)
    }

    fn bytes(&mut self, name: &str, value: Option<&[u8]>) {
        self.0.update((name.len() as u64).to_be_bytes());
        self.0.update(name.as_bytes());
        match value {
            None => self.0.update([0]),
            Some(value) => {
                self.0.update([1]);
                self.0.update((value.len() as u64).to_be_bytes());
                self.0.update(value);
            }
        }
    }

    fn text(&mut self, name: &str, value: Option<&str>) {
        self.bytes(name, value.map(str::as_bytes));
    }

    fn number(&mut self, name: &str, value: Option<u64>) {
        self.bytes(name, value.map(u64::to_be_bytes).as_ref().map(|b| &b[..]));
    }

    /// `srp_init`, all but its resume proof (which is made over this).
    fn hello(&mut self, hello: &HelloFields<'_>) {
        self.text("cmd", Some("srp_init"));
        self.text("username", Some(hello.username));
        self.text("A", Some(hello.a));
        self.number("native", hello.native.map(u64::from));
        self.text("resume", hello.resume);
        self.text("room_id", hello.room_id);
    }

    fn challenge(&mut self, c: &Challenge) {
        self.text("user_id", Some(&c.user_id));
        self.text("B", Some(&c.b));
        self.text("salt", Some(&c.salt));
        self.text("room_salt", c.room_salt.as_deref());
        self.number("challenge native", c.native.map(u64::from));
        self.text("kdf alg", c.kdf.as_ref().map(|k| k.alg.as_str()));
        self.text("kdf salt", c.kdf.as_ref().map(|k| k.salt.as_str()));
        self.number(
            "kdf m_kib",
            c.kdf.as_ref().map(|k| u64::from(k.params.m_kib)),
        );
        self.number("kdf t", c.kdf.as_ref().map(|k| u64::from(k.params.t)));
        self.number("kdf p", c.kdf.as_ref().map(|k| u64::from(k.params.p)));
    }

    /// `srp_verify`, all but the proof itself.
    fn verify(&mut self, user_id: &str, after_seq: Option<u64>) {
        self.text("cmd", Some("srp_verify"));
        self.text("verify user_id", Some(user_id));
        self.number("after_seq", after_seq);
    }

    fn finish(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

/// The fields of `srp_init` the transcript and the resume proof cover.
struct HelloFields<'a> {
    username: &'a str,
    a: &'a str,
    native: Option<u32>,
    resume: Option<&'a str>,
    room_id: Option<&'a str>,
}

impl HelloFields<'_> {
    /// What a reconnecting member's resume proof is made over.
    fn digest(&self) -> [u8; 32] {
        let mut t = Transcript::new();
        t.hello(self);
        t.finish()
    }
}

fn bad_request(detail: impl Into<String>) -> ErrorReply {
    ErrorReply::new(ErrorCode::BadRequest, detail)
}

/// Standard base64 of at most `max_len` bytes, checked before decoding so a
/// huge field costs nothing.
fn decode_field(field: &str, value: &str, max_len: usize) -> Result<Vec<u8>, ErrorReply> {
    if value.len() > max_len.div_ceil(3) * 4 {
        return Err(bad_request(format!("field {field} is too long")));
    }
    STANDARD
        .decode(value.as_bytes())
        .map_err(|_| bad_request(format!("field {field} is not valid base64")))
}

// ---------------------------------------------------------------- server

/// A checked `srp_init`: the first step of the server's side.
pub struct ServerHello {
    /// The name the login asks for (valid by the username rules).
    pub username: String,
    /// A cmd-chat 1.x login: no `native` field.
    pub legacy: bool,
    /// The client's public value `A`, decoded.
    pub a: Vec<u8>,
    /// Reconnecting: the `user_id` of the session to resume (native only).
    pub resume: Option<String>,
    /// Reconnecting: the room that session was in (native only).
    pub room_id: Option<String>,
    /// Reconnecting: `HMAC(resume_token, hello digest)`, decoded.
    resume_proof: Option<Vec<u8>>,
    /// The digest the resume proof is made over.
    hello_digest: [u8; 32],
    transcript: Transcript,
}

impl ServerHello {
    /// Checks `srp_init`, in order: that it is one, the protocol version
    /// (1.x only where `allow_legacy`), the name, `A` and the resume proof.
    pub fn read(request: HandshakeRequest, allow_legacy: bool) -> Result<Self, ErrorReply> {
        let HandshakeRequest::SrpInit {
            username,
            a,
            native,
            resume,
            room_id,
            resume_proof,
        } = request
        else {
            return Err(bad_request("expected srp_init first"));
        };
        let legacy = match native {
            Some(NATIVE_PROTOCOL) => false,
            Some(other) => {
                return Err(bad_request(format!(
                    "this server speaks native protocol {NATIVE_PROTOCOL}, not {other}; upgrade cmd-chat"
                )));
            }
            None if allow_legacy => true,
            None => {
                return Err(ErrorReply::new(
                    ErrorCode::LegacyRefused,
                    "this room admits only native cmd-chat clients (the server was not started with --allow-legacy)",
                ));
            }
        };
        username::validate(&username).map_err(|e| {
            ErrorReply::new(ErrorCode::NameInvalid, format!("invalid username: {e}"))
        })?;
        let a_bytes = decode_field("A", &a, N_LEN)?;
        // 1.x clients never resume.
        let (resume, room_id, resume_proof) = if legacy {
            (None, None, None)
        } else {
            let proof = match &resume_proof {
                Some(proof) => Some(decode_field("resume_proof", proof, 32)?),
                None => None,
            };
            (resume, room_id, proof)
        };
        let fields = HelloFields {
            username: &username,
            a: &a,
            native,
            resume: resume.as_deref(),
            room_id: room_id.as_deref(),
        };
        let hello_digest = fields.digest();
        let mut transcript = Transcript::new();
        transcript.hello(&fields);
        transcript.text("resume_proof", resume_proof.as_ref().map(|_| "present"));
        if let Some(proof) = &resume_proof {
            transcript.bytes("resume_proof value", Some(proof));
        }
        Ok(Self {
            username,
            legacy,
            a: a_bytes,
            resume,
            room_id,
            resume_proof,
            hello_digest,
            transcript,
        })
    }

    /// Whether the login proved it holds the resume token `token` of the
    /// session it names (constant time). Not a password guess: a member who
    /// comes back with it is not held to the room-wide guessing budget.
    pub fn resume_proved(&self, token: &Key32) -> bool {
        let Some(proof) = &self.resume_proof else {
            return false;
        };
        resume_proof(token, &self.hello_digest)
            .as_slice()
            .ct_eq(proof)
            .into()
    }

    /// The answer to `srp_init`: `B`, the SRP salt and, for a 1.x login, the
    /// room salt in clear; for a native login the protocol version and the
    /// password stretch of a native-only room.
    pub fn challenge(
        mut self,
        user_id: String,
        b: &[u8],
        salt: &[u8],
        room_salt: &str,
        kdf: Option<&KdfSpec>,
    ) -> (ServerAwaitingProof, Challenge) {
        let challenge = Challenge {
            user_id: user_id.clone(),
            b: STANDARD.encode(b),
            salt: STANDARD.encode(salt),
            room_salt: self.legacy.then(|| room_salt.to_owned()),
            native: (!self.legacy).then_some(NATIVE_PROTOCOL),
            kdf: kdf.cloned(),
        };
        self.transcript.challenge(&challenge);
        let next = ServerAwaitingProof {
            user_id,
            legacy: self.legacy,
            transcript: self.transcript,
        };
        (next, challenge)
    }
}

/// The server's side after the challenge, waiting for `srp_verify`.
pub struct ServerAwaitingProof {
    user_id: String,
    legacy: bool,
    transcript: Transcript,
}

/// A checked `srp_verify`.
pub struct ServerProof {
    /// The client's proof, decoded.
    pub m: Vec<u8>,
    /// Reconnecting: the last sequence number the member saw.
    pub after_seq: Option<u64>,
    /// A native login's transcript, which the proof must be bound to
    /// ([`crate::crypto::srp::ServerSession::bind`]); `None` for 1.x.
    pub transcript: Option<[u8; 32]>,
}

impl ServerAwaitingProof {
    pub fn read_proof(self, request: HandshakeRequest) -> Result<ServerProof, ErrorReply> {
        let HandshakeRequest::SrpVerify {
            user_id,
            m,
            after_seq,
            ..
        } = request
        else {
            return Err(bad_request("expected srp_verify"));
        };
        if user_id != self.user_id {
            return Err(bad_request("srp_verify names another login"));
        }
        let m = decode_field("M", &m, 64)?;
        let mut transcript = self.transcript;
        transcript.verify(&user_id, after_seq);
        Ok(ServerProof {
            m,
            after_seq: if self.legacy { None } else { after_seq },
            transcript: (!self.legacy).then(|| transcript.finish()),
        })
    }
}

/// The server's answer to a correct proof. A 1.x client is also sent a
/// `session_key`: it runs `Fernet(base64.b64decode(session_key))`, so that
/// is the standard base64 of a Fernet key (the url-safe base64 of 32 bytes);
/// the bytes are fresh and random, never the SRP key, since 1.x sends it in
/// clear and never uses it after the login.
pub fn welcome(h_amk: &[u8; 32], legacy: bool) -> Welcome {
    Welcome {
        h_amk: STANDARD.encode(h_amk),
        session_key: legacy.then(|| STANDARD.encode(URL_SAFE.encode(rand::random::<[u8; 32]>()))),
    }
}

// ---------------------------------------------------------------- client

/// What a reconnecting client asks to resume.
pub struct ResumeAsk {
    /// The session to take over if the server still holds it.
    pub user_id: String,
    /// The room the session and `after_seq` belong to.
    pub room_id: Option<String>,
    /// The session's secret, from its sealed `init`.
    pub token: Key32,
    /// The last sequence number seen in that room.
    pub after_seq: u64,
}

/// Why the client's side of a login ended.
#[derive(Debug)]
pub enum HandshakeError {
    /// The server refused with an error line. `after_proof`: our proof had
    /// gone out (a cmd-chat server then only refuses a wrong proof, a taken
    /// name or a guessing lockout, never `busy`).
    Refused {
        reply: ErrorReply,
        after_proof: bool,
    },
    /// A cmd-chat 1.x server, and the client does not allow 1.x.
    LegacyServer,
    /// A session that was sealed came back offered in clear: a downgrade.
    Downgrade,
    /// A native server speaking another version.
    Version(u32),
    /// A password stretch outside [`KdfParams::CLIENT_MIN`] and
    /// [`KdfParams::CLIENT_MAX`], or not Argon2id.
    Stretch(String),
    /// `H_AMK` did not match: the server does not know the password, or
    /// something on the path changed the login.
    ServerNotAuthentic,
    /// Anything else malformed.
    Protocol(String),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused { reply, .. } => write!(f, "the server refused: {}", reply.error),
            Self::LegacyServer => f.write_str("the server speaks only cmd-chat 1.x"),
            Self::Downgrade => f.write_str("a sealed session was offered back in clear"),
            Self::Version(v) => write!(f, "the server speaks native protocol {v}"),
            Self::Stretch(detail) => write!(f, "refused password stretch: {detail}"),
            Self::ServerNotAuthentic => {
                f.write_str("the server could not prove it knows the password")
            }
            Self::Protocol(detail) => f.write_str(detail),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// What a server's reply holds, or its refusal; `after_proof`: whether our
/// proof had gone out.
fn accepted<T>(reply: Reply<T>, after_proof: bool) -> Result<T, HandshakeError> {
    match reply {
        Reply::Ok(value) => Ok(value),
        Reply::Error(reply) => Err(HandshakeError::Refused { reply, after_proof }),
    }
}

/// Everything a login may ask for besides a name, each part optional, so
/// that tools and tests can craft any `srp_init` a client could send. The
/// client itself builds it from a [`ResumeAsk`] ([`ClientHello::start`]).
#[derive(Default)]
pub struct HelloOptions {
    /// Go on with a cmd-chat 1.x server (never when `resume` is set).
    pub allow_legacy: bool,
    /// `srp_init`'s `resume`: the session to take over.
    pub resume: Option<String>,
    /// `srp_init`'s `room_id`: the room `resume` and `after_seq` refer to.
    pub room_id: Option<String>,
    /// The token to prove the session with (`resume_proof`).
    pub token: Option<Key32>,
    /// `srp_verify`'s `after_seq`: where to pick up.
    pub after_seq: Option<u64>,
    /// Log in as a cmd-chat 1.x client would: no `native` field, pysrp's
    /// proofs, nothing sealed (for tools that stand in for 1.x clients).
    pub as_1x: bool,
}

/// The client's first step: `srp_init` sent, waiting for the challenge.
pub struct ClientHello {
    srp: ClientSession,
    allow_legacy: bool,
    /// Resuming a session, which was sealed: it must stay so.
    resuming: bool,
    /// Speaking 1.x: the server must answer in 1.x.
    as_1x: bool,
    after_seq: Option<u64>,
    transcript: Transcript,
}

impl ClientHello {
    /// Starts a login as `username`: returns the state and `srp_init`. A
    /// native client always asks for the sealed transport; `allow_legacy`
    /// lets it go on with a 1.x server (never when resuming a sealed session).
    pub fn start(
        username: &str,
        allow_legacy: bool,
        resume: Option<ResumeAsk>,
    ) -> (Self, HandshakeRequest) {
        let options = match resume {
            None => HelloOptions {
                allow_legacy,
                ..HelloOptions::default()
            },
            Some(ask) => HelloOptions {
                allow_legacy,
                resume: Some(ask.user_id),
                room_id: ask.room_id,
                token: Some(ask.token),
                after_seq: Some(ask.after_seq),
                as_1x: false,
            },
        };
        Self::start_with(username, options)
    }

    /// [`ClientHello::start`] with every part of the request chosen.
    pub fn start_with(username: &str, options: HelloOptions) -> (Self, HandshakeRequest) {
        let srp = ClientSession::new();
        let a = STANDARD.encode(srp.public());
        let native = (!options.as_1x).then_some(NATIVE_PROTOCOL);
        let fields = HelloFields {
            username,
            a: &a,
            native,
            resume: options.resume.as_deref(),
            room_id: options.room_id.as_deref(),
        };
        let proof = options
            .token
            .as_ref()
            .map(|token| resume_proof(token, &fields.digest()));
        let mut transcript = Transcript::new();
        transcript.hello(&fields);
        transcript.text("resume_proof", proof.as_ref().map(|_| "present"));
        if let Some(proof) = &proof {
            transcript.bytes("resume_proof value", Some(proof));
        }
        let request = HandshakeRequest::SrpInit {
            username: username.to_owned(),
            a,
            native,
            resume_proof: proof.map(|p| STANDARD.encode(p)),
            resume: options.resume.clone(),
            room_id: options.room_id,
        };
        let hello = Self {
            srp,
            allow_legacy: options.allow_legacy,
            resuming: options.resume.is_some(),
            as_1x: options.as_1x,
            after_seq: options.after_seq,
            transcript,
        };
        (hello, request)
    }

    /// Reads the server's challenge: which protocol, and whether its
    /// password stretch is one this client accepts. Nothing secret has been
    /// sent yet, so every refusal here may be retried.
    pub fn read_challenge(self, reply: Reply<Challenge>) -> Result<ClientRespond, HandshakeError> {
        let challenge = accepted(reply, false)?;
        let legacy = match challenge.native {
            Some(_) if self.as_1x => {
                return Err(HandshakeError::Protocol(
                    "the server answered a 1.x login as native".into(),
                ));
            }
            None if self.as_1x => true,
            Some(NATIVE_PROTOCOL) => false,
            Some(other) => return Err(HandshakeError::Version(other)),
            None if self.resuming => return Err(HandshakeError::Downgrade),
            None if self.allow_legacy => true,
            None => return Err(HandshakeError::LegacyServer),
        };
        let decode = |value: &str, field: &str| {
            STANDARD.decode(value.as_bytes()).map_err(|_| {
                HandshakeError::Protocol(format!("the server's {field} is not valid base64"))
            })
        };
        let stretch = match &challenge.kdf {
            None => None,
            Some(spec) if spec.alg == "argon2id" && spec.params.within_client_limits() => {
                Some((decode(&spec.salt, "kdf salt")?, spec.params))
            }
            Some(spec) => {
                return Err(HandshakeError::Stretch(format!(
                    "{} {:?}; this client takes Argon2id from {:?} to {:?}",
                    spec.alg,
                    spec.params,
                    KdfParams::CLIENT_MIN,
                    KdfParams::CLIENT_MAX
                )));
            }
        };
        let mut transcript = self.transcript;
        transcript.challenge(&challenge);
        Ok(ClientRespond {
            srp: self.srp,
            salt: decode(&challenge.salt, "salt")?,
            b: decode(&challenge.b, "B")?,
            stretch,
            legacy,
            after_seq: self.after_seq,
            user_id: challenge.user_id,
            legacy_room_salt: challenge.room_salt.filter(|_| legacy),
            transcript,
        })
    }
}

/// The client has the challenge and has yet to prove the password.
pub struct ClientRespond {
    srp: ClientSession,
    salt: Vec<u8>,
    b: Vec<u8>,
    /// A native-only room's password stretch: its salt and parameters.
    stretch: Option<(Vec<u8>, KdfParams)>,
    legacy: bool,
    /// Resuming: where to pick up.
    after_seq: Option<u64>,
    /// This login's id, from the challenge, echoed in `srp_verify`.
    user_id: String,
    /// A 1.x server's room salt, sent in its challenge.
    legacy_room_salt: Option<String>,
    transcript: Transcript,
}

impl ClientRespond {
    /// Whether the server speaks 1.x (nothing will be sealed).
    pub fn legacy(&self) -> bool {
        self.legacy
    }

    /// Proves the password: stretches it if the room asks (Argon2id) and
    /// runs SRP. Up to a second of CPU: run it off the async reactor.
    pub fn respond(
        self,
        password: &Password,
    ) -> Result<(ClientAwaitingWelcome, HandshakeRequest), HandshakeError> {
        let password = match &self.stretch {
            None => password.clone(),
            Some((salt, params)) => kdf::stretch(password, salt, *params)
                .map_err(|e| HandshakeError::Stretch(e.to_string()))?,
        };
        self.respond_stretched(password)
    }

    /// The room's password stretch (its salt and parameters), if it has one,
    /// for a caller that keeps stretched passwords (the load generator).
    pub fn stretch(&self) -> Option<(&[u8], KdfParams)> {
        self.stretch
            .as_ref()
            .map(|(salt, params)| (&salt[..], *params))
    }

    /// [`ClientRespond::respond`] with the password already stretched as
    /// [`ClientRespond::stretch`] asks (or as typed, if it asks nothing).
    pub fn respond_stretched(
        self,
        password: Password,
    ) -> Result<(ClientAwaitingWelcome, HandshakeRequest), HandshakeError> {
        let names_inside = self.stretch.is_some();
        let proof = self
            .srp
            .respond(&password, &self.salt, &self.b)
            .map_err(|e| HandshakeError::Protocol(e.to_string()))?;
        let after_seq = if self.legacy { None } else { self.after_seq };
        let proof = if self.legacy {
            proof
        } else {
            let mut transcript = self.transcript;
            transcript.verify(&self.user_id, after_seq);
            proof.bind(&transcript.finish())
        };
        let request = HandshakeRequest::SrpVerify {
            user_id: self.user_id.clone(),
            m: STANDARD.encode(proof.m()),
            after_seq,
        };
        let next = ClientAwaitingWelcome {
            proof,
            legacy: self.legacy,
            password,
            legacy_room_salt: self.legacy_room_salt,
            names_inside,
            user_id: self.user_id,
        };
        Ok((next, request))
    }
}

/// The proof has gone out; waiting for the server's.
pub struct ClientAwaitingWelcome {
    proof: ClientProof,
    legacy: bool,
    password: Password,
    legacy_room_salt: Option<String>,
    names_inside: bool,
    user_id: String,
}

/// A login both ends proved: the keys to seal with and what the room key
/// is derived from.
pub struct Established {
    /// `(sealing, opening)` keys; `None` with a 1.x server.
    pub keys: Option<(DirectionKey, DirectionKey)>,
    /// The password as SRP and the room key use it (stretched in
    /// native-only rooms).
    pub password: Password,
    /// A 1.x server's room salt, from its challenge (native rooms send
    /// theirs sealed, in `init`).
    pub legacy_room_salt: Option<String>,
    /// Whether messages carry their writer's name: the room stretches the
    /// password, so admits native clients only (a login that skipped the
    /// stretch could not have passed SRP).
    pub names_inside: bool,
    /// This login's id, as the challenge gave it.
    pub user_id: String,
}

impl ClientAwaitingWelcome {
    /// Checks the server's proof, which authenticates the server and, for
    /// a native login, every field of the handshake.
    pub fn read_welcome(self, reply: Reply<Welcome>) -> Result<Established, HandshakeError> {
        let welcome = accepted(reply, true)?;
        let h_amk = STANDARD.decode(welcome.h_amk.as_bytes()).map_err(|_| {
            HandshakeError::Protocol("the server's H_AMK is not valid base64".into())
        })?;
        let key = self.proof.verify_server(&h_amk).map_err(|e| match e {
            SrpError::ServerNotAuthentic => HandshakeError::ServerNotAuthentic,
            other => HandshakeError::Protocol(other.to_string()),
        })?;
        Ok(Established {
            keys: (!self.legacy).then(|| derive_keys(&key, Side::Client)),
            password: self.password,
            legacy_room_salt: self.legacy_room_salt,
            names_inside: self.names_inside,
            user_id: self.user_id,
        })
    }
}

#[cfg(test)]
mod tests;
