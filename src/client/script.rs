//! Scripting mode: JSON lines out, plain lines in.
//!
//! Used by `cmd-chat connect --json`, and whenever stdin is not a terminal.
//! Each stdin line is a message, or a command when it starts with `/`: the
//! same commands as in the terminal (`/help` lists them), carried out by
//! [`super::dispatch`]; `/clear` does not ask first. Each event is one JSON
//! object on stdout. End of input leaves the room, once a file being sent
//! has gone out and the server has confirmed (or the ack timeout has failed)
//! every message; `/quit` leaves at once.

use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use super::command::{self, Command};
use super::dispatch::{self, Outcome};
use super::event::private_not_sent;
use super::files;
use super::{ChatMessage, Client, ClientError, Event, KnockOutcome, Transport, Waiting};

/// The JSON object printed while the login waits at a locked room.
pub fn waiting_json(waiting: &Waiting) -> Value {
    json!({
        "event": "waiting",
        "locked_by": waiting.locked_by,
        "timeout_secs": waiting.timeout.as_secs(),
    })
}

fn direction(sending: bool) -> &'static str {
    if sending { "sending" } else { "receiving" }
}

/// The JSON object printed for an event.
pub fn event_json(event: &Event) -> Value {
    match event {
        Event::Message(m) => message_json(m),
        Event::Private(m) => json!({
            "event": "private",
            "from": m.from,
            "to": m.to,
            "text": m.text,
        }),
        Event::Verify { user, code } => json!({"event": "verify", "user": user, "code": code}),
        Event::Joined { user } => json!({"event": "joined", "user": user}),
        Event::Left { user } => json!({"event": "left", "user": user}),
        Event::Cleared { by } => json!({"event": "cleared", "by": by}),
        Event::Error { message } => json!({"event": "error", "message": message}),
        // An error, as it always was, with who and how many for a script
        // that keeps count.
        Event::PrivateNotSent { to, count, reason } => json!({
            "event": "error",
            "message": private_not_sent(to, *count, reason),
            "private_not_sent": {"to": to, "count": count},
        }),
        Event::Notice { message } => json!({"event": "notice", "message": message}),
        Event::Sent { reference, seq } => json!({"event": "sent", "ref": reference, "seq": seq}),
        Event::SendFailed { reference, reason } => {
            json!({"event": "failed", "ref": reference, "reason": reason})
        }
        Event::Reconnecting { attempt, reason } => {
            json!({"event": "reconnecting", "attempt": attempt, "reason": reason})
        }
        Event::RoomRestarted => json!({"event": "room_restarted"}),
        Event::Reconnected { missed, complete } => {
            json!({"event": "reconnected", "missed": missed, "complete": complete})
        }
        Event::Locked { by } => json!({"event": "locked", "by": by}),
        Event::Unlocked { by } => json!({"event": "unlocked", "by": by}),
        Event::Knock { user } => json!({"event": "knock", "user": user}),
        Event::KnockResolved { user, outcome, by } => json!({
            "event": "knock_resolved",
            "user": user,
            "outcome": outcome_name(*outcome),
            "by": by,
        }),
        Event::FileSending { name, size } => {
            json!({"event": "file_sending", "name": name, "size": size})
        }
        Event::FileIncoming { from, name, size } => {
            json!({"event": "file_incoming", "from": from, "name": name, "size": size})
        }
        Event::FileProgress {
            sending,
            from,
            name,
            done,
            size,
        } => json!({
            "event": "progress",
            "direction": direction(*sending),
            "from": from,
            "name": name,
            "done": done,
            "size": size,
            "percent": files::percent(*done, *size),
        }),
        Event::FileSent { name, size } => json!({"event": "file_sent", "name": name, "size": size}),
        Event::FileReceived {
            n,
            from,
            name,
            size,
        } => json!({"event": "file", "n": n, "from": from, "name": name, "size": size}),
        Event::FileFailed {
            sending,
            from,
            name,
            reason,
        } => json!({
            "event": "file_failed",
            "direction": direction(*sending),
            "from": from,
            "name": name,
            "reason": reason,
        }),
    }
}

/// A chat message, with what marks it: an action, a repeat by the server.
fn message_json(m: &ChatMessage) -> Value {
    let mut line = json!({
        "event": "message",
        "seq": m.seq,
        "from": m.from,
        "text": m.text,
        "ts": m.timestamp,
        "history": m.history,
    });
    if let Some(written) = &m.relayed_again {
        line["relayed_again"] = json!(written);
    }
    if let Some(action) = m.action() {
        line["action"] = json!(action);
    }
    line
}

fn outcome_name(outcome: KnockOutcome) -> &'static str {
    match outcome {
        KnockOutcome::Admitted => "admitted",
        KnockOutcome::Denied => "denied",
        KnockOutcome::Expired => "expired",
        KnockOutcome::Withdrawn => "withdrawn",
    }
}

/// Carries out one line: a `/command`, or a message. `false` means leave.
async fn command<W: AsyncWrite + Unpin>(
    client: &mut Client,
    out: &mut W,
    command: Command<'_>,
) -> Result<bool, ClientError> {
    let shown = match dispatch::carry_out(client, command).await? {
        // The events that follow say what came of it.
        Outcome::Nothing | Outcome::Asked | Outcome::Sent(_) | Outcome::SentPrivately => None,
        Outcome::Leave => return Ok(false),
        Outcome::NothingToResend(n) => Some(error(&format!(
            "no undelivered message {n} to resend; use the ref of a failed event"
        ))),
        Outcome::Who => Some(json!({
            "event": "users",
            "users": client.users(),
            "locked": client.locked_by(),
            "knocking": client.knocking(),
        })),
        Outcome::Files => Some(files_json(client)),
        Outcome::Help => Some(json!({"event": "help", "commands": command::COMMANDS})),
        Outcome::Saved { n, path } => {
            Some(json!({"event": "saved", "n": n, "path": path.display().to_string()}))
        }
        Outcome::Refused(e) => Some(error(&e.to_string())),
        Outcome::Usage(usage) => Some(error(usage)),
        Outcome::BadPath(why) => Some(error(&why.to_string())),
        Outcome::Unknown(word) => Some(error(&command::unknown(&word))),
    };
    if let Some(value) = shown {
        emit(out, value).await?;
    }
    Ok(true)
}

fn error(message: &str) -> Value {
    json!({"event": "error", "message": message})
}

fn files_json(client: &Client) -> Value {
    let files: Vec<Value> = client
        .received_files()
        .map(|f| {
            json!({
                "n": f.n,
                "from": f.from,
                "name": f.name,
                "size": f.size(),
                "saved": f.saved.as_ref().map(|p| p.display().to_string()),
            })
        })
        .collect();
    json!({"event": "files", "files": files})
}

/// A line of input: a command when it starts with `/` (`//` sends a
/// literal `/`), else a message exactly as written; `q` alone is a message
/// here, not `/quit`.
fn parse(line: &str) -> Command<'_> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        Command::Nothing
    } else if trimmed.starts_with('/') {
        command::parse(trimmed)
    } else {
        Command::Say(line)
    }
}

async fn emit<W: AsyncWrite + Unpin>(out: &mut W, value: Value) -> Result<(), ClientError> {
    let mut line = value.to_string();
    line.push('\n');
    // stdout closing is not a network failure; stop quietly.
    out.write_all(line.as_bytes())
        .await
        .and(out.flush().await)
        .map_err(|e| ClientError::ConnectionLost(format!("standard output closed: {e}")))
}

/// Runs the scripting mode until `/quit`, end of input, or a fatal error.
pub async fn run<R, W>(mut client: Client, input: R, mut output: W) -> Result<(), ClientError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    emit(
        &mut output,
        json!({
            "event": "ready",
            "users": client.users(),
            "sealed": client.transport() == Transport::Sealed,
            "history": client.history_count(),
            "locked": client.locked_by(),
            "knocking": client.knocking(),
            "max_file_size": client.max_file_size(),
        }),
    )
    .await?;
    let mut lines = input.lines();
    // Input ended while a file or a message was going out: leave once the
    // server has confirmed it (or it is reported failed), so that a script
    // piping in its lines learns the fate of each.
    let mut input_done = false;
    loop {
        if input_done
            && !client.sending()
            && !client.awaiting_receipts()
            && !client.has_events_ready()
        {
            break;
        }
        tokio::select! {
            line = lines.next_line(), if !input_done => {
                let Some(line) = line.map_err(|e| ClientError::Protocol(format!("reading input: {e}")))? else {
                    input_done = true;
                    continue;
                };
                let line = line.strip_suffix('\r').unwrap_or(&line);
                if !command(&mut client, &mut output, parse(line)).await? {
                    break;
                }
            }
            event = client.next_event() => emit(&mut output, event_json(&event?)).await?,
        }
    }
    client.leave().await
}
