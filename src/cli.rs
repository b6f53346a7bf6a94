//! The `cmd-chat` command line: argument parsing, password sourcing, and the
//! glue between the library and the process (signals, exit codes, log
//! output).

mod log_output;
mod passphrase;

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};

use crate::client::render::Theme;
use crate::client::{self, Client, ClientConfig, ClientError, exit_code, terminal};
use crate::crypto::Password;
use crate::crypto::kdf::KdfParams;
use crate::protocol::limits::MAX_ROOM_MEMBERS;
use crate::server::{Server, ServerConfig, limits};

const PASSWORD_ENV: &str = "CMD_CHAT_PASSWORD";

/// `--version`: the release, and the native protocol it speaks (a client
/// and a server must speak the same one).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (native protocol 4)");

/// Throwaway, password-protected chat rooms in the terminal.
///
/// One person runs a room with `cmd-chat serve`; the others join it with
/// `cmd-chat connect`. The password never crosses the network (SRP-6a); every
/// message is encrypted by its sender with a key derived from the password, so
/// the server relays and remembers only ciphertext, in memory. When the server
/// stops, the room and its history are gone.
#[derive(Debug, Parser)]
#[command(name = "cmd-chat", version = VERSION, propagate_version = true)]
#[command(
    after_help = "EXIT CODES:\n  0 normal end (you left, or the host closed the room)   2 usage error   3 cannot connect   4 wrong password\n  \
                        5 username taken or invalid   6 protocol error   7 connection lost\n  \
                        8 not let in to a locked room   1 other failure"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a room on this machine.
    ///
    /// Prints the address it listens on and the `cmd-chat connect` line to
    /// share. Stop it with Ctrl-C: members are told the room is closing and all
    /// history is dropped.
    Serve(ServeArgs),
    /// Join a room.
    ///
    /// On a terminal this opens the chat: line editing with incoming messages
    /// printed above what you type, /help for the commands, Tab to complete
    /// commands and names. Input history stays in memory, never on disk.
    ///
    /// With --json, or when standard input is not a terminal, it runs the
    /// scripting mode: each input line is a message (or a command such as
    /// /who, /send PATH, /save N, /quit) and each event is one JSON
    /// line on standard output.
    ///
    /// If the room is locked, it waits until a member lets you in.
    Connect(ConnectArgs),
    /// Print a shell completion script.
    ///
    /// For example, for bash: `cmd-chat completions bash >
    /// ~/.local/share/bash-completion/completions/cmd-chat`; zsh wants the
    /// output as `_cmd-chat` in a directory of your `fpath`, fish in
    /// `~/.config/fish/completions/cmd-chat.fish`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `cmd-chat man | man -l -`.
    Man,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: 0.0.0.0 for every interface, 127.0.0.1 for this machine only.
    pub ip: IpAddr,
    /// Port to listen on; 0 picks a free one (printed at start).
    pub port: u16,
    /// The room password. Without it, CMD_CHAT_PASSWORD is used, else you are
    /// asked on the terminal, twice, so that a typo cannot lock everyone out.
    /// Note: a password on the command line shows in `ps` and in your shell
    /// history; prefer the prompt or the variable.
    #[arg(short, long, env = PASSWORD_ENV, hide_env_values = true)]
    pub password: Option<String>,
    /// Read the password from the first line of standard input (for scripts
    /// and secret managers: it then shows nowhere).
    #[arg(long)]
    pub password_stdin: bool,
    /// Make a passphrase for the room (six random words, about 77 bits) and
    /// print it once, beside the line to share. Without any password given,
    /// `serve` on a terminal offers to do this.
    #[arg(long, conflicts_with = "password_stdin")]
    pub generate_password: bool,
    /// Also admit original (Python) cmd-chat 1.x clients. Their sessions are
    /// not sealed: names, join/leave events and ciphertext are visible on the network.
    #[arg(long)]
    pub allow_legacy: bool,
    /// Messages the room remembers for people who join later (oldest dropped first).
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_HISTORY_MESSAGES,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000).map(|n| n as usize))]
    pub history: usize,
    /// Most members the room admits at once.
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_MAX_USERS,
          value_parser = clap::value_parser!(u32)
              .range(1..=MAX_ROOM_MEMBERS as i64).map(|n| n as usize))]
    pub max_users: usize,
    /// Most connections allowed to be logging in at once (at most 32 of them
    /// from one address). When all are taken, a newcomer takes the place of
    /// one that has not sent anything yet, from the address holding the most
    /// such places; if every one is logging in, newcomers are turned away. A quarter are kept for members
    /// reconnecting after a network blip.
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_MAX_PENDING,
          value_parser = clap::value_parser!(u32).range(1..=100_000).map(|n| n as usize))]
    pub max_pending: usize,
    /// Messages per second one member may send on average (bursts of 50 are
    /// fine); a file offer counts as one.
    #[arg(long, value_name = "MSGS", default_value_t = limits::DEFAULT_RATE_PER_SEC,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
    /// Seconds of silence (no answer to keep-alive pings) after which a member is dropped.
    #[arg(long, value_name = "SECS", default_value_t = limits::DEFAULT_IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(30..=86_400))]
    pub idle_timeout: u64,
    /// Memory cost, in MiB, of the Argon2id password stretch of native-only
    /// rooms: the price of every password guess against a stolen copy of the
    /// server's memory, and of every login.
    #[arg(long, value_name = "MIB", default_value_t = KdfParams::DEFAULT.m_kib / 1024,
          value_parser = clap::value_parser!(u32).range(8..=1024))]
    pub kdf_memory: u32,
    /// End the room once it has been empty this long, e.g. `10m` or `1h`
    /// (the room and its history vanish with it).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_exit: Option<std::time::Duration>,
    /// Forget history messages older than this, e.g. `30m` or `1d`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub expire: Option<std::time::Duration>,
    /// Largest file members may share, in bytes or with a K or M suffix
    /// (KiB, MiB): 512K, 5M. At most 64M; files are relayed encrypted and
    /// never stored.
    #[arg(long, value_name = "SIZE", default_value = "5M", value_parser = parse_file_size)]
    pub max_file_size: u64,
    /// Seconds a newcomer may wait at a locked room for a member to let it in.
    #[arg(long, value_name = "SECS", default_value_t = limits::DEFAULT_KNOCK_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub knock_timeout: u64,
}

/// `10m`, `1h 30m`, `45s`: a human duration, at least one second.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration =
        humantime::parse_duration(text).map_err(|e| format!("{e} (try 30s, 10m or 2h)"))?;
    if duration < std::time::Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(duration)
}

/// `5242880`, `512K`, `5M`, `5MiB`: a file size for `--max-file-size`.
fn parse_file_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => lower.split_at(at),
        None => (lower.as_str(), ""),
    };
    let scale: u64 = match unit {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1024,
        "m" | "mib" | "mb" => 1024 * 1024,
        _ => {
            return Err(format!(
                "{text:?}: give bytes, or a number with K or M (512K, 5M)"
            ));
        }
    };
    let size = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?}: give bytes, or a number with K or M (512K, 5M)"))?;
    let cap = crate::protocol::limits::MAX_FILE_SIZE_CAP;
    if !(1024..=cap).contains(&size) {
        return Err(format!("{text:?}: a size from 1K to {}M", cap >> 20));
    }
    Ok(size)
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Server address (name or IP).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Your name in the room: 1 to 32 characters, no spaces.
    pub username: String,
    /// The room password. Without it, CMD_CHAT_PASSWORD is used, else you are
    /// asked on the terminal. Note: a password on the command line shows in
    /// `ps` and in your shell history; prefer the prompt or the variable.
    #[arg(env = PASSWORD_ENV, hide_env_values = true)]
    pub password: Option<String>,
    /// Read the password from the first line of standard input; the lines
    /// after it are the chat input (scripting mode).
    #[arg(long)]
    pub password_stdin: bool,
    /// Allow joining an original cmd-chat 1.x server. Its sessions are not
    /// sealed: the room is visible on the network.
    #[arg(long)]
    pub allow_legacy: bool,
    /// Scripting mode even on a terminal: JSON events out, lines in.
    #[arg(long)]
    pub json: bool,
    /// Leave as soon as the connection is lost, instead of reconnecting
    /// (with backoff, for about a minute) and catching up on what was missed.
    #[arg(long)]
    pub no_reconnect: bool,
    /// No colours in the chat; your name and mentions of it stay bold and
    /// reversed. Setting NO_COLOR (to anything) does the same.
    #[arg(long)]
    pub no_color: bool,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Completions { shell } => return print_completions(shell),
        Command::Man => return print_man_page(),
        command => command,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            return fail(
                exit_code::FAILURE,
                &format!("cannot start the async runtime: {e}"),
            );
        }
    };
    let code = match command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Connect(args) => runtime.block_on(connect(args)),
        Command::Completions { .. } | Command::Man => unreachable!("handled above"),
    };
    // The command is over and everything it printed is written. A read of
    // standard input may still be waiting on a runtime thread, and cannot
    // be called off: dropping the runtime would wait for it, that is for the
    // next line or the end of input, which a supervisor holding stdin open
    // never sends. So the runtime is left behind, and the process exits now.
    runtime.shutdown_background();
    code
}

fn print_completions(shell: clap_complete::Shell) -> ExitCode {
    use clap::CommandFactory as _;
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "cmd-chat", &mut std::io::stdout());
    ExitCode::SUCCESS
}

fn print_man_page() -> ExitCode {
    use clap::CommandFactory as _;
    let man = clap_mangen::Man::new(Cli::command());
    match man.render(&mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        // `cmd-chat man | head`: the reader has seen what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(
            exit_code::FAILURE,
            &format!("cannot write the manual page: {e}"),
        ),
    }
}

/// Prints an error and gives the exit code. The message may quote the
/// server (a refusal's reason), which is anyone's until SRP has proved it,
/// so it is shown as the chat shows peers' text: no escape gets through.
fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("cmd-chat: error: {}", client::sanitize::sanitize(message));
    ExitCode::from(code)
}

/// Longest password line `--password-stdin` reads.
const MAX_PASSWORD_LINE: usize = 4096;

/// Reads one line from standard input without any buffering, so the password
/// is left nowhere but in the returned (self-wiping) value, and whatever
/// follows the line stays unread for the chat.
fn password_from_stdin() -> Result<Password, String> {
    use std::io::Read;
    use std::os::fd::AsFd;
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    let mut input = std::fs::File::from(fd);
    // Full size up front: a growing Vec would leave copies in freed memory.
    let mut line = zeroize::Zeroizing::new(Vec::with_capacity(MAX_PASSWORD_LINE + 1));
    let mut byte = [0u8; 1];
    loop {
        match input.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read the password from standard input: {e}")),
        }
        if line.len() > MAX_PASSWORD_LINE {
            return Err("the password line on standard input is too long".into());
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    zeroize::Zeroize::zeroize(&mut byte);
    Ok(Password::from_bytes(std::mem::take(&mut *line)))
}

/// Whether a password typed at a prompt is asked for twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirm {
    /// Once: a mistyped password only fails this login.
    Once,
    /// Twice, until both agree: a mistyped room password would lock
    /// everyone out.
    Twice,
}

/// The password from the argument or variable, from standard input, or else
/// from a no-echo prompt.
fn obtain_password(
    given: Option<String>,
    from_stdin: bool,
    confirm: Confirm,
) -> Result<Password, String> {
    let password = match given {
        _ if from_stdin => password_from_stdin()?,
        Some(p) => Password::new(p),
        None if std::io::stdin().is_terminal() => prompt_password(confirm)
            .map_err(|e| format!("cannot read the password from the terminal: {e}"))?,
        None => {
            return Err(format!(
                "no password: give it as an argument, set {PASSWORD_ENV}, or run from a terminal to be asked"
            ));
        }
    };
    if password.is_empty() {
        return Err("the password is empty; a room needs one".into());
    }
    Ok(password)
}

/// Asks for the password without echo, twice if `confirm` says so, until
/// the two agree.
fn prompt_password(confirm: Confirm) -> std::io::Result<Password> {
    loop {
        let first = Password::new(rpassword::prompt_password("Room password: ")?);
        if confirm == Confirm::Once {
            return Ok(first);
        }
        let again = Password::new(rpassword::prompt_password("Same password again: ")?);
        if first.as_bytes() == again.as_bytes() {
            return Ok(first);
        }
        eprintln!("The two passwords differ; type it again.");
    }
}

/// Sends the log to standard error through a queue that never blocks the
/// threads that log (see [`log_output`]). Dropping the returned guard waits
/// briefly for the queue to be written out.
fn init_logging(default: &str) -> Option<LogFlush> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let output = match log_output::LogOutput::spawn(std::io::stderr()) {
        Ok(output) => output,
        Err(e) => {
            // Logging straight to stderr could block the room; none is safer.
            eprintln!("cmd-chat: warning: cannot start the log writer ({e}); no log");
            return None;
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(output.clone())
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    Some(LogFlush(output))
}

/// Writes out the queued log lines as the command ends, if the output
/// takes them within [`log_output::FLUSH_PATIENCE`].
struct LogFlush(log_output::LogOutput);

impl Drop for LogFlush {
    fn drop(&mut self) {
        self.0.flush(log_output::FLUSH_PATIENCE);
    }
}

/// The address to put in the `connect` line: the bound one, or for a wildcard
/// bind the address this machine uses to reach other hosts.
fn shareable_host(bound: SocketAddr) -> String {
    if !bound.ip().is_unspecified() {
        return bound.ip().to_string();
    }
    // Connecting a UDP socket only consults the routing table; nothing is sent.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "<this-machine's-address>".into())
}

/// The room password for `serve`, and whether it was made here (and so
/// must be shown once): generated if asked, given, or offered to be made.
fn serve_password(args: &ServeArgs) -> Result<(Password, bool), String> {
    let nothing_given = args.password.is_none() && !args.password_stdin;
    if args.generate_password && !nothing_given {
        return Err(format!(
            "--generate-password makes the password, but one is given too \
             (--password or {PASSWORD_ENV}); drop one of them"
        ));
    }
    if args.generate_password
        || (nothing_given && std::io::stdin().is_terminal() && offer_to_generate()?)
    {
        return Ok((passphrase::generate(), true));
    }
    Ok((
        obtain_password(args.password.clone(), args.password_stdin, Confirm::Twice)?,
        false,
    ))
}

/// Asks the host whether to make a passphrase; yes unless they say no.
fn offer_to_generate() -> Result<bool, String> {
    use std::io::Write as _;
    print!("No room password given. Make one (six random words)? [Y/n] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| format!("cannot read the answer from the terminal: {e}"))?;
    Ok(!answer.trim().to_lowercase().starts_with('n'))
}

async fn serve(args: ServeArgs) -> ExitCode {
    let _log = init_logging("info");
    let (password, generated) = match serve_password(&args) {
        Ok(p) => p,
        Err(e) => return fail(exit_code::USAGE, &e),
    };
    // Shown once, with the line to share; the server wipes its own copy.
    let shown = generated.then(|| password.clone());
    let config = ServerConfig {
        allow_legacy: args.allow_legacy,
        history_messages: args.history,
        max_users: args.max_users,
        max_pending: args.max_pending,
        first_line_timeout: limits::DEFAULT_FIRST_LINE_TIMEOUT,
        rate_per_sec: args.rate,
        idle_timeout: std::time::Duration::from_secs(args.idle_timeout),
        kdf: KdfParams {
            m_kib: args.kdf_memory * 1024,
            ..KdfParams::DEFAULT
        },
        idle_exit: args.idle_exit,
        expire: args.expire,
        knock_timeout: std::time::Duration::from_secs(args.knock_timeout),
        max_file_size: args.max_file_size,
        ..ServerConfig::default()
    };
    let addr = SocketAddr::new(args.ip, args.port);
    let server = match Server::bind(addr, config, password).await {
        Ok(s) => s,
        Err(e) => return fail(exit_code::FAILURE, &format!("cannot listen on {addr}: {e}")),
    };
    let bound = server
        .local_addr()
        .expect("a bound listener has an address");
    let admits = if args.allow_legacy {
        "admits cmd-chat 1.x clients too: their sessions are readable on the network"
    } else {
        "native clients only: every session is sealed"
    };
    println!("cmd-chat room listening on {bound} ({admits})");
    if args.allow_legacy {
        println!(
            "Note: with --allow-legacy the password is not stretched (1.x clients cannot): a copy of \
             this server's memory lets an attacker test password guesses quickly. Use a strong password."
        );
    }
    println!("Share this line (and the password, separately):");
    println!(
        "    cmd-chat connect {} {} <your-name>",
        shareable_host(bound),
        bound.port()
    );
    if let Some(password) = shown {
        println!(
            "The room password, made for this room ({:.1} bits; shown only now):\n    {}",
            passphrase::bits(),
            String::from_utf8_lossy(password.as_bytes())
        );
    }
    println!("Ctrl-C ends the room; its history exists only in this process's memory.");
    if let Some(idle) = args.idle_exit {
        println!(
            "The room closes by itself after {} empty.",
            humantime::format_duration(idle)
        );
    }
    if let Some(expire) = args.expire {
        println!(
            "Messages are forgotten {} after they are sent.",
            humantime::format_duration(expire)
        );
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    server.run(shutdown_signal()).await;
    ExitCode::SUCCESS
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Completes when the person or the system asks a member to go: Ctrl-C
/// while the line editor is not reading (it reads Ctrl-C as a key), SIGTERM,
/// or SIGHUP when the terminal closes. The member then leaves cleanly.
async fn leave_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hangup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = hangup.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn connect(args: ConnectArgs) -> ExitCode {
    let _log = init_logging("warn");
    let scripting = args.json || !std::io::stdin().is_terminal();
    let no_color = args.no_color;
    let no_reconnect = args.no_reconnect;
    let server = if args.host.contains(':') && !args.host.starts_with('[') {
        format!("[{}]:{}", args.host, args.port)
    } else {
        format!("{}:{}", args.host, args.port)
    };
    // Connect first: nobody should type a password for a room that is
    // not there.
    let stream = match client::dial(&server).await {
        Ok(stream) => stream,
        Err(e) => return report(&e, scripting),
    };
    let password = match obtain_password(args.password, args.password_stdin, Confirm::Once) {
        Ok(p) => p,
        Err(e) => return fail(exit_code::USAGE, &e),
    };
    let me = args.username.clone();
    let config = ClientConfig {
        server,
        username: args.username,
        password,
        allow_legacy: args.allow_legacy,
    };
    // At a locked room the login waits; say so before the chat opens.
    let on_waiting = |waiting: &client::Waiting| {
        if scripting {
            println!("{}", client::script::waiting_json(waiting));
        } else {
            println!(
                "{}",
                client::render::Renderer::new(&me, Theme::Plain).waiting(waiting)
            );
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    };
    let result = async {
        let mut client = Client::connect_over(stream, config, on_waiting).await?;
        client.set_reconnect(!no_reconnect);
        if client.transport() == client::Transport::Legacy {
            eprintln!("cmd-chat: warning: legacy server: this room is visible on the network");
        }
        if scripting {
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            return client::script::run(client, stdin, tokio::io::stdout()).await;
        }
        let options = terminal::Options {
            theme: Theme::for_terminal(no_color),
        };
        match terminal::Terminal::open(client.username(), options) {
            Ok(term) => term.run(client, leave_signal()).await,
            Err(unsupported) => {
                // TERM=dumb, or output that is not a terminal: the same chat,
                // one plain line at a time.
                tracing::debug!("{unsupported}; using the plain line interface");
                let bell = std::io::stdout().is_terminal();
                let stdin = tokio::io::BufReader::new(tokio::io::stdin());
                let stdout = tokio::io::stdout();
                client::line::run(client, stdin, stdout, Theme::Plain, bell, leave_signal()).await
            }
        }
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(ClientError::RoomClosed) => room_closed(scripting),
        Err(e) => report(&e, scripting),
    }
}

/// The host ended the meeting: a normal end, said as a notice, not an
/// error. The terminal is restored by now, so a half-typed line stays on
/// screen above this.
fn room_closed(scripting: bool) -> ExitCode {
    if scripting {
        println!("{}", serde_json::json!({"event": "closed", "by": "host"}));
    } else {
        println!("-- the host closed the room; it and its history are gone");
    }
    ExitCode::from(exit_code::OK)
}

fn report(error: &ClientError, scripting: bool) -> ExitCode {
    if scripting {
        println!(
            "{}",
            serde_json::json!({"event": "error", "message": error.to_string(), "fatal": true})
        );
    }
    fail(error.exit_code(), &error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn documented_forms_parse() {
        let cli = Cli::try_parse_from(["cmd-chat", "serve", "0.0.0.0", "3000", "--password", "x"])
            .unwrap();
        assert!(matches!(
            cli.command,
            Command::Serve(ServeArgs { port: 3000, .. })
        ));
        let cli = Cli::try_parse_from([
            "cmd-chat",
            "serve",
            "127.0.0.1",
            "0",
            "-p",
            "x",
            "--allow-legacy",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Serve(ServeArgs {
                allow_legacy: true,
                ..
            })
        ));
        let cli =
            Cli::try_parse_from(["cmd-chat", "connect", "10.0.0.1", "3000", "ann", "x"]).unwrap();
        let Command::Connect(args) = cli.command else {
            panic!()
        };
        assert_eq!(
            (args.host.as_str(), args.port, args.username.as_str()),
            ("10.0.0.1", 3000, "ann")
        );
        assert_eq!(args.password.as_deref(), Some("x"));
        assert!(!args.no_color && !args.json);
        let cli = Cli::try_parse_from([
            "cmd-chat",
            "connect",
            "10.0.0.1",
            "3000",
            "ann",
            "--no-color",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Connect(ConnectArgs { no_color: true, .. })
        ));
        assert!(Cli::try_parse_from(["cmd-chat", "serve", "not-an-ip", "3000"]).is_err());
    }

    #[test]
    fn file_sizes_parse() {
        assert_eq!(parse_file_size("5M"), Ok(5 * 1024 * 1024));
        assert_eq!(parse_file_size("5MiB"), Ok(5 * 1024 * 1024));
        assert_eq!(parse_file_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_file_size("2048"), Ok(2048));
        assert!(parse_file_size("65M").is_err(), "over the cap");
        assert!(parse_file_size("1").is_err(), "under 1K");
        assert!(parse_file_size("5G").is_err());
        assert!(parse_file_size("M").is_err());
        assert!(parse_file_size("99999999999999999999M").is_err());
        let cli = Cli::try_parse_from(["cmd-chat", "serve", "127.0.0.1", "0"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!()
        };
        assert_eq!(
            args.max_file_size,
            crate::protocol::limits::DEFAULT_MAX_FILE_SIZE
        );
        assert_eq!(args.knock_timeout, 120);
    }
}
