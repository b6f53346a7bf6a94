//! Passphrases for a host who did not choose a password: words drawn
//! uniformly, with the operating system's randomness behind `rand`'s
//! generator, from the EFF large wordlist (7,776 words, so about 12.9 bits
//! each; the list is the Electronic Frontier Foundation's, CC BY 3.0 US,
//! <https://www.eff.org/dice>).

use crate::crypto::Password;

/// The EFF large wordlist, one word per line.
const WORDLIST: &str = include_str!("eff_large_wordlist.txt");

/// Words in a passphrase: about 77 bits. Far beyond online guessing (the
/// room takes 30 wrong passwords a minute) and beyond offline guessing of a
/// captured 1.x session (about 840,000 guesses a second per core).
pub const WORDS: usize = 6;

/// The strength of a generated passphrase, in bits.
pub fn bits() -> f64 {
    WORDS as f64 * (list().len() as f64).log2()
}

fn list() -> Vec<&'static str> {
    WORDLIST.lines().collect()
}

/// A fresh passphrase: [`WORDS`] words joined by `-` (four words of the
/// list hold a `-` themselves, such as `t-shirt`; that costs nothing, as
/// the words are what is random, not how they are read back).
pub fn generate() -> Password {
    let words = pick();
    // Sized once, so no partial copy is left behind by a reallocation.
    let mut phrase = String::with_capacity(words.iter().map(|w| w.len() + 1).sum());
    for (n, word) in words.iter().enumerate() {
        if n > 0 {
            phrase.push('-');
        }
        phrase.push_str(word);
    }
    Password::new(phrase)
}

/// [`WORDS`] words, each drawn uniformly from the list.
fn pick() -> Vec<&'static str> {
    let list = list();
    (0..WORDS)
        .map(|_| list[rand::random_range(0..list.len())])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_the_eff_large_list() {
        let list = list();
        assert_eq!(list.len(), 7776);
        let unique: std::collections::HashSet<_> = list.iter().collect();
        assert_eq!(unique.len(), 7776);
        assert_eq!((list[0], list[7775]), ("abacus", "zoom"));
        assert!((bits() - 77.5).abs() < 0.1, "{}", bits());
    }

    #[test]
    fn a_passphrase_is_words_from_the_list_and_never_the_same() {
        let list = list();
        let words = pick();
        assert_eq!(words.len(), WORDS);
        assert!(words.iter().all(|w| list.contains(w)), "{words:?}");
        let first = generate();
        let phrase = std::str::from_utf8(first.as_bytes()).unwrap();
        assert!(phrase.split('-').count() >= WORDS, "{phrase}");
        assert_ne!(generate().as_bytes(), first.as_bytes());
    }
}
