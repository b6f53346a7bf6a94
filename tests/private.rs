//! Private messages between two members: real server on 127.0.0.1, real
//! clients, and a test-only relay playing a host who knows the password.

mod common;
#[path = "private/relay.rs"]
mod relay;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use cmd_chat::client::private::PrivateError;
use cmd_chat::client::{Client, ClientConfig, ClientError, Event, PrivateMessage};
use cmd_chat::crypto::{Password, RoomCipher, derive_room_key};
use cmd_chat::protocol::wire::{PrivateEnvelope, ServerEvent};
use common::*;
use relay::{Captured, Mode, Relay};
use serde_json::json;

/// The private messages (sent and received) a client shows, until `count`
/// have arrived, as `from->to: text`; other events are skipped.
async fn privates(client: &mut Client, count: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < count {
        if let Event::Private(PrivateMessage { from, to, text }) =
            &until(client, |e| matches!(e, Event::Private(_))).await
        {
            seen.push(format!("{from}->{to}: {text}"));
        }
    }
    seen
}

/// The next error event's message.
async fn next_error(client: &mut Client) -> String {
    match until(client, |e| matches!(e, Event::Error { .. })).await {
        Event::Error { message } => message,
        _ => unreachable!(),
    }
}

/// Who, how many and why, when private messages waiting for a session
/// were never sent.
async fn next_not_sent(client: &mut Client) -> (String, usize, String) {
    match until(client, |e| matches!(e, Event::PrivateNotSent { .. })).await {
        Event::PrivateNotSent { to, count, reason } => (to, count, reason),
        _ => unreachable!(),
    }
}

/// The safety code shown for `peer` after `/verify`.
async fn verify(client: &mut Client, peer: &str) -> String {
    client.verify(peer).await.unwrap();
    match until(client, |e| matches!(e, Event::Verify { .. })).await {
        Event::Verify { user, code } => {
            assert_eq!(user, peer);
            code
        }
        _ => unreachable!(),
    }
}

/// Waits until `client` has seen `name` join: one can only write privately
/// to a member one knows is there.
async fn joined(client: &mut Client, name: &str) {
    until(
        client,
        |e| matches!(e, Event::Joined { user } if user == name),
    )
    .await;
}

/// Frames until the next error line.
async fn refusal(raw: &mut Raw) -> serde_json::Value {
    loop {
        let frame = raw.recv().await.expect("connection open");
        if frame.get("error").is_some() {
            return frame;
        }
    }
}

async fn join_relay(relay: &Relay, name: &str) -> Client {
    tokio::time::timeout(
        PATIENCE,
        Client::connect(ClientConfig {
            server: relay.addr.to_string(),
            username: name.into(),
            password: Password::new(PASSWORD.into()),
            allow_legacy: false,
        }),
    )
    .await
    .expect("login finishes")
    .expect("join succeeds")
}

#[tokio::test]
async fn private_messages_reach_their_addressee_only_both_ways() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let mut bob = server.join("bob").await;
    let mut cat = server.join("cat").await;
    // An observer who knows the password and speaks the protocol by hand.
    let mut eve = Raw::connect(server.addr).await;
    eve.login("eve", PASSWORD, true).await.unwrap();
    joined(&mut ann, "eve").await;

    // Like every front end, both keep reading events while the handshake runs.
    ann.send_private("bob", "hi bob, just us").await.unwrap();
    ann.send_private("bob", "two\nlines").await.unwrap();
    let (bob_saw, ann_saw) = tokio::join!(privates(&mut bob, 2), privates(&mut ann, 2));
    assert_eq!(
        bob_saw,
        ["ann->bob: hi bob, just us", "ann->bob: two\nlines"]
    );
    assert_eq!(
        ann_saw,
        ["ann->bob: hi bob, just us", "ann->bob: two\nlines"],
        "the sender sees its messages as they are sent"
    );
    bob.send_private("ann", "hi ann").await.unwrap();
    assert_eq!(privates(&mut ann, 1).await, ["bob->ann: hi ann"]);
    assert_eq!(privates(&mut bob, 1).await, ["bob->ann: hi ann"]);

    // The others got nothing of it: the first thing after the joins that
    // either sees is cat's message to the room.
    cat.send("marker").await.unwrap();
    loop {
        match next(&mut cat).await {
            Event::Joined { .. } => {}
            Event::Message(m) => {
                assert_eq!(m.text, "marker");
                break;
            }
            other => panic!("cat saw {other:?}"),
        }
    }
    loop {
        let frame = eve.recv().await.expect("eve stays connected");
        assert_ne!(frame["type"], "private", "{frame}");
        if frame["type"] == "message" {
            assert_eq!(
                eve.decrypt_message(frame["data"]["text"].as_str().unwrap()),
                "marker"
            );
            break;
        }
    }
    // Nothing private was stored.
    assert_eq!(server.room.history_len(), 1);
    let dan = server.join("dan").await;
    assert_eq!(dan.history_count(), 1);
}

#[tokio::test]
async fn simultaneous_first_messages_do_not_deadlock_and_keep_their_order() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let mut bob = server.join("bob").await;
    joined(&mut ann, "bob").await;
    // Both write first, before either has read a thing: both send `hello`.
    for i in 1..=3 {
        ann.send_private("bob", &format!("ann {i}")).await.unwrap();
        bob.send_private("ann", &format!("bob {i}")).await.unwrap();
    }
    let (ann_saw, bob_saw) = tokio::join!(privates(&mut ann, 6), privates(&mut bob, 6));
    let from = |seen: &[String], who: &str| -> Vec<String> {
        seen.iter()
            .filter(|l| l.starts_with(who))
            .cloned()
            .collect()
    };
    for seen in [&ann_saw, &bob_saw] {
        assert_eq!(
            from(seen, "ann->"),
            ["ann->bob: ann 1", "ann->bob: ann 2", "ann->bob: ann 3"]
        );
        assert_eq!(
            from(seen, "bob->"),
            ["bob->ann: bob 1", "bob->ann: bob 2", "bob->ann: bob 3"]
        );
    }
    assert_eq!(ann.safety_code("bob"), bob.safety_code("ann"));
}

#[tokio::test]
async fn the_relaying_server_cannot_read_private_messages_even_with_the_password() {
    let relay = Relay::start(Mode::Honest, PASSWORD).await;
    let mut ann = join_relay(&relay, "ann").await;
    let mut bob = join_relay(&relay, "bob").await;
    joined(&mut ann, "bob").await;
    let secret = "the launch code is 0000";
    ann.send_private("bob", secret).await.unwrap();
    let (bob_saw, _) = tokio::join!(privates(&mut bob, 1), privates(&mut ann, 1));
    assert_eq!(bob_saw, [format!("ann->bob: {secret}")]);
    bob.send_private("ann", "noted").await.unwrap();
    assert_eq!(privates(&mut ann, 1).await, ["bob->ann: noted"]);

    // Everything the server relayed, opened with everything the password gives.
    let captured = relay.captured.lock().unwrap().clone();
    let pw = Password::new(PASSWORD.into());
    let room_key = derive_room_key(&pw, &relay.room_salt);
    let room = RoomCipher::new(&room_key);
    let mut kinds = Vec::new();
    for frame in &captured {
        assert!(!frame.body.contains(secret));
        let envelope = room
            .decrypt(&frame.body)
            .expect("the room key opens the outer layer");
        assert!(!envelope.contains(secret), "{envelope}");
        match serde_json::from_str::<PrivateEnvelope>(&envelope).unwrap() {
            PrivateEnvelope::Hello { .. } => kinds.push("hello"),
            PrivateEnvelope::HelloAck { .. } => kinds.push("hello_ack"),
            PrivateEnvelope::Msg { n, ct } => {
                kinds.push("msg");
                let ct = STANDARD.decode(ct).unwrap();
                // Keys a password holder could derive: the room key itself,
                // the password's bytes, and HKDF of either with the labels
                // of private messages.
                let mut candidates = vec![*room_key.as_bytes()];
                let mut padded = [0u8; 32];
                padded[..PASSWORD.len().min(32)]
                    .copy_from_slice(&PASSWORD.as_bytes()[..PASSWORD.len().min(32)]);
                candidates.push(padded);
                for ikm in [&room_key.as_bytes()[..], PASSWORD.as_bytes()] {
                    for info in [
                        &b"cmd-chat private v1 low->high"[..],
                        b"cmd-chat private v1 high->low",
                    ] {
                        let mut okm = [0u8; 32];
                        hkdf::Hkdf::<sha2::Sha256>::new(Some(&relay.room_salt), ikm)
                            .expand(info, &mut okm)
                            .unwrap();
                        candidates.push(okm);
                    }
                }
                for key in candidates {
                    let mut nonce = [0u8; 12];
                    nonce[4..].copy_from_slice(&n.to_be_bytes());
                    let nonce: Nonce = nonce.into();
                    let opened = ChaCha20Poly1305::new(&key.into()).decrypt(&nonce, ct.as_slice());
                    assert!(
                        opened.is_err(),
                        "a password-derived key opened a private message"
                    );
                }
            }
        }
    }
    assert_eq!(kinds, ["hello", "hello_ack", "msg", "msg"]);
    let route: Vec<String> = captured
        .iter()
        .map(|c| format!("{}->{}", c.from, c.to))
        .collect();
    assert_eq!(route, ["ann->bob", "bob->ann", "ann->bob", "bob->ann"]);

    // The same two names, password, text and counter in a second session
    // give another ciphertext: the keys are the sessions' own, not derived
    // from anything the two sessions share.
    let first = first_private_msg(&room, &captured);
    ann.leave().await.unwrap();
    bob.leave().await.unwrap();
    let mut ann = join_relay(&relay, "ann").await;
    let mut bob = join_relay(&relay, "bob").await;
    joined(&mut ann, "bob").await;
    ann.send_private("bob", secret).await.unwrap();
    let (bob_saw, _) = tokio::join!(privates(&mut bob, 1), privates(&mut ann, 1));
    assert_eq!(bob_saw, [format!("ann->bob: {secret}")]);
    let captured = relay.captured.lock().unwrap()[captured.len()..].to_vec();
    let second = first_private_msg(&room, &captured);
    assert_eq!(first.0, second.0, "the same counter");
    assert_ne!(first.1, second.1, "the same ciphertext in two sessions");
}

/// The counter and ciphertext of the first private message in `captured`.
fn first_private_msg(room: &RoomCipher, captured: &[Captured]) -> (u64, String) {
    captured
        .iter()
        .find_map(|frame| {
            match serde_json::from_str::<PrivateEnvelope>(&room.decrypt(&frame.body).ok()?).ok()? {
                PrivateEnvelope::Msg { n, ct } => Some((n, ct)),
                _ => None,
            }
        })
        .expect("a private message was relayed")
}

#[tokio::test]
async fn safety_codes_match_directly_and_differ_under_a_key_substituting_host() {
    // An honest server: both sides see the same code.
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let mut bob = server.join("bob").await;
    joined(&mut ann, "bob").await;
    // `/verify` before any message sets up the session first (here both
    // ask at once, so both handshakes cross).
    let (ann_code, bob_code) = tokio::join!(verify(&mut ann, "bob"), verify(&mut bob, "ann"));
    assert_eq!(ann_code, bob_code);
    assert_eq!(ann.safety_code("bob").unwrap().as_str(), ann_code);
    assert!(ann.safety_code("bob").unwrap().matches(&bob_code));

    // A host that substitutes keys: the messages still flow, the host reads
    // them, and only the codes give it away.
    let relay = Relay::start(Mode::Substitute, PASSWORD).await;
    let mut ann = join_relay(&relay, "ann").await;
    let mut bob = join_relay(&relay, "bob").await;
    joined(&mut ann, "bob").await;
    ann.send_private("bob", "meet at noon").await.unwrap();
    let (bob_saw, _) = tokio::join!(privates(&mut bob, 1), privates(&mut ann, 1));
    assert_eq!(bob_saw, ["ann->bob: meet at noon"]);
    assert_eq!(*relay.read.lock().unwrap(), ["meet at noon"]);
    let ann_code = verify(&mut ann, "bob").await;
    let bob_code = verify(&mut bob, "ann").await;
    assert_ne!(ann_code, bob_code, "a man in the middle changes the codes");
    assert_ne!(ann.safety_code("bob"), bob.safety_code("ann"));
}

/// A server that gives a member's id a new name, without saying the member
/// left, cannot make that member's keys speak for the new name: the client
/// takes it as a leave and a join, and the old keys are gone.
#[tokio::test]
async fn a_renamed_member_id_does_not_carry_its_keys_to_the_new_name() {
    let relay = Relay::start(Mode::Honest, PASSWORD).await;
    let mut ann = join_relay(&relay, "ann").await;
    let mut bob = join_relay(&relay, "bob").await;
    joined(&mut ann, "bob").await;
    ann.send_private("bob", "hi bob").await.unwrap();
    tokio::join!(privates(&mut bob, 1), privates(&mut ann, 1));
    assert!(ann.safety_code("bob").is_some());

    let (ann_id, bob_id) = (relay.id_of("ann"), relay.id_of("bob"));
    relay.inject(
        &ann_id,
        &ServerEvent::UserJoined {
            user_id: bob_id.clone(),
            username: "carol".into(),
        },
    );
    relay.rename(&bob_id, "carol");
    let left = until(&mut ann, |e| matches!(e, Event::Left { .. })).await;
    assert_eq!(left, Event::Left { user: "bob".into() });
    joined(&mut ann, "carol").await;
    assert!(
        ann.safety_code("carol").is_none(),
        "bob's keys speak for carol"
    );
    assert!(ann.safety_code("bob").is_none());

    // What bob sends under his old keys is not shown as carol's.
    bob.send_private("ann", "wire the money to account 42")
        .await
        .unwrap();
    let error = next_error(&mut ann).await;
    assert!(!error.contains("wire the money"), "{error}");
    ann.send("still here").await.unwrap();
    let shown = until(&mut ann, |e| {
        matches!(e, Event::Private(_)) || matches!(e, Event::Message(m) if m.text == "still here")
    })
    .await;
    assert!(matches!(shown, Event::Message(_)), "{shown:?}");
}

#[tokio::test]
async fn each_session_has_fresh_keys() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let mut bob = server.join("bob").await;
    joined(&mut ann, "bob").await;
    ann.send_private("bob", "first").await.unwrap();
    tokio::join!(privates(&mut bob, 1), privates(&mut ann, 1));
    let first = ann.safety_code("bob").unwrap();
    bob.leave().await.unwrap();
    until(&mut ann, |e| matches!(e, Event::Left { .. })).await;
    assert!(ann.safety_code("bob").is_none(), "the keys went with bob");

    let mut bob = server.join("bob").await;
    joined(&mut ann, "bob").await;
    ann.send_private("bob", "second").await.unwrap();
    let (bob_saw, _) = tokio::join!(privates(&mut bob, 1), privates(&mut ann, 1));
    assert_eq!(bob_saw, ["ann->bob: second"]);
    assert_ne!(ann.safety_code("bob").unwrap(), first);
}

#[tokio::test]
async fn absent_and_departing_addressees_get_a_clear_error() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let err = ann.send_private("nobody", "hello?").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Private(PrivateError::NoSuchUser(ref n)) if n == "nobody"),
        "{err:?}"
    );
    assert!(err.is_recoverable());
    assert!(
        err.to_string().contains("no one called \"nobody\""),
        "{err}"
    );
    let err = ann.send_private("ann", "me").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Private(PrivateError::ToSelf)),
        "{err:?}"
    );

    // Rob receives the handshake but never answers, then leaves.
    let mut rob = Raw::connect(server.addr).await;
    let init = rob.login("rob", PASSWORD, true).await.unwrap();
    next(&mut ann).await; // rob joined
    ann.send_private("rob", "are you there?").await.unwrap();
    ann.send_private("rob", "hello?").await.unwrap();
    let hello = rob.recv_type("private").await;
    assert_eq!(hello["from_name"], "ann");
    let envelope = rob.decrypt(hello["body"].as_str().unwrap());
    assert!(envelope.contains("\"kind\":\"hello\""), "{envelope}");
    assert!(!envelope.contains("are you there"));
    drop(rob);
    assert_eq!(next(&mut ann).await, Event::Left { user: "rob".into() });
    assert_eq!(
        next_not_sent(&mut ann).await,
        (
            "rob".into(),
            2,
            "they left the room before the private session was set up".into()
        )
    );

    // The server's own check: an addressee that is not (any more) in the room.
    let mut raw = Raw::connect(server.addr).await;
    let raw_init = raw.login("raw", PASSWORD, true).await.unwrap();
    let body = raw.encrypt("{}");
    raw.send(json!({"type": "private", "to": "no-such-id", "body": body}))
        .await;
    let reply = refusal(&mut raw).await;
    assert_eq!(reply["code"], "no_such_user");
    assert_eq!(reply["to"], "no-such-id");
    // A body that is not ciphertext is refused, never relayed.
    let ann_id = init["users"][0]["user_id"].as_str().unwrap().to_owned();
    raw.send(json!({"type": "private", "to": ann_id, "body": "plain words"}))
        .await;
    let reply = refusal(&mut raw).await;
    assert_eq!(reply["code"], "message_refused");
    assert_eq!(reply["to"], ann_id.as_str());
    // Nor to yourself.
    let raw_id = &raw_init["users"].as_array().unwrap().last().unwrap()["user_id"];
    raw.send(json!({"type": "private", "to": raw_id, "body": body}))
        .await;
    assert_eq!(refusal(&mut raw).await["code"], "bad_request");
}

#[tokio::test]
async fn a_handshake_nobody_answers_fails_after_its_deadline() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let mut rob = Raw::connect(server.addr).await;
    rob.login("rob", PASSWORD, true).await.unwrap();
    next(&mut ann).await; // rob joined
    ann.send_private("rob", "anyone?").await.unwrap();
    rob.recv_type("private").await;
    // Rob stays, silent. With the clock paused, time jumps to the deadline
    // as soon as everything is idle.
    tokio::time::pause();
    assert_eq!(
        next_not_sent(&mut ann).await,
        (
            "rob".into(),
            1,
            "rob did not answer the private handshake within 20 s".into()
        )
    );
}

/// Scripting mode waits at end of input for a private message behind its
/// handshake, but no longer than the handshake's deadline: a peer that
/// never answers cannot hold the script up.
#[tokio::test]
async fn end_of_input_waits_for_a_silent_peer_only_until_the_deadline() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let mut rob = Raw::connect(server.addr).await;
    rob.login("rob", PASSWORD, true).await.unwrap();
    next(&mut ann).await; // rob joined
    let input = tokio::io::BufReader::new(&b"/msg rob anyone?\n"[..]);
    let script = tokio::spawn(async move {
        let mut output = Vec::new();
        let ended = cmd_chat::client::script::run(ann, input, &mut output).await;
        (ended, String::from_utf8(output).unwrap())
    });
    rob.recv_type("private").await;
    // Rob stays, silent; the clock jumps to the deadline once all is idle.
    tokio::time::pause();
    let (ended, output) = script.await.unwrap();
    ended.unwrap();
    let failed = output
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "error" && e.get("private_not_sent").is_some())
        .unwrap_or_else(|| panic!("the message reported not sent: {output}"));
    assert_eq!(failed["private_not_sent"], json!({"to": "rob", "count": 1}));
}

#[tokio::test]
async fn legacy_members_never_see_private_frames() {
    let server = TestServer::with_legacy().await;
    let mut ann = server.join("ann").await;
    let mut old = Raw::connect(server.addr).await;
    let init = old.login("old", PASSWORD, false).await.unwrap();
    next(&mut ann).await; // old joined
    ann.send_private("old", "can you read this?").await.unwrap();
    let (to, count, reason) = next_not_sent(&mut ann).await;
    assert_eq!((to.as_str(), count), ("old", 1));
    assert!(reason.contains("old uses cmd-chat 1.x"), "{reason}");

    // A legacy connection cannot send one either.
    let ann_id = init["users"][0]["user_id"].as_str().unwrap();
    old.send(json!({"type": "private", "to": ann_id, "body": old.encrypt("{}")}))
        .await;
    let reply = old.recv().await.unwrap();
    assert_eq!(reply["code"], "private_unsupported", "{reply}");

    // The first frame old gets after that is ann's room message: nothing private.
    ann.send("for everyone").await.unwrap();
    let frame = old.recv().await.unwrap();
    assert_eq!(frame["type"], "message", "{frame}");
    assert_eq!(
        old.decrypt(frame["data"]["text"].as_str().unwrap()),
        "for everyone"
    );
    assert_eq!(next_message(&mut ann).await.1, "for everyone");
}
