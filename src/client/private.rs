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
    pub envelope: PrivateEnvelope,
}

/// What handling one input produced, in order.
#[derive(Debug, Default)]
pub struct Output {
    pub frames: Vec<Outgoing>,
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
mod tests {
    use super::*;

    /// Delivers every frame of `out` from `from` (`id`, `name`) to `to`, and
    /// the answers back, until both are quiet; returns the events each saw.
    fn exchange(
        a: (&mut PrivateChats, &str),
        b: (&mut PrivateChats, &str),
        first: Output,
    ) -> (Vec<Event>, Vec<Event>) {
        let (a_chats, a_id) = a;
        let (b_chats, b_id) = b;
        let mut a_events = first.events;
        let mut b_events = Vec::new();
        let mut to_b: VecDeque<Outgoing> = first.frames.into();
        let mut to_a: VecDeque<Outgoing> = VecDeque::new();
        while !to_a.is_empty() || !to_b.is_empty() {
            if let Some(frame) = to_b.pop_front() {
                assert_eq!(frame.to, b_id);
                let a_name = a_chats.me.clone();
                let out = b_chats.receive(a_id, &a_name, frame.envelope);
                b_events.extend(out.events);
                to_a.extend(out.frames);
            }
            if let Some(frame) = to_a.pop_front() {
                assert_eq!(frame.to, a_id);
                let b_name = b_chats.me.clone();
                let out = a_chats.receive(b_id, &b_name, frame.envelope);
                a_events.extend(out.events);
                to_b.extend(out.frames);
            }
        }
        (a_events, b_events)
    }

    fn texts(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Private(m) => format!("{}->{}: {}", m.from, m.to, m.text),
                Event::Verify { user, .. } => format!("verify {user}"),
                Event::Error { message } => format!("error: {message}"),
                Event::PrivateNotSent { to, count, reason } => format!(
                    "error: {}",
                    crate::client::event::private_not_sent(to, *count, reason)
                ),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn first_message_queues_behind_the_handshake() {
        let now = Instant::now();
        let mut ann = PrivateChats::new("ann");
        let mut bob = PrivateChats::new("bob");
        let mut first = ann.send("B", "bob", "one", now).unwrap();
        assert!(matches!(
            first.frames[0].envelope,
            PrivateEnvelope::Hello { .. }
        ));
        assert!(first.events.is_empty(), "nothing is sent before the keys");
        let second = ann.send("B", "bob", "two", now).unwrap();
        assert!(second.frames.is_empty());
        first.frames.extend(second.frames);
        let (a, b) = exchange((&mut ann, "A"), (&mut bob, "B"), first);
        assert_eq!(texts(&a), ["ann->bob: one", "ann->bob: two"]);
        assert_eq!(texts(&b), ["ann->bob: one", "ann->bob: two"]);
        assert_eq!(ann.safety_code("B"), bob.safety_code("A"));
        assert!(ann.safety_code("B").is_some());

        // Once established, a message goes at once, both ways.
        let out = bob.send("A", "ann", "three", now).unwrap();
        let (b, a) = exchange((&mut bob, "B"), (&mut ann, "A"), out);
        assert_eq!(texts(&b), ["bob->ann: three"]);
        assert_eq!(texts(&a), ["bob->ann: three"]);
    }

    #[test]
    fn simultaneous_hellos_settle_on_the_lower_name() {
        let now = Instant::now();
        let mut ann = PrivateChats::new("ann");
        let mut bob = PrivateChats::new("bob");
        let from_ann = ann.send("B", "bob", "a1", now).unwrap();
        ann.send("B", "bob", "a2", now).unwrap();
        let from_bob = bob.send("A", "ann", "b1", now).unwrap();
        bob.send("A", "ann", "b2", now).unwrap();
        // Both hellos cross in flight.
        let [
            Outgoing {
                envelope: ann_hello,
                ..
            },
        ] = <[Outgoing; 1]>::try_from(from_ann.frames).unwrap();
        let [
            Outgoing {
                envelope: bob_hello,
                ..
            },
        ] = <[Outgoing; 1]>::try_from(from_bob.frames).unwrap();
        let at_ann = ann.receive("B", "bob", bob_hello);
        assert!(
            at_ann.frames.is_empty() && at_ann.events.is_empty(),
            "ann initiates: ignores bob's hello"
        );
        let at_bob = bob.receive("A", "ann", ann_hello);
        // Bob answers with the key he drew, then sends his queue.
        assert!(matches!(
            at_bob.frames[0].envelope,
            PrivateEnvelope::HelloAck { .. }
        ));
        assert_eq!(texts(&at_bob.events), ["bob->ann: b1", "bob->ann: b2"]);
        let mut to_ann = at_bob.frames.into_iter();
        let ack = to_ann.next().unwrap();
        let after_ack = ann.receive("B", "bob", ack.envelope);
        assert_eq!(texts(&after_ack.events), ["ann->bob: a1", "ann->bob: a2"]);
        let mut seen_by_ann = Vec::new();
        for frame in to_ann {
            seen_by_ann.extend(ann.receive("B", "bob", frame.envelope).events);
        }
        assert_eq!(texts(&seen_by_ann), ["bob->ann: b1", "bob->ann: b2"]);
        let mut seen_by_bob = Vec::new();
        for frame in after_ack.frames {
            seen_by_bob.extend(bob.receive("A", "ann", frame.envelope).events);
        }
        assert_eq!(texts(&seen_by_bob), ["ann->bob: a1", "ann->bob: a2"]);
        assert_eq!(ann.safety_code("B"), bob.safety_code("A"));
    }

    #[test]
    fn verify_before_and_after_the_session() {
        let now = Instant::now();
        let mut ann = PrivateChats::new("ann");
        let mut bob = PrivateChats::new("bob");
        let out = ann.verify("B", "bob", now);
        let (a, b) = exchange((&mut ann, "A"), (&mut bob, "B"), out);
        assert_eq!(texts(&a), ["verify bob"]);
        assert!(b.is_empty());
        let shown = bob.verify("A", "ann", now);
        assert!(shown.frames.is_empty());
        let (Event::Verify { code: c1, .. }, Event::Verify { code: c2, .. }) =
            (&a[0], &shown.events[0])
        else {
            panic!("{a:?} {:?}", shown.events)
        };
        assert_eq!(c1, c2);
    }

    #[test]
    fn a_departure_or_a_silent_peer_fails_the_queue_cleanly() {
        let now = Instant::now();
        let mut ann = PrivateChats::new("ann");
        ann.send("B", "bob", "one", now).unwrap();
        ann.send("B", "bob", "two", now).unwrap();
        assert_eq!(ann.next_deadline(), Some(now + HANDSHAKE_DEADLINE));
        let events = ann.departed("B");
        assert_eq!(
            texts(&events),
            [
                "error: 2 private messages to bob were not sent: they left the room before the private session was set up"
            ]
        );
        assert_eq!(ann.next_deadline(), None);

        ann.send("C", "cat", "hello?", now).unwrap();
        assert!(ann.expire(now + HANDSHAKE_DEADLINE / 2).is_empty());
        let events = ann.expire(now + HANDSHAKE_DEADLINE);
        assert_eq!(
            texts(&events),
            [
                "error: 1 private message to cat was not sent: cat did not answer the private handshake within 20 s"
            ]
        );
        assert!(ann.safety_code("C").is_none());
        // A late answer is ignored, with a word.
        let late = ann.receive(
            "C",
            "cat",
            PrivateEnvelope::HelloAck {
                public: STANDARD.encode(KeyPair::generate().public()),
            },
        );
        assert!(texts(&late.events)[0].contains("not in progress"));
    }

    #[test]
    fn the_queue_is_bounded() {
        let now = Instant::now();
        let mut ann = PrivateChats::new("ann");
        for i in 0..MAX_QUEUED {
            ann.send("B", "bob", &i.to_string(), now).unwrap();
        }
        assert_eq!(
            ann.send("B", "bob", "one too many", now).unwrap_err(),
            PrivateError::QueueFull("bob".into())
        );
    }

    #[test]
    fn refusals_and_garbage() {
        let now = Instant::now();
        let mut ann = PrivateChats::new("ann");
        let mut bob = PrivateChats::new("bob");
        ann.send("B", "bob", "queued", now).unwrap();
        let events = ann.refused("B", "bob", "bob uses cmd-chat 1.x", true);
        assert_eq!(
            texts(&events),
            ["error: 1 private message to bob was not sent: bob uses cmd-chat 1.x"]
        );
        // A message without a session, and a malformed hello.
        let out = bob.receive(
            "A",
            "ann",
            PrivateEnvelope::Msg {
                n: 0,
                ct: "AAAA".into(),
            },
        );
        assert!(texts(&out.events)[0].contains("no private session"));
        let out = bob.receive(
            "A",
            "ann",
            PrivateEnvelope::Hello {
                public: "!!".into(),
            },
        );
        assert!(texts(&out.events)[0].contains("malformed key"));
        let out = bob.receive(
            "A",
            "ann",
            PrivateEnvelope::Hello {
                public: STANDARD.encode([0u8; 32]),
            },
        );
        assert!(
            texts(&out.events)[0].contains("could not be set up"),
            "{:?}",
            out.events
        );
        assert!(out.frames.is_empty());
    }

    #[test]
    fn a_new_hello_in_an_established_session_is_announced() {
        let now = Instant::now();
        let mut ann = PrivateChats::new("ann");
        let mut bob = PrivateChats::new("bob");
        let out = ann.send("B", "bob", "hi", now).unwrap();
        exchange((&mut ann, "A"), (&mut bob, "B"), out);
        let before = bob.safety_code("A").unwrap();
        // Ann lost her session (say, her handshake had timed out) and starts over.
        ann.departed("B");
        let out = ann.send("B", "bob", "again", now).unwrap();
        let (a, b) = exchange((&mut ann, "A"), (&mut bob, "B"), out);
        assert_eq!(texts(&a), ["ann->bob: again"]);
        assert!(texts(&b)[0].contains("safety code has changed"), "{b:?}");
        assert_eq!(texts(&b)[1], "ann->bob: again");
        assert_ne!(bob.safety_code("A").unwrap(), before);
        assert_eq!(bob.safety_code("A"), ann.safety_code("B"));
    }

    /// However a session ends short of the peer leaving (here a refusal the
    /// server may have made up), the next one is announced on both sides:
    /// its keys, and so its safety code, are new.
    #[test]
    fn a_session_set_up_again_is_announced_on_both_sides() {
        let now = Instant::now();
        let mut ann = PrivateChats::new("ann");
        let mut bob = PrivateChats::new("bob");
        let out = ann.send("B", "bob", "hi", now).unwrap();
        exchange((&mut ann, "A"), (&mut bob, "B"), out);
        ann.refused("B", "bob", "no such user", true);
        bob.refused("A", "ann", "no such user", true);
        let out = ann.send("B", "bob", "again", now).unwrap();
        let (a, b) = exchange((&mut ann, "A"), (&mut bob, "B"), out);
        for events in [&a, &b] {
            assert!(
                texts(events)[0].contains("safety code has changed"),
                "{events:?}"
            );
        }
        // Once a member has left, someone new may have its id: no warning.
        ann.departed("B");
        bob.departed("A");
        let out = ann.send("B", "bob", "fresh", now).unwrap();
        let (a, b) = exchange((&mut ann, "A"), (&mut bob, "B"), out);
        assert_eq!(texts(&a), ["ann->bob: fresh"]);
        assert_eq!(texts(&b), ["ann->bob: fresh"]);
    }
}
