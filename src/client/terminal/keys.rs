//! Bytes from the terminal, decoded into the keys the line editor acts on.
//!
//! A key press arrives as one byte (`a`, Ctrl-A as `0x01`), as UTF-8, or as
//! an escape sequence (`ESC [ A` for Up). A bracketed paste arrives between
//! `ESC [ 200 ~` and `ESC [ 201 ~` and is one [`Key::Paste`], so that its
//! newlines are text, not Enter. Bytes may be split anywhere between two
//! reads; the decoder keeps an unfinished sequence until the rest comes, or
//! until [`Decoder::flush`] says no more is coming (a lone Escape).
//!
//! No I/O: the terminal driver feeds bytes in and takes keys out.

use zeroize::{Zeroize, Zeroizing};

/// The longest escape sequence kept while waiting for its end; anything
/// longer is not a key and is dropped.
const MAX_SEQUENCE: usize = 32;

/// The most a bracketed paste may hold; the rest is dropped. Far above the
/// longest message the room accepts.
const MAX_PASTE: usize = 1 << 20;

/// A key, or a paste.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A character to insert.
    Char(char),
    /// Ctrl and a letter, `'a'..='z'`, for those without a key of their own.
    Ctrl(char),
    /// Alt (or Escape) and a character, as Emacs-style word motions use.
    Alt(char),
    Enter,
    Tab,
    Backspace,
    /// Alt-Backspace: delete the word before the cursor.
    AltBackspace,
    Delete,
    Left,
    Right,
    Up,
    Down,
    Home,
    End,
    /// Ctrl-Left / Ctrl-Right: a word at a time.
    WordLeft,
    WordRight,
    /// Escape alone.
    Escape,
    /// Text pasted with bracketed paste, newlines and all: typed plaintext,
    /// wiped when dropped.
    Paste(Zeroizing<String>),
    /// A sequence the editor has no use for (function keys and the like).
    Unknown,
}

/// Turns bytes into keys; see the module docs.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes of a key or sequence not yet complete.
    pending: Vec<u8>,
    /// Inside a bracketed paste: what it holds so far, as bytes (it may end
    /// in the middle of a character until the next read).
    paste: Option<Vec<u8>>,
}

/// What one attempt to decode the front of the pending bytes gave.
enum Step {
    /// A key, and how many bytes it took.
    Key(Key, usize),
    /// Bytes to skip: not a key.
    Skip(usize),
    /// Not enough bytes yet.
    More,
}

const PASTE_START: &[u8] = b"\x1b[200~";
const PASTE_END: &[u8] = b"\x1b[201~";

impl Decoder {
    /// The keys `bytes` complete, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Key> {
        self.pending.extend_from_slice(bytes);
        let mut keys = Vec::new();
        loop {
            if self.paste.is_some() {
                match self.take_paste() {
                    Some(key) => keys.push(key),
                    None => break,
                }
                continue;
            }
            if self.pending.is_empty() {
                break;
            }
            match decode(&self.pending) {
                Step::Key(key, used) => {
                    self.pending.drain(..used);
                    keys.push(key);
                }
                Step::Skip(used) => {
                    self.pending.drain(..used);
                }
                Step::More if self.pending.starts_with(PASTE_START) => {
                    self.pending.drain(..PASTE_START.len());
                    self.paste = Some(Vec::new());
                }
                Step::More => break,
            }
        }
        if self.paste.is_none() && self.pending.len() > MAX_SEQUENCE {
            self.pending.clear();
        }
        keys
    }

    /// Whether bytes are waiting for the rest of a sequence; if so, and
    /// nothing follows soon, [`Decoder::flush`] ends the wait.
    pub fn waiting(&self) -> bool {
        !self.pending.is_empty() && self.paste.is_none()
    }

    /// Nothing more came: what is pending is a lone Escape (and whatever
    /// followed it), not the start of a sequence.
    pub fn flush(&mut self) -> Vec<Key> {
        if self.paste.is_some() || self.pending.is_empty() {
            return Vec::new();
        }
        let mut keys = Vec::new();
        if self.pending[0] == 0x1b {
            self.pending.remove(0);
            keys.push(Key::Escape);
        }
        let rest = std::mem::take(&mut self.pending);
        keys.extend(self.feed(&rest));
        // A cut-off character or sequence is dropped, not waited for again.
        self.pending.clear();
        keys
    }

    /// Whether a bracketed paste is open; if nothing follows for a while,
    /// [`Decoder::end_paste`] closes it.
    pub fn in_paste(&self) -> bool {
        self.paste.is_some()
    }

    /// A paste's end marker never came (a stray start marker, or a
    /// terminal that lost the end): the paste is what came, and keys are
    /// keys again.
    pub fn end_paste(&mut self) -> Vec<Key> {
        let Some(mut paste) = self.paste.take() else {
            return Vec::new();
        };
        keep_up_to(&mut paste, &std::mem::take(&mut self.pending));
        vec![Key::Paste(pasted_text(paste))]
    }

    /// Moves paste bytes out of `pending`; the paste once its end marker
    /// has come.
    fn take_paste(&mut self) -> Option<Key> {
        let paste = self.paste.as_mut()?;
        if let Some(end) = find(&self.pending, PASTE_END) {
            keep_up_to(paste, &self.pending[..end]);
            self.pending.drain(..end + PASTE_END.len());
            return Some(Key::Paste(pasted_text(self.paste.take()?)));
        }
        // Keep back what could be the start of the end marker.
        let keep = (1..PASTE_END.len())
            .rev()
            .find(|&n| self.pending.ends_with(&PASTE_END[..n]))
            .unwrap_or(0);
        let take = self.pending.len() - keep;
        keep_up_to(paste, &self.pending[..take]);
        self.pending.drain(..take);
        None
    }
}

/// What a paste's bytes say, the bytes wiped.
fn pasted_text(mut paste: Vec<u8>) -> Zeroizing<String> {
    let text = Zeroizing::new(String::from_utf8_lossy(&paste).into_owned());
    paste.zeroize();
    text
}

/// What is typed is plaintext: what the decoder still holds is wiped with it.
impl Drop for Decoder {
    fn drop(&mut self) {
        self.pending.zeroize();
        self.paste.zeroize();
    }
}

fn keep_up_to(paste: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_PASTE.saturating_sub(paste.len());
    paste.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes the key at the front of `bytes` (not empty).
fn decode(bytes: &[u8]) -> Step {
    match bytes[0] {
        0x1b => escape(bytes),
        b'\r' | b'\n' => Step::Key(Key::Enter, 1),
        b'\t' => Step::Key(Key::Tab, 1),
        0x7f | 0x08 => Step::Key(Key::Backspace, 1),
        b @ 0x01..=0x1a => Step::Key(Key::Ctrl((b'a' + b - 1) as char), 1),
        0x00 | 0x1c..=0x1f => Step::Key(Key::Unknown, 1),
        _ => utf8(bytes),
    }
}

/// One UTF-8 character; invalid bytes are skipped one at a time.
fn utf8(bytes: &[u8]) -> Step {
    let len = match bytes[0] {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Step::Skip(1),
    };
    if bytes.len() < len {
        // A character split between two reads, unless it is already broken.
        return match std::str::from_utf8(bytes) {
            Err(e) if e.error_len().is_some() => Step::Skip(1),
            _ => Step::More,
        };
    }
    match std::str::from_utf8(&bytes[..len]) {
        Ok(s) => Step::Key(Key::Char(s.chars().next().unwrap_or('\u{fffd}')), len),
        Err(_) => Step::Skip(1),
    }
}

/// A sequence that starts with Escape.
fn escape(bytes: &[u8]) -> Step {
    let Some(&next) = bytes.get(1) else {
        return Step::More;
    };
    match next {
        b'[' => csi(bytes),
        b'O' => match bytes.get(2) {
            None => Step::More,
            Some(&last @ 0x40..=0x7e) => Step::Key(final_key(last, 1), 3),
            // Not a key sequence: Alt-O, then whatever the byte starts.
            Some(_) => Step::Key(Key::Alt('O'), 2),
        },
        0x7f | 0x08 => Step::Key(Key::AltBackspace, 2),
        // Escape, then a key of its own (Enter, Ctrl-C, another Escape):
        // typed quickly enough to come in one read.
        0x00..=0x1f => Step::Key(Key::Escape, 1),
        _ => match utf8(&bytes[1..]) {
            Step::Key(Key::Char(c), used) => Step::Key(Key::Alt(c), used + 1),
            Step::More => Step::More,
            _ => Step::Key(Key::Escape, 1),
        },
    }
}

/// `ESC [ params final`: arrows, Home, End, Delete, with modifiers.
fn csi(bytes: &[u8]) -> Step {
    let body = &bytes[2..];
    let Some(end) = body.iter().position(|b| (0x40..=0x7e).contains(b)) else {
        return if body.iter().all(|b| (0x20..=0x3f).contains(b)) {
            Step::More
        } else {
            Step::Skip(2)
        };
    };
    let used = 2 + end + 1;
    let params = std::str::from_utf8(&body[..end]).unwrap_or("");
    let mut numbers = params.split(';').map(|p| p.parse::<u32>().unwrap_or(1));
    let first = numbers.next().unwrap_or(1);
    let modifier = numbers.next().unwrap_or(1);
    let key = match body[end] {
        b'~' => match first {
            1 | 7 => Key::Home,
            4 | 8 => Key::End,
            3 => Key::Delete,
            200 => return Step::More,
            _ => Key::Unknown,
        },
        last => final_key(last, modifier),
    };
    Step::Key(key, used)
}

/// The key a sequence's final byte names; `modifier` 5 is Ctrl (xterm).
fn final_key(last: u8, modifier: u32) -> Key {
    let ctrl = modifier == 5;
    match last {
        b'A' => Key::Up,
        b'B' => Key::Down,
        b'C' if ctrl => Key::WordRight,
        b'D' if ctrl => Key::WordLeft,
        b'C' => Key::Right,
        b'D' => Key::Left,
        b'H' => Key::Home,
        b'F' => Key::End,
        _ => Key::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(chunks: &[&[u8]]) -> Vec<Key> {
        let mut decoder = Decoder::default();
        chunks.iter().flat_map(|c| decoder.feed(c)).collect()
    }

    #[test]
    fn text_and_control_keys() {
        assert_eq!(
            keys(&[b"hi\r\x7f\x03\t"]),
            [
                Key::Char('h'),
                Key::Char('i'),
                Key::Enter,
                Key::Backspace,
                Key::Ctrl('c'),
                Key::Tab
            ]
        );
    }

    #[test]
    fn a_burst_of_lines_is_every_key_in_order() {
        let burst = keys(&[b"one\rtwo\rthree\r"]);
        let enters = burst.iter().filter(|k| **k == Key::Enter).count();
        assert_eq!(enters, 3);
        assert_eq!(burst.len(), 14);
    }

    #[test]
    fn utf8_split_between_reads() {
        let bytes = "é👩".as_bytes();
        assert_eq!(
            keys(&[&bytes[..1], &bytes[1..3], &bytes[3..]]),
            [Key::Char('é'), Key::Char('👩')]
        );
    }

    #[test]
    fn invalid_utf8_is_skipped() {
        assert_eq!(keys(&[b"a\xffb"]), [Key::Char('a'), Key::Char('b')]);
    }

    #[test]
    fn arrows_and_editing_keys() {
        assert_eq!(
            keys(&[b"\x1b[A\x1b[B\x1bOC\x1b[D\x1b[H\x1b[4~\x1b[3~\x1b[1;5C\x1b[1;5D"]),
            [
                Key::Up,
                Key::Down,
                Key::Right,
                Key::Left,
                Key::Home,
                Key::End,
                Key::Delete,
                Key::WordRight,
                Key::WordLeft
            ]
        );
    }

    #[test]
    fn a_sequence_split_between_reads() {
        assert_eq!(keys(&[b"\x1b", b"[", b"1;5", b"C"]), [Key::WordRight]);
    }

    #[test]
    fn alt_keys() {
        assert_eq!(
            keys(&[b"\x1bb\x1bf\x1b\x7f"]),
            [Key::Alt('b'), Key::Alt('f'), Key::AltBackspace]
        );
    }

    #[test]
    fn escape_then_a_control_key_in_one_read_is_both_keys() {
        assert_eq!(keys(&[b"\x1b\r"]), [Key::Escape, Key::Enter]);
        assert_eq!(keys(&[b"\x1b\x03"]), [Key::Escape, Key::Ctrl('c')]);
    }

    #[test]
    fn escape_o_before_text_is_alt_o_and_the_text() {
        assert_eq!(
            keys(&["\x1bOé".as_bytes()]),
            [Key::Alt('O'), Key::Char('é')]
        );
    }

    #[test]
    fn a_paste_without_its_end_ends_when_told_and_keys_are_keys_again() {
        let mut decoder = Decoder::default();
        assert_eq!(decoder.feed(b"\x1b[200~stray\x1b[2"), []);
        assert!(decoder.in_paste());
        assert_eq!(
            decoder.end_paste(),
            [Key::Paste(Zeroizing::new("stray\x1b[2".into()))]
        );
        assert!(!decoder.in_paste());
        assert_eq!(decoder.feed(b"\r"), [Key::Enter]);
    }

    #[test]
    fn a_lone_escape_needs_a_flush() {
        let mut decoder = Decoder::default();
        assert_eq!(decoder.feed(b"\x1b"), []);
        assert!(decoder.waiting());
        assert_eq!(decoder.flush(), [Key::Escape]);
        assert!(!decoder.waiting());
        assert_eq!(decoder.feed(b"x"), [Key::Char('x')]);
    }

    #[test]
    fn bracketed_paste_is_one_key_with_its_newlines() {
        assert_eq!(
            keys(&[b"a\x1b[200~one\r\ntwo\x1b[2", b"01~b"]),
            [
                Key::Char('a'),
                Key::Paste(Zeroizing::new("one\r\ntwo".into())),
                Key::Char('b')
            ]
        );
    }

    #[test]
    fn a_paste_that_looks_like_keys_stays_text() {
        assert_eq!(
            keys(&[b"\x1b[200~\x1b[A\x03\r\x1b[201~"]),
            [Key::Paste(Zeroizing::new("\x1b[A\x03\r".into()))]
        );
    }

    #[test]
    fn unknown_and_overlong_sequences_are_dropped() {
        assert_eq!(
            keys(&[b"\x1b[15~x\x1b[?1;2c"]),
            [Key::Unknown, Key::Char('x'), Key::Unknown]
        );
        let mut decoder = Decoder::default();
        let mut junk = b"\x1b[".to_vec();
        junk.extend([b'1'; 40]);
        assert_eq!(decoder.feed(&junk), []);
        assert_eq!(decoder.feed(b"y"), [Key::Char('y')]);
    }
}
