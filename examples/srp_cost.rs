//! CPU cost of one SRP login, each half on its own.
//!
//! ```text
//! cargo run --release --example srp_cost -- [--logins 400] [--rounds 5]
//! ```
//!
//! Runs `--logins` complete logins against one verifier (as a room has one),
//! on one thread, in rounds. Each round runs every step of its logins as a
//! batch, so each half is timed over many logins at once: the server half is
//! `ServerSession::start` (from `A`) plus `verify` (of `M`), the client half is
//! `ClientSession::new`, `respond` and `verify_server`. The verifier itself
//! (made once per room) is timed separately.
//!
//! The figure is the thread's own CPU time (`CLOCK_THREAD_CPUTIME_ID`;
//! wall-clock time where there is none), so other work on the machine
//! inflates it far less than wall-clock time. Prints the median and
//! the lowest of the rounds per login, then one JSON line. Bounded: at most
//! 100,000 logins.

use std::time::{Duration, Instant};

use cmd_chat::crypto::Password;
use cmd_chat::crypto::srp::{ClientSession, ServerSession, Verifier};

/// CPU time of this thread so far, or `None` where there is no such clock.
#[cfg(unix)]
fn thread_cpu() -> Option<Duration> {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .ok()
        .map(Duration::from)
}

#[cfg(not(unix))]
fn thread_cpu() -> Option<Duration> {
    None
}

/// Times `work` on this thread's CPU clock (or the wall clock).
fn timed<T>(total: &mut Duration, work: impl FnOnce() -> T) -> T {
    let (cpu, wall) = (thread_cpu(), Instant::now());
    let out = work();
    *total += match (cpu, thread_cpu()) {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => wall.elapsed(),
    };
    out
}

fn flag(name: &str, default: u32) -> u32 {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn micros(d: Duration, n: u32) -> f64 {
    (d.as_secs_f64() * 1e6 / f64::from(n) * 10.0).round() / 10.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let logins = flag("--logins", 400).clamp(1, 100_000);
    let rounds = flag("--rounds", 5).clamp(1, logins);
    let per_round = logins / rounds;
    let clock = if thread_cpu().is_some() {
        "thread CPU"
    } else {
        "wall clock"
    };
    let password = Password::new("correct horse battery staple".into());

    let mut verifier_time = Duration::ZERO;
    let verifier = timed(&mut verifier_time, || Verifier::new(&password));

    // Warm up: lazy group constants and tables, caches.
    for _ in 0..3 {
        let client = ClientSession::new();
        let server = ServerSession::start(&verifier, &client.public()).unwrap();
        let proof = client
            .respond(&password, verifier.salt(), &server.public())
            .unwrap();
        let (h_amk, _) = server.verify(proof.m()).unwrap();
        proof.verify_server(&h_amk).unwrap();
    }

    let (mut server_rounds, mut client_rounds) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (mut server, mut client) = (Duration::ZERO, Duration::ZERO);
        let clients: Vec<(ClientSession, Vec<u8>)> = timed(&mut client, || {
            (0..per_round)
                .map(|_| {
                    let c = ClientSession::new();
                    let a = c.public();
                    (c, a)
                })
                .collect()
        });
        let servers: Vec<(ServerSession, Vec<u8>)> = timed(&mut server, || {
            clients
                .iter()
                .map(|(_, a)| {
                    let s = ServerSession::start(&verifier, a).unwrap();
                    let b = s.public();
                    (s, b)
                })
                .collect()
        });
        let proofs: Vec<_> = timed(&mut client, || {
            clients
                .into_iter()
                .zip(&servers)
                .map(|((c, _), (_, b))| c.respond(&password, verifier.salt(), b).unwrap())
                .collect()
        });
        let answers: Vec<_> = timed(&mut server, || {
            servers
                .into_iter()
                .zip(&proofs)
                .map(|((s, _), p)| s.verify(p.m()).unwrap().0)
                .collect()
        });
        timed(&mut client, || {
            for (p, h_amk) in proofs.into_iter().zip(&answers) {
                p.verify_server(h_amk).unwrap();
            }
        });
        server_rounds.push(micros(server, per_round));
        client_rounds.push(micros(client, per_round));
    }
    let n = per_round * rounds;
    let verifier_us = micros(verifier_time, 1);
    let server_min = server_rounds.iter().copied().fold(f64::MAX, f64::min);
    let client_min = client_rounds.iter().copied().fold(f64::MAX, f64::min);
    let (server_med, client_med) = (median(server_rounds), median(client_rounds));
    println!("{n} logins in {rounds} rounds, {clock} time per login");
    println!("verifier (once per room): {verifier_us} µs");
    println!("server half: {server_med} µs median round, {server_min} µs lowest");
    println!("client half: {client_med} µs median round, {client_min} µs lowest");
    println!(
        "{{\"logins\":{n},\"clock\":\"{clock}\",\"verifier_us\":{verifier_us},\
         \"server_us_median\":{server_med},\"server_us_min\":{server_min},\
         \"client_us_median\":{client_med},\"client_us_min\":{client_min}}}"
    );
}
