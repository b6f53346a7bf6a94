//! Limits under load and abuse: slow readers, floods, password guessing,
//! silent and idle connections, too many strangers.

mod common;

use std::time::Duration;

use cmd_chat::client::{Client, ClientError, Event};
use cmd_chat::server::ServerConfig;
use cmd_chat::server::limits::MAX_QUEUED_BYTES;
use common::*;

fn config() -> ServerConfig {
    TestServer::config_for_tests()
}

#[tokio::test]
async fn a_member_who_stops_reading_is_dropped_and_delays_nobody() {
    let server = TestServer::start(ServerConfig {
        rate_per_sec: 1_000_000,
        ..config()
    })
    .await;
    let mut ann = server.join("ann").await;
    let mut bob = server.join("bob").await;
    // The stalled member: logged in, then never reads again.
    let mut stalled = Raw::connect(server.addr).await;
    stalled.login("stalled", PASSWORD, true).await.unwrap();
    // Once the room has dropped it, the stalled member reads what reached it.
    let room = server.room.clone();
    let stalled_view = tokio::spawn(async move {
        while room.member_names().iter().any(|n| n == "stalled") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut last_frame = None;
        while let Some(frame) = stalled.recv().await {
            last_frame = Some(frame);
        }
        last_frame
    });

    const MESSAGES: usize = 4000;
    let filler = "z".repeat(2000);
    // Bob reads everything, in order, on his own task.
    let reader = tokio::spawn(async move {
        let mut seen = 0usize;
        while seen < MESSAGES {
            if let Event::Message(m) = next(&mut bob).await {
                assert_eq!(m.from, "ann");
                assert!(
                    m.text.starts_with(&format!("{seen} ")),
                    "message {seen} out of order"
                );
                seen += 1;
            }
        }
        (seen, bob)
    });
    let mut peak_queued = 0;
    for batch in 0..MESSAGES / 100 {
        for i in 0..100 {
            ann.send(&format!("{} {filler}", batch * 100 + i))
                .await
                .unwrap();
        }
        for _ in 0..100 {
            next_message(&mut ann).await;
        }
        peak_queued = peak_queued.max(server.room.queued_bytes());
    }
    let (seen, _bob) = tokio::time::timeout(PATIENCE * 3, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, MESSAGES, "bob got every message, in order");
    assert_eq!(
        server.room.member_names(),
        ["ann", "bob"],
        "the stalled member was removed"
    );
    // Three queues, none ever above its bound.
    assert!(peak_queued <= 3 * MAX_QUEUED_BYTES, "peak {peak_queued}");
    // When it finally reads, it finds why it was dropped, then the end.
    let last_frame = stalled_view.await.unwrap().expect("frames reached it");
    assert_eq!(last_frame["code"], "too_slow", "{last_frame}");
}

#[tokio::test]
async fn a_flooding_member_is_rate_limited_and_others_carry_on() {
    let server = TestServer::start(ServerConfig {
        rate_per_sec: 1,
        ..config()
    })
    .await;
    let mut flood = server.join("flood").await;
    let mut ann = server.join("ann").await;
    let started = std::time::Instant::now();
    for i in 0..80 {
        flood.send(&format!("spam {i}")).await.unwrap();
    }
    let (mut delivered, mut refused) = (0, 0);
    while delivered + refused < 80 {
        match next(&mut flood).await {
            Event::Message(_) => delivered += 1,
            Event::SendFailed { reason, .. } if reason.contains("slow down") => refused += 1,
            _ => {}
        }
    }
    // The burst (50) gets through, plus what the rate refilled meanwhile
    // (one a second, however slowly this machine ran).
    let refilled = started.elapsed().as_secs() as usize + 1;
    assert!(
        (50..=50 + refilled).contains(&delivered),
        "{delivered} delivered"
    );
    assert_eq!(server.room.history_len(), delivered);
    ann.send("still heard").await.unwrap();
    assert_eq!(
        until(
            &mut ann,
            |e| matches!(e, Event::Message(m) if m.from == "ann")
        )
        .await,
        Event::Message(cmd_chat::client::ChatMessage {
            seq: delivered as u64 + 1,
            from: "ann".into(),
            text: "still heard".into(),
            timestamp: match until(
                &mut flood,
                |e| matches!(e, Event::Message(m) if m.from == "ann")
            )
            .await
            {
                Event::Message(m) => m.timestamp.clone(),
                _ => unreachable!(),
            },
            history: false,
            relayed_again: None,
        })
    );
}

/// Waits far longer than the checks that must land inside them take.
fn long_lockouts() -> ServerConfig {
    ServerConfig {
        base_lockout: Duration::from_secs(120),
        ..config()
    }
}

#[tokio::test]
async fn password_guessing_locks_the_guesser_out_but_not_the_members() {
    let server = TestServer::start(long_lockouts()).await;
    let mut ann = server.join("ann").await;
    for guess in ["a", "b", "c", "d"] {
        let err = server.try_join("eve", guess).await.unwrap_err();
        assert!(
            matches!(err, ClientError::WrongPassword),
            "{guess}: {err:?}"
        );
    }
    // Locked out now, even with the right password.
    let err = server.try_join("eve", PASSWORD).await.unwrap_err();
    assert!(
        matches!(err, ClientError::LockedOut(ref m) if m.contains("try again in")),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), cmd_chat::client::exit_code::AUTH_FAILED);
    // Members saw it happen, and chat on undisturbed.
    assert!(
        matches!(next(&mut ann).await, Event::Notice { message } if message.contains("wrong password"))
    );
    ann.send("we noticed").await.unwrap();
    assert_eq!(next_message(&mut ann).await.1, "we noticed");
}

#[tokio::test]
async fn guesses_made_in_parallel_are_bounded_like_guesses_made_one_by_one() {
    use cmd_chat::server::guard::PARALLEL_LOGINS_PER_ADDRESS;
    let server = TestServer::start(long_lockouts()).await;
    // A guesser opens many logins at once and holds them before answering.
    let mut started = Vec::new();
    let mut busy = 0;
    for i in 0..PARALLEL_LOGINS_PER_ADDRESS + 8 {
        let mut raw = Raw::connect(server.addr).await;
        let srp = cmd_chat::crypto::srp::ClientSession::new();
        raw.send(serde_json::json!({
            "cmd": "srp_init", "username": format!("eve{i}"), "native": NATIVE_PROTOCOL,
            "A": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, srp.public()),
        }))
        .await;
        let reply = raw.recv().await.expect("a reply");
        if reply["code"] == "busy" {
            busy += 1;
        } else {
            assert!(reply.get("B").is_some(), "{reply}");
            started.push((raw, reply));
        }
    }
    assert_eq!(started.len(), PARALLEL_LOGINS_PER_ADDRESS as usize);
    assert_eq!(busy, 8);
    // Every held login is a wrong guess: only the free failures and one
    // more are checked; the others are refused unchecked. Then the address
    // must wait.
    let mut codes = Vec::new();
    for (raw, challenge) in &mut started {
        raw.send(serde_json::json!({
            "cmd": "srp_verify", "user_id": challenge["user_id"], "M": "AAAA",
        }))
        .await;
        codes.push(
            raw.recv().await.unwrap()["code"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let checked = cmd_chat::server::guard::FREE_FAILURES as usize + 1;
    assert!(
        codes[..checked].iter().all(|c| c == "auth_failed"),
        "{codes:?}"
    );
    assert!(
        codes[checked..].iter().all(|c| c == "rate_limited"),
        "{codes:?}"
    );
    let err = server.try_join("eve", PASSWORD).await.unwrap_err();
    assert!(
        matches!(err, ClientError::LockedOut(ref m) if m.contains("try again in")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_meeting_can_join_at_once_from_one_address() {
    let server = TestServer::native().await;
    let joins: Vec<_> = (0..12)
        .map(|i| tokio::spawn(Client::connect(server.config(&format!("m{i}"), PASSWORD))))
        .collect();
    let mut members = Vec::new();
    for join in joins {
        members.push(join.await.unwrap().expect("everyone gets in"));
    }
    assert_eq!(server.room.member_names().len(), 12);
}

#[tokio::test(start_paused = true)]
async fn silent_connections_are_dropped_at_the_handshake_deadline() {
    let server = TestServer::native().await;
    let mut silent = Raw::connect(server.addr).await;
    let frame = silent.recv().await.expect("a reason before the close");
    assert_eq!(frame["code"], "timeout");
    assert_eq!(silent.recv_line().await, None);
}

#[tokio::test]
async fn members_that_stop_answering_pings_are_dropped() {
    let server = TestServer::start(ServerConfig {
        // Far longer than ann needs to answer a ping on a busy machine.
        idle_timeout: Duration::from_secs(3),
        ..config()
    })
    .await;
    let mut ann = server.join("ann").await;
    let mut ghost = Raw::connect(server.addr).await;
    ghost.login("ghost", PASSWORD, true).await.unwrap();
    assert_eq!(
        next(&mut ann).await,
        Event::Joined {
            user: "ghost".into()
        }
    );
    // Ann's client keeps reading, so it answers every ping.
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let ann_task = tokio::spawn(async move {
        while let Ok(event) = ann.next_event().await {
            let _ = events_tx.send(event);
        }
    });
    // The ghost reads but never answers.
    let mut frames = Vec::new();
    while let Some(frame) = ghost.recv().await {
        frames.push(frame);
    }
    assert!(frames.iter().any(|f| f["type"] == "ping"), "{frames:?}");
    assert_eq!(frames.last().unwrap()["code"], "idle");
    assert_eq!(
        events.recv().await,
        Some(Event::Left {
            user: "ghost".into()
        })
    );
    assert_eq!(
        server.room.member_names(),
        ["ann"],
        "ann answered and stays"
    );
    ann_task.abort();
}

/// One address opening sockets and saying nothing holds at most its share of
/// the places for connections logging in; everyone else still gets in.
#[tokio::test]
async fn one_address_cannot_hold_every_pending_place() {
    use cmd_chat::server::limits::PENDING_PER_ADDRESS as share;
    use tokio::io::AsyncReadExt;
    let server = TestServer::start(ServerConfig {
        max_pending: 2 * share,
        ..config()
    })
    .await;
    // Another loopback address, so the members' own 127.0.0.1 is not it.
    let mut idle = Vec::new();
    for _ in 0..2 * share {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        idle.push(socket.connect(server.addr).await.unwrap());
    }
    // The server keeps the first share open and closes the rest at once.
    let mut closed = 0;
    for socket in &mut idle {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(300), socket.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => closed += 1,
            Ok(Ok(_)) => panic!("a stranger was spoken to before it said anything"),
            Err(_still_open) => {}
        }
    }
    assert_eq!(closed, share, "all but one address's share turned away");
    let mut ann = server
        .try_join("ann", PASSWORD)
        .await
        .expect("others get in");
    ann.send("in").await.unwrap();
    assert_eq!(next_message(&mut ann).await.1, "in");
}

#[tokio::test]
async fn too_many_strangers_are_turned_away_at_once() {
    let server = TestServer::start(ServerConfig {
        max_pending: 3,
        ..config()
    })
    .await;
    let mut ann = server.join("ann").await;
    let mut strangers = Vec::new();
    for _ in 0..3 {
        strangers.push(Raw::connect(server.addr).await);
    }
    // Give the server a moment to accept them; then the next one is refused.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = Raw::connect(server.addr).await;
    assert_eq!(extra.recv_line().await, None, "closed without a word");
    ann.send("members unaffected").await.unwrap();
    assert_eq!(next_message(&mut ann).await.1, "members unaffected");
    drop(strangers);
    // Their places free up once they are gone.
    let mut tries = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        match server.try_join("bob", PASSWORD).await {
            Ok(_) => break,
            Err(e) if tries < 50 => {
                tries += 1;
                let _ = e;
            }
            Err(e) => panic!("{e}"),
        }
    }
}
