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

/// Sends one raw line before authentication and expects a refusal with `code`.
async fn pre_auth_line(server: &TestServer, line: &str, code: &str) {
    let mut raw = Raw::connect(server.addr).await;
    raw.send_line(line).await;
    let error = refused(&mut raw, false).await.unwrap();
    assert_eq!(error["code"], code, "{line} -> {error}");
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
    pre_auth_line(s, "this is not json", "bad_request").await
});
hostile!(json_array, |s| {
    pre_auth_line(s, "[1, 2, 3]", "bad_request").await
});
hostile!(json_number, |s| {
    pre_auth_line(s, "42", "bad_request").await
});
hostile!(json_string, |s| {
    pre_auth_line(s, r#""srp_init""#, "bad_request").await
});
hostile!(empty_object, |s| {
    pre_auth_line(s, "{}", "bad_request").await
});
hostile!(unknown_command, |s| {
    pre_auth_line(s, r#"{"cmd":"launch"}"#, "bad_request").await
});
hostile!(command_of_wrong_type, |s| {
    pre_auth_line(s, r#"{"cmd":5}"#, "bad_request").await
});
hostile!(srp_init_without_username, |s| {
    pre_auth_line(
        s,
        &json!({"cmd": "srp_init", "A": a(), "native": NATIVE_PROTOCOL}).to_string(),
        "bad_request",
    )
    .await
});
hostile!(srp_init_without_a, |s| {
    pre_auth_line(
        s,
        r#"{"cmd":"srp_init","username":"eve","native":2}"#,
        "bad_request",
    )
    .await
});
hostile!(username_of_wrong_type, |s| {
    pre_auth_line(
        s,
        &json!({"cmd": "srp_init", "username": 7, "A": a(), "native": NATIVE_PROTOCOL}).to_string(),
        "bad_request",
    )
    .await
});
hostile!(a_of_wrong_type, |s| {
    pre_auth_line(
        s,
        r#"{"cmd":"srp_init","username":"eve","A":[1,2],"native":2}"#,
        "bad_request",
    )
    .await
});
hostile!(a_not_base64, |s| {
    pre_auth_line(
        s,
        r#"{"cmd":"srp_init","username":"eve","A":"**not base64**","native":2}"#,
        "bad_request",
    )
    .await
});
hostile!(a_empty, |s| {
    pre_auth_line(
        s,
        r#"{"cmd":"srp_init","username":"eve","A":"","native":2}"#,
        "bad_request",
    )
    .await
});
hostile!(a_is_zero, |s| {
    let line = json!({"cmd": "srp_init", "username": "eve", "A": STANDARD.encode([0u8]), "native": NATIVE_PROTOCOL});
    pre_auth_line(s, &line.to_string(), "bad_request").await
});
hostile!(a_is_n, |s| {
    let line = json!({"cmd": "srp_init", "username": "eve", "A": STANDARD.encode(n_bytes()), "native": NATIVE_PROTOCOL});
    pre_auth_line(s, &line.to_string(), "bad_request").await
});
hostile!(a_is_2n, |s| {
    let two_n = (&srp::groups::G_2048.n * 2u32).to_bytes_be();
    let line = json!({"cmd": "srp_init", "username": "eve", "A": STANDARD.encode(two_n), "native": NATIVE_PROTOCOL});
    pre_auth_line(s, &line.to_string(), "bad_request").await
});
hostile!(a_longer_than_n, |s| {
    let line = json!({"cmd": "srp_init", "username": "eve", "A": STANDARD.encode([7u8; 300]), "native": NATIVE_PROTOCOL});
    pre_auth_line(s, &line.to_string(), "bad_request").await
});
hostile!(username_empty, |s| {
    pre_auth_line(
        s,
        &json!({"cmd": "srp_init", "username": "", "A": a(), "native": NATIVE_PROTOCOL})
            .to_string(),
        "name_invalid",
    )
    .await
});
hostile!(username_too_long, |s| {
    let line =
        json!({"cmd": "srp_init", "username": "x".repeat(33), "A": a(), "native": NATIVE_PROTOCOL});
    pre_auth_line(s, &line.to_string(), "name_invalid").await
});
hostile!(username_with_escape_sequence, |s| {
    let line =
        json!({"cmd": "srp_init", "username": "eve\u{1b}[2J", "A": a(), "native": NATIVE_PROTOCOL});
    pre_auth_line(s, &line.to_string(), "name_invalid").await
});
hostile!(username_with_bidi_override, |s| {
    let line = json!({"cmd": "srp_init", "username": "eve\u{202E}nna", "A": a(), "native": NATIVE_PROTOCOL});
    pre_auth_line(s, &line.to_string(), "name_invalid").await
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
    pre_auth_line(
        s,
        &json!({"cmd": "srp_init", "username": "eve", "A": a(), "native": 99}).to_string(),
        "bad_request",
    )
    .await
});
hostile!(legacy_client_in_native_room, |s| {
    pre_auth_line(
        s,
        &json!({"cmd": "srp_init", "username": "eve", "A": a()}).to_string(),
        "legacy_refused",
    )
    .await
});
hostile!(srp_verify_before_srp_init, |s| {
    let line = json!({"cmd": "srp_verify", "user_id": "00000000-0000-0000-0000-000000000000", "M": STANDARD.encode([0u8; 32])});
    pre_auth_line(s, &line.to_string(), "bad_request").await
});
hostile!(chat_frame_before_authentication, |s| {
    pre_auth_line(
        s,
        r#"{"type":"message","text":"gAAAAABhello"}"#,
        "bad_request",
    )
    .await
});
hostile!(clear_before_authentication, |s| {
    pre_auth_line(s, r#"{"type":"clear"}"#, "bad_request").await
});
hostile!(line_longer_than_pre_auth_limit, |s| {
    let line = json!({"cmd": "srp_init", "username": "eve", "A": "A".repeat(8000)});
    pre_auth_line(s, &line.to_string(), "bad_request").await
});
hostile!(megabyte_without_newline, |s| {
    let mut raw = Raw::connect(s.addr).await;
    raw.send_bytes(&vec![b'x'; 1 << 20]).await;
    refused(&mut raw, true).await;
});
hostile!(non_utf8_bytes, |s| {
    let mut raw = Raw::connect(s.addr).await;
    raw.send_bytes(b"{\"cmd\":\"srp_init\",\"username\":\"\xff\xfe\"}\n")
        .await;
    let error = refused(&mut raw, false).await.unwrap();
    assert_eq!(error["code"], "bad_request");
});
hostile!(nul_bytes, |s| {
    pre_auth_line(s, "\0\0\0\0", "bad_request").await
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
    for _ in 0..1000 {
        if let Ok(socket) = tokio::net::TcpStream::connect(s.addr).await {
            sockets.push(socket);
        }
    }
    assert!(sockets.len() >= 900, "only {} connected", sockets.len());
    drop(sockets);
    // Give the server a moment to see them all go.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
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
