use super::*;

/// Delivers every frame of `out` from `from` (`id`, `name`) to `to`, and
/// the answers back, until both are quiet; returns the events each saw.
fn exchange(
    a: (&mut PrivateChats, &str),
    b: (&mut PrivateChats, &str),
    first: Output,
) -> (Vec<Event>, Vec<Event>) {
    let (a_chats, a_id) = a;
    let (b_chats, b_id) = b;
    let mut a_events = first.events;
    let mut b_events = Vec::new();
    let mut to_b: VecDeque<Outgoing> = first.frames.into();
    let mut to_a: VecDeque<Outgoing> = VecDeque::new();
    while !to_a.is_empty() || !to_b.is_empty() {
        if let Some(frame) = to_b.pop_front() {
            assert_eq!(frame.to, b_id);
            let a_name = a_chats.me.clone();
            let out = b_chats.receive(a_id, &a_name, frame.envelope);
            b_events.extend(out.events);
            to_a.extend(out.frames);
        }
        if let Some(frame) = to_a.pop_front() {
            assert_eq!(frame.to, a_id);
            let b_name = b_chats.me.clone();
            let out = a_chats.receive(b_id, &b_name, frame.envelope);
            a_events.extend(out.events);
            to_b.extend(out.frames);
        }
    }
    (a_events, b_events)
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Event::Private(m) => format!("{}->{}: {}", m.from, m.to, m.text),
            Event::Verify { user, .. } => format!("verify {user}"),
            Event::Error { message } => format!("error: {message}"),
            Event::PrivateNotSent { to, count, reason } => format!(
                "error: {}",
                crate::client::event::private_not_sent(to, *count, reason)
            ),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn first_message_queues_behind_the_handshake() {
    let now = Instant::now();
    let mut ann = PrivateChats::new("ann");
    let mut bob = PrivateChats::new("bob");
    let mut first = ann.send("B", "bob", "one", now).unwrap();
    assert!(matches!(
        first.frames[0].envelope,
        PrivateEnvelope::Hello { .. }
    ));
    assert!(first.events.is_empty(), "nothing is sent before the keys");
    let second = ann.send("B", "bob", "two", now).unwrap();
    assert!(second.frames.is_empty());
    first.frames.extend(second.frames);
    let (a, b) = exchange((&mut ann, "A"), (&mut bob, "B"), first);
    assert_eq!(texts(&a), ["ann->bob: one", "ann->bob: two"]);
    assert_eq!(texts(&b), ["ann->bob: one", "ann->bob: two"]);
    assert_eq!(ann.safety_code("B"), bob.safety_code("A"));
    assert!(ann.safety_code("B").is_some());

    // Once established, a message goes at once, both ways.
    let out = bob.send("A", "ann", "three", now).unwrap();
    let (b, a) = exchange((&mut bob, "B"), (&mut ann, "A"), out);
    assert_eq!(texts(&b), ["bob->ann: three"]);
    assert_eq!(texts(&a), ["bob->ann: three"]);
}

#[test]
fn simultaneous_hellos_settle_on_the_lower_name() {
    let now = Instant::now();
    let mut ann = PrivateChats::new("ann");
    let mut bob = PrivateChats::new("bob");
    let from_ann = ann.send("B", "bob", "a1", now).unwrap();
    ann.send("B", "bob", "a2", now).unwrap();
    let from_bob = bob.send("A", "ann", "b1", now).unwrap();
    bob.send("A", "ann", "b2", now).unwrap();
    // Both hellos cross in flight.
    let [
        Outgoing {
            envelope: ann_hello,
            ..
        },
    ] = <[Outgoing; 1]>::try_from(from_ann.frames).unwrap();
    let [
        Outgoing {
            envelope: bob_hello,
            ..
        },
    ] = <[Outgoing; 1]>::try_from(from_bob.frames).unwrap();
    let at_ann = ann.receive("B", "bob", bob_hello);
    assert!(
        at_ann.frames.is_empty() && at_ann.events.is_empty(),
        "ann initiates: ignores bob's hello"
    );
    let at_bob = bob.receive("A", "ann", ann_hello);
    // Bob answers with the key he drew, then sends his queue.
    assert!(matches!(
        at_bob.frames[0].envelope,
        PrivateEnvelope::HelloAck { .. }
    ));
    assert_eq!(texts(&at_bob.events), ["bob->ann: b1", "bob->ann: b2"]);
    let mut to_ann = at_bob.frames.into_iter();
    let ack = to_ann.next().unwrap();
    let after_ack = ann.receive("B", "bob", ack.envelope);
    assert_eq!(texts(&after_ack.events), ["ann->bob: a1", "ann->bob: a2"]);
    let mut seen_by_ann = Vec::new();
    for frame in to_ann {
        seen_by_ann.extend(ann.receive("B", "bob", frame.envelope).events);
    }
    assert_eq!(texts(&seen_by_ann), ["bob->ann: b1", "bob->ann: b2"]);
    let mut seen_by_bob = Vec::new();
    for frame in after_ack.frames {
        seen_by_bob.extend(bob.receive("A", "ann", frame.envelope).events);
    }
    assert_eq!(texts(&seen_by_bob), ["ann->bob: a1", "ann->bob: a2"]);
    assert_eq!(ann.safety_code("B"), bob.safety_code("A"));
}

#[test]
fn verify_before_and_after_the_session() {
    let now = Instant::now();
    let mut ann = PrivateChats::new("ann");
    let mut bob = PrivateChats::new("bob");
    let out = ann.verify("B", "bob", now);
    let (a, b) = exchange((&mut ann, "A"), (&mut bob, "B"), out);
    assert_eq!(texts(&a), ["verify bob"]);
    assert!(b.is_empty());
    let shown = bob.verify("A", "ann", now);
    assert!(shown.frames.is_empty());
    let (Event::Verify { code: c1, .. }, Event::Verify { code: c2, .. }) =
        (&a[0], &shown.events[0])
    else {
        panic!("{a:?} {:?}", shown.events)
    };
    assert_eq!(c1, c2);
}

#[test]
fn a_departure_or_a_silent_peer_fails_the_queue_cleanly() {
    let now = Instant::now();
    let mut ann = PrivateChats::new("ann");
    ann.send("B", "bob", "one", now).unwrap();
    ann.send("B", "bob", "two", now).unwrap();
    assert_eq!(ann.next_deadline(), Some(now + HANDSHAKE_DEADLINE));
    let events = ann.departed("B");
    assert_eq!(
        texts(&events),
        [
            "error: 2 private messages to bob were not sent: they left the room before the private session was set up"
        ]
    );
    assert_eq!(ann.next_deadline(), None);

    ann.send("C", "cat", "hello?", now).unwrap();
    assert!(ann.expire(now + HANDSHAKE_DEADLINE / 2).is_empty());
    let events = ann.expire(now + HANDSHAKE_DEADLINE);
    assert_eq!(
        texts(&events),
        [
            "error: 1 private message to cat was not sent: cat did not answer the private handshake within 20 s"
        ]
    );
    assert!(ann.safety_code("C").is_none());
    // A late answer is ignored, with a word.
    let late = ann.receive(
        "C",
        "cat",
        PrivateEnvelope::HelloAck {
            public: STANDARD.encode(KeyPair::generate().public()),
        },
    );
    assert!(texts(&late.events)[0].contains("not in progress"));
}

#[test]
fn the_queue_is_bounded() {
    let now = Instant::now();
    let mut ann = PrivateChats::new("ann");
    for i in 0..MAX_QUEUED {
        ann.send("B", "bob", &i.to_string(), now).unwrap();
    }
    assert_eq!(
        ann.send("B", "bob", "one too many", now).unwrap_err(),
        PrivateError::QueueFull("bob".into())
    );
}

#[test]
fn refusals_and_garbage() {
    let now = Instant::now();
    let mut ann = PrivateChats::new("ann");
    let mut bob = PrivateChats::new("bob");
    ann.send("B", "bob", "queued", now).unwrap();
    let events = ann.refused("B", "bob", "bob uses cmd-chat 1.x", true);
    assert_eq!(
        texts(&events),
        ["error: 1 private message to bob was not sent: bob uses cmd-chat 1.x"]
    );
    // A message without a session, and a malformed hello.
    let out = bob.receive(
        "A",
        "ann",
        PrivateEnvelope::Msg {
            n: 0,
            ct: "AAAA".into(),
        },
    );
    assert!(texts(&out.events)[0].contains("no private session"));
    let out = bob.receive(
        "A",
        "ann",
        PrivateEnvelope::Hello {
            public: "!!".into(),
        },
    );
    assert!(texts(&out.events)[0].contains("malformed key"));
    let out = bob.receive(
        "A",
        "ann",
        PrivateEnvelope::Hello {
            public: STANDARD.encode([0u8; 32]),
        },
    );
    assert!(
        texts(&out.events)[0].contains("could not be set up"),
        "{:?}",
        out.events
    );
    assert!(out.frames.is_empty());
}

#[test]
fn a_new_hello_in_an_established_session_is_announced() {
    let now = Instant::now();
    let mut ann = PrivateChats::new("ann");
    let mut bob = PrivateChats::new("bob");
    let out = ann.send("B", "bob", "hi", now).unwrap();
    exchange((&mut ann, "A"), (&mut bob, "B"), out);
    let before = bob.safety_code("A").unwrap();
    // Ann lost her session (say, her handshake had timed out) and starts over.
    ann.departed("B");
    let out = ann.send("B", "bob", "again", now).unwrap();
    let (a, b) = exchange((&mut ann, "A"), (&mut bob, "B"), out);
    assert_eq!(texts(&a), ["ann->bob: again"]);
    assert!(texts(&b)[0].contains("safety code has changed"), "{b:?}");
    assert_eq!(texts(&b)[1], "ann->bob: again");
    assert_ne!(bob.safety_code("A").unwrap(), before);
    assert_eq!(bob.safety_code("A"), ann.safety_code("B"));
}

/// However a session ends short of the peer leaving (here a refusal the
/// server may have made up), the next one is announced on both sides:
/// its keys, and so its safety code, are new.
#[test]
fn a_session_set_up_again_is_announced_on_both_sides() {
    let now = Instant::now();
    let mut ann = PrivateChats::new("ann");
    let mut bob = PrivateChats::new("bob");
    let out = ann.send("B", "bob", "hi", now).unwrap();
    exchange((&mut ann, "A"), (&mut bob, "B"), out);
    ann.refused("B", "bob", "no such user", true);
    bob.refused("A", "ann", "no such user", true);
    let out = ann.send("B", "bob", "again", now).unwrap();
    let (a, b) = exchange((&mut ann, "A"), (&mut bob, "B"), out);
    for events in [&a, &b] {
        assert!(
            texts(events)[0].contains("safety code has changed"),
            "{events:?}"
        );
    }
    // Once a member has left, someone new may have its id: no warning.
    ann.departed("B");
    bob.departed("A");
    let out = ann.send("B", "bob", "fresh", now).unwrap();
    let (a, b) = exchange((&mut ann, "A"), (&mut bob, "B"), out);
    assert_eq!(texts(&a), ["ann->bob: fresh"]);
    assert_eq!(texts(&b), ["ann->bob: fresh"]);
}

/// The peer left before our answer to its handshake reached it: nothing we
/// wrote was lost, so nothing is reported (the room says they left), and
/// the useless session is gone.
#[test]
fn a_refused_answer_to_a_handshake_reports_nothing() {
    let now = Instant::now();
    let mut ann = PrivateChats::new("ann");
    let mut bob = PrivateChats::new("bob");
    let hello = ann.send("B", "bob", "hi", now).unwrap().frames.remove(0);
    let answer = bob.receive("A", "ann", hello.envelope);
    assert!(matches!(
        answer.frames[0].envelope,
        PrivateEnvelope::HelloAck { .. }
    ));
    assert!(bob.refused("A", "ann", "they left", true).is_empty());
    assert!(bob.safety_code("A").is_none(), "the session is gone");
    // Once bob has written in a session, a refusal is reported.
    let mut ann = PrivateChats::new("ann");
    let mut bob = PrivateChats::new("bob");
    let hello = ann.send("B", "bob", "hi", now).unwrap();
    exchange((&mut ann, "A"), (&mut bob, "B"), hello);
    let out = bob.send("A", "ann", "hello ann", now).unwrap();
    assert_eq!(texts(&out.events), ["bob->ann: hello ann"]);
    let events = bob.refused("A", "ann", "they left", true);
    assert_eq!(
        texts(&events),
        ["error: a private message to ann was not delivered: they left"]
    );
}

#[test]
fn queued_until_the_handshake_ends() {
    let now = Instant::now();
    let mut ann = PrivateChats::new("ann");
    let mut bob = PrivateChats::new("bob");
    assert!(!ann.queued());
    let out = ann.send("B", "bob", "hi", now).unwrap();
    assert!(ann.queued());
    exchange((&mut ann, "A"), (&mut bob, "B"), out);
    assert!(!ann.queued());
    ann.send("C", "cy", "hm", now).unwrap();
    assert!(ann.queued());
    ann.departed("C");
    assert!(!ann.queued());
}
