//! How long a login takes while silent connections flood the server, and
//! whether the members already in the room keep talking meanwhile.
//!
//! ```sh
//! target/release/cmd-chat serve 127.0.0.1 3900 -p pw &
//! cargo run --release --example login_under_flood -- 3900 pw --silent 1000 --addresses 20 --logins 20
//! ```
//!
//! The flood: `--silent` sockets from `--addresses` loopback addresses
//! (127.0.0.10 upwards) that send nothing, each reopened as soon as the
//! server drops it, until `--budget` connections or `--seconds` have passed.
//! Meanwhile two members (from 127.0.0.1) chat, one message every 100 ms,
//! and `--logins` logins are made one after another, each timed from the
//! TCP connect to the room's `init` (the client's Argon2id stretch
//! included); a login that fails is counted, with its error. The members
//! join before the flood starts. The last line on standard output is one
//! JSON object with the results. Only 127.0.0.1 is used.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use cmd_chat::client::{Client, ClientConfig, Event};
use cmd_chat::crypto::Password;
use tokio::io::AsyncReadExt;

#[derive(Parser)]
struct Args {
    /// The server's port on 127.0.0.1.
    port: u16,
    /// The room's password.
    password: String,
    /// Silent sockets held open at once.
    #[arg(long, default_value_t = 1000)]
    silent: usize,
    /// Loopback addresses the silent sockets come from (127.0.0.10 up).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(1..=200))]
    addresses: u8,
    /// Logins timed, one after another.
    #[arg(long, default_value_t = 20)]
    logins: usize,
    /// Connections the flood opens in all, at most.
    #[arg(long, default_value_t = 1_000_000)]
    budget: usize,
    /// Longest the flood goes on.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
}

/// The flood's counters, shared by its tasks.
struct Flood {
    /// Connections opened so far.
    opened: AtomicUsize,
    /// Connections the server dropped.
    dropped: AtomicUsize,
    /// Set when the flood is to end.
    stop: AtomicBool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let server = format!("127.0.0.1:{}", args.port);
    let config = |name: &str| ClientConfig {
        server: server.clone(),
        username: name.into(),
        password: Password::new(args.password.clone()),
        allow_legacy: false,
    };
    let ann = Client::connect(config("ann")).await.expect("ann joins");
    let bob = Client::connect(config("bob")).await.expect("bob joins");
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let flood = Arc::new(Flood {
        opened: AtomicUsize::new(0),
        dropped: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    });
    let tasks: Vec<_> = (0..args.silent)
        .map(|i| {
            let source = format!("127.0.0.{}:0", 10 + i % args.addresses as usize);
            let (flood, server) = (Arc::clone(&flood), server.clone());
            tokio::spawn(silent_socket(flood, server, source, args.budget, until))
        })
        .collect();
    // Churning: the server has dropped as many sockets as the flood holds.
    while flood.dropped.load(Ordering::Relaxed) < args.silent && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let chat = tokio::spawn(chat(ann, bob, Arc::clone(&flood)));
    let opened_before = flood.opened.load(Ordering::Relaxed);
    let (mut times, mut failed) = (Vec::new(), Vec::new());
    for i in 0..args.logins {
        let started = Instant::now();
        match Client::connect(config(&format!("newcomer{i}"))).await {
            Ok(client) => {
                times.push(started.elapsed());
                client.leave().await.ok();
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    let opened_during = flood.opened.load(Ordering::Relaxed) - opened_before;
    let still_flooding = Instant::now() < until && opened_during > 0;
    flood.stop.store(true, Ordering::Relaxed);
    let (sent, heard, worst) = chat.await.unwrap();
    for task in tasks {
        task.abort();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| {
        times
            .get((q * times.len() as f64) as usize)
            .copied()
            .map(ms)
    };
    failed.dedup();
    println!(
        "{}",
        serde_json::json!({
            "silent": args.silent,
            "addresses": args.addresses,
            "logins": times.len(),
            "logins_failed": args.logins - times.len(),
            "login_errors": failed,
            "login_ms_min": times.first().copied().map(ms),
            "login_ms_median": at(0.5),
            "login_ms_max": times.last().copied().map(ms),
            "flood_connections_during_logins": opened_during,
            "flood_still_on": still_flooding,
            "chat_sent": sent,
            "chat_heard": heard,
            "chat_worst_ms": ms(worst),
        })
    );
}

/// One silent socket, reopened each time the server drops it.
async fn silent_socket(
    flood: Arc<Flood>,
    server: String,
    source: String,
    budget: usize,
    until: Instant,
) {
    let mut buf = [0u8; 512];
    while !flood.stop.load(Ordering::Relaxed)
        && Instant::now() < until
        && flood.opened.fetch_add(1, Ordering::Relaxed) < budget
    {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(source.parse().unwrap()).unwrap();
        let Ok(mut stream) = socket.connect(server.parse().unwrap()).await else {
            continue;
        };
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        flood.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Ann says something every 100 ms until the flood stops; returns how many
/// she sent, how many bob heard, and the longest bob waited for one.
async fn chat(mut ann: Client, mut bob: Client, flood: Arc<Flood>) -> (usize, usize, Duration) {
    let (mut sent, mut heard, mut worst) = (0, 0, Duration::ZERO);
    while !flood.stop.load(Ordering::Relaxed) {
        let at = Instant::now();
        ann.send(&format!("line {sent}")).await.expect("ann sends");
        sent += 1;
        let wait = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match bob.next_event().await {
                    Ok(Event::Message(m)) if m.from == "ann" => break true,
                    Ok(_) => {}
                    Err(_) => break false,
                }
            }
        });
        if wait.await == Ok(true) {
            heard += 1;
            worst = worst.max(at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (sent, heard, worst)
}
