//! Scripting mode: JSON lines out, plain lines in.
//!
//! Used by `cmd-chat connect --json`, and whenever stdin is not a terminal.
//! Each stdin line is a message, or a command when it starts with `/`
//! (`/quit`, `/clear`, `/who`, `/msg <name> <text>`, `/verify <name>`). Each
//! event is one JSON object on stdout. End of input leaves the room.

use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use super::command::{self, Command};
use super::{Client, ClientError, Event, Transport};

/// The JSON object printed for an event.
pub fn event_json(event: &Event) -> Value {
    match event {
        Event::Message(m) => json!({
            "event": "message",
            "seq": m.seq,
            "from": m.from,
            "text": m.text,
            "ts": m.timestamp,
            "history": m.history,
        }),
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
        Event::Reconnected { missed, complete } => {
            json!({"event": "reconnected", "missed": missed, "complete": complete})
        }
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

/// Reports an error that refused one thing (the session goes on) as an
/// `error` event; passes on any other, which ends the session.
async fn recoverable<W: AsyncWrite + Unpin>(
    out: &mut W,
    result: Result<(), ClientError>,
) -> Result<(), ClientError> {
    match result {
        Err(e) if e.is_recoverable() => {
            emit(out, json!({"event": "error", "message": e.to_string()})).await
        }
        other => other,
    }
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
        }),
    )
    .await?;
    let mut lines = input.lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line.map_err(|e| ClientError::Protocol(format!("reading input: {e}")))? else {
                    break;
                };
                let line = line.strip_suffix('\r').unwrap_or(&line);
                match line.trim() {
                    "" => {}
                    "/quit" | "/exit" => break,
                    "/clear" => client.clear().await?,
                    "/who" => emit(&mut output, json!({"event": "users", "users": client.users()})).await?,
                    cmd if cmd.starts_with("/resend") => {
                        let reference = cmd["/resend".len()..].trim().parse::<u64>().ok();
                        let resent = match reference {
                            Some(reference) => client.resend(reference).await?,
                            None => None,
                        };
                        if resent.is_none() {
                            emit(&mut output, json!({
                                "event": "error",
                                "message": format!("no undelivered message to resend for {cmd:?}; use /resend <ref> with the ref of a failed event"),
                            })).await?;
                        }
                    }
                    cmd if matches!(cmd.split_whitespace().next(), Some("/msg" | "/verify")) => {
                        match command::parse(line) {
                            Command::Msg { to, text } => {
                                let sent = client.send_private(to, text).await;
                                recoverable(&mut output, sent).await?;
                            }
                            Command::Verify(name) => {
                                let asked = client.verify(name).await;
                                recoverable(&mut output, asked).await?;
                            }
                            _ => emit(&mut output, json!({
                                "event": "error",
                                "message": "usage: /msg <name> <text>, /verify <name>",
                            })).await?,
                        }
                    }
                    cmd if cmd.starts_with('/') && !cmd.starts_with("//") => {
                        emit(&mut output, json!({
                            "event": "error",
                            "message": format!("unknown command {cmd}; commands: /who /msg /verify /clear /resend /quit (start a message with // to send a literal /)"),
                        })).await?;
                    }
                    _ => {
                        let text = line.strip_prefix('/').filter(|t| t.starts_with('/')).unwrap_or(line);
                        let sent = client.send(text).await.map(drop);
                        recoverable(&mut output, sent).await?;
                    }
                }
            }
            event = client.next_event() => emit(&mut output, event_json(&event?)).await?,
        }
    }
    client.leave().await
}
