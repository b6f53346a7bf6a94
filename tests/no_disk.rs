//! Nothing on disk: `serve` and two members run under strace for a whole
//! session, and none of them creates, writes, renames, truncates, links or
//! deletes a file, makes a node, or sets up io_uring (which could write
//! without a traced call). One member uses the terminal front end in a tmux
//! pane, the other scripting mode; between them they chat, send private
//! messages, send and receive files (kept in memory, never saved), and the
//! terminal member loses its connection and reconnects.
//!
//! Needs strace and tmux (`.ci/run` installs both); skipped with a note
//! outside CI.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cmd-chat");
const PASSWORD: &str = "disk-test-password";
/// How long any one step may take before the test gives up: a safety net so
/// a broken test fails instead of hanging, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

/// Every call that names a file (strace's `%file` class), and those that
/// reach files or write without naming one.
const TRACED: &str = "%file,open_by_handle_at,io_uring_setup,io_uring_register";
/// Calls that change the file tree or a file's contents or metadata,
/// whatever their arguments.
const CHANGING: [&str; 33] = [
    "creat",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "mkdir",
    "mkdirat",
    "rmdir",
    "truncate",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "mknod",
    "mknodat",
    "chmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "lchown",
    "fchownat",
    "utime",
    "utimes",
    "futimesat",
    "utimensat",
    "setxattr",
    "lsetxattr",
    "removexattr",
    "lremovexattr",
    "open_by_handle_at",
    "io_uring_setup",
    "io_uring_register",
];
const WRITE_FLAGS: [&str; 5] = ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"];
/// Devices a terminal program may legitimately open for writing.
const DEVICES: [&str; 3] = ["\"/dev/null\"", "\"/dev/tty\"", "\"/dev/pts/"];

fn tool_available(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required in CI (see .ci/run)"
        );
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

/// The strace command line that runs cmd-chat with `args`, logging to `log`.
fn strace_args(log: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec![
        "strace".to_owned(),
        "-f".into(),
        "-qq".into(),
        "-e".into(),
        format!("trace={TRACED}"),
        "-o".into(),
        log.display().to_string(),
        BIN.into(),
    ];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all
}

fn traced(log: &Path, args: &[&str]) -> Command {
    let all = strace_args(log, args);
    let mut cmd = Command::new(&all[0]);
    cmd.args(&all[1..]).env_remove("CMD_CHAT_PASSWORD");
    cmd
}

/// The traced calls that changed something on disk.
fn writes(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).expect("strace log");
    assert!(
        text.contains("openat("),
        "the trace recorded nothing: {text}"
    );
    text.lines()
        .filter(|line| changes_disk(line))
        .map(str::to_owned)
        .collect()
}

/// Whether one strace line (`PID name(args) = result`) changed the disk.
fn changes_disk(line: &str) -> bool {
    let Some(call) = line.split_once(' ').map(|(_, rest)| rest) else {
        return false;
    };
    let name = call.split('(').next().unwrap_or_default();
    if CHANGING.contains(&name) {
        return true;
    }
    let opens = matches!(name, "open" | "openat" | "openat2");
    opens
        && WRITE_FLAGS.iter().any(|f| call.contains(f))
        && !DEVICES.iter().any(|d| call.contains(d))
}

#[test]
fn the_filter_sees_what_writes() {
    assert!(changes_disk(
        r#"12 openat(AT_FDCWD, "x", O_WRONLY|O_CREAT|O_CLOEXEC, 0666) = 3"#
    ));
    assert!(changes_disk(
        r#"12 mknodat(AT_FDCWD, "p", S_IFIFO|0600) = 0"#
    ));
    assert!(changes_disk(r#"12 io_uring_setup(8, {...}) = 4"#));
    assert!(changes_disk(r#"12 unlink("x") = 0"#));
    assert!(!changes_disk(
        r#"12 openat(AT_FDCWD, "/etc/hosts", O_RDONLY|O_CLOEXEC) = 3"#
    ));
    assert!(!changes_disk(
        r#"12 openat(AT_FDCWD, "/dev/tty", O_RDWR) = 3"#
    ));
    assert!(!changes_disk(
        r#"12 statx(AT_FDCWD, "x", 0, STATX_ALL, {...}) = 0"#
    ));
}

/// `serve`, traced, on 127.0.0.1; returns it and its port.
fn serve(log: &Path) -> (Child, u16) {
    let mut server = traced(
        log,
        &[
            "serve",
            "127.0.0.1",
            "0",
            "--password-stdin",
            "--kdf-memory",
            "8",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    writeln!(server.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let mut banner = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    banner.read_line(&mut line).unwrap();
    let port = common::banner_port(&line).unwrap_or_else(|| panic!("unexpected banner {line:?}"));
    // The rest of the banner is not read; keep the pipe open so writing it
    // never fails.
    std::mem::forget(banner);
    (server, port)
}

/// Ends the traced `serve` with SIGTERM (to cmd-chat, strace's child).
fn stop(mut server: Child) {
    let strace_pid = server.id();
    let children =
        std::fs::read_to_string(format!("/proc/{strace_pid}/task/{strace_pid}/children")).unwrap();
    let serve_pid = children
        .split_whitespace()
        .next()
        .expect("strace runs cmd-chat");
    Command::new("kill")
        .args(["-TERM", serve_pid])
        .status()
        .unwrap();
    assert!(server.wait().unwrap().success());
}

/// A TCP relay in front of the server whose connections the test can cut.
struct Cutter {
    port: u16,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Cutter {
    fn start(upstream: u16) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let live = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&live);
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                pipe(&client, &server);
                pipe(&server, &client);
                shared.lock().unwrap().extend([client, server]);
            }
        });
        Cutter { port, live }
    }

    fn cut(&self) {
        for stream in self.live.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(from: &TcpStream, to: &TcpStream) {
    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// A member in scripting mode, traced: its input and its events.
struct Scripted {
    child: Child,
    input: ChildStdin,
    events: Receiver<serde_json::Value>,
}

impl Scripted {
    fn join(log: &Path, port: u16, name: &str) -> Scripted {
        let mut child = traced(
            log,
            &[
                "connect",
                "127.0.0.1",
                &port.to_string(),
                name,
                "--password-stdin",
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let mut input = child.stdin.take().unwrap();
        writeln!(input, "{PASSWORD}").unwrap();
        let (sender, events) = channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if sender.send(event).is_err() {
                    break;
                }
            }
        });
        Scripted {
            child,
            input,
            events,
        }
    }

    fn say(&mut self, line: &str) {
        writeln!(self.input, "{line}").unwrap();
    }

    /// Waits for an event of `kind` for which `ok` holds.
    fn wait(&self, kind: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if event["event"] == kind && ok(&event) => return event,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("no {kind} event in time"),
                Err(RecvTimeoutError::Disconnected) => panic!("exited before a {kind} event"),
            }
        }
    }

    fn leave(mut self) {
        drop(self.input);
        assert!(self.child.wait().unwrap().success());
    }
}

/// A member in the terminal front end: `cmd-chat connect` under strace in
/// a tmux pane of a private tmux server.
struct Pane {
    dir: tempfile::TempDir,
}

impl Pane {
    fn join(log: &Path, port: u16, name: &str) -> Pane {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tmux.conf"), "set -g status off\n").unwrap();
        let pane = Pane { dir };
        let command = strace_args(log, &["connect", "127.0.0.1", &port.to_string(), name]);
        let mut args = vec![
            "new-session",
            "-d",
            "-s",
            "m",
            "-x",
            "160",
            "-y",
            "40",
            "-e",
        ];
        let password = format!("CMD_CHAT_PASSWORD={PASSWORD}");
        args.extend([password.as_str(), "--"]);
        args.extend(command.iter().map(String::as_str));
        pane.tmux(&args);
        pane
    }

    fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-S")
            .arg(self.dir.path().join("sock"))
            .arg("-f")
            .arg(self.dir.path().join("tmux.conf"))
            .args(args)
            .output()
            .expect("run tmux");
        assert!(output.status.success(), "tmux {args:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn type_line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "m:", "-l", text]);
        self.tmux(&["send-keys", "-t", "m:", "Enter"]);
    }

    /// Waits until the pane shows a line containing `needle`.
    fn wait_line(&self, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let screen = self.tmux(&["capture-pane", "-p", "-J", "-t", "m:"]);
            if screen.lines().any(|l| l.contains(needle)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(75));
        }
        panic!("the pane never showed {needle:?}");
    }
}

impl Pane {
    /// Waits until the client in the pane has exited (and strace with it,
    /// its log complete): the pane, and with it the session, is gone.
    fn wait_exit(&self) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let alive = Command::new("tmux")
                .arg("-S")
                .arg(self.dir.path().join("sock"))
                .args(["has-session", "-t", "m"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                return;
            }
            std::thread::sleep(Duration::from_millis(75));
        }
        panic!("the terminal member did not exit");
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(self.dir.path().join("sock"))
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

/// A file of `len` bytes to send, in `dir`.
fn file(dir: &Path, name: &str, len: usize) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, vec![b'x'; len]).unwrap();
    path
}

#[test]
fn a_whole_session_writes_nothing_to_disk() {
    if !tool_available("strace") || !tool_available("tmux") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let logs = ["server", "terminal", "script"].map(|who| dir.path().join(format!("{who}.trace")));
    let (server, port) = serve(&logs[0]);
    let cutter = Cutter::start(port);
    let ann = Pane::join(&logs[1], cutter.port, "ann");
    ann.wait_line("ann>");
    let mut bob = Scripted::join(&logs[2], port, "bob");
    bob.wait("ready", |_| true);

    // Chat and private messages, both ways.
    bob.say("nothing of this touches the disk");
    ann.wait_line("bob: nothing of this touches the disk");
    ann.type_line("/msg bob psst");
    bob.wait("private", |e| e["text"] == "psst");
    bob.say("/msg ann noted");
    ann.wait_line("noted");

    // Files both ways, received into memory and never saved.
    let for_ann = file(dir.path(), "for-ann.bin", 100_000);
    bob.say(&format!("/send {}", for_ann.display()));
    ann.wait_line("received #1 for-ann.bin");
    let for_bob = file(dir.path(), "for-bob.bin", 100_000);
    ann.type_line(&format!("/send {}", for_bob.display()));
    bob.wait("file", |e| e["name"] == "for-bob.bin");

    // The terminal member's connection drops; it comes back and talks on.
    cutter.cut();
    ann.wait_line("back in the room");
    ann.type_line("said after reconnecting");
    bob.wait("message", |e| e["text"] == "said after reconnecting");

    ann.type_line("/quit");
    bob.wait("left", |e| e["user"] == "ann");
    ann.wait_exit();
    bob.leave();
    stop(server);

    for (who, log) in ["server", "terminal member", "scripted member"]
        .iter()
        .zip(&logs)
    {
        let found = writes(log);
        assert!(
            found.is_empty(),
            "the {who} touched the disk:\n{}",
            found.join("\n")
        );
    }
}
