//! Carrying out a parsed [`Command`]: the one place that knows what each
//! command does to the [`Client`]. Every front end parses a line, calls
//! [`carry_out`], and renders the [`Outcome`] its own way (the terminal as
//! text, scripting mode as JSON); a `match` on [`Outcome`] has no catch-all,
//! so a new command or outcome does not compile until each front end shows
//! it.
//!
//! What a front end does *instead of* carrying out a command is its own
//! business: the terminal asks before `/clear`.

use std::path::PathBuf;

use super::command::Command;
use super::typed_path::UnclosedQuote;
use super::{Client, ClientError};

/// What carrying out a command did, for the front end to show.
#[derive(Debug)]
pub enum Outcome {
    /// A blank line: nothing happened.
    Nothing,
    /// `/quit`: leave the room.
    Leave,
    /// A message (or `/me`) went to the room as this reference; its echo and
    /// receipt follow as events.
    Sent(u64),
    /// A private message went, or is queued behind a key exchange; it shows
    /// as an event when it really leaves.
    SentPrivately,
    /// `/resend n`: there is no undelivered message `n`.
    NothingToResend(u64),
    /// Asked of the room (lock, unlock, admit, deny, clear, a safety code,
    /// a file started): the room's events show what came of it.
    Asked,
    /// `/who`: show [`Client::users`], [`Client::locked_by`] and
    /// [`Client::knocking`].
    Who,
    /// `/files`: show [`Client::received_files`].
    Files,
    /// `/help`.
    Help,
    /// File `n` was written to `path`.
    Saved { n: usize, path: PathBuf },
    /// Refused without ending the session: nothing was sent.
    Refused(ClientError),
    /// A command used wrongly: how to use it.
    Usage(&'static str),
    /// A path after `/send` or `/save` that cannot be read as one.
    BadPath(UnclosedQuote),
    /// Not a command; the word typed.
    Unknown(String),
}

/// Carries out `command`. `Err` only for what ends the session (the room
/// is lost); a refusal is an [`Outcome::Refused`].
pub async fn carry_out(client: &mut Client, command: Command<'_>) -> Result<Outcome, ClientError> {
    let done = match command {
        Command::Nothing => return Ok(Outcome::Nothing),
        Command::Quit => return Ok(Outcome::Leave),
        Command::Help => return Ok(Outcome::Help),
        Command::Who => return Ok(Outcome::Who),
        Command::Files => return Ok(Outcome::Files),
        Command::Usage(usage) => return Ok(Outcome::Usage(usage)),
        Command::BadPath(why) => return Ok(Outcome::BadPath(why)),
        Command::Unknown(word) => return Ok(Outcome::Unknown(word.to_owned())),
        Command::Say(_) | Command::Me(_) => {
            let text = command.room_text().unwrap_or_default();
            client.send(&text).await.map(Outcome::Sent)
        }
        Command::Msg { to, text } => client
            .send_private(to, text)
            .await
            .map(|()| Outcome::SentPrivately),
        Command::Resend(n) => client
            .resend(n)
            .await
            .map(|sent| sent.map_or(Outcome::NothingToResend(n), Outcome::Sent)),
        Command::Verify(name) => client.verify(name).await.map(|()| Outcome::Asked),
        Command::Clear => client.clear().await.map(|()| Outcome::Asked),
        Command::Lock => client.lock().await.map(|()| Outcome::Asked),
        Command::Unlock => client.unlock().await.map(|()| Outcome::Asked),
        Command::Admit(user) => client.admit(user).await.map(|()| Outcome::Asked),
        Command::Deny(user) => client.deny(user).await.map(|()| Outcome::Asked),
        Command::Send(path) => client.send_file(&path).await.map(|()| Outcome::Asked),
        Command::Save { n, path } => client
            .save_file(n, path.as_deref())
            .await
            .map(|path| Outcome::Saved { n, path }),
    };
    match done {
        Ok(outcome) => Ok(outcome),
        Err(e) if e.is_recoverable() => Ok(Outcome::Refused(e)),
        Err(e) => Err(e),
    }
}
