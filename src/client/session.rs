//! The interactive session every human front end runs: it owns the
//! [`Client`], waits on input and on the room at once, answers commands and
//! renders events. Where lines come from and how they reach the screen is the
//! [`Screen`]'s business: a line editor in [`super::terminal`], plain
//! standard input and output in [`super::line`].

use std::future::Future;
use std::time::Duration;

use zeroize::Zeroizing;

use super::command::{self, Command, Names};
use super::dispatch::{self, Outcome};
use super::render::{PromptKind, Renderer, Shown, Theme, now_hhmm};
use super::sending::Sending;
use super::{Client, ClientError, Event};

/// Where input comes from and output goes.
pub(crate) trait Screen {
    /// Shows lines, above the input line if there is one. `bell` rings the
    /// terminal bell first.
    async fn show(&mut self, lines: Vec<String>, bell: bool) -> Result<(), ClientError>;

    /// The next line typed; `None` once the person has left (end of input,
    /// Ctrl-C, Ctrl-D). Must be cancel-safe: it sits in a `select!`.
    async fn next_line(&mut self) -> Option<String>;

    /// Called once at the start and after every line: ask for the next one.
    async fn ready(&mut self, prompt: super::render::Prompt) -> Result<(), ClientError>;

    /// The line [`Screen::next_line`] just gave stays on screen as it was
    /// typed, prompt and all: a command, or an answer. A message does not:
    /// it shows as pending ([`Screen::set_pending`]), then as the room relays it.
    async fn typed(&mut self) -> Result<(), ClientError> {
        Ok(())
    }

    /// Our messages sent and not yet confirmed, to show apart (below the
    /// room's lines) from the next update on; replaces the ones before.
    fn set_pending(&mut self, _lines: Vec<String>) {}

    /// A line that could not be sent as it is (too long) goes back into the
    /// input line, to be shortened or sent another way.
    fn give_back(&mut self, _line: String) {}

    /// The members changed (for completion).
    fn set_names(&mut self, _names: Names) {}

    /// Lines `/help` adds about the keys this screen understands.
    fn key_help(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether [`Screen::set_pending`] shows anything: where it does not,
    /// what the pending lines would tell is printed instead.
    fn shows_pending(&self) -> bool {
        false
    }
}

/// What a screen prints for `lines`: each on its own line, after a bell if
/// `bell` (ours: sanitized peer text cannot contain one).
pub(crate) fn screen_text(lines: Vec<String>, bell: bool) -> String {
    let mut text = if bell {
        "\x07".to_owned()
    } else {
        String::new()
    };
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// What `/help` says, one line per command.
const HELP: [&str; 14] = [
    "/who                who is in the room",
    "/me <action>        say what you are doing: /me waves shows as * {me} waves",
    "/msg <name> <text>  a private message only they can read, not even the host",
    "/verify <name>      the safety code of your private session with them: compare it by voice or video",
    "/resend <n>         send again message n, reported as not delivered",
    "/clear              wipe the room's history for everyone (asks first)",
    "/lock, /unlock      close the room to newcomers (they knock and wait), or open it again",
    "/admit <name>       let a knocking newcomer in; /deny <name> turns them away",
    "/send <path>        share a file with the room, encrypted (see the room's size limit)",
    "/files              list the files received; they are kept in memory only",
    "/save <n> [path]    write received file n to disk (never overwrites)",
    "/quit, /exit, q     leave the room",
    "//text              send a message that starts with a /",
    "mention someone by name (or @name) and their terminal rings",
];

/// Runs the session until the person leaves, `shutdown` completes (a
/// signal), or the room is lost; then leaves the room, which wipes the keys.
pub(crate) async fn run<S: Screen>(
    mut client: Client,
    screen: &mut S,
    theme: Theme,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ClientError> {
    let look = Renderer::new(client.username(), theme);
    let mut sending = Sending::new(client.username());
    // The signal wins at any point, even while a screen that stopped
    // taking output holds the session up.
    let ended = tokio::select! {
        () = shutdown => Ok(()),
        chat = chat(&mut client, screen, &look, &mut sending) => chat,
    };
    settle_what_arrived(&mut client, screen, &look, &mut sending).await;
    // Nothing is left looking as if it were still on its way.
    screen.set_pending(sending.unconfirmed(&now_rfc3339()));
    ended?;
    client.leave().await
}

/// Events that arrived as the chat ended: what they confirm is not marked
/// unconfirmed or undelivered, and they are shown, for as long as the
/// screen takes output (a stuck one holds nobody up).
async fn settle_what_arrived<S: Screen>(
    client: &mut Client,
    screen: &mut S,
    look: &Renderer,
    sending: &mut Sending,
) {
    let mut lines = Vec::new();
    let mut replayed = false;
    for event in client.take_ready_events() {
        let live = screen.shows_pending();
        let (shown, _) = take_in(&event, sending, look, live, &mut replayed);
        lines.extend(shown.lines);
    }
    if !lines.is_empty() {
        let _ = tokio::time::timeout(LAST_WORDS_PATIENCE, screen.show(lines, false)).await;
    }
}

/// How long the last lines may wait for a screen that takes no output.
const LAST_WORDS_PATIENCE: Duration = Duration::from_secs(1);

/// The chat itself: lines typed and the room's events, until the person
/// leaves or the room is lost.
async fn chat<S: Screen>(
    client: &mut Client,
    screen: &mut S,
    look: &Renderer,
    sending: &mut Sending,
) -> Result<(), ClientError> {
    screen.set_names(completion_names(client));
    let mut banner = look.banner(
        client.server(),
        client.transport(),
        &client.users(),
        client.history_count(),
    );
    banner.extend(look.lock_state(client.locked_by(), client.knocking()));
    screen.show(banner, false).await?;
    screen.ready(look.prompt(PromptKind::Chat)).await?;
    let mut asking = PromptKind::Chat;
    // Earlier messages were replayed and nothing live has shown since: the
    // next live line comes under a divider, so replay and chat never blur.
    let mut replayed = false;
    loop {
        tokio::select! {
            line = screen.next_line() => {
                let Some(line) = line.map(Zeroizing::new) else { return Ok(()) };
                let kind = std::mem::replace(&mut asking, PromptKind::Chat);
                let Some(next) = answer(client, screen, look, sending, kind, &line).await?
                else {
                    return Ok(());
                };
                asking = next;
                screen.ready(look.prompt(asking)).await?;
            }
            event = client.next_event() => {
                let event = event?;
                // After a reconnect the member list and the knocks may be
                // new (a restarted room reports no joins and leaves).
                if matches!(
                    event,
                    Event::Joined { .. }
                        | Event::Left { .. }
                        | Event::Knock { .. }
                        | Event::KnockResolved { .. }
                        | Event::Reconnected { .. }
                ) {
                    screen.set_names(completion_names(client));
                }
                let live = screen.shows_pending();
                let (shown, pending_changed) =
                    take_in(&event, sending, look, live, &mut replayed);
                // The pending line goes in the same update that shows the
                // message: never both at once, never neither.
                if pending_changed {
                    screen.set_pending(sending.lines(&now_rfc3339()));
                }
                screen.show(shown.lines, shown.bell).await?;
            }
        }
    }
}

/// What the screen shows for `event`, and whether the pending lines changed
/// with it: one place for the chat and for what arrives as it ends.
/// `live_area`: the screen shows pending lines ([`Screen::shows_pending`]).
fn take_in(
    event: &Event,
    sending: &mut Sending,
    look: &Renderer,
    live_area: bool,
    replayed: &mut bool,
) -> (Shown, bool) {
    let pending_changed = sending.settle(event);
    let mut shown = look.event(event, &now_hhmm());
    if Sending::told_below(event) && live_area {
        shown.lines.clear();
    }
    divide_live_from_replay(replayed, event, &mut shown.lines, look);
    // A message that failed: its words, then why.
    shown
        .lines
        .splice(0..0, sending.take_failed(&now_rfc3339()));
    (shown, pending_changed)
}

/// Puts a divider above the first live line after the replayed history.
/// An error (a replayed message that would not open, say) is neither.
fn divide_live_from_replay(
    replayed: &mut bool,
    event: &Event,
    lines: &mut Vec<String>,
    look: &Renderer,
) {
    match event {
        Event::Message(m) if m.history => *replayed = true,
        Event::Error { .. } => {}
        _ if *replayed && !lines.is_empty() => {
            lines.insert(0, look.info("end of the earlier messages; live from here"));
            *replayed = false;
        }
        _ => {}
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Names Tab completes: the members, and newcomers knocking (for `/admit`).
fn completion_names(client: &Client) -> Names {
    Names {
        members: client.users(),
        knocking: client.knocking().to_vec(),
    }
}

/// Acts on `line`, typed at a `kind` prompt: what the next line is asked
/// for, or `None` to leave.
async fn answer<S: Screen>(
    client: &mut Client,
    screen: &mut S,
    look: &Renderer,
    sending: &mut Sending,
    kind: PromptKind,
    line: &str,
) -> Result<Option<PromptKind>, ClientError> {
    let command = match kind {
        PromptKind::ConfirmClear => {
            screen.typed().await?;
            if !command::is_yes(line) {
                screen.show(vec![look.info("not cleared")], false).await?;
                return Ok(Some(PromptKind::Chat));
            }
            Command::Clear
        }
        // Wiping the room for everyone: ask first.
        PromptKind::Chat => match command::parse(line) {
            Command::Clear => {
                screen.typed().await?;
                return Ok(Some(PromptKind::ConfirmClear));
            }
            command => command,
        },
    };
    // A message becomes a pending line, then the message; anything else
    // stays on screen as typed, its answer below it.
    let message = matches!(
        command,
        Command::Say(_) | Command::Me(_) | Command::Msg { .. }
    );
    if !message {
        screen.typed().await?;
    }
    let outcome = dispatch::carry_out(client, command.clone()).await?;
    if let Outcome::Refused(_) = &outcome
        && message
    {
        refused_message(screen, look, outcome, line).await?;
        return Ok(Some(PromptKind::Chat));
    }
    show(client, screen, look, sending, &command, outcome).await
}

/// Shows what a command did.
async fn show<S: Screen>(
    client: &Client,
    screen: &mut S,
    look: &Renderer,
    sending: &mut Sending,
    command: &Command<'_>,
    outcome: Outcome,
) -> Result<Option<PromptKind>, ClientError> {
    let lines = match outcome {
        // The room's events show the rest.
        Outcome::Nothing | Outcome::Asked => Vec::new(),
        Outcome::Leave => return Ok(None),
        Outcome::Sent(reference) => {
            if let Some(text) = command.room_text() {
                sending.room(reference, &text);
            } else if let Some(text) = client.awaiting_text(reference) {
                // `/resend n`: the words are the core's.
                sending.room(reference, text);
            }
            screen.set_pending(sending.lines(&now_rfc3339()));
            Vec::new()
        }
        Outcome::SentPrivately => {
            if let Command::Msg { to, text } = command {
                sending.private(to, text);
            }
            screen.set_pending(sending.lines(&now_rfc3339()));
            Vec::new()
        }
        Outcome::NothingToResend(n) => {
            vec![look.info(&format!("no undelivered message {n} to resend"))]
        }
        Outcome::Who => {
            let mut lines = vec![look.who(&client.users())];
            lines.extend(look.lock_state(client.locked_by(), client.knocking()));
            lines
        }
        Outcome::Files => look.files(client.received_files()),
        Outcome::Help => HELP
            .iter()
            .chain(screen.key_help())
            .map(|l| look.info(&l.replace("{me}", client.username())))
            .collect(),
        Outcome::Saved { n, path } => {
            vec![look.info(&format!("saved #{n} to {}", path.display()))]
        }
        Outcome::Refused(e) => vec![look.error(&e.to_string())],
        Outcome::Usage(usage) => vec![look.info(usage)],
        Outcome::BadPath(why) => vec![look.error(&why.to_string())],
        Outcome::Unknown(word) => vec![look.info(&command::unknown(&word))],
    };
    screen.show(lines, false).await?;
    Ok(Some(PromptKind::Chat))
}

/// A message refused before it went: one too long goes back into the input
/// line; for anything else the typed line stays on screen with the reason.
async fn refused_message<S: Screen>(
    screen: &mut S,
    look: &Renderer,
    outcome: Outcome,
    line: &str,
) -> Result<(), ClientError> {
    let Outcome::Refused(e) = outcome else {
        return Ok(());
    };
    let mut lines = vec![look.error(&e.to_string())];
    if matches!(e, ClientError::MessageTooLong) {
        screen.give_back(line.to_owned());
        lines.push(
            look.info(
                "it is back in the input line: shorten it, or save it to a file and /send that",
            ),
        );
    } else {
        screen.typed().await?;
    }
    screen.show(lines, false).await
}

#[cfg(test)]
mod tests {

    use tokio::sync::mpsc;

    use super::*;
    use crate::client::ClientConfig;
    use crate::client::render::Prompt;
    use crate::crypto::Password;
    use crate::server::{Server, ServerConfig};

    const PATIENCE: Duration = Duration::from_secs(10);
    const PASSWORD: &str = "pw";

    /// A screen the test types into and reads from.
    struct FakeScreen {
        /// The lines the test types, taken as the person's input.
        typed: mpsc::UnboundedReceiver<String>,
        /// Where the lines the session shows go, with whether they rang.
        shown: mpsc::UnboundedSender<(Vec<String>, bool)>,
        /// Where the prompts the session asks with go.
        prompts: mpsc::UnboundedSender<Prompt>,
    }

    impl Screen for FakeScreen {
        async fn show(&mut self, lines: Vec<String>, bell: bool) -> Result<(), ClientError> {
            let _ = self.shown.send((lines, bell));
            Ok(())
        }
        async fn next_line(&mut self) -> Option<String> {
            self.typed.recv().await
        }
        async fn ready(&mut self, prompt: Prompt) -> Result<(), ClientError> {
            let _ = self.prompts.send(prompt);
            Ok(())
        }
    }

    /// The test's side of a [`FakeScreen`].
    struct Person {
        /// Lines to type into the session.
        typing: mpsc::UnboundedSender<String>,
        /// What the session showed, to wait for and check.
        screen: mpsc::UnboundedReceiver<(Vec<String>, bool)>,
        /// The prompts the session asked with, to see when it is ready.
        prompts: mpsc::UnboundedReceiver<Prompt>,
        /// The running session, to see how it ended.
        session: tokio::task::JoinHandle<Result<(), ClientError>>,
    }

    impl Person {
        async fn join(addr: &str, name: &str) -> Person {
            let client = Client::connect(ClientConfig {
                server: addr.into(),
                username: name.into(),
                password: Password::new(PASSWORD.into()),
                allow_legacy: false,
            })
            .await
            .unwrap();
            let (typing, typed) = mpsc::unbounded_channel();
            let (shown, screen) = mpsc::unbounded_channel();
            let (prompt_tx, prompts) = mpsc::unbounded_channel();
            let session = tokio::spawn(async move {
                let mut fake = FakeScreen {
                    typed,
                    shown,
                    prompts: prompt_tx,
                };
                run(client, &mut fake, Theme::Plain, std::future::pending()).await
            });
            Person {
                typing,
                screen,
                prompts,
                session,
            }
        }

        /// Types a line, and waits until the session asks for the next one.
        async fn type_line(&mut self, line: &str) -> Prompt {
            self.typing.send(line.into()).unwrap();
            self.prompt().await
        }

        async fn prompt(&mut self) -> Prompt {
            tokio::time::timeout(PATIENCE, self.prompts.recv())
                .await
                .expect("a prompt in time")
                .expect("session alive")
        }

        /// Shown lines until one contains `needle`; returns that batch.
        async fn until(&mut self, needle: &str) -> (Vec<String>, bool) {
            loop {
                let (lines, bell) = tokio::time::timeout(PATIENCE, self.screen.recv())
                    .await
                    .unwrap_or_else(|_| panic!("{needle:?} shown in time"))
                    .expect("session alive");
                if lines.iter().any(|l| l.contains(needle)) {
                    return (lines, bell);
                }
            }
        }
    }

    async fn room() -> (String, tokio::sync::oneshot::Sender<()>) {
        let server = Server::bind(
            "127.0.0.1:0",
            ServerConfig::default(),
            Password::new(PASSWORD.into()),
        )
        .await
        .unwrap();
        let addr = server.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    #[tokio::test]
    async fn a_session_as_a_person_sees_it() {
        let (addr, _stop) = room().await;
        let mut ann = Person::join(&addr, "ann").await;
        let (banner, _) = ann.until("online").await;
        assert!(banner[0].contains("sealed session"), "{banner:?}");
        assert_eq!(ann.prompt().await.raw, "ann> ");

        let mut bob = Person::join(&addr, "bob").await;
        bob.prompt().await;
        ann.until("bob joined").await;

        ann.type_line("hello bob").await;
        let (lines, bell) = bob.until("ann: hello bob").await;
        assert!(bell, "a mention rings: {lines:?}");
        let (_, bell) = ann.until("ann: hello bob").await;
        assert!(!bell, "our own words never ring");

        // `/me` goes out as its text and shows as an action.
        ann.type_line("/me waves").await;
        bob.until("* ann waves").await;

        // Hostile text reaches the screen visibly and harmlessly.
        ann.type_line("x\x1b[2J\x1b]0;title\x07\ry\u{202E}z").await;
        let (lines, _) = bob.until("ann: x").await;
        assert!(
            lines[0].ends_with("ann: x^[[2J^[]0;title^G^My<U+202E>z"),
            "{lines:?}"
        );

        // A paste is one message, shown as a block.
        ann.type_line("line one\nline two\n").await;
        let (lines, _) = bob.until("line one").await;
        assert!(lines[0].ends_with("ann:"), "{lines:?}");
        assert_eq!(&lines[1..], ["    line one", "    line two"]);

        // Commands answer locally.
        bob.type_line("/who").await;
        bob.until("online (2): ann, bob").await;
        bob.type_line("/nick").await;
        bob.until("unknown command /nick").await;
        bob.type_line("/me").await;
        bob.until("usage: /me").await;
        bob.type_line("/help").await;
        let (help, _) = bob.until("/me waves shows as * bob waves").await;
        assert!(help.iter().any(|l| l.contains("/clear")), "{help:?}");
        let (lines, _) = {
            bob.type_line(&"x".repeat(60 * 1024)).await;
            bob.until("too long").await
        };
        assert!(lines[0].contains("Nothing was sent"), "{lines:?}");

        // `/clear` asks first; only yes clears.
        let asked = bob.type_line("/clear").await;
        assert_eq!(asked.kind, PromptKind::ConfirmClear);
        assert_eq!(bob.type_line("n").await.kind, PromptKind::Chat);
        bob.until("not cleared").await;
        bob.type_line("/clear").await;
        bob.type_line("yes").await;
        ann.until("bob cleared the room's history").await;

        // Private messages: only the addressee sees them, in their own style,
        // and both can show the same safety code.
        ann.type_line("/msg bob just between us").await;
        let (lines, bell) = bob.until("[private]").await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].ends_with("[private] ann -> bob: just between us"),
            "{lines:?}"
        );
        assert!(bell, "a private message is for us: it rings");
        let (lines, bell) = ann.until("[private]").await;
        assert!(
            lines[0].ends_with("[private] ann -> bob: just between us"),
            "{lines:?}"
        );
        assert!(!bell);
        ann.type_line("/verify bob").await;
        let (ann_code, _) = ann.until("safety code with bob").await;
        bob.type_line("/verify ann").await;
        let (bob_code, _) = bob.until("safety code with ann").await;
        let digits = |l: &str| l.rsplit(": ").next().unwrap().to_owned();
        assert_eq!(digits(&ann_code[0]), digits(&bob_code[0]));
        bob.type_line("/msg nobody hello").await;
        bob.until("no one called \"nobody\"").await;
        bob.type_line("/msg bob").await;
        bob.until("usage: /msg").await;

        // `q` leaves; the other side sees it, and the session ends cleanly.
        ann.typing.send("q".into()).unwrap();
        tokio::time::timeout(PATIENCE, ann.session)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        bob.until("ann left").await;

        // End of input (Ctrl-D) leaves too.
        drop(bob.typing);
        tokio::time::timeout(PATIENCE, bob.session)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn locking_knocking_and_files_as_a_person_sees_them() {
        let (addr, _stop) = room().await;
        let mut ann = Person::join(&addr, "ann").await;
        ann.prompt().await;
        let mut bob = Person::join(&addr, "bob").await;
        bob.prompt().await;
        ann.until("bob joined").await;

        ann.type_line("/lock").await;
        ann.until("ann locked the room").await;
        bob.until("ann locked the room").await;
        bob.type_line("/admit").await;
        bob.until("usage: /admit <name>").await;

        // A newcomer knocks; the members' terminals ring and say what to do.
        let cat_addr = addr.clone();
        let cat = tokio::spawn(async move { Person::join(&cat_addr, "cat").await });
        let (lines, bell) = bob.until("cat is knocking").await;
        assert!(bell, "a knock rings");
        assert!(lines[0].contains("/admit cat"), "{lines:?}");
        bob.type_line("/admit cat").await;
        ann.until("bob let cat in").await;
        ann.until("cat joined").await;
        let mut cat = tokio::time::timeout(PATIENCE, cat).await.unwrap().unwrap();
        let (banner, _) = cat.until("online (3)").await;
        assert!(
            banner
                .iter()
                .any(|l| l.contains("the room is locked (by ann)")),
            "{banner:?}"
        );

        // A file: progress on both sides, then in memory until saved.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "meeting notes\n").unwrap();
        ann.type_line(&format!("/send {}", path.display())).await;
        ann.until("sending notes.txt (14 B) to the room").await;
        ann.until("notes.txt (14 B) sent").await;
        bob.until("ann is sending notes.txt (14 B)").await;
        let (lines, _) = bob.until("received #1 notes.txt").await;
        assert!(
            lines[0].contains("from ann") && lines[0].contains("/save 1"),
            "{lines:?}"
        );
        bob.type_line("/files").await;
        bob.until("#1 notes.txt (14 B) from ann").await;
        let out = dir.path().join("saved.txt");
        bob.type_line(&format!("/save 1 {}", out.display())).await;
        bob.until("saved #1 to").await;
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "meeting notes\n");
        bob.type_line(&format!("/save 1 {}", out.display())).await;
        bob.until("already exists").await;
        bob.type_line("/save 5").await;
        bob.until("no received file #5").await;
        bob.type_line("/send /nonexistent/file").await;
        bob.until("cannot read /nonexistent/file").await;

        bob.type_line("/unlock").await;
        cat.until("bob unlocked the room").await;
        // All of that was refused or answered without ending anyone's session.
        cat.type_line("/who").await;
        cat.until("online (3): ann, bob, cat").await;
    }

    #[tokio::test]
    async fn the_room_closing_ends_the_session_normally() {
        let (addr, stop) = room().await;
        let mut ann = Person::join(&addr, "ann").await;
        ann.prompt().await;
        let _ = stop.send(());
        let result = tokio::time::timeout(PATIENCE, ann.session)
            .await
            .unwrap()
            .unwrap();
        let error = result.expect_err("the room closed");
        assert!(matches!(error, ClientError::RoomClosed), "{error}");
        // The host ending the meeting is its normal end.
        assert_eq!(error.exit_code(), crate::client::exit_code::OK);
    }

    /// A terminal that takes no output (paused, or nobody reading it).
    struct StuckScreen;

    impl Screen for StuckScreen {
        async fn show(&mut self, _: Vec<String>, _: bool) -> Result<(), ClientError> {
            std::future::pending().await
        }
        async fn next_line(&mut self) -> Option<String> {
            std::future::pending().await
        }
        async fn ready(&mut self, _: Prompt) -> Result<(), ClientError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_signal_ends_the_session_while_the_screen_is_stuck() {
        let (addr, _stop) = room().await;
        let client = Client::connect(ClientConfig {
            server: addr.clone(),
            username: "ann".into(),
            password: Password::new(PASSWORD.into()),
            allow_legacy: false,
        })
        .await
        .unwrap();
        let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
        let session = tokio::spawn(async move {
            let shutdown = async {
                let _ = signalled.await;
            };
            run(client, &mut StuckScreen, Theme::Plain, shutdown).await
        });
        // Someone talks to ann, whose screen takes none of it.
        let mut bob = Person::join(&addr, "bob").await;
        bob.type_line("anyone there?").await;
        let _ = signal.send(());
        tokio::time::timeout(PATIENCE, session)
            .await
            .expect("the signal ends the session")
            .unwrap()
            .expect("a normal leave");
    }
}
