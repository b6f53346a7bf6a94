//! The interactive terminal UI: rustyline line editing, with the room's
//! events printed above the prompt so that what you are typing is never lost.
//!
//! rustyline's `readline` blocks, so it runs on a thread of its own. Three
//! parties talk over channels:
//!
//! - the **session** (a tokio task, `session.rs`) owns the [`Client`],
//!   renders events and handles each line;
//! - the **input thread** owns the editor; it waits for a prompt, reads one
//!   line, and sends it to the session;
//! - the **printer thread** owns rustyline's external printer, which redraws
//!   the prompt and the half-typed line below each thing it prints. It also
//!   forwards prompts to the input thread, *after* everything queued before
//!   them, so the answer to a command is on screen before the next prompt.
//!
//! The session hands out one prompt per line, so the input thread never runs
//! ahead of it: a `/clear` confirmation gets its own prompt, and after
//! `/quit` no further line is read.
//!
//! Input history (Up/Down) lives in rustyline's in-memory history only: the
//! crate is built without its file-history feature, so nothing typed can end
//! up on disk.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::Duration;

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::config::{ColorMode, CompletionType, Config};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::MemHistory;
use rustyline::validate::Validator;
use rustyline::{
    Cmd, ConditionalEventHandler, Editor, Event, EventContext, EventHandler, Helper, KeyEvent,
    Movement, RepeatCount,
};
use tokio::sync::{mpsc, oneshot};

use super::command;
use super::render::{Prompt, PromptKind, Theme};
use super::session::{self, Screen};
use super::{Client, ClientError};

/// Lines of input history kept in memory for Up/Down.
const INPUT_HISTORY_LINES: usize = 500;

/// Rendered events waiting for the printer thread. Bounded so that a stalled
/// terminal pushes back on the session (and then on the server, which drops
/// a member that stops reading) instead of growing memory.
const PRINT_QUEUE: usize = 256;

/// How long to wait, on leaving, for queued output to reach the screen. A
/// safety net for a terminal that stopped reading, not a delay.
const FLUSH_PATIENCE: Duration = Duration::from_secs(2);

/// Turns bracketed paste off, as rustyline does when it leaves raw mode.
const BRACKETED_PASTE_OFF: &str = "\x1b[?2004l";

/// Turns bracketed paste on, as rustyline does when it enters raw mode.
#[cfg(unix)]
const BRACKETED_PASTE_ON: &str = "\x1b[?2004h";

/// Why the terminal UI cannot run here; the caller falls back to the line UI.
#[derive(Debug, thiserror::Error)]
#[error("the terminal does not support line editing: {0}")]
pub struct Unsupported(ReadlineError);

/// Options of the terminal UI.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Colours, attributes only, or nothing.
    pub theme: Theme,
}

/// Completion for the input line: commands, the names in the room, and
/// file paths after `/send` and `/save <n>`.
struct ChatHelper {
    /// Completes paths, escaping what the shell would (`my\ notes.txt`),
    /// which `/send` and `/save` read back.
    files: FilenameCompleter,
    /// Our own name, never offered.
    me: String,
    /// The members, kept current by the session.
    names: Arc<Mutex<Vec<String>>>,
}

impl Completer for ChatHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        if command::path_start(line).is_some_and(|start| pos >= start) {
            return self.files.complete_path(line, pos);
        }
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let (start, found) = command::complete(line, pos, &names, &self.me);
        let pairs = found.into_iter().map(|s| Pair {
            display: s.clone(),
            replacement: s,
        });
        Ok((start, pairs.collect()))
    }
}

impl Hinter for ChatHelper {
    type Hint = String;
}
impl Highlighter for ChatHelper {}
impl Validator for ChatHelper {}
impl Helper for ChatHelper {}

type ChatEditor = Editor<ChatHelper, MemHistory>;

/// Ctrl-C as in a shell: on a line with something typed it clears the line
/// (Ctrl-Y brings it back); on an empty line it does its default, which
/// leaves the room.
struct CtrlC;

impl ConditionalEventHandler for CtrlC {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        (!ctx.line().is_empty()).then_some(Cmd::Kill(Movement::WholeBuffer))
    }
}

/// What the input thread reports.
enum Input {
    Line(String),
    /// Ctrl-C or Ctrl-D on an empty line.
    Leave,
    /// The terminal failed; the reason is shown once the screen is restored.
    Broken(String),
}

/// What the printer thread is asked to do, in order.
enum Output {
    Text(String),
    /// Hand this prompt to the input thread.
    Prompt(Prompt),
}

/// The terminal as the session sees it.
struct TermScreen {
    /// To the printer thread: text, and prompts in order after it.
    output: mpsc::Sender<Output>,
    /// From the input thread: one line per prompt.
    input: mpsc::Receiver<Input>,
    /// Shared with the completer on the input thread.
    names: Arc<Mutex<Vec<String>>>,
    /// Set if the terminal failed under us.
    broken: Option<String>,
}

fn screen_gone() -> ClientError {
    ClientError::ConnectionLost("the terminal stopped accepting output".into())
}

impl Screen for TermScreen {
    async fn show(&mut self, lines: Vec<String>, bell: bool) -> Result<(), ClientError> {
        // Nothing to show (our own message's receipt): rustyline would print
        // an empty line for it.
        if lines.is_empty() && !bell {
            return Ok(());
        }
        // rustyline writes this straight to the terminal between two lines
        // of input and adds no newline of its own: every line ends in one.
        let text = session::screen_text(lines, bell);
        self.output
            .send(Output::Text(text))
            .await
            .map_err(|_| screen_gone())
    }

    async fn next_line(&mut self) -> Option<String> {
        match self.input.recv().await? {
            Input::Line(line) => Some(line),
            Input::Leave => None,
            Input::Broken(why) => {
                self.broken = Some(why);
                None
            }
        }
    }

    async fn ready(&mut self, prompt: Prompt) -> Result<(), ClientError> {
        self.output
            .send(Output::Prompt(prompt))
            .await
            .map_err(|_| screen_gone())
    }

    fn set_names(&mut self, names: Vec<String>) {
        *self.names.lock().unwrap_or_else(|e| e.into_inner()) = names;
    }

    fn key_help(&self) -> &'static [&'static str] {
        &[
            "Tab completes commands, names, and file paths after /send and /save; Up/Down recall what you typed (kept in memory only)",
            "a multi-line paste is sent as one message when you press Enter",
            "Ctrl-C clears the line being typed; on an empty line Ctrl-C or Ctrl-D leaves the room",
        ]
    }
}

/// A terminal ready to run the chat on.
pub struct Terminal {
    /// Moves to the input thread.
    editor: ChatEditor,
    /// Prints above the prompt while the editor reads; moves to the printer
    /// thread.
    printer: Box<dyn rustyline::ExternalPrinter + Send>,
    /// The members, for the editor's completer.
    names: Arc<Mutex<Vec<String>>>,
    theme: Theme,
    /// Puts the terminal back however the session ends.
    restore: RestoreTerminal,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("theme", &self.theme)
            .finish_non_exhaustive()
    }
}

impl Terminal {
    /// Sets up line editing on standard input and output for `me`. Fails if
    /// they are not a terminal rustyline can drive.
    pub fn open(me: &str, options: Options) -> Result<Self, Unsupported> {
        let config = Config::builder()
            // Lines are added by hand: chat lines only, not `/clear` answers.
            .auto_add_history(false)
            .max_history_size(INPUT_HISTORY_LINES)
            .map_err(Unsupported)?
            .history_ignore_dups(true)
            .map_err(Unsupported)?
            // As in shells: a line typed with a leading space is not remembered.
            .history_ignore_space(true)
            .completion_type(CompletionType::List)
            .bracketed_paste(true)
            .color_mode(match options.theme {
                Theme::Color => ColorMode::Enabled,
                Theme::Mono | Theme::Plain => ColorMode::Disabled,
            })
            .build();
        let history = MemHistory::with_config(&config);
        let mut editor = ChatEditor::with_history(config, history).map_err(Unsupported)?;
        let printer = editor.create_external_printer().map_err(Unsupported)?;
        editor.bind_sequence(
            KeyEvent::ctrl('C'),
            EventHandler::Conditional(Box::new(CtrlC)),
        );
        let names = Arc::new(Mutex::new(Vec::new()));
        editor.set_helper(Some(ChatHelper {
            files: FilenameCompleter::new(),
            me: me.to_owned(),
            names: names.clone(),
        }));
        Ok(Self {
            editor,
            printer: Box::new(printer),
            names,
            theme: options.theme,
            restore: RestoreTerminal::save(),
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
        let Terminal {
            editor,
            mut printer,
            names,
            theme,
            restore,
        } = self;
        // One line in flight at a time; see the module docs.
        let (line_tx, line_rx) = mpsc::channel(1);
        let (prompt_tx, prompt_rx) = std_mpsc::sync_channel::<Prompt>(1);
        let (output_tx, mut output_rx) = mpsc::channel::<Output>(PRINT_QUEUE);
        let (flushed_tx, flushed_rx) = oneshot::channel::<()>();
        let reading = Arc::new(AtomicBool::new(false));

        let input_reading = reading.clone();
        std::thread::Builder::new()
            .name("cmd-chat-input".into())
            .spawn(move || read_lines(editor, prompt_rx, line_tx, input_reading))
            .map_err(|e| {
                ClientError::ConnectionLost(format!("cannot start the input thread: {e}"))
            })?;
        std::thread::Builder::new()
            .name("cmd-chat-printer".into())
            .spawn(move || {
                while let Some(output) = output_rx.blocking_recv() {
                    let delivered = match output {
                        Output::Text(text) => printer.print(text).is_ok(),
                        Output::Prompt(prompt) => prompt_tx.send(prompt).is_ok(),
                    };
                    if !delivered {
                        break;
                    }
                }
                let _ = flushed_tx.send(());
            })
            .map_err(|e| {
                ClientError::ConnectionLost(format!("cannot start the printer thread: {e}"))
            })?;

        let mut screen = TermScreen {
            output: output_tx,
            input: line_rx,
            names,
            broken: None,
        };
        let result = session::run(client, &mut screen, theme, shutdown).await;
        let broken = screen.broken.take();
        // Closing the queue lets the printer finish what is queued and stop;
        // its dropped prompt sender then stops the input thread if it is
        // waiting for a prompt.
        drop(screen);
        let _ = tokio::time::timeout(FLUSH_PATIENCE, flushed_rx).await;
        // If the input thread is still inside readline (the room was lost,
        // or a signal came, while someone was typing), nothing will make it
        // return: leave its half-typed line on screen, put the terminal back
        // ourselves, and start a fresh line for whatever is printed next.
        let mid_line = reading.load(Ordering::SeqCst);
        restore.restore(mid_line);
        if let Some(why) = broken {
            eprintln!("cmd-chat: the terminal stopped working ({why}); left the room");
        }
        result
    }
}

/// The input thread: one line per prompt, until the session stops asking.
fn read_lines(
    mut editor: ChatEditor,
    prompts: std_mpsc::Receiver<Prompt>,
    lines: mpsc::Sender<Input>,
    reading: Arc<AtomicBool>,
) {
    while let Ok(prompt) = prompts.recv() {
        reading.store(true, Ordering::SeqCst);
        let result = editor.readline(&(prompt.raw.as_str(), prompt.styled.as_str()));
        reading.store(false, Ordering::SeqCst);
        let input = match result {
            Ok(line) => {
                if prompt.kind == PromptKind::Chat && !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                Input::Line(line)
            }
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => Input::Leave,
            Err(e) => Input::Broken(e.to_string()),
        };
        let last = !matches!(input, Input::Line(_));
        if !last {
            // Until the next prompt, keys typed ahead wait unseen for it.
            hold_typeahead();
        }
        if lines.blocking_send(input).is_err() || last {
            break;
        }
    }
}

/// Between two prompts (while the session sends a line and answers it),
/// puts the terminal in a mode where keys typed ahead wait, byte for byte,
/// for the next `readline`: not echoed, not line-edited or translated by the
/// terminal driver (Ctrl-C included, which the next prompt then handles as
/// it always does), with bracketed paste left on. rustyline itself leaves
/// the terminal in its normal mode after every line, where typed-ahead keys
/// would be echoed where they do not belong and line-edited by the driver.
/// Bytes already read past the end of a line wait in rustyline's buffer
/// (the `buffer-redux` feature keeps it from one `readline` to the next).
/// [`RestoreTerminal`] puts the normal mode back at the end.
fn hold_typeahead() {
    #[cfg(unix)]
    {
        use nix::sys::termios::{self, InputFlags, LocalFlags, SetArg};
        use std::io::Write as _;
        let stdin = std::io::stdin();
        let Ok(mut mode) = termios::tcgetattr(&stdin) else {
            return;
        };
        mode.input_flags &= !(InputFlags::ICRNL | InputFlags::IXON);
        mode.local_flags &=
            !(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::IEXTEN | LocalFlags::ISIG);
        let _ = termios::tcsetattr(&stdin, SetArg::TCSADRAIN, &mode);
        let mut out = std::io::stdout();
        let _ = out.write_all(BRACKETED_PASTE_ON.as_bytes());
        let _ = out.flush();
    }
}

/// The terminal's mode as it was before line editing began, to put back
/// should readline be abandoned mid-line (rustyline has no way to cancel a
/// read from another thread).
struct RestoreTerminal {
    #[cfg(unix)]
    saved: Option<nix::sys::termios::Termios>,
}

impl RestoreTerminal {
    fn save() -> Self {
        Self {
            #[cfg(unix)]
            saved: nix::sys::termios::tcgetattr(std::io::stdin()).ok(),
        }
    }

    /// Puts the saved mode back and turns bracketed paste off. Harmless if
    /// rustyline already did. `mid_line` also ends the abandoned input line.
    fn restore(self, mid_line: bool) {
        use std::io::Write as _;
        #[cfg(unix)]
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSADRAIN,
                saved,
            );
        }
        let mut out = std::io::stdout();
        let _ = out.write_all(BRACKETED_PASTE_OFF.as_bytes());
        if mid_line {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }
}
