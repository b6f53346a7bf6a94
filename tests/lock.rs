//! Locking a room and knocking on it, as members and newcomers see it: a real
//! server on 127.0.0.1, real clients, and raw connections where a legacy
//! (1.x) client has to be played by hand.

mod common;

use std::time::Duration;

use cmd_chat::client::{Client, ClientError, Event, KnockOutcome, Waiting, exit_code};
use cmd_chat::server::ServerConfig;
use common::*;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A newcomer logging in in the background; `waiting` fires if it has to wait.
struct Newcomer {
    waiting: oneshot::Receiver<Waiting>,
    login: JoinHandle<Result<Client, ClientError>>,
}

fn knock(server: &TestServer, name: &str) -> Newcomer {
    let (tx, waiting) = oneshot::channel();
    let config = server.config(name, PASSWORD);
    let login = tokio::spawn(async move {
        Client::connect_with(config, move |w| {
            let _ = tx.send(w.clone());
        })
        .await
    });
    Newcomer { waiting, login }
}

impl Newcomer {
    async fn waits(&mut self) -> Waiting {
        tokio::time::timeout(PATIENCE, &mut self.waiting)
            .await
            .expect("told to wait in time")
            .expect("the login waits")
    }

    async fn result(self) -> Result<Client, ClientError> {
        tokio::time::timeout(PATIENCE, self.login)
            .await
            .expect("the login ends in time")
            .unwrap()
    }
}

async fn knocked(member: &mut Client, user: &str) {
    assert_eq!(
        until(member, |e| matches!(e, Event::Knock { .. })).await,
        Event::Knock { user: user.into() }
    );
}

async fn resolved(member: &mut Client) -> Event {
    until(member, |e| matches!(e, Event::KnockResolved { .. })).await
}

#[tokio::test]
async fn a_locked_room_lets_in_only_whom_a_member_admits() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let mut bob = server.join("bob").await;
    next(&mut ann).await; // bob joined
    ann.send("before the door closed").await.unwrap();
    next_message(&mut ann).await;
    next_message(&mut bob).await;

    ann.lock().await.unwrap();
    // Every member sees who locked it.
    for member in [&mut ann, &mut bob] {
        assert_eq!(next(member).await, Event::Locked { by: "ann".into() });
        assert_eq!(member.locked_by(), Some("ann"));
    }
    assert_eq!(server.room.locked_by().as_deref(), Some("ann"));

    // A newcomer with the password is told it waits, and members see a knock.
    let mut cat = knock(&server, "cat");
    let waiting = cat.waits().await;
    assert_eq!(waiting.locked_by, "ann");
    assert_eq!(waiting.timeout, Duration::from_secs(120));
    knocked(&mut ann, "cat").await;
    knocked(&mut bob, "cat").await;
    assert_eq!(bob.knocking(), ["cat"]);
    assert_eq!(server.room.member_names(), ["ann", "bob"], "not in yet");

    // bob lets cat in: everyone sees who did, then cat joining.
    bob.admit("cat").await.unwrap();
    for member in [&mut ann, &mut bob] {
        assert_eq!(
            resolved(member).await,
            Event::KnockResolved {
                user: "cat".into(),
                outcome: KnockOutcome::Admitted,
                by: Some("bob".into()),
            }
        );
        assert_eq!(next(member).await, Event::Joined { user: "cat".into() });
        assert!(member.knocking().is_empty());
    }
    let mut cat = cat.result().await.expect("admitted");
    assert_eq!(cat.users(), ["ann", "bob", "cat"]);
    assert_eq!(
        cat.locked_by(),
        Some("ann"),
        "the newcomer sees the room is locked"
    );
    assert_eq!(cat.history_count(), 1);
    // The newcomer learns who let it in, as the members did.
    assert_eq!(
        next(&mut cat).await,
        Event::KnockResolved {
            user: "cat".into(),
            outcome: KnockOutcome::Admitted,
            by: Some("bob".into()),
        }
    );
    assert_eq!(
        next_message(&mut cat).await,
        ("ann".into(), "before the door closed".into(), true)
    );
    cat.send("thanks for letting me in").await.unwrap();
    assert_eq!(next_message(&mut ann).await.1, "thanks for letting me in");
}

#[tokio::test]
async fn a_denied_newcomer_is_told_and_its_name_is_free_again() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    ann.lock().await.unwrap();
    next(&mut ann).await;

    let mut eve = knock(&server, "eve");
    eve.waits().await;
    knocked(&mut ann, "eve").await;
    ann.deny("eve").await.unwrap();
    assert_eq!(
        resolved(&mut ann).await,
        Event::KnockResolved {
            user: "eve".into(),
            outcome: KnockOutcome::Denied,
            by: Some("ann".into()),
        }
    );
    let err = eve.result().await.unwrap_err();
    assert!(matches!(err, ClientError::NotAdmitted(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "not let in: ann did not let you in: the room is locked"
    );
    assert_eq!(err.exit_code(), exit_code::NOT_ADMITTED);
    assert_eq!(server.room.member_names(), ["ann"]);
    assert!(server.room.knocking().is_empty());

    // The name was only held while eve waited.
    ann.unlock().await.unwrap();
    assert_eq!(next(&mut ann).await, Event::Unlocked { by: "ann".into() });
    server.join("eve").await;
}

#[tokio::test]
async fn a_knock_nobody_answers_expires_with_a_clear_error() {
    let server = TestServer::start(ServerConfig {
        knock_timeout: Duration::from_millis(300),
        ..TestServer::config_for_tests()
    })
    .await;
    let mut ann = server.join("ann").await;
    ann.lock().await.unwrap();
    next(&mut ann).await;

    let mut cat = knock(&server, "cat");
    // The server announces its deadline rounded up to whole seconds.
    assert_eq!(cat.waits().await.timeout, Duration::from_secs(1));
    knocked(&mut ann, "cat").await;
    // ann does nothing.
    let err = cat.result().await.unwrap_err();
    assert!(matches!(err, ClientError::NotAdmitted(_)), "{err:?}");
    assert!(
        err.to_string().contains("nobody let you in within 1 s"),
        "{err}"
    );
    assert!(err.to_string().contains("/admit"), "says what to do: {err}");
    assert_eq!(
        resolved(&mut ann).await,
        Event::KnockResolved {
            user: "cat".into(),
            outcome: KnockOutcome::Expired,
            by: None,
        }
    );
    // Too late to admit now.
    ann.admit("cat").await.unwrap();
    let refusal = until(&mut ann, |e| matches!(e, Event::Error { .. })).await;
    assert_eq!(
        refusal,
        Event::Error {
            message: "nobody called \"cat\" is waiting to be let in".into()
        }
    );
}

#[tokio::test]
async fn unlocking_opens_the_door_and_lets_the_waiting_in() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    ann.lock().await.unwrap();
    next(&mut ann).await;
    let mut cat = knock(&server, "cat");
    cat.waits().await;
    knocked(&mut ann, "cat").await;

    ann.unlock().await.unwrap();
    assert_eq!(next(&mut ann).await, Event::Unlocked { by: "ann".into() });
    assert_eq!(
        resolved(&mut ann).await,
        Event::KnockResolved {
            user: "cat".into(),
            outcome: KnockOutcome::Admitted,
            by: Some("ann".into()),
        }
    );
    let cat = cat.result().await.expect("let in by the unlock");
    assert_eq!(cat.locked_by(), None);

    // And from now on people walk straight in, without waiting.
    let mut dan = knock(&server, "dan");
    let dan_client = tokio::time::timeout(PATIENCE, &mut dan.login)
        .await
        .unwrap()
        .unwrap()
        .expect("joins freely");
    assert!(
        dan.waiting.try_recv().is_err(),
        "an open room never asks anyone to wait"
    );
    assert_eq!(dan_client.users(), ["ann", "cat", "dan"]);
}

#[tokio::test]
async fn a_newcomer_who_gives_up_withdraws_its_knock() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    ann.lock().await.unwrap();
    next(&mut ann).await;
    let mut cat = knock(&server, "cat");
    cat.waits().await;
    knocked(&mut ann, "cat").await;
    cat.login.abort();
    assert_eq!(
        resolved(&mut ann).await,
        Event::KnockResolved {
            user: "cat".into(),
            outcome: KnockOutcome::Withdrawn,
            by: None,
        }
    );
    assert!(ann.knocking().is_empty());
    assert!(server.room.knocking().is_empty());
    // The name the knock held (its login had proved the password) went with
    // it: once the room opens, a new "cat" gets it.
    ann.unlock().await.unwrap();
    next(&mut ann).await;
    let cat = server.join("cat").await;
    assert_eq!(cat.locked_by(), None);
    assert_eq!(server.room.member_names(), ["ann", "cat"]);
}

#[tokio::test]
async fn lock_requests_that_make_no_sense_are_refused_politely() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let mut bob = server.join("bob").await;
    next(&mut ann).await;

    ann.unlock().await.unwrap();
    assert_eq!(
        next(&mut ann).await,
        Event::Error {
            message: "the room is not locked".into()
        }
    );
    ann.lock().await.unwrap();
    next(&mut ann).await;
    next(&mut bob).await;
    bob.lock().await.unwrap();
    assert_eq!(
        next(&mut bob).await,
        Event::Error {
            message: "the room is already locked (by ann)".into()
        }
    );
    bob.deny("nobody").await.unwrap();
    assert_eq!(
        next(&mut bob).await,
        Event::Error {
            message: "nobody called \"nobody\" is waiting to be let in".into()
        }
    );
    // Both stay members.
    bob.send("still here").await.unwrap();
    assert_eq!(next_message(&mut ann).await.1, "still here");
}

#[tokio::test]
async fn a_locked_room_with_nobody_left_to_answer_opens_again() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    ann.lock().await.unwrap();
    next(&mut ann).await;
    ann.leave().await.unwrap();
    // Otherwise nobody could ever get in again until the server restarts.
    // (Should bob arrive before the server has seen ann go, he knocks, and
    // the opening lets him in all the same.)
    let bob = server.join("bob").await;
    assert_eq!(bob.locked_by(), None);
    assert_eq!(server.room.locked_by(), None);
}

#[tokio::test]
async fn knocks_are_bounded() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    ann.lock().await.unwrap();
    next(&mut ann).await;
    let limit = cmd_chat::server::limits::MAX_WAITING_KNOCKS;
    let mut waiting = Vec::new();
    for i in 0..limit {
        let mut newcomer = knock(&server, &format!("n{i}"));
        newcomer.waits().await;
        waiting.push(newcomer);
    }
    let err = server.try_join("one-too-many", PASSWORD).await.unwrap_err();
    assert!(matches!(err, ClientError::NotAdmitted(_)), "{err:?}");
    assert!(err.to_string().contains("try again later"), "{err}");
    assert_eq!(server.room.knocking().len(), limit);
}

#[tokio::test]
async fn legacy_clients_cannot_knock_and_never_see_the_door() {
    let server = TestServer::with_legacy().await;
    let mut ann = server.join("ann").await;
    // A 1.x member, played by hand.
    let mut old = Raw::connect(server.addr).await;
    old.login("old", PASSWORD, false)
        .await
        .expect("legacy login");
    next(&mut ann).await; // old joined

    ann.lock().await.unwrap();
    next(&mut ann).await;
    // A 1.x newcomer passes SRP, then is told plainly why it cannot come in.
    let mut late = Raw::connect(server.addr).await;
    // What comes where `init` would is the refusal.
    let refusal = late
        .login("late", PASSWORD, false)
        .await
        .expect("SRP passes");
    assert_eq!(refusal["code"], "room_locked");
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .contains("only native cmd-chat clients can knock"),
        "{refusal}"
    );
    assert!(late.until_closed().await.is_empty());

    // A native newcomer knocks and is admitted; the 1.x member only ever
    // sees the join and the chat, never a native-only frame.
    let mut cat = knock(&server, "cat");
    cat.waits().await;
    knocked(&mut ann, "cat").await;
    ann.admit("cat").await.unwrap();
    let mut cat = cat.result().await.unwrap();
    cat.send("hello old-timer").await.unwrap();
    let mut seen = Vec::new();
    loop {
        let frame = old.recv().await.expect("connection open");
        seen.push(frame["type"].as_str().unwrap_or("?").to_owned());
        if frame["type"] == "message" {
            assert_eq!(
                old.decrypt(frame["data"]["text"].as_str().unwrap()),
                "hello old-timer"
            );
            break;
        }
    }
    assert_eq!(seen, ["user_joined", "message"]);

    // And a 1.x member's own lock request is refused, not obeyed.
    old.send(serde_json::json!({"type": "unlock"})).await;
    let answer = old.recv().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("native"),
        "{answer}"
    );
    assert_eq!(server.room.locked_by().as_deref(), Some("ann"));
}
