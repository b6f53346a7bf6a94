//! A small bot built on the client core: it joins a room as an ordinary
//! member and answers `!time` with the time and `!help` with what it can do.
//!
//! ```sh
//! CMD_CHAT_PASSWORD='the room password' cargo run --example bot -- <host> <port> <name>
//! ```
//!
//! It logs in with SRP and reads and writes through the same [`Client`] the
//! terminal UI uses, so it holds the room key like any member, and it wipes
//! it when it leaves (Ctrl-C). The password comes only from
//! `CMD_CHAT_PASSWORD`, never from the command line, where `ps` would show it.

use std::future::Future;
use std::process::ExitCode;

use chrono::{DateTime, Local};
use cmd_chat::client::{Client, ClientConfig, ClientError, Event, exit_code};
use cmd_chat::crypto::Password;

/// Where the password comes from.
const PASSWORD_ENV: &str = "CMD_CHAT_PASSWORD";

/// What the bot says to a message `text` received at `now`, if anything.
/// Its answers never start with `!`, so two bots cannot set each other off.
pub fn reply(text: &str, now: DateTime<Local>) -> Option<String> {
    let word = text.trim();
    if !word.starts_with('!') {
        return None;
    }
    Some(match word.to_lowercase().as_str() {
        "!time" => format!(
            "it is {} here ({})",
            now.format("%H:%M:%S"),
            now.format("%A %-d %B %Y, UTC%:z")
        ),
        "!help" => "I answer !time with the time where I run, and !help with this".to_owned(),
        _ => "I only know !time and !help".to_owned(),
    })
}

/// Answers messages until the room is lost or `stop` completes, then leaves.
pub async fn serve(mut client: Client, stop: impl Future<Output = ()>) -> Result<(), ClientError> {
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            () = &mut stop => break,
            event = client.next_event() => event?,
        };
        let Event::Message(message) = event else {
            continue;
        };
        // Replayed history was answered (or not) when it was said, and our
        // own messages come back to us: answer neither.
        if message.history || message.from == client.username() {
            continue;
        }
        if let Some(answer) = reply(&message.text, Local::now()) {
            client.send(&answer).await?;
        }
    }
    client.leave().await
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [host, port, name] = args.as_slice() else {
        eprintln!(
            "usage: {PASSWORD_ENV}=<password> cargo run --example bot -- <host> <port> <name>"
        );
        return ExitCode::from(exit_code::USAGE);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("bot: {port:?} is not a port number");
        return ExitCode::from(exit_code::USAGE);
    };
    let Some(password) = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()) else {
        eprintln!("bot: set {PASSWORD_ENV} to the room password");
        return ExitCode::from(exit_code::USAGE);
    };
    let config = ClientConfig {
        server: format!("{host}:{port}"),
        username: name.clone(),
        password: Password::new(password),
        allow_legacy: false,
    };
    let result = match Client::connect(config).await {
        Ok(client) => {
            eprintln!("bot: joined {host}:{port} as {name}; Ctrl-C leaves");
            serve(client, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bot: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
