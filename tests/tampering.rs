//! Someone on the path who knows no password and rewrites one field of the
//! cleartext login. For each field: the login fails, the server has sent
//! nothing beyond the challenge (`B` and the salts), nobody joins the room,
//! and the client says why (exit 4: refused or unproven; exit 6:
//! an attack it recognised). An impostor server that does not know the
//! password gets one proof per attempt a person makes.
//!
//! The relay parses every cleartext JSON line and writes it back with
//! `serde_json` (keys reordered, spacing changed): the control test shows
//! that this alone changes nothing, so each failure below comes from the one
//! field its rule rewrites. (Members see the notice any failed login gives,
//! "someone just tried to join with a wrong password".)

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use cmd_chat::client::{Client, ClientConfig, ClientError, Event, Transport, exit_code};
use cmd_chat::crypto::Password;
use cmd_chat::crypto::srp::{ServerSession, Verifier};
use cmd_chat::protocol::handshake::ServerHello;
use cmd_chat::protocol::limits::PRE_AUTH_MAX_LINE;
use cmd_chat::protocol::wire::{ErrorCode, ErrorReply};
use cmd_chat::protocol::{FrameReader, FrameWriter};
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Which way a line travels through the relay.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Way {
    ToServer,
    ToClient,
}

/// What the relay does to each cleartext line (a JSON object) it carries.
type Rule = Arc<dyn Fn(Way, &mut Value) + Send + Sync>;

/// A line-by-line TCP relay between clients and the server.
struct Relay {
    addr: SocketAddr,
    state: Arc<Mutex<RelayState>>,
    accept: JoinHandle<()>,
}

struct RelayState {
    rule: Rule,
    /// Every line the server sent since the rule was last set, as sent.
    from_server: Vec<String>,
    /// Every line the client sent since the rule was last set, as sent.
    from_client: Vec<String>,
    pumps: Vec<JoinHandle<()>>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(RelayState {
            rule: Arc::new(|_, _| {}),
            from_server: Vec::new(),
            from_client: Vec::new(),
            pumps: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let up = pump(
                    client_read,
                    server_write,
                    Way::ToServer,
                    Arc::clone(&shared),
                );
                let down = pump(
                    server_read,
                    client_write,
                    Way::ToClient,
                    Arc::clone(&shared),
                );
                let mut state = shared.lock().unwrap();
                state.pumps.push(tokio::spawn(up));
                state.pumps.push(tokio::spawn(down));
            }
        });
        Self {
            addr,
            state,
            accept,
        }
    }

    /// From now on, rewrite lines with `rule` (and forget what was seen).
    fn rule(&self, rule: impl Fn(Way, &mut Value) + Send + Sync + 'static) {
        let mut state = self.state.lock().unwrap();
        state.rule = Arc::new(rule);
        state.from_server.clear();
        state.from_client.clear();
    }

    /// Cuts every connection through the relay.
    fn cut(&self) {
        for pump in self.state.lock().unwrap().pumps.drain(..) {
            pump.abort();
        }
    }

    fn server_lines(&self) -> Vec<String> {
        self.state.lock().unwrap().from_server.clone()
    }

    fn client_lines(&self) -> Vec<String> {
        self.state.lock().unwrap().from_client.clone()
    }

    fn config(&self, name: &str) -> ClientConfig {
        ClientConfig {
            server: self.addr.to_string(),
            username: name.into(),
            password: Password::new(PASSWORD.into()),
            allow_legacy: false,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Carries lines one way, logging each and rewriting the JSON ones.
async fn pump(
    from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    way: Way,
    state: Arc<Mutex<RelayState>>,
) {
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let rule = {
            let mut state = state.lock().unwrap();
            match way {
                Way::ToServer => state.from_client.push(line.clone()),
                Way::ToClient => state.from_server.push(line.clone()),
            }
            Arc::clone(&state.rule)
        };
        let line = match serde_json::from_str::<Value>(&line) {
            Ok(mut value) if value.is_object() => {
                rule(way, &mut value);
                value.to_string()
            }
            _ => line,
        };
        if to.write_all(format!("{line}\n").as_bytes()).await.is_err() {
            break;
        }
    }
}

fn is_srp_init(way: Way, line: &Value) -> bool {
    way == Way::ToServer && line["cmd"] == "srp_init"
}

fn is_challenge(way: Way, line: &Value) -> bool {
    way == Way::ToClient && line.get("B").is_some()
}

/// Asserts the server answered the login with its challenge and then a
/// refusal only: no `H_AMK`, no room salt outside the challenge, no `init`.
fn server_sent_only_the_challenge(relay: &Relay) {
    let lines = relay.server_lines();
    assert!(!lines.is_empty(), "the server was never reached");
    let challenge: Value = serde_json::from_str(&lines[0]).unwrap();
    assert!(challenge.get("B").is_some(), "{lines:?}");
    for line in &lines[1..] {
        let reply: Value = serde_json::from_str(line).expect("nothing sealed was sent");
        assert!(reply.get("error").is_some(), "the server sent more: {line}");
    }
}

/// A member already in the room, who must see nothing of the failed login.
async fn witness(server: &TestServer) -> Client {
    let mut bob = server.join("bob").await;
    bob.send("before").await.unwrap();
    next_message(&mut bob).await;
    bob
}

/// Up to the witness's own next message, nobody joined: the room saw at
/// most the notice every failed login gives.
async fn saw_nobody_join(bob: &mut Client) {
    bob.send("after").await.unwrap();
    loop {
        match next(bob).await {
            Event::Message(m) => break assert_eq!(m.text.as_str(), "after"),
            Event::Notice { message } if message.contains("wrong password") => continue,
            other => panic!("the room saw {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_honest_relay_changes_nothing() {
    let server = TestServer::with_legacy().await;
    let relay = Relay::start(server.addr).await;
    let mut bob = witness(&server).await;
    let mut ann = Client::connect(relay.config("ann")).await.unwrap();
    assert_eq!(ann.transport(), Transport::Sealed);
    ann.send("through the relay").await.unwrap();
    until(
        &mut bob,
        |e| matches!(e, Event::Message(m) if m.text.as_str() == "through the relay"),
    )
    .await;
}

#[tokio::test]
async fn stripping_native_in_a_room_that_admits_1x_does_not_downgrade() {
    let server = TestServer::with_legacy().await;
    let relay = Relay::start(server.addr).await;
    let mut bob = witness(&server).await;
    // The server is told 1.x; the client is told the server speaks native.
    relay.rule(|way, line| {
        if is_srp_init(way, line) {
            line.as_object_mut().unwrap().remove("native");
        }
        if is_challenge(way, line) {
            line["native"] = json!(NATIVE_PROTOCOL);
        }
    });
    let error = Client::connect(relay.config("ann")).await.unwrap_err();
    assert!(matches!(error, ClientError::WrongPassword), "{error}");
    assert_eq!(error.exit_code(), exit_code::AUTH_FAILED);
    server_sent_only_the_challenge(&relay);
    saw_nobody_join(&mut bob).await;
}

#[tokio::test]
async fn a_name_changed_on_the_path_fails_the_login() {
    let server = TestServer::native().await;
    let relay = Relay::start(server.addr).await;
    let mut bob = witness(&server).await;
    relay.rule(|way, line| {
        if is_srp_init(way, line) {
            line["username"] = json!("mallory");
        }
    });
    let error = Client::connect(relay.config("ann")).await.unwrap_err();
    assert!(matches!(error, ClientError::WrongPassword), "{error}");
    server_sent_only_the_challenge(&relay);
    saw_nobody_join(&mut bob).await;
}

#[tokio::test]
async fn a_stretch_changed_within_the_limits_fails_the_login() {
    let server = TestServer::native().await;
    let relay = Relay::start(server.addr).await;
    let mut bob = witness(&server).await;
    relay.rule(|way, line| {
        if is_challenge(way, line) {
            line["kdf"]["t"] = json!(4);
        }
    });
    let error = Client::connect(relay.config("ann")).await.unwrap_err();
    assert!(matches!(error, ClientError::WrongPassword), "{error}");
    server_sent_only_the_challenge(&relay);
    saw_nobody_join(&mut bob).await;
}

#[tokio::test]
async fn a_stretch_outside_the_limits_is_refused_before_the_proof() {
    let server = TestServer::native().await;
    let relay = Relay::start(server.addr).await;
    // Cheap guesses for an impostor; a client stalled for minutes.
    for (m_kib, t) in [(8, 1), (1 << 20, 16)] {
        relay.rule(move |way, line| {
            if is_challenge(way, line) {
                line["kdf"]["m_kib"] = json!(m_kib);
                line["kdf"]["t"] = json!(t);
            }
        });
        let error = Client::connect(relay.config("ann")).await.unwrap_err();
        assert!(matches!(error, ClientError::Tampered(_)), "{error}");
        assert_eq!(error.exit_code(), exit_code::PROTOCOL);
        assert!(error.to_string().contains("stretch"), "{error}");
        let sent = relay.client_lines();
        assert!(
            sent.iter().all(|line| !line.contains("srp_verify")),
            "the proof went out: {sent:?}"
        );
    }
}

#[tokio::test]
async fn a_reconnect_offered_in_clear_is_an_attack() {
    let server = TestServer::with_legacy().await;
    let relay = Relay::start(server.addr).await;
    let mut config = relay.config("ann");
    config.allow_legacy = true;
    let mut ann = Client::connect(config).await.unwrap();
    assert_eq!(ann.transport(), Transport::Sealed);
    relay.rule(|way, line| {
        if is_srp_init(way, line) {
            line.as_object_mut().unwrap().remove("native");
        }
    });
    relay.cut();
    let error = loop {
        match tokio::time::timeout(PATIENCE, ann.next_event())
            .await
            .expect("the client decides")
        {
            Ok(Event::Reconnected { .. }) => panic!("the session went on in clear"),
            Ok(_) => continue,
            Err(error) => break error,
        }
    };
    assert!(matches!(error, ClientError::Tampered(_)), "{error}");
    assert_eq!(error.exit_code(), exit_code::PROTOCOL);
    let sent = relay.client_lines();
    assert!(
        sent.iter().all(|line| !line.contains("srp_verify")),
        "{sent:?}"
    );
    server_sent_only_the_challenge(&relay);
}

/// What an impostor that does not know the password does once it holds a
/// client's proof.
#[derive(Clone, Copy, Debug)]
enum AfterProof {
    Cut,
    Busy,
    Garbage,
}

/// A server that does not know the room password: it answers `srp_init`
/// with a well-formed challenge (from a verifier of its own guess) and then
/// does `after` with each proof it gets, counting them.
async fn impostor(after: AfterProof) -> (SocketAddr, Arc<Mutex<usize>>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proofs = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&proofs);
    let task = tokio::spawn(async move {
        let verifier = Verifier::new(&Password::new("a guess".into()));
        while let Ok((socket, _)) = listener.accept().await {
            let (read, write) = socket.into_split();
            let mut reader = FrameReader::new(read, PRE_AUTH_MAX_LINE);
            let mut writer = FrameWriter::new(write);
            let Ok(Some(request)) = reader.read().await else {
                continue;
            };
            let hello = ServerHello::read(request, false).unwrap();
            let session = ServerSession::start(&verifier, &hello.a).unwrap();
            let (_, challenge) =
                hello.challenge("u1".into(), &session.public(), verifier.salt(), "", None);
            writer.write(&challenge).await.unwrap();
            writer.flush().await.unwrap();
            if let Ok(Some(_)) = reader.read::<Value>().await {
                *counted.lock().unwrap() += 1;
                answer(after, &mut writer).await;
            }
        }
    });
    (addr, proofs, task)
}

async fn answer(after: AfterProof, writer: &mut FrameWriter<OwnedWriteHalf>) {
    match after {
        AfterProof::Cut => {}
        AfterProof::Busy => {
            let busy = ErrorReply::new(ErrorCode::Busy, "busy");
            writer.write(&busy).await.unwrap();
        }
        AfterProof::Garbage => writer
            .write(&json!({"H_AMK": "not base64!"}))
            .await
            .unwrap(),
    }
    let _ = writer.flush().await;
}

#[tokio::test]
async fn an_impostor_gets_one_proof_per_attempt() {
    for after in [AfterProof::Cut, AfterProof::Busy, AfterProof::Garbage] {
        let (addr, proofs, task) = impostor(after).await;
        let config = || ClientConfig {
            server: addr.to_string(),
            username: "ann".into(),
            password: Password::new(PASSWORD.into()),
            allow_legacy: false,
        };
        for attempt in 1..=2 {
            let error = Client::connect(config()).await.unwrap_err();
            assert!(
                matches!(error, ClientError::ServerUnproven(_)),
                "{after:?}: {error}"
            );
            assert_eq!(error.exit_code(), exit_code::AUTH_FAILED);
            assert!(error.to_string().contains("could not prove"), "{error}");
            assert_eq!(*proofs.lock().unwrap(), attempt, "{after:?}");
        }
        task.abort();
    }
}
