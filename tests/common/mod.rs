//! Shared helpers for the integration tests: a real server on 127.0.0.1:0,
//! real clients, and a raw JSON-line connection for speaking the protocol by hand.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cmd_chat::client::{Client, ClientConfig, ClientError, Event};
use cmd_chat::crypto::srp::{ClientProof, ClientSession};
use cmd_chat::crypto::transport::DirectionKey;
use cmd_chat::crypto::{Password, RoomCipher};
use cmd_chat::protocol::handshake::{ClientAwaitingWelcome, ClientHello, HelloOptions};
use cmd_chat::server::room::Room;
use cmd_chat::server::{Server, ServerConfig};
use serde_json::{Value, json};

/// The native protocol version, for the tests that write raw lines.
#[allow(unused_imports)]
pub use cmd_chat::protocol::wire::NATIVE_PROTOCOL;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A safety net so a broken test fails instead of hanging; not a timing goal.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestServer {
    pub addr: SocketAddr,
    pub room: Arc<Room>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> Self {
        let server = Server::bind("127.0.0.1:0", config, Password::new(PASSWORD.into()))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = server.local_addr().unwrap();
        let room = server.room();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            room,
            stop: Some(stop),
            task,
        }
    }

    /// A native-only room with the lightest password stretch clients accept, so the many logins
    /// of the test suite stay quick; `tests/cli.rs` runs the real default.
    pub async fn native() -> Self {
        Self::start(Self::config_for_tests()).await
    }

    /// `ServerConfig::default()` with the light stretch tests use.
    pub fn config_for_tests() -> ServerConfig {
        ServerConfig {
            kdf: cmd_chat::crypto::kdf::KdfParams::CLIENT_MIN,
            ..ServerConfig::default()
        }
    }

    pub async fn with_legacy() -> Self {
        Self::start(ServerConfig {
            allow_legacy: true,
            ..Self::config_for_tests()
        })
        .await
    }

    /// Waits for the server to end by itself (e.g. `idle_exit`).
    pub async fn finished(mut self) {
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("server ends by itself")
            .unwrap();
    }

    /// Stops the server as Ctrl-C would, and waits for it.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("server stops in time")
            .unwrap();
    }

    pub fn config(&self, name: &str, password: &str) -> ClientConfig {
        ClientConfig {
            server: self.addr.to_string(),
            username: name.into(),
            password: Password::new(password.into()),
            allow_legacy: false,
        }
    }

    pub async fn try_join(&self, name: &str, password: &str) -> Result<Client, ClientError> {
        tokio::time::timeout(PATIENCE, Client::connect(self.config(name, password)))
            .await
            .expect("login finishes")
    }

    pub async fn join(&self, name: &str) -> Client {
        self.try_join(name, PASSWORD).await.expect("join succeeds")
    }
}

/// The next event other than a delivery receipt (tests that want receipts
/// use [`until`] or `next_event`), failing the test if none comes.
pub async fn next(client: &mut Client) -> Event {
    loop {
        let event = tokio::time::timeout(PATIENCE, client.next_event())
            .await
            .expect("an event arrives")
            .expect("the session is alive");
        if !matches!(event, Event::Sent { .. }) {
            return event;
        }
    }
}

/// Skips events until one matches.
pub async fn until<F: Fn(&Event) -> bool>(client: &mut Client, wanted: F) -> Event {
    loop {
        let event = tokio::time::timeout(PATIENCE, client.next_event())
            .await
            .expect("an event arrives")
            .expect("the session is alive");
        if wanted(&event) {
            return event;
        }
    }
}

/// The next chat message's `(from, text)`, skipping joins and leaves.
pub async fn next_message(client: &mut Client) -> (String, String, bool) {
    match until(client, |e| matches!(e, Event::Message(_))).await {
        Event::Message(m) => (m.from.clone(), m.text.clone(), m.history),
        _ => unreachable!(),
    }
}

/// A login between `srp_init` and `srp_verify` (see [`Raw::begin_login`]).
pub struct Handshake {
    /// A native login: the client's state machine, waiting for `H_AMK`.
    native: Option<ClientAwaitingWelcome>,
    /// A 1.x login: pysrp's proof, and the password for the room key.
    legacy: Option<(ClientProof, Password)>,
    /// The server's answer to `srp_init`.
    pub challenge: Value,
    /// The `srp_verify` line about to be sent; a test may add fields.
    pub verify: Value,
}

/// A connection speaking raw JSON lines, for driving the protocol by hand.
pub struct Raw {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
    /// Set once a native handshake has sealed the session.
    pub sealer: Option<DirectionKey>,
    pub opener: Option<DirectionKey>,
    /// Set once the room salt is known.
    pub cipher: Option<RoomCipher>,
    /// Frames of a sealed record not yet returned by [`Raw::recv`].
    pending: std::collections::VecDeque<Value>,
    /// The name this connection logged in with.
    pub name: String,
    /// Whether the room admits native clients only (its challenge asked for
    /// a password stretch), so a message's token holds its writer's name.
    pub names_inside: bool,
    /// Whether [`Raw::login`] reads the `history` frames a native server
    /// sends after `init` and returns them in `init`'s `messages`, as a 1.x
    /// server sends them (the default).
    pub collect_history: bool,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::over(TcpStream::connect(addr).await.unwrap())
    }

    /// Connects from the loopback address `from` (any of 127.0.0.0/8), so
    /// the server counts it as another address.
    #[allow(dead_code)]
    pub async fn connect_from(from: std::net::Ipv4Addr, addr: SocketAddr) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((from, 0).into()).unwrap();
        Self::over(socket.connect(addr).await.unwrap())
    }

    fn over(stream: TcpStream) -> Self {
        let (read, write) = stream.into_split();
        Self {
            lines: BufReader::new(read).lines(),
            write,
            sealer: None,
            opener: None,
            cipher: None,
            name: String::new(),
            names_inside: false,
            pending: Default::default(),
            collect_history: true,
        }
    }

    pub async fn send_line(&mut self, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        self.write.write_all(&bytes).await.unwrap();
    }

    /// Half-closes: the server sees end of stream, we can still read.
    pub async fn shutdown_write(&mut self) {
        let _ = self.write.shutdown().await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.write.write_all(bytes).await;
    }

    /// Sends `value`, sealed if the session is sealed.
    pub async fn send(&mut self, value: Value) {
        let text = value.to_string();
        match self.sealer.as_mut() {
            None => self.send_line(&text).await,
            Some(sealer) => {
                let frame =
                    json!({"sealed": STANDARD.encode(sealer.seal(text.as_bytes()).unwrap())});
                self.send_line(&frame.to_string()).await
            }
        }
    }

    /// The next raw line; `None` once the server has closed the connection.
    pub async fn recv_line(&mut self) -> Option<String> {
        tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .expect("a line or a close arrives")
            .ok()
            .flatten()
    }

    /// The next frame as JSON, opened if sealed; `None` on close.
    pub async fn recv(&mut self) -> Option<Value> {
        self.recv_or_cut().await.expect("server lines are JSON")
    }

    /// [`Raw::recv`], except that a last line cut short (a connection reset
    /// while the server wrote it) is `Err` rather than a panic.
    #[allow(dead_code)]
    pub async fn recv_or_cut(&mut self) -> Result<Option<Value>, serde_json::Error> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(Some(frame));
        }
        let Some(line) = self.recv_line().await else {
            return Ok(None);
        };
        let value: Value = serde_json::from_str(&line)?;
        Ok(match self.opener.as_mut() {
            None => Some(value),
            Some(opener) => {
                // A sealed record holds one or more frames.
                let sealed = value["sealed"].as_str().expect("sealed frame");
                let plain = opener.open(&STANDARD.decode(sealed).unwrap()).unwrap();
                for frame in plain.split(|&b| b == b'\n') {
                    self.pending
                        .push_back(serde_json::from_slice(frame).expect("frames are JSON"));
                }
                self.pending.pop_front()
            }
        })
    }

    /// Frames until one whose `type` is `kind`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await.expect("connection open");
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Reads until the server closes the connection; returns what came before.
    pub async fn until_closed(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(line) = self.recv_line().await {
            seen.push(line);
        }
        seen
    }

    /// Runs SRP by hand. `native` adds the native field and seals afterwards.
    /// Returns the `init` frame.
    pub async fn login(
        &mut self,
        name: &str,
        password: &str,
        native: bool,
    ) -> Result<Value, Value> {
        let handshake = self.begin_login(name, password, native, json!({})).await?;
        self.end_login(handshake).await
    }

    /// The first half of a login: sends `srp_init` and computes the answer
    /// to the challenge, without sending it, so a test can choose the moment
    /// `srp_verify` goes out. A native login runs the client's own
    /// handshake ([`ClientHello`]); `extra` may set what a reconnect asks
    /// for (`resume`, `room_id`, `token` as base64, `after_seq`), and any
    /// other field is added to `srp_init` as it is. A 1.x login is pysrp's,
    /// by hand, as the original client runs it.
    pub async fn begin_login(
        &mut self,
        name: &str,
        password: &str,
        native: bool,
        extra: Value,
    ) -> Result<Handshake, Value> {
        self.name = name.to_owned();
        let password = Password::new(password.into());
        if !native {
            return self.begin_legacy_login(name, password, extra).await;
        }
        let mut extra = extra.as_object().expect("extra fields").clone();
        let mut take = |field: &str| extra.remove(field);
        let options = HelloOptions {
            allow_legacy: false,
            resume: take("resume").map(|v| v.as_str().unwrap().to_owned()),
            room_id: take("room_id").map(|v| v.as_str().unwrap().to_owned()),
            token: take("token").map(|v| {
                let bytes = STANDARD.decode(v.as_str().unwrap()).unwrap();
                cmd_chat::crypto::Key32::new(bytes.try_into().unwrap())
            }),
            after_seq: take("after_seq").map(|v| v.as_u64().unwrap()),
            as_1x: false,
        };
        let (hello, init) = ClientHello::start_with(name, options);
        let mut init = serde_json::to_value(init).unwrap();
        for (field, value) in extra {
            init[field] = value;
        }
        self.send(init).await;
        let challenge = self.recv().await.expect("challenge");
        if challenge.get("error").is_some() {
            return Err(challenge);
        }
        self.names_inside = challenge.get("kdf").is_some();
        let reply = serde_json::from_value(challenge.clone()).expect("a challenge");
        let respond = hello.read_challenge(reply).expect("a challenge we take");
        let (awaiting, verify) = respond.respond(&password).expect("a proof");
        Ok(Handshake {
            native: Some(awaiting),
            legacy: None,
            challenge,
            verify: serde_json::to_value(verify).unwrap(),
        })
    }

    /// [`Raw::begin_login`] as a cmd-chat 1.x client: no `native`, pysrp's `M`.
    async fn begin_legacy_login(
        &mut self,
        name: &str,
        password: Password,
        extra: Value,
    ) -> Result<Handshake, Value> {
        let srp = ClientSession::new();
        let mut init =
            json!({"cmd": "srp_init", "username": name, "A": STANDARD.encode(srp.public())});
        for (field, value) in extra.as_object().expect("extra fields").iter() {
            init[field] = value.clone();
        }
        self.send(init).await;
        let challenge = self.recv().await.expect("challenge");
        if challenge.get("error").is_some() {
            return Err(challenge);
        }
        let salt = STANDARD
            .decode(challenge["salt"].as_str().unwrap())
            .unwrap();
        let b = STANDARD.decode(challenge["B"].as_str().unwrap()).unwrap();
        self.names_inside = false;
        let proof = srp.respond(&password, &salt, &b).unwrap();
        let verify = json!({"cmd": "srp_verify", "user_id": challenge["user_id"], "M": STANDARD.encode(proof.m())});
        Ok(Handshake {
            native: None,
            legacy: Some((proof, password)),
            challenge,
            verify,
        })
    }

    /// The second half of a login: sends `srp_verify` and, if it passes,
    /// seals (native) and returns the `init` frame.
    pub async fn end_login(&mut self, handshake: Handshake) -> Result<Value, Value> {
        let Handshake {
            native,
            legacy,
            challenge,
            verify,
        } = handshake;
        self.send(verify).await;
        let welcome = self.recv().await.expect("welcome");
        if welcome.get("error").is_some() {
            return Err(welcome);
        }
        let password = match (native, legacy) {
            (Some(awaiting), _) => {
                assert!(
                    welcome.get("session_key").is_none(),
                    "no session key for native clients"
                );
                let reply = serde_json::from_value(welcome).expect("a welcome");
                let done = awaiting.read_welcome(reply).expect("the server's proof");
                let (sealer, opener) = done.keys.expect("sealed");
                self.sealer = Some(sealer);
                self.opener = Some(opener);
                done.password
            }
            (None, Some((proof, password))) => {
                proof
                    .verify_server(&STANDARD.decode(welcome["H_AMK"].as_str().unwrap()).unwrap())
                    .unwrap();
                password
            }
            (None, None) => unreachable!("a login is native or 1.x"),
        };
        let native = self.sealer.is_some();
        let mut init = self.recv().await.expect("init");
        // A refusal after SRP (a locked room, say) is returned as it came.
        if init.get("error").is_some() {
            return Ok(init);
        }
        let announced = init["history"].as_u64().unwrap_or(0) as usize;
        if native && self.collect_history && announced > 0 {
            let mut messages = Vec::new();
            while messages.len() < announced {
                let part = self.recv_type("history").await;
                messages.extend(part["messages"].as_array().unwrap().iter().cloned());
            }
            init["messages"] = Value::Array(messages);
        }
        let room_salt = if native {
            &init["room_salt"]
        } else {
            &challenge["room_salt"]
        };
        let room_salt = STANDARD
            .decode(room_salt.as_str().expect("room salt"))
            .unwrap();
        self.cipher = Some(RoomCipher::from_password(&password, &room_salt));
        Ok(init)
    }

    pub fn encrypt(&self, text: &str) -> String {
        self.cipher.as_ref().unwrap().encrypt(text)
    }

    pub fn decrypt(&self, token: &str) -> String {
        self.cipher.as_ref().unwrap().decrypt(token).unwrap()
    }

    /// A message's token for `text`, as a client of this room writes it:
    /// with this connection's name inside in a native-only room.
    pub fn encrypt_message(&self, text: &str) -> String {
        if !self.names_inside {
            return self.encrypt(text);
        }
        self.encrypt(&json!({"from": self.name, "text": text}).to_string())
    }

    /// The text of a message's token; in a native-only room, the text
    /// beside its writer's name.
    pub fn decrypt_message(&self, token: &str) -> String {
        let plaintext = self.decrypt(token);
        if !self.names_inside {
            return plaintext;
        }
        let inside: Value = serde_json::from_str(&plaintext).expect("a name inside");
        inside["text"].as_str().expect("text").to_owned()
    }
}

/// The port in `cmd-chat serve`'s first banner line on 127.0.0.1, if `line`
/// is that line.
pub fn banner_port(line: &str) -> Option<u16> {
    line.strip_prefix("cmd-chat room listening on 127.0.0.1:")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
