//! Making peer-supplied text safe for a terminal.
//!
//! Names and messages come from other people. Printed raw, an escape sequence
//! could clear the screen, retitle the window, move the cursor over earlier
//! lines or (with bidirectional overrides) make text read differently than it
//! is. Everything that is not plain printable text is shown visibly instead.

use crate::protocol::username::{is_emoji_joiner, is_format_char};

/// `text` with every control, escape and invisible formatting character made
/// visible: C0 controls and DEL in caret notation (`^[`, `^M`, `^?`), C1
/// controls and bidi/zero-width characters as `<U+XXXX>`. Tabs become a space.
/// Newlines are made visible too; split multi-line text before calling this.
/// A zero-width joiner inside an emoji sequence (`👩‍💻`) is part of the emoji
/// and stays as it is.
pub fn sanitize(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (at, &c) in chars.iter().enumerate() {
        match c {
            '\t' => out.push(' '),
            '\0'..='\u{1f}' => {
                out.push('^');
                out.push((b'@' + c as u8) as char);
            }
            '\u{7f}' => out.push_str("^?"),
            _ if is_emoji_joiner(&chars, at) => out.push(c),
            c if c.is_control() || is_format_char(c) => {
                out.push_str(&format!("<U+{:04X}>", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// The lines of a possibly multi-line message, each sanitized.
pub fn sanitize_lines(text: &str) -> Vec<String> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.split('\n')
        .map(|line| sanitize(line.strip_suffix('\r').unwrap_or(line)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_shown_not_executed() {
        let hostile = "a\x1b[2Jb\x1b]0;title\x07c\rd\u{202E}e\u{9b}f\u{7f}";
        let clean = sanitize(hostile);
        assert_eq!(clean, "a^[[2Jb^[]0;title^Gc^Md<U+202E>e<U+009B>f^?");
        assert!(!clean.chars().any(|c| c.is_control()));
    }

    #[test]
    fn emoji_sequences_and_visible_marks_pass() {
        // A subdivision flag is built from tag characters; U+06DD is a
        // visible Arabic mark. Neither hides anything.
        for text in [
            "\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}",
            "\u{06DD}١",
            "\u{2764}\u{FE0F}",
            "\u{1F469}\u{200D}\u{1F4BB} at work",          // 👩‍💻
            "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}",          // 🏳️‍🌈
            "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}", // 👨‍👩‍👧
            "\u{1F469}\u{1F3FD}\u{200D}\u{1F692}",         // 👩🏽‍🚒
        ] {
            assert_eq!(sanitize(text), text);
        }
    }

    #[test]
    fn joiners_outside_emoji_stay_visible() {
        for (text, shown) in [
            ("a\u{200D}b", "a<U+200D>b"),
            ("\u{1F469}\u{200D}", "\u{1F469}<U+200D>"),
            ("\u{200D}\u{1F4BB}", "<U+200D>\u{1F4BB}"),
            ("\u{1F469}\u{200D}x", "\u{1F469}<U+200D>x"),
            (
                "\u{1F469}\u{200D}\u{200D}\u{1F4BB}",
                "\u{1F469}<U+200D><U+200D>\u{1F4BB}",
            ),
            ("\u{1F469}\u{202E}\u{1F4BB}", "\u{1F469}<U+202E>\u{1F4BB}"),
            (
                "\u{1F469}\u{200D}\u{202E}\u{1F4BB}",
                "\u{1F469}<U+200D><U+202E>\u{1F4BB}",
            ),
        ] {
            assert_eq!(sanitize(text), shown, "{text:?}");
        }
    }

    #[test]
    fn multi_line_text_splits() {
        assert_eq!(sanitize_lines("one\r\ntwo\n"), vec!["one", "two"]);
        assert_eq!(sanitize_lines("plain"), vec!["plain"]);
    }
}
