//! A room as its members see it: real server on 127.0.0.1, real clients.

mod common;

use cmd_chat::client::{ClientError, Event, Transport};
use cmd_chat::server::ServerConfig;
use common::*;

#[tokio::test]
async fn members_see_each_other_and_their_messages() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    assert_eq!(ann.users(), vec!["ann"]);
    assert_eq!(ann.transport(), Transport::Sealed);
    let mut bob = server.join("bob").await;
    assert_eq!(bob.users(), vec!["ann", "bob"]);
    assert_eq!(next(&mut ann).await, Event::Joined { user: "bob".into() });

    bob.send("hello ann").await.unwrap();
    for client in [&mut ann, &mut bob] {
        match next(client).await {
            Event::Message(m) => {
                assert_eq!(
                    (m.from.as_str(), m.text.as_str(), m.seq, m.history),
                    ("bob", "hello ann", 1, false)
                );
            }
            other => panic!("expected bob's message, got {other:?}"),
        }
    }
    ann.send("multi\nline ✓").await.unwrap();
    assert_eq!(
        next_message(&mut bob).await,
        ("ann".into(), "multi\nline ✓".into(), false)
    );

    bob.leave().await.unwrap();
    assert_eq!(
        until(&mut ann, |e| matches!(e, Event::Left { .. })).await,
        Event::Left { user: "bob".into() }
    );
    assert_eq!(ann.users(), vec!["ann"]);
}

#[tokio::test]
async fn joiners_replay_history_in_order() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    for i in 1..=3 {
        ann.send(&format!("message {i}")).await.unwrap();
        next_message(&mut ann).await;
    }
    let mut cat = server.join("cat").await;
    assert_eq!(cat.history_count(), 3);
    for i in 1..=3 {
        assert_eq!(
            next_message(&mut cat).await,
            ("ann".into(), format!("message {i}"), true)
        );
    }
    ann.send("live").await.unwrap();
    assert_eq!(
        next_message(&mut cat).await,
        ("ann".into(), "live".into(), false)
    );
}

#[tokio::test]
async fn a_long_history_reaches_joiners_in_bounded_parts() {
    use cmd_chat::server::limits::HISTORY_PART;
    let server = TestServer::start(ServerConfig {
        rate_per_sec: 1_000_000,
        ..TestServer::config_for_tests()
    })
    .await;
    let mut ann = server.join("ann").await;
    // About 600 KiB of history: many parts.
    const N: usize = 400;
    let filler = "h".repeat(1000);
    for i in 0..N {
        ann.send(&format!("{i} {filler}")).await.unwrap();
    }
    for _ in 0..N {
        next_message(&mut ann).await;
    }
    // On the wire: `init` announces the count and carries no messages; the
    // history follows in frames no larger than a part.
    let mut raw = Raw::connect(server.addr).await;
    raw.collect_history = false;
    let init = raw.login("raw", PASSWORD, true).await.unwrap();
    assert_eq!(init["history"], N);
    assert_eq!(init["messages"].as_array().unwrap().len(), 0);
    let mut seqs = Vec::new();
    let mut parts = 0;
    while seqs.len() < N {
        let frame = raw.recv_type("history").await;
        assert!(frame.to_string().len() <= HISTORY_PART, "a part too large");
        parts += 1;
        for m in frame["messages"].as_array().unwrap() {
            seqs.push(m["seq"].as_u64().unwrap());
        }
    }
    assert!(parts > 10, "{parts} parts");
    assert_eq!(seqs, (1..=N as u64).collect::<Vec<_>>());
    // A client sees every message once, in order, as history, then live ones.
    let mut cat = server.join("cat").await;
    assert_eq!(cat.history_count(), N);
    for i in 0..N {
        let (from, text, history) = next_message(&mut cat).await;
        assert_eq!((from.as_str(), history), ("ann", true));
        assert!(
            text.starts_with(&format!("{i} ")),
            "message {i}: {text:.10}"
        );
    }
    ann.send("live").await.unwrap();
    assert_eq!(
        next_message(&mut cat).await,
        ("ann".into(), "live".into(), false)
    );
}

#[tokio::test]
async fn history_keeps_only_the_newest_messages() {
    let server = TestServer::start(ServerConfig {
        history_messages: 5,
        ..TestServer::config_for_tests()
    })
    .await;
    let mut ann = server.join("ann").await;
    for i in 1..=8 {
        ann.send(&format!("m{i}")).await.unwrap();
        next_message(&mut ann).await;
    }
    assert_eq!(server.room.history_len(), 5);
    let mut bob = server.join("bob").await;
    let mut replayed = Vec::new();
    for _ in 0..5 {
        replayed.push(next_message(&mut bob).await.1);
    }
    assert_eq!(replayed, ["m4", "m5", "m6", "m7", "m8"]);
}

#[tokio::test]
async fn clear_empties_the_room_for_everyone() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let mut bob = server.join("bob").await;
    next(&mut ann).await; // bob joined
    ann.send("soon gone").await.unwrap();
    next_message(&mut ann).await;
    next_message(&mut bob).await;
    bob.clear().await.unwrap();
    let cleared = Event::Cleared {
        by: Some("bob".into()),
    };
    assert_eq!(next(&mut ann).await, cleared);
    assert_eq!(next(&mut bob).await, cleared);
    let cat = server.join("cat").await;
    assert_eq!(cat.history_count(), 0);
    assert_eq!(server.room.history_len(), 0);
}

/// A 1.x client is told of a clear in the 1.x line, which names nobody;
/// native members learn who cleared.
#[tokio::test]
async fn a_clear_reaches_1x_clients_as_1x_says_it() {
    let server = TestServer::with_legacy().await;
    let mut ann = server.join("ann").await;
    let mut old = Raw::connect(server.addr).await;
    old.login("old", PASSWORD, false).await.unwrap();
    next(&mut ann).await; // old joined
    ann.clear().await.unwrap();
    assert_eq!(
        next(&mut ann).await,
        Event::Cleared {
            by: Some("ann".into())
        }
    );
    assert_eq!(
        old.recv_type("cleared").await,
        serde_json::json!({"type": "cleared"})
    );
}

#[tokio::test]
async fn wrong_password_is_refused_and_the_room_carries_on() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let err = server.try_join("mallory", "guess").await.unwrap_err();
    assert!(matches!(err, ClientError::WrongPassword), "{err:?}");
    assert_eq!(err.exit_code(), cmd_chat::client::exit_code::AUTH_FAILED);
    // Members are told, in one system line.
    assert_eq!(
        next(&mut ann).await,
        Event::Notice {
            message: "someone just tried to join with a wrong password".into()
        }
    );
    // The failed login released its name and disturbed nobody.
    let mut mallory = server.join("mallory").await;
    mallory.send("now with the right password").await.unwrap();
    assert_eq!(
        next(&mut ann).await,
        Event::Joined {
            user: "mallory".into()
        }
    );
    assert_eq!(
        next_message(&mut ann).await.1,
        "now with the right password"
    );
    assert_eq!(server.room.member_names(), ["ann", "mallory"]);
}

#[tokio::test]
async fn taken_and_invalid_names_are_refused() {
    let server = TestServer::native().await;
    let _ann = server.join("ann").await;
    let err = server.try_join("ann", PASSWORD).await.unwrap_err();
    assert!(
        matches!(err, ClientError::NameTaken(ref n) if n == "ann"),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), cmd_chat::client::exit_code::NAME_REFUSED);
    for bad in ["", "two words", "bell\u{7}", &"x".repeat(33), "rtl\u{202E}"] {
        let err = server.try_join(bad, PASSWORD).await.unwrap_err();
        assert!(
            matches!(err, ClientError::InvalidUsername(_)),
            "{bad:?}: {err:?}"
        );
        assert_eq!(err.exit_code(), cmd_chat::client::exit_code::NAME_REFUSED);
    }
    assert_eq!(server.room.member_names(), ["ann"]);
}

/// Join and leave notices may wait a moment for a message to travel with
/// (the server's `PRESENCE_DELAY`), but never change places with one.
#[tokio::test]
async fn joins_and_leaves_keep_their_place_among_messages() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let mut cat = server.join("cat").await;
    cat.send("first words").await.unwrap();
    assert_eq!(next(&mut ann).await, Event::Joined { user: "cat".into() });
    assert_eq!(
        next_message(&mut ann).await,
        ("cat".into(), "first words".into(), false)
    );
    cat.leave().await.unwrap();
    // Once the room has let cat go (and queued ann's notice of it), bob
    // joins and speaks: ann hears it all in that order.
    for _ in 0..200 {
        if server.room.member_names() == ["ann"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(server.room.member_names(), ["ann"]);
    let mut bob = server.join("bob").await;
    bob.send("hi all").await.unwrap();
    let seen = [
        next(&mut ann).await,
        next(&mut ann).await,
        next(&mut ann).await,
    ];
    assert_eq!(seen[0], Event::Left { user: "cat".into() }, "{seen:?}");
    assert_eq!(seen[1], Event::Joined { user: "bob".into() }, "{seen:?}");
    assert!(
        matches!(&seen[2], Event::Message(m) if m.text == "hi all"),
        "{seen:?}"
    );
}

/// A name that could pass for a member's on screen is refused like the
/// member's own: other case, another script's letters, `1` for `l`.
#[tokio::test]
async fn names_that_look_like_a_members_are_refused() {
    let server = TestServer::native().await;
    let ann = server.join("ann").await;
    let _bill = server.join("bill").await;
    for lookalike in ["Ann", "ANN", "\u{430}nn", "bi1l", "biII"] {
        let err = server.try_join(lookalike, PASSWORD).await.unwrap_err();
        assert!(
            matches!(err, ClientError::NameTaken(ref n) if n == lookalike),
            "{lookalike:?}: {err:?}"
        );
    }
    server.join("anna").await;
    // Once ann has left, a name like hers is free again.
    drop(ann);
    let mut tries = 0;
    while let Err(err) = server.try_join("Ann", PASSWORD).await {
        assert!(
            matches!(err, ClientError::NameTaken(_)) && tries < 100,
            "{err:?}"
        );
        tries += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Whether a name is in use is for members only: without the password, a
/// login as a member's name is refused exactly as one as any other name.
#[tokio::test]
async fn without_the_password_names_in_use_are_not_told() {
    let server = TestServer::native().await;
    let _ann = server.join("ann").await;
    for name in ["ann", "zed"] {
        let err = server.try_join(name, "not the password").await.unwrap_err();
        assert!(matches!(err, ClientError::WrongPassword), "{name}: {err:?}");
    }
    // With it, the name is taken, and the refused logins held nothing.
    let err = server.try_join("ann", PASSWORD).await.unwrap_err();
    assert!(matches!(err, ClientError::NameTaken(_)), "{err:?}");
    server.join("zed").await;
    assert_eq!(server.room.member_names(), ["ann", "zed"]);
}

#[tokio::test]
async fn a_cut_connection_counts_as_leaving() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let bob = server.join("bob").await;
    next(&mut ann).await;
    drop(bob);
    assert_eq!(next(&mut ann).await, Event::Left { user: "bob".into() });
    // The name is free again.
    server.join("bob").await;
}

#[tokio::test]
async fn shutdown_tells_members_the_room_is_closing() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let room = server.room.clone();
    ann.send("bye soon").await.unwrap();
    next_message(&mut ann).await;
    server.shutdown().await;
    let err = loop {
        match tokio::time::timeout(PATIENCE, ann.next_event())
            .await
            .unwrap()
        {
            Ok(Event::Sent { .. }) => continue,
            Ok(other) => panic!("expected the room to close, got {other:?}"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, ClientError::RoomClosed), "{err:?}");
    assert_eq!(room.history_len(), 0, "history is dropped at shutdown");
}

#[tokio::test]
async fn cannot_connect_is_its_own_error() {
    // Bind then drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = cmd_chat::client::Client::connect(cmd_chat::client::ClientConfig {
        server: format!("127.0.0.1:{port}"),
        username: "ann".into(),
        password: cmd_chat::crypto::Password::new("pw".into()),
        allow_legacy: false,
    })
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert_eq!(err.exit_code(), cmd_chat::client::exit_code::CANNOT_CONNECT);
}
