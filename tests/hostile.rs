//! A catalogue of hostile input. For every case: the offender gets a clear
//! error or a clean close, the server stays up, the member already in the
//! room is unaffected, and the history is intact.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cmd_chat::client::{Client, Event};
use cmd_chat::crypto::srp::ClientSession;
use common::*;
use serde_json::{Value, json};

/// A room with one member who has said one thing.
struct Scene {
    server: TestServer,
    ann: Client,
}

impl Scene {
    async fn new(legacy: bool) -> Self {
        let server = if legacy {
            TestServer::with_legacy().await
        } else {
            TestServer::native().await
        };
        let mut ann = server.join("ann").await;
        ann.send("before").await.unwrap();
        assert_eq!(next_message(&mut ann).await.1, "before");
        Scene { server, ann }
    }

    /// Ann still talks, history holds exactly her two messages, newcomers get in.
    async fn check_unharmed(mut self) {
        self.ann.send("after").await.unwrap();
        let heard = until(
            &mut self.ann,
            |e| matches!(e, Event::Message(m) if m.from == "ann"),
        )
        .await;
        assert!(
            matches!(heard, Event::Message(ref m) if m.text == "after"),
            "{heard:?}"
        );
        assert_eq!(
            self.server.room.history_len(),
            2,
            "nothing lost, nothing forged stored"
        );
        let mut late = self.server.join("late").await;
        assert_eq!(
            next_message(&mut late).await,
            ("ann".into(), "before".into(), true)
        );
        assert_eq!(
            next_message(&mut late).await,
            ("ann".into(), "after".into(), true)
        );
        assert!(self.server.room.member_names().contains(&"ann".to_owned()));
    }
}

/// Everything the server says before closing: only error lines, at least one
/// unless `silent_ok`. Returns the first error.
async fn refused(raw: &mut Raw, silent_ok: bool) -> Option<Value> {
    let mut first = None;
    while let Some(frame) = raw.recv().await {
        let error = frame.get("error").and_then(Value::as_str);
        assert!(
            error.is_some_and(|e| !e.is_empty()),
            "expected an error line, got {frame}"
        );
        first.get_or_insert(frame);
    }
    assert!(silent_ok || first.is_some(), "closed without saying why");
    first
}

/// Sends one raw line before authentication and expects a refusal with
/// `code` whose text says `meaning` (so it was refused for that fault).
async fn pre_auth_line(server: &TestServer, line: &str, code: &str, meaning: &str) {
    let mut raw = Raw::connect(server.addr).await;
    raw.send_line(line).await;
    let error = refused(&mut raw, false).await.unwrap();
    assert_eq!(error["code"], code, "{line} -> {error}");
    let text = error["error"].as_str().unwrap();
    assert!(
        text.contains(meaning),
        "{line} -> {text:?} lacks {meaning:?}"
    );
}

/// A valid native `srp_init` for "eve", with `change` applied: the one
/// fault a case names.
fn srp_init_with(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut line =
        json!({"cmd": "srp_init", "username": "eve", "A": a(), "native": NATIVE_PROTOCOL});
    change(line.as_object_mut().unwrap());
    line.to_string()
}

fn a() -> String {
    STANDARD.encode(ClientSession::new().public())
}

fn n_bytes() -> Vec<u8> {
    srp::groups::G_2048.n.to_bytes_be()
}

/// A raw native member, logged in.
async fn member(server: &TestServer, name: &str) -> Raw {
    let mut raw = Raw::connect(server.addr).await;
    raw.login(name, PASSWORD, true).await.unwrap();
    raw
}

/// A raw legacy member (room must allow legacy), logged in.
async fn legacy_member(server: &TestServer, name: &str) -> Raw {
    let mut raw = Raw::connect(server.addr).await;
    raw.login(name, PASSWORD, false).await.unwrap();
    raw
}

/// Seals `plain` with the member's next nonce, without sending it.
fn seal(raw: &mut Raw, plain: &str) -> Vec<u8> {
    raw.sealer.as_mut().unwrap().seal(plain.as_bytes()).unwrap()
}

fn sealed_line(bytes: &[u8]) -> String {
    json!({"sealed": STANDARD.encode(bytes)}).to_string()
}

/// Ends the case: the member's connection must close with a reason.
async fn expect_dropped(raw: &mut Raw) {
    let error = refused(raw, false).await.unwrap();
    assert_eq!(error["code"], "bad_request", "{error}");
}

/// The member stays: its next frame is an error with `code`.
async fn expect_error_reply(raw: &mut Raw, code: &str) {
    let frame = loop {
        let frame = raw.recv().await.expect("still connected");
        if frame.get("error").is_some() {
            break frame;
        }
    };
    assert_eq!(frame["code"], code, "{frame}");
}

macro_rules! hostile {
    ($(#[$meta:meta])* $name:ident, legacy: $legacy:expr, |$server:ident| $body:block) => {
        $(#[$meta])*
        #[tokio::test]
        async fn $name() {
            let scene = Scene::new($legacy).await;
            {
                let $server = &scene.server;
                $body
            }
            scene.check_unharmed().await;
        }
    };
    ($(#[$meta:meta])* $name:ident, |$server:ident| $body:block) => {
        hostile!($(#[$meta])* $name, legacy: false, |$server| $body);
    };
}

// ---- Before authentication -------------------------------------------------

hostile!(invalid_json, |s| {
    pre_auth_line(
        s,
        "this is not json",
        "bad_request",
        "malformed handshake line",
    )
    .await
});
hostile!(json_array, |s| {
    pre_auth_line(s, "[1, 2, 3]", "bad_request", "malformed handshake line").await
});
hostile!(json_number, |s| {
    pre_auth_line(s, "42", "bad_request", "malformed handshake line").await
});
hostile!(json_string, |s| {
    pre_auth_line(
        s,
        r#""srp_init""#,
        "bad_request",
        "malformed handshake line",
    )
    .await
});
hostile!(empty_object, |s| {
    pre_auth_line(s, "{}", "bad_request", "missing field `cmd`").await
});
hostile!(unknown_command, |s| {
    pre_auth_line(
        s,
        r#"{"cmd":"launch"}"#,
        "bad_request",
        "unknown variant `launch`",
    )
    .await
});
hostile!(command_of_wrong_type, |s| {
    pre_auth_line(
        s,
        r#"{"cmd":5}"#,
        "bad_request",
        "invalid type: integer `5`",
    )
    .await
});
hostile!(srp_init_without_username, |s| {
    let line = srp_init_with(|l| drop(l.remove("username")));
    pre_auth_line(s, &line, "bad_request", "missing field `username`").await
});
hostile!(srp_init_without_a, |s| {
    let line = srp_init_with(|l| drop(l.remove("A")));
    pre_auth_line(s, &line, "bad_request", "missing field `A`").await
});
hostile!(username_of_wrong_type, |s| {
    let line = srp_init_with(|l| drop(l.insert("username".into(), json!(7))));
    pre_auth_line(s, &line, "bad_request", "invalid type: integer `7`").await
});
hostile!(a_of_wrong_type, |s| {
    let line = srp_init_with(|l| drop(l.insert("A".into(), json!([1, 2]))));
    pre_auth_line(s, &line, "bad_request", "invalid type: sequence").await
});
hostile!(a_not_base64, |s| {
    let line = srp_init_with(|l| drop(l.insert("A".into(), json!("**not base64**"))));
    pre_auth_line(s, &line, "bad_request", "field A is not valid base64").await
});
hostile!(a_empty, |s| {
    let line = srp_init_with(|l| drop(l.insert("A".into(), json!(""))));
    pre_auth_line(s, &line, "bad_request", "public value A is invalid").await
});
hostile!(a_is_zero, |s| {
    let line = srp_init_with(|l| drop(l.insert("A".into(), json!(STANDARD.encode([0u8])))));
    pre_auth_line(s, &line, "bad_request", "public value A is invalid").await
});
// The one value of at most N's length that is 0 mod N besides 0 (2N and
// beyond are longer than N, which `a_longer_than_n` covers).
hostile!(a_is_n, |s| {
    let line = srp_init_with(|l| drop(l.insert("A".into(), json!(STANDARD.encode(n_bytes())))));
    pre_auth_line(s, &line, "bad_request", "public value A is invalid").await
});
hostile!(a_longer_than_n, |s| {
    let line = srp_init_with(|l| drop(l.insert("A".into(), json!(STANDARD.encode([7u8; 300])))));
    pre_auth_line(s, &line, "bad_request", "field A is too long").await
});
hostile!(username_empty, |s| {
    let line = srp_init_with(|l| drop(l.insert("username".into(), json!(""))));
    pre_auth_line(s, &line, "name_invalid", "the username is empty").await
});
hostile!(username_too_long, |s| {
    let line = srp_init_with(|l| drop(l.insert("username".into(), json!("x".repeat(33)))));
    pre_auth_line(s, &line, "name_invalid", "longer than").await
});
hostile!(username_with_escape_sequence, |s| {
    let line = srp_init_with(|l| drop(l.insert("username".into(), json!("eve\u{1b}[2J"))));
    pre_auth_line(s, &line, "name_invalid", "control or formatting").await
});
hostile!(username_with_bidi_override, |s| {
    let line = srp_init_with(|l| drop(l.insert("username".into(), json!("eve\u{202E}nna"))));
    pre_auth_line(s, &line, "name_invalid", "control or formatting").await
});
// Without the password a member's name is like any other: it gets a
// challenge, and a wrong proof the same refusal, so who is in the room is
// not told to whoever can reach the port.
hostile!(username_of_a_member, |s| {
    let mut raw = Raw::connect(s.addr).await;
    raw.send_line(
        &json!({"cmd": "srp_init", "username": "ann", "A": a(), "native": NATIVE_PROTOCOL})
            .to_string(),
    )
    .await;
    let challenge = raw.recv().await.expect("a challenge");
    assert!(challenge["B"].is_string(), "{challenge}");
    raw.send_line(
        &json!({"cmd": "srp_verify", "user_id": challenge["user_id"], "M": STANDARD.encode([0u8; 32])})
            .to_string(),
    )
    .await;
    let error = refused(&mut raw, false).await.unwrap();
    assert_eq!(error["code"], "auth_failed", "{error}");
});
hostile!(unknown_native_version, |s| {
    let line = srp_init_with(|l| drop(l.insert("native".into(), json!(99))));
    pre_auth_line(s, &line, "bad_request", "not 99").await
});
hostile!(legacy_client_in_native_room, |s| {
    let line = srp_init_with(|l| drop(l.remove("native")));
    pre_auth_line(s, &line, "legacy_refused", "admits only native").await
});
hostile!(srp_verify_before_srp_init, |s| {
    let line = json!({"cmd": "srp_verify", "user_id": "00000000-0000-0000-0000-000000000000", "M": STANDARD.encode([0u8; 32])});
    pre_auth_line(
        s,
        &line.to_string(),
        "bad_request",
        "expected srp_init first",
    )
    .await
});
hostile!(chat_frame_before_authentication, |s| {
    let line = json!({"type": "message", "text": "gAAAAABhello"}).to_string();
    pre_auth_line(s, &line, "bad_request", "missing field `cmd`").await
});
hostile!(clear_before_authentication, |s| {
    pre_auth_line(
        s,
        r#"{"type":"clear"}"#,
        "bad_request",
        "missing field `cmd`",
    )
    .await
});
hostile!(line_longer_than_pre_auth_limit, |s| {
    let line = srp_init_with(|l| drop(l.insert("username".into(), json!("e".repeat(8000)))));
    pre_auth_line(s, &line, "bad_request", "longer than").await
});
hostile!(megabyte_without_newline, |s| {
    let mut raw = Raw::connect(s.addr).await;
    raw.send_bytes(&vec![b'x'; 1 << 20]).await;
    refused(&mut raw, true).await;
});
hostile!(non_utf8_bytes, |s| {
    // A valid srp_init whose name holds two bytes that are not UTF-8.
    let line = srp_init_with(|l| drop(l.insert("username".into(), json!("eve@@"))));
    let bytes = line.replace("eve@@", "eve\u{1}\u{2}").into_bytes();
    let bytes: Vec<u8> = bytes
        .iter()
        .map(|&b| match b {
            1 => 0xff,
            2 => 0xfe,
            b => b,
        })
        .collect();
    let mut raw = Raw::connect(s.addr).await;
    raw.send_bytes(&[bytes, b"\n".to_vec()].concat()).await;
    let error = refused(&mut raw, false).await.unwrap();
    assert_eq!(error["code"], "bad_request");
    assert!(
        error["error"].as_str().unwrap().contains("not valid UTF-8"),
        "{error}"
    );
});
hostile!(nul_bytes, |s| {
    pre_auth_line(s, "\0\0\0\0", "bad_request", "malformed handshake line").await
});

async fn challenged(server: &TestServer, name: &str) -> (Raw, Value) {
    let mut raw = Raw::connect(server.addr).await;
    raw.send(json!({"cmd": "srp_init", "username": name, "A": a(), "native": NATIVE_PROTOCOL}))
        .await;
    let challenge = raw.recv().await.unwrap();
    assert!(challenge.get("B").is_some(), "{challenge}");
    (raw, challenge)
}

hostile!(wrong_proof, |s| {
    let (mut raw, challenge) = challenged(s, "eve").await;
    raw.send(json!({"cmd": "srp_verify", "user_id": challenge["user_id"], "M": STANDARD.encode([1u8; 32])})).await;
    assert_eq!(
        refused(&mut raw, false).await.unwrap()["code"],
        "auth_failed"
    );
});
hostile!(proof_for_another_login, |s| {
    let (_first, first_challenge) = challenged(s, "eve").await;
    let (mut raw, _) = challenged(s, "mallory").await;
    raw.send(json!({"cmd": "srp_verify", "user_id": first_challenge["user_id"], "M": STANDARD.encode([1u8; 32])})).await;
    assert_eq!(
        refused(&mut raw, false).await.unwrap()["code"],
        "bad_request"
    );
});
hostile!(proof_not_base64, |s| {
    let (mut raw, challenge) = challenged(s, "eve").await;
    raw.send(json!({"cmd": "srp_verify", "user_id": challenge["user_id"], "M": "%%%"}))
        .await;
    assert_eq!(
        refused(&mut raw, false).await.unwrap()["code"],
        "bad_request"
    );
});
hostile!(proof_too_long, |s| {
    let (mut raw, challenge) = challenged(s, "eve").await;
    raw.send(json!({"cmd": "srp_verify", "user_id": challenge["user_id"], "M": STANDARD.encode([1u8; 2000])})).await;
    assert_eq!(
        refused(&mut raw, false).await.unwrap()["code"],
        "bad_request"
    );
});
hostile!(srp_init_twice, |s| {
    let (mut raw, _) = challenged(s, "eve").await;
    raw.send(json!({"cmd": "srp_init", "username": "eve", "A": a(), "native": NATIVE_PROTOCOL}))
        .await;
    assert_eq!(
        refused(&mut raw, false).await.unwrap()["code"],
        "bad_request"
    );
});
hostile!(half_close_before_anything, |s| {
    let mut raw = Raw::connect(s.addr).await;
    raw.shutdown_write().await;
    refused(&mut raw, true).await;
});
hostile!(half_close_mid_handshake_frees_the_name, |s| {
    let (mut raw, _) = challenged(s, "eve").await;
    raw.shutdown_write().await;
    refused(&mut raw, true).await;
    // The name is free again once the server has seen the close.
    let mut tries = 0;
    while s.try_join("eve", PASSWORD).await.is_err() {
        tries += 1;
        assert!(tries < 50, "the name stayed reserved");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
});
hostile!(vanishing_mid_handshake, |s| {
    let (raw, _) = challenged(s, "eve").await;
    drop(raw);
});
hostile!(a_thousand_connections_at_once, |s| {
    let mut sockets = Vec::new();
    // From an address of their own, so the members' 127.0.0.1 is not it.
    for _ in 0..1000 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        if let Ok(socket) = socket.connect(s.addr).await {
            sockets.push(socket);
        }
    }
    assert!(sockets.len() >= 900, "only {} connected", sockets.len());
    // One address holds at most its share of the places for logins; the
    // server closes every connection beyond it.
    use cmd_chat::server::limits::PENDING_PER_ADDRESS as share;
    let (ended, mut ends) = tokio::sync::mpsc::channel(sockets.len());
    let mut readers = Vec::new();
    for mut socket in sockets.drain(..) {
        let ended = ended.clone();
        readers.push(tokio::spawn(async move {
            let mut rest = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut socket, &mut rest).await;
            let _ = ended.send(()).await;
            socket
        }));
    }
    let excess = 900 - share;
    for closed in 0..excess {
        tokio::time::timeout(PATIENCE, ends.recv())
            .await
            .unwrap_or_else(|_| panic!("only {closed} of the excess connections were closed"));
    }
    readers.iter().for_each(|reader| reader.abort());
});

// ---- After authentication, sealed ------------------------------------------

hostile!(tampered_sealed_frame, |s| {
    let mut eve = member(s, "eve").await;
    let token = eve.encrypt_message("forged");
    let mut bytes = seal(
        &mut eve,
        &json!({"type": "message", "text": token}).to_string(),
    );
    bytes[10] ^= 1;
    eve.send_line(&sealed_line(&bytes)).await;
    expect_dropped(&mut eve).await;
});
hostile!(replayed_sealed_frame, |s| {
    let mut eve = member(s, "eve").await;
    let bytes = seal(&mut eve, r#"{"type":"pong"}"#);
    eve.send_line(&sealed_line(&bytes)).await;
    eve.send_line(&sealed_line(&bytes)).await;
    expect_dropped(&mut eve).await;
});
hostile!(reordered_sealed_frames, |s| {
    let mut eve = member(s, "eve").await;
    let first = seal(&mut eve, r#"{"type":"pong"}"#);
    let second = seal(&mut eve, r#"{"type":"pong"}"#);
    eve.send_line(&sealed_line(&second)).await;
    eve.send_line(&sealed_line(&first)).await;
    expect_dropped(&mut eve).await;
});
hostile!(truncated_sealed_frame, |s| {
    let mut eve = member(s, "eve").await;
    let frame = json!({"type": "message", "text": eve.encrypt_message("cut")}).to_string();
    let bytes = seal(&mut eve, &frame);
    eve.send_line(&sealed_line(&bytes[..bytes.len() - 5])).await;
    expect_dropped(&mut eve).await;
});
hostile!(sealed_frame_not_base64, |s| {
    let mut eve = member(s, "eve").await;
    eve.send_line(r#"{"sealed":"@@@@"}"#).await;
    expect_dropped(&mut eve).await;
});
hostile!(clear_text_frame_after_sealing, |s| {
    let mut eve = member(s, "eve").await;
    eve.send_line(r#"{"type":"clear"}"#).await;
    expect_dropped(&mut eve).await;
});
hostile!(sealed_garbage_is_answered, |s| {
    let mut eve = member(s, "eve").await;
    eve.send(json!("not a frame")).await;
    expect_error_reply(&mut eve, "bad_request").await;
    eve.send(json!({"type": "launch"})).await;
    expect_error_reply(&mut eve, "bad_request").await;
});
hostile!(plaintext_message_is_refused, |s| {
    let mut eve = member(s, "eve").await;
    eve.send(json!({"type": "message", "text": "hello in the clear"}))
        .await;
    expect_error_reply(&mut eve, "message_refused").await;
});
hostile!(message_text_of_wrong_type, |s| {
    let mut eve = member(s, "eve").await;
    eve.send(json!({"type": "message", "text": {"nested": true}}))
        .await;
    expect_error_reply(&mut eve, "bad_request").await;
});
hostile!(oversized_message_is_refused, |s| {
    let mut eve = member(s, "eve").await;
    let token = eve.encrypt_message(&"x".repeat(50_000));
    eve.send(json!({"type": "message", "text": token})).await;
    expect_error_reply(&mut eve, "message_refused").await;
});
hostile!(oversized_line_after_authentication, |s| {
    let mut eve = member(s, "eve").await;
    eve.send(json!({"type": "message", "text": "A".repeat(200_000)}))
        .await;
    expect_dropped(&mut eve).await;
});
#[tokio::test]
async fn spoofed_sender_is_ignored() {
    let Scene { server, mut ann } = Scene::new(false).await;
    let mut eve = member(&server, "eve").await;
    let token = eve.encrypt_message("I am ann");
    eve.send(json!({"type": "message", "text": token, "username": "ann", "user_id": "x"}))
        .await;
    let frame = eve.recv_type("message").await;
    assert_eq!(
        frame["data"]["username"], "eve",
        "the server names the real sender"
    );
    let heard = until(&mut ann, |e| matches!(e, Event::Message(_))).await;
    assert!(
        matches!(heard, Event::Message(ref m) if m.from == "eve" && m.text == "I am ann"),
        "{heard:?}"
    );
}

/// In a native-only room a message's token holds its writer's name, which
/// the server cannot change: a token relayed under another name (as a server
/// that kept it could relay it), or one with no name inside, is reported and
/// not shown as that member's words.
#[tokio::test]
async fn a_token_relayed_under_another_name_is_not_shown() {
    let Scene { server, mut ann } = Scene::new(false).await;
    let mut eve = member(&server, "eve").await;
    let is_message_or_error = |e: &Event| matches!(e, Event::Message(_) | Event::Error { .. });

    let bobs = eve.encrypt(&json!({"from": "bob", "text": "I owe eve 100"}).to_string());
    eve.send(json!({"type": "message", "text": bobs})).await;
    let heard = until(&mut ann, is_message_or_error).await;
    assert!(
        matches!(&heard, Event::Error { message }
            if message.contains("written by bob, but the server says eve sent it")),
        "{heard:?}"
    );

    let unnamed = eve.encrypt("no name inside");
    eve.send(json!({"type": "message", "text": unnamed})).await;
    let heard = until(&mut ann, is_message_or_error).await;
    assert!(
        matches!(&heard, Event::Error { message } if message.contains("does not name its writer")),
        "{heard:?}"
    );

    eve.send(json!({"type": "message", "text": eve.encrypt_message("mine")}))
        .await;
    let heard = until(&mut ann, is_message_or_error).await;
    assert!(
        matches!(&heard, Event::Message(m) if m.from == "eve" && m.text == "mine"),
        "{heard:?}"
    );
}

/// A room that admits cmd-chat 1.x clients keeps their format: the text
/// alone, as 1.x writes and reads it.
#[tokio::test]
async fn a_room_with_legacy_members_carries_the_text_alone() {
    let Scene { server, mut ann } = Scene::new(true).await;
    let mut old = legacy_member(&server, "old").await;
    ann.send("to everyone").await.unwrap();
    let frame = old.recv_type("message").await;
    assert_eq!(
        old.decrypt(frame["data"]["text"].as_str().unwrap()),
        "to everyone"
    );
}

// ---- After authentication, legacy ------------------------------------------

hostile!(legacy_non_utf8_after_authentication, legacy: true, |s| {
    let mut old = legacy_member(s, "old").await;
    old.send_bytes(b"{\"type\":\"message\",\"text\":\"\xc3\x28\"}\n").await;
    expect_dropped(&mut old).await;
});
hostile!(legacy_sealed_frame_is_not_understood, legacy: true, |s| {
    let mut old = legacy_member(s, "old").await;
    old.send(json!({"sealed": "AAAA"})).await;
    expect_error_reply(&mut old, "bad_request").await;
});
hostile!(legacy_plaintext_is_refused, legacy: true, |s| {
    let mut old = legacy_member(s, "old").await;
    old.send(json!({"type": "message", "text": "plain"})).await;
    expect_error_reply(&mut old, "message_refused").await;
});
