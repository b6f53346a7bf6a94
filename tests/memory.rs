//! Secrets in memory: after a chat, the running server's memory holds neither
//! the password nor any plaintext; a client that has left the room holds
//! neither either, private messages included. Memory is read through /proc/PID/mem (Linux; the reader is
//! the parent of the inspected process, as ptrace rules require).

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::process::{Child, Command, Stdio};

use cmd_chat::client::Event;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_cmd-chat");

/// Every readable, writable mapping of `pid`, concatenated: heap, stacks,
/// anonymous memory, and the data sections. Read-only file mappings (the
/// binary's code and constants, shared libraries) cannot hold runtime secrets.
fn writable_memory(pid: u32) -> Vec<u8> {
    // A mapping may go between reading the list and reading it: try again.
    let mut failure = String::new();
    for _ in 0..3 {
        match try_writable_memory(pid) {
            Ok(all) => {
                assert!(
                    all.len() > 100_000,
                    "read only {} bytes of memory",
                    all.len()
                );
                return all;
            }
            Err(e) => failure = e,
        }
    }
    panic!("cannot read the memory of process {pid}: {failure}");
}

/// One pass of [`writable_memory`]; any mapping that cannot be read fails
/// it, so that nothing is skipped silently.
fn try_writable_memory(pid: u32) -> Result<Vec<u8>, String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| e.to_string())?;
    let mut mem =
        std::fs::File::open(format!("/proc/{pid}/mem")).map_err(|e| format!("open mem: {e}"))?;
    let mut all = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let range = fields.next().unwrap();
        let perms = fields.next().unwrap();
        if !perms.starts_with("rw") || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut chunk = vec![0u8; (end - start) as usize];
        mem.seek(SeekFrom::Start(start))
            .and_then(|_| mem.read_exact(&mut chunk))
            .map_err(|e| format!("{line}: {e}"))?;
        all.extend_from_slice(&chunk);
    }
    Ok(all)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn canary(label: &str) -> String {
    format!("{label}-{:016x}", rand::random::<u64>())
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cmd-chat serve` with the password given on standard input.
fn spawn_server(password: &str, extra: &[&str]) -> (Reaped, u16) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "127.0.0.1",
            "0",
            "--password-stdin",
            "--kdf-memory",
            "8",
        ])
        .args(extra)
        .env_remove("CMD_CHAT_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{password}").unwrap();
    drop(stdin);
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let port = banner_port(&line).unwrap_or_else(|| panic!("unexpected banner {line:?}"));
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (Reaped(child), port)
}

fn config(port: u16, name: &str, password: &str) -> cmd_chat::client::ClientConfig {
    cmd_chat::client::ClientConfig {
        server: format!("127.0.0.1:{port}"),
        username: name.into(),
        password: cmd_chat::crypto::Password::new(password.into()),
        allow_legacy: true,
    }
}

async fn chat_through(port: u16, password: &str, ann_name: &str, plaintext: &str) {
    let mut ann = cmd_chat::client::Client::connect(config(port, ann_name, password))
        .await
        .unwrap();
    let mut bob = cmd_chat::client::Client::connect(config(port, "bob", password))
        .await
        .unwrap();
    for i in 0..20 {
        ann.send(&format!("{plaintext} #{i}")).await.unwrap();
    }
    let mut received = 0;
    while received < 20 {
        if let Event::Message(m) = next(&mut bob).await {
            assert!(m.text.starts_with(plaintext));
            received += 1;
        }
    }
    // And one private message, relayed through the server's memory too.
    until(&mut ann, |e| matches!(e, Event::Joined { .. })).await;
    ann.send_private("bob", &format!("{plaintext} private"))
        .await
        .unwrap();
    let private = |e: &Event| matches!(e, Event::Private(_));
    tokio::join!(until(&mut ann, private), until(&mut bob, private));
    ann.leave().await.unwrap();
    bob.leave().await.unwrap();
}

async fn server_memory_after_a_chat(extra: &[&str]) {
    let password = canary("PASSWORD");
    let plaintext = canary("PLAINTEXT");
    let name = canary("NAME");
    let (server, port) = spawn_server(&password, extra);
    chat_through(port, &password, &name[..20], &plaintext).await;
    let memory = writable_memory(server.0.id());
    // The scan works: it finds what the server legitimately keeps.
    assert!(
        contains(&memory, &name[..20]),
        "the scan should find the member's name"
    );
    assert!(
        !contains(&memory, &password),
        "the password is in the server's memory"
    );
    assert!(
        !contains(&memory, &plaintext),
        "a message's plaintext is in the server's memory"
    );
}

#[tokio::test]
async fn a_native_server_holds_no_password_and_no_plaintext() {
    server_memory_after_a_chat(&[]).await;
}

#[tokio::test]
async fn a_legacy_server_holds_no_password_and_no_plaintext() {
    server_memory_after_a_chat(&["--allow-legacy"]).await;
}

/// Run as a child process by `a_client_that_left_holds_no_password_or_plaintext`:
/// joins, chats, leaves, says so, and waits to be inspected.
#[tokio::test]
#[ignore = "helper process for the client memory test"]
async fn client_probe() {
    let Ok(port) = std::env::var("CMD_CHAT_PROBE_PORT") else {
        return;
    };
    // Unbuffered, so no copy stays behind in the standard library's stdin buffer.
    let mut input = std::fs::File::from(
        std::os::fd::AsFd::as_fd(&std::io::stdin())
            .try_clone_to_owned()
            .unwrap(),
    );
    let mut line = zeroize::Zeroizing::new(Vec::new());
    let mut byte = [0u8; 1];
    while input.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let mut words = line.split(|&b| b == b' ');
    let mut word =
        || zeroize::Zeroizing::new(String::from_utf8(words.next().unwrap().to_vec()).unwrap());
    let (password, plaintext, kept) = (word(), word(), word());
    // Kept on the heap for the whole run: the scan must find it, or it
    // does not see the heap at all.
    let kept: &'static str = Box::leak(kept.as_str().to_owned().into_boxed_str());
    std::hint::black_box(kept);
    drop(line);
    {
        let port: u16 = port.parse().unwrap();
        let mut client = cmd_chat::client::Client::connect(config(port, "probe", &password))
            .await
            .unwrap();
        // A second member, for a private conversation in both directions.
        let mut peer = cmd_chat::client::Client::connect(config(port, "peer", &password))
            .await
            .unwrap();
        until(&mut client, |e| matches!(e, Event::Joined { .. })).await;
        client.send(&plaintext).await.unwrap();
        loop {
            if let Event::Message(m) = next(&mut client).await
                && m.text == *plaintext
            {
                break;
            }
        }
        /// Reads until the private message carrying `text` shows up.
        async fn private(client: &mut cmd_chat::client::Client, text: &str) {
            loop {
                if let Event::Private(m) = next(client).await
                    && m.text == text
                {
                    return;
                }
            }
        }
        client.send_private("peer", &plaintext).await.unwrap();
        tokio::join!(
            private(&mut client, &plaintext),
            private(&mut peer, &plaintext)
        );
        peer.send_private("probe", &plaintext).await.unwrap();
        tokio::join!(
            private(&mut client, &plaintext),
            private(&mut peer, &plaintext)
        );
        client.leave().await.unwrap();
        peer.leave().await.unwrap();
    }
    drop(password);
    drop(plaintext);
    println!("\nPROBE-LEFT-THE-ROOM");
    std::io::stdout().flush().unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
}

#[tokio::test]
async fn a_client_that_left_holds_no_password_or_plaintext() {
    let password = canary("PASSWORD");
    let plaintext = canary("PLAINTEXT");
    let (_server, port) = spawn_server(&password, &[]);
    let mut probe = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "client_probe",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("CMD_CHAT_PROBE_PORT", port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Neither in argv nor in the environment: only in what the probe keeps.
    let kept = canary("KEPT");
    writeln!(probe.stdin.take().unwrap(), "{password} {plaintext} {kept}").unwrap();
    let mut out = std::io::BufReader::new(probe.stdout.take().unwrap());
    let probe = Reaped(probe);
    let mut line = String::new();
    loop {
        line.clear();
        assert_ne!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap(),
            0,
            "the probe exited early"
        );
        if line.trim() == "PROBE-LEFT-THE-ROOM" {
            break;
        }
    }
    let memory = writable_memory(probe.0.id());
    assert!(
        contains(&memory, &kept),
        "the scan should find what the client keeps on its heap"
    );
    assert!(
        !contains(&memory, &password),
        "the password is in the departed client's memory"
    );
    assert!(
        !contains(&memory, &plaintext),
        "a message's plaintext is in the departed client's memory"
    );
}
