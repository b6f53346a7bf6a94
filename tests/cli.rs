//! The `cmd-chat` binary as a person or a script uses it.

mod common;

use std::io::PipeWriter;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_cmd-chat");
const PATIENCE: Duration = Duration::from_secs(15);

fn cmd_chat(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("CMD_CHAT_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// A running `cmd-chat serve`, with the port it printed.
struct Serve {
    child: Child,
    port: u16,
    banner: Vec<String>,
}

async fn serve(extra: &[&str]) -> Serve {
    let mut args = vec!["serve", "127.0.0.1", "0"];
    args.extend_from_slice(extra);
    let mut cmd = cmd_chat(&args);
    cmd.env("CMD_CHAT_PASSWORD", "hunter2");
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    let port = loop {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("banner");
        banner.push(line.clone());
        if let Some(port) = common::banner_port(&line) {
            break port;
        }
    };
    // The rest of the banner.
    for _ in 0..3 {
        banner.push(
            tokio::time::timeout(PATIENCE, lines.next_line())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    Serve {
        child,
        port,
        banner,
    }
}

/// A `cmd-chat connect` in scripting mode, fed through a pipe.
struct Member {
    child: Child,
    events: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Member {
    async fn join(port: u16, name: &str, password: &str) -> Member {
        Self::join_in(port, name, password, None).await
    }

    /// Joins with extra `connect` flags.
    async fn join_with(port: u16, name: &str, password: &str, flags: &[&str]) -> Member {
        let port = port.to_string();
        let mut args = vec!["connect", "127.0.0.1", &port, name, password];
        args.extend_from_slice(flags);
        Self::spawn(cmd_chat(&args))
    }

    /// Joins with `dir` as the current directory, where `/save` without a
    /// path writes.
    async fn join_in(port: u16, name: &str, password: &str, dir: Option<&Path>) -> Member {
        let mut cmd = cmd_chat(&["connect", "127.0.0.1", &port.to_string(), name, password]);
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        Self::spawn(cmd)
    }

    /// Joins with standard input an ordinary pipe that the returned end
    /// keeps open, as a supervisor does that never writes to it.
    async fn join_with_input_held(port: u16, name: &str, password: &str) -> (Member, PipeWriter) {
        let (input, held) = std::io::pipe().unwrap();
        let mut cmd = cmd_chat(&["connect", "127.0.0.1", &port.to_string(), name, password]);
        cmd.stdin(input);
        let mut child = cmd.spawn().unwrap();
        let events = BufReader::new(child.stdout.take().unwrap()).lines();
        (Member { child, events }, held)
    }

    fn spawn(mut cmd: Command) -> Member {
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let events = BufReader::new(child.stdout.take().unwrap()).lines();
        Member { child, events }
    }

    async fn event(&mut self) -> Value {
        let line = tokio::time::timeout(PATIENCE, self.events.next_line())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("an event before exit");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    async fn event_of(&mut self, kind: &str) -> Value {
        loop {
            let event = self.event().await;
            if event["event"] == kind {
                return event;
            }
        }
    }

    async fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// ann and bob in the room, both ready, ann having seen bob join.
    async fn ann_and_bob(port: u16) -> (Member, Member) {
        let mut ann = Member::join(port, "ann", "hunter2").await;
        ann.event_of("ready").await;
        let mut bob = Member::join(port, "bob", "hunter2").await;
        bob.event_of("ready").await;
        assert_eq!(ann.event_of("joined").await["user"], "bob");
        (ann, bob)
    }

    /// Closes stdin and reads every event printed until the process ends
    /// its output.
    async fn events_until_exit(&mut self) -> Vec<Value> {
        drop(self.child.stdin.take());
        let mut events = Vec::new();
        while let Some(line) = tokio::time::timeout(PATIENCE, self.events.next_line())
            .await
            .expect("an event or the exit in time")
            .unwrap()
        {
            events.push(serde_json::from_str::<Value>(&line).unwrap());
        }
        events
    }

    /// Closes stdin and returns the exit code.
    async fn finish(mut self) -> i32 {
        drop(self.child.stdin.take());
        self.exit_code().await
    }

    /// Waits for the process to end by itself, its input left as it is.
    async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the process exits")
            .unwrap();
        status.code().unwrap()
    }
}

#[tokio::test]
async fn serve_prints_its_address_and_the_line_to_share() {
    let server = serve(&[]).await;
    assert_ne!(server.port, 0);
    let share = format!("cmd-chat connect 127.0.0.1 {} <your-name>", server.port);
    assert!(
        server.banner.iter().any(|l| l.trim() == share),
        "{:?}",
        server.banner
    );
    assert!(
        !server.banner.join("\n").contains("hunter2"),
        "the password is never printed"
    );
}

#[tokio::test]
async fn two_scripted_members_chat_and_leave_cleanly() {
    let server = serve(&[]).await;
    let mut ann = Member::join(server.port, "ann", "hunter2").await;
    let ready = ann.event_of("ready").await;
    assert_eq!(ready["users"], serde_json::json!(["ann"]));
    assert_eq!(ready["sealed"], true);
    ann.say("first words").await;
    ann.event_of("message").await;
    // The server's receipt names the message's sequence number.
    let sent = ann.event_of("sent").await;
    assert_eq!(
        (sent["ref"].as_u64(), sent["seq"].as_u64()),
        (Some(1), Some(1))
    );

    let mut bob = Member::join(server.port, "bob", "hunter2").await;
    assert_eq!(
        bob.event_of("ready").await["users"],
        serde_json::json!(["ann", "bob"])
    );
    let replay = bob.event_of("message").await;
    assert_eq!(
        (replay["from"].as_str(), replay["text"].as_str()),
        (Some("ann"), Some("first words"))
    );
    assert_eq!(replay["history"], true);
    assert!(replay["ts"].as_str().unwrap().ends_with('Z'));

    bob.say("hi ann").await;
    let live = ann.event_of("message").await;
    assert_eq!(
        (
            live["from"].as_str(),
            live["text"].as_str(),
            live["history"].as_bool()
        ),
        (Some("bob"), Some("hi ann"), Some(false))
    );
    assert_eq!(live["seq"], 2);

    bob.say("/who").await;
    assert_eq!(
        bob.event_of("users").await["users"],
        serde_json::json!(["ann", "bob"])
    );
    bob.say("/nonsense").await;
    assert!(
        bob.event_of("error").await["message"]
            .as_str()
            .unwrap()
            .contains("unknown command")
    );
    // Every command of the terminal works here too: an action, the list.
    bob.say("/me beeps").await;
    let action = ann.event_of("message").await;
    assert_eq!(
        (action["from"].as_str(), action["text"].as_str()),
        (Some("bob"), Some("/me beeps"))
    );
    assert_eq!(action["action"], "beeps", "marked as an action: {action}");
    bob.say("/help").await;
    let help = bob.event_of("help").await;
    assert!(
        help["commands"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "/me"),
        "{help}"
    );
    bob.say("/msg").await;
    assert!(
        bob.event_of("error").await["message"]
            .as_str()
            .unwrap()
            .starts_with("usage: /msg <name> <text>")
    );

    assert_eq!(bob.finish().await, 0, "end of input leaves and exits 0");
    assert_eq!(ann.event_of("left").await["user"], "bob");
    ann.say("/clear").await;
    assert_eq!(ann.event_of("cleared").await["by"], "ann");
    ann.say("/quit").await;
    assert_eq!(ann.finish().await, 0);
}

/// A script that pipes in its lines and closes its input at once still hears
/// the server confirm its last message before the member leaves.
#[tokio::test]
async fn end_of_input_waits_for_the_last_receipt() {
    let server = serve(&[]).await;
    let mut ann = Member::join(server.port, "ann", "hunter2").await;
    ann.say("first\nlast words").await;
    let events = ann.events_until_exit().await;
    let receipts: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "sent")
        .map(|e| e["ref"].as_u64())
        .collect();
    assert_eq!(receipts, [Some(1), Some(2)], "events: {events:?}");
    assert_eq!(ann.finish().await, 0);
}

/// A private message goes only once its private session is set up; input
/// that ends before then waits for it, as for a room message's receipt.
#[tokio::test]
async fn end_of_input_waits_for_a_private_message_to_go() {
    let server = serve(&[]).await;
    let (mut ann, mut bob) = Member::ann_and_bob(server.port).await;
    bob.say("/msg ann psst, before I go").await;
    let events = bob.events_until_exit().await;
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "private" && e["text"] == "psst, before I go"),
        "events: {events:?}"
    );
    assert_eq!(bob.finish().await, 0);
    assert_eq!(ann.event_of("private").await["text"], "psst, before I go");
    assert_eq!(ann.finish().await, 0);
}

#[tokio::test]
async fn scripted_private_messages_and_safety_codes() {
    let server = serve(&[]).await;
    let (mut ann, mut bob) = Member::ann_and_bob(server.port).await;

    ann.say("/msg bob psst, only you").await;
    let expected = serde_json::json!({
        "event": "private", "from": "ann", "to": "bob", "text": "psst, only you"
    });
    assert_eq!(bob.event_of("private").await, expected);
    assert_eq!(
        ann.event_of("private").await,
        expected,
        "the sender sees it sent"
    );

    ann.say("/verify bob").await;
    bob.say("/verify ann").await;
    let ann_code = ann.event_of("verify").await;
    let bob_code = bob.event_of("verify").await;
    assert_eq!(
        (ann_code["user"].as_str(), bob_code["user"].as_str()),
        (Some("bob"), Some("ann"))
    );
    assert_eq!(ann_code["code"], bob_code["code"]);
    let code = ann_code["code"].as_str().unwrap();
    assert!(
        code.split(' ').count() == 6
            && code
                .split(' ')
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())),
        "{code}"
    );

    // Mistakes are reported and the session goes on.
    ann.say("/msg nobody hello").await;
    assert!(
        ann.event_of("error").await["message"]
            .as_str()
            .unwrap()
            .contains("no one called \"nobody\"")
    );
    ann.say("/msg bob").await;
    assert!(
        ann.event_of("error").await["message"]
            .as_str()
            .unwrap()
            .contains("usage")
    );
    bob.say("/msg ann still here?").await;
    assert_eq!(ann.event_of("private").await["text"], "still here?");

    assert_eq!(bob.finish().await, 0);
    assert_eq!(ann.finish().await, 0);
}

#[tokio::test]
async fn exit_codes_tell_failures_apart() {
    let server = serve(&[]).await;
    let port = server.port.to_string();
    let mut ann = Member::join(server.port, "ann", "hunter2").await;
    ann.event_of("ready").await;

    let wrong = cmd_chat(&["connect", "127.0.0.1", &port, "eve", "guess"])
        .output()
        .await
        .unwrap();
    assert_eq!(wrong.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong password"));

    let taken = cmd_chat(&["connect", "127.0.0.1", &port, "ann", "hunter2"])
        .output()
        .await
        .unwrap();
    assert_eq!(taken.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&taken.stderr).contains("taken"));

    let invalid = cmd_chat(&["connect", "127.0.0.1", &port, "two words", "hunter2"])
        .output()
        .await
        .unwrap();
    assert_eq!(invalid.status.code(), Some(5));

    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = cmd_chat(&["connect", "127.0.0.1", &free_port.to_string(), "ann", "x"])
        .output()
        .await
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot connect"));

    let usage = cmd_chat(&["connect", "127.0.0.1"]).output().await.unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let no_password = cmd_chat(&["connect", "127.0.0.1", &port, "zed"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        no_password.status.code(),
        Some(2),
        "no password and no terminal to ask on"
    );
    assert!(String::from_utf8_lossy(&no_password.stderr).contains("CMD_CHAT_PASSWORD"));

    // The password may come from the environment.
    let mut env_cmd = cmd_chat(&["connect", "127.0.0.1", &port, "zed"]);
    env_cmd.env("CMD_CHAT_PASSWORD", "hunter2");
    let via_env = env_cmd.output().await.unwrap();
    assert_eq!(
        via_env.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&via_env.stderr)
    );

    // Someone was refused, and ann never noticed anything but zed.
    assert_eq!(ann.event_of("joined").await["user"], "zed");
}

/// Whoever answers at the server's address (before SRP has proved anything)
/// cannot write escape sequences to the terminal through an error reason.
#[tokio::test]
async fn a_refusal_cannot_write_escapes_to_the_terminal() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let impostor = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let _srp_init = BufReader::new(read).lines().next_line().await;
        let reply = serde_json::json!({
            "error": "\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}\u{1b}[2J\u{1b}[Hwrong password, type it again:"
        });
        write
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .unwrap();
        write.flush().await.unwrap();
        // Keep the connection until the client has read the reply.
        tokio::time::sleep(PATIENCE).await;
    });
    let mut cmd = cmd_chat(&["connect", "127.0.0.1", &port, "ann"]);
    cmd.env("CMD_CHAT_PASSWORD", "pw");
    let mut child = cmd.spawn().unwrap();
    let mut stderr = String::new();
    tokio::time::timeout(
        PATIENCE,
        child.stderr.take().unwrap().read_to_string(&mut stderr),
    )
    .await
    .unwrap()
    .unwrap();
    impostor.abort();
    assert!(
        stderr.contains("wrong password, type it again"),
        "{stderr:?}"
    );
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'),
        "raw escapes on stderr: {stderr:?}"
    );
}

#[tokio::test]
async fn losing_the_server_is_reported() {
    let mut server = serve(&[]).await;
    let mut ann = Member::join_with(server.port, "ann", "hunter2", &["--no-reconnect"]).await;
    let mut bob = Member::join(server.port, "bob", "hunter2").await;
    ann.event_of("ready").await;
    bob.event_of("ready").await;
    server.child.kill().await.unwrap();
    // Without --no-reconnect the client says it is trying to get back in.
    let reconnecting = bob.event_of("reconnecting").await;
    assert_eq!(reconnecting["attempt"], 1);
    drop(bob);
    let error = ann.event_of("error").await;
    assert_eq!(error["fatal"], true);
    assert_eq!(ann.finish().await, 7);
}

/// SIGTERM closes the room: its members are told, and a script ends at once
/// with code 0, the host ending the meeting being its normal end, whatever
/// its standard input is doing. The host's log shows them leave as INFO.
#[tokio::test]
async fn sigterm_closes_the_room_for_its_members() {
    let server = serve(&[]).await;
    let (mut ann, _input) = Member::join_with_input_held(server.port, "ann", "hunter2").await;
    ann.event_of("ready").await;
    let pid = server.child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let closed = ann.event().await;
    assert_eq!(closed, json!({"event": "closed", "by": "host"}));
    // At once, though its input is still open (a supervisor may never
    // close it): the room is gone, and the code says it ended normally.
    assert_eq!(ann.exit_code().await, 0);
    let output = tokio::time::timeout(PATIENCE, server.child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let log = String::from_utf8_lossy(&output.stderr);
    let leaving = log
        .lines()
        .find(|l| l.contains("user=\"ann\"") && !l.contains("joined"));
    let leaving = leaving.unwrap_or_else(|| panic!("ann's leaving is logged: {log}"));
    assert!(leaving.contains(" INFO "), "{log}");
    assert!(!log.contains(" WARN "), "{log}");
}

#[tokio::test]
async fn help_and_version() {
    let help = cmd_chat(&["serve", "--help"]).output().await.unwrap();
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("shell history") && text.contains("CMD_CHAT_PASSWORD"),
        "{text}"
    );
    let version = cmd_chat(&["--version"]).output().await.unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    let protocol = cmd_chat::protocol::wire::NATIVE_PROTOCOL;
    assert!(version.starts_with("cmd-chat "), "{version}");
    assert!(
        version.contains(&format!("native protocol {protocol}")),
        "{version}"
    );
}

#[tokio::test]
async fn completions_and_a_manual_page() {
    let run = |args: &'static [&'static str]| async move {
        let out = cmd_chat(args).output().await.unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]).await;
    assert!(bash.contains("complete -F") && bash.contains("--password-stdin"));
    assert!(
        run(&["completions", "zsh"])
            .await
            .starts_with("#compdef cmd-chat")
    );
    assert!(
        run(&["completions", "fish"])
            .await
            .contains("complete -c cmd-chat")
    );
    let man = run(&["man"]).await;
    assert!(
        man.contains(".TH cmd-chat 1") && man.contains("serve"),
        "{man}"
    );
}

#[tokio::test]
async fn serve_makes_a_password_on_request_and_members_join_with_it() {
    let mut child = cmd_chat(&["serve", "127.0.0.1", "0", "--generate-password"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("the banner")
    };
    let first = next().await;
    let port = common::banner_port(&first).unwrap_or_else(|| panic!("{first}"));
    while !next()
        .await
        .starts_with("The room password, made for this room")
    {}
    let password = next().await.trim().to_owned();
    assert_eq!(password.split('-').count(), 6, "{password}");
    assert!(
        password
            .split('-')
            .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
    );
    let mut ann = Member::join(port, "ann", &password).await;
    assert_eq!(ann.event_of("ready").await["users"], json!(["ann"]));
    drop(child);
}

#[tokio::test]
async fn scripted_lock_knock_admit_and_deny() {
    let server = serve(&[]).await;
    let mut ann = Member::join(server.port, "ann", "hunter2").await;
    assert_eq!(ann.event_of("ready").await["locked"], Value::Null);
    ann.say("/lock").await;
    assert_eq!(
        ann.event_of("locked").await,
        json!({"event": "locked", "by": "ann"})
    );

    // A newcomer is told it waits, before anything else.
    let mut cat = Member::join(server.port, "cat", "hunter2").await;
    assert_eq!(
        cat.event().await,
        json!({"event": "waiting", "locked_by": "ann", "timeout_secs": 120})
    );
    assert_eq!(
        ann.event_of("knock").await,
        json!({"event": "knock", "user": "cat"})
    );
    ann.say("/admit cat").await;
    assert_eq!(
        ann.event_of("knock_resolved").await,
        json!({"event": "knock_resolved", "user": "cat", "outcome": "admitted", "by": "ann"})
    );
    let ready = cat.event_of("ready").await;
    assert_eq!(ready["users"], json!(["ann", "cat"]));
    assert_eq!(ready["locked"], "ann");

    // Turned away: a fatal error event, and exit code 8.
    let mut dan = Member::join(server.port, "dan", "hunter2").await;
    dan.event_of("waiting").await;
    assert_eq!(ann.event_of("knock").await["user"], "dan");
    cat.say("/deny dan").await;
    let error = dan.event_of("error").await;
    assert_eq!(error["fatal"], true);
    assert_eq!(
        error["message"],
        "not let in: cat did not let you in: the room is locked"
    );
    assert_eq!(dan.finish().await, 8);
    assert_eq!(
        ann.event_of("knock_resolved").await,
        json!({"event": "knock_resolved", "user": "dan", "outcome": "denied", "by": "cat"})
    );

    cat.say("/unlock").await;
    assert_eq!(
        ann.event_of("unlocked").await,
        json!({"event": "unlocked", "by": "cat"})
    );
    let mut eve = Member::join(server.port, "eve", "hunter2").await;
    assert_eq!(eve.event().await["event"], "ready", "no wait once unlocked");
    assert_eq!(eve.finish().await, 0);
}

#[tokio::test]
async fn scripted_send_and_save() {
    let server = serve(&["--max-file-size", "256K"]).await;
    let ann_dir = tempfile::tempdir().unwrap();
    let bob_dir = tempfile::tempdir().unwrap();
    let mut bob = Member::join_in(server.port, "bob", "hunter2", Some(bob_dir.path())).await;
    assert_eq!(bob.event_of("ready").await["max_file_size"], 256 * 1024);

    let mut contents = vec![0u8; 100_000];
    rand::fill(&mut contents[..]);
    let source = ann_dir.path().join("data.bin");
    std::fs::write(&source, &contents).unwrap();
    // ann sends and her input ends at once: she leaves once the file is out.
    let mut ann = Member::join_in(server.port, "ann", "hunter2", Some(ann_dir.path())).await;
    ann.event_of("ready").await;
    ann.say(&format!("/send {}", source.display())).await;
    assert_eq!(
        ann.event_of("file_sending").await,
        json!({"event": "file_sending", "name": "data.bin", "size": 100_000})
    );
    assert_eq!(
        ann.event_of("file_sent").await,
        json!({"event": "file_sent", "name": "data.bin", "size": 100_000})
    );
    assert_eq!(ann.finish().await, 0);

    assert_eq!(
        bob.event_of("file_incoming").await,
        json!({"event": "file_incoming", "from": "ann", "name": "data.bin", "size": 100_000})
    );
    let progress = bob.event_of("progress").await;
    assert_eq!(progress["direction"], "receiving");
    assert!(progress["percent"].as_u64().unwrap() < 100);
    assert_eq!(
        bob.event_of("file").await,
        json!({"event": "file", "n": 1, "from": "ann", "name": "data.bin", "size": 100_000})
    );
    // In bob's memory: not in his working directory, where /save writes by
    // default (tests/no_disk.rs traces that nothing is written anywhere).
    assert_eq!(std::fs::read_dir(bob_dir.path()).unwrap().count(), 0);
    bob.say("/save 1").await;
    let saved = bob.event_of("saved").await;
    let expected = bob_dir.path().canonicalize().unwrap().join("data.bin");
    assert_eq!(saved["path"], expected.display().to_string());
    assert_eq!(std::fs::read(&expected).unwrap(), contents);
    bob.say("/save 1").await;
    let refused = bob.event_of("error").await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{refused}"
    );
    bob.say("/files").await;
    let files = bob.event_of("files").await;
    assert_eq!(files["files"][0]["saved"], expected.display().to_string());
    // A path as a shell would take it: quoted, with a space.
    let spaced = bob_dir.path().join("a copy.bin");
    bob.say(&format!("/save 1 '{}'", spaced.display())).await;
    bob.event_of("saved").await;
    assert_eq!(std::fs::read(&spaced).unwrap(), contents);

    // Over the room's limit: refused locally, and bob stays.
    let big = bob_dir.path().join("big.bin");
    std::fs::write(&big, vec![0u8; 256 * 1024 + 1]).unwrap();
    bob.say(&format!("/send {}", big.display())).await;
    let refused = bob.event_of("error").await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("over this room's limit"),
        "{refused}"
    );
    assert_eq!(bob.finish().await, 0);
    // ann's directory holds only what she sent from.
    assert_eq!(std::fs::read_dir(ann_dir.path()).unwrap().count(), 1);
}

/// A server turning newcomers away at `--max-pending` says so at once, and
/// says how many more it turned away once its reporting period is up, even
/// when nobody knocks after them.
#[tokio::test]
async fn newcomers_turned_away_are_counted_in_the_log() {
    let mut serve = serve(&["--max-pending", "1"]).await;
    let mut log = BufReader::new(serve.child.stderr.take().unwrap()).lines();
    let addr = format!("127.0.0.1:{}", serve.port);
    // One stranger holds the only place, its login under way: it has sent
    // `srp_init` and been challenged (one that says nothing would give way).
    let holder = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (read, mut write) = holder.into_split();
    let init = json!({"cmd": "srp_init", "username": "holder", "A": "Ag==",
        "native": cmd_chat::protocol::wire::NATIVE_PROTOCOL});
    write
        .write_all(format!("{init}\n").as_bytes())
        .await
        .unwrap();
    let challenge = tokio::time::timeout(PATIENCE, BufReader::new(read).lines().next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("a challenge");
    assert!(challenge.contains("\"B\""), "{challenge}");
    for _ in 0..3 {
        let mut turned_away = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(
            PATIENCE,
            tokio::io::AsyncReadExt::read(&mut turned_away, &mut byte),
        )
        .await
        .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "closed at once: {read:?}");
    }
    let mut lines = Vec::new();
    // The first refusal at once, the other two within the reporting period.
    while !lines.iter().any(|l: &String| l.contains("refused=2")) {
        let line = tokio::time::timeout(Duration::from_secs(30), log.next_line())
            .await
            .expect("the count of the rest is reported")
            .unwrap()
            .expect("the server is still running");
        lines.push(line);
    }
    let first = lines.iter().position(|l| l.contains("refused=1"));
    assert!(
        first.is_some_and(|i| lines[i].contains("turned away")),
        "{lines:#?}"
    );
}

/// A server whose output goes into a pipe nobody reads (`serve 2>&1 |` a
/// program that stalled; a terminal paused with Ctrl-S) keeps serving:
/// 1,500 logins, each logged, go through, and the members already in the
/// room keep talking. Once its output is read again, it says how many log
/// lines it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_output_nobody_reads_keeps_serving() {
    use cmd_chat::client::{Client, ClientConfig, Event};
    use cmd_chat::crypto::Password;
    use std::io::BufRead as _;
    /// Logins in all: each logs two lines (joined, left), several times what
    /// a pipe holds.
    const LOGINS: usize = 1500;
    /// Logins going on at once.
    const PARALLEL: usize = 3;
    // Standard output and error into one pipe, read only for the banner.
    let (output, into_output) = std::io::pipe().unwrap();
    let mut cmd = cmd_chat(&["serve", "127.0.0.1", "0", "--kdf-memory", "8"]);
    cmd.env("CMD_CHAT_PASSWORD", "hunter2")
        .env_remove("RUST_LOG")
        .stdout(into_output.try_clone().unwrap())
        .stderr(into_output);
    let mut server = cmd.spawn().unwrap();
    drop(cmd);
    let mut output = std::io::BufReader::new(output);
    let (port, mut output) = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        for _ in 0..20 {
            line.clear();
            output.read_line(&mut line).unwrap();
            if let Some(port) = common::banner_port(&line) {
                return (port, output);
            }
        }
        panic!("no banner");
    })
    .await
    .unwrap();
    let config = move |name: String| ClientConfig {
        server: format!("127.0.0.1:{port}"),
        username: name,
        password: Password::new("hunter2".into()),
        allow_legacy: false,
    };
    let join = move |name: String| async move {
        tokio::time::timeout(PATIENCE, Client::connect(config(name)))
            .await
            .expect("the login goes through in time")
            .expect("the login succeeds")
    };
    let mut ann = join("ann".into()).await;
    let mut bob = join("bob".into()).await;
    let workers: Vec<_> = (0..PARALLEL)
        .map(|w| {
            tokio::spawn(async move {
                for i in (w..LOGINS).step_by(PARALLEL) {
                    drop(join(format!("u{i}")).await);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    ann.send("still relaying").await.unwrap();
    let heard = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Event::Message(m) = bob.next_event().await.unwrap() {
                break m;
            }
        }
    })
    .await
    .expect("bob hears ann");
    assert_eq!(
        (heard.from.as_str(), heard.text.as_str()),
        ("ann", "still relaying")
    );
    // Read again: the log tells how many lines did not make it.
    let lost = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        for _ in 0..10 * LOGINS {
            line.clear();
            if output.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if line.contains("log lines lost") {
                return Some(line);
            }
        }
        None
    });
    let lost = tokio::time::timeout(PATIENCE, lost)
        .await
        .expect("the output flows")
        .unwrap()
        .expect("the loss is reported");
    assert!(!lost.contains("lost=0"), "{lost}");
    server.kill().await.unwrap();
}
