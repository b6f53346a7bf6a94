//! Nothing on disk: `serve` and `connect` run under strace for a whole
//! session, and neither creates, writes, renames, truncates or deletes a file.
//! Needs strace (`.ci/run` installs it); skipped with a note outside CI.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_cmd-chat");
/// Every system call that can put something on disk or change the file tree.
const TRACED: &str = "open,openat,openat2,creat,rename,renameat,renameat2,unlink,unlinkat,\
                      mkdir,mkdirat,rmdir,truncate,ftruncate,link,linkat,symlink,symlinkat";
const WRITE_FLAGS: [&str; 5] = ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"];
/// Devices a terminal program may legitimately open for writing.
const DEVICES: [&str; 3] = ["\"/dev/null\"", "\"/dev/tty\"", "\"/dev/pts/"];

fn strace_available() -> bool {
    let found = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "strace is required in CI (see .ci/run)"
        );
        eprintln!("skipping: strace is not installed");
    }
    found
}

fn traced(log: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-e"])
        .arg(format!("trace={TRACED}"))
        .arg("-o")
        .arg(log)
        .arg(BIN)
        .args(args)
        .env_remove("CMD_CHAT_PASSWORD");
    cmd
}

/// The traced calls that touched the file system for writing.
fn writes(log: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).expect("strace log");
    assert!(
        text.contains("openat("),
        "the trace recorded nothing: {text}"
    );
    text.lines()
        .filter(|line| !line.contains("--- ") && !line.contains("+++ "))
        .filter(|line| {
            let opens =
                line.contains(" open(") || line.contains(" openat(") || line.contains(" openat2(");
            if opens {
                WRITE_FLAGS.iter().any(|f| line.contains(f))
                    && !DEVICES.iter().any(|d| line.contains(d))
            } else {
                true
            }
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_session_writes_nothing_to_disk() {
    if !strace_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server_log, client_log) = (
        dir.path().join("server.trace"),
        dir.path().join("client.trace"),
    );

    let mut server = traced(
        &server_log,
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
    writeln!(server.stdin.take().unwrap(), "disk-test-password").unwrap();
    let mut banner = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    banner.read_line(&mut line).unwrap();
    let port = line
        .strip_prefix("cmd-chat room listening on 127.0.0.1:")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected banner {line:?}"))
        .to_owned();

    // A scripted member says something, stays to hear its echo, and leaves.
    let mut client = traced(
        &client_log,
        &["connect", "127.0.0.1", &port, "ann", "--password-stdin"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut input = client.stdin.take().unwrap();
    writeln!(
        input,
        "disk-test-password\nnothing of this touches the disk"
    )
    .unwrap();
    let mut events = BufReader::new(client.stdout.take().unwrap());
    let mut heard = false;
    for _ in 0..10 {
        let mut event = String::new();
        if events.read_line(&mut event).unwrap() == 0 {
            break;
        }
        if event.contains("nothing of this touches the disk") {
            heard = true;
            break;
        }
    }
    assert!(heard, "the message made the round trip");
    drop(input);
    assert!(client.wait().unwrap().success());

    // Signal cmd-chat itself, the traced child of strace.
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

    for (who, log) in [("server", &server_log), ("client", &client_log)] {
        let found = writes(log);
        assert!(
            found.is_empty(),
            "the {who} touched the disk:\n{}",
            found.join("\n")
        );
    }
}
