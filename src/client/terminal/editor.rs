//! The input line: what is typed, where the cursor is, what Up and Down
//! recall, and what a kill (Ctrl-U, Ctrl-K, Ctrl-W, Ctrl-C) put aside for
//! Ctrl-Y. Emacs-style keys, as in a shell.
//!
//! No I/O: the terminal driver hands in keys and gets back what to do
//! ([`Edit`]); drawing is [`super::view`]'s.
//!
//! What is typed is plaintext that has not been encrypted yet: the line, the
//! kill buffer and the history are wiped when the editor is dropped, and
//! nothing of them is written anywhere.

use std::collections::VecDeque;

use zeroize::Zeroize;

use super::keys::Key;
use crate::protocol::username::is_emoji_joiner;

/// Lines of input history kept for Up and Down.
pub const HISTORY_LINES: usize = 500;

/// What a key did.
#[derive(Debug, PartialEq, Eq)]
pub enum Edit {
    /// Nothing changed on screen.
    Nothing,
    /// The line or the cursor moved: draw it again.
    Changed,
    /// Enter: the line, taken out of the editor.
    Submit(String),
    /// Ctrl-D, or Ctrl-C, on an empty line.
    Leave,
    /// Tab: the driver looks up completions and calls
    /// [`LineEditor::complete`].
    Complete,
    /// Ctrl-L.
    ClearScreen,
    /// Ctrl-Z.
    Suspend,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct LineEditor {
    /// The line being typed.
    line: Vec<char>,
    /// Where the next character goes: an index into `line`.
    cursor: usize,
    /// What the last kill removed, for Ctrl-Y.
    killed: Vec<char>,
    /// Lines sent before, oldest first.
    history: VecDeque<String>,
    /// While Up and Down walk the history: the entry shown, and the line
    /// that was being typed before the walk began.
    browsing: Option<(usize, Vec<char>)>,
}

impl Drop for LineEditor {
    fn drop(&mut self) {
        self.line.zeroize();
        self.killed.zeroize();
        for entry in &mut self.history {
            entry.zeroize();
        }
        if let Some((_, draft)) = &mut self.browsing {
            draft.zeroize();
        }
    }
}

impl LineEditor {
    /// The line and the cursor, as a string and a byte offset into it.
    pub fn text(&self) -> (String, usize) {
        let before: String = self.line[..self.cursor].iter().collect();
        let at = before.len();
        let mut text = before;
        text.extend(&self.line[self.cursor..]);
        (text, at)
    }

    /// The line, and the cursor as an index into it.
    pub fn chars(&self) -> (&[char], usize) {
        (&self.line, self.cursor)
    }

    /// Puts `line` back as the line being typed (it could not be sent), the
    /// cursor at its end; what was typed meanwhile follows it.
    pub fn restore(&mut self, line: String) {
        let mut chars: Vec<char> = line.chars().collect();
        chars.append(&mut self.line);
        self.line = chars;
        self.cursor = self.line.len();
        let mut line = line;
        line.zeroize();
    }

    /// Moves the cursor to the end of the line.
    pub fn move_to_end(&mut self) {
        self.cursor = self.line.len();
    }

    /// Keeps `line` for Up and Down: not blank, not starting with a space
    /// (as shells do), not the same as the one before.
    pub fn remember(&mut self, line: &str) {
        if line.trim().is_empty()
            || line.starts_with(' ')
            || self.history.back().is_some_and(|last| last == line)
        {
            return;
        }
        if self.history.len() == HISTORY_LINES
            && let Some(mut oldest) = self.history.pop_front()
        {
            oldest.zeroize();
        }
        self.history.push_back(line.to_owned());
    }

    /// Acts on one key.
    pub fn key(&mut self, key: Key) -> Edit {
        if !matches!(key, Key::Up | Key::Down | Key::Ctrl('p' | 'n')) {
            self.browsing = None;
        }
        match key {
            Key::Char(c) => self.insert(&[c]),
            Key::Paste(text) => self.paste(&text),
            Key::Enter => self.submit(),
            Key::Tab => Edit::Complete,
            Key::Backspace | Key::Ctrl('h') => self.delete(self.before(), self.cursor),
            Key::Delete => self.delete(self.cursor, self.after()),
            Key::Ctrl('d') if self.line.is_empty() => Edit::Leave,
            Key::Ctrl('d') => self.delete(self.cursor, self.after()),
            Key::Ctrl('c') if self.line.is_empty() => Edit::Leave,
            Key::Ctrl('c') => self.kill(0, self.line.len()),
            Key::Left | Key::Ctrl('b') => self.move_to(self.before()),
            Key::Right | Key::Ctrl('f') => self.move_to(self.after()),
            Key::Home | Key::Ctrl('a') => self.move_to(0),
            Key::End | Key::Ctrl('e') => self.move_to(self.line.len()),
            Key::WordLeft | Key::Alt('b') => self.move_to(self.word_start()),
            Key::WordRight | Key::Alt('f') => self.move_to(self.word_end()),
            Key::Ctrl('u') => self.kill(0, self.cursor),
            Key::Ctrl('k') => self.kill(self.cursor, self.line.len()),
            Key::Ctrl('w') | Key::AltBackspace => self.kill(self.word_start(), self.cursor),
            Key::Alt('d') => self.kill(self.cursor, self.word_end()),
            Key::Ctrl('y') => self.insert(&self.killed.clone()),
            Key::Up | Key::Ctrl('p') => self.recall(true),
            Key::Down | Key::Ctrl('n') => self.recall(false),
            Key::Ctrl('l') => Edit::ClearScreen,
            Key::Ctrl('z') => Edit::Suspend,
            _ => Edit::Nothing,
        }
    }

    /// Tab found `found` for the text from byte `start` to the cursor:
    /// one is put in place; several are narrowed to what they share, or
    /// given back to be listed if that adds nothing.
    pub fn complete(&mut self, start: usize, found: &[String]) -> Option<Vec<String>> {
        let (text, at) = self.text();
        let word = text.get(start..at)?;
        let start = text[..start].chars().count();
        let replacement = match found {
            [] => return None,
            [only] => only.clone(),
            _ => {
                let shared = common_prefix(found);
                if shared.chars().count() <= word.chars().count() {
                    return Some(found.to_vec());
                }
                shared
            }
        };
        grow_wiping(&mut self.line, replacement.chars().count());
        self.line.splice(start..self.cursor, replacement.chars());
        self.cursor = start + replacement.chars().count();
        None
    }

    fn insert(&mut self, chars: &[char]) -> Edit {
        grow_wiping(&mut self.line, chars.len());
        self.line
            .splice(self.cursor..self.cursor, chars.iter().copied());
        self.cursor += chars.len();
        // What was typed may join what follows it (a flag's first letter
        // before a lone second one): the cursor goes past the whole.
        while self.cursor < self.line.len() && joins_previous(&self.line, self.cursor) {
            self.cursor += 1;
        }
        Edit::Changed
    }

    /// A paste keeps its newlines (as `\n`): one message of several lines.
    fn paste(&mut self, text: &str) -> Edit {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let chars: Vec<char> = text.chars().collect();
        self.insert(&chars)
    }

    fn submit(&mut self) -> Edit {
        let line: String = self.line.iter().collect();
        self.line.zeroize();
        self.line.clear();
        self.cursor = 0;
        Edit::Submit(line)
    }

    fn delete(&mut self, from: usize, to: usize) -> Edit {
        let to = to.min(self.line.len());
        if from >= to {
            return Edit::Nothing;
        }
        self.line.drain(from..to);
        self.cursor = from;
        Edit::Changed
    }

    fn kill(&mut self, from: usize, to: usize) -> Edit {
        if from >= to {
            return Edit::Nothing;
        }
        self.killed.zeroize();
        self.killed = self.line[from..to].to_vec();
        self.delete(from, to)
    }

    fn move_to(&mut self, at: usize) -> Edit {
        let at = at.min(self.line.len());
        if at == self.cursor {
            return Edit::Nothing;
        }
        self.cursor = at;
        Edit::Changed
    }

    /// Where the character before the cursor starts, as the person sees
    /// it: a whole emoji sequence, flag or accented letter.
    fn before(&self) -> usize {
        let mut at = self.cursor.saturating_sub(1);
        while at > 0 && joins_previous(&self.line, at) {
            at -= 1;
        }
        at
    }

    /// Where the character after the cursor ends, as the person sees it.
    fn after(&self) -> usize {
        let mut at = (self.cursor + 1).min(self.line.len());
        while at < self.line.len() && joins_previous(&self.line, at) {
            at += 1;
        }
        at
    }

    /// The start of the word before the cursor (blanks before it skipped).
    fn word_start(&self) -> usize {
        let before = &self.line[..self.cursor];
        let blanks = before
            .iter()
            .rev()
            .take_while(|c| !c.is_alphanumeric())
            .count();
        let word = before[..before.len() - blanks]
            .iter()
            .rev()
            .take_while(|c| c.is_alphanumeric())
            .count();
        self.cursor - blanks - word
    }

    /// The end of the word after the cursor.
    fn word_end(&self) -> usize {
        let after = &self.line[self.cursor..];
        let blanks = after.iter().take_while(|c| !c.is_alphanumeric()).count();
        let word = after[blanks..]
            .iter()
            .take_while(|c| c.is_alphanumeric())
            .count();
        self.cursor + blanks + word
    }

    /// Up (`back`) or Down through the history.
    fn recall(&mut self, back: bool) -> Edit {
        let current = self.browsing.as_ref().map(|(at, _)| *at);
        let next = match (current, back) {
            (None, true) => self.history.len().checked_sub(1),
            (None, false) => return Edit::Nothing,
            (Some(at), true) => Some(at.saturating_sub(1)),
            (Some(at), false) => Some(at + 1).filter(|&n| n < self.history.len()),
        };
        match next {
            Some(at) => {
                if self.browsing.is_none() {
                    self.browsing = Some((at, std::mem::take(&mut self.line)));
                }
                if let Some((shown, _)) = &mut self.browsing {
                    *shown = at;
                }
                self.line = self.history[at].chars().collect();
            }
            None => {
                // Past the newest entry: back to what was being typed.
                let Some((_, draft)) = self.browsing.take() else {
                    return Edit::Nothing;
                };
                self.line = draft;
            }
        }
        self.cursor = self.line.len();
        Edit::Changed
    }
}

/// Makes room for `more` characters in `line`. Growing moves the line to a
/// larger buffer; the old one is wiped first rather than freed as it is.
fn grow_wiping(line: &mut Vec<char>, more: usize) {
    let needed = line.len() + more;
    if needed <= line.capacity() {
        return;
    }
    let mut grown = Vec::with_capacity(needed.max(line.capacity() * 2));
    grown.extend_from_slice(line);
    line.zeroize();
    *line = grown;
}

/// Whether `line[at]` is drawn as part of the character before it, so
/// that the cursor never stops inside one thing on screen: the parts of an
/// emoji sequence (`👩‍💻`: a joiner and what it joins; a presentation
/// selector; a skin tone; the tags of a subdivision flag), the second
/// letter of a flag (`🇩🇪`), a combining accent.
fn joins_previous(line: &[char], at: usize) -> bool {
    let c = line[at];
    let combining = matches!(c,
        '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}' | '\u{FE00}'..='\u{FE0F}' | '\u{FE20}'..='\u{FE2F}'
        | '\u{1F3FB}'..='\u{1F3FF}' | '\u{E0020}'..='\u{E007F}');
    at > 0
        && (combining
            || is_emoji_joiner(line, at)
            || is_emoji_joiner(line, at - 1)
            || second_of_flag(line, at))
}

/// Whether `line[at]` is the second regional indicator letter of a flag:
/// they pair up from the first of a run.
fn second_of_flag(line: &[char], at: usize) -> bool {
    let regional = |c: &char| ('\u{1F1E6}'..='\u{1F1FF}').contains(c);
    let run = line[..=at].iter().rev().take_while(|c| regional(c)).count();
    run >= 2 && run % 2 == 0
}

/// What every string of `found` starts with.
fn common_prefix(found: &[String]) -> String {
    let Some(first) = found.first() else {
        return String::new();
    };
    let mut len = first.len();
    for other in &found[1..] {
        len = first
            .char_indices()
            .zip(other.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, a), _)| i + a.len_utf8())
            .min(len);
    }
    first[..len].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(editor: &mut LineEditor, text: &str) {
        for c in text.chars() {
            editor.key(Key::Char(c));
        }
    }

    fn line(editor: &LineEditor) -> String {
        editor.text().0
    }

    #[test]
    fn typing_editing_and_enter() {
        let mut e = LineEditor::default();
        typed(&mut e, "helo");
        e.key(Key::Left);
        typed(&mut e, "l");
        assert_eq!(e.text(), ("hello".into(), 4));
        e.key(Key::Home);
        e.key(Key::Delete);
        typed(&mut e, "H");
        assert_eq!(e.key(Key::Enter), Edit::Submit("Hello".into()));
        assert_eq!(e.text(), (String::new(), 0));
    }

    #[test]
    fn ctrl_c_clears_a_line_and_leaves_from_an_empty_one() {
        let mut e = LineEditor::default();
        typed(&mut e, "take this back");
        assert_eq!(e.key(Key::Ctrl('c')), Edit::Changed);
        assert_eq!(line(&e), "");
        // Ctrl-Y brings it back.
        e.key(Key::Ctrl('y'));
        assert_eq!(line(&e), "take this back");
        e.key(Key::Ctrl('u'));
        assert_eq!(e.key(Key::Ctrl('c')), Edit::Leave);
        assert_eq!(e.key(Key::Ctrl('d')), Edit::Leave);
    }

    #[test]
    fn word_motions_and_kills() {
        let mut e = LineEditor::default();
        typed(&mut e, "one two  three");
        e.key(Key::Ctrl('w'));
        assert_eq!(line(&e), "one two  ");
        e.key(Key::Alt('b'));
        assert_eq!(e.text().1, 4);
        e.key(Key::Alt('d'));
        assert_eq!(line(&e), "one   ");
        e.key(Key::Ctrl('a'));
        e.key(Key::Ctrl('k'));
        assert_eq!(line(&e), "");
        e.key(Key::Ctrl('y'));
        assert_eq!(line(&e), "one   ");
    }

    #[test]
    fn a_paste_keeps_its_lines_in_one_message() {
        let mut e = LineEditor::default();
        e.key(Key::Paste(zeroize::Zeroizing::new(
            "first\r\nsecond\rthird".into(),
        )));
        assert_eq!(
            e.key(Key::Enter),
            Edit::Submit("first\nsecond\nthird".into())
        );
    }

    #[test]
    fn history_walks_back_and_returns_to_the_draft() {
        let mut e = LineEditor::default();
        for l in ["first", "second", "second", " secret", ""] {
            e.remember(l);
        }
        typed(&mut e, "draft");
        e.key(Key::Up);
        assert_eq!(line(&e), "second");
        e.key(Key::Up);
        assert_eq!(line(&e), "first");
        e.key(Key::Up);
        assert_eq!(line(&e), "first");
        e.key(Key::Down);
        assert_eq!(line(&e), "second");
        e.key(Key::Down);
        assert_eq!(line(&e), "draft");
        assert_eq!(e.key(Key::Down), Edit::Nothing);
    }

    #[test]
    fn history_is_bounded() {
        let mut e = LineEditor::default();
        for n in 0..HISTORY_LINES + 10 {
            e.remember(&n.to_string());
        }
        assert_eq!(e.history.len(), HISTORY_LINES);
        assert_eq!(e.history.front().map(String::as_str), Some("10"));
    }

    #[test]
    fn completion_takes_one_narrows_several_or_lists_them() {
        let mut e = LineEditor::default();
        typed(&mut e, "hi @a");
        assert_eq!(e.key(Key::Tab), Edit::Complete);
        assert_eq!(e.complete(3, &["@ann ".into()]), None);
        assert_eq!(line(&e), "hi @ann ");

        let mut e = LineEditor::default();
        typed(&mut e, "/l");
        let found = ["/lock ".to_owned(), "/log ".to_owned()];
        assert_eq!(e.complete(0, &found), None);
        assert_eq!(line(&e), "/lo");
        assert_eq!(e.complete(0, &found), Some(found.to_vec()));
        assert_eq!(line(&e), "/lo");
    }

    #[test]
    fn unicode_is_edited_a_character_at_a_time() {
        let mut e = LineEditor::default();
        typed(&mut e, "héllo👩");
        e.key(Key::Backspace);
        e.key(Key::Left);
        e.key(Key::Left);
        e.key(Key::Left);
        e.key(Key::Backspace);
        assert_eq!(e.text(), ("hllo".into(), 1));
    }

    #[test]
    fn an_emoji_sequence_flag_or_accent_is_edited_whole() {
        let worker = "\u{1F469}\u{200D}\u{1F4BB}"; // 👩‍💻
        let rainbow = "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}"; // 🏳️‍🌈
        let flags = "\u{1F1E9}\u{1F1EA}\u{1F1EB}\u{1F1F7}"; // 🇩🇪🇫🇷
        let thumbs = "\u{1F44D}\u{1F3FD}"; // 👍🏽
        let accent = "e\u{0301}";
        let mut e = LineEditor::default();
        typed(&mut e, &format!("a {worker} b"));
        for _ in 0..3 {
            e.key(Key::Left);
        }
        e.key(Key::Char('Z'));
        assert_eq!(line(&e), format!("a Z{worker} b"));
        e.key(Key::Delete);
        assert_eq!(line(&e), "a Z b");

        for text in [worker, rainbow, thumbs, accent] {
            let mut e = LineEditor::default();
            typed(&mut e, &format!("c {text}"));
            e.key(Key::Backspace);
            assert_eq!(e.text(), ("c ".into(), 2), "{text:?}");
            e.key(Key::Left);
            e.key(Key::Right);
            assert_eq!(e.text(), ("c ".into(), 2), "{text:?}");
        }
        let mut e = LineEditor::default();
        typed(&mut e, flags);
        e.key(Key::Left);
        e.key(Key::Backspace);
        assert_eq!(e.text(), ("\u{1F1EB}\u{1F1F7}".into(), 0));
        // A letter typed before a flag's pair makes a pair with its first
        // letter: the cursor goes past the new pair, never into it.
        let mut e = LineEditor::default();
        typed(&mut e, flags);
        e.key(Key::Home);
        e.key(Key::Char('\u{1F1EB}'));
        assert_eq!(e.chars().1, 2);
        // A joiner between letters is no emoji: it is its own character.
        let mut e = LineEditor::default();
        typed(&mut e, "a\u{200D}b");
        e.key(Key::Left);
        e.key(Key::Backspace);
        assert_eq!(line(&e), "ab");
    }
}
