//! A test-only room server that speaks the native protocol to real clients,
//! and sees everything a server sees.
//!
//! It plays the worst host the threat model allows: it knows the password
//! (so it runs SRP and can open the room encryption), it records every
//! private frame it relays, and in [`Mode::Substitute`] it replaces the public
//! keys of private handshakes with its own, decrypting and re-encrypting
//! every private message on the way: a man in the middle that the two
//! members cannot notice, except by comparing safety codes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cmd_chat::crypto::private::{KeyPair, PrivateSession};
use cmd_chat::crypto::srp::{ServerSession, Verifier};
use cmd_chat::crypto::transport::{Side, derive_keys};
use cmd_chat::crypto::{Password, RoomCipher};
use cmd_chat::protocol::handshake::{ServerHello, welcome};
use cmd_chat::protocol::limits::{MEMBER_MAX_LINE, PRE_AUTH_MAX_LINE};
use cmd_chat::protocol::wire::{ClientFrame, MessageData, PrivateEnvelope, ServerEvent, UserInfo};
use cmd_chat::protocol::{FrameReader, FrameWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How the relay treats private handshakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Relays private frames untouched, as the real server does.
    Honest,
    /// Substitutes its own public keys and reads every private message.
    Substitute,
}

/// One private frame as the relay saw it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub from: String,
    pub to: String,
    /// The body exactly as the sender sent it.
    pub body: String,
}

/// The relay's half of a substituted conversation: what it holds toward
/// each of the two members.
#[derive(Default)]
struct Middle {
    /// The initiator's public key, waiting for the answer.
    initiator_public: Option<Vec<u8>>,
    /// Our key pair facing the answerer, waiting for its `hello_ack`.
    toward_answerer: Option<KeyPair>,
    /// Sessions, by the name of the member at the other end.
    sessions: HashMap<String, PrivateSession>,
}

struct Member {
    name: String,
    out: mpsc::UnboundedSender<String>,
}

struct State {
    members: HashMap<String, Member>,
    /// Join order, for `init`.
    order: Vec<String>,
    next_id: u32,
    next_seq: u64,
    /// Keyed by the two names sorted.
    middles: HashMap<(String, String), Middle>,
}

pub struct Relay {
    pub addr: SocketAddr,
    /// Every private frame relayed, in order.
    pub captured: Arc<Mutex<Vec<Captured>>>,
    /// Plaintexts the relay read (substitute mode only).
    pub read: Arc<Mutex<Vec<String>>>,
    /// The room salt it gave its members; with the password, the room key.
    pub room_salt: [u8; 16],
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    mode: Mode,
    verifier: Verifier,
    cipher: RoomCipher,
    room_salt: [u8; 16],
    state: Mutex<State>,
    captured: Arc<Mutex<Vec<Captured>>>,
    read: Arc<Mutex<Vec<String>>>,
    /// Names the relay gives a member id in the private frames it relays,
    /// in place of the member's own.
    renamed: Mutex<HashMap<String, String>>,
}

impl Relay {
    pub async fn start(mode: Mode, password: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let room_salt: [u8; 16] = rand::random();
        let pw = Password::new(password.into());
        let captured = Arc::new(Mutex::new(Vec::new()));
        let read = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            mode,
            verifier: Verifier::new(&pw),
            cipher: RoomCipher::from_password(&pw, &room_salt),
            room_salt,
            state: Mutex::new(State {
                members: HashMap::new(),
                order: Vec::new(),
                next_id: 1,
                next_seq: 1,
                middles: HashMap::new(),
            }),
            captured: Arc::clone(&captured),
            read: Arc::clone(&read),
            renamed: Mutex::new(HashMap::new()),
        });
        let accepting = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, Arc::clone(&accepting)));
            }
        });
        Relay {
            addr,
            captured,
            read,
            room_salt,
            shared,
            task,
        }
    }

    /// The member id of `name`.
    pub fn id_of(&self, name: &str) -> String {
        let state = self.shared.state.lock().unwrap();
        let (id, _) = state
            .members
            .iter()
            .find(|(_, m)| m.name == name)
            .expect("a member of that name");
        id.clone()
    }

    /// Sends `event` to the member `to_id` alone, as a lying server may.
    pub fn inject(&self, to_id: &str, event: &ServerEvent) {
        send(&self.shared.state.lock().unwrap(), to_id, event);
    }

    /// From now on, private frames from `id` say they come from `name`.
    pub fn rename(&self, id: &str, name: &str) {
        self.shared
            .renamed
            .lock()
            .unwrap()
            .insert(id.into(), name.into());
    }
}

fn send(state: &State, to_id: &str, event: &ServerEvent) {
    if let Some(m) = state.members.get(to_id) {
        let _ = m.out.send(serde_json::to_string(event).unwrap());
    }
}

async fn serve(socket: TcpStream, shared: Arc<Shared>) {
    let (read, write) = socket.into_split();
    let mut reader = FrameReader::new(read, PRE_AUTH_MAX_LINE);
    let mut writer = FrameWriter::new(write);

    // SRP, as the real server runs it (without the password stretch, which
    // the protocol lets a server leave out).
    let Ok(Some(request)) = reader.read().await else {
        return;
    };
    let Ok(hello) = ServerHello::read(request, false) else {
        return;
    };
    let username = hello.username.clone();
    let session = ServerSession::start(&shared.verifier, &hello.a).unwrap();
    let user_id = {
        let mut state = shared.state.lock().unwrap();
        state.next_id += 1;
        format!("u{}", state.next_id)
    };
    let (awaiting, challenge) = hello.challenge(
        user_id.clone(),
        &session.public(),
        shared.verifier.salt(),
        "",
        None,
    );
    writer.write(&challenge).await.unwrap();
    writer.flush().await.unwrap();
    let Ok(Some(request)) = reader.read().await else {
        return;
    };
    let Ok(proof) = awaiting.read_proof(request) else {
        return;
    };
    let session = session.bind(&proof.transcript.expect("a native login"));
    let Ok((h_amk, key)) = session.verify(&proof.m) else {
        return;
    };
    writer.write(&welcome(&h_amk, false)).await.unwrap();
    let (sealer, opener) = derive_keys(&key, Side::Server);
    writer.seal(sealer);
    reader.seal(opener);
    reader.set_max_line(MEMBER_MAX_LINE);

    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    {
        let mut state = shared.state.lock().unwrap();
        state.members.insert(
            user_id.clone(),
            Member {
                name: username.clone(),
                out: out_tx,
            },
        );
        state.order.push(user_id.clone());
        let users: Vec<UserInfo> = state
            .order
            .iter()
            .map(|id| UserInfo {
                user_id: id.clone(),
                username: state.members[id].name.clone(),
            })
            .collect();
        send(
            &state,
            &user_id,
            &ServerEvent::Init {
                messages: Vec::new(),
                users,
                room_salt: Some(STANDARD.encode(shared.room_salt)),
                user_id: Some(user_id.clone()),
                room_id: None,
                resume_token: None,
                after_seq: None,
                complete: None,
                locked: None,
                knocking: Vec::new(),
                max_file_size: None,
                history: None,
                admitted_by: None,
            },
        );
        let joined = ServerEvent::UserJoined {
            user_id: user_id.clone(),
            username: username.clone(),
        };
        for id in state.order.iter().filter(|id| **id != user_id) {
            send(&state, id, &joined);
        }
    }
    let writing = tokio::spawn(async move {
        while let Some(line) = out_rx.recv().await {
            if writer.write_text(&line).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
    });

    while let Ok(Some(frame)) = reader.read::<ClientFrame>().await {
        match frame {
            ClientFrame::Message { text, .. } => {
                let mut state = shared.state.lock().unwrap();
                let seq = state.next_seq;
                state.next_seq += 1;
                let event = ServerEvent::Message {
                    data: MessageData {
                        id: seq.to_string(),
                        seq: Some(seq),
                        text,
                        timestamp: "2026-11-21T10:00:00.000Z".into(),
                        username: username.clone(),
                    },
                };
                for id in &state.order {
                    send(&state, id, &event);
                }
            }
            ClientFrame::Private { to, body } => {
                let mut state = shared.state.lock().unwrap();
                let Some(to_name) = state.members.get(&to).map(|m| m.name.clone()) else {
                    continue;
                };
                shared.captured.lock().unwrap().push(Captured {
                    from: username.clone(),
                    to: to_name.clone(),
                    body: body.clone(),
                });
                let body = match shared.mode {
                    Mode::Honest => body,
                    Mode::Substitute => substitute(&shared, &mut state, &username, &to_name, &body),
                };
                send(
                    &state,
                    &to,
                    &ServerEvent::Private {
                        from: user_id.clone(),
                        from_name: shared
                            .renamed
                            .lock()
                            .unwrap()
                            .get(&user_id)
                            .cloned()
                            .unwrap_or_else(|| username.clone()),
                        body,
                    },
                );
            }
            ClientFrame::Leave => break,
            // This relay only needs messages and private frames.
            _ => {}
        }
    }
    let mut state = shared.state.lock().unwrap();
    state.members.remove(&user_id);
    state.order.retain(|id| *id != user_id);
    let left = ServerEvent::UserLeft {
        user_id: user_id.clone(),
    };
    for id in &state.order {
        send(&state, id, &left);
    }
    drop(state);
    writing.abort();
}

/// The man in the middle: rewrites one private body from `from` to `to`.
fn substitute(shared: &Shared, state: &mut State, from: &str, to: &str, body: &str) -> String {
    let json = shared
        .cipher
        .decrypt(body)
        .expect("the host can open the room encryption");
    let envelope: PrivateEnvelope = serde_json::from_str(&json).unwrap();
    let pair = if from < to {
        (from.to_owned(), to.to_owned())
    } else {
        (to.to_owned(), from.to_owned())
    };
    let middle = state.middles.entry(pair).or_default();
    let forged = match envelope {
        PrivateEnvelope::Hello { public } => {
            // Keep the initiator's key; offer the answerer one of ours.
            middle.initiator_public = Some(STANDARD.decode(public).unwrap());
            let ours = KeyPair::generate();
            let public = STANDARD.encode(ours.public());
            middle.toward_answerer = Some(ours);
            PrivateEnvelope::Hello { public }
        }
        PrivateEnvelope::HelloAck { public } => {
            // `from` answered: finish a session with it (pretending to be
            // `to`), and another with `to` (pretending to be `from`).
            let toward_answerer = middle.toward_answerer.take().unwrap();
            let with_answerer = toward_answerer
                .agree(to, from, &STANDARD.decode(public).unwrap())
                .unwrap();
            let toward_initiator = KeyPair::generate();
            let public = STANDARD.encode(toward_initiator.public());
            let with_initiator = toward_initiator
                .agree(from, to, &middle.initiator_public.take().unwrap())
                .unwrap();
            middle.sessions.insert(from.to_owned(), with_answerer);
            middle.sessions.insert(to.to_owned(), with_initiator);
            PrivateEnvelope::HelloAck { public }
        }
        PrivateEnvelope::Msg { n, ct } => {
            let plain = middle
                .sessions
                .get_mut(from)
                .unwrap()
                .open(n, &STANDARD.decode(ct).unwrap())
                .unwrap();
            let text = String::from_utf8(plain.to_vec()).unwrap();
            shared.read.lock().unwrap().push(text);
            let (n, ct) = middle.sessions.get_mut(to).unwrap().seal(&plain).unwrap();
            PrivateEnvelope::Msg {
                n,
                ct: STANDARD.encode(ct),
            }
        }
    };
    shared
        .cipher
        .encrypt(&serde_json::to_string(&forged).unwrap())
}
