//! The terminal UI as a person sees it: real `cmd-chat connect` processes in
//! tmux panes, typed into with `send-keys`, read back with `capture-pane`.
//!
//! Needs tmux (`apt-get install tmux`). Without it the tests say so and pass,
//! except under CI (the `CI` variable set), where they fail: CI installs it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_cmd-chat");
const PASSWORD: &str = "hunter2";

/// Reads of a pane before giving up on what it should show. A safety net so
/// a broken test fails instead of hanging, not a timing assertion.
const TRIES: u32 = 200;
const PAUSE: Duration = Duration::from_millis(75);

/// What the shell around a client prints when it exits, before the code.
const EXIT_MARK: &str = "[cmd-chat exited with ";

/// Pane size: wide enough that no line under test wraps.
const COLUMNS: &str = "160";
const ROWS: &str = "40";

/// Whether to run; panics under CI if tmux is missing.
fn tmux_available() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is required under CI: .ci/run installs it with apt-get"
        );
        eprintln!("skipping: tmux is not installed (apt-get install tmux)");
    }
    found
}

/// `cmd-chat serve` on 127.0.0.1, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    /// Kept open: the server exits if it cannot print the rest of its banner.
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "127.0.0.1", "0"])
            .env("CMD_CHAT_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cmd-chat serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let port = loop {
            line.clear();
            let read = stdout.read_line(&mut line).expect("read the banner");
            assert_ne!(read, 0, "the server exited before printing its port");
            if let Some(port) = common::banner_port(&line) {
                break port;
            }
        };
        Server {
            child,
            port,
            _stdout: stdout,
        }
    }

    /// Ctrl-C on the server: the host closes the room.
    fn close(&mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -INT {pid}");
        let _ = self.child.wait();
    }

    /// Freezes (`STOP`) or thaws (`CONT`) the server, as a stalled
    /// network would: it reads and answers nothing meanwhile.
    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{signal} {pid}");
    }

    fn stop(&mut self) {
        let _ = self.signal_if_alive("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn signal_if_alive(&mut self, signal: &str) -> Option<()> {
        self.child
            .try_wait()
            .ok()?
            .is_none()
            .then(|| self.signal(signal))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private tmux server, killed when dropped, pass or fail. Its socket and
/// config live in a temporary directory of their own, removed with it, so
/// runs never meet each other or a person's tmux, and leave nothing behind.
struct Tmux {
    dir: tempfile::TempDir,
}

impl Tmux {
    fn new() -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        // Keep a pane after its shell exits, so its last screen can be read;
        // no status bar.
        std::fs::write(
            dir.path().join("tmux.conf"),
            "set -g remain-on-exit on\nset -g status off\n",
        )
        .unwrap();
        Tmux { dir }
    }

    /// `tmux` talking to this server.
    fn tmux(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S")
            .arg(self.dir.path().join("tmux.sock"))
            .arg("-f")
            .arg(self.dir.path().join("tmux.conf"));
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = self.tmux().args(args).output().expect("run tmux");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Opens a session called `name` running `command`.
    fn open(&self, name: &str, command: &[&str]) {
        let mut args = vec![
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            COLUMNS,
            "-y",
            ROWS,
            "-e",
        ];
        let password = format!("CMD_CHAT_PASSWORD={PASSWORD}");
        args.push(&password);
        args.push("--");
        args.extend_from_slice(command);
        self.run(&args);
    }

    /// Opens a session with `cmd-chat connect` as `name`, in a shell that
    /// reports its exit code and then the terminal mode it left behind.
    fn join(&self, name: &str, port: u16) {
        self.join_with_env(name, port, "");
    }

    /// [`Tmux::join`] with `env` (`VAR=value ...`) set for the client.
    fn join_with_env(&self, name: &str, port: u16, env: &str) {
        self.connect(name, port, env, "--no-reconnect");
    }

    /// [`Tmux::join`], but the client reconnects when the connection drops.
    fn join_reconnecting(&self, name: &str, port: u16) {
        self.connect(name, port, "", "");
    }

    fn connect(&self, name: &str, port: u16, env: &str, options: &str) {
        let script = format!(
            "{env} \"$0\" connect {options} 127.0.0.1 \"$1\" \"$2\"; echo \"{EXIT_MARK}$?]\"; stty -a"
        );
        self.open(name, &["sh", "-c", &script, BIN, &port.to_string(), name]);
    }

    /// Opens a session with `cmd-chat serve` on 127.0.0.1 and no password
    /// given anywhere, and waits for its offer to make one.
    fn serve_without_password(&self, name: &str) {
        let serve = [
            "env",
            "-u",
            "CMD_CHAT_PASSWORD",
            BIN,
            "serve",
            "127.0.0.1",
            "0",
        ];
        self.open(name, &serve);
        self.wait_line(name, "Make one (six random words)? [Y/n]");
    }

    /// Types `text` literally, without Enter.
    fn type_text(&self, name: &str, text: &str) {
        self.run(&["send-keys", "-t", &format!("{name}:"), "-l", text]);
    }

    /// Presses keys by tmux name (`Enter`, `C-d`).
    fn press(&self, name: &str, key: &str) {
        self.run(&["send-keys", "-t", &format!("{name}:"), key]);
    }

    fn type_line(&self, name: &str, text: &str) {
        self.type_text(name, text);
        self.press(name, "Enter");
    }

    /// Pastes `text` as a terminal does: bracketed, if the program asked.
    fn paste(&self, name: &str, text: &str) {
        self.load_paste(text);
        self.run(&[
            "paste-buffer",
            "-p",
            "-d",
            "-b",
            "paste",
            "-t",
            &format!("{name}:"),
        ]);
    }

    /// Puts `text` in the tmux buffer `paste`.
    fn load_paste(&self, text: &str) {
        let mut load = self
            .tmux()
            .args(["load-buffer", "-b", "paste", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        load.stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        assert!(load.wait().unwrap().success());
    }

    /// Pastes `text` as a terminal without bracketed paste does: as if typed,
    /// each newline an Enter.
    fn paste_unbracketed(&self, name: &str, text: &str) {
        self.load_paste(text);
        self.run(&[
            "paste-buffer",
            "-d",
            "-b",
            "paste",
            "-t",
            &format!("{name}:"),
        ]);
    }

    /// What the pane shows now, wrapped lines joined, trailing blanks gone.
    fn screen(&self, name: &str) -> Vec<String> {
        let out = self.run(&["capture-pane", "-p", "-J", "-t", &format!("{name}:")]);
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end().to_owned())
            .collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
    }

    fn format(&self, name: &str, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", &format!("{name}:"), format]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Reads the pane until `ok` holds; returns that screen.
    fn wait_for(&self, name: &str, what: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
        for _ in 0..TRIES {
            let screen = self.screen(name);
            if ok(&screen) {
                return screen;
            }
            std::thread::sleep(PAUSE);
        }
        panic!(
            "{name}'s pane never showed {what}; it shows:\n{}",
            self.screen(name).join("\n")
        );
    }

    /// [`Tmux::wait_for`] with a safety net eight times as long.
    fn wait_long_for(&self, name: &str, what: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
        for _ in 0..7 * TRIES {
            if ok(&self.screen(name)) {
                return self.screen(name);
            }
            std::thread::sleep(PAUSE);
        }
        self.wait_for(name, what, ok)
    }

    /// ann and bob in the room, each at an empty prompt, ann having seen
    /// bob join.
    fn ann_and_bob(&self, port: u16) {
        self.join("ann", port);
        self.wait_prompt("ann");
        self.join("bob", port);
        self.wait_prompt("bob");
        self.wait_line("ann", " -- bob joined");
    }

    /// Waits for a line that contains `needle`.
    fn wait_line(&self, name: &str, needle: &str) -> Vec<String> {
        self.wait_for(name, needle, |s| s.iter().any(|l| l.contains(needle)))
    }

    /// Waits for an empty prompt (`name> `) on the last line.
    fn wait_prompt(&self, name: &str) -> Vec<String> {
        let prompt = format!("{name}>");
        self.wait_for(name, "the prompt", |s| s.last() == Some(&prompt))
    }

    /// Waits for the client in the pane to exit; returns its exit code, as
    /// the shell around it reports it. (tmux's own `pane_dead_status` can
    /// stay empty: it may see the pane close and never reap the process.)
    fn wait_exit(&self, name: &str) -> String {
        let screen = self.wait_line(name, EXIT_MARK);
        let line = screen.iter().find(|l| l.starts_with(EXIT_MARK)).unwrap();
        line[EXIT_MARK.len()..].trim_end_matches(']').to_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .tmux()
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

/// The index of the line that reads `HH:MM rest`, with a real time in front.
fn timed_line(screen: &[String], rest: &str) -> Option<usize> {
    screen.iter().position(|l| {
        let (time, after) = l.split_at_checked(6).unwrap_or(("", ""));
        let b = time.as_bytes();
        after == rest
            && b.len() == 6
            && b[2] == b':'
            && b[5] == b' '
            && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit())
    })
}

#[test]
fn two_people_chat_in_real_terminals() {
    if !tmux_available() {
        return;
    }
    let server = Server::start();
    let tmux = Tmux::new();

    tmux.join("ann", server.port);
    let ann = tmux.wait_prompt("ann");
    assert!(
        ann.iter()
            .any(|l| l.contains("sealed session") && l.contains("as ann")),
        "banner: {ann:#?}"
    );
    assert!(ann.iter().any(|l| l == "-- online (1): ann"), "{ann:#?}");
    assert!(
        ann.iter().any(|l| l.starts_with("-- no earlier messages")),
        "{ann:#?}"
    );

    tmux.join("bob", server.port);
    tmux.wait_prompt("bob");
    tmux.wait_for("ann", "bob joining", |s| {
        s.iter().any(|l| l.ends_with(" -- bob joined"))
    });

    // A message typed in one pane appears in the other, with its sender.
    tmux.type_line("ann", "hello from ann");
    tmux.wait_for("bob", "ann's message", |s| {
        timed_line(s, "ann: hello from ann").is_some()
    });

    // A half-typed line survives an incoming message: it is redrawn below it.
    tmux.type_text("bob", "a draft bob is still writing");
    tmux.wait_for("bob", "the draft", |s| {
        s.last()
            .is_some_and(|l| l == "bob> a draft bob is still writing")
    });
    tmux.type_line("ann", "second message");
    // (Waiting for both at once: a capture may land between the client
    // printing the message and redrawing the prompt below it.)
    let draft = "bob> a draft bob is still writing";
    let bob = tmux.wait_for("bob", "the message above the intact draft", |s| {
        timed_line(s, "ann: second message").is_some() && s.last().is_some_and(|l| l == draft)
    });
    assert!(
        timed_line(&bob, "ann: second message").unwrap() < bob.len() - 1,
        "the message is printed above the prompt: {bob:#?}"
    );

    // A hostile message is shown visibly escaped and does nothing: the screen
    // is not cleared, the title not changed, the draft not disturbed.
    let mut mallory = Command::new(BIN)
        .args(["connect", "127.0.0.1", &server.port.to_string(), "mallory"])
        .env("CMD_CHAT_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        let mut stdin = mallory.stdin.take().unwrap();
        stdin
            .write_all("A\x1b[2JB\x1b]0;title\x07C\rD\u{202E}E\n".as_bytes())
            .unwrap();
        // Closing stdin makes the scripted member leave after sending.
    }
    let bob = tmux.wait_for("bob", "mallory's message above the draft", |s| {
        timed_line(s, "mallory: A^[[2JB^[]0;title^GC^MD<U+202E>E").is_some()
            && s.last().is_some_and(|l| l == draft)
    });
    assert!(
        timed_line(&bob, "ann: hello from ann").is_some(),
        "earlier lines are still on screen: {bob:#?}"
    );
    assert_ne!(tmux.format("bob", "#{pane_title}"), "title");
    assert!(mallory.wait().unwrap().success());
    tmux.wait_for("bob", "mallory leaving", |s| {
        s.iter().any(|l| l.ends_with(" -- mallory left"))
    });

    // A multi-line paste is one message, shown as an indented block.
    tmux.paste(
        "ann",
        "first pasted line\nsecond pasted line\nthird pasted line",
    );
    tmux.wait_line("ann", "ann> first pasted line");
    tmux.press("ann", "Enter");
    let bob = tmux.wait_line("bob", "    third pasted line");
    let header = bob
        .iter()
        .rposition(|l| timed_line(std::slice::from_ref(l), "ann:").is_some())
        .unwrap_or_else(|| panic!("a header line for the paste: {bob:#?}"));
    assert_eq!(
        &bob[header + 1..header + 4],
        [
            "    first pasted line",
            "    second pasted line",
            "    third pasted line"
        ],
        "{bob:#?}"
    );
    assert!(
        !bob.iter().any(|l| l.contains("ann: second pasted line")),
        "not a burst of separate messages: {bob:#?}"
    );

    // A private message shows, marked, in both panes; the safety codes
    // both show for the conversation are the same.
    tmux.type_line("ann", "/msg bob just for you");
    tmux.wait_for("bob", "ann's private message", |s| {
        timed_line(s, "[private] ann -> bob: just for you").is_some()
    });
    tmux.wait_for("ann", "ann's private message sent", |s| {
        timed_line(s, "[private] ann -> bob: just for you").is_some()
    });
    tmux.type_line("ann", "/verify bob");
    tmux.press("bob", "C-u");
    tmux.type_line("bob", "/verify ann");
    let code = |pane: &str, peer: &str| {
        let prefix = format!("-- safety code with {peer}: ");
        let screen = tmux.wait_for(pane, "a safety code", |s| {
            s.iter()
                .any(|l| l.get(6..).is_some_and(|l| l.starts_with(&prefix)))
        });
        screen
            .iter()
            .find_map(|l| l.get(6..).and_then(|l| l.strip_prefix(&prefix)))
            .unwrap()
            .to_owned()
    };
    let ann_code = code("ann", "bob");
    assert_eq!(ann_code.len(), 35, "{ann_code:?}");
    assert_eq!(ann_code, code("bob", "ann"));

    // /quit leaves: the other pane shows it, and the program exits 0.
    tmux.type_line("ann", "/quit");
    tmux.wait_for("bob", "ann leaving", |s| {
        s.iter().any(|l| l.ends_with(" -- ann left"))
    });
    assert_eq!(tmux.wait_exit("ann"), "0");
    assert_terminal_restored(&tmux.wait_line("ann", "icanon"));

    // Ctrl-D on an empty line leaves too.
    tmux.press("bob", "C-u");
    tmux.press("bob", "C-d");
    assert_eq!(tmux.wait_exit("bob"), "0");
    assert_terminal_restored(&tmux.wait_line("bob", "icanon"));
}

#[test]
fn losing_the_server_mid_line_says_why_and_restores_the_terminal() {
    if !tmux_available() {
        return;
    }
    let mut server = Server::start();
    let tmux = Tmux::new();
    tmux.join("carol", server.port);
    tmux.wait_prompt("carol");
    tmux.type_text("carol", "unfinished thought");
    tmux.wait_line("carol", "carol> unfinished thought");
    server.stop();
    assert_eq!(tmux.wait_exit("carol"), "7");
    // `stty -a` names icanon either way (`icanon` or `-icanon`).
    let screen = tmux.wait_line("carol", "icanon");
    let error = screen
        .iter()
        .position(|l| l.starts_with("cmd-chat: error: "))
        .unwrap_or_else(|| panic!("one line saying why: {screen:#?}"));
    assert!(
        screen[error].contains("closed") || screen[error].contains("lost"),
        "{screen:#?}"
    );
    assert!(
        screen[..error]
            .iter()
            .any(|l| l == "carol> unfinished thought"),
        "{screen:#?}"
    );
    assert_terminal_restored(&screen);
}

/// The host ending the meeting is its normal end: a plain notice, exit 0,
/// and what was being typed still on screen to copy.
#[test]
fn the_host_closing_the_room_is_a_normal_end() {
    if !tmux_available() {
        return;
    }
    let mut server = Server::start();
    let tmux = Tmux::new();
    tmux.join("carol", server.port);
    tmux.wait_prompt("carol");
    tmux.type_text("carol", "half a thought");
    tmux.wait_line("carol", "carol> half a thought");
    server.close();
    assert_eq!(tmux.wait_exit("carol"), "0");
    let screen = tmux.wait_line("carol", "icanon");
    assert!(!screen.iter().any(|l| l.contains("error")), "{screen:#?}");
    let notice = screen
        .iter()
        .position(|l| l.contains("the host closed the room"))
        .unwrap_or_else(|| panic!("a notice: {screen:#?}"));
    assert!(
        screen[..notice]
            .iter()
            .any(|l| l == "carol> half a thought"),
        "{screen:#?}"
    );
    assert_terminal_restored(&screen);
}

/// On a terminal the full interface cannot drive (TERM=dumb), the plain line
/// interface reads the terminal as a stream. Losing the room ends it at
/// once, with its code, though nobody types and the input stays open.
#[test]
fn losing_the_server_ends_the_plain_line_interface_at_once() {
    if !tmux_available() {
        return;
    }
    let mut server = Server::start();
    let tmux = Tmux::new();
    tmux.join_with_env("dave", server.port, "TERM=dumb");
    tmux.wait_line("dave", "online (1): dave");
    server.stop();
    assert_eq!(tmux.wait_exit("dave"), "7");
}

/// `stty -a`'s output on `screen` shows a terminal back in its usual
/// cooked mode: line editing, echo, and signals from Ctrl-C.
fn assert_terminal_restored(screen: &[String]) {
    let modes = format!(" {} ", screen.join(" "));
    for mode in [" icanon ", " echo ", " isig "] {
        assert!(
            modes.contains(mode),
            "the terminal is back in{mode}mode: {screen:#?}"
        );
    }
}

#[test]
fn lines_typed_ahead_all_arrive_in_order() {
    if !tmux_available() {
        return;
    }
    let server = Server::start();
    let tmux = Tmux::new();
    tmux.ann_and_bob(server.port);

    // Three lines in one write to the terminal, as a fast typist, a macro or
    // typeahead while the previous line is being sent produce them.
    tmux.type_text("ann", "fast one\rfast two\rfast three\r");
    let burst = ["ann: fast one", "ann: fast two", "ann: fast three"];
    tmux.wait_for("bob", "all three lines of the burst", |s| {
        in_order(s, &burst)
    });
    // The sender sees them too, with no blank line after each (the receipt
    // for a message shows nothing).
    let ann = tmux.wait_for("ann", "the burst echoed", |s| in_order(s, &burst));
    let last = timed_line(&ann, "ann: fast three").unwrap();
    assert!(
        !ann[last - 2..last].iter().any(String::is_empty),
        "no blank lines between messages: {ann:#?}"
    );

    // A paste into a terminal that does not bracket it: every line is a
    // message of its own, none lost, in order.
    let lines: Vec<String> = (1..=10).map(|n| format!("log line {n:02}")).collect();
    tmux.paste_unbracketed("ann", &(lines.join("\n") + "\n"));
    let expected: Vec<String> = lines.iter().map(|l| format!("ann: {l}")).collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    // A safety net, not a timing claim: under load a pasted line can take a
    // second or two to go out; what is asserted is that none is lost and
    // the order holds.
    tmux.wait_long_for("bob", "every pasted line", |s| in_order(s, &expected));

    // Keys typed while the session is still busy with the line before (here
    // opening a named pipe, which waits for a writer) wait for the next
    // prompt: not echoed by the terminal in the meantime, not lost.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let send = format!("/send {}", fifo.display());
    tmux.type_line("ann", &send);
    // The line is taken (kept on screen as typed, the input line empty
    // below it) and not answered.
    let taken = format!("ann> {send}");
    tmux.wait_for("ann", "the /send line taken", |s| {
        s.len() >= 2 && s[s.len() - 2] == taken && s[s.len() - 1] == "ann>"
    });
    tmux.type_line("ann", "typed while busy");
    // A round trip through tmux, so the keys have reached the terminal.
    tmux.screen("ann");
    drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
    tmux.wait_line("ann", "is not a regular file");
    tmux.wait_for("bob", "the line typed while busy", |s| {
        timed_line(s, "ann: typed while busy").is_some()
    });
    tmux.wait_prompt("ann");
    let ann = tmux.screen("ann");
    assert!(
        !ann.iter().any(|l| l.starts_with("typed")),
        "keys typed ahead are not echoed outside the input line: {ann:#?}"
    );
}

/// A long text pasted where the terminal does not bracket pastes arrives
/// as typing, one key at a time. The client keeps up: the room's lines
/// still show while it comes in, and the whole text is in the input line
/// (here too long to send, so it stays there).
#[test]
fn a_long_unbracketed_paste_keeps_the_client_in_the_room() {
    if !tmux_available() {
        return;
    }
    let server = Server::start();
    let tmux = Tmux::new();
    tmux.ann_and_bob(server.port);

    let long = "x".repeat(60_000);
    tmux.paste_unbracketed("ann", &long);
    tmux.type_line("bob", "still with us?");
    tmux.wait_for("ann", "bob's message during the paste", |s| {
        timed_line(s, "bob: still with us?").is_some()
    });
    tmux.press("ann", "Enter");
    tmux.wait_line("ann", "too long");
    let ann = tmux.screen("ann");
    let last = ann.last().unwrap();
    assert!(last.starts_with("ann> ") && last.ends_with('x'), "{ann:#?}");
    assert!(
        !ann.iter().any(|l| l.starts_with("ann> xxx") && l != last),
        "{ann:#?}"
    );
}

/// While the client tries to get a lost connection back, the conversation
/// stays on screen: the first attempt is a line, later ones change one
/// line below the input rather than adding a line each.
#[test]
fn attempts_to_reconnect_do_not_push_the_conversation_away() {
    if !tmux_available() {
        return;
    }
    let server = Server::start();
    let tmux = Tmux::new();
    tmux.join_reconnecting("ann", server.port);
    tmux.wait_prompt("ann");
    tmux.type_line("ann", "before the outage");
    tmux.wait_for("ann", "the message confirmed", |s| {
        timed_line(s, "ann: before the outage").is_some()
    });
    server.signal("KILL");
    let ann = tmux.wait_for("ann", "a fourth attempt", |s| {
        s.iter().any(|l| l.contains("reconnecting, attempt 4"))
    });
    let attempts: Vec<&String> = ann
        .iter()
        .filter(|l| l.contains("reconnecting, attempt "))
        .collect();
    assert_eq!(
        attempts.len(),
        2,
        "the first, and the one under way: {ann:#?}"
    );
    assert!(attempts[0].ends_with("attempt 1"), "{ann:#?}");
    assert!(
        timed_line(&ann, "ann: before the outage").is_some(),
        "{ann:#?}"
    );
}

/// A message longer than the window goes on under its text, not under the
/// time stamp, and every word of it arrives.
#[test]
fn a_long_message_wraps_under_its_text() {
    if !tmux_available() {
        return;
    }
    let server = Server::start();
    let tmux = Tmux::new();
    tmux.ann_and_bob(server.port);
    let words: Vec<String> = (1..=60).map(|n| format!("word{n:02}")).collect();
    tmux.type_line("bob", &words.join(" "));
    let ann = tmux.wait_for("ann", "the last word", |s| {
        s.iter().any(|l| l.trim_end().ends_with("word60"))
    });
    let first = ann
        .iter()
        .position(|l| l.get(5..).is_some_and(|r| r.starts_with(" bob: word01 ")))
        .unwrap_or_else(|| panic!("the first row: {ann:#?}"));
    let rest: Vec<&String> = ann[first + 1..]
        .iter()
        .take_while(|l| l.starts_with(' '))
        .collect();
    assert!(rest.len() >= 2, "{ann:#?}");
    let indent = "HH:MM bob: ".len();
    for row in &rest {
        let pad = row.chars().take_while(|c| *c == ' ').count();
        assert_eq!(pad, indent, "under the text: {ann:#?}");
    }
    let shown: Vec<&str> = std::iter::once(&ann[first])
        .chain(rest.iter().copied())
        .flat_map(|l| l.split_whitespace())
        .filter(|w| w.starts_with("word"))
        .collect();
    assert_eq!(shown, words, "{ann:#?}");
}

/// Messages replayed to a newcomer are set apart from live chat by one
/// line above the first live one.
#[test]
fn replayed_history_is_set_apart_from_live_chat() {
    if !tmux_available() {
        return;
    }
    let server = Server::start();
    let tmux = Tmux::new();
    tmux.join("ann", server.port);
    tmux.wait_prompt("ann");
    tmux.type_line("ann", "said before bob came");
    tmux.wait_for("ann", "the first message", |s| {
        timed_line(s, "ann: said before bob came").is_some()
    });
    tmux.join("bob", server.port);
    tmux.wait_prompt("bob");
    tmux.wait_line("ann", " -- bob joined");
    tmux.type_line("ann", "said live");
    let divider = "-- end of the earlier messages; live from here";
    let bob = tmux.wait_for("bob", "the live message", |s| {
        timed_line(s, "ann: said live").is_some()
    });
    let replayed = timed_line(&bob, "ann: said before bob came").unwrap();
    let live = timed_line(&bob, "ann: said live").unwrap();
    let between: Vec<&String> = bob[replayed + 1..live].iter().collect();
    assert_eq!(between, [divider], "{bob:#?}");
    assert_eq!(bob.iter().filter(|l| *l == divider).count(), 1, "{bob:#?}");
    // Ann saw no replay: no divider.
    assert!(!tmux.screen("ann").iter().any(|l| l == divider));
}

/// Each message shows once on its sender's screen: the typed line becomes
/// the message, pending (`…`) until the room relays it back, then in its
/// place among the room's lines. Private messages and actions the same.
#[test]
fn each_message_shows_once_pending_until_the_room_confirms_it() {
    if !tmux_available() {
        return;
    }
    let server = Server::start();
    let tmux = Tmux::new();
    tmux.ann_and_bob(server.port);

    tmux.type_line("ann", "good morning");
    tmux.type_line("ann", "/me pours coffee");
    tmux.type_line("ann", "/msg bob the usual?");
    let sent = [
        "ann: good morning",
        "* ann pours coffee",
        "[private] ann -> bob: the usual?",
    ];
    tmux.wait_for("bob", "ann's three messages", |s| in_order(s, &sent));
    let ann = tmux.wait_for("ann", "ann's three messages", |s| in_order(s, &sent));
    for rest in sent {
        let shown = ann.iter().filter(|l| l.contains(rest)).count();
        assert_eq!(shown, 1, "{rest:?} shows once: {ann:#?}");
    }
    assert!(
        !ann.iter()
            .any(|l| l.starts_with("ann> ") || l.ends_with('…')),
        "no typed copy, nothing left pending: {ann:#?}"
    );

    // While the room does not answer, the message waits below the room's
    // lines, marked pending; once it does, it takes its place in the
    // room's order, once.
    server.signal("STOP");
    tmux.type_line("ann", "are you there?");
    let ann = tmux.wait_for("ann", "the pending message", |s| {
        s.len() >= 2 && s[s.len() - 2].ends_with(" ann: are you there? …")
    });
    assert!(
        timed_line(&ann, "ann: are you there?").is_none(),
        "{ann:#?}"
    );
    tmux.type_text("ann", "half typed");
    server.signal("CONT");
    let ann = tmux.wait_for("ann", "the message confirmed", |s| {
        timed_line(s, "ann: are you there?").is_some()
            && s.last().is_some_and(|l| l == "ann> half typed")
    });
    assert_eq!(
        ann.iter().filter(|l| l.contains("are you there?")).count(),
        1,
        "{ann:#?}"
    );
}

/// Resizing the window while a long line is half typed keeps every line
/// received, before and after, and one input line at the bottom.
#[test]
fn resizing_keeps_every_received_line() {
    if !tmux_available() {
        return;
    }
    let server = Server::start();
    let tmux = Tmux::new();
    tmux.ann_and_bob(server.port);
    tmux.type_line("bob", "before the resize");
    tmux.wait_for("ann", "bob's first message", |s| {
        timed_line(s, "bob: before the resize").is_some()
    });

    let draft = "a draft much longer than the narrowed window, ".repeat(3);
    tmux.type_text("ann", &draft);
    tmux.run(&["resize-window", "-t", "ann:", "-x", "60"]);
    tmux.wait_for("ann", "the narrow window", |_| {
        tmux.format("ann", "#{window_width}") == "60"
    });
    tmux.type_line("bob", "during the narrow spell");
    tmux.wait_for("ann", "bob's second message", |s| {
        timed_line(s, "bob: during the narrow spell").is_some()
    });
    tmux.run(&["resize-window", "-t", "ann:", "-x", COLUMNS]);
    tmux.type_text("ann", "!");
    let ann = tmux.wait_for("ann", "the wide window again", |s| {
        s.last()
            .is_some_and(|l| l.starts_with("ann> ") && l.ends_with(", !"))
    });
    for rest in ["bob: before the resize", "bob: during the narrow spell"] {
        assert!(timed_line(&ann, rest).is_some(), "{rest:?} kept: {ann:#?}");
    }
    assert_eq!(
        ann.iter().filter(|l| l.starts_with("ann> ")).count(),
        1,
        "one input line: {ann:#?}"
    );
}

/// Whether `screen` has a timed line for each of `rests`, in that order.
fn in_order(screen: &[String], rests: &[&str]) -> bool {
    let mut from = 0;
    for rest in rests {
        match timed_line(&screen[from..], rest) {
            Some(at) => from += at + 1,
            None => return false,
        }
    }
    true
}

#[test]
fn ctrl_c_clears_a_typed_line_and_leaves_from_an_empty_one() {
    if !tmux_available() {
        return;
    }
    let server = Server::start();
    let tmux = Tmux::new();
    tmux.ann_and_bob(server.port);

    // As in a shell: Ctrl-C throws away the line being typed, nothing more.
    tmux.type_text("ann", "a thought ann takes back");
    tmux.wait_line("ann", "ann> a thought ann takes back");
    tmux.press("ann", "C-c");
    tmux.wait_prompt("ann");
    tmux.type_line("ann", "still here");
    let bob = tmux.wait_for("bob", "ann's next message", |s| {
        timed_line(s, "ann: still here").is_some()
    });
    assert!(
        !bob.iter().any(|l| l.contains("takes back")),
        "the cleared line is not sent: {bob:#?}"
    );

    // On an empty line it leaves, as Ctrl-D does.
    tmux.wait_prompt("ann");
    tmux.press("ann", "C-c");
    assert_eq!(tmux.wait_exit("ann"), "0");
    tmux.wait_line("bob", " -- ann left");
    assert_terminal_restored(&tmux.wait_line("ann", "icanon"));
}

#[test]
fn serve_asks_for_a_typed_password_twice_until_both_agree() {
    if !tmux_available() {
        return;
    }
    let tmux = Tmux::new();
    // No password given: it offers to make one; the host types their own.
    tmux.serve_without_password("host");
    tmux.type_line("host", "n");
    tmux.wait_line("host", "Room password:");
    tmux.type_line("host", PASSWORD);
    tmux.wait_line("host", "Same password again:");
    tmux.type_line("host", "hunter3");
    tmux.wait_line("host", "The two passwords differ; type it again.");
    tmux.wait_for("host", "the password asked for again", |s| {
        s.last().is_some_and(|l| l == "Room password:")
    });
    tmux.type_line("host", PASSWORD);
    tmux.wait_line("host", "Same password again:");
    tmux.type_line("host", PASSWORD);
    let host = tmux.wait_line("host", "cmd-chat room listening on 127.0.0.1:");
    assert!(
        !host.iter().any(|l| l.contains("hunter")),
        "nothing typed is echoed: {host:#?}"
    );
    let port = host
        .iter()
        .find_map(|l| common::banner_port(l))
        .expect("a port number");

    // The room's password is the one typed twice.
    tmux.join("ann", port);
    tmux.wait_prompt("ann");
}

#[test]
fn serve_without_a_password_offers_to_make_one() {
    if !tmux_available() {
        return;
    }
    let tmux = Tmux::new();
    tmux.serve_without_password("host");
    tmux.press("host", "Enter");
    let host = tmux.wait_line("host", "The room password, made for this room");
    let at = host
        .iter()
        .position(|l| l.starts_with("The room password, made for this room"))
        .unwrap();
    let password = host.get(at + 1).map(|l| l.trim()).unwrap_or_default();
    // Six words, of which a few (`t-shirt`) hold a `-` of their own.
    let parts = password.split('-').count();
    assert!((6..=12).contains(&parts), "{host:#?}");
    assert!(
        password.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
        "{host:#?}"
    );
    assert!(
        !host.iter().any(|l| l.contains("Room password:")),
        "no password asked for: {host:#?}"
    );
}

/// Paths as people type them after `/send` and `/save`: Tab completes one
/// with a space in it (escaped, as a shell does), `~` is the home
/// directory, and a quoted path is one path.
#[test]
fn file_paths_are_taken_as_people_type_them() {
    if !tmux_available() {
        return;
    }
    let server = Server::start();
    let tmux = Tmux::new();
    let files = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let dir = files.path().display().to_string();
    std::fs::write(files.path().join("my notes.txt"), "minutes\n").unwrap();
    tmux.join_with_env(
        "ann",
        server.port,
        &format!("HOME='{}'", home.path().display()),
    );
    tmux.wait_prompt("ann");
    tmux.join("bob", server.port);
    tmux.wait_prompt("bob");
    tmux.wait_line("ann", " -- bob joined");

    tmux.type_text("bob", &format!("/send {dir}/my"));
    tmux.press("bob", "Tab");
    tmux.wait_line("bob", &format!("bob> /send {dir}/my\\ notes.txt"));
    tmux.press("bob", "Enter");
    tmux.wait_line("ann", "received #1 my notes.txt");

    tmux.type_line("ann", "/save 1 ~/from bob.txt");
    tmux.wait_line("ann", "saved #1 to ");
    let saved = home.path().join("from bob.txt");
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), "minutes\n");
    let quoted = files.path().join("a copy.txt");
    tmux.type_line("ann", &format!("/save 1 '{}'", quoted.display()));
    tmux.wait_for("ann", "the second save", |s| {
        s.iter().filter(|l| l.contains("saved #1 to ")).count() == 2
    });
    assert_eq!(std::fs::read_to_string(&quoted).unwrap(), "minutes\n");
}

/// `connect` connects before it asks for the password: nobody types one
/// for a room that is not there. Where there is one, it asks, then joins.
#[test]
fn connect_says_cannot_connect_before_asking_for_the_password() {
    if !tmux_available() {
        return;
    }
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server::start();
    let tmux = Tmux::new();
    let connect = |name: &str, port: u16| {
        // Started by a key press, once the pane is ready: what a program
        // writes the moment its pane opens can be lost.
        let script = format!(
            "read go; unset CMD_CHAT_PASSWORD; \"$0\" connect 127.0.0.1 {port} {name}; echo \"{EXIT_MARK}$?]\""
        );
        tmux.open(name, &["sh", "-c", &script, BIN]);
        tmux.press(name, "Enter");
    };
    connect("nobody", free_port);
    assert_eq!(tmux.wait_exit("nobody"), "3");
    let screen = tmux.wait_line("nobody", "cannot connect");
    assert!(
        !screen.iter().any(|l| l.contains("password")),
        "no password asked for: {screen:#?}"
    );
    connect("erin", server.port);
    tmux.wait_line("erin", "Room password:");
    tmux.type_line("erin", PASSWORD);
    tmux.wait_prompt("erin");
}

/// Ctrl-Z hands the terminal back to the shell, as it was; `fg` brings the
/// chat back with the half-typed line, and the line still goes out.
#[test]
fn ctrl_z_suspends_to_the_shell_and_fg_resumes_the_chat() {
    if !tmux_available() {
        return;
    }
    let server = Server::start();
    let tmux = Tmux::new();
    // An interactive shell, for job control.
    tmux.open(
        "ann",
        &["env", "PS1=$ ", "bash", "--norc", "--noprofile", "-i"],
    );
    tmux.wait_for("ann", "the shell", |s| s.last().is_some_and(|l| l == "$"));
    tmux.type_line(
        "ann",
        &format!("{BIN} connect --no-reconnect 127.0.0.1 {} ann", server.port),
    );
    tmux.wait_prompt("ann");
    tmux.join("bob", server.port);
    tmux.wait_prompt("bob");
    tmux.wait_line("ann", " -- bob joined");

    tmux.type_text("ann", "back in");
    tmux.press("ann", "C-z");
    tmux.wait_line("ann", "Stopped");
    // The shell reads lines again, echoed: the terminal is as it was.
    tmux.type_line("ann", "echo shell-$((6 * 7))");
    tmux.wait_line("ann", "shell-42");
    tmux.type_line("ann", "fg");
    tmux.wait_for("ann", "the chat back", |s| {
        s.last().is_some_and(|l| l == "ann> back in")
    });
    tmux.type_line("ann", " a minute");
    let bob = tmux.wait_line("bob", "ann: back in a minute");
    assert!(
        timed_line(&bob, "ann: back in a minute").is_some(),
        "{bob:#?}"
    );
}

/// File names offered by Tab are shown as text: a name holding an escape
/// sequence or a line break cannot draw on the screen.
#[test]
fn completion_shows_hostile_file_names_as_text() {
    if !tmux_available() {
        return;
    }
    let server = Server::start();
    let tmux = Tmux::new();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("log\x1b[2Jone"), "a").unwrap();
    std::fs::write(files.path().join("log\ntwo"), "b").unwrap();
    tmux.join("ann", server.port);
    tmux.wait_prompt("ann");
    tmux.type_line("ann", "before the list");
    tmux.wait_line("ann", "ann: before the list");

    // The first Tab completes what the names share, the second lists them.
    tmux.type_text("ann", &format!("/send {}/log", files.path().display()));
    tmux.press("ann", "Tab");
    // Offered as they would be typed (`[` and `^` escaped), with the
    // escape and the line break shown in caret notation.
    let ann = tmux.wait_line("ann", "log^[");
    assert!(
        ann.iter()
            .any(|l| l.contains("log^[\\[2Jone") && l.contains("log\\^Jtwo")),
        "both names on one line, made visible: {ann:#?}"
    );
    assert!(
        timed_line(&ann, "ann: before the list").is_some(),
        "the screen was not cleared: {ann:#?}"
    );
}

/// A message still waiting for the room when the connection is lost is
/// left on screen marked as not confirmed, not as if it were on its way.
#[test]
fn a_message_pending_when_the_room_is_lost_is_marked_not_confirmed() {
    if !tmux_available() {
        return;
    }
    let server = Server::start();
    let tmux = Tmux::new();
    tmux.join("ann", server.port);
    tmux.wait_prompt("ann");
    server.signal("STOP");
    tmux.type_line("ann", "are you there?");
    tmux.wait_for("ann", "the pending message", |s| {
        s.iter().any(|l| l.ends_with(" ann: are you there? …"))
    });
    // Killed while stopped: it never reads the message (CONT first
    // would let it relay the message before it dies).
    server.signal("KILL");
    assert_eq!(tmux.wait_exit("ann"), "7");
    let ann = tmux.screen("ann");
    assert!(
        ann.iter()
            .any(|l| l.ends_with(" ann: are you there? (not confirmed)")),
        "{ann:#?}"
    );
    assert!(!ann.iter().any(|l| l.ends_with('…')), "{ann:#?}");
}
