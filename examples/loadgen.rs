//! A load generator for cmd-chat rooms, for the original Python server, and
//! for the bare relay yardstick (`examples/bare_relay.rs`).
//!
//! ```sh
//! # messages: R receivers, S senders, K messages in total (unthrottled, or --rate)
//! cargo run --release --example loadgen -- 127.0.0.1 3000 pw --receivers 100 --senders 4 --messages 20000
//! cargo run --release --example loadgen -- 127.0.0.1 3000 pw --receivers 100 --senders 4 --messages 10000 --rate 1000
//! # the same against an original-protocol server, and against the bare relay
//! cargo run --release --example loadgen -- 127.0.0.1 3000 pw --legacy --receivers 100 --senders 4 --messages 20000
//! cargo run --release --example loadgen -- 127.0.0.1 4000 pw --bare --receivers 100 --senders 4 --messages 20000
//! # one member that stops reading, beside 100 that read
//! cargo run --release --example loadgen -- 127.0.0.1 3000 pw --receivers 100 --senders 4 --messages 20000 --stalled 1
//! # complete SRP logins
//! cargo run --release --example loadgen -- 127.0.0.1 3000 pw --handshakes 2000 --concurrency 16
//! # idle members held open (server memory), and a joiner's history replay
//! cargo run --release --example loadgen -- 127.0.0.1 3000 pw --idle 10000 --server-pid $PID
//! cargo run --release --example loadgen -- 127.0.0.1 3000 pw --history-join 10000
//! ```
//!
//! Every sender encrypts real Fernet messages with the room key; the
//! plaintext carries a run id, the sender's number, a sequence number and the
//! send time, so each receiver checks loss, duplication and order and measures
//! latency (send to delivery) on the one clock this process owns. Native
//! members use the project's client core ([`Client`]); legacy, bare, stalled,
//! idle and handshake-only members are lean clients built on the protocol and
//! crypto modules. A progress line goes to standard error; the last line on
//! standard output is one JSON object with the results.
//!
//! Unthrottled runs are closed-loop: a sender only sends while fewer than
//! `--window` of its room's messages are still on their way to the slowest
//! receiver, so the run measures what the server sustains instead of how
//! fast its queues overflow. Every phase has a deadline (`--timeout`), and
//! only loopback addresses are accepted unless `--allow-remote` is given.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Parser;
use cmd_chat::client::{Client, ClientConfig, Event};
use cmd_chat::crypto::kdf::{self, KdfParams};
use cmd_chat::crypto::{Password, RoomCipher};
use cmd_chat::protocol::handshake::ClientHello;
use cmd_chat::protocol::limits::CLIENT_MAX_LINE;
use cmd_chat::protocol::wire::{
    Challenge, ClientFrame, ErrorCode, Reply, ServerEvent, ServerFrame, Welcome,
};
use cmd_chat::protocol::{FrameReader, FrameWriter};
use futures_util::FutureExt as _;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, Semaphore, watch};

/// Drive a cmd-chat room (native or legacy), or the bare relay, with many
/// clients on this machine and report throughput, latency and losses as JSON.
///
/// Only loopback addresses are accepted unless --allow-remote is given: this
/// tool generates heavy traffic and must not be pointed at someone else's server.
#[derive(Debug, Parser)]
#[command(name = "loadgen")]
struct Args {
    /// Server host (a loopback address unless --allow-remote).
    host: String,
    /// Server port.
    port: u16,
    /// The room password (anything for --bare).
    password: String,
    /// Receiving members (message mode).
    #[arg(long, default_value_t = 10)]
    receivers: usize,
    /// Sending members; they receive everything too, but are not counted.
    #[arg(long, default_value_t = 1)]
    senders: usize,
    /// Messages sent in total, spread over the senders.
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// Total send rate in messages per second; with --handshakes, logins
    /// started per second. Unthrottled (closed-loop) without it.
    #[arg(long, value_name = "PER_S")]
    rate: Option<f64>,
    /// Speak the original (1.x) plaintext protocol instead of the sealed native one.
    #[arg(long, conflicts_with = "bare")]
    legacy: bool,
    /// Drive examples/bare_relay.rs: Fernet tokens as raw lines, no login.
    #[arg(long)]
    bare: bool,
    /// Members that join and then never read from their socket.
    #[arg(long, default_value_t = 0)]
    stalled: usize,
    /// Bytes of plaintext per message (header included).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Unthrottled runs: messages that may be on their way to the slowest receiver.
    #[arg(long, default_value_t = 256)]
    window: u64,
    /// Measure complete SRP logins (to the room's init frame) instead of messages.
    #[arg(long, value_name = "N")]
    handshakes: Option<u64>,
    /// Logins (or joins) in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Hold N idle members (lean clients) and report the server's memory per member.
    #[arg(long, value_name = "N")]
    idle: Option<usize>,
    /// Idle mode: seconds to keep the members after they have all joined.
    #[arg(long, default_value_t = 5)]
    hold: u64,
    /// Post N messages, then time a new member's join and history replay.
    #[arg(long, value_name = "N")]
    history_join: Option<u64>,
    /// The server's process id: its CPU time and memory are read from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds every phase may take before the run is cut short and reported.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Prefix of member names, so several loadgens can share a room.
    #[arg(long, default_value = "lg")]
    name_prefix: String,
    /// Accept a host that is not a loopback address.
    #[arg(long)]
    allow_remote: bool,
    /// Local address lean clients connect from (e.g. 127.0.0.2), so that
    /// logins from one loadgen do not count against the per-address login
    /// allowance of another's members.
    #[arg(long, value_name = "IP")]
    bind: Option<std::net::IpAddr>,
}

/// Where lean clients connect from (`--bind`); the system's choice if unset.
static BIND: std::sync::OnceLock<std::net::IpAddr> = std::sync::OnceLock::new();

/// Connects to `addr` from `--bind`'s address, if given.
async fn dial(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let Some(ip) = BIND.get() else {
        return TcpStream::connect(addr).await;
    };
    let socket = match ip {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(*ip, 0))?;
    socket.connect(addr).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Native,
    Legacy,
    Bare,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn err(msg: impl Into<String>) -> BoxError {
    msg.into().into()
}

fn main() {
    let args = Args::parse();
    let addr = match resolve(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async {
        if let Some(n) = args.handshakes {
            handshake_mode(&args, addr, n).await
        } else if let Some(n) = args.idle {
            idle_mode(&args, addr, n).await
        } else if let Some(n) = args.history_join {
            history_mode(&args, addr, n).await
        } else {
            message_mode(&args, addr).await
        }
    });
    match result {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("\nloadgen: {e}");
            println!("{}", json!({"error": e.to_string()}));
            std::process::exit(1);
        }
    }
}

fn resolve(args: &Args) -> Result<SocketAddr, String> {
    let addr = (args.host.as_str(), args.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", args.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", args.host))?;
    if !addr.ip().is_loopback() && !args.allow_remote {
        return Err(format!(
            "{} is not a loopback address; this tool only loads servers on this machine \
             (pass --allow-remote if the server is yours)",
            addr.ip()
        ));
    }
    if let Some(ip) = args.bind {
        if !ip.is_loopback() && !args.allow_remote {
            return Err(format!("--bind {ip} is not a loopback address"));
        }
        let _ = BIND.set(ip);
    }
    Ok(addr)
}

fn mode(args: &Args) -> Mode {
    if args.bare {
        Mode::Bare
    } else if args.legacy {
        Mode::Legacy
    } else {
        Mode::Native
    }
}

// ---------------------------------------------------------------------------
// /proc readings of the server and of this process

/// CPU time (user + system) of a process, in milliseconds.
fn cpu_ms(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks of 1/100 s (USER_HZ) on every common platform.
    Some((utime + stime) * 10.0)
}

/// `VmRSS` and `VmHWM` of a process, KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

struct CpuMark {
    server: Option<f64>,
    own: Option<f64>,
    at: Instant,
}

impl CpuMark {
    fn now(server_pid: Option<u32>) -> Self {
        Self {
            server: server_pid.and_then(|p| cpu_ms(&p.to_string())),
            own: cpu_ms("self"),
            at: Instant::now(),
        }
    }

    /// `(server ms, loadgen ms, wall s)` since `self`.
    fn since(&self, server_pid: Option<u32>) -> (Option<f64>, Option<f64>, f64) {
        let later = Self::now(server_pid);
        (
            later.server.zip(self.server).map(|(b, a)| b - a),
            later.own.zip(self.own).map(|(b, a)| b - a),
            later.at.duration_since(self.at).as_secs_f64(),
        )
    }
}

// ---------------------------------------------------------------------------
// Lean clients: login by hand, for legacy, stalled, idle and handshake members

/// A stretch computed once per room and reused: it depends only on the
/// password and the room's parameters, and costs tens of milliseconds.
#[derive(Default)]
struct StretchCache(Mutex<Option<(Vec<u8>, KdfParams, Password)>>);

impl StretchCache {
    async fn get(
        &self,
        password: &Password,
        salt: Vec<u8>,
        params: KdfParams,
    ) -> Result<Password, BoxError> {
        if let Some((s, p, pw)) = self.0.lock().unwrap().as_ref()
            && *s == salt
            && *p == params
        {
            return Ok(pw.clone());
        }
        let password = password.clone();
        let salt2 = salt.clone();
        let stretched =
            tokio::task::spawn_blocking(move || kdf::stretch(&password, &salt2, params)).await??;
        *self.0.lock().unwrap() = Some((salt, params, stretched.clone()));
        Ok(stretched)
    }
}

/// A logged-in lean member.
struct Lean {
    reader: FrameReader<OwnedReadHalf>,
    writer: FrameWriter<OwnedWriteHalf>,
    cipher: RoomCipher,
}

/// The server refused a login because too many are in progress (more than
/// its per-address allowance: every loadgen member comes from 127.0.0.1).
#[derive(Debug)]
struct Busy;

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server is busy with other logins")
    }
}

impl std::error::Error for Busy {}

/// SRP by hand, natively sealed unless `legacy`, up to and including `init`.
/// Like cmd-chat's own client, waits out a server busy with other logins.
async fn lean_login(
    addr: SocketAddr,
    name: &str,
    password: &Password,
    legacy: bool,
    cache: &StretchCache,
) -> Result<Lean, BoxError> {
    let mut delay = Duration::from_millis(5);
    for _ in 0..60 {
        match lean_login_once(addr, name, password, legacy, cache).await {
            Err(e) if e.is::<Busy>() => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
            outcome => return outcome,
        }
    }
    Err(Box::new(Busy))
}

async fn lean_login_once(
    addr: SocketAddr,
    name: &str,
    password: &Password,
    legacy: bool,
    cache: &StretchCache,
) -> Result<Lean, BoxError> {
    let stream = dial(addr).await?;
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut reader = FrameReader::new(read, CLIENT_MAX_LINE);
    let mut writer = FrameWriter::new(write);
    let (hello, init) = tokio::task::spawn_blocking({
        let name = name.to_owned();
        move || ClientHello::start(&name, legacy, None)
    })
    .await?;
    writer.write(&init).await?;
    writer.flush().await?;
    let challenge = match reader.read::<Reply<Challenge>>().await? {
        Some(Reply::Error(e)) if e.code == Some(ErrorCode::Busy) => return Err(Box::new(Busy)),
        Some(reply) => reply,
        None => return Err(err("closed during login")),
    };
    let respond = hello.read_challenge(challenge)?;
    if respond.legacy() != legacy {
        return Err(err("the server answered in the other protocol"));
    }
    let password = match respond.stretch() {
        Some((salt, params)) => cache.get(password, salt.to_vec(), params).await?,
        None => password.clone(),
    };
    let (awaiting, verify) =
        tokio::task::spawn_blocking(move || respond.respond_stretched(password)).await??;
    writer.write(&verify).await?;
    writer.flush().await?;
    let welcome = reader
        .read::<Reply<Welcome>>()
        .await?
        .ok_or_else(|| err("closed during login"))?;
    let established = awaiting.read_welcome(welcome)?;
    let sealed = established.keys.is_some();
    if let Some((sealer, opener)) = established.keys {
        writer.seal(sealer);
        reader.seal(opener);
    }
    let room_salt = match reader.read_server_frame().await? {
        Some(ServerFrame::Event(ServerEvent::Init { room_salt, .. })) if sealed => room_salt,
        Some(ServerFrame::Event(ServerEvent::Init { .. })) => established.legacy_room_salt,
        Some(ServerFrame::Error(e)) => return Err(err(format!("refused: {}", e.error))),
        _ => return Err(err("expected init")),
    }
    .ok_or_else(|| err("no room salt"))?;
    let cipher = RoomCipher::from_password(&established.password, &STANDARD.decode(room_salt)?);
    Ok(Lean {
        reader,
        writer,
        cipher,
    })
}

/// The bare relay has no login; its "room key" comes from the password alone.
fn bare_cipher(password: &Password) -> RoomCipher {
    RoomCipher::from_password(password, b"bare relay salt.")
}

async fn bare_connect(addr: SocketAddr) -> Result<(OwnedReadHalf, OwnedWriteHalf), BoxError> {
    let stream = dial(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream.into_split())
}

// ---------------------------------------------------------------------------
// Message mode

/// What the plaintext of every message starts with.
struct Stamp {
    run: u32,
    sender: u32,
    seq: u64,
    sent_us: u64,
}

fn compose(stamp: &Stamp, size: usize) -> String {
    let mut text = format!(
        "{:08x} {} {} {} ",
        stamp.run, stamp.sender, stamp.seq, stamp.sent_us
    );
    while text.len() < size {
        text.push('x');
    }
    text
}

fn parse_stamp(text: &str) -> Option<Stamp> {
    let mut parts = text.split(' ');
    Some(Stamp {
        run: u32::from_str_radix(parts.next()?, 16).ok()?,
        sender: parts.next()?.parse().ok()?,
        seq: parts.next()?.parse().ok()?,
        sent_us: parts.next()?.parse().ok()?,
    })
}

/// State shared by every task of a message run.
struct Run {
    run: u32,
    start: Instant,
    receivers: u64,
    /// Messages each sender sends.
    quota: Vec<u64>,
    window: u64,
    size: usize,
    sent: AtomicU64,
    delivered: AtomicU64,
    /// Woken as deliveries progress, for senders waiting on the window.
    progress: Notify,
    /// Set when the first message goes out.
    first_send_us: AtomicU64,
    last_delivery_us: AtomicU64,
    /// Sessions that ended early (kicked, errors).
    broken: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

impl Run {
    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn expected_per_receiver(&self) -> u64 {
        self.quota.iter().sum()
    }

    /// Whether a sender may send now (closed loop).
    fn window_open(&self) -> bool {
        let sent = self.sent.load(Ordering::Relaxed);
        let delivered = self.delivered.load(Ordering::Relaxed);
        sent * self.receivers <= delivered + self.receivers * self.window
    }

    fn broke(&self, what: String) {
        self.broken.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(what);
        }
    }
}

/// One receiver's bookkeeping.
#[derive(Default)]
struct Track {
    /// Per sender: which sequence numbers arrived.
    seen: Vec<Vec<u64>>,
    /// Per sender: highest sequence number so far.
    highest: Vec<Option<u64>>,
    latencies_us: Vec<u32>,
    delivered: u64,
    duplicated: u64,
    reordered: u64,
}

impl Track {
    fn new(quota: &[u64]) -> Self {
        Self {
            seen: quota
                .iter()
                .map(|q| vec![0u64; q.div_ceil(64) as usize])
                .collect(),
            highest: vec![None; quota.len()],
            ..Self::default()
        }
    }

    /// Records one delivered plaintext; false if it is not from this run.
    fn record(&mut self, run: &Run, text: &str) -> bool {
        let Some(stamp) = parse_stamp(text) else {
            return false;
        };
        let sender = stamp.sender as usize;
        if stamp.run != run.run || sender >= self.seen.len() {
            return false;
        }
        let now = run.now_us();
        let bits = &mut self.seen[sender];
        let (word, bit) = ((stamp.seq / 64) as usize, stamp.seq % 64);
        if word >= bits.len() {
            return false;
        }
        if bits[word] & (1 << bit) != 0 {
            self.duplicated += 1;
            return true;
        }
        bits[word] |= 1 << bit;
        if self.highest[sender].is_some_and(|h| stamp.seq < h) {
            self.reordered += 1;
        } else {
            self.highest[sender] = Some(stamp.seq);
        }
        self.latencies_us
            .push(now.saturating_sub(stamp.sent_us).min(u32::MAX as u64) as u32);
        self.delivered += 1;
        run.last_delivery_us.fetch_max(now, Ordering::Relaxed);
        if run
            .delivered
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(16)
        {
            run.progress.notify_waiters();
        }
        true
    }
}

/// A member that receives, whatever the mode.
#[allow(clippy::large_enum_variant)]
enum Receiver {
    Native(Client),
    Lean {
        reader: FrameReader<OwnedReadHalf>,
        /// Held so the connection stays open: dropping it would end the session.
        _writer: FrameWriter<OwnedWriteHalf>,
        cipher: RoomCipher,
    },
    Bare {
        reader: FrameReader<OwnedReadHalf>,
        _writer: OwnedWriteHalf,
        cipher: RoomCipher,
    },
}

/// A member that sends, whatever the mode. Few exist, so their size is no concern.
#[allow(clippy::large_enum_variant)]
enum Sender {
    Native(Client),
    Lean {
        writer: FrameWriter<OwnedWriteHalf>,
        cipher: RoomCipher,
        drain: tokio::task::JoinHandle<()>,
    },
    Bare {
        writer: FrameWriter<OwnedWriteHalf>,
        cipher: RoomCipher,
        drain: tokio::task::JoinHandle<()>,
    },
}

fn native_config(addr: SocketAddr, name: String, password: &Password) -> ClientConfig {
    ClientConfig {
        server: addr.to_string(),
        username: name,
        password: password.clone(),
        allow_legacy: false,
    }
}

/// Reads and throws away everything a socket receives (senders' inbound copies).
fn discard(mut read: OwnedReadHalf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
    })
}

async fn join_receiver(
    mode: Mode,
    addr: SocketAddr,
    name: String,
    password: &Password,
    cache: &StretchCache,
) -> Result<Receiver, BoxError> {
    Ok(match mode {
        Mode::Native => {
            Receiver::Native(Client::connect(native_config(addr, name, password)).await?)
        }
        Mode::Legacy => {
            let lean = lean_login(addr, &name, password, true, cache).await?;
            Receiver::Lean {
                reader: lean.reader,
                _writer: lean.writer,
                cipher: lean.cipher,
            }
        }
        Mode::Bare => {
            let (read, write) = bare_connect(addr).await?;
            Receiver::Bare {
                reader: FrameReader::new(read, CLIENT_MAX_LINE),
                _writer: write,
                cipher: bare_cipher(password),
            }
        }
    })
}

async fn join_sender(
    mode: Mode,
    addr: SocketAddr,
    name: String,
    password: &Password,
    cache: &StretchCache,
) -> Result<Sender, BoxError> {
    Ok(match mode {
        Mode::Native => Sender::Native(Client::connect(native_config(addr, name, password)).await?),
        Mode::Legacy => {
            let lean = lean_login(addr, &name, password, true, cache).await?;
            let drain = discard(lean.reader.into_inner());
            Sender::Lean {
                writer: lean.writer,
                cipher: lean.cipher,
                drain,
            }
        }
        Mode::Bare => {
            let (read, write) = bare_connect(addr).await?;
            Sender::Bare {
                writer: FrameWriter::new(write),
                cipher: bare_cipher(password),
                drain: discard(read),
            }
        }
    })
}

/// A member that joins and then never reads: its socket stays open until the end.
async fn join_stalled(
    mode: Mode,
    addr: SocketAddr,
    name: String,
    password: &Password,
    cache: &StretchCache,
) -> Result<(OwnedReadHalf, OwnedWriteHalf), BoxError> {
    Ok(match mode {
        Mode::Native | Mode::Legacy => {
            let lean = lean_login(addr, &name, password, mode == Mode::Legacy, cache).await?;
            (lean.reader.into_inner(), lean.writer.into_inner())
        }
        Mode::Bare => bare_connect(addr).await?,
    })
}

/// Joins `n` members `concurrency` at a time, each with `join(i)`.
async fn join_all<T, F, Fut>(
    n: usize,
    concurrency: usize,
    deadline: Instant,
    what: &str,
    join: F,
) -> Result<Vec<T>, BoxError>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, BoxError>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let fut = join(i);
        tasks.push(tokio::spawn(async move {
            let result = fut.await;
            drop(permit);
            result
        }));
        if i % 100 == 99 {
            eprint!("\r[loadgen] joining {what}: {}/{n}   ", i + 1);
        }
    }
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        let left = deadline.saturating_duration_since(Instant::now());
        let joined = tokio::time::timeout(left, task)
            .await
            .map_err(|_| err(format!("joining {what} took longer than --timeout")))??;
        out.push(joined.map_err(|e| err(format!("joining {what}: {e}")))?);
    }
    Ok(out)
}

async fn send_one(run: &Run, sender: &mut Sender, index: u32, seq: u64) -> Result<(), BoxError> {
    let stamp = Stamp {
        run: run.run,
        sender: index,
        seq,
        sent_us: run.now_us(),
    };
    let text = compose(&stamp, run.size);
    let _ = run.first_send_us.compare_exchange(
        u64::MAX,
        stamp.sent_us,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    match sender {
        Sender::Native(client) => {
            client.send(&text).await?;
        }
        Sender::Lean { writer, cipher, .. } => {
            writer
                .write(&ClientFrame::Message {
                    text: cipher.encrypt(&text),
                    reference: None,
                })
                .await?;
            writer.flush().await?;
        }
        Sender::Bare { writer, cipher, .. } => {
            writer.write_text(&cipher.encrypt(&text)).await?;
            writer.flush().await?;
        }
    }
    run.sent.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Reads whatever a native sender has received without waiting.
fn drain_ready(sender: &mut Sender) -> Result<(), BoxError> {
    if let Sender::Native(client) = sender {
        while let Some(event) = client.next_event().now_or_never() {
            event?;
        }
    }
    Ok(())
}

async fn run_sender(
    run: Arc<Run>,
    mut sender: Sender,
    index: u32,
    rate: Option<f64>,
    senders: usize,
    stop: watch::Receiver<bool>,
) {
    let quota = run.quota[index as usize];
    // Rate mode: sender `index` owns every `senders`-th slot of the global schedule.
    let interval = rate.map(|r| Duration::from_secs_f64(senders as f64 / r));
    let offset = rate.map(|r| Duration::from_secs_f64(index as f64 / r));
    let begin = tokio::time::Instant::now();
    let mut seq = 0;
    let mut stop_rx = stop.clone();
    let result: Result<(), BoxError> = async {
        while seq < quota {
            if *stop.borrow() {
                return Ok(());
            }
            let due = interval.map(|i| begin + offset.unwrap_or_default() + i * seq as u32);
            let ready = match due {
                Some(due) => tokio::time::Instant::now() >= due,
                None => run.window_open(),
            };
            if ready {
                send_one(&run, &mut sender, index, seq).await?;
                seq += 1;
                drain_ready(&mut sender)?;
                continue;
            }
            let progress = run.progress.notified();
            let wait = async {
                match due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => {
                        // Wake on progress, and now and then regardless.
                        let _ = tokio::time::timeout(Duration::from_millis(2), progress).await;
                    }
                }
            };
            match &mut sender {
                Sender::Native(client) => {
                    tokio::select! {
                        event = client.next_event() => { event?; }
                        () = wait => {}
                        _ = stop_rx.changed() => {}
                    }
                }
                _ => {
                    tokio::select! {
                        () = wait => {}
                        _ = stop_rx.changed() => {}
                    }
                }
            }
        }
        // Keep reading our own copies until the run ends, so the server never
        // sees this member as stalled.
        if let Sender::Native(client) = &mut sender {
            loop {
                tokio::select! {
                    event = client.next_event() => { event?; }
                    _ = stop_rx.changed() => return Ok(()),
                }
            }
        } else {
            let _ = stop_rx.changed().await;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        run.broke(format!("sender {index}: {e}"));
    }
    match sender {
        Sender::Native(client) => {
            let _ = client.leave().await;
        }
        Sender::Lean { drain, .. } | Sender::Bare { drain, .. } => drain.abort(),
    }
}

async fn run_receiver(
    run: Arc<Run>,
    mut receiver: Receiver,
    mut stop: watch::Receiver<bool>,
) -> Track {
    let mut track = Track::new(&run.quota);
    let expected = run.expected_per_receiver();
    let result: Result<(), BoxError> = async {
        while track.delivered < expected {
            let text = tokio::select! {
                text = next_text(&mut receiver) => text?,
                _ = stop.changed() => return Ok(()),
            };
            if let Some(text) = text {
                track.record(&run, &text);
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        run.broke(format!("receiver: {e}"));
    }
    if let Receiver::Native(client) = receiver {
        // Stay until every receiver is done, so departures don't disturb the run.
        let _ = stop.wait_for(|s| *s).await;
        let _ = client.leave().await;
    } else {
        let _ = stop.wait_for(|s| *s).await;
    }
    track
}

/// The next chat message's plaintext (`None` for anything else). Cancel-safe.
async fn next_text(receiver: &mut Receiver) -> Result<Option<String>, BoxError> {
    match receiver {
        Receiver::Native(client) => match client.next_event().await? {
            Event::Message(m) if !m.history => Ok(Some(m.text.clone())),
            _ => Ok(None),
        },
        Receiver::Lean { reader, cipher, .. } => match reader.read_server_frame().await? {
            Some(ServerFrame::Event(ServerEvent::Message { data })) => {
                Ok(cipher.decrypt(&data.text).ok())
            }
            Some(_) => Ok(None),
            None => Err(err("the server closed the connection")),
        },
        Receiver::Bare { reader, cipher, .. } => match reader.read_text().await? {
            Some(line) => Ok(cipher.decrypt(&line).ok()),
            None => Err(err("the relay closed the connection")),
        },
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn message_mode(args: &Args, addr: SocketAddr) -> Result<serde_json::Value, BoxError> {
    let mode = mode(args);
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let password = Password::new(args.password.clone());
    let cache = Arc::new(StretchCache::default());
    let senders = args.senders.max(1);
    let quota: Vec<u64> = (0..senders as u64)
        .map(|s| args.messages / senders as u64 + u64::from(s < args.messages % senders as u64))
        .collect();
    let run = Arc::new(Run {
        run: rand::random(),
        start: Instant::now(),
        receivers: args.receivers.max(1) as u64,
        quota,
        window: args.window.max(1),
        size: args.size.max(40),
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        progress: Notify::new(),
        first_send_us: AtomicU64::new(u64::MAX),
        last_delivery_us: AtomicU64::new(0),
        broken: AtomicUsize::new(0),
        first_error: Mutex::new(None),
    });
    let tag = format!("{}{:x}", args.name_prefix, run.run & 0xffff);

    let join = |role: &'static str| {
        let password = password.clone();
        let cache = Arc::clone(&cache);
        let tag = tag.clone();
        move |i: usize| {
            let password = password.clone();
            let cache = Arc::clone(&cache);
            let name = format!("{tag}-{role}{i}");
            async move {
                match role {
                    "r" => join_receiver(mode, addr, name, &password, &cache)
                        .await
                        .map(Joined::Receiver),
                    "s" => join_sender(mode, addr, name, &password, &cache)
                        .await
                        .map(Joined::Sender),
                    _ => join_stalled(mode, addr, name, &password, &cache)
                        .await
                        .map(Joined::Stalled),
                }
            }
        }
    };
    let receivers = join_all(
        args.receivers,
        args.concurrency,
        deadline,
        "receivers",
        join("r"),
    )
    .await?;
    let senders_joined =
        join_all(senders, args.concurrency, deadline, "senders", join("s")).await?;
    let stalled = join_all(
        args.stalled,
        args.concurrency,
        deadline,
        "stalled members",
        join("x"),
    )
    .await?;
    eprintln!(
        "\r[loadgen] {} receivers, {} senders, {} stalled joined ({mode:?})",
        receivers.len(),
        senders_joined.len(),
        stalled.len()
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let mark = CpuMark::now(args.server_pid);
    let mut receiver_tasks = Vec::new();
    for joined in receivers {
        let Joined::Receiver(r) = joined else {
            unreachable!()
        };
        receiver_tasks.push(tokio::spawn(run_receiver(
            Arc::clone(&run),
            r,
            stop_rx.clone(),
        )));
    }
    let mut sender_tasks = Vec::new();
    for (i, joined) in senders_joined.into_iter().enumerate() {
        let Joined::Sender(s) = joined else {
            unreachable!()
        };
        sender_tasks.push(tokio::spawn(run_sender(
            Arc::clone(&run),
            s,
            i as u32,
            args.rate,
            senders,
            stop_rx.clone(),
        )));
    }

    // Progress, and the end: everything delivered, or the deadline.
    let expected_total = run.expected_per_receiver() * run.receivers;
    let mut last = (Instant::now(), 0u64);
    let mut stalled_since: Option<Instant> = None;
    let cut_short = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let delivered = run.delivered.load(Ordering::Relaxed);
        let sent = run.sent.load(Ordering::Relaxed);
        if last.0.elapsed() >= Duration::from_secs(1) {
            let rate = (delivered - last.1) as f64 / last.0.elapsed().as_secs_f64();
            eprint!(
                "\r[loadgen] sent {sent}/{} delivered {delivered}/{expected_total} ({:.0}/s)     ",
                args.messages, rate
            );
            last = (Instant::now(), delivered);
        }
        let all_receivers_done = receiver_tasks.iter().all(|t| t.is_finished());
        if delivered >= expected_total || all_receivers_done {
            break false;
        }
        if Instant::now() >= deadline {
            break true;
        }
        // Everything sent and nothing moving for 5 s: the rest is lost.
        let stuck = sent >= args.messages && delivered == last.1;
        match (stuck, stalled_since) {
            (true, None) => stalled_since = Some(Instant::now()),
            (true, Some(t)) if t.elapsed() >= Duration::from_secs(5) => break true,
            (false, _) => stalled_since = None,
            _ => {}
        }
    };
    let (server_ms, own_ms, _) = mark.since(args.server_pid);
    let memory = args.server_pid.and_then(memory_kib);
    let _ = stop_tx.send(true);
    eprintln!();

    let mut all = Track::default();
    let mut tracks = Vec::new();
    for task in receiver_tasks {
        if let Ok(Ok(track)) = tokio::time::timeout(Duration::from_secs(10), task).await {
            tracks.push(track);
        }
    }
    for task in sender_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    // Stalled members: did the server (or relay) let them go?
    let mut stalled_dropped = 0;
    for joined in stalled {
        let Joined::Stalled((mut read, _write)) = joined else {
            unreachable!()
        };
        let mut buf = vec![0u8; 256 * 1024];
        let closed = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        })
        .await
        .unwrap_or(false);
        stalled_dropped += usize::from(closed);
    }
    let mut latencies = Vec::new();
    for mut t in tracks {
        all.delivered += t.delivered;
        all.duplicated += t.duplicated;
        all.reordered += t.reordered;
        latencies.append(&mut t.latencies_us);
    }
    latencies.sort_unstable();
    let first = run.first_send_us.load(Ordering::Relaxed);
    let last_delivery = run.last_delivery_us.load(Ordering::Relaxed);
    let span_s = if first == u64::MAX || last_delivery <= first {
        0.0
    } else {
        (last_delivery - first) as f64 / 1e6
    };
    let per_sec = if span_s > 0.0 {
        all.delivered as f64 / span_s
    } else {
        0.0
    };
    Ok(json!({
        "mode": format!("{mode:?}").to_lowercase(),
        "receivers": args.receivers,
        "senders": senders,
        "messages": args.messages,
        "rate": args.rate,
        "stalled": args.stalled,
        "size": run.size,
        "window": if args.rate.is_none() { Some(run.window) } else { None },
        "sent": run.sent.load(Ordering::Relaxed),
        "expected": expected_total,
        "deliveries": all.delivered,
        "deliveries_per_sec": per_sec.round(),
        "duration_s": round3(span_s),
        "p50_ms": round3(percentile(&latencies, 50.0)),
        "p90_ms": round3(percentile(&latencies, 90.0)),
        "p99_ms": round3(percentile(&latencies, 99.0)),
        "max_ms": round3(percentile(&latencies, 100.0)),
        "lost": expected_total.saturating_sub(all.delivered),
        "duplicated": all.duplicated,
        "reordered": all.reordered,
        "cut_short": cut_short,
        "sessions_broken": run.broken.load(Ordering::Relaxed),
        "first_error": run.first_error.lock().unwrap().clone(),
        "stalled_disconnected": stalled_dropped,
        "server_cpu_ms": server_ms,
        "server_cpu_us_per_delivery": server_ms.filter(|_| all.delivered > 0).map(|ms| round3(ms * 1000.0 / all.delivered as f64)),
        "server_rss_kib": memory.map(|m| m.0),
        "server_hwm_kib": memory.map(|m| m.1),
        "loadgen_cpu_ms": own_ms,
    }))
}

enum Joined {
    Receiver(Receiver),
    Sender(Sender),
    Stalled((OwnedReadHalf, OwnedWriteHalf)),
}

// ---------------------------------------------------------------------------
// Handshake mode

async fn handshake_mode(
    args: &Args,
    addr: SocketAddr,
    n: u64,
) -> Result<serde_json::Value, BoxError> {
    if args.bare {
        return Err(err(
            "--handshakes needs a cmd-chat server (the bare relay has no login)",
        ));
    }
    let legacy = args.legacy;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let password = Password::new(args.password.clone());
    let cache = Arc::new(StretchCache::default());
    // Warm the stretch cache (native-only rooms) so it is not in the figures.
    let tag = format!("{}{:x}", args.name_prefix, rand::random::<u16>());
    let warm = lean_login(addr, &format!("{tag}-warm"), &password, legacy, &cache).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let timed_out = Arc::new(AtomicBool::new(false));
    let mark = CpuMark::now(args.server_pid);
    // With --rate, login i starts no earlier than i / rate seconds in (still
    // at most --concurrency in flight), so the server's CPU per login can be
    // read at a given load as well as at full rate.
    let start = tokio::time::Instant::now();
    let pace = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (next, done, failed, first_error, timed_out) = (
            Arc::clone(&next),
            Arc::clone(&done),
            Arc::clone(&failed),
            Arc::clone(&first_error),
            Arc::clone(&timed_out),
        );
        let (password, cache, tag) = (password.clone(), Arc::clone(&cache), tag.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if let Some(pace) = pace {
                    tokio::time::sleep_until(start + pace.mul_f64(i as f64)).await;
                }
                if Instant::now() >= deadline {
                    timed_out.store(true, Ordering::Relaxed);
                    break;
                }
                let t0 = Instant::now();
                let left = deadline.saturating_duration_since(t0);
                let outcome = tokio::time::timeout(
                    left,
                    lean_login(addr, &format!("{tag}-h{i}"), &password, legacy, &cache),
                )
                .await;
                match outcome {
                    Ok(Ok(mut lean)) => {
                        latencies.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        done.fetch_add(1, Ordering::Relaxed);
                        if !legacy {
                            let _ = lean.writer.write(&ClientFrame::Leave).await;
                        }
                        let _ = lean.writer.shutdown().await;
                    }
                    Ok(Err(e)) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert(e.to_string());
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        timed_out.store(true, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let progress = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let d = done.load(Ordering::Relaxed);
                eprint!(
                    "\r[loadgen] handshakes {d}/{n} ({:.0}/s)     ",
                    (d - last.1) as f64 / last.0.elapsed().as_secs_f64()
                );
                last = (Instant::now(), d);
            }
        })
    };
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.append(&mut task.await?);
    }
    let (server_ms, own_ms, wall) = mark.since(args.server_pid);
    progress.abort();
    eprintln!();
    latencies.sort_unstable();
    let ok = done.load(Ordering::Relaxed);
    Ok(json!({
        "mode": if legacy { "legacy" } else { "native" },
        "handshakes": ok,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "handshakes_per_sec": (ok as f64 / wall).round(),
        "duration_s": round3(wall),
        "p50_ms": round3(percentile(&latencies, 50.0)),
        "p90_ms": round3(percentile(&latencies, 90.0)),
        "p99_ms": round3(percentile(&latencies, 99.0)),
        "max_ms": round3(percentile(&latencies, 100.0)),
        "failed": failed.load(Ordering::Relaxed),
        "first_error": first_error.lock().unwrap().clone(),
        "cut_short": timed_out.load(Ordering::Relaxed),
        "server_cpu_ms": server_ms,
        "server_cpu_ms_per_handshake": server_ms.filter(|_| ok > 0).map(|ms| round3(ms / ok as f64)),
        "loadgen_cpu_ms": own_ms,
    }))
}

// ---------------------------------------------------------------------------
// Idle mode: memory per idle member

async fn idle_mode(args: &Args, addr: SocketAddr, n: usize) -> Result<serde_json::Value, BoxError> {
    let mode = mode(args);
    if mode == Mode::Bare {
        return Err(err("--idle needs a cmd-chat server"));
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let before = args.server_pid.and_then(memory_kib);
    let password = Password::new(args.password.clone());
    let cache = Arc::new(StretchCache::default());
    let tag = format!("{}{:x}", args.name_prefix, rand::random::<u16>());
    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let members = join_all(n, args.concurrency, deadline, "idle members", |i| {
        let (password, cache, name) = (password.clone(), Arc::clone(&cache), format!("{tag}-i{i}"));
        let stop = stop_rx.clone();
        async move {
            let lean = lean_login(addr, &name, &password, mode == Mode::Legacy, &cache).await?;
            // Idle, but alive: read (and drop) what the room sends, answer pings blindly.
            Ok(tokio::spawn(idle_member(lean, mode == Mode::Legacy, stop)))
        }
    })
    .await?;
    let join_s = started.elapsed().as_secs_f64();
    eprintln!("\r[loadgen] {n} idle members joined in {join_s:.1} s; settling");
    // Let the join notices drain before reading the server's memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = args.server_pid.and_then(memory_kib);
    let alive = members.iter().filter(|m| !m.is_finished()).count();
    eprintln!("[loadgen] holding for {} s", args.hold);
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let _ = stop_tx.send(true);
    for m in members {
        let _ = tokio::time::timeout(Duration::from_secs(5), m).await;
    }
    let per_member = before
        .zip(after)
        .map(|(b, a)| round3((a.0 as f64 - b.0 as f64) / n as f64));
    Ok(json!({
        "mode": format!("{mode:?}").to_lowercase(),
        "idle_members": n,
        "alive_after_join": alive,
        "join_s": round3(join_s),
        "server_rss_before_kib": before.map(|m| m.0),
        "server_rss_after_kib": after.map(|m| m.0),
        "server_hwm_kib": after.map(|m| m.1),
        "server_kib_per_idle_member": per_member,
    }))
}

async fn idle_member(lean: Lean, legacy: bool, mut stop: watch::Receiver<bool>) {
    let Lean {
        reader, mut writer, ..
    } = lean;
    let mut read = reader.into_inner();
    let mut buf = vec![0u8; 4096];
    let mut pong = tokio::time::interval(Duration::from_secs(15));
    loop {
        tokio::select! {
            r = read.read(&mut buf) => if !matches!(r, Ok(n) if n > 0) { return },
            _ = pong.tick(), if !legacy => {
                if writer.write(&ClientFrame::Pong).await.is_err() || writer.flush().await.is_err() {
                    return;
                }
            }
            _ = stop.changed() => {
                if !legacy {
                    let _ = writer.write(&ClientFrame::Leave).await;
                }
                let _ = writer.shutdown().await;
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// History mode: a joiner's replay of a long history

async fn history_mode(
    args: &Args,
    addr: SocketAddr,
    n: u64,
) -> Result<serde_json::Value, BoxError> {
    if args.bare || args.legacy {
        return Err(err("--history-join measures native joins"));
    }
    let password = Password::new(args.password.clone());
    let tag = format!("{}{:x}", args.name_prefix, rand::random::<u16>());
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut poster =
        Client::connect(native_config(addr, format!("{tag}-poster"), &password)).await?;
    poster.clear().await?;
    let join = |k: usize| {
        let config = native_config(addr, format!("{tag}-j{k}"), &password);
        async move {
            let t0 = Instant::now();
            let mut client = Client::connect(config).await?;
            let login = t0.elapsed();
            let mut replayed = 0;
            for _ in 0..client.history_count() {
                if let Event::Message(m) = client.next_event().await?
                    && m.history
                {
                    replayed += 1;
                }
            }
            let total = t0.elapsed();
            let _ = client.leave().await;
            Ok::<_, BoxError>((login, total, replayed))
        }
    };
    const REPS: usize = 5;
    let mut empty = Vec::new();
    for k in 0..REPS {
        empty.push(join(k).await?.1);
    }
    // Post n messages, keeping at most 200 unechoed.
    let cipher_text = "x".repeat(args.size.max(40));
    let (mut sent, mut echoed) = (0u64, 0u64);
    while echoed < n {
        if Instant::now() >= deadline {
            return Err(err(format!(
                "posting history: only {echoed}/{n} in --timeout"
            )));
        }
        if sent < n && sent - echoed < 200 {
            poster.send(&cipher_text).await?;
            sent += 1;
            continue;
        }
        if let Event::Message(_) = poster.next_event().await? {
            echoed += 1;
            if echoed % 1000 == 0 {
                eprint!("\r[loadgen] history posted {echoed}/{n}   ");
            }
        }
    }
    eprintln!();
    let mut full = Vec::new();
    let mut logins = Vec::new();
    let mut replayed = 0;
    for k in 0..REPS {
        let (login, total, r) = join(REPS + k).await?;
        logins.push(login);
        full.push(total);
        replayed = r;
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1000.0
    };
    let (empty_ms, full_ms, login_ms) =
        (median(&mut empty), median(&mut full), median(&mut logins));
    let _ = poster.leave().await;
    Ok(json!({
        "history": n,
        "replayed": replayed,
        "repetitions": REPS,
        "join_empty_room_ms": round3(empty_ms),
        "join_with_history_ms": round3(full_ms),
        "connect_returned_ms": round3(login_ms),
        "history_cost_ms": round3(full_ms - empty_ms),
    }))
}
