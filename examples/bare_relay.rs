//! The yardstick: a plain tokio newline relay, with no authentication, no
//! sealing, no JSON and no history. Every line any connection sends goes to
//! every connection (the sender included), as cmd-chat's room does.
//!
//! ```sh
//! cargo run --release --example bare_relay -- 127.0.0.1 4000
//! cargo run --release --example loadgen -- 127.0.0.1 4000 x --bare --receivers 100 --senders 4 --messages 20000
//! ```
//!
//! It is meant to be a good relay, not a straw man: each line is copied once
//! into shared bytes, every connection has its own writer task that drains
//! everything queued into one buffer and writes it with one system call, and
//! a connection whose queue fills up is dropped rather than slowing the rest.
//! What it lacks is everything cmd-chat adds: SRP, per-connection
//! ChaCha20-Poly1305 sealing, JSON frames, sequence numbers and timestamps,
//! history. So loadgen's figures against it are the physical limit of this
//! machine for this traffic, and cmd-chat's distance from it is its overhead.
//! Loopback only unless `--any-address` is given; it has no password.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Lines queued toward one connection before it counts as stalled and is dropped.
const QUEUE_LINES: usize = 4096;
/// Longest line relayed; longer ones end the connection.
const MAX_LINE: usize = 96 * 1024;
/// Bytes read from a socket at once.
const READ_CHUNK: usize = 64 * 1024;

type Line = Arc<[u8]>;

#[derive(Default)]
struct Hub {
    next_id: u64,
    peers: Vec<(u64, mpsc::Sender<Line>)>,
}

fn usage() -> ! {
    eprintln!("usage: bare_relay <ip> <port> [--any-address]");
    eprintln!(
        "  A newline relay with no authentication and no crypto: loadgen --bare's yardstick."
    );
    eprintln!("  Binds loopback addresses only, unless --any-address is given.");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.iter().any(|a| a == "-h" || a == "--help") {
        usage();
    }
    let ip: IpAddr = args[0].parse().unwrap_or_else(|_| usage());
    let port: u16 = args[1].parse().unwrap_or_else(|_| usage());
    if !ip.is_loopback() && !args.iter().any(|a| a == "--any-address") {
        eprintln!("bare_relay: refusing to listen on {ip}: it has no password (use --any-address)");
        std::process::exit(2);
    }
    let listener = TcpListener::bind(SocketAddr::new(ip, port))
        .await
        .unwrap_or_else(|e| {
            eprintln!("bare_relay: cannot listen on {ip}:{port}: {e}");
            std::process::exit(1)
        });
    println!(
        "bare relay listening on {}",
        listener.local_addr().expect("bound")
    );
    let hub = Arc::new(Mutex::new(Hub::default()));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                };
                let _ = socket.set_nodelay(true);
                tokio::spawn(serve(socket, Arc::clone(&hub)));
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
}

async fn serve(socket: tokio::net::TcpStream, hub: Arc<Mutex<Hub>>) {
    let (mut read, mut write) = socket.into_split();
    let (tx, mut rx) = mpsc::channel::<Line>(QUEUE_LINES);
    let id = {
        let mut hub = hub.lock().unwrap();
        hub.next_id += 1;
        let id = hub.next_id;
        hub.peers.push((id, tx));
        id
    };
    let writer = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(READ_CHUNK);
        while let Some(line) = rx.recv().await {
            buf.extend_from_slice(&line);
            while let Ok(line) = rx.try_recv() {
                buf.extend_from_slice(&line);
                if buf.len() >= READ_CHUNK {
                    break;
                }
            }
            if write.write_all(&buf).await.is_err() {
                break;
            }
            buf.clear();
        }
    });
    let mut buf = vec![0u8; READ_CHUNK];
    let mut pending: Vec<u8> = Vec::new();
    'read: loop {
        let n = match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            let line: Line = if pending.is_empty() {
                Arc::from(&chunk[..=end])
            } else {
                pending.extend_from_slice(&chunk[..=end]);
                Arc::from(std::mem::take(&mut pending))
            };
            chunk = &chunk[end + 1..];
            let mut hub = hub.lock().unwrap();
            // A full queue means a stalled reader: drop it, never wait for it.
            hub.peers
                .retain(|(_, peer)| peer.try_send(Arc::clone(&line)).is_ok());
        }
        pending.extend_from_slice(chunk);
        if pending.len() > MAX_LINE {
            break 'read;
        }
    }
    hub.lock().unwrap().peers.retain(|(peer, _)| *peer != id);
    writer.abort();
}
