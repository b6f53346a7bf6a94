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

mod handshake;
mod history;
mod idle;
mod lean;
mod message;
mod stats;

use handshake::*;
use history::*;
use idle::*;
use lean::*;
use message::*;
use stats::*;

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
use cmd_chat::protocol::handshake::{ClientHello, HelloOptions};
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
pub(crate) struct Args {
    /// Server host (a loopback address unless --allow-remote).
    pub(crate) host: String,
    /// Server port.
    pub(crate) port: u16,
    /// The room password (anything for --bare).
    pub(crate) password: String,
    /// Receiving members (message mode).
    #[arg(long, default_value_t = 10)]
    pub(crate) receivers: usize,
    /// Sending members; they receive everything too, but are not counted.
    #[arg(long, default_value_t = 1)]
    pub(crate) senders: usize,
    /// Messages sent in total, spread over the senders.
    #[arg(long, default_value_t = 1000)]
    pub(crate) messages: u64,
    /// Total send rate in messages per second; with --handshakes, logins
    /// started per second. Unthrottled (closed-loop) without it.
    #[arg(long, value_name = "PER_S")]
    pub(crate) rate: Option<f64>,
    /// Speak the original (1.x) plaintext protocol instead of the sealed native one.
    #[arg(long, conflicts_with = "bare")]
    pub(crate) legacy: bool,
    /// Drive examples/bare_relay.rs: Fernet tokens as raw lines, no login.
    #[arg(long)]
    pub(crate) bare: bool,
    /// Members that join and then never read from their socket.
    #[arg(long, default_value_t = 0)]
    pub(crate) stalled: usize,
    /// Bytes of plaintext per message (header included).
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
    /// Unthrottled runs: messages that may be on their way to the slowest receiver.
    #[arg(long, default_value_t = 256)]
    pub(crate) window: u64,
    /// Measure complete SRP logins (to the room's init frame) instead of messages.
    #[arg(long, value_name = "N")]
    pub(crate) handshakes: Option<u64>,
    /// Logins (or joins) in flight at once.
    #[arg(long, default_value_t = 16)]
    pub(crate) concurrency: usize,
    /// Hold N idle members (lean clients) and report the server's memory per member.
    #[arg(long, value_name = "N")]
    pub(crate) idle: Option<usize>,
    /// Idle mode: seconds to keep the members after they have all joined.
    #[arg(long, default_value_t = 5)]
    pub(crate) hold: u64,
    /// Post N messages, then time a new member's join and history replay.
    #[arg(long, value_name = "N")]
    pub(crate) history_join: Option<u64>,
    /// The server's process id: its CPU time and memory are read from /proc.
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    /// Seconds every phase may take before the run is cut short and reported.
    #[arg(long, default_value_t = 120)]
    pub(crate) timeout: u64,
    /// Prefix of member names, so several loadgens can share a room.
    #[arg(long, default_value = "lg")]
    pub(crate) name_prefix: String,
    /// Accept a host that is not a loopback address.
    #[arg(long)]
    pub(crate) allow_remote: bool,
    /// Local address lean clients connect from (e.g. 127.0.0.2), so that
    /// logins from one loadgen do not count against the per-address login
    /// allowance of another's members.
    #[arg(long, value_name = "IP")]
    pub(crate) bind: Option<std::net::IpAddr>,
}

/// Where lean clients connect from (`--bind`); the system's choice if unset.
pub(crate) static BIND: std::sync::OnceLock<std::net::IpAddr> = std::sync::OnceLock::new();

/// Connects to `addr` from `--bind`'s address, if given.
pub(crate) async fn dial(addr: SocketAddr) -> std::io::Result<TcpStream> {
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
pub(crate) enum Mode {
    Native,
    Legacy,
    Bare,
}

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) fn err(msg: impl Into<String>) -> BoxError {
    msg.into().into()
}

pub(crate) fn main() {
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

pub(crate) fn resolve(args: &Args) -> Result<SocketAddr, String> {
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

pub(crate) fn mode(args: &Args) -> Mode {
    if args.bare {
        Mode::Bare
    } else if args.legacy {
        Mode::Legacy
    } else {
        Mode::Native
    }
}
