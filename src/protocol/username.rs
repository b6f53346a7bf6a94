//! Usernames: what a member is called on every screen in the room.

use super::limits::MAX_USERNAME_CHARS;

/// Why a username was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("the username is empty")]
    Empty,
    #[error("the username is longer than {MAX_USERNAME_CHARS} characters")]
    TooLong,
    #[error("the username may not contain spaces, control or formatting characters")]
    BadCharacter,
}

/// Checks a username: 1–32 printable characters, no whitespace, no control
/// characters and no invisible formatting characters (bidi overrides, zero
/// width joiners), which could make one name look like another.
pub fn validate(name: &str) -> Result<(), UsernameError> {
    if name.is_empty() {
        return Err(UsernameError::Empty);
    }
    if name.chars().count() > MAX_USERNAME_CHARS {
        return Err(UsernameError::TooLong);
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || is_format_char(c))
    {
        return Err(UsernameError::BadCharacter);
    }
    Ok(())
}

/// What a name looks like on a screen, twice over: its Unicode TS #39
/// confusable skeleton, and that of its lowercase. Two names that share
/// either could pass for each other (`ann`, `Ann` and `аnn` with a Cyrillic
/// `а`; `bob1`, `bobl` and `bobI`; `mike` and `rnike`), so a room lets in at
/// most one of them: a member cannot be impersonated by a lookalike name.
pub fn likenesses(name: &str) -> [String; 2] {
    [
        unicode_security::skeleton(name).collect(),
        unicode_security::skeleton(&name.to_lowercase()).collect(),
    ]
}

/// Unicode "format" characters (category Cf) that matter for spoofing:
/// bidirectional controls, zero-width characters and the byte order mark.
pub fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        for ok in ["alice", "Zoë", "a", "x_y-z.1", "名前", &"a".repeat(32)] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate(""), Err(UsernameError::Empty));
        assert_eq!(validate(&"a".repeat(33)), Err(UsernameError::TooLong));
        for bad in [
            "a b",
            "a\tb",
            "a\u{1b}[2J",
            "evil\u{202E}",
            "zero\u{200B}width",
            "nl\n",
        ] {
            assert_eq!(validate(bad), Err(UsernameError::BadCharacter), "{bad:?}");
        }
    }

    /// Whether two names could pass for each other: they share a likeness.
    fn look_alike(a: &str, b: &str) -> bool {
        let (a, b) = (likenesses(a), likenesses(b));
        a.iter().any(|key| b.contains(key))
    }

    #[test]
    fn lookalikes() {
        for (a, b) in [
            ("ann", "Ann"),
            ("ann", "ANN"),
            ("ann", "\u{430}nn"), // Cyrillic а
            ("bob1", "bobl"),
            ("bobl", "bobI"),
            ("bobi", "BOBI"),
            ("mike", "rnike"),
            ("zoë", "zoe\u{308}"), // composed and decomposed
            ("paypal", "p\u{430}yp\u{430}l"),
        ] {
            assert!(look_alike(a, b), "{a:?} {b:?}");
        }
        for (a, b) in [
            ("ann", "anna"),
            ("bob", "rob"),
            ("bobi", "bobl"),
            ("名前", "名"),
        ] {
            assert!(!look_alike(a, b), "{a:?} {b:?}");
        }
    }
}
