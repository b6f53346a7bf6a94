//! The interactive terminal UI: a line editor of our own, with the room's
//! lines printed above the input line so that what you are typing is never
//! lost, and your own messages shown once.
//!
//! One task owns the screen: the session's (`session.rs`), through
//! `TermScreen`. It decodes keys (`keys`), edits the line (`editor`)
//! and draws (`view`) between the room's events, so nothing else ever
//! writes to the terminal while it draws, and a key typed at any moment
//! waits its turn instead of racing the output. Two threads do only the
//! blocking I/O: one reads standard input, one writes standard output
//! (through a bounded queue, so a terminal that stops reading, paused or
//! stuck, pushes back on the session instead of growing memory).
//!
//! The terminal is in a raw mode of our own while the chat runs: keys
//! arrive one by one, unechoed, Ctrl-C and Ctrl-Z as keys; output is
//! processed as usual. Bracketed paste is on, so a multi-line paste is one
//! message. Input history (Up/Down) lives in memory only.

mod editor;
mod keys;
mod view;
mod wrap;

use std::collections::VecDeque;
use std::future::Future;
use std::io::{IsTerminal, Write as _};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use zeroize::{Zeroize, Zeroizing};

use self::editor::{Edit, LineEditor};
use self::keys::{Decoder, Key};
use self::view::{Live, View};
use super::command;
use super::render::{Prompt, PromptKind, Theme};
use super::session::{self, Screen};
use super::typed_path;
use super::{Client, ClientError};

/// Screen updates waiting for the writer thread. Bounded so that a stalled
/// terminal pushes back on the session (and then on the server, which drops
/// a member that stops reading) instead of growing memory.
const PRINT_QUEUE: usize = 256;

/// Reads from standard input waiting for the session.
const INPUT_QUEUE: usize = 64;

/// How long to wait, on leaving, for queued output to reach the screen. A
/// safety net for a terminal that stopped reading, not a delay.
const FLUSH_PATIENCE: Duration = Duration::from_secs(2);

/// How long after an Escape byte the rest of a key's sequence may come;
/// after that it was the Escape key.
const ESCAPE_WAIT: Duration = Duration::from_millis(50);

/// How long a bracketed paste may go without a byte before it is taken as
/// ended: its end marker was lost, or the start was stray. A paste streams
/// without pauses; until then, every key is part of it.
const PASTE_SILENCE: Duration = Duration::from_secs(2);

const BRACKETED_PASTE_ON: &str = "\x1b[?2004h";
const BRACKETED_PASTE_OFF: &str = "\x1b[?2004l";

/// Why the terminal UI cannot run here; the caller falls back to the line UI.
#[derive(Debug, thiserror::Error)]
#[error("the terminal does not support line editing: {0}")]
pub struct Unsupported(&'static str);

/// Options of the terminal UI.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Colours, attributes only, or nothing.
    pub theme: Theme,
}

/// A terminal ready to run the chat on.
#[derive(Debug)]
pub struct Terminal {
    /// Our own name: completion never offers it.
    me: String,
    /// How much styling the chat gets (`--no-color`, `NO_COLOR`).
    theme: Theme,
    /// The terminal's mode before the chat, put back at the end.
    saved: mode::Saved,
}

impl Terminal {
    /// Checks that standard input and output are a terminal that can be
    /// drawn on, for `me`.
    pub fn open(me: &str, options: Options) -> Result<Self, Unsupported> {
        if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
            return Err(Unsupported("input or output is not a terminal"));
        }
        let term = std::env::var("TERM").unwrap_or_default();
        if matches!(term.as_str(), "dumb" | "cons25" | "emacs") {
            return Err(Unsupported("TERM names a terminal without cursor motion"));
        }
        Ok(Self {
            me: me.to_owned(),
            theme: options.theme,
            saved: mode::Saved::now()?,
        })
    }

    /// Runs the chat until the person leaves, `shutdown` completes, or the
    /// room is lost. The terminal is restored before this returns, so the
    /// caller can print a fatal error as an ordinary line.
    pub async fn run(
        self,
        client: Client,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ClientError> {
        let (input_tx, input_rx) = mpsc::channel(INPUT_QUEUE);
        let (output_tx, output_rx) = mpsc::channel(PRINT_QUEUE);
        let (flushed_tx, flushed_rx) = oneshot::channel();
        spawn("cmd-chat-input", move || read_input(input_tx))?;
        spawn("cmd-chat-output", move || {
            write_output(output_rx, flushed_tx)
        })?;
        self.saved.enter_raw();
        let _unwinding = PanicGuard(&self.saved);
        let mut screen = TermScreen {
            output: output_tx,
            out: String::from(BRACKETED_PASTE_ON),
            input: input_rx,
            winch: mode::resizes(),
            decoder: Decoder::default(),
            keys: VecDeque::new(),
            editor: LineEditor::default(),
            view: View::new(mode::width(), self.theme != Theme::Plain, rewraps()),
            prompt: None,
            submitted: None,
            pending: Vec::new(),
            names: command::Names::default(),
            me: self.me,
            saved: &self.saved,
            broken: None,
            suspending: false,
            stale: false,
        };
        let result = session::run(client, &mut screen, self.theme, shutdown).await;
        let broken = screen.finish().await;
        drop(screen);
        let _ = tokio::time::timeout(FLUSH_PATIENCE, flushed_rx).await;
        self.saved.restore();
        if let Some(why) = broken {
            eprintln!("cmd-chat: the terminal stopped working ({why}); left the room");
        }
        result
    }
}

/// Puts the terminal back as it was if the chat panics, so a bug leaves
/// the person with a working shell rather than a raw one.
struct PanicGuard<'a>(&'a mode::Saved);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.restore();
            let _ = std::io::stdout().write_all(format!("\r\n{BRACKETED_PASTE_OFF}").as_bytes());
            let _ = std::io::stdout().flush();
        }
    }
}

/// Whether the terminal re-wraps its lines when it narrows (see
/// [`view`]), as far as its environment tells: inside tmux, and terminals
/// known to. Anywhere else the view assumes it does not, which can leave a
/// stale piece of the input line after a resize but never erases a line.
fn rewraps() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let term = std::env::var("TERM").unwrap_or_default();
    let program = std::env::var("TERM_PROGRAM").unwrap_or_default();
    [
        "TMUX",
        "VTE_VERSION",
        "KITTY_WINDOW_ID",
        "WT_SESSION",
        "KONSOLE_VERSION",
        "ALACRITTY_WINDOW_ID",
    ]
    .iter()
    .any(|name| set(name))
        || matches!(
            term.as_str(),
            "xterm-kitty" | "alacritty" | "foot" | "xterm-ghostty" | "wezterm"
        )
        || matches!(
            program.as_str(),
            "iTerm.app" | "WezTerm" | "Apple_Terminal" | "ghostty" | "vscode"
        )
}

fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> Result<(), ClientError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(work)
        .map(drop)
        .map_err(|e| ClientError::ConnectionLost(format!("cannot start the {name} thread: {e}")))
}

/// The input thread: whatever standard input gives, as it comes. Ends at
/// end of input or an error (the terminal hung up); the session sees the
/// channel close. Left blocked in `read` when the chat ends first; the
/// process exits soon after.
fn read_input(keys: mpsc::Sender<Zeroizing<Vec<u8>>>) {
    let mut buf = Zeroizing::new([0u8; 4096]);
    loop {
        match mode::read_stdin(&mut buf[..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let chunk = Zeroizing::new(buf[..n].to_vec());
                buf[..n].zeroize();
                if keys.blocking_send(chunk).is_err() {
                    return;
                }
            }
        }
    }
}

/// What the session hands the output thread.
enum Output {
    /// Text to write, whole.
    Text(String),
    /// Answered once everything queued before it is written.
    Written(oneshot::Sender<()>),
}

/// The output thread: writes each update whole, in order. Stops at the
/// first failed write; the session then sees its queue closed. Standard
/// output is locked for one update at a time, never while waiting.
fn write_output(mut updates: mpsc::Receiver<Output>, flushed: oneshot::Sender<()>) {
    while let Some(update) = updates.blocking_recv() {
        match update {
            Output::Text(mut text) => {
                let mut stdout = std::io::stdout().lock();
                let written = stdout
                    .write_all(text.as_bytes())
                    .and_then(|()| stdout.flush());
                // What was drawn holds messages and typed text: plaintext.
                text.zeroize();
                if written.is_err() {
                    return;
                }
            }
            Output::Written(done) => {
                let _ = done.send(());
            }
        }
    }
    let _ = flushed.send(());
}

fn screen_gone() -> ClientError {
    ClientError::ConnectionLost("the terminal stopped accepting output".into())
}

/// The terminal as the session sees it; see the module docs.
struct TermScreen<'a> {
    /// To the output thread.
    output: mpsc::Sender<Output>,
    /// What is drawn but not yet handed to the output thread.
    out: String,
    /// From the input thread.
    input: mpsc::Receiver<Zeroizing<Vec<u8>>>,
    /// Window size changes.
    winch: mode::Resizes,
    /// Turns the input thread's bytes into keys.
    decoder: Decoder,
    /// Keys decoded and not yet acted on: those after an Enter wait until
    /// the session asks for the next line.
    keys: VecDeque<Key>,
    /// The input line being typed, and its history.
    editor: LineEditor,
    /// What the live area at the bottom shows, to redraw it after each change.
    view: View,
    /// What the session last asked for; `None` before it first asks.
    prompt: Option<Prompt>,
    /// The line last taken and the prompt it answered, until the session
    /// says whether it stays on screen ([`Screen::typed`]).
    submitted: Option<(Prompt, Zeroizing<String>)>,
    /// Our messages not yet confirmed, as the session renders them.
    pending: Vec<String>,
    /// The members and those knocking, for completion.
    names: command::Names,
    /// Our own name, never offered by completion.
    me: String,
    /// The terminal's mode before the chat, for Ctrl-Z.
    saved: &'a mode::Saved,
    /// Why the terminal failed under us, if it did.
    broken: Option<String>,
    /// Ctrl-Z was pressed; the process stops once the screen is written.
    suspending: bool,
    /// The input line changed since it was last drawn. Keys already read
    /// are all acted on before it is drawn again, so a long burst of typing
    /// (a paste the terminal does not bracket) costs one redraw per read,
    /// not one per key: drawing is linear in the line's length.
    stale: bool,
}

impl TermScreen<'_> {
    /// What the live area shows now, and the view to draw it with.
    fn live(&mut self) -> (&mut View, Live<'_>, &mut String) {
        let (line, cursor) = self.editor.chars();
        let prompt = self
            .prompt
            .as_ref()
            .map_or(("", ""), |p| (p.raw.as_str(), p.styled.as_str()));
        let live = Live {
            pending: &self.pending,
            prompt,
            line,
            cursor,
        };
        (&mut self.view, live, &mut self.out)
    }

    /// Draws the live area again. The width is asked for every time, not
    /// only on SIGWINCH: keys already read are acted on before the signal
    /// is, and each would draw at a width the terminal no longer has.
    fn redraw(&mut self) {
        self.stale = false;
        self.view.resize(mode::width());
        let (view, live, out) = self.live();
        view.redraw(live, out);
    }

    fn print_above(&mut self, text: &str) {
        self.stale = false;
        self.view.resize(mode::width());
        let (view, live, out) = self.live();
        view.print_above(text, live, out);
    }

    /// Hands what is drawn to the output thread. Cancel-safe: nothing
    /// leaves `out` until there is room for it.
    async fn flush(&mut self) -> Result<(), ClientError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let permit = self.output.reserve().await.map_err(|_| screen_gone())?;
        permit.send(Output::Text(std::mem::take(&mut self.out)));
        Ok(())
    }

    /// Hands over what is drawn and waits until the terminal has it all.
    async fn written(&mut self) -> Result<(), ClientError> {
        self.flush().await?;
        let (done, written) = oneshot::channel();
        let permit = self.output.reserve().await.map_err(|_| screen_gone())?;
        permit.send(Output::Written(done));
        written.await.map_err(|_| screen_gone())
    }

    /// Acts on one key.
    fn act(&mut self, key: Key) -> Acted {
        match self.editor.key(key) {
            Edit::Nothing => {}
            Edit::Changed => self.stale = true,
            Edit::Submit(line) => {
                let prompt = self.prompt.clone().unwrap_or_else(empty_prompt);
                if prompt.kind == PromptKind::Chat {
                    self.editor.remember(&line);
                }
                self.submitted = Some((prompt, Zeroizing::new(line.clone())));
                self.redraw();
                return Acted::Line(line);
            }
            Edit::Leave => return Acted::Leave,
            Edit::Complete => self.complete(),
            Edit::ClearScreen => {
                self.out.push_str("\x1b[H\x1b[2J");
                self.view.forget();
                self.redraw();
            }
            Edit::Suspend => return Acted::Suspend,
        }
        Acted::Drawn
    }

    /// Tab: paths after `/send` and `/save <n>`, else commands and names.
    fn complete(&mut self) {
        let (line, at) = self.editor.text();
        let path_start = command::path_start(&line).filter(|&s| at >= s);
        let (start, found) = match path_start {
            Some(start) => {
                let home = typed_path::home();
                (
                    start,
                    typed_path::complete(&line[start..at], home.as_deref()),
                )
            }
            None => command::complete(&line, at, &self.names, &self.me),
        };
        let Some(choices) = self.editor.complete(start, &found) else {
            self.redraw();
            return;
        };
        // File and member names are shown as typed text is: a name that
        // holds escapes or line breaks cannot draw on the screen.
        let shown: Vec<String> = choices
            .iter()
            .map(|c| match path_start {
                Some(_) => last_part(c),
                None => c.trim_end(),
            })
            .map(super::sanitize::sanitize)
            .collect();
        self.print_above(&format!("{}\n", shown.join("  ")));
    }

    /// Ctrl-Z, first half: the live area cleared and bracketed paste off,
    /// for [`Self::stop`] once the terminal has it all.
    fn suspend(&mut self) {
        let mut out = std::mem::take(&mut self.out);
        self.view.clear(&mut out);
        out.push_str(BRACKETED_PASTE_OFF);
        self.out = out;
        self.suspending = true;
        // Drawn again when the chat resumes, not before the shell's prompt.
        self.stale = false;
    }

    /// Ctrl-Z, second half: the terminal back as it was, the process
    /// stopped as the shell expects; when it is continued, the chat drawn
    /// again. Waits until everything queued is on the screen, so nothing of
    /// ours lands after the shell's prompt. Cancel-safe: if cancelled, the
    /// next call finishes the job.
    async fn stop(&mut self) -> Result<(), ClientError> {
        self.written().await?;
        self.suspending = false;
        self.saved.restore();
        mode::stop_self();
        self.saved.enter_raw();
        self.out.push_str(BRACKETED_PASTE_ON);
        self.redraw();
        Ok(())
    }

    /// The chat is over: the input line stays on screen as it was, the
    /// cursor below it, bracketed paste off. Why the terminal failed, if
    /// it did.
    async fn finish(&mut self) -> Option<String> {
        self.editor.move_to_end();
        self.redraw();
        let mut out = std::mem::take(&mut self.out);
        self.view.finish(&mut out);
        out.push_str(BRACKETED_PASTE_OFF);
        self.out = out;
        // Bounded: a terminal that stopped reading must not keep us here.
        let _ = tokio::time::timeout(FLUSH_PATIENCE, self.flush()).await;
        self.broken.take()
    }
}

/// What one key came to.
enum Acted {
    /// The line changed, or nothing did; drawn already.
    Drawn,
    /// Enter: the line to answer.
    Line(String),
    /// Ctrl-Z.
    Suspend,
    /// Ctrl-D, or Ctrl-C on an empty line.
    Leave,
}

/// The last part of a completed path (`notes.txt` of `docs/notes.txt`,
/// `old/` of `docs/old/`), for the list of choices.
fn last_part(path: &str) -> &str {
    let start = path
        .trim_end_matches('/')
        .rfind('/')
        .map_or(0, |slash| slash + 1);
    &path[start..]
}

fn empty_prompt() -> Prompt {
    Prompt {
        kind: PromptKind::Chat,
        raw: String::new(),
        styled: String::new(),
    }
}

impl Screen for TermScreen<'_> {
    async fn show(&mut self, lines: Vec<String>, bell: bool) -> Result<(), ClientError> {
        // Nothing to show (our own message's receipt): no empty line for it.
        if lines.is_empty() && !bell {
            return self.flush().await;
        }
        // Long lines go on under their text, not under the time stamp.
        let width = mode::width();
        let lines = lines.iter().flat_map(|l| wrap::wrap(l, width)).collect();
        let text = session::screen_text(lines, bell);
        self.print_above(&text);
        self.flush().await
    }

    async fn next_line(&mut self) -> Option<String> {
        loop {
            while let Some(key) = self.keys.pop_front() {
                match self.act(key) {
                    Acted::Drawn => {}
                    Acted::Line(line) => return Some(line),
                    Acted::Leave => return None,
                    Acted::Suspend => self.suspend(),
                }
            }
            if self.stale {
                self.redraw();
            }
            if self.suspending {
                if let Err(e) = self.stop().await {
                    self.broken = Some(e.to_string());
                    return None;
                }
                continue;
            }
            if let Err(e) = self.flush().await {
                self.broken = Some(e.to_string());
                return None;
            }
            let escape_wait = self.decoder.waiting();
            let in_paste = self.decoder.in_paste();
            tokio::select! {
                bytes = self.input.recv() => {
                    let bytes = bytes?;
                    self.keys.extend(self.decoder.feed(&bytes));
                }
                () = self.winch.recv() => self.redraw(),
                () = tokio::time::sleep(ESCAPE_WAIT), if escape_wait => {
                    self.keys.extend(self.decoder.flush());
                }
                () = tokio::time::sleep(PASTE_SILENCE), if in_paste => {
                    self.keys.extend(self.decoder.end_paste());
                }
            }
        }
    }

    async fn ready(&mut self, prompt: Prompt) -> Result<(), ClientError> {
        self.prompt = Some(prompt);
        self.redraw();
        self.flush().await
    }

    async fn typed(&mut self) -> Result<(), ClientError> {
        let Some((prompt, line)) = self.submitted.take() else {
            return Ok(());
        };
        let mut lines = super::sanitize::sanitize_lines(&line).into_iter();
        let mut text = format!("{}{}\n", prompt.styled, lines.next().unwrap_or_default());
        for more in lines {
            text.push_str(&format!("    {more}\n"));
        }
        self.print_above(&text);
        self.flush().await
    }

    fn set_pending(&mut self, lines: Vec<String>) {
        self.pending = lines;
        self.redraw();
    }

    fn give_back(&mut self, line: String) {
        self.submitted = None;
        self.editor.restore(line);
        self.redraw();
    }

    fn shows_pending(&self) -> bool {
        true
    }

    fn set_names(&mut self, names: command::Names) {
        self.names = names;
    }

    fn key_help(&self) -> &'static [&'static str] {
        &[
            "Tab completes commands, names, and file paths after /send and /save; Up/Down recall what you typed (kept in memory only)",
            "a multi-line paste is sent as one message when you press Enter",
            "Ctrl-C clears the line being typed (Ctrl-Y brings it back); on an empty line Ctrl-C or Ctrl-D leaves the room",
        ]
    }
}

/// The terminal's modes, size and signals: the only part that is not
/// portable.
#[cfg(unix)]
mod mode {
    use nix::sys::termios::{
        self, InputFlags, LocalFlags, SetArg, SpecialCharacterIndices, Termios,
    };
    use tokio::signal::unix::{Signal, SignalKind, signal};

    use super::Unsupported;

    /// The mode standard input had before the chat.
    #[derive(Debug)]
    pub struct Saved(Termios);

    impl Saved {
        pub fn now() -> Result<Self, Unsupported> {
            termios::tcgetattr(std::io::stdin())
                .map(Saved)
                .map_err(|_| Unsupported("cannot read the terminal's mode"))
        }

        /// Keys one by one, unechoed, none of them turned into a signal or
        /// translated; output as before.
        pub fn enter_raw(&self) {
            let mut raw = self.0.clone();
            raw.input_flags &= !(InputFlags::ICRNL
                | InputFlags::INLCR
                | InputFlags::IGNCR
                | InputFlags::IXON
                | InputFlags::ISTRIP
                | InputFlags::BRKINT);
            raw.local_flags &=
                !(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::IEXTEN | LocalFlags::ISIG);
            raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
            raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &raw);
        }

        /// Puts the saved mode back. At once, not after the output drains:
        /// only input flags differ, and a terminal that stopped reading
        /// would never drain.
        pub fn restore(&self) {
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.0);
        }
    }

    /// Reads standard input as it is, unbuffered, retrying on a signal.
    pub fn read_stdin(buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
            let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n.unsigned_abs());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Columns of the terminal on standard output.
    pub fn width() -> usize {
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer.
        let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
        if ok && size.ws_col > 0 {
            usize::from(size.ws_col)
        } else {
            super::view::DEFAULT_WIDTH
        }
    }

    /// Stops the process as Ctrl-Z would have; returns once it is continued.
    pub fn stop_self() {
        // SAFETY: raising a signal in our own process.
        unsafe {
            libc::raise(libc::SIGTSTP);
        }
    }

    /// Window size changes, as SIGWINCH reports them.
    pub struct Resizes(Option<Signal>);

    pub fn resizes() -> Resizes {
        Resizes(signal(SignalKind::window_change()).ok())
    }

    impl Resizes {
        /// The next change; never, if they cannot be watched.
        pub async fn recv(&mut self) {
            match &mut self.0 {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
    }
}

/// Elsewhere the chat runs on the plain line interface.
#[cfg(not(unix))]
mod mode {
    use super::Unsupported;

    #[derive(Debug)]
    pub struct Saved;

    impl Saved {
        pub fn now() -> Result<Self, Unsupported> {
            Err(Unsupported("line editing needs a Unix terminal"))
        }
        pub fn enter_raw(&self) {}
        pub fn restore(&self) {}
    }

    pub fn read_stdin(_: &mut [u8]) -> std::io::Result<usize> {
        Ok(0)
    }

    pub fn width() -> usize {
        super::view::DEFAULT_WIDTH
    }

    pub fn stop_self() {}

    pub struct Resizes;

    pub fn resizes() -> Resizes {
        Resizes
    }

    impl Resizes {
        pub async fn recv(&mut self) {
            std::future::pending().await
        }
    }
}
