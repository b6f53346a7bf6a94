//! A plain line-oriented terminal front end: one line per event, one message
//! per input line. Everything a peer sent is sanitized before printing.

use chrono::{DateTime, Local};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use super::sanitize::{sanitize, sanitize_lines};
use super::{Client, ClientError, Event, Transport};

const HELP: &str = "commands: /who (who is here)  /clear (wipe the room's history for everyone)  /quit or q (leave)";

/// `HH:MM` in local time for a server timestamp: RFC 3339, or a naive ISO
/// 8601 time taken as UTC (as some 1.x servers send); `--:--` if unreadable.
pub fn local_hhmm(timestamp: &str) -> String {
    let parsed = DateTime::parse_from_rfc3339(timestamp)
        .map(|t| t.with_timezone(&Local))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|t| t.and_utc().with_timezone(&Local))
        });
    parsed
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_else(|_| "--:--".into())
}

/// The lines a person sees for an event.
pub fn render(event: &Event) -> Vec<String> {
    match event {
        Event::Message(m) => {
            let lines = sanitize_lines(&m.text);
            let mut out = vec![format!(
                "[{}] {}: {}",
                local_hhmm(&m.timestamp),
                sanitize(&m.from),
                lines[0]
            )];
            out.extend(lines[1..].iter().map(|l| format!("        {l}")));
            out
        }
        Event::Joined { user } => vec![format!("* {} joined", sanitize(user))],
        Event::Left { user } => vec![format!("* {} left", sanitize(user))],
        Event::Cleared => vec!["* the history was cleared".into()],
        Event::Error { message } => vec![format!("! {}", sanitize(message))],
        Event::Notice { message } => vec![format!("! server: {}", sanitize(message))],
    }
}

async fn say<W: AsyncWrite + Unpin>(out: &mut W, lines: &[String]) -> Result<(), ClientError> {
    let mut text = lines.join("\n");
    text.push('\n');
    out.write_all(text.as_bytes())
        .await
        .and(out.flush().await)
        .map_err(|e| ClientError::ConnectionLost(format!("standard output closed: {e}")))
}

/// Runs until `/quit`, end of input, or a fatal error.
pub async fn run<R, W>(mut client: Client, input: R, mut output: W) -> Result<(), ClientError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let sealing = match client.transport() {
        Transport::Sealed => "sealed: nothing is readable on the network",
        Transport::Legacy => "LEGACY: names and ciphertext are visible on the network",
    };
    say(
        &mut output,
        &[
            format!(
                "* joined {} as {} ({sealing})",
                client.server(),
                sanitize(client.username())
            ),
            format!(
                "* online: {}",
                client
                    .users()
                    .iter()
                    .map(|u| sanitize(u))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "* {} earlier messages replayed; {HELP}",
                client.history_count()
            ),
        ],
    )
    .await?;
    let mut lines = input.lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line.map_err(|e| ClientError::Protocol(format!("reading input: {e}")))? else {
                    break;
                };
                match line.trim() {
                    "" => {}
                    "/quit" | "/exit" | "q" => break,
                    "/help" => say(&mut output, &[HELP.to_owned()]).await?,
                    "/clear" => client.clear().await?,
                    "/who" => {
                        let users = client.users().iter().map(|u| sanitize(u)).collect::<Vec<_>>().join(", ");
                        say(&mut output, &[format!("* online: {users}")]).await?;
                    }
                    cmd if cmd.starts_with('/') => {
                        say(&mut output, &[format!("! unknown command {}; {HELP}", sanitize(cmd))]).await?;
                    }
                    _ => client.send(&line).await?,
                }
            }
            event = client.next_event() => say(&mut output, &render(&event?)).await?,
        }
    }
    client.leave().await
}
