//! A file path as a person types it after `/send` or `/save`, or as a
//! terminal pastes it when a file is dragged in: `~/notes.txt`,
//! `'/tmp/my notes.txt'`, `"/tmp/my notes.txt"`, `my\ notes.txt`, or plain
//! `my notes.txt`. The whole argument is one path, so spaces outside quotes
//! are kept as typed; quotes and backslashes work as in a POSIX shell.

use std::path::{Path, PathBuf};

/// Why a typed path could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the path has a {0} quote that is never closed: close it, or leave the quotes out")]
pub struct UnclosedQuote(&'static str);

/// The path `typed` names, with a leading `~` standing for `home` (when
/// known). Surrounding blanks are ignored.
pub fn parse(typed: &str, home: Option<&Path>) -> Result<PathBuf, UnclosedQuote> {
    let typed = typed.trim();
    if let (Some(home), Some(rest)) = (home, typed.strip_prefix('~'))
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return Ok(home.join(unquote(rest.trim_start_matches('/'))?));
    }
    Ok(PathBuf::from(unquote(typed)?))
}

/// The home directory `~` stands for.
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Removes shell quoting: `'...'` is literal, `"..."` takes `\"` and `\\`,
/// and outside quotes a backslash keeps the character after it.
fn unquote(text: &str) -> Result<String, UnclosedQuote> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next().ok_or(UnclosedQuote("single"))? {
                    '\'' => break,
                    c => out.push(c),
                }
            },
            '"' => loop {
                match chars.next().ok_or(UnclosedQuote("double"))? {
                    '"' => break,
                    '\\' => match chars.next().ok_or(UnclosedQuote("double"))? {
                        c @ ('"' | '\\' | '$' | '`') => out.push(c),
                        c => out.extend(['\\', c]),
                    },
                    c => out.push(c),
                }
            },
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The most directory entries Tab looks at.
const MAX_COMPLETIONS: usize = 1000;

/// Tab completion of a path typed as far as `typed`: what the whole of it
/// may become, each escaped as a shell would (`my\ notes.txt`), a directory
/// with `/` after it. Hidden entries only when the name typed starts with a
/// dot. Nothing for a path with an unclosed quote.
pub fn complete(typed: &str, home: Option<&Path>) -> Vec<String> {
    let typed = typed.trim_start();
    let split = typed.rfind('/').map_or(0, |slash| slash + 1);
    let (dir_typed, name_typed) = typed.split_at(split);
    let Ok(name) = unquote(name_typed) else {
        return Vec::new();
    };
    let dir = match dir_typed {
        "" => PathBuf::from("."),
        typed => match parse(typed, home) {
            Ok(dir) => dir,
            Err(_) => return Vec::new(),
        },
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .take(MAX_COMPLETIONS)
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().into_string().ok()?;
            let shown =
                file.starts_with(&name) && (name.starts_with('.') || !file.starts_with('.'));
            let is_dir = entry.path().is_dir();
            shown.then(|| {
                format!(
                    "{dir_typed}{}{}",
                    escape(&file),
                    if is_dir { "/" } else { "" }
                )
            })
        })
        .collect();
    found.sort();
    found
}

/// `name` with a backslash before each character a shell would take
/// specially, so that [`parse`] reads it back as it is.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_whitespace() || "'\"\\()&;|<>$`!*?[]#{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(typed: &str) -> PathBuf {
        parse(typed, Some(Path::new("/home/ann"))).unwrap()
    }

    #[test]
    fn paths_are_taken_as_people_type_them() {
        assert_eq!(path("notes.txt"), Path::new("notes.txt"));
        assert_eq!(path("my notes.txt"), Path::new("my notes.txt"));
        assert_eq!(path(r"my\ notes.txt"), Path::new("my notes.txt"));
        assert_eq!(path("'/tmp/my notes.txt'"), Path::new("/tmp/my notes.txt"));
        assert_eq!(
            path("\"/tmp/my notes.txt\""),
            Path::new("/tmp/my notes.txt")
        );
        assert_eq!(path(" '/tmp/x y' "), Path::new("/tmp/x y"), "dragged in");
        assert_eq!(path(r#""a \"b\" \n""#), Path::new(r#"a "b" \n"#));
        assert_eq!(path("'it'\\''s'"), Path::new("it's"));
    }

    #[test]
    fn a_leading_tilde_is_the_home_directory() {
        assert_eq!(path("~/notes.txt"), Path::new("/home/ann/notes.txt"));
        assert_eq!(path("~"), Path::new("/home/ann"));
        assert_eq!(
            path("~/'my notes.txt'"),
            Path::new("/home/ann/my notes.txt")
        );
        assert_eq!(path("~bob/x"), Path::new("~bob/x"), "no other users' homes");
        assert_eq!(path("'~/x'"), Path::new("~/x"), "quoted, it is literal");
        assert_eq!(path("a/~/x"), Path::new("a/~/x"));
        assert_eq!(parse("~/x", None).unwrap(), Path::new("~/x"));
    }

    #[test]
    fn completion_escapes_what_it_offers_and_reads_back_the_same_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("my notes.txt"), "").unwrap();
        std::fs::write(dir.path().join("my (old) notes"), "").unwrap();
        std::fs::write(dir.path().join(".hidden"), "").unwrap();
        std::fs::create_dir(dir.path().join("myfiles")).unwrap();
        let base = format!("{}/", dir.path().display());
        let found = complete(&format!("{base}my"), None);
        assert_eq!(
            found,
            [
                format!("{base}my\\ \\(old\\)\\ notes"),
                format!("{base}my\\ notes.txt"),
                format!("{base}myfiles/"),
            ]
        );
        for offered in &found {
            assert!(parse(offered, None).unwrap().exists(), "{offered}");
        }
        assert!(complete(&base, None).iter().all(|f| !f.contains(".hidden")));
        assert_eq!(
            complete(&format!("{base}.h"), None),
            [format!("{base}.hidden")]
        );
        assert_eq!(
            complete(&format!("{base}my\\ n"), None),
            [format!("{base}my\\ notes.txt")]
        );
        assert!(complete("'/tmp/x", None).is_empty());
    }

    #[test]
    fn completion_after_a_tilde_looks_in_the_home_directory() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("notes.txt"), "").unwrap();
        assert_eq!(complete("~/no", Some(home.path())), ["~/notes.txt"]);
    }

    #[test]
    fn an_unclosed_quote_is_an_error() {
        assert!(parse("'/tmp/x", None).is_err());
        assert!(parse("\"/tmp/x", None).is_err());
        let message = parse("'/tmp/x", None).unwrap_err().to_string();
        assert!(message.contains("never closed"), "{message}");
    }
}
