//! Sharing files, as members see it: a real server on 127.0.0.1, real
//! clients, and raw connections to show what the server relays and refuses.

mod common;

use std::path::Path;
use std::time::Duration;

use cmd_chat::client::files::FileError;
use cmd_chat::client::{Client, ClientError, Event};
use cmd_chat::crypto::RoomCipher;
use cmd_chat::protocol::limits::FILE_CHUNK;
use cmd_chat::server::ServerConfig;
use common::*;
use serde_json::json;

/// Events until one matches `done`, all of them, while the client keeps its
/// transfers moving.
async fn events_until(client: &mut Client, done: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let event = next(client).await;
        let last = done(&event);
        seen.push(event);
        if last {
            return seen;
        }
    }
}

fn is_sent(e: &Event) -> bool {
    matches!(e, Event::FileSent { .. } | Event::FileFailed { .. })
}

fn is_received(e: &Event) -> bool {
    matches!(e, Event::FileReceived { .. } | Event::FileFailed { .. })
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    bytes
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// What the current directory holds (where `/save` without a path writes).
fn here() -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(".")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
}

#[tokio::test]
async fn a_file_arrives_whole_and_reaches_the_disk_only_when_saved() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    let mut bob = server.join("bob").await;
    let mut cat = server.join("cat").await;
    until(
        &mut ann,
        |e| matches!(e, Event::Joined { user } if user == "cat"),
    )
    .await;
    until(&mut bob, |e| matches!(e, Event::Joined { .. })).await;
    assert_eq!(
        ann.max_file_size(),
        5 * 1024 * 1024,
        "announced by the server"
    );

    let outbox = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let contents = random_bytes(1024 * 1024);
    let source = outbox.path().join("report.bin");
    std::fs::write(&source, &contents).unwrap();
    let cwd_before = here();

    ann.send_file(&source).await.unwrap();
    let (sent, got_bob, got_cat) = tokio::join!(
        events_until(&mut ann, is_sent),
        events_until(&mut bob, is_received),
        events_until(&mut cat, is_received),
    );

    // The sender: started, progress in tenths, done.
    assert_eq!(
        sent.first(),
        Some(&Event::FileSending {
            name: "report.bin".into(),
            size: 1 << 20
        })
    );
    assert_eq!(
        sent.last(),
        Some(&Event::FileSent {
            name: "report.bin".into(),
            size: 1 << 20
        })
    );
    let steps: Vec<u64> = sent
        .iter()
        .filter_map(|e| match e {
            Event::FileProgress {
                sending: true,
                done,
                ..
            } => Some(*done),
            _ => None,
        })
        .collect();
    assert!(
        (1..=9).contains(&steps.len()) && steps.is_sorted(),
        "a line per tenth, not per chunk: {steps:?}"
    );

    // A receiver: told it is coming, progress in tenths, then it is whole.
    for got in [&got_bob, &got_cat] {
        assert_eq!(
            got.iter().find(|e| matches!(e, Event::FileIncoming { .. })),
            Some(&Event::FileIncoming {
                from: "ann".into(),
                name: "report.bin".into(),
                size: 1 << 20
            })
        );
        let progress = got
            .iter()
            .filter(|e| matches!(e, Event::FileProgress { sending: false, .. }))
            .count();
        assert!((1..=9).contains(&progress), "{progress} progress lines");
        assert_eq!(
            got.last(),
            Some(&Event::FileReceived {
                n: 1,
                from: "ann".into(),
                name: "report.bin".into(),
                size: 1 << 20
            })
        );
    }

    // Received means in memory: nothing appeared where the client saves by
    // default (its working directory). That it writes nowhere else either
    // is what tests/no_disk.rs shows, tracing a session with files.
    assert_eq!(here(), cwd_before);
    let held = cat.received_files().next().unwrap();
    assert_eq!(held.contents(), &contents[..]);
    assert_eq!(held.saved, None);

    // bob saves it; only then is there a file, byte for byte the same.
    let target = inbox.path().join("copy.bin");
    let written = bob.save_file(1, Some(&target)).await.unwrap();
    assert_eq!(written, target);
    assert_eq!(std::fs::read(&target).unwrap(), contents);
    // Saving into a directory uses the sender's name.
    let into_dir = bob.save_file(1, Some(inbox.path())).await.unwrap();
    assert_eq!(into_dir, inbox.path().join("report.bin"));
    assert_eq!(std::fs::read(&into_dir).unwrap(), contents);
    // Nothing is ever overwritten; the session carries on.
    std::fs::write(&target, b"mine").unwrap();
    let err = bob.save_file(1, Some(&target)).await.unwrap_err();
    assert!(
        matches!(err, ClientError::File(FileError::Exists(_))),
        "{err:?}"
    );
    assert!(err.is_recoverable());
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"mine");
    let err = bob.save_file(7, None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "there is no received file #7; /files lists them"
    );
    assert_eq!(files_under(inbox.path()).len(), 2);

    // cat never saved: the file exists nowhere but in cat's memory.
    assert_eq!(here(), cwd_before);
    // The server kept none of it.
    assert_eq!(server.room.history_len(), 0);
}

#[tokio::test]
async fn an_oversized_file_is_refused_before_anything_is_sent() {
    let server = TestServer::start(ServerConfig {
        max_file_size: 64 * 1024,
        ..TestServer::config_for_tests()
    })
    .await;
    let mut ann = server.join("ann").await;
    let mut bob = server.join("bob").await;
    next(&mut ann).await;
    assert_eq!(ann.max_file_size(), 64 * 1024);

    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![1u8; 64 * 1024 + 1]).unwrap();
    let err = ann.send_file(&big).await.unwrap_err();
    assert!(
        matches!(err, ClientError::File(FileError::TooLarge { .. })),
        "{err:?}"
    );
    assert!(err.is_recoverable());
    assert!(err.to_string().contains("over this room's limit"), "{err}");
    let err = ann
        .send_file(&dir.path().join("missing"))
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("cannot read"), "{err}");
    let err = ann.send_file(dir.path()).await.unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");

    // Nothing reached bob; the chat goes on.
    ann.send("no file came before this").await.unwrap();
    assert!(
        matches!(next(&mut bob).await, Event::Message(m) if m.text == "no file came before this")
    );

    // A file exactly at the limit goes through.
    let fits = dir.path().join("fits.bin");
    std::fs::write(&fits, vec![2u8; 64 * 1024]).unwrap();
    ann.send_file(&fits).await.unwrap();
    let (_, got) = tokio::join!(
        events_until(&mut ann, is_sent),
        events_until(&mut bob, is_received)
    );
    assert!(
        matches!(got.last(), Some(Event::FileReceived { size: 65536, .. })),
        "{got:?}"
    );
}

#[tokio::test]
async fn the_server_relays_only_ciphertext_and_stores_nothing() {
    let server = TestServer::native().await;
    let mut ann = server.join("ann").await;
    // A receiver played by hand, to see exactly what the server relays.
    let mut raw = Raw::connect(server.addr).await;
    raw.login("raw", PASSWORD, true).await.unwrap();
    next(&mut ann).await;

    let secret = "TOP-SECRET-CONTENTS ".repeat(4000); // 80 KB: three chunks
    ann.send_file_bytes("secret-plans.txt", secret.clone().into_bytes().into())
        .await
        .unwrap();
    let offer = raw.recv_type("file_offer").await;
    let mut chunks = Vec::new();
    while chunks.len() < 3 {
        chunks.push(raw.recv_type("file_chunk").await);
    }
    events_until(&mut ann, is_sent).await;

    // The name, size and hash are inside a token only room members can open.
    assert_eq!(offer["from"], "ann");
    assert_eq!(offer["chunks"], 3);
    let meta = offer["meta"].as_str().unwrap();
    assert!(meta.starts_with("gAAAAA"), "a Fernet token: {meta}");
    let opened: serde_json::Value = serde_json::from_slice(
        &raw.cipher
            .as_ref()
            .unwrap()
            .decrypt_file_part(meta)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(opened["name"], "secret-plans.txt");
    assert_eq!(opened["size"], secret.len());
    // Neither the name nor a byte of the contents crosses the server in clear.
    let relayed = format!("{offer}{}", json!(chunks));
    assert!(!relayed.contains("secret-plans"));
    assert!(!relayed.contains("TOP-SECRET"));
    let mut joined = String::new();
    for (i, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk["index"], i);
        assert_eq!(chunk["id"], offer["id"]);
        let data = chunk["data"].as_str().unwrap();
        cmd_chat::protocol::token::check_shape_within(
            data,
            cmd_chat::protocol::limits::FILE_CHUNK_TOKEN_MAX,
        )
        .expect("each chunk is a Fernet token");
        let plain = raw
            .cipher
            .as_ref()
            .unwrap()
            .decrypt_file_part(data)
            .unwrap();
        assert!(plain.len() <= FILE_CHUNK);
        joined.push_str(std::str::from_utf8(&plain).unwrap());
    }
    assert_eq!(joined, secret);
    // Files are never history: a later joiner gets none of it.
    assert_eq!(server.room.history_len(), 0);
    let late = server.join("late").await;
    assert_eq!(late.history_count(), 0);
}

#[tokio::test]
async fn legacy_members_receive_no_file_frames() {
    let server = TestServer::with_legacy().await;
    let mut ann = server.join("ann").await;
    let mut bob = server.join("bob").await;
    next(&mut ann).await;
    let mut old = Raw::connect(server.addr).await;
    old.login("old", PASSWORD, false).await.unwrap();
    next(&mut ann).await;
    next(&mut bob).await;

    ann.send_file_bytes("notes.txt", b"for native eyes".to_vec().into())
        .await
        .unwrap();
    let (_, got) = tokio::join!(
        events_until(&mut ann, is_sent),
        events_until(&mut bob, is_received)
    );
    assert!(matches!(got.last(), Some(Event::FileReceived { .. })));
    ann.send("after the file").await.unwrap();
    // All the 1.x member sees is the message: no frame it cannot parse.
    let frame = old.recv().await.unwrap();
    assert_eq!(frame["type"], "message", "{frame}");
    assert_eq!(
        old.decrypt(frame["data"]["text"].as_str().unwrap()),
        "after the file"
    );

    // A 1.x connection that tries to send a file is refused.
    old.send(json!({"type": "file_offer", "id": "x", "chunks": 1, "meta": "gAAA"}))
        .await;
    let answer = old.recv().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("native"),
        "refused with an error line a 1.x client understands: {answer}"
    );
}

#[tokio::test]
async fn files_do_not_count_against_the_chat_rate() {
    // One message a second, bursts of 50: a 2 MiB file is 64 chunks.
    let server = TestServer::start(ServerConfig {
        rate_per_sec: 1,
        ..TestServer::config_for_tests()
    })
    .await;
    let mut ann = server.join("ann").await;
    let mut bob = server.join("bob").await;
    next(&mut ann).await;
    let contents = random_bytes(2 * 1024 * 1024);
    ann.send_file_bytes("big.bin", contents.clone().into())
        .await
        .unwrap();
    let (sent, got) = tokio::join!(
        events_until(&mut ann, is_sent),
        events_until(&mut bob, is_received)
    );
    assert!(
        matches!(sent.last(), Some(Event::FileSent { .. })),
        "{sent:?}"
    );
    assert!(
        matches!(got.last(), Some(Event::FileReceived { .. })),
        "{got:?}"
    );
    assert_eq!(
        bob.received_files().next().unwrap().contents(),
        &contents[..]
    );
    ann.send("and chat still flows").await.unwrap();
    assert_eq!(next_message(&mut bob).await.1, "and chat still flows");
}

#[tokio::test]
async fn a_sender_who_leaves_mid_file_leaves_nothing_behind() {
    let server = TestServer::native().await;
    let mut bob = server.join("bob").await;
    let mut raw = Raw::connect(server.addr).await;
    raw.login("ann", PASSWORD, true).await.unwrap();
    next(&mut bob).await;
    let meta = raw.cipher.as_ref().unwrap().encrypt_file_part(
        json!({"from": "ann", "name": "half.bin", "size": 3 * FILE_CHUNK, "sha256": "0".repeat(64)})
            .to_string()
            .as_bytes(),
    );
    raw.send(json!({"type": "file_offer", "id": "f1", "chunks": 3, "meta": meta}))
        .await;
    let chunk = raw
        .cipher
        .as_ref()
        .unwrap()
        .encrypt_file_part(&vec![0u8; FILE_CHUNK]);
    raw.send(json!({"type": "file_chunk", "id": "f1", "index": 0, "data": chunk}))
        .await;
    assert_eq!(raw.recv_type("file_ack").await["index"], 0);
    drop(raw);

    let got = events_until(&mut bob, |e| matches!(e, Event::FileFailed { .. })).await;
    assert!(got.contains(&Event::FileIncoming {
        from: "ann".into(),
        name: "half.bin".into(),
        size: 3 * FILE_CHUNK as u64
    }));
    assert_eq!(
        got.last(),
        Some(&Event::FileFailed {
            sending: false,
            from: "ann".into(),
            name: "half.bin".into(),
            reason: "ann left before the file was complete".into(),
        })
    );
    assert_eq!(bob.received_files().count(), 0);
}

/// Bob (a client) and mallory (a raw member, with the room cipher taken
/// out) in `server`'s room, bob having heard mallory join.
async fn bob_and_mallory(server: &TestServer) -> (Client, Raw, RoomCipher) {
    let mut bob = server.join("bob").await;
    let mut raw = Raw::connect(server.addr).await;
    raw.login("mallory", PASSWORD, true).await.unwrap();
    next(&mut bob).await;
    let cipher = raw.cipher.take().unwrap();
    (bob, raw, cipher)
}

/// A file offer's description names who offers it, under the file key: an
/// offer relayed under another member's name is not taken, and a file's
/// parts do not open as messages (nor messages as file parts).
#[tokio::test]
async fn a_file_relayed_under_another_name_is_not_taken() {
    let server = TestServer::native().await;
    let (mut bob, mut raw, cipher) = bob_and_mallory(&server).await;
    let contents = b"ann's letter";
    let meta = cipher.encrypt_file_part(
        json!({"from": "ann", "name": "letter.txt", "size": contents.len(),
               "sha256": cmd_chat::client::files::sha256_hex(contents)})
        .to_string()
        .as_bytes(),
    );
    raw.send(json!({"type": "file_offer", "id": "f1", "chunks": 1, "meta": meta}))
        .await;
    raw.send(json!({"type": "file_chunk", "id": "f1", "index": 0, "data": cipher.encrypt_file_part(contents)}))
        .await;
    // A file part whose bytes read as a message, posted as one.
    let part = cipher.encrypt_file_part(br#"{"from":"mallory","text":"from a file"}"#);
    raw.send(json!({"type": "message", "text": part})).await;
    let mut errors = Vec::new();
    while errors.len() < 2 {
        match next(&mut bob).await {
            Event::Error { message } => errors.push(message),
            other @ (Event::FileIncoming { .. }
            | Event::FileReceived { .. }
            | Event::Message(_)) => {
                panic!("taken: {other:?}")
            }
            _ => {}
        }
    }
    assert!(
        errors[0].contains("a file offer from mallory was written by ann"),
        "{errors:?}"
    );
    assert!(errors[1].contains("could not be decrypted"), "{errors:?}");
    assert_eq!(bob.received_files().count(), 0);
}

#[tokio::test]
async fn a_receiver_rejects_a_file_that_does_not_match_its_checksum() {
    let server = TestServer::native().await;
    let (mut bob, mut raw, cipher) = bob_and_mallory(&server).await;
    let meta = cipher.encrypt_file_part(
        json!({"from": "mallory", "name": "swapped.txt", "size": 5, "sha256": "ab".repeat(32)})
            .to_string()
            .as_bytes(),
    );
    raw.send(json!({"type": "file_offer", "id": "f1", "chunks": 1, "meta": meta}))
        .await;
    raw.send(json!({"type": "file_chunk", "id": "f1", "index": 0, "data": cipher.encrypt_file_part(b"hello")}))
        .await;
    let got = events_until(&mut bob, |e| {
        matches!(e, Event::FileFailed { .. } | Event::FileReceived { .. })
    })
    .await;
    assert_eq!(
        got.last(),
        Some(&Event::FileFailed {
            sending: false,
            from: "mallory".into(),
            name: "swapped.txt".into(),
            reason: "it does not match its checksum; discarded".into(),
        })
    );
    assert_eq!(bob.received_files().count(), 0);
}

#[tokio::test]
async fn hostile_file_frames_are_refused_and_the_member_stays() {
    let server = TestServer::start(ServerConfig {
        max_file_size: 64 * 1024,
        ..TestServer::config_for_tests()
    })
    .await;
    let mut bob = server.join("bob").await;
    let mut raw = Raw::connect(server.addr).await;
    raw.login("eve", PASSWORD, true).await.unwrap();
    next(&mut bob).await;
    let token = raw.encrypt("x");

    async fn refused(raw: &mut Raw, frame: serde_json::Value) -> String {
        raw.send(frame).await;
        let aborted = raw.recv_type("file_aborted").await;
        assert_eq!(aborted["from"], "eve");
        aborted["reason"].as_str().unwrap().to_owned()
    }
    // More chunks than the room's limit allows.
    assert!(
        refused(
            &mut raw,
            json!({"type": "file_offer", "id": "a", "chunks": 3, "meta": token})
        )
        .await
        .contains("larger than")
    );
    assert!(
        refused(
            &mut raw,
            json!({"type": "file_offer", "id": "a/../b", "chunks": 1, "meta": token})
        )
        .await
        .contains("file id")
    );
    assert!(
        refused(
            &mut raw,
            json!({"type": "file_offer", "id": "a", "chunks": 1, "meta": "plaintext!"})
        )
        .await
        .contains("Fernet")
    );
    assert!(
        refused(
            &mut raw,
            json!({"type": "file_chunk", "id": "nope", "index": 0, "data": token})
        )
        .await
        .contains("no open transfer")
    );
    // Out of order ends the transfer.
    raw.send(json!({"type": "file_offer", "id": "b", "chunks": 2, "meta": token}))
        .await;
    assert!(
        refused(
            &mut raw,
            json!({"type": "file_chunk", "id": "b", "index": 1, "data": token})
        )
        .await
        .contains("chunk 1 arrived where chunk 0 was due")
    );
    // Plaintext is never relayed as a chunk.
    raw.send(json!({"type": "file_offer", "id": "c", "chunks": 2, "meta": token}))
        .await;
    assert!(
        refused(
            &mut raw,
            json!({"type": "file_chunk", "id": "c", "index": 0, "data": "not encrypted"})
        )
        .await
        .contains("Fernet")
    );
    // At most two open transfers per member.
    raw.send(json!({"type": "file_offer", "id": "d", "chunks": 2, "meta": token}))
        .await;
    raw.send(json!({"type": "file_offer", "id": "e", "chunks": 2, "meta": token}))
        .await;
    assert!(
        refused(
            &mut raw,
            json!({"type": "file_offer", "id": "f", "chunks": 2, "meta": token})
        )
        .await
        .contains("at most 2")
    );

    // bob heard of the transfers that opened and of their end, and nothing
    // else; eve is still a member.
    raw.send(json!({"type": "message", "text": raw.encrypt_message("still here")}))
        .await;
    let heard = events_until(&mut bob, |e| matches!(e, Event::Message(_))).await;
    assert!(
        heard
            .iter()
            .all(|e| !matches!(e, Event::FileReceived { .. })),
        "{heard:?}"
    );
    assert_eq!(server.room.member_names(), ["bob", "eve"]);
}

/// Cancelling a transfer and offering another does not start a fresh,
/// unpaced window: a member who has stopped reading is held to the file
/// limits (chunks dropped for it past its share of the queue) and is not
/// disconnected by a sender that loops offer, chunks, cancel.
#[tokio::test]
async fn cancel_and_offer_again_stays_paced() {
    // A rate that never binds: the pacing of files alone protects bob.
    let server = TestServer::start(ServerConfig {
        rate_per_sec: 1_000_000,
        ..TestServer::config_for_tests()
    })
    .await;
    // bob logs in and then stops reading: the slowest possible receiver.
    let mut bob = Raw::connect(server.addr).await;
    bob.login("bob", PASSWORD, true).await.unwrap();
    let mut eve = Raw::connect(server.addr).await;
    eve.login("eve", PASSWORD, true).await.unwrap();
    let meta = eve.encrypt(&"m".repeat(1400));
    let chunk = eve
        .cipher
        .as_ref()
        .unwrap()
        .encrypt_file_part(&vec![0u8; FILE_CHUNK]);
    // Unpaced, about a thousand rounds got bob disconnected.
    const ROUNDS: usize = 2000;
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut rounds = 0;
    for round in 0..ROUNDS {
        if std::time::Instant::now() > deadline {
            break;
        }
        rounds += 1;
        let id = format!("f{round}");
        eve.send(json!({"type": "file_offer", "id": id, "chunks": 160, "meta": meta}))
            .await;
        if round < 200 {
            for index in 0..8 {
                eve.send(json!({"type": "file_chunk", "id": id, "index": index, "data": chunk}))
                    .await;
            }
        }
        eve.send(json!({"type": "file_cancel", "id": id})).await;
        // Eve reads her refusals now and then, as a client would.
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), eve.recv()).await {}
    }
    // Everything eve sent has been handled once her next frame is answered.
    eve.send(json!({"type": "file_chunk", "id": "marker", "index": 0, "data": chunk}))
        .await;
    loop {
        if eve.recv_type("file_aborted").await["id"] == "marker" {
            break;
        }
    }
    // Past the thousand rounds that once got bob disconnected.
    assert!(
        rounds > 1000,
        "only {rounds} rounds ran before the deadline"
    );
    assert!(
        server.room.member_names().iter().any(|n| n == "bob"),
        "bob was disconnected by file traffic alone"
    );
    drop(bob);
}

/// A file offer reaches every member, so offers count against the chat rate
/// like messages do; the cancels that follow them are bounded by them.
#[tokio::test]
async fn file_offers_count_against_the_rate() {
    let server = TestServer::start(ServerConfig {
        rate_per_sec: 1,
        ..TestServer::config_for_tests()
    })
    .await;
    let mut ann = Raw::connect(server.addr).await;
    ann.login("ann", PASSWORD, true).await.unwrap();
    let mut eve = Raw::connect(server.addr).await;
    eve.login("eve", PASSWORD, true).await.unwrap();
    let meta = eve.encrypt("m");
    const PAIRS: usize = 500;
    let started = std::time::Instant::now();
    for i in 0..PAIRS {
        let id = format!("f{i}");
        eve.send(json!({"type": "file_offer", "id": id, "chunks": 1, "meta": meta}))
            .await;
        eve.send(json!({"type": "file_cancel", "id": id})).await;
    }
    // Eve hears why the offers past her allowance were refused.
    let refused = eve.recv_type("file_aborted").await;
    assert!(
        refused["reason"].as_str().unwrap().contains("slow down"),
        "{refused}"
    );
    // Everything eve sent has been handled, and relayed to ann's queue,
    // once her next frame is answered.
    let chunk = eve.cipher.as_ref().unwrap().encrypt_file_part(b"x");
    eve.send(json!({"type": "file_chunk", "id": "marker", "index": 0, "data": chunk}))
        .await;
    while eve.recv_type("file_aborted").await["id"] != "marker" {}
    // Ann gets an offer and an abort for each offer let through, all of
    // them queued before her own next message.
    ann.send(json!({"type": "message", "text": ann.encrypt_message("marker")}))
        .await;
    let mut from_eve = 0;
    loop {
        let frame = ann.recv().await.expect("ann stays");
        if frame["from"] == "eve" {
            from_eve += 1;
        }
        if frame["type"] == "message" {
            break;
        }
    }
    let allowed = 2
        * (cmd_chat::server::limits::RATE_BURST as usize
            + started.elapsed().as_secs() as usize
            + 1);
    assert!(
        (2..=allowed).contains(&from_eve),
        "ann got {from_eve} frames from eve's {PAIRS} offers and cancels; at most {allowed} allowed"
    );
}
