//! CPU cost of the SRP arithmetic alone, per login, on one thread.
//!
//! ```sh
//! cargo run --release --example srp_bench -- [ROUNDS]
//! ```
//!
//! Prints the median time of the server's half (`ServerSession::start`: the
//! work behind every `srp_init`) and of the client's half (`ClientSession`
//! and `respond`), and the one-off cost of deriving the verifier. The figures
//! are CPU-bound and single-threaded, so on a busy machine take the smallest
//! of a few runs.

use std::time::{Duration, Instant};

use cmd_chat::crypto::Password;
use cmd_chat::crypto::srp::{ClientSession, ServerSession, Verifier};

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let password = Password::new("correct horse battery staple".into());
    let t = Instant::now();
    let verifier = Verifier::new(&password);
    let setup = t.elapsed();
    // The first login builds the server's table of powers of g.
    let t = Instant::now();
    let _ = ServerSession::start(&verifier, &ClientSession::new().public()).unwrap();
    let first = t.elapsed();

    let (mut server, mut client_new, mut client_respond) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let client = ClientSession::new();
        client_new.push(t.elapsed());
        let a = client.public();
        let t = Instant::now();
        let session = ServerSession::start(&verifier, &a).unwrap();
        server.push(t.elapsed());
        let t = Instant::now();
        let proof = client
            .respond(&password, verifier.salt(), &session.public())
            .unwrap();
        client_respond.push(t.elapsed());
        session.verify(proof.m()).expect("same password");
    }
    println!(
        "{}",
        serde_json::json!({
            "rounds": rounds,
            "verifier_setup_ms": setup.as_secs_f64() * 1e3,
            "first_server_start_ms": first.as_secs_f64() * 1e3,
            "server_start_us": median(server).round(),
            "client_new_us": median(client_new).round(),
            "client_respond_us": median(client_respond).round(),
        })
    );
}
