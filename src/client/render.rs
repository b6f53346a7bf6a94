//! What a person sees: pure functions from room events to styled lines.
//!
//! Kept apart from the terminal plumbing so that it can be unit-tested and
//! shared by the interactive terminal UI and the plain line fallback.
//! Everything a peer supplied (names, message text, server error text) goes
//! through [`sanitize`] *before* it is styled, so the only escape sequences
//! that reach the terminal are the few SGR codes written here, and the bell is
//! only ever rung by us (see [`Shown::bell`]), never by a peer's `\x07`.

use std::ops::Range;

use chrono::Local;

use super::event::{parse_stamp, private_not_sent};

use super::files::{PROGRESS_STEPS, ReceivedFile, mib, percent};
use super::sanitize::{sanitize, sanitize_lines};
use super::{ChatMessage, Event, KnockOutcome, PrivateMessage, Transport, Waiting};

/// How much styling the screen gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    /// Colours and attributes: the default on a terminal.
    Color,
    /// Attributes only (bold, dim, reverse video), no colour: `NO_COLOR` or
    /// `--no-color`. <https://no-color.org> asks programs not to *add colour*;
    /// bold and reverse still set your own name and mentions apart.
    Mono,
    /// No escape sequences at all: for output that is not a capable terminal.
    Plain,
}

impl Theme {
    /// The theme for a terminal: [`Theme::Mono`] if `--no-color` was given or
    /// `NO_COLOR` is set to anything non-empty, else [`Theme::Color`].
    pub fn for_terminal(no_color_flag: bool) -> Self {
        let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        if no_color_flag || no_color_env {
            Theme::Mono
        } else {
            Theme::Color
        }
    }
}

/// Foreground colours (SGR codes) for other people's names. Blue (34) is left
/// out: it is hard to read on the dark backgrounds most terminals use.
const NAME_COLOURS: [u8; 11] = [31, 32, 33, 35, 36, 91, 92, 93, 94, 95, 96];

/// Indentation of the lines of a multi-line message, so a paste reads as one
/// block under its sender rather than as a burst of separate messages.
pub const BLOCK_INDENT: &str = "    ";

/// Marks a line about the room rather than from a person.
const SYSTEM_MARK: &str = "--";
/// Marks an error or a warning.
const ERROR_MARK: &str = "!!";
/// Marks a private message, so it is never mistaken for one the room saw.
const PRIVATE_MARK: &str = "[private]";

/// `[#####-----]  50%`: how far a transfer is, in [`PROGRESS_STEPS`] cells.
pub fn progress_bar(done: u64, size: u64) -> String {
    let percent = percent(done, size);
    let filled = (percent * PROGRESS_STEPS / 100) as usize;
    format!(
        "[{}{}] {percent:>3}%",
        "#".repeat(filled),
        "-".repeat(PROGRESS_STEPS as usize - filled)
    )
}

/// `2.5/5.0 MiB`: done of size, in the unit of the size.
fn sizes(done: u64, size: u64) -> String {
    let total = mib(size);
    match total.split_once(' ') {
        Some((_, "MiB")) => format!("{:.1}/{total}", done as f64 / (1024.0 * 1024.0)),
        Some((_, "KiB")) => format!("{:.0}/{total}", done as f64 / 1024.0),
        _ => format!("{done}/{total}"),
    }
}

/// What one piece of text is, which decides how it is styled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Someone else's name, in the colour picked by [`name_colour`].
    Name(u8),
    /// Our own name.
    Me,
    /// The time stamp in front of a line.
    Time,
    /// Joins, leaves, clears, answers to commands.
    System,
    /// Non-fatal errors.
    Error,
    /// Our name where someone else wrote it.
    Mention,
    /// Something the person must not miss (a legacy session, a confirmation).
    Warning,
    /// The mark in front of a private message.
    Private,
}

impl Style {
    /// The SGR parameters for this style under `theme`, if any.
    fn sgr(self, theme: Theme) -> Option<String> {
        let code = match (theme, self) {
            (Theme::Plain, _) => return None,
            (Theme::Color, Style::Name(colour)) => return Some(colour.to_string()),
            (Theme::Mono, Style::Name(_)) => return None,
            (_, Style::Me) => "1",
            (_, Style::Time | Style::System) => "2",
            (Theme::Color, Style::Error) => "2;31",
            (Theme::Mono, Style::Error) => "2",
            (_, Style::Mention) => "1;7",
            (Theme::Color, Style::Warning) => "1;33",
            (Theme::Mono, Style::Warning) => "1",
            (Theme::Color, Style::Private) => "1;35",
            // Underlined rather than bold, so it differs from a name.
            (Theme::Mono, Style::Private) => "4",
        };
        Some(code.to_owned())
    }
}

/// `text` wrapped in the escape codes for `style`. `text` must already be
/// sanitized.
fn paint(theme: Theme, style: Style, text: &str) -> String {
    match style.sgr(theme) {
        Some(code) => format!("\x1b[{code}m{text}\x1b[0m"),
        None => text.to_owned(),
    }
}

/// 32-bit FNV-1a: a hash that is the same on every machine and every build,
/// so a name has the same colour on every screen in the room (std's hasher
/// makes no such promise across Rust versions).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The SGR colour for someone's name: stable for that name.
pub fn name_colour(name: &str) -> u8 {
    NAME_COLOURS[fnv1a(name.as_bytes()) as usize % NAME_COLOURS.len()]
}

/// `HH:MM` in local time for an RFC 3339 timestamp; `--:--` if unreadable.
pub fn local_hhmm(timestamp: &str) -> String {
    parse_stamp(timestamp)
        .map(|t| t.with_timezone(&Local).format("%H:%M").to_string())
        .unwrap_or_else(|| "--:--".into())
}

/// `YYYY-MM-DD HH:MM` in local time for a server's timestamp.
fn local_date_hhmm(timestamp: &str) -> String {
    parse_stamp(timestamp)
        .map(|t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "at an unreadable time".into())
}

/// The local time now as `HH:MM`, for lines the server does not time-stamp.
pub fn now_hhmm() -> String {
    Local::now().format("%H:%M").to_string()
}

/// Counts as part of a word, for deciding whether a name stands alone.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Byte ranges in `text` where `name` appears as a word of its own, ignoring
/// case: `ann`, `@ann`, `Ann,` match for `ann`; `joanna` and `anne` do not.
pub fn mention_ranges(text: &str, name: &str) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    if name.is_empty() {
        return found;
    }
    let mut prev: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if prev.is_some_and(is_word_char) {
            prev = Some(c);
            continue;
        }
        // Does `name` start here, case-insensitively?
        let mut end = start;
        let mut candidate = text[start..].chars();
        let matched = name.chars().all(|n| match candidate.next() {
            Some(t) if t.to_lowercase().eq(n.to_lowercase()) => {
                end += t.len_utf8();
                true
            }
            _ => false,
        });
        if matched && !text[end..].chars().next().is_some_and(is_word_char) {
            found.push(start..end);
            // Skip to the end of the match.
            while chars.peek().is_some_and(|&(i, _)| i < end) {
                prev = chars.next().map(|(_, c)| c);
            }
            continue;
        }
        prev = Some(c);
    }
    found
}

/// Lines to show, and whether to ring the bell for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// Ready for the terminal: sanitized, styled, no trailing newlines.
    pub lines: Vec<String>,
    /// Someone mentioned us just now. Front ends ring the bell by writing
    /// `\x07` themselves; a peer's own `\x07` never gets through [`sanitize`].
    pub bell: bool,
}

/// Which question the input line is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    /// A message or a command.
    Chat,
    /// Whether `/clear` should really wipe the room.
    ConfirmClear,
}

/// The prompt in front of the input line, in both forms a line editor wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// What the answer means; only chat lines go into input history.
    pub kind: PromptKind,
    /// Without escape codes: what the line editor measures, and shows when
    /// colour is off.
    pub raw: String,
    /// With escape codes; the same width on screen as `raw`.
    pub styled: String,
}

/// Renders events for one member of the room.
#[derive(Debug, Clone)]
pub struct Renderer {
    /// Whose screen this is: our name is bold, and a mention of it is
    /// highlighted and rings the bell.
    me: String,
    /// How much styling to add.
    theme: Theme,
}

impl Renderer {
    pub fn new(me: &str, theme: Theme) -> Self {
        Self {
            me: me.to_owned(),
            theme,
        }
    }

    fn paint(&self, style: Style, text: &str) -> String {
        paint(self.theme, style, text)
    }

    /// A name, sanitized and in its colour.
    fn name(&self, name: &str) -> String {
        let style = if name == self.me {
            Style::Me
        } else {
            Style::Name(name_colour(name))
        };
        self.paint(style, &sanitize(name))
    }

    /// One sanitized line of someone else's text, with mentions of us
    /// highlighted. Returns whether there was one.
    fn highlight(&self, line: &str, from_me: bool) -> (String, bool) {
        let ranges = if from_me {
            Vec::new()
        } else {
            mention_ranges(line, &self.me)
        };
        if ranges.is_empty() {
            return (line.to_owned(), false);
        }
        let mut out = String::with_capacity(line.len() + 16 * ranges.len());
        let mut at = 0;
        for range in ranges {
            out.push_str(&line[at..range.start]);
            out.push_str(&self.paint(Style::Mention, &line[range.clone()]));
            at = range.end;
        }
        out.push_str(&line[at..]);
        (out, true)
    }

    /// The lines for an event. `now` (`HH:MM`) stamps the events the server
    /// sends without a time: joins, leaves, clears, errors.
    pub fn event(&self, event: &Event, now: &str) -> Shown {
        let line = |text: String| Shown {
            lines: vec![text],
            bell: false,
        };
        match event {
            Event::Message(m) => self.message(m),
            Event::Private(m) => self.private(m, now),
            Event::Verify { user, code } => Shown {
                lines: vec![
                    self.system_at(
                        now,
                        &format!(
                            "safety code with {}: {}",
                            self.name(user),
                            self.paint(Style::Me, &sanitize(code))
                        ),
                    ),
                    self.system_text(&format!(
                        "compare it with {} by voice or video: if the codes differ, someone in the \
                         middle (such as the host) can read your private messages",
                        self.name(user)
                    )),
                ],
                bell: false,
            },
            Event::Joined { user } => {
                line(self.system_at(now, &format!("{} joined", self.name(user))))
            }
            Event::Left { user } => line(self.system_at(now, &format!("{} left", self.name(user)))),
            Event::Cleared => line(self.system_at(now, "the room's history was cleared")),
            Event::Error { message } => line(format!(
                "{} {}",
                self.paint(Style::Time, now),
                self.paint(Style::Error, &format!("{ERROR_MARK} {}", sanitize(message)))
            )),
            Event::PrivateNotSent { to, count, reason } => line(format!(
                "{} {}",
                self.paint(Style::Time, now),
                self.paint(
                    Style::Error,
                    &format!(
                        "{ERROR_MARK} {}",
                        sanitize(&private_not_sent(to, *count, reason))
                    )
                )
            )),
            // The echo of our own message already shows it arrived.
            Event::Sent { .. } => Shown {
                lines: Vec::new(),
                bell: false,
            },
            Event::SendFailed { reference, reason } => line(format!(
                "{} {}",
                self.paint(Style::Time, now),
                self.paint(
                    Style::Error,
                    &format!(
                        "{ERROR_MARK} message {reference} not delivered: {}; /resend {reference} tries again",
                        sanitize(reason)
                    )
                )
            )),
            Event::Reconnecting { attempt, reason } => line(self.system_at(
                now,
                &format!("connection lost ({}); reconnecting, attempt {attempt}", sanitize(reason)),
            )),
            Event::RoomRestarted => line(self.system_at(
                now,
                "the room was restarted while you were away: earlier messages are gone, and \
                 private conversations start afresh",
            )),
            Event::Reconnected { missed, complete } => line(self.system_at(
                now,
                &if *complete {
                    format!("back in the room; {missed} missed messages follow")
                } else {
                    format!(
                        "back in the room; {missed} missed messages follow, but older ones were already gone from the history"
                    )
                },
            )),
            Event::Notice { message } => line(format!(
                "{} {}",
                self.paint(Style::Time, now),
                self.paint(
                    Style::Error,
                    &format!("{ERROR_MARK} server: {}", sanitize(message))
                )
            )),
            Event::Locked { by } => line(self.system_at(
                now,
                &format!(
                    "{} locked the room: newcomers now knock and wait for a member to /admit them",
                    self.name(by)
                ),
            )),
            Event::Unlocked { by } => line(self.system_at(
                now,
                &format!("{} unlocked the room: anyone with the password may join", self.name(by)),
            )),
            Event::Knock { user } => self.knock(user, now),
            Event::KnockResolved { user, outcome, by } => {
                line(self.system_at(now, &self.knock_resolved(user, *outcome, by.as_deref())))
            }
            Event::FileSending { .. }
            | Event::FileIncoming { .. }
            | Event::FileProgress { .. }
            | Event::FileSent { .. }
            | Event::FileReceived { .. }
            | Event::FileFailed { .. } => line(self.file_event(event, now)),
        }
    }

    /// A newcomer knocking at the locked room: worth a bell.
    fn knock(&self, user: &str, now: &str) -> Shown {
        let who = sanitize(user);
        Shown {
            lines: vec![format!(
                "{} {}",
                self.paint(Style::Time, now),
                self.paint(
                    Style::Warning,
                    &format!(
                        "{ERROR_MARK} {who} is knocking: /admit {who} to let them in, /deny {who} to turn them away"
                    )
                )
            )],
            bell: true,
        }
    }

    /// How a knock ended, and who ended it.
    fn knock_resolved(&self, user: &str, outcome: KnockOutcome, by: Option<&str>) -> String {
        let who = self.name(user);
        match (outcome, by) {
            (KnockOutcome::Admitted, Some(by)) => format!("{} let {who} in", self.name(by)),
            (KnockOutcome::Admitted, None) => format!("{who} was let in"),
            (KnockOutcome::Denied, Some(by)) => format!("{} turned {who} away", self.name(by)),
            (KnockOutcome::Denied, None) => format!("{who} was turned away"),
            (KnockOutcome::Expired, _) => format!("{who} stopped waiting: nobody answered in time"),
            (KnockOutcome::Withdrawn, _) => format!("{who} stopped knocking"),
        }
    }

    /// The line for a file event; nothing for any other.
    fn file_event(&self, event: &Event, now: &str) -> String {
        match event {
            Event::FileSending { name, size } => self.system_at(
                now,
                &format!("sending {} ({}) to the room", sanitize(name), mib(*size)),
            ),
            Event::FileIncoming { from, name, size } => self.system_at(
                now,
                &format!(
                    "{} is sending {} ({})",
                    self.name(from),
                    sanitize(name),
                    mib(*size)
                ),
            ),
            Event::FileProgress {
                sending,
                from,
                name,
                done,
                size,
            } => {
                let whose = if *sending {
                    "to the room".to_owned()
                } else {
                    format!("from {}", self.name(from))
                };
                self.system_at(
                    now,
                    &format!(
                        "{} {} ({}) {whose}",
                        progress_bar(*done, *size),
                        sanitize(name),
                        sizes(*done, *size)
                    ),
                )
            }
            Event::FileSent { name, size } => self.system_at(
                now,
                &format!(
                    "{} {} ({}) sent",
                    progress_bar(*size, *size),
                    sanitize(name),
                    mib(*size)
                ),
            ),
            Event::FileReceived {
                n,
                from,
                name,
                size,
            } => self.system_at(
                now,
                &format!(
                    "{} received #{n} {} ({}) from {}: it is in memory only; /save {n} [path] writes it",
                    progress_bar(*size, *size),
                    sanitize(name),
                    mib(*size),
                    self.name(from)
                ),
            ),
            Event::FileFailed {
                sending,
                from,
                name,
                reason,
            } => {
                let what = if *sending {
                    format!("sending {} failed", sanitize(name))
                } else {
                    format!("{} from {} failed", sanitize(name), sanitize(from))
                };
                format!(
                    "{} {}",
                    self.paint(Style::Time, now),
                    self.paint(
                        Style::Error,
                        &format!("{ERROR_MARK} {what}: {}", sanitize(reason))
                    )
                )
            }
            _ => String::new(),
        }
    }

    /// The line shown while a login waits at a locked room.
    pub fn waiting(&self, waiting: &Waiting) -> String {
        self.system_text(&format!(
            "the room is locked (by {}): waiting up to {} s for a member to let you in; Ctrl-C gives up",
            self.name(&waiting.locked_by),
            waiting.timeout.as_secs()
        ))
    }

    /// The state of the door, shown on joining a locked room.
    pub fn lock_state(&self, locked_by: Option<&str>, knocking: &[String]) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(by) = locked_by {
            lines.push(self.system_text(&format!(
                "the room is locked (by {}); /unlock opens it",
                self.name(by)
            )));
        }
        for user in knocking {
            let who = sanitize(user);
            lines.push(self.warning(&format!("{who} is knocking: /admit {who} or /deny {who}")));
        }
        lines
    }

    /// The answer to `/files`: the received files, numbered for `/save`.
    pub fn files<'a>(&self, files: impl Iterator<Item = &'a ReceivedFile>) -> Vec<String> {
        let mut lines: Vec<String> = files
            .map(|f| {
                let saved = match &f.saved {
                    Some(path) => format!(", saved to {}", sanitize(&path.display().to_string())),
                    None => String::new(),
                };
                self.system_text(&format!(
                    "#{} {} ({}) from {}{saved}",
                    f.n,
                    sanitize(&f.name),
                    mib(f.size()),
                    self.name(&f.from)
                ))
            })
            .collect();
        if lines.is_empty() {
            lines.push(
                self.info("no files received yet; they stay in memory until /save <n> [path]"),
            );
        }
        lines
    }

    /// A chat message: `HH:MM name: text`, `HH:MM * name action` for `/me`,
    /// and a multi-line message as an indented block under its sender.
    pub fn message(&self, m: &ChatMessage) -> Shown {
        let from_me = m.from == self.me;
        let time = self.paint(Style::Time, &local_hhmm(&m.timestamp));
        let name = self.name(&m.from);
        let (action, body) = match m.text.strip_prefix("/me ") {
            Some(action) => (true, action),
            None => (false, m.text.as_str()),
        };
        let mut mentioned = false;
        let mut lines: Vec<String> = sanitize_lines(body)
            .iter()
            .map(|l| {
                let (l, hit) = self.highlight(l, from_me);
                mentioned |= hit;
                l
            })
            .collect();
        let mut out = Vec::with_capacity(lines.len() + 1);
        if action {
            // The action reads on: only the lines after the first are a block.
            out.push(format!("{time} * {name} {}", lines.remove(0)));
        } else if lines.len() == 1 {
            out.push(format!("{time} {name}: {}", lines.remove(0)));
        } else {
            out.push(format!("{time} {name}:"));
        }
        out.extend(lines.into_iter().map(|l| format!("{BLOCK_INDENT}{l}")));
        if let Some(written) = &m.relayed_again {
            let note = format!(
                "(relayed again by the server: written {})",
                local_date_hhmm(written)
            );
            out[0] = format!("{} {}", out[0], self.paint(Style::Warning, &note));
        }
        Shown {
            lines: out,
            // Replayed history, or an old message relayed again, is old
            // news: highlight it, but stay quiet.
            bell: mentioned && !m.history && m.relayed_again.is_none(),
        }
    }

    /// A private message: `HH:MM [private] ann -> bob: text`, stamped with
    /// `now` (the server neither stamps nor sees them). One to us rings.
    pub fn private(&self, m: &PrivateMessage, now: &str) -> Shown {
        let head = format!(
            "{} {} {} -> {}:",
            self.paint(Style::Time, now),
            self.paint(Style::Private, PRIVATE_MARK),
            self.name(&m.from),
            self.name(&m.to)
        );
        let mut lines = sanitize_lines(&m.text);
        let mut out = Vec::with_capacity(lines.len() + 1);
        if lines.len() == 1 {
            out.push(format!("{head} {}", lines.remove(0)));
        } else {
            out.push(head);
        }
        out.extend(lines.into_iter().map(|l| format!("{BLOCK_INDENT}{l}")));
        Shown {
            lines: out,
            bell: m.from != self.me,
        }
    }

    /// A line about the room, stamped with `now`. `text` must be sanitized.
    fn system_at(&self, now: &str, text: &str) -> String {
        format!(
            "{} {}",
            self.paint(Style::Time, now),
            self.system_text(text)
        )
    }

    fn system_text(&self, text: &str) -> String {
        // Names inside `text` carry their own colour codes, which end in a
        // reset; dim each stretch separately so the dimming survives them.
        // (Sanitized text holds no ESC, so every reset here is ours.)
        format!("{SYSTEM_MARK} {text}")
            .split("\x1b[0m")
            .filter(|part| !part.is_empty())
            .map(|part| self.paint(Style::System, part))
            .collect()
    }

    /// A local notice (an answer to a command, a hint): `-- text`, dim.
    /// `text` is ours, not a peer's; it is sanitized all the same.
    pub fn info(&self, text: &str) -> String {
        self.system_text(&sanitize(text))
    }

    /// A local warning or non-fatal error: `!! text`.
    pub fn warning(&self, text: &str) -> String {
        self.paint(Style::Warning, &format!("{ERROR_MARK} {}", sanitize(text)))
    }

    /// A local error that does not end the session: `!! text`, like the
    /// room's own errors.
    pub fn error(&self, text: &str) -> String {
        self.paint(Style::Error, &format!("{ERROR_MARK} {}", sanitize(text)))
    }

    /// Who is in the room: `-- online (2): ann, bob`.
    pub fn who(&self, users: &[String]) -> String {
        let names: Vec<String> = users.iter().map(|u| self.name(u)).collect();
        self.system_text(&format!("online ({}): {}", users.len(), names.join(", ")))
    }

    /// The banner on joining: where, as whom, how private, who is here, and
    /// how much history follows.
    pub fn banner(
        &self,
        server: &str,
        transport: Transport,
        users: &[String],
        history: usize,
    ) -> Vec<String> {
        let joined = format!("joined {} as {}", sanitize(server), self.name(&self.me));
        let first = match transport {
            Transport::Sealed => self.system_text(&format!(
                "{joined}; sealed session: nothing after the login is readable on the network"
            )),
            Transport::Legacy => format!(
                "{} {}",
                self.system_text(&joined),
                self.paint(
                    Style::Warning,
                    "LEGACY session: names, joins and leaves and every message's ciphertext \
                     are visible on the network"
                )
            ),
        };
        let history = match history {
            0 => "no earlier messages".to_owned(),
            1 => "1 earlier message replayed below".to_owned(),
            n => format!("{n} earlier messages replayed below"),
        };
        vec![
            first,
            self.who(users),
            self.system_text(&format!("{history}; /help lists the commands")),
        ]
    }

    /// The prompt for the next input line: `ann> `, or the `/clear` question.
    pub fn prompt(&self, kind: PromptKind) -> Prompt {
        match kind {
            PromptKind::Chat => {
                let me = sanitize(&self.me);
                Prompt {
                    kind,
                    raw: format!("{me}> "),
                    styled: format!("{}> ", self.paint(Style::Me, &me)),
                }
            }
            PromptKind::ConfirmClear => {
                let question = "wipe the room's history for everyone? [y/N]";
                Prompt {
                    kind,
                    raw: format!("{question} "),
                    styled: format!("{} ", self.paint(Style::Warning, question)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(from: &str, text: &str) -> Event {
        Event::Message(ChatMessage {
            seq: 1,
            from: from.into(),
            text: text.into(),
            timestamp: "2026-11-21T10:00:00.000Z".into(),
            history: false,
            relayed_again: None,
        })
    }

    #[test]
    fn an_old_message_relayed_again_says_so_and_stays_quiet() {
        let r = plain("ann");
        let Event::Message(mut m) = message("bob", "ann, sign here") else {
            unreachable!()
        };
        m.relayed_again = Some("2026-11-20T09:00:00Z".into());
        let shown = r.event(&Event::Message(m), "x");
        assert!(
            shown.lines[0].contains("bob: ann, sign here"),
            "{:?}",
            shown.lines
        );
        assert!(shown.lines[0].contains("(relayed again by the server: written 2026-11-"));
        assert!(!shown.bell);
    }

    fn plain(me: &str) -> Renderer {
        Renderer::new(me, Theme::Plain)
    }

    /// Strips our own SGR codes, leaving what a person reads.
    fn visible(line: &str) -> String {
        let mut out = String::new();
        let mut rest = line;
        while let Some(start) = rest.find("\x1b[") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('m').expect("SGR ends in m");
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn hostile_text_reaches_the_screen_harmlessly() {
        let hostile = "a\x1b[2Jb\x1b]0;title\x07c\rd\u{202E}e";
        for theme in [Theme::Color, Theme::Mono, Theme::Plain] {
            let shown =
                Renderer::new("bob", theme).event(&message("mal\x1b[31mlory", hostile), "10:00");
            assert!(!shown.bell, "a peer's BEL never rings our bell");
            assert_eq!(shown.lines.len(), 1);
            let line = &shown.lines[0];
            // The only escapes left are our own SGR sequences.
            let seen = visible(line);
            assert!(
                seen.ends_with("mal^[[31mlory: a^[[2Jb^[]0;title^Gc^Md<U+202E>e"),
                "{seen:?}"
            );
            assert!(!seen.chars().any(|c| c.is_control()), "{seen:?}");
            for (i, _) in line.match_indices('\x1b') {
                assert!(line[i..].starts_with("\x1b["), "only CSI SGR: {line:?}");
                let end = line[i..].find('m').unwrap();
                assert!(
                    line[i + 2..i + end]
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == ';'),
                    "{line:?}"
                );
            }
            assert!(!line.contains('\r') && !line.contains('\x07') && !line.contains('\u{202E}'));
        }
    }

    #[test]
    fn messages_actions_and_blocks() {
        let r = plain("bob");
        assert_eq!(
            visible(&r.event(&message("ann", "hello"), "x").lines[0])
                .split_once(' ')
                .unwrap()
                .1,
            "ann: hello"
        );
        let action = r.event(&message("ann", "/me waves"), "x");
        assert_eq!(action.lines[0].split_once(' ').unwrap().1, "* ann waves");
        // Only "/me " counts; "/meow" is an ordinary message.
        let meow = r.event(&message("ann", "/meow"), "x");
        assert_eq!(meow.lines[0].split_once(' ').unwrap().1, "ann: /meow");

        let block = r.event(&message("ann", "line one\nline two\r\n  line three\n"), "x");
        assert!(block.lines[0].ends_with(" ann:"), "{:?}", block.lines);
        assert_eq!(
            &block.lines[1..],
            ["    line one", "    line two", "      line three"]
        );
    }

    #[test]
    fn private_lines_stand_apart_and_are_sanitized() {
        let private = |from: &str, to: &str, text: &str| {
            Event::Private(PrivateMessage {
                from: from.into(),
                to: to.into(),
                text: text.into(),
            })
        };
        let r = plain("bob");
        let shown = r.event(&private("ann", "bob", "psst\x1b[2J"), "10:00");
        assert_eq!(shown.lines, ["10:00 [private] ann -> bob: psst^[[2J"]);
        assert!(shown.bell, "a private message to us rings");
        let mine = r.event(&private("bob", "ann", "one\ntwo"), "10:00");
        assert_eq!(
            mine.lines,
            ["10:00 [private] bob -> ann:", "    one", "    two"]
        );
        assert!(!mine.bell);
        let colour = Renderer::new("bob", Theme::Color).event(&private("ann", "bob", "x"), "1");
        assert!(
            colour.lines[0].contains("\x1b[1;35m[private]\x1b[0m"),
            "{:?}",
            colour.lines
        );
        let mono = Renderer::new("bob", Theme::Mono).event(&private("ann", "bob", "x"), "1");
        assert!(
            mono.lines[0].contains("\x1b[4m[private]\x1b[0m"),
            "{:?}",
            mono.lines
        );

        let verify = r.event(
            &Event::Verify {
                user: "ann".into(),
                code: "12345 67890".into(),
            },
            "10:00",
        );
        assert_eq!(
            verify.lines[0],
            "10:00 -- safety code with ann: 12345 67890"
        );
        assert!(
            verify.lines[1].contains("by voice or video"),
            "{:?}",
            verify.lines
        );
    }

    #[test]
    fn time_is_local_hh_mm() {
        let shown = plain("bob").event(&message("ann", "hi"), "x");
        let time = shown.lines[0].split_once(' ').unwrap().0;
        assert_eq!(time, local_hhmm("2026-11-21T10:00:00.000Z"));
        assert_eq!(time.len(), 5);
        assert_eq!(local_hhmm("yesterday"), "--:--");
    }

    #[test]
    fn system_lines() {
        let r = plain("bob");
        let one = |e: &Event| r.event(e, "12:34").lines.join("\n");
        assert_eq!(
            one(&Event::Joined { user: "ann".into() }),
            "12:34 -- ann joined"
        );
        assert_eq!(
            one(&Event::Left { user: "ann".into() }),
            "12:34 -- ann left"
        );
        assert_eq!(
            one(&Event::Cleared),
            "12:34 -- the room's history was cleared"
        );
        assert_eq!(
            one(&Event::Error {
                message: "bad\x1b]0;x\x07".into()
            }),
            "12:34 !! bad^[]0;x^G"
        );
        let dim = Renderer::new("bob", Theme::Color)
            .event(&Event::Joined { user: "ann".into() }, "12:34");
        assert!(dim.lines[0].contains("\x1b[2m-- "), "{:?}", dim.lines[0]);
        assert_eq!(visible(&dim.lines[0]), "12:34 -- ann joined");
    }

    #[test]
    fn name_colours_are_stable_and_spread() {
        // Fixed values: the same name must look the same on every screen and
        // after every upgrade.
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        assert_eq!(name_colour("ann"), name_colour("ann"));
        let names = [
            "ann", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
        ];
        let colours: std::collections::HashSet<u8> = names.iter().map(|n| name_colour(n)).collect();
        assert!(colours.len() >= 4, "{colours:?}");
        assert!(colours.iter().all(|c| NAME_COLOURS.contains(c)));

        let r = Renderer::new("bob", Theme::Color);
        let theirs = &r.event(&message("ann", "hi"), "x").lines[0];
        assert!(
            theirs.contains(&format!("\x1b[{}mann\x1b[0m", name_colour("ann"))),
            "{theirs:?}"
        );
        let mine = &r.event(&message("bob", "hi"), "x").lines[0];
        assert!(
            mine.contains("\x1b[1mbob\x1b[0m"),
            "own name is bold: {mine:?}"
        );
    }

    #[test]
    fn no_color_keeps_attributes_and_drops_colour() {
        let r = Renderer::new("bob", Theme::Mono);
        let line = &r.event(&message("ann", "hi bob"), "x").lines[0];
        assert!(
            !line.contains("\x1b[3") && !line.contains("\x1b[9"),
            "{line:?}"
        );
        assert!(line.contains("\x1b[1;7mbob\x1b[0m"), "{line:?}");
        let plain = &plain("bob").event(&message("ann", "hi bob"), "x").lines[0];
        assert!(!plain.contains('\x1b'), "{plain:?}");
    }

    #[test]
    fn mentions_match_whole_words_in_any_case() {
        fn at(text: &str) -> Vec<&str> {
            mention_ranges(text, "ann")
                .into_iter()
                .map(|r| &text[r])
                .collect()
        }
        assert_eq!(at("hi ann"), ["ann"]);
        assert_eq!(at("@Ann, look"), ["Ann"]);
        assert_eq!(at("ANN: ann."), ["ANN", "ann"]);
        assert!(at("joanna anne annual").is_empty());
        assert!(at("").is_empty());
        assert_eq!(
            mention_ranges("héllo Zoë!", "zoë"),
            vec![Range { start: 7, end: 11 }]
        );
    }

    #[test]
    fn mentions_ring_once_and_are_highlighted() {
        let r = Renderer::new("ann", Theme::Color);
        let shown = r.event(&message("bob", "hey @ann"), "x");
        assert!(shown.bell);
        assert!(
            shown.lines[0].ends_with("@\x1b[1;7mann\x1b[0m"),
            "{:?}",
            shown.lines
        );
        // Our own words, other people's names and history do not ring.
        assert!(!r.event(&message("ann", "I am ann"), "x").bell);
        assert!(!r.event(&message("bob", "hey joanna"), "x").bell);
        let old = Event::Message(ChatMessage {
            seq: 1,
            from: "bob".into(),
            text: "ann?".into(),
            timestamp: "2026-11-21T10:00:00.000Z".into(),
            history: true,
            relayed_again: None,
        });
        let shown = r.event(&old, "x");
        assert!(!shown.bell && shown.lines[0].contains("\x1b[1;7m"));
    }

    #[test]
    fn lock_and_knock_lines() {
        let r = plain("bob");
        let one = |e: &Event| r.event(e, "12:34").lines.join("\n");
        assert_eq!(
            one(&Event::Locked { by: "ann".into() }),
            "12:34 -- ann locked the room: newcomers now knock and wait for a member to /admit them"
        );
        assert_eq!(
            one(&Event::Unlocked { by: "ann".into() }),
            "12:34 -- ann unlocked the room: anyone with the password may join"
        );
        let knock = r.event(&Event::Knock { user: "cat".into() }, "12:34");
        assert!(knock.bell, "a knock rings");
        assert_eq!(
            knock.lines,
            ["12:34 !! cat is knocking: /admit cat to let them in, /deny cat to turn them away"]
        );
        let resolved = |outcome, by: Option<&str>| {
            one(&Event::KnockResolved {
                user: "cat".into(),
                outcome,
                by: by.map(str::to_owned),
            })
        };
        assert_eq!(
            resolved(KnockOutcome::Admitted, Some("ann")),
            "12:34 -- ann let cat in"
        );
        assert_eq!(
            resolved(KnockOutcome::Denied, Some("ann")),
            "12:34 -- ann turned cat away"
        );
        assert!(resolved(KnockOutcome::Expired, None).contains("nobody answered"));
        assert!(resolved(KnockOutcome::Withdrawn, None).contains("stopped knocking"));
        // A hostile name in a knock is shown, not obeyed.
        let hostile = r.event(
            &Event::Knock {
                user: "x\x1b[2J".into(),
            },
            "12:34",
        );
        assert!(!hostile.lines[0].contains('\x1b'), "{:?}", hostile.lines);
    }

    #[test]
    fn file_lines_and_progress_bars() {
        assert_eq!(progress_bar(0, 10), "[----------]   0%");
        assert_eq!(progress_bar(5, 10), "[#####-----]  50%");
        assert_eq!(progress_bar(10, 10), "[##########] 100%");
        assert_eq!(progress_bar(0, 0), "[##########] 100%");
        let r = plain("bob");
        let one = |e: &Event| r.event(e, "12:34").lines.join("\n");
        assert_eq!(
            one(&Event::FileProgress {
                sending: false,
                from: "ann".into(),
                name: "report.pdf".into(),
                done: 2_621_440,
                size: 5_242_880,
            }),
            "12:34 -- [#####-----]  50% report.pdf (2.5/5.0 MiB) from ann"
        );
        assert_eq!(
            one(&Event::FileProgress {
                sending: true,
                from: "bob".into(),
                name: "a.txt".into(),
                done: 3 * 1024,
                size: 10 * 1024,
            }),
            "12:34 -- [###-------]  30% a.txt (3/10 KiB) to the room"
        );
        let received = one(&Event::FileReceived {
            n: 2,
            from: "ann".into(),
            name: "../x\x1b]0;t\x07".into(),
            size: 10,
        });
        assert!(
            received.contains("received #2 ../x^[]0;t^G (10 B) from ann"),
            "{received}"
        );
        assert!(received.contains("/save 2"), "{received}");
        let failed = one(&Event::FileFailed {
            sending: false,
            from: "ann".into(),
            name: "a".into(),
            reason: "it does not match its checksum; discarded".into(),
        });
        assert_eq!(
            failed,
            "12:34 !! a from ann failed: it does not match its checksum; discarded"
        );
    }

    #[test]
    fn banner_and_prompts() {
        let users = vec!["ann".to_owned(), "bob".to_owned()];
        let r = plain("ann");
        let banner = r.banner("127.0.0.1:3000", Transport::Sealed, &users, 3);
        assert_eq!(
            banner,
            [
                "-- joined 127.0.0.1:3000 as ann; sealed session: nothing after the login is readable on the network",
                "-- online (2): ann, bob",
                "-- 3 earlier messages replayed below; /help lists the commands",
            ]
        );
        let legacy = r.banner("h:1", Transport::Legacy, &users, 0).join("\n");
        assert!(legacy.contains("LEGACY") && legacy.contains("no earlier messages"));

        let colour = Renderer::new("ann", Theme::Color);
        let prompt = colour.prompt(PromptKind::Chat);
        assert_eq!(prompt.raw, "ann> ");
        assert_eq!(visible(&prompt.styled), prompt.raw);
        let confirm = colour.prompt(PromptKind::ConfirmClear);
        assert_eq!(confirm.raw, "wipe the room's history for everyone? [y/N] ");
        assert_eq!(visible(&confirm.styled), confirm.raw);
    }
}
