//! The file transfer state machine, driven as the core drives it, with
//! no socket: one member's frames are handed to another's.

use super::*;
use crate::crypto::Key32;

fn cipher() -> RoomCipher {
    RoomCipher::new(&Key32::new([7; 32]))
}

/// `n` bytes that differ from chunk to chunk.
fn contents(n: usize) -> Zeroizing<Vec<u8>> {
    Zeroizing::new((0..n).map(|i| (i / 7) as u8).collect())
}

/// Hands `ann`'s frames to `bob` as the server would relay them, and
/// returns bob's events.
fn relay(bob: &mut Transfers, cipher: &RoomCipher, frames: Vec<ClientFrame>) -> Vec<Event> {
    let mut events = Vec::new();
    for frame in frames {
        match frame {
            ClientFrame::FileOffer { id, chunks, meta } => {
                events.extend(bob.offered(cipher, "ann".into(), id, chunks, &meta));
            }
            ClientFrame::FileChunk { id, index, data } => {
                events.extend(bob.chunk(cipher, "ann", &id, index, &data));
            }
            other => panic!("{other:?}"),
        }
    }
    events
}

fn chunk_indexes(frames: &[ClientFrame]) -> Vec<u32> {
    frames
        .iter()
        .filter_map(|f| match f {
            ClientFrame::FileChunk { index, .. } => Some(*index),
            _ => None,
        })
        .collect()
}

fn offer_id(frames: &[ClientFrame]) -> String {
    match &frames[0] {
        ClientFrame::FileOffer { id, .. } => id.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_file_goes_out_in_a_window_paced_by_acknowledgements() {
    let (c, t0) = (cipher(), Instant::now());
    let mut ann = Transfers::new("ann", 1 << 20);
    let size = 20 * FILE_CHUNK;
    let out = ann.send(&c, "big.bin", contents(size), t0).unwrap();
    let id = offer_id(&out.frames);
    assert_eq!(
        chunk_indexes(&out.frames),
        (0..FILE_WINDOW).collect::<Vec<_>>()
    );
    assert_eq!(
        out.events,
        [Event::FileSending {
            name: "big.bin".into(),
            size: size as u64
        }]
    );
    assert!(ann.sending());
    assert!(matches!(ann.not_sending(), Err(FileError::Busy { .. })));
    assert_eq!(ann.stall_deadline(), Some(t0 + FILE_STALL_TIMEOUT));

    // Two chunks through: two more go out, and a tenth is done.
    let t1 = t0 + std::time::Duration::from_secs(1);
    let out = ann.acked(&c, &id, 1, t1);
    assert_eq!(chunk_indexes(&out.frames), [FILE_WINDOW, FILE_WINDOW + 1]);
    assert_eq!(
        out.events,
        [Event::FileProgress {
            sending: true,
            from: "ann".into(),
            name: "big.bin".into(),
            done: 2 * FILE_CHUNK as u64,
            size: size as u64
        }]
    );
    assert_eq!(ann.stall_deadline(), Some(t1 + FILE_STALL_TIMEOUT));
    // Another transfer's acknowledgement, or an old one, changes nothing.
    assert!(ann.acked(&c, "other", 5, t1).frames.is_empty());
    let out = ann.acked(&c, &id, 0, t1);
    assert!(out.frames.is_empty() && out.events.is_empty());

    let mut last = Output::default();
    for index in 2..20 {
        last = ann.acked(&c, &id, index, t1);
    }
    assert_eq!(
        last.events,
        [Event::FileSent {
            name: "big.bin".into(),
            size: size as u64
        }]
    );
    assert!(!ann.sending());
    assert_eq!(ann.stall_deadline(), None);
}

#[test]
fn what_cannot_be_sent_is_refused_before_anything_goes_out() {
    let c = cipher();
    let mut ann = Transfers::new("ann", 10);
    let err = ann.send(&c, "x", contents(11), Instant::now()).unwrap_err();
    assert!(matches!(
        err,
        ClientError::File(FileError::TooLarge {
            size: 11,
            limit: 10,
            ..
        })
    ));
    assert!(!ann.sending());
    ann.set_max_file_size(11);
    assert_eq!(ann.max_file_size(), 11);
    let long = "n".repeat(FILE_NAME_MAX + 10);
    let out = ann.send(&c, &long, contents(11), Instant::now()).unwrap();
    assert!(matches!(
        &out.events[0],
        Event::FileSending { name, .. } if name.len() == FILE_NAME_MAX
    ));
}

#[test]
fn a_file_arrives_whole_verified_and_is_kept() {
    let c = cipher();
    let mut ann = Transfers::new("ann", 1 << 20);
    let mut bob = Transfers::new("bob", 1 << 20);
    let size = 3 * FILE_CHUNK + 5;
    let out = ann
        .send(&c, "notes.txt", contents(size), Instant::now())
        .unwrap();
    let events = relay(&mut bob, &c, out.frames);
    assert_eq!(
        events.first(),
        Some(&Event::FileIncoming {
            from: "ann".into(),
            name: "notes.txt".into(),
            size: size as u64
        })
    );
    let progress: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::FileProgress { done, .. } => Some(*done),
            _ => None,
        })
        .collect();
    assert_eq!(progress.len(), 3, "one per chunk, each a new tenth");
    assert_eq!(
        events.last(),
        Some(&Event::FileReceived {
            n: 1,
            from: "ann".into(),
            name: "notes.txt".into(),
            size: size as u64
        })
    );
    let file = bob.received().next().unwrap();
    assert_eq!(file.contents(), &contents(size)[..]);
    assert!(bob.received_mut(1).is_some());
    assert!(bob.received_mut(2).is_none());
}

#[test]
fn offers_out_of_bounds_or_not_their_senders_are_not_taken() {
    let c = cipher();
    let mut ann = Transfers::new("ann", 1 << 20);
    let mut bob = Transfers::new("bob", 100);
    let out = ann.send(&c, "big", contents(101), Instant::now()).unwrap();
    let ClientFrame::FileOffer { id, chunks, meta } = out.frames[0].clone() else {
        panic!()
    };
    // Too large for bob.
    let declined = bob.offered(&c, "ann".into(), id.clone(), chunks, &meta);
    assert!(matches!(
        declined,
        Some(Event::FileFailed { sending: false, reason, .. }) if reason.starts_with("not accepted: it is")
    ));
    // Passed off as someone else's.
    let forged = bob.offered(&c, "cat".into(), id.clone(), chunks, &meta);
    assert_eq!(
        forged,
        Some(Event::Error {
            message: "a file offer from cat was written by ann; ignored".into()
        })
    );
    // Not made with the room key.
    let other = RoomCipher::new(&Key32::new([8; 32]));
    let unreadable = bob.offered(&other, "ann".into(), id, chunks, &meta);
    assert!(
        matches!(unreadable, Some(Event::Error { message }) if message.contains("could not be decrypted"))
    );
}

#[test]
fn only_so_many_files_arrive_at_once_and_a_repeated_offer_is_ignored() {
    let c = cipher();
    let mut bob = Transfers::new("bob", 1 << 20);
    let mut offers = Vec::new();
    for _ in 0..=INCOMING_MAX {
        let mut ann = Transfers::new("ann", 1 << 20);
        let out = ann.send(&c, "f", contents(10), Instant::now()).unwrap();
        offers.push(out.frames[0].clone());
    }
    for offer in &offers[..INCOMING_MAX] {
        let events = relay(&mut bob, &c, vec![offer.clone()]);
        assert!(matches!(events[..], [Event::FileIncoming { .. }]));
    }
    assert!(relay(&mut bob, &c, vec![offers[0].clone()]).is_empty());
    let events = relay(&mut bob, &c, vec![offers[INCOMING_MAX].clone()]);
    assert!(matches!(
        &events[..],
        [Event::FileFailed { reason, .. }] if reason.contains("already receiving")
    ));
}

#[test]
fn a_chunk_out_of_order_or_a_wrong_checksum_discards_the_file() {
    let c = cipher();
    let mut ann = Transfers::new("ann", 1 << 20);
    let mut bob = Transfers::new("bob", 1 << 20);
    let out = ann
        .send(&c, "a", contents(2 * FILE_CHUNK), Instant::now())
        .unwrap();
    let mut frames = out.frames;
    frames.swap(1, 2);
    let events = relay(&mut bob, &c, frames);
    assert!(matches!(
        &events[..],
        [Event::FileIncoming { .. }, Event::FileFailed { reason, .. }]
            if reason == "chunk 1 arrived where 0 was due; discarded"
    ));

    // An offer whose checksum the chunks do not match.
    let meta = FileMeta {
        from: "ann".into(),
        name: "b".into(),
        size: 3,
        sha256: "0".repeat(64),
    };
    let meta = c.encrypt_file_part(&serde_json::to_vec(&meta).unwrap());
    assert!(
        bob.offered(&c, "ann".into(), "x".into(), 1, &meta)
            .is_some()
    );
    let events = bob.chunk(&c, "ann", "x", 0, &c.encrypt_file_part(b"abc"));
    assert!(matches!(
        &events[..],
        [Event::FileFailed { reason, .. }] if reason == "it does not match its checksum; discarded"
    ));
    assert_eq!(bob.received().count(), 0);
}

#[test]
fn the_oldest_received_file_is_forgotten_first_and_said_so() {
    let c = cipher();
    let mut bob = Transfers::new("bob", 1 << 20);
    let mut last = Vec::new();
    for _ in 0..=RECEIVED_FILES_MAX {
        let mut ann = Transfers::new("ann", 1 << 20);
        let out = ann.send(&c, "f", contents(1), Instant::now()).unwrap();
        last = relay(&mut bob, &c, out.frames);
    }
    assert!(matches!(
        &last[..],
        [
            Event::FileIncoming { .. },
            Event::Error { message },
            Event::FileReceived { n, .. },
        ] if message == "received file #1 (f) forgotten to make room (it was never saved)"
            && *n == RECEIVED_FILES_MAX + 1
    ));
    assert_eq!(bob.received().count(), RECEIVED_FILES_MAX);
    assert_eq!(bob.received().next().unwrap().n, 2);
}

#[test]
fn a_stalled_file_is_cancelled() {
    let c = cipher();
    let mut ann = Transfers::new("ann", 1 << 20);
    let out = ann.send(&c, "s", contents(1), Instant::now()).unwrap();
    let id = offer_id(&out.frames);
    let out = ann.stalled();
    assert_eq!(out.frames, [ClientFrame::FileCancel { id }]);
    assert!(matches!(
        &out.events[..],
        [Event::FileFailed { sending: true, reason, .. }] if reason.ends_with("; cancelled")
    ));
    assert!(!ann.sending());
    let out = ann.stalled();
    assert!(out.frames.is_empty() && out.events.is_empty());
}

#[test]
fn aborts_end_the_transfer_they_name() {
    let c = cipher();
    let mut ann = Transfers::new("ann", 1 << 20);
    let mut bob = Transfers::new("bob", 1 << 20);
    let out = ann.send(&c, "a", contents(1), Instant::now()).unwrap();
    let id = offer_id(&out.frames);
    relay(&mut bob, &c, out.frames[..1].to_vec());

    // Someone else's transfer with our id is not ours.
    assert!(ann.aborted("cat".into(), &id, "no".into()).is_none());
    let ours = ann.aborted("ann".into(), &id, "refused".into());
    assert_eq!(
        ours,
        Some(Event::FileFailed {
            sending: true,
            from: "ann".into(),
            name: "a".into(),
            reason: "refused".into()
        })
    );
    assert!(!ann.sending());
    let theirs = bob.aborted("ann".into(), &id, "left".into());
    assert!(matches!(
        theirs,
        Some(Event::FileFailed { sending: false, .. })
    ));
    assert!(bob.aborted("ann".into(), &id, "again".into()).is_none());
}

#[test]
fn a_lost_connection_ends_every_transfer_ours_first() {
    let c = cipher();
    let mut ann = Transfers::new("ann", 1 << 20);
    let mut bob = Transfers::new("bob", 1 << 20);
    let out = ann.send(&c, "a", contents(1), Instant::now()).unwrap();
    relay(&mut bob, &c, out.frames[..1].to_vec());
    let out = bob.send(&c, "b", contents(1), Instant::now()).unwrap();
    assert!(!out.frames.is_empty());
    let reasons: Vec<(bool, String)> = bob
        .connection_lost()
        .into_iter()
        .map(|e| match e {
            Event::FileFailed {
                sending, reason, ..
            } => (sending, reason),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (true, "the connection was lost; send it again".into()),
            (false, "the connection was lost; nothing was kept".into()),
        ]
    );
    assert!(!bob.sending());
    assert!(bob.connection_lost().is_empty());
}

#[test]
fn offers_are_checked() {
    let meta = |size| FileMeta {
        from: "ann".into(),
        name: "x".into(),
        size,
        sha256: "a".repeat(64),
    };
    assert_eq!(check_offer(&meta(0), 1, 10), Ok(()));
    assert_eq!(
        check_offer(&meta(FILE_CHUNK as u64 + 1), 2, 1 << 20),
        Ok(())
    );
    assert!(check_offer(&meta(11), 1, 10).is_err());
    assert!(check_offer(&meta(5), 2, 10).is_err());
    let mut bad = meta(5);
    bad.sha256 = "zz".into();
    assert!(check_offer(&bad, 1, 10).is_err());
}
