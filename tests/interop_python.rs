//! Live interop with a client built on the PyPI packages cmd-chat 1.x uses
//! (`srp==1.0.22`, `cryptography`): `tests/python/legacy_client.py`.
//! `.ci/run` installs them, so this always runs in CI.

mod common;

use std::process::Stdio;

use cmd_chat::client::Event;
use common::*;
use tokio::process::Command;

fn python_client(server: &TestServer, name: &str, password: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/legacy_client.py"
    ))
    .arg("127.0.0.1")
    .arg(server.addr.port().to_string())
    .arg(name)
    .arg(password)
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn python_1x_client_and_rust_client_talk() {
    let server = TestServer::with_legacy().await;
    let mut ann = server.join("ann").await;
    ann.send("hello from rust").await.unwrap();
    next_message(&mut ann).await;

    let child = python_client(
        &server,
        "pyuser",
        PASSWORD,
        &["--expect", "hello from rust", "--send", "hello from python"],
    )
    .spawn()
    .expect("python3 is installed (see .ci/run)");
    let output = tokio::time::timeout(PATIENCE * 2, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python client failed: {:?}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(r#""text": "hello from rust""#), "{stdout}");

    assert_eq!(
        next(&mut ann).await,
        Event::Joined {
            user: "pyuser".into()
        }
    );
    assert_eq!(
        next_message(&mut ann).await,
        ("pyuser".into(), "hello from python".into(), false)
    );
}

#[tokio::test]
async fn python_1x_client_with_wrong_password_is_refused() {
    let server = TestServer::with_legacy().await;
    let output = python_client(&server, "pyuser", "wrong", &[])
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("wrong password"));
}

#[tokio::test]
async fn python_1x_client_is_refused_by_a_native_only_room() {
    let server = TestServer::native().await;
    let output = python_client(&server, "pyuser", PASSWORD, &[])
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("--allow-legacy"));
}
