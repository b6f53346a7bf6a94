//! Live interop with a client built on the PyPI packages cmd-chat 1.x uses
//! (`srp==1.0.22`, `cryptography`): `tests/python/legacy_client.py`.
//! `scripts/test` installs them in a virtual environment under `target/`
//! and points `PYTHON` at it, so this runs wherever the suite does, CI
//! included.

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

/// An original-style Python server (`tests/python/legacy_server.py`, on pysrp).
struct PythonServer {
    child: tokio::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PythonServer {
    async fn start(password: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let child = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/python/legacy_server.py"
            ))
            .arg(&port_file)
            .arg(password)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 is installed (see .ci/run)");
        let mut tries = 0;
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse().unwrap();
            }
            tries += 1;
            assert!(tries < 200, "the Python server did not start");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn config(
        &self,
        name: &str,
        password: &str,
        allow_legacy: bool,
    ) -> cmd_chat::client::ClientConfig {
        cmd_chat::client::ClientConfig {
            server: format!("127.0.0.1:{}", self.port),
            username: name.into(),
            password: cmd_chat::crypto::Password::new(password.into()),
            allow_legacy,
        }
    }
}

#[tokio::test]
async fn rust_client_joins_a_python_1x_server_only_when_allowed() {
    let mut server = PythonServer::start(PASSWORD).await;
    let refused = cmd_chat::client::Client::connect(server.config("ann", PASSWORD, false))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, cmd_chat::client::ClientError::LegacyServer(_)),
        "{refused:?}"
    );
    assert_eq!(refused.exit_code(), cmd_chat::client::exit_code::PROTOCOL);

    let wrong = cmd_chat::client::Client::connect(server.config("ann", "nope", true))
        .await
        .unwrap_err();
    assert!(
        matches!(wrong, cmd_chat::client::ClientError::WrongPassword),
        "{wrong:?}"
    );

    let mut ann = cmd_chat::client::Client::connect(server.config("ann", PASSWORD, true))
        .await
        .unwrap();
    assert_eq!(ann.transport(), cmd_chat::client::Transport::Legacy);
    let taken = cmd_chat::client::Client::connect(server.config("ann", PASSWORD, true))
        .await
        .unwrap_err();
    assert!(
        matches!(taken, cmd_chat::client::ClientError::NameTaken(_)),
        "{taken:?}"
    );

    ann.send("hello python server").await.unwrap();
    assert_eq!(
        next_message(&mut ann).await,
        ("ann".into(), "hello python server".into(), false)
    );

    let port = server.port.to_string();
    let py = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/legacy_client.py"
        ))
        .args([
            "127.0.0.1",
            &port,
            "pyuser",
            PASSWORD,
            "--expect",
            "hello python server",
            "--send",
            "hi rust",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stdout)
    );
    assert_eq!(
        next(&mut ann).await,
        Event::Joined {
            user: "pyuser".into()
        }
    );
    assert_eq!(
        next_message(&mut ann).await,
        ("pyuser".into(), "hi rust".into(), false)
    );
    ann.leave().await.unwrap();
    server.child.kill().await.unwrap();
}
