use std::collections::HashSet;

use super::names::Replacing;
use super::*;
use crate::server::limits::MAX_QUEUED_BYTES;
use crate::server::outbox::{self, Inbox};

use super::test_room as room;

/// A member joined with `reservation`, with its queue and its kick.
struct Joined {
    /// The member's place in the room, to act through.
    membership: Membership,
    /// Its queue, to fill it up or see what it holds.
    outbox: Outbox,
    /// The other end of its queue, to read what it was sent.
    inbox: Inbox,
    /// Whether and why the room removed it.
    kick: oneshot::Receiver<Kick>,
}

fn join(room: &Arc<Room>, reservation: &NameReservation) -> Joined {
    let (outbox, inbox) = outbox::channel();
    let (kick_tx, kick) = oneshot::channel();
    let membership = room
        .join(reservation, false, outbox.clone(), kick_tx, None, None)
        .unwrap();
    Joined {
        membership,
        outbox,
        inbox,
        kick,
    }
}

/// A fresh member id, as the handler draws for each login.
fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn member(room: &Arc<Room>, name: &str) -> Joined {
    join(room, &room.reserve(name, new_id(), None).unwrap())
}

/// Every action a member can take, as `old` tries them.
fn assert_refused_everything(old: &Membership) {
    assert_eq!(old.post("gAAAA".into()), Err(Superseded));
    assert_eq!(old.clear(), Err(Superseded));
    assert_eq!(old.lock(), Err(RoomError::Superseded(Superseded)));
    assert_eq!(old.unlock(), Err(RoomError::Superseded(Superseded)));
    assert_eq!(
        old.answer("cat", true),
        Err(RoomError::Superseded(Superseded))
    );
    assert_eq!(
        old.send_private("someone", "gAAAA".into()),
        Err(PrivateRefusal::Superseded(Superseded))
    );
    assert_eq!(old.offer_file(&"{}".into()), Err(Superseded));
    assert_eq!(
        old.relay_file_chunk(&mut HashSet::new(), &"{}".into(), &"{}".into()),
        Err(Superseded)
    );
}

#[test]
fn a_replaced_connection_can_no_longer_act() {
    let room = room();
    let mut old = member(&room, "ann");
    let takeover = room
        .reserve(
            "ann",
            new_id(),
            room.takeover_target("ann", Some(old.membership.user_id())),
        )
        .unwrap();
    assert!(takeover.is_takeover());
    let new = join(&room, &takeover);
    assert_eq!(old.kick.try_recv(), Ok(Kick::Replaced));
    assert_refused_everything(&old.membership);
    assert_eq!(room.history_len(), 0);
    assert_eq!(room.locked_by(), None);
    assert_eq!(new.membership.post("gAAAA".into()), Ok(1));
    // The old connection's leaving leaves the session in place.
    drop(old);
    assert_eq!(room.member_names(), ["ann"]);
}

#[test]
fn a_takeover_replaces_only_the_connection_it_set_out_to_replace() {
    let room = room();
    let mut old = member(&room, "ann");
    let id = old.membership.user_id().to_owned();
    let slow = room
        .reserve("ann", new_id(), room.takeover_target("ann", Some(&id)))
        .unwrap();
    let fast = room
        .reserve("ann", new_id(), room.takeover_target("ann", Some(&id)))
        .unwrap();
    let mut first = join(&room, &fast);
    assert_eq!(old.kick.try_recv(), Ok(Kick::Replaced));
    // The connection the slow login meant to replace is gone: it joins nothing.
    let (outbox, _inbox) = outbox::channel();
    let (kick, _) = oneshot::channel();
    assert!(matches!(
        room.join(&slow, false, outbox, kick, None, None),
        Err(RoomError::NameTaken)
    ));
    assert!(first.kick.try_recv().is_err(), "the first takeover stays");
    assert_eq!(first.membership.post("gAAAA".into()), Ok(1));
    // A login begun now takes over the current connection.
    let later = room
        .reserve("ann", new_id(), room.takeover_target("ann", Some(&id)))
        .unwrap();
    let _second = join(&room, &later);
    assert_eq!(first.kick.try_recv(), Ok(Kick::Replaced));
    assert_eq!(room.member_names(), ["ann"]);
}

#[test]
fn a_member_removed_as_too_slow_cannot_speak_for_the_next_holder_of_its_name() {
    let room = room();
    let mut old = member(&room, "ann");
    let bob = member(&room, "bob");
    // Ann stops reading: her queue is full, and bob's next message removes her.
    let room_left = MAX_QUEUED_BYTES - old.outbox.queued_bytes();
    old.outbox.push(&"x".repeat(room_left).into()).unwrap();
    bob.membership.post("gAAAA".into()).unwrap();
    assert_eq!(old.kick.try_recv(), Ok(Kick::TooSlow));
    assert_eq!(room.member_names(), ["bob"]);
    // Someone else takes the name; the old connection is nobody now.
    let _ann = member(&room, "ann");
    assert_refused_everything(&old.membership);
    assert_eq!(room.history_len(), 1);
}

/// A member not yet in the room, as `join` builds one, with its queue and kick.
fn newcomer(room: &Room, name: &str, generation: u64) -> (Member, Inbox, oneshot::Receiver<Kick>) {
    let (outbox, inbox) = outbox::channel();
    let (kick_tx, kick) = oneshot::channel();
    let user_id = new_id();
    let member = Member {
        resume_token: room.resume_token(&user_id),
        user_id,
        generation,
        username: name.to_owned(),
        legacy: false,
        outbox,
        kick: Some(kick_tx),
        rate: SessionRate::default(),
    };
    (member, inbox, kick)
}

/// The next frame queued in `inbox`, parsed, if there is one.
fn next_frame(inbox: &mut Inbox) -> Option<serde_json::Value> {
    use futures_util::FutureExt as _;
    let (frame, _) = inbox.recv().now_or_never().flatten()?;
    Some(serde_json::from_str(&frame).unwrap())
}

#[test]
fn admitting_a_newcomer_queues_its_init_first_and_tells_the_others() {
    let room = room();
    let mut bob = member(&room, "bob");
    while next_frame(&mut bob.inbox).is_some() {}
    let (cat, mut cat_inbox, _kick) = newcomer(&room, "cat", 1000);
    let cat_id = cat.user_id.clone();
    let cursor = room.admit_new(&mut room.lock(), cat, None, None).unwrap();
    assert!(
        cursor.is_some(),
        "a native joiner's history follows its init"
    );
    assert_eq!(next_frame(&mut cat_inbox).unwrap()["type"], "init");
    let joined = next_frame(&mut bob.inbox).unwrap();
    assert_eq!(joined["type"], "user_joined");
    assert_eq!(joined["user_id"], cat_id.as_str());
    assert_eq!(joined["username"], "cat");
    assert_eq!(room.member_names(), ["bob", "cat"]);
    assert_eq!(room.empty_for(), Duration::ZERO);
}

#[test]
fn a_full_room_admits_no_newcomer_and_tells_nobody() {
    let room = Room::new(
        RoomConfig {
            history_messages: 10,
            history_bytes: 1 << 20,
            max_users: 1,
            max_file_size: 5 << 20,
        },
        "c2FsdA==".into(),
    );
    let mut bob = member(&room, "bob");
    while next_frame(&mut bob.inbox).is_some() {}
    let (cat, mut cat_inbox, _kick) = newcomer(&room, "cat", 1000);
    assert!(matches!(
        room.admit_new(&mut room.lock(), cat, None, None),
        Err(RoomError::Full(1))
    ));
    assert!(next_frame(&mut cat_inbox).is_none());
    assert!(next_frame(&mut bob.inbox).is_none());
    assert_eq!(room.member_names(), ["bob"]);
}

#[test]
fn taking_over_keeps_the_session_and_tells_nobody_else() {
    let room = room();
    let mut ann = member(&room, "ann");
    let mut bob = member(&room, "bob");
    while next_frame(&mut bob.inbox).is_some() {}
    let ann_id = ann.membership.user_id().to_owned();
    let old = Replacing {
        user_id: ann_id.clone(),
        generation: ann.membership.generation,
    };
    // The session's rate bucket, one message a second: the takeover must
    // find it spent.
    let now = std::time::Instant::now();
    assert!(ann.membership.rate().allow(1, 1, now));
    let (new, mut new_inbox, _kick) = newcomer(&room, "ann", 1000);
    let cursor = room.take_over(&mut room.lock(), &old, new, None).unwrap();
    assert!(cursor.is_some());
    assert_eq!(ann.kick.try_recv(), Ok(Kick::Replaced));
    assert_eq!(next_frame(&mut new_inbox).unwrap()["type"], "init");
    assert!(next_frame(&mut bob.inbox).is_none(), "no leave, no join");
    {
        let state = room.lock();
        let held = &state.members[0];
        assert_eq!(held.user_id, ann_id);
        assert_eq!(held.generation, 1000);
        assert_eq!(
            held.resume_token.as_bytes(),
            room.resume_token(&ann_id).as_bytes()
        );
        assert!(!held.rate.allow(1, 1, now), "the bucket is the session's");
    }
    assert_eq!(room.member_names(), ["ann", "bob"]);
    // The connection it set out to replace is gone now: a second try fails.
    let (again, _inbox, _kick) = newcomer(&room, "ann", 1001);
    assert!(matches!(
        room.take_over(&mut room.lock(), &old, again, None),
        Err(RoomError::NameTaken)
    ));
}
