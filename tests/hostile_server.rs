//! A hostile server against the client: an impostor that knows the password
//! (so SRP succeeds) and then sends what no honest cmd-chat server would.
//! The client must show nothing twice, never hang, never loop for ever, and
//! never panic.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cmd_chat::client::{Client, ClientConfig, ClientError, Event};
use cmd_chat::crypto::srp::{ServerSession, Verifier};
use cmd_chat::crypto::transport::{Side, derive_keys};
use cmd_chat::crypto::{Password, RoomCipher};
use cmd_chat::protocol::handshake::{ServerHello, welcome};
use cmd_chat::protocol::limits::{MEMBER_MAX_LINE, PRE_AUTH_MAX_LINE};
use cmd_chat::protocol::wire::{MessageData, ServerEvent, UserInfo};
use cmd_chat::protocol::{FrameReader, FrameWriter};
use common::{PASSWORD, PATIENCE};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const ROOM_SALT: [u8; 16] = [7; 16];

fn config(addr: std::net::SocketAddr) -> ClientConfig {
    ClientConfig {
        server: addr.to_string(),
        username: "bob".into(),
        password: Password::new(PASSWORD.into()),
        allow_legacy: false,
    }
}

/// A message as an honest member would have written it.
fn message(seq: u64, text: &str) -> MessageData {
    let cipher = RoomCipher::from_password(&Password::new(PASSWORD.into()), &ROOM_SALT);
    MessageData {
        id: seq.to_string(),
        seq: Some(seq),
        text: cipher.encrypt(text),
        timestamp: "2026-12-04T10:00:00.000Z".into(),
        username: "ann".into(),
    }
}

/// The server's side of one sealed connection.
struct Session {
    reader: FrameReader<OwnedReadHalf>,
    writer: FrameWriter<OwnedWriteHalf>,
    /// What the client asked to resume after, if it reconnected.
    after_seq: Option<u64>,
}

/// Runs SRP as the server, with the right password, and seals.
async fn login(socket: TcpStream) -> Session {
    let verifier = Verifier::new(&Password::new(PASSWORD.into()));
    let (read, write) = socket.into_split();
    let mut reader = FrameReader::new(read, PRE_AUTH_MAX_LINE);
    let mut writer = FrameWriter::new(write);
    let Ok(Some(request)) = reader.read().await else {
        panic!("srp_init expected")
    };
    let hello = ServerHello::read(request, false).unwrap();
    let session = ServerSession::start(&verifier, &hello.a).unwrap();
    let (awaiting, challenge) =
        hello.challenge("u1".into(), &session.public(), verifier.salt(), "", None);
    writer.write(&challenge).await.unwrap();
    writer.flush().await.unwrap();
    let Ok(Some(request)) = reader.read().await else {
        panic!("srp_verify expected")
    };
    let proof = awaiting.read_proof(request).unwrap();
    let after_seq = proof.after_seq;
    let session = session.bind(&proof.transcript.expect("a native login"));
    let (h_amk, key) = session.verify(&proof.m).unwrap();
    writer.write(&welcome(&h_amk, false)).await.unwrap();
    let (sealer, opener) = derive_keys(&key, Side::Server);
    writer.seal(sealer);
    reader.seal(opener);
    reader.set_max_line(MEMBER_MAX_LINE);
    Session {
        reader,
        writer,
        after_seq,
    }
}

impl Session {
    /// Writes `events` and flushes them.
    async fn send(&mut self, events: impl IntoIterator<Item = ServerEvent>) {
        for event in events {
            self.writer.write(&event).await.unwrap();
        }
        self.writer.flush().await.unwrap();
    }
}

/// A message event, as the room relays it.
fn live(seq: u64, text: &str) -> ServerEvent {
    ServerEvent::Message {
        data: message(seq, text),
    }
}

/// Runs `script` against whoever connects to `listener`, then keeps what it
/// returns (its open sessions) alive until the test ends.
async fn impostor<F, Fut, T>(listener: TcpListener, script: F) -> (std::net::SocketAddr, Impostor)
where
    F: FnOnce(TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send,
    T: Send + 'static,
{
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _kept = script(listener).await;
        tokio::time::sleep(PATIENCE).await;
    });
    (addr, Impostor(task))
}

/// The impostor's task, stopped when the test is done with it.
struct Impostor(tokio::task::JoinHandle<()>);

impl Drop for Impostor {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Lets the next connection in: logs it in and describes the room, with no
/// messages; a reconnection is answered as a resume.
async fn admit(listener: &TcpListener) -> Session {
    let mut s = login(listener.accept().await.unwrap().0).await;
    let after_seq = s.after_seq;
    s.send([init(Vec::new(), None, after_seq)]).await;
    s
}

async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// The room as the impostor describes it: ann and bob, `messages` as history,
/// resumable (the same room id and a resume token each time).
fn init(messages: Vec<MessageData>, history: Option<u64>, after_seq: Option<u64>) -> ServerEvent {
    ServerEvent::Init {
        messages,
        users: vec![
            UserInfo {
                user_id: "u0".into(),
                username: "ann".into(),
            },
            UserInfo {
                user_id: "u1".into(),
                username: "bob".into(),
            },
        ],
        room_salt: Some(STANDARD.encode(ROOM_SALT)),
        user_id: Some("u1".into()),
        room_id: Some("room-1".into()),
        resume_token: Some(STANDARD.encode([9u8; 32])),
        after_seq,
        complete: after_seq.map(|_| true),
        locked: None,
        knocking: Vec::new(),
        max_file_size: None,
        history,
        admitted_by: None,
    }
}

/// The text of the message an impostor sends last, so that a test knows
/// it has seen everything before it (rather than waiting for a quiet spell).
const END: &str = "the impostor is done";

/// The last message of an impostor's script: [`END`], numbered past the rest.
fn end() -> ServerEvent {
    live(1000, END)
}

/// The next message `client` shows, as `(seq, text)`.
async fn next_message_of(client: &mut Client) -> (u64, String) {
    loop {
        if let Event::Message(m) = common::next(client).await {
            return (m.seq, m.text.to_string());
        }
    }
}

/// The messages `client` shows before [`END`], as `(seq, text)`.
async fn shown(client: &mut Client) -> Vec<(u64, String)> {
    let mut shown = Vec::new();
    loop {
        if let Event::Message(m) = common::next(client).await {
            if m.text == END {
                return shown;
            }
            shown.push((m.seq, m.text.to_string()));
        }
    }
}

/// The error that ends `client`'s session, events before it skipped.
async fn session_end(client: &mut Client) -> ClientError {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Err(e) = client.next_event().await {
                return e;
            }
        }
    })
    .await
    .expect("the session ends in time")
}

#[tokio::test]
async fn a_replayed_message_is_shown_once() {
    let (addr, _impostor) = impostor(loopback().await, |listener| async move {
        let mut s = login(listener.accept().await.unwrap().0).await;
        s.send([init(Vec::new(), None, None), live(5, "transfer 100 EUR")])
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The same ciphertext again, and an older one after it.
        s.send([
            live(5, "transfer 100 EUR"),
            live(4, "an old one"),
            live(6, "new"),
            end(),
        ])
        .await;
        s
    })
    .await;
    let mut bob = Client::connect(config(addr)).await.unwrap();
    assert_eq!(
        shown(&mut bob).await,
        [(5, "transfer 100 EUR".to_owned()), (6, "new".to_owned())]
    );
}

/// A server that relays an old token again as new gives it its own, new
/// time stamp; the token keeps the time its writer made it. Here the token
/// is fresh and the stamp an hour ahead, which is the same gap.
#[tokio::test]
async fn an_old_message_relayed_again_is_shown_as_such() {
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let (addr, _impostor) = impostor(loopback().await, move |listener| async move {
        let mut s = login(listener.accept().await.unwrap().0).await;
        let mut old = message(5, "sign the contract");
        old.timestamp = later.to_rfc3339();
        s.send([
            init(Vec::new(), None, None),
            live(4, "fresh"),
            ServerEvent::Message { data: old },
        ])
        .await;
        s
    })
    .await;
    let mut bob = Client::connect(config(addr)).await.unwrap();
    let mut relayed = Vec::new();
    while relayed.len() < 2 {
        if let Event::Message(m) = common::next(&mut bob).await {
            relayed.push((m.text.clone(), m.relayed_again.clone()));
        }
    }
    assert_eq!(relayed[0], ("fresh".to_owned(), None));
    assert_eq!(relayed[1].0, "sign the contract");
    let written = relayed[1].1.as_deref().expect("shown as relayed again");
    let written = chrono::DateTime::parse_from_rfc3339(written).unwrap();
    assert!((chrono::Utc::now() - written.to_utc()).num_seconds().abs() < 60);
}

/// A room that lists us under another name (as a login renamed on the
/// path would be) is left before anything is said in it.
#[tokio::test]
async fn a_room_that_lists_us_under_another_name_is_refused() {
    let (addr, _impostor) = impostor(loopback().await, |listener| async move {
        let mut s = login(listener.accept().await.unwrap().0).await;
        let mut renamed = init(Vec::new(), None, None);
        if let ServerEvent::Init { users, .. } = &mut renamed {
            users[1].username = "mallory".into();
        }
        s.send([renamed]).await;
        s
    })
    .await;
    let error = Client::connect(config(addr)).await.unwrap_err();
    assert!(matches!(error, ClientError::Tampered(_)), "{error}");
    assert_eq!(error.exit_code(), cmd_chat::client::exit_code::PROTOCOL);
}

#[tokio::test]
async fn a_message_replayed_after_a_reconnect_is_shown_once() {
    let (seen, seen_by_bob) = tokio::sync::oneshot::channel();
    let (addr, _impostor) = impostor(loopback().await, |listener| async move {
        // First session: message 5 live, then, once bob has shown it, the
        // connection drops.
        let mut s = login(listener.accept().await.unwrap().0).await;
        s.send([init(Vec::new(), None, None), live(5, "transfer 100 EUR")])
            .await;
        seen_by_bob.await.unwrap();
        drop(s);
        // The resume asks for what came after 5; message 5 comes again anyway.
        let mut s = login(listener.accept().await.unwrap().0).await;
        assert_eq!(s.after_seq, Some(5));
        let replay = vec![message(5, "transfer 100 EUR"), message(6, "new")];
        s.send([init(replay, None, s.after_seq), end()]).await;
        s
    })
    .await;
    let mut bob = Client::connect(config(addr)).await.unwrap();
    let first = next_message_of(&mut bob).await;
    assert_eq!(first, (5, "transfer 100 EUR".to_owned()));
    seen.send(()).unwrap();
    assert_eq!(shown(&mut bob).await, [(6, "new".to_owned())]);
}

#[tokio::test]
async fn an_absurd_history_count_is_no_panic() {
    let (addr, _impostor) = impostor(loopback().await, |listener| async move {
        let mut s = login(listener.accept().await.unwrap().0).await;
        s.send([init(vec![message(1, "hi")], Some(u64::MAX), None), end()])
            .await;
        s
    })
    .await;
    let mut bob = Client::connect(config(addr)).await.unwrap();
    assert_eq!(bob.history_count(), usize::MAX);
    assert_eq!(shown(&mut bob).await, [(1, "hi".to_owned())]);
}

#[tokio::test]
async fn a_server_that_stops_reading_is_given_up_on() {
    // A small receive buffer, so the client's answers fill it soon.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let (addr, _impostor) = impostor(socket.listen(1).unwrap(), |listener| async move {
        let mut s = admit(&listener).await;
        // Pings the client answers, and not a byte of the answers read:
        // enough to fill every buffer on the way many times over.
        for _ in 0..200_000 {
            if s.writer.write(&ServerEvent::Ping).await.is_err() {
                break;
            }
        }
        let _ = s.writer.flush().await;
        s
    })
    .await;
    let mut bob = Client::connect(config(addr)).await.unwrap();
    bob.set_reconnect(false);
    bob.set_silence_limit(Duration::from_secs(1));
    let ended = session_end(&mut bob).await;
    assert!(
        matches!(&ended, ClientError::ConnectionLost(reason) if reason.contains("stopped taking")),
        "{ended}"
    );
}

/// A server that takes every resume and drops it at once does not keep the
/// client logging in for ever: the attempts count on across such
/// reconnections (and their waits grow), so it gives up as it would on a
/// server that refused.
#[tokio::test]
async fn reconnections_dropped_at_once_use_up_the_attempts() {
    let (addr, _impostor) = impostor(loopback().await, |listener| async move {
        loop {
            admit(&listener).await;
            // And the connection drops.
        }
    })
    .await;
    let mut bob = Client::connect(config(addr)).await.unwrap();
    let mut reconnected = 0;
    let last_attempt = tokio::time::timeout(PATIENCE, async {
        loop {
            match bob.next_event().await.expect("still trying") {
                Event::Reconnected { .. } => reconnected += 1,
                Event::Reconnecting { attempt, .. } if attempt >= 4 => return attempt,
                _ => {}
            }
        }
    })
    .await
    .expect("the attempts count on across reconnections that drop at once");
    assert_eq!(last_attempt, 4);
    assert_eq!(reconnected, 3, "each attempt got in, and was dropped");
}

/// An impostor that announces `members` members, then one more joining.
async fn crowded_room(members: usize) -> (std::net::SocketAddr, Impostor) {
    impostor(loopback().await, move |listener| async move {
        let mut s = login(listener.accept().await.unwrap().0).await;
        let mut frame = init(Vec::new(), None, None);
        if let ServerEvent::Init { users, .. } = &mut frame {
            let listed = users.len();
            users.extend((listed..members).map(|i| UserInfo {
                user_id: format!("x{i}"),
                username: format!("n{i}"),
            }));
        }
        let one_more = ServerEvent::UserJoined {
            user_id: "one-more".into(),
            username: "zed".into(),
        };
        s.send([frame, one_more]).await;
        s
    })
    .await
}

/// The member list is bounded like everything else a server sends: no room
/// holds more than MAX_ROOM_MEMBERS, so a longer list is a protocol error.
#[tokio::test]
async fn a_member_list_longer_than_any_room_is_refused() {
    use cmd_chat::protocol::limits::MAX_ROOM_MEMBERS;
    let (addr, _impostor) = crowded_room(MAX_ROOM_MEMBERS + 1).await;
    let refused = Client::connect(config(addr)).await.err();
    assert!(
        matches!(&refused, Some(ClientError::Protocol(e)) if e.contains("members")),
        "{refused:?}"
    );

    let (addr, _impostor) = crowded_room(MAX_ROOM_MEMBERS).await;
    let mut bob = Client::connect(config(addr)).await.unwrap();
    assert_eq!(bob.users().len(), MAX_ROOM_MEMBERS);
    let ended = session_end(&mut bob).await;
    assert!(
        matches!(&ended, ClientError::Protocol(e) if e.contains("members")),
        "{ended}"
    );
}

/// Attempts refused while the server was away do not count against the
/// connection that follows: only reconnections dropped at once do.
#[tokio::test]
async fn a_quick_drop_after_a_long_outage_starts_almost_afresh() {
    let (addr, _impostor) = impostor(loopback().await, |listener| async move {
        drop(admit(&listener).await);
        // Away: three attempts turned away before they could log in.
        for _ in 0..3 {
            drop(listener.accept().await.unwrap());
        }
        // Back, but the first reconnection drops at once.
        drop(admit(&listener).await);
        admit(&listener).await
    })
    .await;
    let mut bob = Client::connect(config(addr)).await.unwrap();
    let mut attempts = Vec::new();
    let mut reconnected = 0;
    tokio::time::timeout(PATIENCE, async {
        while reconnected < 2 {
            match bob.next_event().await.expect("still trying") {
                Event::Reconnecting { attempt, .. } => attempts.push(attempt),
                Event::Reconnected { .. } => reconnected += 1,
                _ => {}
            }
        }
    })
    .await
    .expect("back in the room");
    assert_eq!(attempts, [1, 2, 3, 4, 2]);
}

/// A script whose messages are lost with the connection hears about every
/// one of them before it leaves, not only the first.
#[tokio::test]
async fn a_script_hears_of_every_message_lost_with_the_connection() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (addr, _impostor) = impostor(loopback().await, |listener| async move {
        let mut s = admit(&listener).await;
        // Takes both messages, confirms neither, and drops the connection.
        for _ in 0..2 {
            s.reader.read_text().await.unwrap().expect("a message");
        }
    })
    .await;
    let mut script = tokio::process::Command::new(env!("CARGO_BIN_EXE_cmd-chat"))
        .args(["connect", "127.0.0.1", &addr.port().to_string(), "bob"])
        .env("CMD_CHAT_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = script.stdin.take().unwrap();
    input.write_all(b"one\ntwo\n").await.unwrap();
    drop(input);
    let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
    let mut failed = Vec::new();
    while let Some(line) = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("the script goes on or ends in time")
        .unwrap()
    {
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "failed" {
            failed.push(event["ref"].as_u64().unwrap());
        }
    }
    assert_eq!(failed, [1, 2]);
}

/// An on-path attacker swaps one sealed record for garbage of valid base64.
/// The client reports a protocol error, and a caller that asks for the next
/// event anyway gets another error, not the record after the swapped one
/// (which would open, with the nonce after it): a record cannot be cut out
/// of the stream unnoticed.
#[tokio::test]
async fn a_swapped_record_ends_what_the_client_believes() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (server_addr, _impostor) = impostor(loopback().await, |listener| async move {
        let mut s = admit(&listener).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.send([live(1, "you are being kicked: reconnect to ann's server")])
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.send([live(2, "two")]).await;
        s
    })
    .await;
    // The attacker: a proxy that replaces the server's fourth line (challenge,
    // welcome, init, then record 1).
    let proxy = loopback().await;
    let addr = proxy.local_addr().unwrap();
    tokio::spawn(async move {
        let (client, _) = proxy.accept().await.unwrap();
        let server = TcpStream::connect(server_addr).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (sr, mut sw) = server.into_split();
        tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
        let mut lines = BufReader::new(sr).lines();
        let mut n = 0;
        while let Ok(Some(line)) = lines.next_line().await {
            let line = if n == 3 {
                format!("{{\"sealed\":\"{}\"}}", STANDARD.encode([0u8; 48]))
            } else {
                line
            };
            n += 1;
            cw.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        }
    });
    let mut bob = Client::connect(config(addr)).await.unwrap();
    let first = tokio::time::timeout(PATIENCE, bob.next_event())
        .await
        .unwrap();
    assert!(matches!(first, Err(ClientError::Protocol(_))), "{first:?}");
    let second = tokio::time::timeout(PATIENCE, bob.next_event())
        .await
        .unwrap();
    assert!(
        matches!(second, Err(ClientError::Protocol(_))),
        "record 1 was cut out and the stream went on: {second:?}"
    );
}

/// A room never has two members of one name, and names are what private
/// messages and `/verify` go by: a member list with two is refused, and a
/// join under a name we know under another id is that member leaving (with
/// the keys agreed with them) and a newcomer arriving.
#[tokio::test]
async fn a_second_member_of_one_name_never_speaks_for_the_first() {
    let (addr, _impostor) = impostor(loopback().await, |listener| async move {
        let mut s = login(listener.accept().await.unwrap().0).await;
        let mut frame = init(Vec::new(), None, None);
        if let ServerEvent::Init { users, .. } = &mut frame {
            users.push(UserInfo {
                user_id: "u2".into(),
                username: "ann".into(),
            });
        }
        s.send([frame]).await;
        s
    })
    .await;
    let refused = Client::connect(config(addr)).await.err();
    assert!(
        matches!(&refused, Some(ClientError::Protocol(e)) if e.contains("two members named ann")),
        "{refused:?}"
    );

    let (addr, _impostor) = impostor(loopback().await, |listener| async move {
        let mut s = admit(&listener).await;
        let second = ServerEvent::UserJoined {
            user_id: "u2".into(),
            username: "ann".into(),
        };
        s.send([second]).await;
        s
    })
    .await;
    let mut bob = Client::connect(config(addr)).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(PATIENCE, bob.next_event()).await {
            Ok(Ok(event @ (Event::Left { .. } | Event::Joined { .. }))) => seen.push(event),
            Ok(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            Event::Left { user: "ann".into() },
            Event::Joined { user: "ann".into() }
        ]
    );
    assert_eq!(bob.users(), ["bob", "ann"]);
}
