//! Rooms people can rely on: delivery receipts, reconnecting without loss
//! (through a proxy that cuts connections), taking over a session whose old
//! connection the server has not yet seen die, and room lifetime.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cmd_chat::client::private::PrivateError;
use cmd_chat::client::{Client, ClientError, Event};
use cmd_chat::server::ServerConfig;
use common::*;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP proxy in front of the server that a test can cut, or point at
/// another server (one "restarted" on the same address).
struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    /// Upstream halves kept open after their client side was cut, so the
    /// server still believes those members are there.
    zombies: Vec<TcpStream>,
    /// While set, new connections are closed at once.
    refusing: bool,
    /// Where new connections go; `None` until started.
    upstream: Option<SocketAddr>,
    /// Live connections: a spare handle on the upstream socket, and the pump
    /// task whose abort drops both sockets.
    upstreams: Vec<(TcpStream, JoinHandle<()>)>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState {
            upstream: Some(upstream),
            ..ProxyState::default()
        }));
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = {
                    let state = shared.lock().unwrap();
                    if state.refusing {
                        continue;
                    }
                    state.upstream.expect("set at start")
                };
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                // Keep a clone of the upstream socket so a test can leave it open.
                let keep = server.into_std().unwrap();
                let spare = TcpStream::from_std(keep.try_clone().unwrap()).unwrap();
                let server = TcpStream::from_std(keep).unwrap();
                let pump = tokio::spawn(async move {
                    let (mut client, mut server) = (client, server);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                shared.lock().unwrap().upstreams.push((spare, pump));
            }
        });
        Proxy {
            addr,
            state,
            accept,
        }
    }

    /// Cuts every connection, both sides: the server sees the member leave.
    fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        for (_, pump) in state.upstreams.drain(..) {
            pump.abort();
        }
    }

    /// Cuts only the client side: the server still holds the old connection.
    fn cut_client_side(&self) {
        let mut state = self.state.lock().unwrap();
        let upstreams: Vec<_> = state.upstreams.drain(..).collect();
        for (spare, pump) in upstreams {
            pump.abort();
            state.zombies.push(spare);
        }
    }

    fn refuse(&self, refusing: bool) {
        self.state.lock().unwrap().refusing = refusing;
    }

    /// Sends new connections to `upstream` from now on.
    fn retarget(&self, upstream: SocketAddr) {
        self.state.lock().unwrap().upstream = Some(upstream);
    }

    fn config(&self, name: &str) -> cmd_chat::client::ClientConfig {
        cmd_chat::client::ClientConfig {
            server: self.addr.to_string(),
            username: name.into(),
            password: cmd_chat::crypto::Password::new(PASSWORD.into()),
            allow_legacy: false,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn join_through(proxy: &Proxy, name: &str) -> Client {
    tokio::time::timeout(PATIENCE, Client::connect(proxy.config(name)))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn every_message_is_acknowledged_with_its_sequence_number() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let first = ann.send("one").await.unwrap();
    let second = ann.send("two").await.unwrap();
    let mut receipts = Vec::new();
    while receipts.len() < 2 {
        if let Event::Sent { reference, seq } = until(&mut ann, |_| true).await {
            receipts.push((reference, seq));
        }
    }
    assert_eq!(receipts, [(first, 1), (second, 2)]);
}

#[tokio::test]
async fn an_unconfirmed_message_is_reported_failed_and_can_be_resent() {
    let server = TestServer::native().await;
    let proxy = Proxy::start(server.addr).await;
    let mut bob = server.join("bob").await;
    let mut ann = join_through(&proxy, "ann").await;
    ann.set_ack_timeout(Duration::from_millis(300));
    next(&mut bob).await; // ann joined
    // The connection is cut before the message gets through.
    proxy.cut();
    let reference = ann.send("lost in transit").await.unwrap();
    let failed = until(&mut ann, |e| matches!(e, Event::SendFailed { .. })).await;
    assert!(
        matches!(failed, Event::SendFailed { reference: r, .. } if r == reference),
        "{failed:?}"
    );
    until(&mut ann, |e| matches!(e, Event::Reconnected { .. })).await;
    let again = ann
        .resend(reference)
        .await
        .unwrap()
        .expect("the failed message is kept");
    let Event::Sent {
        reference: confirmed,
        ..
    } = until(&mut ann, |e| matches!(e, Event::Sent { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(confirmed, again);
    let (from, text, _) = next_message(&mut bob).await;
    assert_eq!((from.as_str(), text.as_str()), ("ann", "lost in transit"));
    assert_eq!(
        ann.resend(reference).await.unwrap(),
        None,
        "a resent message is no longer pending"
    );
}

#[tokio::test]
async fn reconnecting_through_repeated_cuts_loses_and_repeats_nothing() {
    let server = TestServer::start(ServerConfig {
        rate_per_sec: 100_000,
        ..TestServer::config_for_tests()
    })
    .await;
    let proxy = Arc::new(Proxy::start(server.addr).await);
    let mut rx = join_through(&proxy, "rx").await;
    let mut tx = server.join("tx").await;

    const MESSAGES: usize = 300;
    let (back, mut backs) = tokio::sync::mpsc::unbounded_channel();
    let receiver = tokio::spawn(async move {
        let mut texts = Vec::new();
        let mut reconnects = 0;
        while texts.len() < MESSAGES {
            match tokio::time::timeout(PATIENCE, rx.next_event())
                .await
                .expect("events keep coming")
                .unwrap()
            {
                Event::Message(m) => texts.push(m.text.clone()),
                Event::Reconnected { complete, .. } => {
                    assert!(complete, "the history still held everything");
                    reconnects += 1;
                    let _ = back.send(());
                }
                _ => {}
            }
        }
        (texts, reconnects)
    });
    // Four cuts, each once the receiver is back from the one before, while
    // the sender goes on sending.
    let mut cuts = 0;
    for i in 0..MESSAGES {
        tx.send(&format!("m{i}")).await.unwrap();
        if i % 75 == 40 {
            if cuts > 0 {
                tokio::time::timeout(PATIENCE, backs.recv())
                    .await
                    .expect("the receiver comes back");
            }
            proxy.cut();
            cuts += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (texts, reconnects) = tokio::time::timeout(PATIENCE * 2, receiver)
        .await
        .unwrap()
        .unwrap();
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected, "every message once, in order");
    assert_eq!(reconnects, cuts, "one reconnect for each cut");
}

#[tokio::test]
async fn a_reconnect_says_when_the_history_no_longer_holds_what_was_missed() {
    let server = TestServer::start(ServerConfig {
        history_messages: 5,
        ..TestServer::config_for_tests()
    })
    .await;
    let proxy = Proxy::start(server.addr).await;
    let mut rx = join_through(&proxy, "rx").await;
    let mut tx = server.join("tx").await;
    proxy.refuse(true);
    proxy.cut();
    until(&mut rx, |e| matches!(e, Event::Reconnecting { .. })).await;
    for i in 0..20 {
        tx.send(&format!("while away {i}")).await.unwrap();
        next_message(&mut tx).await;
    }
    proxy.refuse(false);
    let back = until(&mut rx, |e| matches!(e, Event::Reconnected { .. })).await;
    assert_eq!(
        back,
        Event::Reconnected {
            missed: 5,
            complete: false
        }
    );
    assert_eq!(next_message(&mut rx).await.1, "while away 15");
}

#[tokio::test]
async fn a_member_takes_over_its_own_session_that_the_server_thinks_alive() {
    let server = TestServer::native().await;
    let proxy = Proxy::start(server.addr).await;
    let mut ann = server.join("ann").await;
    let mut rx = join_through(&proxy, "rx").await;
    next(&mut ann).await; // rx joined
    // The client loses its side; the server still holds rx's old connection.
    proxy.cut_client_side();
    let back = until(&mut rx, |e| matches!(e, Event::Reconnected { .. })).await;
    assert_eq!(
        back,
        Event::Reconnected {
            missed: 0,
            complete: true
        }
    );
    assert_eq!(
        server.room.member_names(),
        ["ann", "rx"],
        "one rx, not a refused name"
    );
    rx.send("still me").await.unwrap();
    // Ann saw no leave and no join, just the message.
    match next(&mut ann).await {
        Event::Message(m) => assert_eq!((m.from.as_str(), m.text.as_str()), ("rx", "still me")),
        other => panic!("ann saw {other:?} before the message"),
    }
}

/// Ann is cut off through `cut` while bob, to whom she has a private
/// message waiting for its handshake, leaves and dan joins. Back in the
/// room she must hear of both, lose what she held for bob, and hear
/// nothing twice.
async fn members_change_while_away(cut: fn(&Proxy)) {
    let server = TestServer::native().await;
    let proxy = Proxy::start(server.addr).await;
    let bob = server.join("bob").await;
    let mut cat = server.join("cat").await;
    let mut ann = join_through(&proxy, "ann").await;
    assert_eq!(next(&mut cat).await, Event::Joined { user: "ann".into() });
    // Bob's client is not reading, so the handshake stays open.
    ann.send_private("bob", "psst").await.unwrap();
    proxy.refuse(true);
    cut(&proxy);
    until(&mut ann, |e| matches!(e, Event::Reconnecting { .. })).await;
    bob.leave().await.unwrap();
    until(&mut cat, |e| *e == Event::Left { user: "bob".into() }).await;
    let _dan = server.join("dan").await;
    until(&mut cat, |e| *e == Event::Joined { user: "dan".into() }).await;
    proxy.refuse(false);

    assert_eq!(
        until(&mut ann, |e| matches!(e, Event::Reconnected { .. })).await,
        Event::Reconnected {
            missed: 0,
            complete: true
        }
    );
    ann.send("back").await.unwrap();
    let mut seen = Vec::new();
    loop {
        match next(&mut ann).await {
            Event::Message(m) if m.text == "back" => break,
            event => seen.push(event),
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], Event::Left { user: "bob".into() });
    assert!(
        matches!(&seen[1], Event::PrivateNotSent { to, count: 1, .. } if to == "bob"),
        "{seen:?}"
    );
    assert_eq!(seen[2], Event::Joined { user: "dan".into() });
    let mut users = ann.users();
    users.sort();
    assert_eq!(users, ["ann", "cat", "dan"]);
    let refused = ann.send_private("bob", "still there?").await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Private(PrivateError::NoSuchUser(n)) if n == "bob"),
        "{refused:?}"
    );
    assert!(ann.safety_code("bob").is_none());
}

#[tokio::test]
async fn a_takeover_reports_who_left_and_joined_while_away() {
    // The server still holds ann's old connection: she takes it over.
    members_change_while_away(Proxy::cut_client_side).await;
}

#[tokio::test]
async fn a_rejoin_reports_who_left_and_joined_while_away_but_not_ourselves() {
    // The server saw ann leave: she comes back as a new member.
    members_change_while_away(Proxy::cut).await;
}

#[tokio::test]
async fn taking_over_a_session_needs_its_secret() {
    let server = TestServer::native().await;
    let ann = server.join("ann").await;
    let ann_id = ann.user_id().expect("native rooms give an id").to_owned();
    for token in [None, Some(STANDARD.encode([7u8; 32]))] {
        let mut raw = Raw::connect(server.addr).await;
        let mut ask = json!({"resume": ann_id, "room_id": server.room.id()});
        if let Some(token) = token {
            ask["token"] = json!(token);
        }
        let login = raw
            .begin_login("ann", PASSWORD, true, ask)
            .await
            .expect("a takeover may be attempted");
        let reply = raw.end_login(login).await.unwrap_err();
        assert_eq!(reply["code"], "name_taken", "{reply}");
    }
    assert_eq!(server.room.member_names(), ["ann"]);
    drop(ann);
}

#[tokio::test]
async fn an_empty_room_closes_itself_after_idle_exit() {
    let server = TestServer::start(ServerConfig {
        idle_exit: Some(Duration::from_millis(300)),
        ..TestServer::config_for_tests()
    })
    .await;
    let ann = server.join("ann").await;
    ann.leave().await.unwrap();
    server.finished().await;
}

#[tokio::test]
async fn old_messages_expire() {
    let server = TestServer::start(ServerConfig {
        expire: Some(Duration::from_millis(300)),
        ..TestServer::config_for_tests()
    })
    .await;
    let mut ann = server.join("ann").await;
    ann.send("soon forgotten").await.unwrap();
    next_message(&mut ann).await;
    assert_eq!(server.room.history_len(), 1);
    let mut waited = 0;
    while server.room.history_len() > 0 {
        waited += 1;
        assert!(waited < 200, "the message never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let late = server.join("late").await;
    assert_eq!(late.history_count(), 0);
}

#[tokio::test]
async fn a_reconnect_survives_next_event_being_cancelled_by_input() {
    let server = TestServer::native().await;
    let proxy = Proxy::start(server.addr).await;
    let mut rx = join_through(&proxy, "rx").await;
    let mut tx = server.join("tx").await;
    proxy.cut();
    // A front end whose input wakes it every 3 ms cancels next_event each
    // time; the reconnection must still get through.
    let mut back = false;
    for _ in 0..5000 {
        tokio::select! {
            event = rx.next_event() => {
                if let Event::Reconnected { .. } = event.unwrap() {
                    back = true;
                    break;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(3)) => {}
        }
    }
    assert!(back, "never reconnected");
    tx.send("after the cut").await.unwrap();
    assert_eq!(next_message(&mut rx).await.1, "after the cut");
}

#[tokio::test]
async fn a_restarted_server_is_a_new_room_and_the_client_says_so() {
    let old = TestServer::native().await;
    let proxy = Proxy::start(old.addr).await;
    let mut ann = join_through(&proxy, "ann").await;
    let mut bob = old.join("bob").await;
    for i in 0..5 {
        bob.send(&format!("old {i}")).await.unwrap();
        assert_eq!(next_message(&mut ann).await.1, format!("old {i}"));
    }
    drop(bob);
    // The server process dies and a new one starts on the same address with
    // the same password: a new room, whose numbers start again at 1.
    proxy.refuse(true);
    proxy.cut();
    until(&mut ann, |e| matches!(e, Event::Reconnecting { .. })).await;
    old.shutdown().await;
    let new = TestServer::native().await;
    proxy.retarget(new.addr);
    let mut carol = new.join("carol").await;
    for i in 0..3 {
        carol.send(&format!("new {i}")).await.unwrap();
        next_message(&mut carol).await;
    }
    proxy.refuse(false);
    // Ann is told, and gets the new room's messages, under its new key.
    let restarted = until(&mut ann, |e| {
        matches!(e, Event::RoomRestarted | Event::Reconnected { .. })
    })
    .await;
    assert_eq!(restarted, Event::RoomRestarted);
    assert_eq!(
        next(&mut ann).await,
        Event::Reconnected {
            missed: 3,
            complete: true
        }
    );
    // RoomRestarted already said everyone is new: no leave or join each.
    for i in 0..3 {
        match next(&mut ann).await {
            Event::Message(m) => assert_eq!(m.text, format!("new {i}")),
            other => panic!("expected message new {i}, got {other:?}"),
        }
    }
    assert_eq!(ann.users(), ["carol", "ann"]);
    // A later reconnect resumes in the new room's numbers.
    proxy.refuse(true);
    proxy.cut();
    until(&mut ann, |e| matches!(e, Event::Reconnecting { .. })).await;
    carol.send("while away").await.unwrap();
    next_message(&mut carol).await;
    proxy.refuse(false);
    assert_eq!(
        until(&mut ann, |e| matches!(e, Event::Reconnected { .. })).await,
        Event::Reconnected {
            missed: 1,
            complete: true
        }
    );
    assert_eq!(next_message(&mut ann).await.1, "while away");
}

#[tokio::test]
async fn a_resume_from_another_room_is_a_fresh_join() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    for i in 0..3 {
        ann.send(&format!("m{i}")).await.unwrap();
        next_message(&mut ann).await;
    }
    // A member of an earlier room on this address, asking for what came
    // after its message 2 there: this room's messages 1 and 2 are news to it.
    let mut raw = Raw::connect(server.addr).await;
    let login = raw
        .begin_login(
            "bob",
            PASSWORD,
            true,
            json!({"resume": "a-member-of-another-room", "room_id": "another-room", "after_seq": 2}),
        )
        .await
        .unwrap();
    let init = raw.end_login(login).await.unwrap();
    assert_eq!(init["messages"].as_array().unwrap().len(), 3, "{init}");
    assert!(init.get("complete").is_none(), "not a resume: {init}");
    assert!(init.get("after_seq").is_none(), "not a resume: {init}");
    let room_id = init["room_id"]
        .as_str()
        .expect("native init names the room");

    // Naming this room but no earlier session, it is still a fresh join: a
    // resume point someone slipped into a newcomer's login (it travels in
    // clear) must not hide the history from it.
    let mut raw = Raw::connect(server.addr).await;
    let login = raw
        .begin_login(
            "cat",
            PASSWORD,
            true,
            json!({"room_id": room_id, "after_seq": 2}),
        )
        .await
        .unwrap();
    let init = raw.end_login(login).await.unwrap();
    assert_eq!(init["messages"].as_array().unwrap().len(), 3, "{init}");
    assert!(init.get("after_seq").is_none(), "not a resume: {init}");

    // Naming this room and a session of it, the same request is a resume.
    let mut raw = Raw::connect(server.addr).await;
    let login = raw
        .begin_login(
            "dan",
            PASSWORD,
            true,
            json!({"room_id": room_id, "resume": "a-session-that-ended", "after_seq": 2}),
        )
        .await
        .unwrap();
    let init = raw.end_login(login).await.unwrap();
    assert_eq!(init["messages"].as_array().unwrap().len(), 1, "{init}");
    assert_eq!(init["complete"], true);
    assert_eq!(init["after_seq"], 2, "the server says what it resumed from");
}

/// A proxy that sets `after_seq` in every `srp_verify` it passes to
/// `after_seq`, as an attacker on the network path could: that line goes
/// before the session is sealed.
async fn tampering_proxy(upstream: SocketAddr, after_seq: u64) -> (SocketAddr, JoinHandle<()>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            let (client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
            tokio::spawn(async move {
                let mut lines = BufReader::new(client_read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let line = match serde_json::from_str::<serde_json::Value>(&line) {
                        Ok(mut frame)
                            if frame["cmd"] == "srp_verify" && frame.get("after_seq").is_some() =>
                        {
                            frame["after_seq"] = json!(after_seq);
                            frame.to_string()
                        }
                        _ => line,
                    };
                    if server_write
                        .write_all(format!("{line}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_resume_altered_on_the_network_is_noticed() {
    let server = TestServer::native().await;
    let (tampering, _task) = tampering_proxy(server.addr, 1_000_000).await;
    let proxy = Proxy::start(tampering).await;
    let mut rx = join_through(&proxy, "rx").await;
    let mut tx = server.join("tx").await;
    proxy.refuse(true);
    proxy.cut();
    until(&mut rx, |e| matches!(e, Event::Reconnecting { .. })).await;
    tx.send("said while rx was away").await.unwrap();
    next_message(&mut tx).await;
    proxy.refuse(false);
    // Asked to skip everything, the server would send nothing and call it
    // complete; the client must not take that as "nothing was missed".
    loop {
        match tokio::time::timeout(PATIENCE, rx.next_event())
            .await
            .expect("the client decides")
        {
            Ok(Event::Reconnected { .. }) => panic!("a tampered resume was accepted"),
            Ok(_) => continue,
            Err(e) => {
                assert!(e.to_string().contains("altered"), "{e}");
                break;
            }
        }
    }
}

/// What a native `init` gives a member so it can take its session over.
struct Session {
    user_id: String,
    room_id: String,
    token: cmd_chat::crypto::Key32,
}

fn session_of(init: &serde_json::Value) -> Session {
    let token: [u8; 32] = STANDARD
        .decode(init["resume_token"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    Session {
        user_id: init["user_id"].as_str().unwrap().into(),
        room_id: init["room_id"].as_str().unwrap().into(),
        token: cmd_chat::crypto::Key32::new(token),
    }
}

/// Starts a login that will take `session` over, up to its `srp_verify`.
async fn begin_takeover(
    server: &TestServer,
    name: &str,
    session: &Session,
) -> (Raw, common::Handshake) {
    let mut raw = Raw::connect(server.addr).await;
    let login = raw
        .begin_login(
            name,
            PASSWORD,
            true,
            json!({"resume": session.user_id, "room_id": session.room_id,
                   "token": STANDARD.encode(session.token.as_bytes())}),
        )
        .await
        .unwrap();
    (raw, login)
}

/// Frames until the server closes the connection.
/// Frames until the connection closes, or until a line cut short by a
/// reset (the server closing with unread input resets the connection).
async fn frames_until_closed(raw: &mut Raw) -> Vec<serde_json::Value> {
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = raw.recv_or_cut().await {
        frames.push(frame);
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_connection_cannot_act_on_frames_it_still_holds() {
    let server = TestServer::start(ServerConfig {
        rate_per_sec: 1_000_000,
        ..TestServer::config_for_tests()
    })
    .await;
    let mut old = Raw::connect(server.addr).await;
    let session = session_of(&old.login("ann", PASSWORD, true).await.unwrap());
    let (mut new, login) = begin_takeover(&server, "ann", &session).await;
    // The old connection has a long run of messages on its way when its
    // session is taken over: the server is still reading them.
    const BATCH: usize = 20_000;
    let mut batch = Vec::new();
    for i in 0..BATCH {
        let frame = json!({"type": "message", "text": old.encrypt_message(&format!("old {i}"))});
        let sealed = old
            .sealer
            .as_mut()
            .unwrap()
            .seal(frame.to_string().as_bytes())
            .unwrap();
        batch.extend_from_slice(
            json!({"sealed": STANDARD.encode(sealed)})
                .to_string()
                .as_bytes(),
        );
        batch.push(b'\n');
    }
    // The takeover ends once the server has stored some of the batch.
    let take_over = async {
        while server.room.history_len() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        new.end_login(login).await.expect("the takeover passes")
    };
    let ((), init) = tokio::join!(old.send_bytes(&batch), take_over);
    assert_eq!(init["user_id"].as_str(), Some(session.user_id.as_str()));
    // The old connection ends. Its farewell says why, unless closing with
    // the rest of the batch unread reset the connection and lost it.
    let old_frames = frames_until_closed(&mut old).await;
    for error in old_frames.iter().filter(|f| f.get("error").is_some()) {
        assert_eq!(error["code"], "replaced", "{error}");
    }
    // Whatever the old connection posted before the takeover is in the new
    // one's init; after it, the new connection must hear nothing from it.
    new.send(json!({"type": "message", "text": new.encrypt_message("marker")}))
        .await;
    let mut late = Vec::new();
    let stored_before = loop {
        let frame = new.recv_type("message").await;
        let text = new.decrypt_message(frame["data"]["text"].as_str().unwrap());
        if text == "marker" {
            break frame["data"]["seq"].as_u64().unwrap() - 1;
        }
        late.push(text);
    };
    // The takeover landed in the middle of the batch, as the test means.
    assert!(
        (1..BATCH as u64).contains(&stored_before),
        "{stored_before} of {BATCH} stored before the takeover"
    );
    assert!(
        late.is_empty(),
        "{} messages posted by the replaced connection after the takeover, first {:?}",
        late.len(),
        late.first()
    );
    assert_eq!(server.room.member_names(), ["ann"]);
}

#[tokio::test]
async fn of_two_takeovers_begun_together_the_first_to_finish_wins() {
    let server = TestServer::native().await;
    let mut bob = server.join("bob").await;
    let mut old = Raw::connect(server.addr).await;
    let session = session_of(&old.login("ann", PASSWORD, true).await.unwrap());
    next(&mut bob).await; // ann joined
    // Two logins set out to take over the same connection, say an attempt
    // the client gave up on and the one after it.
    let (mut slow, slow_login) = begin_takeover(&server, "ann", &session).await;
    let (mut fast, fast_login) = begin_takeover(&server, "ann", &session).await;
    fast.end_login(fast_login)
        .await
        .expect("the first takeover passes");
    assert_eq!(
        frames_until_closed(&mut old).await.last().unwrap()["code"],
        "replaced"
    );
    // The connection the slow login meant to replace is gone; it must not
    // replace its successor.
    let refusal = slow.end_login(slow_login).await.unwrap_err();
    assert_eq!(refusal["code"], "name_taken", "{refusal}");
    assert_eq!(slow.recv().await, None);
    fast.send(json!({"type": "message", "text": fast.encrypt_message("still here")}))
        .await;
    let echo = fast.recv_type("message").await;
    assert_eq!(
        fast.decrypt_message(echo["data"]["text"].as_str().unwrap()),
        "still here"
    );
    assert_eq!(next_message(&mut bob).await.1, "still here");
    assert_eq!(server.room.member_names(), ["bob", "ann"]);
}

#[tokio::test]
async fn a_takeover_of_a_session_that_ended_meanwhile_joins_afresh() {
    let server = TestServer::native().await;
    let mut bob = server.join("bob").await;
    let mut old = Raw::connect(server.addr).await;
    let session = session_of(&old.login("ann", PASSWORD, true).await.unwrap());
    next(&mut bob).await; // ann joined
    let (mut late, login) = begin_takeover(&server, "ann", &session).await;
    // The old connection leaves cleanly before the takeover completes.
    old.send(json!({"type": "leave"})).await;
    frames_until_closed(&mut old).await;
    assert!(matches!(next(&mut bob).await, Event::Left { .. }));
    // The name is free and the password proved: the login joins, as a new
    // member, and the others see it arrive.
    let init = late.end_login(login).await.unwrap();
    assert_ne!(init["user_id"].as_str(), Some(session.user_id.as_str()));
    assert_eq!(next(&mut bob).await, Event::Joined { user: "ann".into() });
    assert_eq!(server.room.member_names(), ["bob", "ann"]);
}

/// Sends `n` messages at once; how many the server stored (the rest are
/// refused as over the rate).
async fn burst(raw: &mut Raw, n: u64) -> u64 {
    for reference in 1..=n {
        let text = raw.encrypt_message("spam");
        raw.send(json!({"type": "message", "text": text, "ref": reference}))
            .await;
    }
    let (mut stored, mut answered) = (0, 0);
    while answered < n {
        let frame = raw.recv().await.expect("the connection stays open");
        if frame["type"] == "sent" {
            stored += 1;
            answered += 1;
        } else if frame["code"] == "rate_limited" {
            answered += 1;
        }
    }
    stored
}

/// A member that takes its own session over, as a reconnecting client does,
/// keeps the session's `--rate` bucket: a takeover is not a fresh burst
/// (and the others see no leave and join to tell them it happened).
#[tokio::test]
async fn taking_a_session_over_does_not_refill_its_rate() {
    let server = TestServer::start(ServerConfig {
        rate_per_sec: 1,
        ..TestServer::config_for_tests()
    })
    .await;
    let mut raw = Raw::connect(server.addr).await;
    let session = session_of(&raw.login("ann", PASSWORD, true).await.unwrap());
    let started = std::time::Instant::now();
    let mut stored = burst(&mut raw, 60).await;
    for _ in 0..3 {
        let (mut again, login) = begin_takeover(&server, "ann", &session).await;
        again.end_login(login).await.expect("the takeover passes");
        stored += burst(&mut again, 60).await;
        raw = again;
    }
    drop(raw);
    // The burst (50) and one a second since, however slowly this ran;
    // four fresh bursts would be 200.
    let refilled = started.elapsed().as_secs() + 1;
    assert!(
        (50..=50 + refilled).contains(&stored),
        "{stored} messages stored at --rate 1 in {refilled} s"
    );
}

/// A wrong guess from `from`: a login with a wrong password; the code of
/// its refusal.
async fn wrong_guess(from: std::net::Ipv4Addr, server: &TestServer) -> String {
    let mut raw = Raw::connect_from(from, server.addr).await;
    let refusal = raw
        .login("eve", "not the password", true)
        .await
        .unwrap_err();
    refusal["code"].as_str().unwrap().to_owned()
}

/// Strangers guessing from many addresses spend the room's budget of wrong
/// passwords, and newcomers wait; a member whose connection drops proves
/// its session (which is no password guess) and comes straight back.
#[tokio::test]
async fn a_member_coming_back_is_not_held_to_the_room_wide_budget() {
    use cmd_chat::server::guard::{FREE_FAILURES, GLOBAL_FAILURES_PER_MINUTE};
    let server = TestServer::native().await;
    let proxy = Proxy::start(server.addr).await;
    let mut ann = join_through(&proxy, "ann").await;
    let addresses = GLOBAL_FAILURES_PER_MINUTE / FREE_FAILURES;
    for host in 0..addresses {
        let from = std::net::Ipv4Addr::new(127, 0, 0, 10 + host as u8);
        for _ in 0..FREE_FAILURES {
            assert_eq!(wrong_guess(from, &server).await, "auth_failed");
        }
    }
    // The budget refills one guess every two seconds, so on a slow machine
    // it may have a guess left: spend it, from fresh addresses, until a
    // newcomer is turned away (bounded: at most the whole budget again).
    let mut locked_out = false;
    for extra in 0..GLOBAL_FAILURES_PER_MINUTE {
        match server.try_join(&format!("bob{extra}"), PASSWORD).await {
            Err(ClientError::LockedOut(_)) => {
                locked_out = true;
                break;
            }
            Err(other) => panic!("{other}"),
            Ok(bob) => drop(bob),
        }
        let from = std::net::Ipv4Addr::new(127, 0, 1, 10 + extra as u8);
        wrong_guess(from, &server).await;
    }
    assert!(
        locked_out,
        "the room's budget of wrong passwords never ran out"
    );
    proxy.cut();
    // The budget refills a little every few seconds, so a member held to it
    // would get back in too, late: what shows is that it was never refused.
    loop {
        match next(&mut ann).await {
            Event::Reconnected { .. } => break,
            Event::Reconnecting { reason, .. } => {
                assert!(!reason.contains("refused"), "held to the budget: {reason}");
            }
            _ => {}
        }
    }
    ann.send("back").await.unwrap();
    assert_eq!(next_message(&mut ann).await.1, "back");
}
