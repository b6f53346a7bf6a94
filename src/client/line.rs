//! The plain line front end: the same session as the terminal UI (commands,
//! rendering, sanitizing), over ordinary standard input and output with no
//! line editing. It is the fallback where the terminal UI cannot run: a
//! terminal without cursor motion (`TERM=dumb`), or output that is not a
//! terminal.

use std::future::Future;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, Lines};

use super::render::{Prompt, PromptKind, Theme};
use super::session::{self, Screen};
use super::{Client, ClientError};

/// Standard input and output as a [`Screen`].
struct LineScreen<R, W> {
    /// Standard input, a line at a time.
    input: Lines<R>,
    /// Standard output, flushed after every write.
    output: W,
    /// Whether mentions may ring the bell (only on a terminal).
    bell: bool,
}

impl<R: AsyncBufRead + Unpin, W: AsyncWrite + Unpin> LineScreen<R, W> {
    async fn write(&mut self, text: &str) -> Result<(), ClientError> {
        self.output
            .write_all(text.as_bytes())
            .await
            .and(self.output.flush().await)
            .map_err(|e| ClientError::ConnectionLost(format!("standard output closed: {e}")))
    }
}

impl<R: AsyncBufRead + Unpin, W: AsyncWrite + Unpin> Screen for LineScreen<R, W> {
    async fn show(&mut self, lines: Vec<String>, bell: bool) -> Result<(), ClientError> {
        let text = session::screen_text(lines, bell && self.bell);
        self.write(&text).await
    }

    async fn next_line(&mut self) -> Option<String> {
        // A read error ends the input like end of file does.
        let line = self.input.next_line().await.ok().flatten()?;
        Some(line.strip_suffix('\r').map(str::to_owned).unwrap_or(line))
    }

    async fn ready(&mut self, prompt: Prompt) -> Result<(), ClientError> {
        // No prompt for chat lines (they would tangle with incoming ones), but
        // a question must be seen.
        match prompt.kind {
            PromptKind::Chat => Ok(()),
            PromptKind::ConfirmClear => self.write(&prompt.raw).await,
        }
    }
}

/// Runs until `/quit`, end of input, `shutdown`, or a fatal error. `bell`
/// allows mentions to ring the terminal bell.
pub async fn run<R, W>(
    client: Client,
    input: R,
    output: W,
    theme: Theme,
    bell: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ClientError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut screen = LineScreen {
        input: input.lines(),
        output,
        bell,
    };
    session::run(client, &mut screen, theme, shutdown).await
}
