//! What a person sees: pure functions from room events to styled lines.
//!
//! Kept apart from the terminal plumbing so that it can be unit-tested and
//! shared by the interactive terminal UI and the plain line fallback.
//! Everything a peer supplied (names, message text, server error text) goes
//! through [`sanitize`] *before* it is styled, so the only escape sequences
//! that reach the terminal are the few SGR codes written here, and the bell is
//! only ever rung by us (see [`Shown::bell`]), never by a peer's `\x07`.
//!
//! [`Renderer::event`] matches every kind of [`Event`] by name, with no
//! catch-all, so a new kind does not compile until it has a look. The lines
//! about file transfers are in `files`.

mod files;

use std::ops::Range;

use chrono::Local;

use super::event::{parse_stamp, private_not_sent};

use super::sanitize::{sanitize, sanitize_lines};
use super::{ChatMessage, Event, KnockOutcome, PrivateMessage, Transport, Waiting};
pub use files::progress_bar;

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
            Event::Verify { user, code } => self.verify(user, code, now),
            Event::Joined { user } => {
                line(self.system_at(now, &format!("{} joined", self.name(user))))
            }
            Event::Left { user } => line(self.system_at(now, &format!("{} left", self.name(user)))),
            Event::Cleared { by } => line(self.system_at(
                now,
                &match by {
                    Some(by) => format!("{} cleared the room's history", self.name(by)),
                    None => "the room's history was cleared".to_owned(),
                },
            )),
            Event::Error { message } => line(self.error_at(now, &sanitize(message))),
            Event::PrivateNotSent { to, count, reason } => {
                line(self.error_at(now, &sanitize(&private_not_sent(to, *count, reason))))
            }
            // The echo of our own message already shows it arrived.
            Event::Sent { .. } => Shown {
                lines: Vec::new(),
                bell: false,
            },
            Event::SendFailed { reference, reason } => {
                line(self.send_failed(*reference, reason, now))
            }
            Event::Reconnecting { attempt, reason } => {
                line(self.reconnecting(*attempt, reason, now))
            }
            Event::RoomRestarted => line(self.system_at(
                now,
                "the room was restarted while you were away: earlier messages are gone, and \
                 private conversations start afresh",
            )),
            Event::Reconnected { missed, complete } => {
                line(self.reconnected(*missed, *complete, now))
            }
            Event::Notice { message } => {
                line(self.error_at(now, &format!("server: {}", sanitize(message))))
            }
            Event::Locked { by } => line(self.locked(by, now)),
            Event::Unlocked { by } => line(self.unlocked(by, now)),
            Event::Knock { user } => self.knock(user, now),
            Event::KnockResolved { user, outcome, by } => {
                line(self.system_at(now, &self.knock_resolved(user, *outcome, by.as_deref())))
            }
            Event::FileSending { name, size } => line(self.file_sending(name, *size, now)),
            Event::FileIncoming { from, name, size } => {
                line(self.file_incoming(from, name, *size, now))
            }
            Event::FileProgress {
                sending,
                from,
                name,
                done,
                size,
            } => line(self.file_progress(*sending, from, name, (*done, *size), now)),
            Event::FileSent { name, size } => line(self.file_sent(name, *size, now)),
            Event::FileReceived {
                n,
                from,
                name,
                size,
            } => line(self.file_received(*n, from, name, *size, now)),
            Event::FileFailed {
                sending,
                from,
                name,
                reason,
            } => line(self.file_failed(*sending, from, name, reason, now)),
        }
    }

    /// The safety code of a private session, and what to do with it.
    fn verify(&self, user: &str, code: &str, now: &str) -> Shown {
        Shown {
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
        }
    }

    /// One of our messages the room never confirmed, and how to send it again.
    fn send_failed(&self, reference: u64, reason: &str, now: &str) -> String {
        self.error_at(
            now,
            &format!(
                "message {reference} not delivered: {}; /resend {reference} tries again",
                sanitize(reason)
            ),
        )
    }

    /// The connection was lost, and attempt `attempt` to get it back is coming.
    fn reconnecting(&self, attempt: u32, reason: &str, now: &str) -> String {
        self.system_at(
            now,
            &format!(
                "connection lost ({}); reconnecting, attempt {attempt}",
                sanitize(reason)
            ),
        )
    }

    /// Back in the room after a lost connection, and whether all that was
    /// missed is still there to follow.
    fn reconnected(&self, missed: usize, complete: bool, now: &str) -> String {
        self.system_at(
            now,
            &if complete && missed == 0 {
                "back in the room; nothing was missed".to_owned()
            } else if complete {
                format!("back in the room; {missed} missed messages follow")
            } else {
                format!(
                    "back in the room; {missed} missed messages follow, but older ones were already gone from the history"
                )
            },
        )
    }

    /// A member locked the room.
    fn locked(&self, by: &str, now: &str) -> String {
        self.system_at(
            now,
            &format!(
                "{} locked the room: newcomers now knock and wait for a member to /admit them",
                self.name(by)
            ),
        )
    }

    /// A member opened the room again.
    fn unlocked(&self, by: &str, now: &str) -> String {
        self.system_at(
            now,
            &format!(
                "{} unlocked the room: anyone with the password may join",
                self.name(by)
            ),
        )
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
        let who = if user == self.me {
            "you".to_owned()
        } else {
            self.name(user)
        };
        match (outcome, by) {
            (KnockOutcome::Admitted, Some(by)) => format!("{} let {who} in", self.name(by)),
            (KnockOutcome::Admitted, None) => format!("{who} was let in"),
            (KnockOutcome::Denied, Some(by)) => format!("{} turned {who} away", self.name(by)),
            (KnockOutcome::Denied, None) => format!("{who} was turned away"),
            (KnockOutcome::Expired, _) => format!("{who} stopped waiting: nobody answered in time"),
            (KnockOutcome::Withdrawn, _) => format!("{who} stopped knocking"),
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

    /// A chat message: `HH:MM name: text`, `HH:MM * name action` for `/me`,
    /// and a multi-line message as an indented block under its sender.
    pub fn message(&self, m: &ChatMessage) -> Shown {
        let from_me = m.from == self.me;
        let time = self.paint(Style::Time, &local_hhmm(&m.timestamp));
        let name = self.name(&m.from);
        let (action, body) = match m.action() {
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

    /// An error from the room, stamped with `now`: `HH:MM !! text`. `text`
    /// must be sanitized.
    fn error_at(&self, now: &str, text: &str) -> String {
        format!(
            "{} {}",
            self.paint(Style::Time, now),
            self.paint(Style::Error, &format!("{ERROR_MARK} {text}"))
        )
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
mod tests;
