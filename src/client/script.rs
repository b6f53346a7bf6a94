//! Scripting mode: JSON lines out, plain lines in.
//!
//! Used by `cmd-chat connect --json`, and whenever stdin is not a terminal.
//! Each stdin line is a message, or a command when it starts with `/`
//! (`/quit`, `/clear`, `/who`, `/msg <name> <text>`, `/verify <name>`,
//! `/resend <ref>`, `/lock`, `/unlock`, `/admit <name>`, `/deny <name>`,
//! `/send <path>`, `/files`, `/save <n> [path]`). Each event is one JSON
//! object on stdout. End of input leaves the room, once a file being sent
//! has gone out and the server has confirmed (or the ack timeout has failed)
//! every message; `/quit` leaves at once.

use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use super::command::{self, Command};
use super::files;
use super::{Client, ClientError, Event, KnockOutcome, Transport, Waiting};

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
        Event::Message(m) => {
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
            line
        }
        Event::Private(m) => json!({
            "event": "private",
            "from": m.from,
            "to": m.to,
            "text": m.text,
        }),
        Event::Verify { user, code } => json!({"event": "verify", "user": user, "code": code}),
        Event::Joined { user } => json!({"event": "joined", "user": user}),
        Event::Left { user } => json!({"event": "left", "user": user}),
        Event::Cleared => json!({"event": "cleared"}),
        Event::Error { message } => json!({"event": "error", "message": message}),
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
            "outcome": match outcome {
                KnockOutcome::Admitted => "admitted",
                KnockOutcome::Denied => "denied",
                KnockOutcome::Expired => "expired",
                KnockOutcome::Withdrawn => "withdrawn",
            },
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

/// A request refused without ending the session, as an `error` event.
async fn or_report<W: AsyncWrite + Unpin, T>(
    out: &mut W,
    result: Result<T, ClientError>,
) -> Result<Option<T>, ClientError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_recoverable() => {
            emit(out, json!({"event": "error", "message": e.to_string()})).await?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Carries out one `/command` line; `false` means leave.
async fn command<W: AsyncWrite + Unpin>(
    client: &mut Client,
    out: &mut W,
    line: &str,
) -> Result<bool, ClientError> {
    match command::parse(line) {
        Command::Quit => return Ok(false),
        Command::Clear => {
            let cleared = client.clear().await;
            or_report(out, cleared).await?;
        }
        Command::Who => emit(out, json!({"event": "users", "users": client.users(), "locked": client.locked_by(), "knocking": client.knocking()})).await?,
        Command::Lock => {
            let done = client.lock().await;
            or_report(out, done).await?;
        }
        Command::Unlock => {
            let done = client.unlock().await;
            or_report(out, done).await?;
        }
        Command::Admit(user) => {
            let done = client.admit(user).await;
            or_report(out, done).await?;
        }
        Command::Deny(user) => {
            let done = client.deny(user).await;
            or_report(out, done).await?;
        }
        Command::Send(path) => {
            let started = client.send_file(&path).await;
            or_report(out, started).await?;
        }
        Command::Files => {
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
            emit(out, json!({"event": "files", "files": files})).await?;
        }
        Command::Save { n, path } => {
            let saved = client.save_file(n, path.as_deref()).await;
            if let Some(written) = or_report(out, saved).await? {
                emit(out, json!({"event": "saved", "n": n, "path": written.display().to_string()}))
                    .await?;
            }
        }
        Command::Usage(usage) => emit(out, json!({"event": "error", "message": usage})).await?,
        Command::BadPath(why) => {
            emit(out, json!({"event": "error", "message": why.to_string()})).await?
        }
        Command::Msg { to, text } => {
            let sent = client.send_private(to, text).await;
            or_report(out, sent).await?;
        }
        Command::Verify(name) => {
            let asked = client.verify(name).await;
            or_report(out, asked).await?;
        }
        Command::MsgUsage | Command::VerifyUsage => {
            let usage = "usage: /msg <name> <text>, /verify <name>";
            emit(out, json!({"event": "error", "message": usage})).await?;
        }
        Command::Resend(reference) => {
            let resent = client.resend(reference).await;
            if let Some(None) = or_report(out, resent).await? {
                let message = format!("no undelivered message {reference} to resend; use the ref of a failed event");
                emit(out, json!({"event": "error", "message": message})).await?;
            }
        }
        Command::ResendUsage => {
            let usage = "usage: /resend <ref>, with the ref of a failed event";
            emit(out, json!({"event": "error", "message": usage})).await?;
        }
        _ => {
            emit(out, json!({
                "event": "error",
                "message": format!("unknown command {line}; commands: /who /msg /verify /clear /resend /lock /unlock /admit /deny /send /files /save /quit (start a message with // to send a literal /)"),
            })).await?;
        }
    }
    Ok(true)
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
                match line.trim() {
                    "" => {}
                    cmd if cmd.starts_with('/') && !cmd.starts_with("//") => {
                        if !command(&mut client, &mut output, cmd).await? {
                            break;
                        }
                    }
                    _ => {
                        let text = line.strip_prefix('/').filter(|t| t.starts_with('/')).unwrap_or(line);
                        let sent = client.send(text).await;
                        or_report(&mut output, sent).await?;
                    }
                }
            }
            event = client.next_event() => emit(&mut output, event_json(&event?)).await?,
        }
    }
    client.leave().await
}
