use super::*;

fn message(from: &str, text: &str) -> Event {
    Event::Message(ChatMessage {
        seq: 1,
        from: from.into(),
        text: text.into(),
        timestamp: "2026-11-21T10:00:00.000Z".into(),
        history: false,
        relayed_again: None,
    })
}

#[test]
fn an_old_message_relayed_again_says_so_and_stays_quiet() {
    let r = plain("ann");
    let Event::Message(mut m) = message("bob", "ann, sign here") else {
        unreachable!()
    };
    m.relayed_again = Some("2026-11-20T09:00:00Z".into());
    let shown = r.event(&Event::Message(m), "x");
    assert!(
        shown.lines[0].contains("bob: ann, sign here"),
        "{:?}",
        shown.lines
    );
    assert!(shown.lines[0].contains("(relayed again by the server: written 2026-11-"));
    assert!(!shown.bell);
}

fn plain(me: &str) -> Renderer {
    Renderer::new(me, Theme::Plain)
}

/// Strips our own SGR codes, leaving what a person reads.
fn visible(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find("\x1b[") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('m').expect("SGR ends in m");
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn hostile_text_reaches_the_screen_harmlessly() {
    let hostile = "a\x1b[2Jb\x1b]0;title\x07c\rd\u{202E}e";
    for theme in [Theme::Color, Theme::Mono, Theme::Plain] {
        let shown =
            Renderer::new("bob", theme).event(&message("mal\x1b[31mlory", hostile), "10:00");
        assert!(!shown.bell, "a peer's BEL never rings our bell");
        assert_eq!(shown.lines.len(), 1);
        let line = &shown.lines[0];
        // The only escapes left are our own SGR sequences.
        let seen = visible(line);
        assert!(
            seen.ends_with("mal^[[31mlory: a^[[2Jb^[]0;title^Gc^Md<U+202E>e"),
            "{seen:?}"
        );
        assert!(!seen.chars().any(|c| c.is_control()), "{seen:?}");
        for (i, _) in line.match_indices('\x1b') {
            assert!(line[i..].starts_with("\x1b["), "only CSI SGR: {line:?}");
            let end = line[i..].find('m').unwrap();
            assert!(
                line[i + 2..i + end]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == ';'),
                "{line:?}"
            );
        }
        assert!(!line.contains('\r') && !line.contains('\x07') && !line.contains('\u{202E}'));
    }
}

#[test]
fn messages_actions_and_blocks() {
    let r = plain("bob");
    assert_eq!(
        visible(&r.event(&message("ann", "hello"), "x").lines[0])
            .split_once(' ')
            .unwrap()
            .1,
        "ann: hello"
    );
    let action = r.event(&message("ann", "/me waves"), "x");
    assert_eq!(action.lines[0].split_once(' ').unwrap().1, "* ann waves");
    // Only "/me " counts; "/meow" is an ordinary message.
    let meow = r.event(&message("ann", "/meow"), "x");
    assert_eq!(meow.lines[0].split_once(' ').unwrap().1, "ann: /meow");

    let block = r.event(&message("ann", "line one\nline two\r\n  line three\n"), "x");
    assert!(block.lines[0].ends_with(" ann:"), "{:?}", block.lines);
    assert_eq!(
        &block.lines[1..],
        ["    line one", "    line two", "      line three"]
    );
}

#[test]
fn private_lines_stand_apart_and_are_sanitized() {
    let private = |from: &str, to: &str, text: &str| {
        Event::Private(PrivateMessage {
            from: from.into(),
            to: to.into(),
            text: text.into(),
        })
    };
    let r = plain("bob");
    let shown = r.event(&private("ann", "bob", "psst\x1b[2J"), "10:00");
    assert_eq!(shown.lines, ["10:00 [private] ann -> bob: psst^[[2J"]);
    assert!(shown.bell, "a private message to us rings");
    let mine = r.event(&private("bob", "ann", "one\ntwo"), "10:00");
    assert_eq!(
        mine.lines,
        ["10:00 [private] bob -> ann:", "    one", "    two"]
    );
    assert!(!mine.bell);
    let colour = Renderer::new("bob", Theme::Color).event(&private("ann", "bob", "x"), "1");
    assert!(
        colour.lines[0].contains("\x1b[1;35m[private]\x1b[0m"),
        "{:?}",
        colour.lines
    );
    let mono = Renderer::new("bob", Theme::Mono).event(&private("ann", "bob", "x"), "1");
    assert!(
        mono.lines[0].contains("\x1b[4m[private]\x1b[0m"),
        "{:?}",
        mono.lines
    );

    let verify = r.event(
        &Event::Verify {
            user: "ann".into(),
            code: "12345 67890".into(),
        },
        "10:00",
    );
    assert_eq!(
        verify.lines[0],
        "10:00 -- safety code with ann: 12345 67890"
    );
    assert!(
        verify.lines[1].contains("by voice or video"),
        "{:?}",
        verify.lines
    );
}

#[test]
fn time_is_local_hh_mm() {
    let shown = plain("bob").event(&message("ann", "hi"), "x");
    let time = shown.lines[0].split_once(' ').unwrap().0;
    assert_eq!(time, local_hhmm("2026-11-21T10:00:00.000Z"));
    assert_eq!(time.len(), 5);
    assert_eq!(local_hhmm("yesterday"), "--:--");
}

#[test]
fn system_lines() {
    let r = plain("bob");
    let one = |e: &Event| r.event(e, "12:34").lines.join("\n");
    assert_eq!(
        one(&Event::Joined { user: "ann".into() }),
        "12:34 -- ann joined"
    );
    assert_eq!(
        one(&Event::Left { user: "ann".into() }),
        "12:34 -- ann left"
    );
    assert_eq!(
        one(&Event::Cleared { by: None }),
        "12:34 -- the room's history was cleared"
    );
    assert_eq!(
        one(&Event::Error {
            message: "bad\x1b]0;x\x07".into()
        }),
        "12:34 !! bad^[]0;x^G"
    );
    assert_eq!(
        one(&Event::KnockResolved {
            user: "bob".into(),
            outcome: KnockOutcome::Admitted,
            by: Some("ann".into()),
        }),
        "12:34 -- ann let you in"
    );
    let back = |missed, complete| one(&Event::Reconnected { missed, complete });
    assert_eq!(
        back(0, true),
        "12:34 -- back in the room; nothing was missed"
    );
    assert_eq!(
        back(2, true),
        "12:34 -- back in the room; 2 missed messages follow"
    );
    assert!(back(2, false).ends_with("already gone from the history"));
    let dim =
        Renderer::new("bob", Theme::Color).event(&Event::Joined { user: "ann".into() }, "12:34");
    assert!(dim.lines[0].contains("\x1b[2m-- "), "{:?}", dim.lines[0]);
    assert_eq!(visible(&dim.lines[0]), "12:34 -- ann joined");
}

#[test]
fn name_colours_are_stable_and_spread() {
    // Fixed values: the same name must look the same on every screen and
    // after every upgrade.
    assert_eq!(fnv1a(b""), 0x811c_9dc5);
    assert_eq!(fnv1a(b"a"), 0xe40c_292c);
    assert_eq!(name_colour("ann"), name_colour("ann"));
    let names = [
        "ann", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ];
    let colours: std::collections::HashSet<u8> = names.iter().map(|n| name_colour(n)).collect();
    assert!(colours.len() >= 4, "{colours:?}");
    assert!(colours.iter().all(|c| NAME_COLOURS.contains(c)));

    let r = Renderer::new("bob", Theme::Color);
    let theirs = &r.event(&message("ann", "hi"), "x").lines[0];
    assert!(
        theirs.contains(&format!("\x1b[{}mann\x1b[0m", name_colour("ann"))),
        "{theirs:?}"
    );
    let mine = &r.event(&message("bob", "hi"), "x").lines[0];
    assert!(
        mine.contains("\x1b[1mbob\x1b[0m"),
        "own name is bold: {mine:?}"
    );
}

#[test]
fn no_color_keeps_attributes_and_drops_colour() {
    let r = Renderer::new("bob", Theme::Mono);
    let line = &r.event(&message("ann", "hi bob"), "x").lines[0];
    assert!(
        !line.contains("\x1b[3") && !line.contains("\x1b[9"),
        "{line:?}"
    );
    assert!(line.contains("\x1b[1;7mbob\x1b[0m"), "{line:?}");
    let plain = &plain("bob").event(&message("ann", "hi bob"), "x").lines[0];
    assert!(!plain.contains('\x1b'), "{plain:?}");
}

#[test]
fn mentions_match_whole_words_in_any_case() {
    fn at(text: &str) -> Vec<&str> {
        mention_ranges(text, "ann")
            .into_iter()
            .map(|r| &text[r])
            .collect()
    }
    assert_eq!(at("hi ann"), ["ann"]);
    assert_eq!(at("@Ann, look"), ["Ann"]);
    assert_eq!(at("ANN: ann."), ["ANN", "ann"]);
    assert!(at("joanna anne annual").is_empty());
    assert!(at("").is_empty());
    assert_eq!(
        mention_ranges("héllo Zoë!", "zoë"),
        vec![Range { start: 7, end: 11 }]
    );
}

#[test]
fn mentions_ring_once_and_are_highlighted() {
    let r = Renderer::new("ann", Theme::Color);
    let shown = r.event(&message("bob", "hey @ann"), "x");
    assert!(shown.bell);
    assert!(
        shown.lines[0].ends_with("@\x1b[1;7mann\x1b[0m"),
        "{:?}",
        shown.lines
    );
    // Our own words, other people's names and history do not ring.
    assert!(!r.event(&message("ann", "I am ann"), "x").bell);
    assert!(!r.event(&message("bob", "hey joanna"), "x").bell);
    let old = Event::Message(ChatMessage {
        seq: 1,
        from: "bob".into(),
        text: "ann?".into(),
        timestamp: "2026-11-21T10:00:00.000Z".into(),
        history: true,
        relayed_again: None,
    });
    let shown = r.event(&old, "x");
    assert!(!shown.bell && shown.lines[0].contains("\x1b[1;7m"));
}

#[test]
fn lock_and_knock_lines() {
    let r = plain("bob");
    let one = |e: &Event| r.event(e, "12:34").lines.join("\n");
    assert_eq!(
        one(&Event::Locked { by: "ann".into() }),
        "12:34 -- ann locked the room: newcomers now knock and wait for a member to /admit them"
    );
    assert_eq!(
        one(&Event::Unlocked { by: "ann".into() }),
        "12:34 -- ann unlocked the room: anyone with the password may join"
    );
    let knock = r.event(&Event::Knock { user: "cat".into() }, "12:34");
    assert!(knock.bell, "a knock rings");
    assert_eq!(
        knock.lines,
        ["12:34 !! cat is knocking: /admit cat to let them in, /deny cat to turn them away"]
    );
    let resolved = |outcome, by: Option<&str>| {
        one(&Event::KnockResolved {
            user: "cat".into(),
            outcome,
            by: by.map(str::to_owned),
        })
    };
    assert_eq!(
        resolved(KnockOutcome::Admitted, Some("ann")),
        "12:34 -- ann let cat in"
    );
    assert_eq!(
        resolved(KnockOutcome::Denied, Some("ann")),
        "12:34 -- ann turned cat away"
    );
    assert!(resolved(KnockOutcome::Expired, None).contains("nobody answered"));
    assert!(resolved(KnockOutcome::Withdrawn, None).contains("stopped knocking"));
    // A hostile name in a knock is shown, not obeyed.
    let hostile = r.event(
        &Event::Knock {
            user: "x\x1b[2J".into(),
        },
        "12:34",
    );
    assert!(!hostile.lines[0].contains('\x1b'), "{:?}", hostile.lines);
}

#[test]
fn file_lines_and_progress_bars() {
    assert_eq!(progress_bar(0, 10), "[----------]   0%");
    assert_eq!(progress_bar(5, 10), "[#####-----]  50%");
    assert_eq!(progress_bar(10, 10), "[##########] 100%");
    assert_eq!(progress_bar(0, 0), "[##########] 100%");
    let r = plain("bob");
    let one = |e: &Event| r.event(e, "12:34").lines.join("\n");
    assert_eq!(
        one(&Event::FileProgress {
            sending: false,
            from: "ann".into(),
            name: "report.pdf".into(),
            done: 2_621_440,
            size: 5_242_880,
        }),
        "12:34 -- [#####-----]  50% report.pdf (2.5/5.0 MiB) from ann"
    );
    assert_eq!(
        one(&Event::FileProgress {
            sending: true,
            from: "bob".into(),
            name: "a.txt".into(),
            done: 3 * 1024,
            size: 10 * 1024,
        }),
        "12:34 -- [###-------]  30% a.txt (3/10 KiB) to the room"
    );
    let received = one(&Event::FileReceived {
        n: 2,
        from: "ann".into(),
        name: "../x\x1b]0;t\x07".into(),
        size: 10,
    });
    assert!(
        received.contains("received #2 ../x^[]0;t^G (10 B) from ann"),
        "{received}"
    );
    assert!(received.contains("/save 2"), "{received}");
    let failed = one(&Event::FileFailed {
        sending: false,
        from: "ann".into(),
        name: "a".into(),
        reason: "it does not match its checksum; discarded".into(),
    });
    assert_eq!(
        failed,
        "12:34 !! a from ann failed: it does not match its checksum; discarded"
    );
}

#[test]
fn banner_and_prompts() {
    let users = vec!["ann".to_owned(), "bob".to_owned()];
    let r = plain("ann");
    let banner = r.banner("127.0.0.1:3000", Transport::Sealed, &users, 3);
    assert_eq!(
        banner,
        [
            "-- joined 127.0.0.1:3000 as ann; sealed session: nothing after the login is readable on the network",
            "-- online (2): ann, bob",
            "-- 3 earlier messages replayed below; /help lists the commands",
        ]
    );
    let legacy = r.banner("h:1", Transport::Legacy, &users, 0).join("\n");
    assert!(legacy.contains("LEGACY") && legacy.contains("no earlier messages"));

    let colour = Renderer::new("ann", Theme::Color);
    let prompt = colour.prompt(PromptKind::Chat);
    assert_eq!(prompt.raw, "ann> ");
    assert_eq!(visible(&prompt.styled), prompt.raw);
    let confirm = colour.prompt(PromptKind::ConfirmClear);
    assert_eq!(confirm.raw, "wipe the room's history for everyone? [y/N] ");
    assert_eq!(visible(&confirm.styled), confirm.raw);
}
