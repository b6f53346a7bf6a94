//! The client's private conversations: one state machine per peer, kept
//! apart from the network so every transition can be tested directly.
//!
//! The first private message to a member (or `/verify`) sends a `hello` with
//! a fresh public key and queues the text; the peer answers `hello_ack` with
//! its own, both derive the pair's keys ([`crate::crypto::private`]), and the
//! queue is sent in order. Nothing typed before the handshake completes is
//! dropped: it is sent once it does, or reported as not sent if it fails.
//!
//! Both sides may send `hello` at the same moment. Neither waits for the
//! other, so there is no deadlock: the member whose name sorts first stays
//! the initiator and ignores the other's `hello`; the other answers the
//! initiator's `hello` with the key pair it had already drawn.
//!
//! Peers are keyed by `user_id`, not name: someone who leaves and comes back
//! under the same name is a new peer with new keys.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::event::{Event, PrivateMessage};
use crate::crypto::private::{KeyPair, PrivateSession, SafetyCode};
use crate::protocol::wire::PrivateEnvelope;

/// How long a `hello` may wait for its answer. The server relays it at once
/// and the peer's client answers without asking its person, so this is only
/// reached when the peer's client is gone or not answering; then the queued
/// messages are reported as not sent rather than waiting forever.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(20);

/// Private messages queued for one peer while the handshake runs. A
/// handshake is one round trip; more lines than this typed before it
/// completes means the peer is not answering. It also keeps the burst sent
/// when the handshake completes within the server's rate allowance.
pub const MAX_QUEUED: usize = 32;

/// Why a private message could not even be queued. The session goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivateError {
    #[error("no one called {0:?} is in the room; /who lists who is")]
    NoSuchUser(String),
    #[error("a private message to yourself goes nowhere")]
    ToSelf,
    #[error(
        "that private message is too long: at most {max} bytes of text fit in one. Nothing was sent",
        max = crate::protocol::limits::MAX_PRIVATE_TEXT_LEN
    )]
    TooLong,
    #[error(
        "{0} has not answered yet and {MAX_QUEUED} private messages are waiting for them; this one was not queued"
    )]
    QueueFull(String),
    #[error(
        "private messages need a native cmd-chat server; this cmd-chat 1.x server cannot relay them"
    )]
    LegacyServer,
}

/// Something the client must send: an envelope for one peer, to be wrapped
/// in the room encryption and a `private` frame.
#[derive(Debug)]
pub struct Outgoing {
    /// The addressee's `user_id`.
    pub to: String,
    /// The handshake step or sealed message for that peer alone.
    pub envelope: PrivateEnvelope,
}

/// What handling one input produced, in order.
#[derive(Debug, Default)]
pub struct Output {
    /// Envelopes to send, in order.
    pub frames: Vec<Outgoing>,
    /// What to show the person, in order.
    pub events: Vec<Event>,
}

impl Output {
    fn error(message: String) -> Self {
        Self {
            frames: Vec::new(),
            events: vec![Event::Error { message }],
        }
    }
}

/// Where the conversation with one peer stands.
enum State {
    /// We sent `hello` and wait for `hello_ack`.
    Offered {
        keys: KeyPair,
        /// Texts typed meanwhile, wiped once sent or failed.
        queue: VecDeque<Zeroizing<String>>,
        deadline: Instant,
    },
    /// Keys agreed; messages flow.
    Established(PrivateSession),
}

struct Peer {
    /// The peer's name, for events and errors.
    name: String,
    /// Whether keys are agreed yet, and what waits for them if not.
    state: State,
    /// `/verify` was asked before the session existed: show the code once it does.
    verify_wanted: bool,
}

/// Every private conversation of one member.
pub struct PrivateChats {
    /// Our own name: one half of every key derivation and the tie-break.
    me: String,
    /// By the peer's `user_id`.
    peers: HashMap<String, Peer>,
    /// Members we have had a session with, until they leave the room. A new
    /// session with one of them has a new safety code, whoever started it and
    /// whatever ended the last one (a refusal the server made up, say), so
    /// the person is told and can `/verify` again.
    had_session: HashSet<String>,
}

impl std::fmt::Debug for PrivateChats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateChats")
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

fn hello(keys: &KeyPair) -> PrivateEnvelope {
    PrivateEnvelope::Hello {
        public: STANDARD.encode(keys.public()),
    }
}

fn not_sent(count: usize, name: &str, why: &str) -> Event {
    Event::PrivateNotSent {
        to: name.to_owned(),
        count,
        reason: why.to_owned(),
    }
}

impl PrivateChats {
    pub fn new(me: &str) -> Self {
        Self {
            me: me.to_owned(),
            peers: HashMap::new(),
            had_session: HashSet::new(),
        }
    }

    /// Sends `text` to the peer `id` called `name`, or queues it behind a
    /// handshake (starting one if needed).
    pub fn send(
        &mut self,
        id: &str,
        name: &str,
        text: &str,
        now: Instant,
    ) -> Result<Output, PrivateError> {
        let mut out = Output::default();
        match self.peers.get_mut(id) {
            Some(peer) => match &mut peer.state {
                State::Established(session) => {
                    seal_into(&mut out, session, id, &self.me, name, text);
                }
                State::Offered { queue, .. } => {
                    if queue.len() >= MAX_QUEUED {
                        return Err(PrivateError::QueueFull(name.to_owned()));
                    }
                    queue.push_back(Zeroizing::new(text.to_owned()));
                }
            },
            None => {
                let mut queue = VecDeque::new();
                queue.push_back(Zeroizing::new(text.to_owned()));
                out.frames.push(self.offer(id, name, queue, false, now));
            }
        }
        Ok(out)
    }

    /// Shows the safety code for the peer, setting up a session first if
    /// there is none.
    pub fn verify(&mut self, id: &str, name: &str, now: Instant) -> Output {
        let mut out = Output::default();
        match self.peers.get_mut(id) {
            Some(Peer {
                state: State::Established(session),
                ..
            }) => out.events.push(Event::Verify {
                user: name.to_owned(),
                code: session.safety_code().to_string(),
            }),
            Some(peer) => peer.verify_wanted = true,
            None => {
                let frame = self.offer(id, name, VecDeque::new(), true, now);
                out.frames.push(frame);
            }
        }
        out
    }

    /// Starts a handshake: a new key pair, and its `hello`.
    fn offer(
        &mut self,
        id: &str,
        name: &str,
        queue: VecDeque<Zeroizing<String>>,
        verify_wanted: bool,
        now: Instant,
    ) -> Outgoing {
        let keys = KeyPair::generate();
        let envelope = hello(&keys);
        self.peers.insert(
            id.to_owned(),
            Peer {
                name: name.to_owned(),
                state: State::Offered {
                    keys,
                    queue,
                    deadline: now + HANDSHAKE_DEADLINE,
                },
                verify_wanted,
            },
        );
        Outgoing {
            to: id.to_owned(),
            envelope,
        }
    }

    /// The safety code of the session with `id`, once there is one.
    pub fn safety_code(&self, id: &str) -> Option<SafetyCode> {
        match &self.peers.get(id)?.state {
            State::Established(session) => Some(session.safety_code().clone()),
            State::Offered { .. } => None,
        }
    }

    /// Handles an envelope from the peer `id` called `name`.
    pub fn receive(&mut self, id: &str, name: &str, envelope: PrivateEnvelope) -> Output {
        match envelope {
            PrivateEnvelope::Hello { public } => self.on_hello(id, name, &public),
            PrivateEnvelope::HelloAck { public } => self.on_hello_ack(id, name, &public),
            PrivateEnvelope::Msg { n, ct } => self.on_msg(id, name, n, &ct),
        }
    }

    fn on_hello(&mut self, id: &str, name: &str, public: &str) -> Output {
        let Ok(their_public) = STANDARD.decode(public) else {
            return Output::error(format!(
                "{name} sent a private handshake with a malformed key; ignored"
            ));
        };
        let previous = self.peers.remove(id);
        let (keys, queue, verify_wanted) = match previous {
            // Both sent `hello` at once. The lower name's `hello` wins: if
            // that is ours, the peer will answer it, so theirs is ignored.
            Some(
                peer @ Peer {
                    state: State::Offered { .. },
                    ..
                },
            ) if self.me.as_str() < name => {
                self.peers.insert(id.to_owned(), peer);
                return Output::default();
            }
            // Otherwise we answer theirs, with the key pair we drew for ours.
            Some(Peer {
                state: State::Offered { keys, queue, .. },
                verify_wanted,
                ..
            }) => (keys, queue, verify_wanted),
            // A new session while one exists: the peer lost its keys (its
            // handshake timed out) or someone is replaying; either way the
            // code changes, and `establish` tells the person.
            Some(Peer {
                state: State::Established(_),
                verify_wanted,
                ..
            }) => (KeyPair::generate(), VecDeque::new(), verify_wanted),
            None => (KeyPair::generate(), VecDeque::new(), false),
        };
        let my_public = STANDARD.encode(keys.public());
        match keys.agree(&self.me, name, &their_public) {
            Ok(session) => {
                let mut out = Output::default();
                out.frames.push(Outgoing {
                    to: id.to_owned(),
                    envelope: PrivateEnvelope::HelloAck { public: my_public },
                });
                self.establish(&mut out, id, name, session, queue, verify_wanted);
                out
            }
            Err(e) => {
                let mut out = Output::error(format!(
                    "the private session with {name} could not be set up: {e}"
                ));
                if !queue.is_empty() {
                    out.events.push(not_sent(queue.len(), name, &e.to_string()));
                }
                out
            }
        }
    }

    fn on_hello_ack(&mut self, id: &str, name: &str, public: &str) -> Output {
        let Some(Peer {
            state: State::Offered { .. },
            ..
        }) = self.peers.get(id)
        else {
            return Output::error(format!(
                "{name} answered a private handshake that is not in progress; ignored"
            ));
        };
        let Some(Peer {
            state: State::Offered { keys, queue, .. },
            verify_wanted,
            ..
        }) = self.peers.remove(id)
        else {
            unreachable!("checked just above");
        };
        let agreed = STANDARD
            .decode(public)
            .map_err(|_| "a malformed key".to_owned())
            .and_then(|their| {
                keys.agree(&self.me, name, &their)
                    .map_err(|e| e.to_string())
            });
        match agreed {
            Ok(session) => {
                let mut out = Output::default();
                self.establish(&mut out, id, name, session, queue, verify_wanted);
                out
            }
            Err(why) => {
                let mut out = Output::error(format!(
                    "the private session with {name} could not be set up: {why}"
                ));
                if !queue.is_empty() {
                    out.events.push(not_sent(queue.len(), name, &why));
                }
                out
            }
        }
    }

    /// Stores a new session, sends what was queued for it, and shows the
    /// code if it was asked for.
    fn establish(
        &mut self,
        out: &mut Output,
        id: &str,
        name: &str,
        mut session: PrivateSession,
        queue: VecDeque<Zeroizing<String>>,
        verify_wanted: bool,
    ) {
        if !self.had_session.insert(id.to_owned()) {
            out.events.push(Event::Error {
                message: format!(
                    "the private session with {name} was set up again; its safety code has changed (/verify {name})"
                ),
            });
        }
        for text in queue {
            seal_into(out, &mut session, id, &self.me, name, &text);
        }
        if verify_wanted {
            out.events.push(Event::Verify {
                user: name.to_owned(),
                code: session.safety_code().to_string(),
            });
        }
        self.peers.insert(
            id.to_owned(),
            Peer {
                name: name.to_owned(),
                state: State::Established(session),
                verify_wanted: false,
            },
        );
    }

    fn on_msg(&mut self, id: &str, name: &str, n: u64, ct: &str) -> Output {
        let Some(Peer {
            state: State::Established(session),
            ..
        }) = self.peers.get_mut(id)
        else {
            return Output::error(format!(
                "a private message from {name} could not be read: there is no private session with them"
            ));
        };
        let opened = STANDARD
            .decode(ct)
            .map_err(|_| "it is not valid base64".to_owned())
            .and_then(|ct| session.open(n, &ct).map_err(|e| e.to_string()))
            .and_then(|plain| {
                String::from_utf8(plain.to_vec()).map_err(|e| {
                    let mut bytes = e.into_bytes();
                    zeroize::Zeroize::zeroize(&mut bytes);
                    "it is not UTF-8 text".to_owned()
                })
            });
        match opened {
            Ok(text) => Output {
                frames: Vec::new(),
                events: vec![Event::Private(PrivateMessage {
                    from: name.to_owned(),
                    to: self.me.clone(),
                    text,
                })],
            },
            Err(why) => Output::error(format!(
                "a private message from {name} could not be read: {why}"
            )),
        }
    }

    /// Every private session ended at once (we came back to the room as a
    /// new member, or to a new room): all keys are wiped, and whatever
    /// still waited for a session is reported as not sent.
    pub fn reset(&mut self, why: &str) -> Vec<Event> {
        let ids: Vec<String> = self.peers.keys().cloned().collect();
        let events = ids.iter().flat_map(|id| self.fail(id, why)).collect();
        *self = Self::new(&self.me);
        events
    }

    /// The peer left the room: its keys are wiped, and anything still
    /// waiting for it is reported as not sent.
    pub fn departed(&mut self, id: &str) -> Vec<Event> {
        self.had_session.remove(id);
        self.fail(
            id,
            "they left the room before the private session was set up",
        )
    }

    /// The server refused a private frame to `id`. A refusal that means the
    /// peer cannot be reached ends the conversation; otherwise only the
    /// handshake in progress fails (a lost `hello` would never be answered)
    /// or, in an established session, the one message.
    pub fn refused(&mut self, id: &str, name: &str, why: &str, unreachable: bool) -> Vec<Event> {
        // They are gone, and all that went to them in this session was
        // our answer to their handshake: nothing the person wrote was
        // lost. (A refusal names no frame, so one that leaves them
        // reachable may be of a message from an earlier session.)
        if unreachable
            && let Some(Peer {
                state: State::Established(session),
                ..
            }) = self.peers.get(id)
            && !session.sealed_any()
        {
            self.peers.remove(id);
            return Vec::new();
        }
        let established = matches!(
            self.peers.get(id),
            Some(Peer {
                state: State::Established(_),
                ..
            })
        );
        if established && !unreachable {
            return vec![Event::Error {
                message: format!("a private message to {name} was not delivered: {why}"),
            }];
        }
        let mut events = self.fail(id, why);
        if events.is_empty() {
            events.push(Event::Error {
                message: format!("a private message to {name} was not delivered: {why}"),
            });
        }
        events
    }

    /// Drops the conversation with `id`; errors for whatever was waiting.
    fn fail(&mut self, id: &str, why: &str) -> Vec<Event> {
        let Some(peer) = self.peers.remove(id) else {
            return Vec::new();
        };
        let mut events = Vec::new();
        if let State::Offered { queue, .. } = &peer.state {
            if !queue.is_empty() {
                events.push(not_sent(queue.len(), &peer.name, why));
            } else if peer.verify_wanted {
                events.push(Event::Error {
                    message: format!("no safety code for {}: {why}", peer.name),
                });
            }
        }
        events
    }

    /// Whether messages wait for a handshake. Each ends as sent or as
    /// [`Event::PrivateNotSent`], at the latest at the handshake deadline.
    pub fn queued(&self) -> bool {
        self.peers
            .values()
            .any(|p| matches!(&p.state, State::Offered { queue, .. } if !queue.is_empty()))
    }

    /// The earliest handshake deadline, for the client to wake up at.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| match &p.state {
                State::Offered { deadline, .. } => Some(*deadline),
                State::Established(_) => None,
            })
            .min()
    }

    /// Fails every handshake whose deadline has passed.
    pub fn expire(&mut self, now: Instant) -> Vec<Event> {
        let expired: Vec<(String, String)> = self
            .peers
            .iter()
            .filter(|(_, p)| matches!(p.state, State::Offered { deadline, .. } if deadline <= now))
            .map(|(id, p)| (id.clone(), p.name.clone()))
            .collect();
        let mut events = Vec::new();
        for (id, name) in expired {
            let why = format!(
                "{name} did not answer the private handshake within {} s",
                HANDSHAKE_DEADLINE.as_secs()
            );
            let failed = self.fail(&id, &why);
            if failed.is_empty() {
                events.push(Event::Error { message: why });
            } else {
                events.extend(failed);
            }
        }
        events
    }
}

/// Encrypts one text for an established session: the frame, and the event
/// that shows it was sent.
fn seal_into(
    out: &mut Output,
    session: &mut PrivateSession,
    id: &str,
    me: &str,
    name: &str,
    text: &str,
) {
    match session.seal(text.as_bytes()) {
        Ok((n, ct)) => {
            out.frames.push(Outgoing {
                to: id.to_owned(),
                envelope: PrivateEnvelope::Msg {
                    n,
                    ct: STANDARD.encode(ct),
                },
            });
            out.events.push(Event::Private(PrivateMessage {
                from: me.to_owned(),
                to: name.to_owned(),
                text: text.to_owned(),
            }));
        }
        Err(e) => out.events.push(not_sent(1, name, &e.to_string())),
    }
}

#[cfg(test)]
mod tests;
