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

/// A socket that sends nothing is closed at its first line's deadline, with
/// a reason, long before the handshake's: it holds its place for no longer.
/// (Paused clock: the times are the server's timers, not the machine's speed.)
#[tokio::test(start_paused = true)]
async fn silent_connections_are_dropped_at_their_first_line_deadline() {
    use cmd_chat::server::limits::HANDSHAKE_DEADLINE;
    let first_line_timeout = HANDSHAKE_DEADLINE / 5;
    let server = TestServer::start(ServerConfig {
        first_line_timeout,
        ..config()
    })
    .await;
    let start = tokio::time::Instant::now();
    let mut silent = Raw::connect(server.addr).await;
    let frame = silent.recv().await.expect("a reason before the close");
    assert_eq!(frame["code"], "timeout");
    assert_eq!(silent.recv_line().await, None);
    let closed_after = start.elapsed();
    assert!(
        closed_after >= first_line_timeout && closed_after < HANDSHAKE_DEADLINE,
        "closed after {closed_after:?}"
    );
}

/// The first line's deadline is for saying something: a login under way
/// (its `srp_init` sent) is not cut off by it.
#[tokio::test]
async fn a_login_under_way_outlives_the_first_line_deadline() {
    let server = TestServer::start(ServerConfig {
        first_line_timeout: Duration::from_millis(300),
        ..config()
    })
    .await;
    let mut ann = Raw::connect(server.addr).await;
    let login = ann
        .begin_login("ann", PASSWORD, true, serde_json::json!({}))
        .await
        .expect("a challenge");
    // A socket opened after ann's and silent is closed at the deadline;
    // so ann's connection is older than the deadline by then.
    let mut silent = Raw::connect(server.addr).await;
    assert_eq!(silent.recv().await.expect("a reason")["code"], "timeout");
    let init = ann.end_login(login).await.expect("ann gets in");
    assert_eq!(init["type"], "init", "{init}");
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
        // Not under test here: no socket is closed for its silence.
        first_line_timeout: PATIENCE * 10,
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
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    let mut readers = Vec::new();
    for mut socket in idle {
        let closed_tx = closed_tx.clone();
        readers.push(tokio::spawn(async move {
            let mut byte = [0u8; 1];
            // Whether the server said anything before closing: it must not.
            let spoke = matches!(socket.read(&mut byte).await, Ok(1..));
            let _ = closed_tx.send(spoke);
        }));
    }
    for _ in 0..share {
        let spoke = tokio::time::timeout(PATIENCE, closed.recv())
            .await
            .expect("the connections beyond the address's share are closed");
        assert_eq!(
            spoke,
            Some(false),
            "a stranger was spoken to before it said anything"
        );
    }
    let mut ann = server
        .try_join("ann", PASSWORD)
        .await
        .expect("others get in");
    ann.send("in").await.unwrap();
    assert_eq!(next_message(&mut ann).await.1, "in");
    // And the address's share is still open, holding its places.
    assert!(
        closed.try_recv().is_err(),
        "more than the excess was closed"
    );
    readers.iter().for_each(|reader| reader.abort());
}

/// Strangers whose logins are under way (`srp_init` sent, the challenge
/// answered) keep their places; a newcomer finding them all taken is turned
/// away at once.
#[tokio::test]
async fn too_many_strangers_are_turned_away_at_once() {
    let server = TestServer::start(ServerConfig {
        max_pending: 3,
        ..config()
    })
    .await;
    let mut ann = server.join("ann").await;
    let mut strangers = Vec::new();
    for i in 0..3 {
        let mut stranger = Raw::connect(server.addr).await;
        let login = stranger
            .begin_login(&format!("s{i}"), PASSWORD, true, serde_json::json!({}))
            .await
            .expect("a challenge");
        strangers.push((stranger, login));
    }
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

/// A thousand sockets that say nothing, 50 from each of 20 addresses, are
/// kept open: each is reopened as soon as the server drops it (turned away
/// for its address's share, or giving its place to a newcomer), up to a
/// bounded number of connections and time. A newcomer still logs in while
/// the flood goes on, and the members already in the room keep talking.
/// (How fast it gets in is measured in BENCHMARKS.md, not asserted here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_from_many_addresses_give_way_to_a_login() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    /// Source addresses of the flood: 127.0.0.10 to 127.0.0.29.
    const ADDRESSES: u8 = 20;
    /// Sockets each address keeps open: 1,000 in all, far more than the 128
    /// places of the default `--max-pending`.
    const HELD_PER_ADDRESS: usize = 50;
    /// Connections the flood opens in all, first ones and reopened ones.
    const BUDGET: usize = 100_000;
    /// Longest the flood goes on, whatever the test does meanwhile.
    const FLOOD_TIME: Duration = Duration::from_secs(60);
    // The flood's sockets and the server's ends of them, and some to spare.
    raise_open_file_limit(3 * HELD_PER_ADDRESS * ADDRESSES as usize);
    let server = TestServer::start(config()).await;
    assert!(ADDRESSES as usize * HELD_PER_ADDRESS > config().max_pending);
    let mut ann = server.join("ann").await;
    let mut bob = server.join("bob").await;

    let opened = Arc::new(AtomicUsize::new(0));
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let until = tokio::time::Instant::now() + FLOOD_TIME;
    let mut flood = Vec::new();
    for a in 0..ADDRESSES {
        for _ in 0..HELD_PER_ADDRESS {
            let (opened, closed_tx, mut stop) = (opened.clone(), closed_tx.clone(), stop.clone());
            let (addr, source) = (server.addr, format!("127.0.0.{}:0", 10 + a));
            flood.push(tokio::spawn(async move {
                while opened.fetch_add(1, Ordering::SeqCst) < BUDGET
                    && tokio::time::Instant::now() < until
                {
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    socket.bind(source.parse().unwrap()).unwrap();
                    let Ok(mut stream) = socket.connect(addr).await else {
                        continue;
                    };
                    // Say nothing; read whatever comes until the server closes.
                    let mut buf = [0u8; 512];
                    let dropped =
                        async { while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {} };
                    tokio::select! {
                        () = dropped => { let _ = closed_tx.send(()); }
                        _ = stop.changed() => return,
                        () = tokio::time::sleep_until(until) => return,
                    }
                }
            }));
        }
    }
    // Once the flood has reopened as many sockets as it holds, every place
    // has long been taken.
    tokio::time::timeout(PATIENCE, async {
        for _ in 0..HELD_PER_ADDRESS * ADDRESSES as usize {
            closed.recv().await;
        }
    })
    .await
    .expect("the server drops silent sockets");
    let before = opened.load(Ordering::SeqCst);
    let started = std::time::Instant::now();
    let mut cat = server
        .try_join("cat", PASSWORD)
        .await
        .expect("a login gets a place among the silent sockets");
    let took = started.elapsed();
    let during = opened.load(Ordering::SeqCst) - before;
    eprintln!("cat logged in after {took:?}; the flood opened {during} connections meanwhile");
    assert!(
        during > 0 && opened.load(Ordering::SeqCst) < BUDGET && tokio::time::Instant::now() < until,
        "the flood was still going on"
    );
    ann.send("still talking").await.unwrap();
    assert_eq!(
        next_message(&mut bob).await,
        ("ann".into(), "still talking".into(), false)
    );
    cat.send("made it").await.unwrap();
    assert_eq!(
        next_message(&mut bob).await,
        ("cat".into(), "made it".into(), false)
    );
    let _ = stop_tx.send(true);
    for task in flood {
        task.await.unwrap();
    }
}

/// Strangers whose logins are under way, as many as there are places, never
/// hold the places kept for members coming back: a member whose connection
/// dropped gets back in with its resume proof, and is heard, while a
/// stranger arriving then is told the server is busy.
#[tokio::test]
async fn a_member_coming_back_finds_a_place_kept_among_strangers_logging_in() {
    use serde_json::json;
    const PLACES: usize = 8;
    let server = TestServer::start(ServerConfig {
        max_pending: PLACES,
        ..config()
    })
    .await;
    let mut bob = server.join("bob").await;
    let mut ann = Raw::connect(server.addr).await;
    let init = ann.login("ann", PASSWORD, true).await.unwrap();
    let resume = json!({"resume": init["user_id"], "room_id": init["room_id"],
        "token": init["resume_token"], "after_seq": 0});
    drop(ann);
    // Strangers start logins (`srp_init` sent) and hold them, one per place.
    let mut strangers = Vec::new();
    let mut busy = 0;
    for i in 0..PLACES {
        let mut stranger = Raw::connect(server.addr).await;
        match stranger
            .begin_login(&format!("s{i}"), PASSWORD, true, json!({}))
            .await
        {
            Ok(login) => strangers.push((stranger, login)),
            Err(reply) => {
                assert_eq!(reply["code"], "busy", "{reply}");
                busy += 1;
            }
        }
    }
    assert!(busy > 0, "strangers took every place");
    let mut ann = Raw::connect(server.addr).await;
    let login = ann
        .begin_login("ann", PASSWORD, true, resume)
        .await
        .expect("ann's login gets a place");
    let init = ann.end_login(login).await.expect("ann is back");
    assert_eq!(init["type"], "init", "{init}");
    ann.send(json!({"type": "message", "text": ann.encrypt_message("back")}))
        .await;
    assert_eq!(
        next_message(&mut bob).await,
        ("ann".into(), "back".into(), false)
    );
}

/// Lets this process have at least `needed` files open: the soft limit is
/// often 1,024, below what a flood of sockets needs; the hard limit rarely.
#[cfg(unix)]
fn raise_open_file_limit(needed: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let needed = needed as u64;
    if soft < needed {
        assert!(
            hard >= needed,
            "this test needs {needed} open files; the hard limit is {hard}"
        );
        setrlimit(Resource::RLIMIT_NOFILE, needed, hard).unwrap();
    }
}

#[cfg(not(unix))]
fn raise_open_file_limit(_needed: usize) {}
