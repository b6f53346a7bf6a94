//! CPU cost of one SRP login, each half on its own.
//!
//! ```text
//! cargo run --release --example srp_cost -- [--logins 400]
//! ```
//!
//! Times, on one thread, `--logins` complete logins against one verifier (as
//! a room has one): the server half is `ServerSession::start` (from `A`) plus
//! `verify` (of `M`), the client half is `ClientSession::new`, `respond` and
//! `verify_server`. The verifier itself (made once per room) is timed
//! separately. Prints the mean and the fastest of 5 rounds of a fifth of the
//! logins each (the fastest is the least disturbed by other work on the
//! machine), then one JSON line. Bounded: at most 100,000 logins.

use std::time::{Duration, Instant};

use cmd_chat::crypto::Password;
use cmd_chat::crypto::srp::{ClientSession, ServerSession, Verifier};

fn micros(d: Duration, n: u32) -> f64 {
    (d.as_secs_f64() * 1e6 / f64::from(n) * 10.0).round() / 10.0
}

fn main() {
    let logins: u32 = std::env::args()
        .skip_while(|a| a != "--logins")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(400)
        .clamp(5, 100_000);
    let password = Password::new("correct horse battery staple".into());

    let start = Instant::now();
    let verifier = Verifier::new(&password);
    let verifier_time = start.elapsed();

    // Warm up (lazy group constants and tables, caches).
    for _ in 0..3 {
        let client = ClientSession::new();
        let server = ServerSession::start(&verifier, &client.public()).unwrap();
        let proof = client
            .respond(&password, verifier.salt(), &server.public())
            .unwrap();
        let (h_amk, _) = server.verify(proof.m()).unwrap();
        proof.verify_server(&h_amk).unwrap();
    }

    let rounds = 5;
    let per_round = logins / rounds;
    let (mut server_total, mut client_total) = (Duration::ZERO, Duration::ZERO);
    let (mut server_best, mut client_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        let (mut server_round, mut client_round) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..per_round {
            let t = Instant::now();
            let client = ClientSession::new();
            let a_pub = client.public();
            client_round += t.elapsed();

            let t = Instant::now();
            let server = ServerSession::start(&verifier, &a_pub).unwrap();
            let b_pub = server.public();
            server_round += t.elapsed();

            let t = Instant::now();
            let proof = client.respond(&password, verifier.salt(), &b_pub).unwrap();
            client_round += t.elapsed();

            let t = Instant::now();
            let (h_amk, _key) = server.verify(proof.m()).unwrap();
            server_round += t.elapsed();

            let t = Instant::now();
            proof.verify_server(&h_amk).unwrap();
            client_round += t.elapsed();
        }
        server_total += server_round;
        client_total += client_round;
        server_best = server_best.min(server_round);
        client_best = client_best.min(client_round);
    }
    let n = per_round * rounds;
    let verifier_us = micros(verifier_time, 1);
    let (server_mean, client_mean) = (micros(server_total, n), micros(client_total, n));
    let (server_min, client_min) = (
        micros(server_best, per_round),
        micros(client_best, per_round),
    );
    println!("verifier (once per room): {verifier_us} µs");
    println!("server half per login: {server_mean} µs mean, {server_min} µs best round");
    println!("client half per login: {client_mean} µs mean, {client_min} µs best round");
    println!(
        "{{\"logins\":{n},\"verifier_us\":{verifier_us},\"server_us_mean\":{server_mean},\
         \"server_us_best_round\":{server_min},\"client_us_mean\":{client_mean},\
         \"client_us_best_round\":{client_min}}}"
    );
}
