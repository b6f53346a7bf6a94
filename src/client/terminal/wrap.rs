//! The conversation's lines wrapped at the terminal's width with a hanging
//! indent: a long message goes on under its text, not under its time
//! stamp, as in irssi and weechat. The renderer's escape codes take no
//! columns, and the style in force where a row ends is carried onto the
//! next one.
//!
//! No I/O: the terminal front end wraps each line just before printing it.
//! (A line wrapped at one width stays so when the window changes; the
//! terminal re-wraps only its own wrapping.)

use unicode_width::UnicodeWidthChar;

/// Reset of every style: what the renderer ends each styled stretch with.
const RESET: &str = "\x1b[0m";

/// How far the text of a line starts past its time stamp and sender, at
/// most: beyond it (a very long name), rows go on under the time.
const MAX_INDENT: usize = 40;

/// One piece of a rendered line.
enum Piece<'a> {
    /// An escape sequence (`ESC [ … m`): no columns.
    Escape(&'a str),
    /// A character and the columns it takes.
    Char(char, usize),
}

/// `line` as rows of at most `width` columns (the last one left free but
/// for a space), broken after a space where
/// a row has one. A line that fits is left as it is; the rows after the
/// first of one that does not start with spaces up to where its text
/// starts (see [`text_start`]).
pub fn wrap(line: &str, width: usize) -> Vec<String> {
    let pieces = pieces(line);
    let chars: Vec<(char, usize)> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Char(c, w) => Some((*c, *w)),
            Piece::Escape(_) => None,
        })
        .collect();
    if chars.iter().map(|(_, w)| w).sum::<usize>() <= width || width < 8 {
        return vec![line.to_owned()];
    }
    // One column short of the edge: a row that ends exactly at the edge
    // leaves some terminals a row further down than counted.
    let room = width - 1;
    let visible: String = chars.iter().map(|(c, _)| c).collect();
    let indent = text_start(&visible).min(room / 2);
    let breaks = breaks(&chars, room, indent);
    let mut rows = Vec::new();
    let mut row = String::new();
    let mut style = String::new();
    let mut at = 0;
    let mut next_break = breaks.iter().copied().peekable();
    for piece in pieces {
        match piece {
            Piece::Escape(code) => {
                row.push_str(code);
                if code == RESET {
                    style.clear();
                } else {
                    style.push_str(code);
                }
            }
            Piece::Char(c, _) => {
                if next_break.next_if_eq(&at).is_some() {
                    if !style.is_empty() {
                        row.push_str(RESET);
                    }
                    rows.push(std::mem::take(&mut row));
                    row = format!("{}{style}", " ".repeat(indent));
                }
                row.push(c);
                at += 1;
            }
        }
    }
    rows.push(row);
    rows
}

/// Where rows after the first start, as indexes into `chars`: after the
/// last space that fits in the row (never one inside the part the indent
/// spans), or where the row is full.
fn breaks(chars: &[(char, usize)], room: usize, indent: usize) -> Vec<usize> {
    let mut breaks = Vec::new();
    let mut row_start = indent;
    let mut used = 0;
    let mut after_space = None;
    for (at, &(c, w)) in chars.iter().enumerate() {
        // A space may take the spare column at the edge: the row breaks
        // after it, not before it.
        let space_at_edge = c == ' ' && used + w <= room + 1;
        if used + w > room && !space_at_edge {
            let start = match after_space {
                Some(start) if start > row_start => start,
                _ => at,
            };
            breaks.push(start);
            used = indent + chars[start..at].iter().map(|(_, w)| w).sum::<usize>();
            row_start = start;
            after_space = None;
        }
        used += w;
        if c == ' ' {
            after_space = Some(at + 1);
        }
    }
    breaks
}

/// The column where a line's text starts, judged from what it shows:
/// under the text of `HH:MM name: text`, `HH:MM -- text`, `HH:MM !! text`,
/// `HH:MM * name text`, `-- text`; under the first character of an
/// indented block line; else under the time, or at the edge.
fn text_start(visible: &str) -> usize {
    let spaces = visible.chars().take_while(|c| *c == ' ').count();
    if spaces > 0 {
        return spaces;
    }
    let chars: Vec<char> = visible.chars().collect();
    let stamped = chars.len() > 6
        && chars[..5].iter().enumerate().all(|(i, c)| {
            if i == 2 {
                *c == ':'
            } else {
                c.is_ascii_digit()
            }
        })
        && chars[5] == ' ';
    if !stamped {
        // The banner's and the client's own notes: `-- text`, `!! text`.
        let marked = ["-- ", "!! "].iter().any(|mark| visible.starts_with(mark));
        return if marked { 3 } else { 0 };
    }
    let rest: String = chars[6..].iter().collect();
    if ["-- ", "!! ", "* "]
        .iter()
        .any(|mark| rest.starts_with(mark))
    {
        return 6 + rest.find(' ').map_or(0, |at| at + 1);
    }
    match rest.find(": ") {
        Some(at) if rest[..at].chars().count() + 8 <= MAX_INDENT => {
            6 + rest[..at].chars().count() + 2
        }
        _ => 6,
    }
}

/// `line` cut into escape sequences and characters.
fn pieces(line: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if let Some(code) = escape_at(rest) {
            pieces.push(Piece::Escape(code));
            rest = &rest[code.len()..];
            continue;
        }
        pieces.push(Piece::Char(c, c.width().unwrap_or(0)));
        rest = &rest[c.len_utf8()..];
    }
    pieces
}

/// The escape sequence `text` starts with (`ESC [`, parameters, a final
/// byte), if it starts with one.
fn escape_at(text: &str) -> Option<&str> {
    let body = text.strip_prefix("\x1b[")?;
    let end = body.find(|c: char| ('\x40'..='\x7e').contains(&c))?;
    Some(&text[..2 + end + 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_fits_is_left_alone() {
        let line = "12:34 ann: hello";
        assert_eq!(wrap(line, 80), [line]);
        assert_eq!(wrap(&"x".repeat(80), 80), ["x".repeat(80)]);
    }

    #[test]
    fn a_long_message_goes_on_under_its_text() {
        let line = format!("12:34 ann: {}", "word ".repeat(10).trim_end());
        let rows = wrap(&line, 31);
        assert_eq!(
            rows,
            [
                "12:34 ann: word word word word ",
                "           word word word word ",
                "           word word",
            ]
        );
        assert!(rows.iter().all(|r| r.trim_end().chars().count() < 31));
    }

    #[test]
    fn each_kind_of_line_hangs_under_its_text() {
        let long = "x".repeat(80);
        let cases = [
            (format!("12:34 -- {long}"), 9),
            (format!("12:34 !! {long}"), 9),
            (format!("12:34 * ann {long}"), 8),
            (format!("12:34 [private] ann -> bob: {long}"), 28),
            (format!("    {long}"), 4),
            (format!("-- {long}"), 3),
            (long.clone() + &long, 0),
        ];
        for (line, indent) in cases {
            let rows = wrap(&line, 70);
            assert!(rows.len() > 1, "{line}");
            let pad = rows[1].chars().take_while(|c| *c == ' ').count();
            assert_eq!(pad, indent, "{line:?}: {rows:?}");
        }
    }

    #[test]
    fn styles_take_no_room_and_carry_over() {
        let bold = "\x1b[1m";
        let line = format!("12:34 {bold}ann{RESET}: \x1b[7m{}{RESET}", "y".repeat(30));
        let rows = wrap(&line, 24);
        assert_eq!(rows.len(), 3, "{rows:?}");
        // Broken inside the reverse video: it ends on the row and starts
        // again on the next, after the indent.
        assert!(rows[0].ends_with(RESET), "{rows:?}");
        assert!(rows[1].starts_with("           \x1b[7m"), "{rows:?}");
        let visible = |r: &str| -> usize {
            pieces(r)
                .iter()
                .map(|p| match p {
                    Piece::Char(_, w) => *w,
                    Piece::Escape(_) => 0,
                })
                .sum()
        };
        assert!(rows.iter().all(|r| visible(r) <= 23), "{rows:?}");
    }

    #[test]
    fn wide_characters_are_never_split() {
        let line = format!("12:34 ann: {}", "你".repeat(20));
        for row in wrap(&line, 21) {
            let columns: usize = row.chars().map(|c| c.width().unwrap_or(0)).sum();
            assert!(columns <= 20, "{row}");
        }
    }

    #[test]
    fn a_very_narrow_screen_is_left_to_the_terminal() {
        let line = format!("12:34 ann: {}", "z".repeat(20));
        assert_eq!(wrap(&line, 5), [line]);
    }
}
