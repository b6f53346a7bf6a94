//! The protocol on the wire, spoken by hand: sealing, legacy peers, and
//! malformed or hostile input during the handshake.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cmd_chat::client::Event;
use common::*;
use serde_json::json;

fn code(frame: &serde_json::Value) -> &str {
    frame["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn native_sessions_are_sealed_on_the_wire() {
    let server = TestServer::native().await;
    let mut raw = Raw::connect(server.addr).await;
    let srp = cmd_chat::crypto::srp::ClientSession::new();
    raw.send(json!({"cmd": "srp_init", "username": "eve", "A": STANDARD.encode(srp.public()), "native": NATIVE_PROTOCOL}))
        .await;
    let challenge = raw.recv().await.unwrap();
    assert_eq!(challenge["native"], NATIVE_PROTOCOL);
    assert!(
        challenge.get("room_salt").is_none(),
        "the room salt never crosses in clear"
    );
    drop(raw);

    let mut member = Raw::connect(server.addr).await;
    member.login("watcher", PASSWORD, true).await.unwrap();
    let mut ann = server.join("ann").await;
    ann.send("secret plans").await.unwrap();
    next_message(&mut ann).await;
    // Every line the native member receives is an opaque sealed record,
    // up to and including the one that brings ann's join and message.
    let mut seen = Vec::new();
    while !seen.contains(&"message".to_owned()) {
        let line = member.recv_line().await.expect("connection open");
        let frame: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            frame.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["sealed"]
        );
        let sealed = STANDARD.decode(frame["sealed"].as_str().unwrap()).unwrap();
        for clear in [&b"\"ann\""[..], b"user_joined", b"gAAAA"] {
            assert!(!sealed.windows(clear.len()).any(|w| w == clear), "{line}");
        }
        let plain = member.opener.as_mut().unwrap().open(&sealed).unwrap();
        for frame in plain.split(|&b| b == b'\n') {
            let frame: serde_json::Value = serde_json::from_slice(frame).unwrap();
            seen.push(frame["type"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert!(seen.contains(&"user_joined".to_owned()), "{seen:?}");
}

#[tokio::test]
async fn tampered_sealed_frame_ends_only_that_connection() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    ann.send("before").await.unwrap();
    next_message(&mut ann).await;

    let mut eve = Raw::connect(server.addr).await;
    eve.login("eve", PASSWORD, true).await.unwrap();
    next(&mut ann).await; // eve joined
    let token = eve.encrypt_message("tampered");
    let frame = json!({"type": "message", "text": token}).to_string();
    let mut sealed = eve.sealer.as_mut().unwrap().seal(frame.as_bytes()).unwrap();
    sealed[3] ^= 0x40;
    eve.send_line(&json!({"sealed": STANDARD.encode(&sealed)}).to_string())
        .await;
    eve.opener = None;
    eve.until_closed().await;
    assert_eq!(next(&mut ann).await, Event::Left { user: "eve".into() });

    ann.send("after").await.unwrap();
    assert_eq!(next_message(&mut ann).await.1, "after");
    assert_eq!(
        server.room.history_len(),
        2,
        "nothing stored was lost, nothing forged was stored"
    );
}

#[tokio::test]
async fn replayed_and_clear_text_frames_end_a_sealed_connection() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;

    let mut eve = Raw::connect(server.addr).await;
    eve.login("eve", PASSWORD, true).await.unwrap();
    let frame = json!({"type": "message", "text": eve.encrypt_message("once")}).to_string();
    let sealed = json!({"sealed": STANDARD.encode(eve.sealer.as_mut().unwrap().seal(frame.as_bytes()).unwrap())});
    eve.send_line(&sealed.to_string()).await;
    eve.send_line(&sealed.to_string()).await; // replay
    eve.opener = None;
    eve.until_closed().await;
    let (from, text, _) = next_message(&mut ann).await;
    assert_eq!((from.as_str(), text.as_str()), ("eve", "once"));
    assert_eq!(
        until(&mut ann, |e| matches!(e, Event::Left { .. })).await,
        Event::Left { user: "eve".into() }
    );
    assert_eq!(server.room.history_len(), 1, "the replay was not stored");

    let mut eve2 = Raw::connect(server.addr).await;
    eve2.login("eve2", PASSWORD, true).await.unwrap();
    eve2.send_line(&json!({"type": "clear"}).to_string()).await;
    eve2.opener = None;
    eve2.until_closed().await;
    assert_eq!(
        server.room.history_len(),
        1,
        "an unsealed clear was not obeyed"
    );
}

#[tokio::test]
async fn legacy_clients_are_refused_unless_allowed() {
    let server = TestServer::native().await;
    let mut old = Raw::connect(server.addr).await;
    let err = old.login("old", PASSWORD, false).await.unwrap_err();
    assert_eq!(code(&err), "legacy_refused");
    assert!(err["error"].as_str().unwrap().contains("--allow-legacy"));
    assert_eq!(old.recv_line().await, None, "then the connection closes");
}

#[tokio::test]
async fn legacy_and_native_members_share_a_room() {
    let server = TestServer::with_legacy().await;
    let mut ann = server.join("ann").await;
    let mut old = Raw::connect(server.addr).await;
    let init = old.login("old", PASSWORD, false).await.unwrap();
    assert_eq!(init["type"], "init");
    assert!(init.get("room_salt").is_none());
    assert_eq!(next(&mut ann).await, Event::Joined { user: "old".into() });

    ann.send("hi from native").await.unwrap();
    let frame = old.recv_type("message").await;
    assert!(
        frame["data"].get("user_ip").is_none(),
        "sender addresses are never relayed"
    );
    assert_eq!(frame["data"]["username"], "ann");
    let token = frame["data"]["text"].as_str().unwrap();
    assert_ne!(token, "hi from native", "the server relays ciphertext");
    assert_eq!(old.decrypt(token), "hi from native");

    let token = old.encrypt_message("hi from legacy");
    old.send(json!({"type": "message", "text": token})).await;
    assert_eq!(
        next_message(&mut ann).await,
        ("ann".into(), "hi from native".into(), false)
    );
    assert_eq!(
        next_message(&mut ann).await,
        ("old".into(), "hi from legacy".into(), false)
    );
}

#[tokio::test]
async fn legacy_welcome_has_a_fernet_key_unrelated_to_the_session() {
    let server = TestServer::with_legacy().await;
    let mut raw = Raw::connect(server.addr).await;
    let srp = cmd_chat::crypto::srp::ClientSession::new();
    raw.send(json!({"cmd": "srp_init", "username": "old", "A": STANDARD.encode(srp.public())}))
        .await;
    let challenge = raw.recv().await.unwrap();
    assert!(
        challenge.get("room_salt").is_some(),
        "legacy clients get the room salt here"
    );
    let salt = STANDARD
        .decode(challenge["salt"].as_str().unwrap())
        .unwrap();
    let b = STANDARD.decode(challenge["B"].as_str().unwrap()).unwrap();
    let proof = srp
        .respond(&cmd_chat::crypto::Password::new(PASSWORD.into()), &salt, &b)
        .unwrap();
    raw.send(json!({"cmd": "srp_verify", "user_id": challenge["user_id"], "M": STANDARD.encode(proof.m())}))
        .await;
    let welcome = raw.recv().await.unwrap();
    let session_key = STANDARD
        .decode(
            welcome["session_key"]
                .as_str()
                .expect("1.x clients need it"),
        )
        .unwrap();
    let k = proof
        .verify_server(&STANDARD.decode(welcome["H_AMK"].as_str().unwrap()).unwrap())
        .unwrap();
    // What the 1.x client does with it: `Fernet(base64.b64decode(session_key))`,
    // which takes only the url-safe base64 of exactly 32 bytes.
    let fernet_key = String::from_utf8(session_key).expect("a Fernet key is ASCII");
    let raw_key = base64::engine::general_purpose::URL_SAFE
        .decode(fernet_key.as_bytes())
        .expect("url-safe base64, as Fernet requires");
    assert_eq!(raw_key.len(), 32, "a Fernet key is 32 bytes");
    assert!(fernet::Fernet::new(&fernet_key).is_some());
    assert_ne!(
        raw_key.as_slice(),
        k.as_bytes(),
        "the SRP key never leaves in clear"
    );
}

#[tokio::test]
async fn legacy_init_fits_the_64_kib_line_of_1x_clients() {
    let server = TestServer::with_legacy().await;
    let mut ann = server.join("ann").await;
    let big = "x".repeat(8 * 1024);
    for i in 0..20 {
        ann.send(&format!("{i} {big}")).await.unwrap();
        next_message(&mut ann).await;
    }
    let mut old = Raw::connect(server.addr).await;
    let srp = cmd_chat::crypto::srp::ClientSession::new();
    old.send(json!({"cmd": "srp_init", "username": "old", "A": STANDARD.encode(srp.public())}))
        .await;
    let challenge = old.recv().await.unwrap();
    let salt = STANDARD
        .decode(challenge["salt"].as_str().unwrap())
        .unwrap();
    let b = STANDARD.decode(challenge["B"].as_str().unwrap()).unwrap();
    let pw = cmd_chat::crypto::Password::new(PASSWORD.into());
    let proof = srp.respond(&pw, &salt, &b).unwrap();
    old.send(json!({"cmd": "srp_verify", "user_id": challenge["user_id"], "M": STANDARD.encode(proof.m())}))
        .await;
    old.recv().await.unwrap();
    let line = old.recv_line().await.unwrap();
    assert!(line.len() < 64 * 1024, "init line is {} bytes", line.len());
    let init: serde_json::Value = serde_json::from_str(&line).unwrap();
    let messages = init["messages"].as_array().unwrap();
    assert!(!messages.is_empty() && messages.len() < 20);
    // It carries the newest messages, ending with the last one.
    assert_eq!(messages.last().unwrap()["seq"], 20);
    // A native joiner gets the whole history.
    let cat = server.join("cat").await;
    assert_eq!(cat.history_count(), 20);
}

#[tokio::test]
async fn plaintext_is_refused_and_the_member_stays() {
    let server = TestServer::with_legacy().await;
    let mut ann = server.join("ann").await;
    let mut old = Raw::connect(server.addr).await;
    old.login("old", PASSWORD, false).await.unwrap();
    for text in [json!("plain words"), json!(""), json!(42)] {
        old.send(json!({"type": "message", "text": text})).await;
        let reply = old.recv().await.unwrap();
        assert!(reply.get("error").is_some(), "{reply}");
    }
    old.send(json!({"type": "message", "text": old.encrypt_message("encrypted")}))
        .await;
    assert_eq!(
        next_message(&mut ann).await,
        ("old".into(), "encrypted".into(), false)
    );
    assert_eq!(server.room.history_len(), 1);
}

/// Two logins for one name, both with the password, proving it at once:
/// exactly one becomes the member, the other is told the name is taken.
#[tokio::test]
async fn simultaneous_logins_cannot_share_a_name() {
    let server = TestServer::native().await;
    let mut first = Raw::connect(server.addr).await;
    let mut second = Raw::connect(server.addr).await;
    let first_login = first.begin_login("twin", PASSWORD, true, json!({})).await;
    let second_login = second.begin_login("twin", PASSWORD, true, json!({})).await;
    let (first_login, second_login) = (first_login.unwrap(), second_login.unwrap());
    let (a, b) = tokio::join!(first.end_login(first_login), second.end_login(second_login));
    let results = [a, b];
    let joined = results.iter().filter(|r| r.is_ok()).count();
    let taken = results
        .iter()
        .filter(|r| r.as_ref().is_err_and(|e| code(e) == "name_taken"))
        .count();
    assert_eq!((joined, taken), (1, 1), "{results:?}");
    assert_eq!(server.room.member_names(), ["twin"]);
}

/// A login that never proves the password holds no name, even while it waits.
#[tokio::test]
async fn unproved_logins_hold_no_name() {
    let server = TestServer::native().await;
    // A login for "ann" has its challenge but has not proved the password.
    let mut raw = Raw::connect(server.addr).await;
    let pending = raw
        .begin_login("ann", PASSWORD, true, json!({}))
        .await
        .unwrap();
    // Meanwhile another login for "ann" proves it first, and gets the name.
    let _ann = server.join("ann").await;
    // The first proof comes too late: the name was never held for it.
    let refusal = raw.end_login(pending).await.unwrap_err();
    assert_eq!(code(&refusal), "name_taken", "{refusal}");
    assert_eq!(server.room.member_names(), ["ann"]);
}

#[tokio::test]
async fn wrong_proof_and_out_of_order_handshakes_are_refused() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;

    // srp_verify before srp_init.
    let mut raw = Raw::connect(server.addr).await;
    raw.send(json!({"cmd": "srp_verify", "user_id": "x", "M": "AAAA"}))
        .await;
    let reply = raw.recv().await.unwrap();
    assert_eq!(code(&reply), "bad_request");
    assert_eq!(raw.recv_line().await, None);

    // A wrong M, then the connection closes: one try per login.
    let mut raw = Raw::connect(server.addr).await;
    let a = STANDARD.encode(cmd_chat::crypto::srp::ClientSession::new().public());
    raw.send(json!({"cmd": "srp_init", "username": "eve", "A": a, "native": NATIVE_PROTOCOL}))
        .await;
    let challenge = raw.recv().await.unwrap();
    raw.send(json!({"cmd": "srp_verify", "user_id": challenge["user_id"], "M": STANDARD.encode([0u8; 32])}))
        .await;
    assert_eq!(code(&raw.recv().await.unwrap()), "auth_failed");
    assert_eq!(raw.recv_line().await, None);

    // M for another login's user_id.
    let mut raw = Raw::connect(server.addr).await;
    let a = STANDARD.encode(cmd_chat::crypto::srp::ClientSession::new().public());
    raw.send(json!({"cmd": "srp_init", "username": "eve", "A": a, "native": NATIVE_PROTOCOL}))
        .await;
    raw.recv().await.unwrap();
    raw.send(json!({"cmd": "srp_verify", "user_id": challenge["user_id"], "M": STANDARD.encode([0u8; 32])}))
        .await;
    assert_eq!(code(&raw.recv().await.unwrap()), "bad_request");

    // Chat frames before authentication.
    let mut raw = Raw::connect(server.addr).await;
    raw.send(json!({"type": "message", "text": "gAAAAA"})).await;
    assert_eq!(code(&raw.recv().await.unwrap()), "bad_request");

    ann.send("still here").await.unwrap();
    assert_eq!(next_message(&mut ann).await.1, "still here");
    assert_eq!(server.room.member_names(), ["ann"]);
}

#[tokio::test]
async fn degenerate_public_values_and_garbage_are_refused() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let n = srp::groups::G_2048.n.clone();
    let zero = STANDARD.encode([0u8]);
    let cases = [
        json!({"cmd": "srp_init", "username": "eve", "A": zero, "native": NATIVE_PROTOCOL}),
        json!({"cmd": "srp_init", "username": "eve", "A": STANDARD.encode(n.to_bytes_be()), "native": NATIVE_PROTOCOL}),
        json!({"cmd": "srp_init", "username": "eve", "A": STANDARD.encode((&n * 2u32).to_bytes_be()), "native": NATIVE_PROTOCOL}),
        json!({"cmd": "srp_init", "username": "eve", "A": "not base64!", "native": NATIVE_PROTOCOL}),
        json!({"cmd": "srp_init", "username": "eve", "native": NATIVE_PROTOCOL}),
        json!({"cmd": "srp_init", "username": 7, "A": zero, "native": NATIVE_PROTOCOL}),
        json!({"cmd": "srp_init", "username": "eve", "A": zero, "native": 99}),
        json!({"cmd": "launch_missiles"}),
        json!([1, 2, 3]),
    ];
    for case in cases {
        let mut raw = Raw::connect(server.addr).await;
        raw.send(case.clone()).await;
        let reply = raw.recv().await.expect("a clear error");
        assert!(reply.get("error").is_some(), "{case} -> {reply}");
        assert_eq!(raw.recv_line().await, None, "{case}: then a clean close");
    }
    for garbage in [
        &b"not json at all\n"[..],
        b"\xff\xfe\xfd\n",
        &[b'{'; 10_000],
    ] {
        let mut raw = Raw::connect(server.addr).await;
        raw.send_bytes(garbage).await;
        raw.until_closed().await;
    }
    ann.send("unaffected").await.unwrap();
    assert_eq!(next_message(&mut ann).await.1, "unaffected");
}
