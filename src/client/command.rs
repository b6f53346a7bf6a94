//! What a person types, parsed into a [`Command`] before anything is done
//! with it, and what Tab offers to complete it with.

use std::path::PathBuf;

use super::sanitize::sanitize;
use super::typed_path::{self, UnclosedQuote};

/// Commands Tab completes, in the order they are listed.
pub const COMMANDS: [&str; 16] = [
    "/help", "/who", "/me", "/msg", "/verify", "/clear", "/resend", "/lock", "/unlock", "/admit",
    "/deny", "/send", "/files", "/save", "/quit", "/exit",
];

/// How to use each command that takes an argument, said the same way by
/// every front end.
pub const ME_USAGE: &str = "usage: /me <action>, for example /me waves";
pub const MSG_USAGE: &str = "usage: /msg <name> <text>, for example /msg ann are you free?";
pub const VERIFY_USAGE: &str = "usage: /verify <name>, for example /verify ann";
pub const RESEND_USAGE: &str = "usage: /resend <n>, with n from a message reported not delivered";
pub const ADMIT_USAGE: &str = "usage: /admit <name> lets a knocking newcomer in";
pub const DENY_USAGE: &str = "usage: /deny <name> turns a knocking newcomer away";
pub const SEND_USAGE: &str = "usage: /send <path> shares a file with the room";
pub const SAVE_USAGE: &str = "usage: /save <n> [path] writes received file n (/files lists them); \
     without a path, to its name in the current directory";

/// What every front end says to a word that is not a command.
pub fn unknown(word: &str) -> String {
    format!(
        "unknown command {word}: /help lists the commands; start with // to send a message beginning with /"
    )
}

/// One line of input, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// An empty or blank line: nothing to do.
    Nothing,
    /// A message, exactly as it is to be sent.
    Say(&'a str),
    /// `/me <action>`: sent as the text `/me <action>`, which every front end
    /// shows as `* name action`.
    Me(&'a str),
    /// `/msg <name> <text>`: a private message only `to` can read.
    Msg {
        to: &'a str,
        text: &'a str,
    },
    /// `/verify <name>`: show the safety code of the private session with them.
    Verify(&'a str),
    Help,
    Who,
    /// `/clear`: wipes the room for everyone, so it asks first.
    Clear,
    /// `/quit`, `/exit`, or a lone `q` as in the original cmd-chat.
    Quit,
    /// `/resend <n>`: send again a message reported as not delivered.
    Resend(u64),
    /// `/lock`: newcomers must knock and be admitted.
    Lock,
    /// `/unlock`: anyone with the password may join again.
    Unlock,
    /// `/admit <name>`: let a knocking newcomer in.
    Admit(&'a str),
    /// `/deny <name>`: turn a knocking newcomer away.
    Deny(&'a str),
    /// `/send <path>`: share a file with the room.
    Send(PathBuf),
    /// `/files`: list the files received, numbered.
    Files,
    /// `/save <n> [path]`: write received file `n`, the only thing that
    /// writes to disk.
    Save {
        n: usize,
        path: Option<PathBuf>,
    },
    /// A path after `/send` or `/save` that cannot be read as one.
    BadPath(UnclosedQuote),
    /// A command missing its argument, or given a wrong one: how to use it
    /// (one of the `*_USAGE` texts).
    Usage(&'static str),
    /// Something that looks like a command but is not one.
    Unknown(&'a str),
}

impl Command<'_> {
    /// The text a message to the room sends: the message itself, or
    /// `/me <action>`, which every front end shows as an action.
    pub fn room_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Command::Say(text) => Some((*text).into()),
            Command::Me(action) => Some(format!("/me {action}").into()),
            _ => None,
        }
    }
}

/// Parses one input line. A line of several lines (a paste) is a message,
/// never a command, except that one starting with `/msg <name> ` stays
/// private: a paste after `/msg bob ` must not reach the whole room.
/// `//text` sends `/text`.
pub fn parse(line: &str) -> Command<'_> {
    if let Some(rest) = line.trim_start().strip_prefix("/msg ")
        && rest.contains('\n')
    {
        return msg(rest.trim_end_matches(['\n', '\r']));
    }
    if line.contains('\n') {
        let text = line.trim_end_matches(['\n', '\r']);
        return if text.trim().is_empty() {
            Command::Nothing
        } else {
            Command::Say(text)
        };
    }
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Command::Nothing;
    }
    if trimmed == "q" {
        return Command::Quit;
    }
    if trimmed.starts_with("//") {
        return Command::Say(&line.trim_start()[1..]);
    }
    if !trimmed.starts_with('/') {
        return Command::Say(line);
    }
    let (word, rest) = trimmed
        .split_once(char::is_whitespace)
        .map_or((trimmed, ""), |(w, r)| (w, r.trim()));
    match word {
        "/quit" | "/exit" => Command::Quit,
        "/help" => Command::Help,
        "/who" => Command::Who,
        "/clear" => Command::Clear,
        "/me" if rest.is_empty() => Command::Usage(ME_USAGE),
        "/me" => Command::Me(rest),
        "/msg" => msg(rest),
        "/verify" => match rest.split_whitespace().collect::<Vec<_>>()[..] {
            [name] => Command::Verify(name.strip_prefix('@').unwrap_or(name)),
            _ => Command::Usage(VERIFY_USAGE),
        },
        "/resend" => rest
            .parse()
            .map_or(Command::Usage(RESEND_USAGE), Command::Resend),
        "/lock" => Command::Lock,
        "/unlock" => Command::Unlock,
        "/admit" if rest.is_empty() => Command::Usage(ADMIT_USAGE),
        "/admit" => Command::Admit(rest),
        "/deny" if rest.is_empty() => Command::Usage(DENY_USAGE),
        "/deny" => Command::Deny(rest),
        "/send" if rest.is_empty() => Command::Usage(SEND_USAGE),
        "/send" => typed_path::parse(rest, typed_path::home().as_deref())
            .map_or_else(Command::BadPath, Command::Send),
        "/files" => Command::Files,
        "/save" => {
            let (n, path) = rest
                .split_once(char::is_whitespace)
                .map_or((rest, ""), |(n, p)| (n, p.trim()));
            let path = (!path.is_empty())
                .then(|| typed_path::parse(path, typed_path::home().as_deref()))
                .transpose();
            match (n.parse(), path) {
                (Ok(_), Err(unclosed)) => Command::BadPath(unclosed),
                (Ok(n), Ok(path)) => Command::Save { n, path },
                (Err(_), _) => Command::Usage(SAVE_USAGE),
            }
        }
        other => Command::Unknown(other),
    }
}

/// `<name> <text>` after `/msg`; the name may be written `@name`. The text
/// is kept as typed after the space that ends the name.
fn msg(rest: &str) -> Command<'_> {
    let rest = rest.trim_start();
    let Some((name, text)) = rest.split_once([' ', '\t', '\n']) else {
        return Command::Usage(MSG_USAGE);
    };
    let name = name.strip_prefix('@').unwrap_or(name);
    if name.is_empty() || text.trim().is_empty() {
        return Command::Usage(MSG_USAGE);
    }
    let text = text.trim_start_matches([' ', '\t']);
    Command::Msg { to: name, text }
}

/// Whether an answer to a yes/no question means yes. Anything else is no.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}

/// Where the path of a `/send <path>` or `/save <n> <path>` line begins,
/// for Tab to complete file names there (the terminal does that).
pub fn path_start(line: &str) -> Option<usize> {
    // The byte past `prefix` at `from` and the blanks after it, if any.
    let past = |from: usize, prefix: &str| {
        let rest = line[from..].strip_prefix(prefix)?;
        let blank = rest.len() - rest.trim_start().len();
        (blank > 0).then_some(line.len() - rest.len() + blank)
    };
    if let Some(start) = past(0, "/send") {
        return Some(start);
    }
    let number = past(0, "/save")?;
    let digits = line[number..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    if digits == 0 {
        return None;
    }
    past(number + digits, "")
}

/// Who Tab may offer by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Names {
    /// The members: for mentions, `/msg` and `/verify`.
    pub members: Vec<String>,
    /// Who is knocking: only after `/admit` and `/deny`, the commands that
    /// take them.
    pub knocking: Vec<String>,
}

/// Tab completion for the input line `line` with the cursor at byte `pos`:
/// the byte where the completed word starts, and what it may become.
///
/// A word starting with `/` at the start of the line completes to a command;
/// any other word (with or without a leading `@`) to the name of someone in
/// the room. A name alone at the start of the line gets `": "` after it, the
/// usual way to address someone. Names that would not survive
/// [`sanitize`] unchanged are never offered, so completion cannot put a
/// control character into the line.
/// After `/admit` and `/deny`, only those knocking are offered.
pub fn complete(line: &str, pos: usize, names: &Names, me: &str) -> (usize, Vec<String>) {
    let Some(before) = line.get(..pos) else {
        return (pos, Vec::new());
    };
    let start = before
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = &before[start..];
    if start == 0 && word.starts_with('/') {
        let found = COMMANDS
            .iter()
            .filter(|c| c.starts_with(word))
            .map(|c| format!("{c} "))
            .collect();
        return (start, found);
    }
    let (at, prefix) = match word.strip_prefix('@') {
        Some(rest) => ("@", rest),
        None => ("", word),
    };
    let suffix = if start == 0 && at.is_empty() {
        ": "
    } else {
        " "
    };
    let prefix = prefix.to_lowercase();
    let names = match before.split_whitespace().next() {
        Some("/admit" | "/deny") if start > 0 => &names.knocking,
        _ => &names.members,
    };
    let mut found: Vec<String> = names
        .iter()
        .filter(|n| n.as_str() != me && sanitize(n) == **n)
        .filter(|n| n.to_lowercase().starts_with(&prefix))
        .map(|n| format!("{at}{n}{suffix}"))
        .collect();
    found.sort();
    found.dedup();
    (start, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse(""), Command::Nothing);
        assert_eq!(parse("   "), Command::Nothing);
        assert_eq!(parse("hello  "), Command::Say("hello  "));
        assert_eq!(parse("q"), Command::Quit);
        assert_eq!(parse(" q "), Command::Quit);
        assert_eq!(parse("q?"), Command::Say("q?"));
        assert_eq!(parse("/quit"), Command::Quit);
        assert_eq!(parse("/exit"), Command::Quit);
        assert_eq!(parse("/help"), Command::Help);
        assert_eq!(parse("/who"), Command::Who);
        assert_eq!(parse("/clear"), Command::Clear);
        assert_eq!(parse("/me waves  "), Command::Me("waves"));
        assert_eq!(parse("/me"), Command::Usage(ME_USAGE));
        assert_eq!(parse("/me   "), Command::Usage(ME_USAGE));
        assert_eq!(parse("/meow"), Command::Unknown("/meow"));
        assert_eq!(parse("/nick bob"), Command::Unknown("/nick"));
        assert_eq!(parse("//etc/hosts"), Command::Say("/etc/hosts"));
    }

    #[test]
    fn private_commands_parse() {
        assert_eq!(
            parse("/msg bob hi  there "),
            Command::Msg {
                to: "bob",
                text: "hi  there"
            }
        );
        assert_eq!(
            parse("/msg @bob hi"),
            Command::Msg {
                to: "bob",
                text: "hi"
            }
        );
        for usage in ["/msg", "/msg bob", "/msg bob   ", "/msg  @ hi"] {
            assert_eq!(parse(usage), Command::Usage(MSG_USAGE), "{usage:?}");
        }
        // A paste after `/msg bob ` stays private.
        assert_eq!(
            parse("/msg bob line one\nline two\n"),
            Command::Msg {
                to: "bob",
                text: "line one\nline two"
            }
        );
        assert_eq!(parse("/verify bob"), Command::Verify("bob"));
        assert_eq!(parse("/verify @bob "), Command::Verify("bob"));
        assert_eq!(parse("/verify"), Command::Usage(VERIFY_USAGE));
        assert_eq!(parse("/verify bob ann"), Command::Usage(VERIFY_USAGE));
        assert_eq!(parse("/msgs"), Command::Unknown("/msgs"));
    }

    #[test]
    fn room_and_file_commands_parse() {
        assert_eq!(parse("/lock"), Command::Lock);
        assert_eq!(parse("/unlock"), Command::Unlock);
        assert_eq!(parse("/admit cat"), Command::Admit("cat"));
        assert_eq!(parse("/deny  cat "), Command::Deny("cat"));
        assert!(matches!(parse("/admit"), Command::Usage(u) if u.contains("/admit <name>")));
        assert!(matches!(parse("/deny"), Command::Usage(_)));
        assert_eq!(
            parse("/send my report.pdf"),
            Command::Send("my report.pdf".into())
        );
        assert_eq!(
            parse(r"/send my\ report.pdf"),
            Command::Send("my report.pdf".into())
        );
        assert!(matches!(parse("/send 'my report.pdf"), Command::BadPath(_)));
        assert!(matches!(
            parse("/save 1 'my report.pdf"),
            Command::BadPath(_)
        ));
        assert!(matches!(parse("/send"), Command::Usage(_)));
        assert_eq!(parse("/files"), Command::Files);
        assert_eq!(parse("/save 2"), Command::Save { n: 2, path: None });
        assert_eq!(
            parse("/save 2 /tmp/my file.txt"),
            Command::Save {
                n: 2,
                path: Some("/tmp/my file.txt".into())
            }
        );
        assert!(matches!(parse("/save"), Command::Usage(_)));
        assert!(matches!(parse("/save two"), Command::Usage(_)));
        assert_eq!(
            parse("/save 2 '/tmp/my file.txt'"),
            Command::Save {
                n: 2,
                path: Some("/tmp/my file.txt".into())
            }
        );
    }

    #[test]
    fn a_paste_is_one_message_even_if_it_starts_with_a_slash() {
        assert_eq!(
            parse("/usr/bin\n/quit\nthird\n"),
            Command::Say("/usr/bin\n/quit\nthird")
        );
        assert_eq!(parse("\n\n"), Command::Nothing);
    }

    #[test]
    fn yes_means_y_or_yes() {
        for yes in ["y", "Y", " yes ", "YES"] {
            assert!(is_yes(yes), "{yes}");
        }
        for no in ["", "n", "no", "yep", "sure"] {
            assert!(!is_yes(no), "{no}");
        }
    }

    #[test]
    fn paths_start_after_send_and_save_n() {
        assert_eq!(path_start("/send ~/no"), Some(6));
        assert_eq!(path_start("/send   x"), Some(8));
        assert_eq!(path_start("/save 12 /tmp/x"), Some(9));
        assert_eq!(path_start("/save 1 "), Some(8));
        assert_eq!(path_start("/send"), None);
        assert_eq!(path_start("/sender x"), None);
        assert_eq!(path_start("/save x"), None);
        assert_eq!(path_start("/save 1"), None);
        assert_eq!(path_start("hello /send x"), None);
    }

    #[test]
    fn tab_completes_commands_and_names() {
        let names = Names {
            members: ["ann", "Annika", "bob", "eve\u{1b}[2J"]
                .map(String::from)
                .to_vec(),
            knocking: vec!["carol".into(), "annette".into()],
        };
        let c = |line: &str| complete(line, line.len(), &names, "bob");
        assert_eq!(c("/c"), (0, vec!["/clear ".to_owned()]));
        assert_eq!(c("/ms"), (0, vec!["/msg ".to_owned()]));
        assert_eq!(c("/v"), (0, vec!["/verify ".to_owned()]));
        // After `/msg` or `/verify`, a name completes without the colon.
        assert_eq!(c("/msg an"), (5, vec!["Annika ".into(), "ann ".into()]));
        assert_eq!(c("/verify @an").1, vec!["@Annika ", "@ann "]);
        assert_eq!(c("/").1.len(), COMMANDS.len());
        assert_eq!(c("an"), (0, vec!["Annika: ".into(), "ann: ".into()]));
        assert_eq!(c("hi @an"), (3, vec!["@Annika ".into(), "@ann ".into()]));
        assert_eq!(c("hi ANNI"), (3, vec!["Annika ".into()]));
        assert_eq!(c("hi b").1, Vec::<String>::new(), "not our own name");
        assert_eq!(c("hi e").1, Vec::<String>::new(), "never a hostile name");
        assert_eq!(c("say /c").1, Vec::<String>::new(), "commands only first");
        // The cursor in the middle of the line completes the word before it.
        assert_eq!(complete("an rest", 2, &names, "bob").0, 0);
        assert_eq!(complete("x", 5, &names, "bob").1, Vec::<String>::new());
        // Whom `/admit` and `/deny` take: those knocking, and only they.
        assert_eq!(c("/admit "), (7, vec!["annette ".into(), "carol ".into()]));
        assert_eq!(c("/deny an"), (6, vec!["annette ".into()]));
        assert_eq!(c("/msg c").1, Vec::<String>::new(), "not a member yet");
        assert_eq!(c("hi @car").1, Vec::<String>::new());
    }
}
