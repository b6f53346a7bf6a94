//! Usernames: what a member is called on every screen in the room.

use unicode_normalization::UnicodeNormalization;

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
/// characters, no formatting characters (bidi overrides, zero width joiners,
/// tags) and nothing else a screen shows as nothing (Hangul fillers, the
/// braille blank), any of which could make a name look empty or like
/// another. Emoji presentation selectors are allowed: phones add them to
/// `❤️` and the like, and a name's likenesses ignore them. So are joiners
/// that make two emoji one (`👩‍💻`, see [`is_emoji_joiner`]).
pub fn validate(name: &str) -> Result<(), UsernameError> {
    if name.is_empty() {
        return Err(UsernameError::Empty);
    }
    if name.chars().count() > MAX_USERNAME_CHARS {
        return Err(UsernameError::TooLong);
    }
    let chars: Vec<char> = name.chars().collect();
    let refused = |at: usize| {
        let c = chars[at];
        c.is_whitespace()
            || c.is_control()
            || (is_hidden_in_name(c) && !is_emoji_joiner(&chars, at))
    };
    if (0..chars.len()).any(refused) {
        return Err(UsernameError::BadCharacter);
    }
    Ok(())
}

/// What a name looks like on a screen, three ways, once compatibility forms
/// are folded (NFKC): its Unicode TS #39 confusable skeleton, that of its
/// lowercase, and the lowercase of its skeleton skeletonized again. Two
/// names that share any of them could pass for each other (`ann`, `Ann` and
/// `аnn` with a Cyrillic `а`; `bob1`, `bobl` and `bobI`; `mike` and `rnike`;
/// `Bob` and `Вob` with a Cyrillic `В`, whose skeleton is `B` but whose
/// lowercase `в` is no Latin letter's; `ⓐnn` and `ann`), so a room lets in
/// at most one of them: a member cannot be impersonated by a lookalike name.
/// Skeletons drop joiners, so `ann👩‍💻` and `ann👩💻` are alike too.
pub fn likenesses(name: &str) -> [String; 3] {
    // Compatibility forms first (`ⓐ`, `ᵃ`, `ᴬ`, `ⁿ` are `a`, `a`, `A`, `n`
    // in another dress), which the skeleton alone leaves as they are.
    let name: String = name.nfkc().collect();
    let skeleton: String = unicode_security::skeleton(&name).collect();
    let folded = unicode_security::skeleton(&skeleton.to_lowercase()).collect();
    [
        skeleton,
        unicode_security::skeleton(&name.to_lowercase()).collect(),
        folded,
    ]
}

/// Unicode "format" characters that change how text reads without being
/// seen: bidirectional controls, zero-width characters, the byte order mark
/// and interlinear annotation marks. Messages and file names show them as
/// escapes; visible format marks and emoji flag tags are left alone there.
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

/// Joins emoji into one (`👩` `💻` into `👩‍💻`); invisible anywhere else.
const ZERO_WIDTH_JOINER: char = '\u{200D}';

/// Whether `chars[at]` is a zero-width joiner that is part of an emoji
/// sequence (`👩‍💻`, `🏳️‍🌈`): an emoji before it, perhaps with its
/// presentation selector, and one after it. Such a joiner is shown as it
/// is; elsewhere it could hide text, and stays an escape.
pub fn is_emoji_joiner(chars: &[char], at: usize) -> bool {
    let before = match &chars[..at] {
        [.., emoji, '\u{FE0F}'] | [.., emoji] => *emoji,
        [] => return false,
    };
    chars[at] == ZERO_WIDTH_JOINER
        && is_pictographic(before)
        && chars.get(at + 1).copied().is_some_and(is_pictographic)
}

/// Emoji pictographs (Unicode's Extended_Pictographic, in the blocks that
/// hold them, skin tones included): what an emoji sequence joins.
fn is_pictographic(c: char) -> bool {
    matches!(c,
        '\u{00A9}' | '\u{00AE}' | '\u{203C}' | '\u{2049}' | '\u{2122}' | '\u{2139}'
        | '\u{2194}'..='\u{21AA}' | '\u{2300}'..='\u{23FF}' | '\u{24C2}'
        | '\u{25AA}'..='\u{25FE}' | '\u{2600}'..='\u{27BF}' | '\u{2934}'..='\u{2935}'
        | '\u{2B00}'..='\u{2BFF}' | '\u{3030}' | '\u{303D}' | '\u{3297}' | '\u{3299}'
        | '\u{1F000}'..='\u{1FAFF}')
}

/// What a name may not contain beyond controls and spaces: every format
/// character (general category Cf, Unicode 15.1: [`is_format_char`] and the
/// visible marks and tags it leaves to messages), every default-ignorable
/// code point (Unicode's DerivedCoreProperties, assigned or not) but the
/// emoji presentation selectors, and the braille blank U+2800, which shows
/// as a space.
fn is_hidden_in_name(c: char) -> bool {
    let other_format = matches!(c,
        '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}' | '\u{0890}'..='\u{0891}'
        | '\u{08E2}' | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}' | '\u{E0020}'..='\u{E007F}');
    let ignorable = matches!(c,
        '\u{034F}' | '\u{115F}'..='\u{1160}' | '\u{17B4}'..='\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{2065}' | '\u{3164}'
        | '\u{FE00}'..='\u{FE0D}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}'
        | '\u{E0000}'..='\u{E0FFF}');
    is_format_char(c) || other_format || ignorable || c == '\u{2800}'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        for ok in [
            "alice",
            "Zoë",
            "a",
            "x_y-z.1",
            "名前",
            "Ann\u{2764}\u{FE0F}",
            "ann\u{1F469}\u{200D}\u{1F4BB}",       // 👩‍💻
            "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}",  // 🏳️‍🌈
            "\u{1F469}\u{1F3FD}\u{200D}\u{1F692}", // 👩🏽‍🚒
            "محمد",
            &"a".repeat(32),
        ] {
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
            "tag\u{E0041}",
            "hangul\u{3164}filler",
            "\u{3164}",
            "vs\u{FE00}",
            "unassigned\u{E0080}",
            "braille\u{2800}blank",
            "\u{0600}mark",
            "cgj\u{34F}",
            "ann\u{200D}",
            "a\u{200D}b",
            "\u{1F469}\u{200D}b",
            "a\u{200D}\u{1F4BB}",
            "\u{1F469}\u{200D}\u{200D}\u{1F4BB}",
            "\u{1F469}\u{200D}\u{202E}\u{1F4BB}",
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
            ("Bob", "\u{412}ob"),   // Cyrillic В
            ("Hank", "\u{41D}ank"), // Cyrillic Н
            ("Tom", "\u{422}om"),   // Cyrillic Т
            ("Kim", "\u{41A}im"),   // Cyrillic К
            ("Max", "\u{41C}ax"),   // Cyrillic М
            ("Xena", "\u{3A7}ena"), // Greek Χ
            ("oleg", "0leg"),
            ("ann", "\u{24D0}nn"),               // circled ⓐ
            ("ann", "\u{1D43}nn"),               // modifier ᵃ
            ("Ann", "\u{1D2C}nn"),               // modifier ᴬ
            ("ann", "a\u{207F}n"),               // superscript ⁿ
            ("ann", "\u{FF41}\u{FF4E}\u{FF4E}"), // fullwidth
            ("ann\u{1F469}\u{200D}\u{1F4BB}", "ann\u{1F469}\u{1F4BB}"), // joined or not
        ] {
            assert!(look_alike(a, b), "{a:?} {b:?}");
        }
        for (a, b) in [
            ("ann", "anna"),
            ("bob", "rob"),
            ("bobi", "bobl"),
            ("名前", "名"),
            ("ann", "a\u{323}nn"), // ạ, a letter of its own in Vietnamese
        ] {
            assert!(!look_alike(a, b), "{a:?} {b:?}");
        }
    }
}
