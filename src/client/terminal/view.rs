//! Drawing the bottom of the screen: the live area. Above it the room's
//! lines scroll by as any program's output does; the live area is redrawn
//! below them each time one is printed:
//!
//! ```text
//! 07:16 bob: are you there?           <- printed, part of the scrollback
//! 07:17 ann: yes, one moment          <- (ann's own message, confirmed)
//!   … ann: here it is                 <- pending: sent, not yet confirmed
//! ann> the line being typed_          <- the input line
//! ```
//!
//! Every live row is drawn narrower than the terminal, so no row wraps: the
//! input line scrolls sideways under the cursor when it is longer than the
//! width, and a pending message longer than a row is cut short (it is
//! printed whole once confirmed). So the live area is exactly as many rows
//! as it has lines, and clearing it never touches a line above it. On a
//! terminal that re-wraps its lines when it narrows, a resize can leave a
//! stale piece of the old live area above the new one; never less than the
//! room's lines.
//!
//! No I/O: [`View`] returns the bytes to write.

use std::fmt::Write as _;

use unicode_width::UnicodeWidthStr;

use crate::client::sanitize::sanitize;
use crate::protocol::username::is_emoji_joiner;

/// Columns assumed when the terminal does not say.
pub const DEFAULT_WIDTH: usize = 80;

/// Below this many columns for the text, the prompt is left out.
const MIN_INPUT_COLUMNS: usize = 8;

/// What the live area shows.
#[derive(Debug, Clone, Copy)]
pub struct Live<'a> {
    /// Messages sent and not yet confirmed, plain text.
    pub pending: &'a [String],
    /// The prompt without escape codes (to measure it), and as shown.
    pub prompt: (&'a str, &'a str),
    /// The input line and the cursor in it.
    pub line: &'a [char],
    /// Where in `line` the cursor is, in characters.
    pub cursor: usize,
}

/// The live area as it is on screen; see the module docs.
#[derive(Debug)]
pub struct View {
    /// Columns of the terminal.
    width: usize,
    /// Rows of the live area on screen now, the input line included; the
    /// cursor is on the last. Zero when nothing is drawn.
    rows: usize,
    /// The widths of those rows as drawn, the input line's last.
    drawn: Vec<usize>,
    /// The width they were drawn at.
    drawn_at: usize,
    /// The column of the cursor in the input line, as drawn.
    cursor_column: usize,
    /// Whether the terminal re-wraps lines when it narrows.
    rewraps: bool,
    /// The first column of the input line's text that is shown, when it is
    /// longer than the room for it.
    scroll: usize,
    /// Whether to draw pending lines dim (no escape codes when styling is off).
    dim: bool,
}

impl View {
    pub fn new(width: usize, dim: bool, rewraps: bool) -> Self {
        let width = width.max(2);
        Self {
            width,
            rows: 0,
            drawn: Vec::new(),
            drawn_at: width,
            cursor_column: 0,
            rewraps,
            scroll: 0,
            dim,
        }
    }

    /// The terminal is now `width` columns wide.
    pub fn resize(&mut self, width: usize) {
        let width = width.max(2);
        if width != self.width {
            // Show as much of the line as the new width holds.
            self.scroll = 0;
        }
        self.width = width;
    }

    /// Erases the live area, leaving the cursor where its first row began.
    pub fn clear(&mut self, out: &mut String) {
        if self.rows == 0 {
            return;
        }
        out.push('\r');
        let up = self.rows_above_cursor();
        if up > 0 {
            let _ = write!(out, "\x1b[{up}A");
        }
        out.push_str("\x1b[J");
        self.rows = 0;
        self.drawn.clear();
    }

    /// How many rows up the live area begins: one per live row above the
    /// input line, unless the terminal narrowed since they were drawn and
    /// re-wrapped them.
    fn rows_above_cursor(&self) -> usize {
        let width = self.width;
        if !self.rewraps || width >= self.drawn_at {
            return self.rows - 1;
        }
        let Some((_, above)) = self.drawn.split_last() else {
            return self.rows - 1;
        };
        let rows = |drawn: usize| drawn.div_ceil(width).max(1);
        let input_rows = self.drawn.last().map_or(1, |&d| rows(d));
        let cursor_row = (self.cursor_column / width).min(input_rows - 1);
        above.iter().map(|&d| rows(d)).sum::<usize>() + cursor_row
    }

    /// The screen was cleared: nothing of the live area is left on it.
    pub fn forget(&mut self) {
        self.rows = 0;
        self.drawn.clear();
    }

    /// Redraws the live area in place.
    pub fn redraw(&mut self, live: Live<'_>, out: &mut String) {
        self.clear(out);
        self.draw(live, out);
    }

    /// Prints `text` (whole lines, each ending in a newline) above the
    /// live area, and the live area again below it.
    pub fn print_above(&mut self, text: &str, live: Live<'_>, out: &mut String) {
        self.clear(out);
        out.push_str(text);
        self.draw(live, out);
    }

    /// Leaves the live area on screen as it is and moves below it, for
    /// whatever is printed after the chat ends.
    pub fn finish(&mut self, out: &mut String) {
        if self.rows > 0 {
            out.push_str("\r\n");
        }
        self.rows = 0;
        self.drawn.clear();
    }

    /// Draws the live area from the cursor, which is at the start of a row.
    fn draw(&mut self, live: Live<'_>, out: &mut String) {
        let room = self.width - 1;
        self.drawn_at = self.width;
        for line in live.pending {
            let shown = cut(&sanitize(line), room);
            self.drawn.push(shown.width());
            if self.dim {
                let _ = write!(out, "\x1b[2m{shown}\x1b[0m\r\n");
            } else {
                let _ = write!(out, "{shown}\r\n");
            }
            self.rows += 1;
        }
        self.draw_input(live, out);
        self.rows += 1;
    }

    /// The prompt and as much of the line as fits, the cursor in view.
    fn draw_input(&mut self, live: Live<'_>, out: &mut String) {
        let (raw, styled) = live.prompt;
        let prompt_width = raw.width();
        let (prompt, room) = match (self.width - 1).checked_sub(prompt_width) {
            Some(room) if room >= MIN_INPUT_COLUMNS => (styled, room),
            _ => ("", self.width - 1),
        };
        let cells = cells(live.line);
        let cursor_column: usize = cells[..live.cursor].iter().map(|(_, w)| w).sum();
        if cursor_column < self.scroll {
            self.scroll = cursor_column;
        } else if cursor_column >= self.scroll + room {
            self.scroll = cursor_column + 1 - room;
        }
        self.scroll = cell_start_from(&cells, self.scroll);
        out.push_str(prompt);
        let shown_prompt = if prompt.is_empty() { 0 } else { prompt_width };
        let mut column = 0;
        let mut drawn = shown_prompt;
        for (shown, width) in &cells {
            if column >= self.scroll && column + width <= self.scroll + room {
                out.push_str(shown);
                drawn += width;
            }
            column += width;
        }
        self.drawn.push(drawn);
        let to_cursor = shown_prompt + cursor_column - self.scroll;
        self.cursor_column = to_cursor;
        out.push('\r');
        if to_cursor > 0 {
            let _ = write!(out, "\x1b[{to_cursor}C");
        }
    }
}

/// How each typed character is shown, and its width: a newline (from a
/// paste) as `↵`, anything invisible or controlling visibly escaped, as in
/// received messages; a joiner inside an emoji sequence (`👩‍💻`) stays.
fn cells(line: &[char]) -> Vec<(String, usize)> {
    line.iter()
        .enumerate()
        .map(|(at, &c)| {
            let shown = match c {
                '\n' => "↵".to_owned(),
                _ if is_emoji_joiner(line, at) => c.to_string(),
                c => sanitize(c.encode_utf8(&mut [0; 4])),
            };
            let width = shown.width();
            (shown, width)
        })
        .collect()
}

/// The first column at or after `column` where a cell starts: a wide
/// character cut by the left edge is left out whole, so every column shown
/// is where the cursor arithmetic puts it.
fn cell_start_from(cells: &[(String, usize)], column: usize) -> usize {
    let mut start = 0;
    for (_, width) in cells {
        if start >= column {
            break;
        }
        start += width;
    }
    start.max(column)
}

/// `text` cut to at most `room` columns, with `…` where it was cut.
fn cut(text: &str, room: usize) -> String {
    if text.width() <= room {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.encode_utf8(&mut [0; 4]).width();
        if used + w + 1 > room {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live<'a>(pending: &'a [String], line: &'a [char], cursor: usize) -> Live<'a> {
        Live {
            pending,
            prompt: ("ann> ", "ann> "),
            line,
            cursor,
        }
    }

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn the_input_line_with_the_cursor_after_the_prompt() {
        let mut view = View::new(40, false, false);
        let line = chars("hi");
        let mut out = String::new();
        view.redraw(live(&[], &line, 2), &mut out);
        assert_eq!(out, "ann> hi\r\x1b[7C");
        // Redrawing erases the one row first.
        let mut out = String::new();
        view.redraw(live(&[], &line, 0), &mut out);
        assert_eq!(out, "\r\x1b[Jann> hi\r\x1b[5C");
    }

    #[test]
    fn printing_above_clears_every_live_row_and_only_those() {
        let mut view = View::new(40, false, false);
        let pending = ["… ann: one".to_owned(), "… ann: two".to_owned()];
        let mut out = String::new();
        view.redraw(live(&pending, &[], 0), &mut out);
        assert_eq!(out, "… ann: one\r\n… ann: two\r\nann> \r\x1b[5C");
        let mut out = String::new();
        view.print_above("07:17 bob: hi\n", live(&[], &[], 0), &mut out);
        assert_eq!(out, "\r\x1b[2A\x1b[J07:17 bob: hi\nann> \r\x1b[5C");
    }

    #[test]
    fn a_long_line_scrolls_sideways_and_never_wraps() {
        let mut view = View::new(20, false, false);
        let line = chars("abcdefghijklmnopqrstuvwxyz");
        let mut out = String::new();
        view.redraw(live(&[], &line, line.len()), &mut out);
        // 19 columns: the prompt's 5, 14 for text, the cursor after `z`.
        assert_eq!(out, "ann> nopqrstuvwxyz\r\x1b[18C");
        let mut out = String::new();
        view.redraw(live(&[], &line, 0), &mut out);
        assert_eq!(out, "\r\x1b[Jann> abcdefghijklmn\r\x1b[5C");
    }

    #[test]
    fn a_wide_character_at_the_left_edge_is_left_out_whole() {
        let mut view = View::new(20, false, false);
        // 27 columns of text in 14: the edge falls inside a `世`.
        let line = chars("a世世世世世世世世世世世世世");
        let mut out = String::new();
        view.redraw(live(&[], &line, line.len()), &mut out);
        // Six whole characters, the cursor right after them.
        assert_eq!(out, "ann> 世世世世世世\r\x1b[17C");
    }

    #[test]
    fn emoji_joined_into_one_are_typed_as_they_are() {
        let mut view = View::new(40, false, false);
        let line = chars("\u{1F469}\u{200D}\u{1F4BB} a\u{200D}b");
        let mut out = String::new();
        view.redraw(live(&[], &line, line.len()), &mut out);
        assert!(
            out.contains("\u{1F469}\u{200D}\u{1F4BB} a<U+200D>b"),
            "{out:?}"
        );
    }

    #[test]
    fn typed_control_characters_and_newlines_are_shown_not_sent_to_the_terminal() {
        let mut view = View::new(40, false, false);
        let line = chars("a\x1b[2Jb\nc");
        let mut out = String::new();
        view.redraw(live(&[], &line, line.len()), &mut out);
        assert_eq!(out, "ann> a^[[2Jb↵c\r\x1b[14C");
    }

    #[test]
    fn a_long_pending_message_is_cut_to_one_row() {
        let mut view = View::new(12, true, false);
        let pending = ["… ann: a long message".to_owned()];
        let mut out = String::new();
        view.redraw(live(&pending, &[], 0), &mut out);
        assert!(out.starts_with("\x1b[2m… ann: a l…\x1b[0m\r\n"), "{out:?}");
    }

    #[test]
    fn a_narrow_terminal_drops_the_prompt() {
        let mut view = View::new(10, false, false);
        let line = chars("hi");
        let mut out = String::new();
        view.redraw(live(&[], &line, 2), &mut out);
        assert_eq!(out, "hi\r\x1b[2C");
    }

    #[test]
    fn after_narrowing_a_rewrapping_terminal_every_piece_of_the_live_area_is_cleared() {
        let pending = ["… ann: a pending message of thirty".to_owned()];
        let line = chars(&"x".repeat(60));
        for (rewraps, cursor, up) in [(false, 60, 1), (true, 60, 4), (true, 0, 2)] {
            let mut view = View::new(80, false, rewraps);
            let mut out = String::new();
            view.redraw(live(&pending, &line, cursor), &mut out);
            // 34 and 65 columns wide; at 30 columns, 2 rows and 3.
            view.resize(30);
            let mut out = String::new();
            view.clear(&mut out);
            assert_eq!(out, format!("\r\x1b[{up}A\x1b[J"), "{rewraps} {cursor}");
        }
        // Widening changes nothing: rows never wrapped in the first place.
        let mut view = View::new(40, false, true);
        let mut out = String::new();
        view.redraw(live(&pending, &line, 3), &mut out);
        view.resize(100);
        let mut out = String::new();
        view.clear(&mut out);
        assert_eq!(out, "\r\x1b[1A\x1b[J");
    }

    #[test]
    fn finishing_moves_below_the_live_area() {
        let mut view = View::new(40, false, false);
        let mut out = String::new();
        view.redraw(live(&[], &[], 0), &mut out);
        out.clear();
        view.finish(&mut out);
        assert_eq!(out, "\r\n");
        out.clear();
        view.clear(&mut out);
        assert_eq!(out, "");
    }
}
