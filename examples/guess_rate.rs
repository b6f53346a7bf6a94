//! How fast can someone test password guesses against a captured room?
//!
//! ```text
//! cargo run --release --example guess_rate -- [--seconds 3]
//! ```
//!
//! Measures, on one core, the cost of one guess for an attacker who holds:
//! - a legacy room's ciphertext (sniffed off the wire, or from a memory dump):
//!   HKDF of the guess, then the Fernet HMAC check of one captured token;
//! - a legacy room's SRP verifier (memory dump): `x` from the guess, `g^x mod N`;
//! - a native-only room's memory dump: the same checks, behind Argon2id with
//!   the default parameters (64 MiB, t = 3).
//!
//! Prints one line per case, then one JSON object with the guesses per second.

use std::time::{Duration, Instant};

use cmd_chat::crypto::kdf::{self, KdfParams};
use cmd_chat::crypto::{Password, RoomCipher};
use num_bigint::BigUint;
use sha2::{Digest, Sha256};

/// Runs `guess` with fresh candidate passwords for about `budget`; guesses per second.
fn rate(budget: Duration, mut guess: impl FnMut(&Password) -> bool) -> f64 {
    let start = Instant::now();
    let mut tries = 0u64;
    // Bounded in count as well as time.
    while start.elapsed() < budget && tries < 50_000_000 {
        let candidate = Password::new(format!("guess-{tries}"));
        assert!(!guess(&candidate), "a wrong guess matched");
        tries += 1;
    }
    tries as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let seconds: u64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .clamp(1, 60);
    let budget = Duration::from_secs(seconds);
    let room_salt = [7u8; 16];
    let real = RoomCipher::from_password(&Password::new("the real password".into()), &room_salt);
    let token = real.encrypt("a captured message");

    // Legacy ciphertext: HKDF + HMAC per guess.
    let legacy_ciphertext = rate(budget, |p| {
        RoomCipher::from_password(p, &room_salt)
            .decrypt(&token)
            .is_ok()
    });

    // Legacy verifier: SHA-256 twice and one 2048-bit exponentiation per guess.
    let n = srp::groups::G_2048.n.clone();
    let g = srp::groups::G_2048.g.clone();
    let salt = [9u8; 16];
    let target = g.modpow(&BigUint::from(12345u32), &n);
    let legacy_verifier = rate(budget, |p| {
        let inner = Sha256::new()
            .chain_update(b"chat:")
            .chain_update(p.as_bytes())
            .finalize();
        let x = BigUint::from_bytes_be(
            &Sha256::new()
                .chain_update(salt)
                .chain_update(inner)
                .finalize(),
        );
        g.modpow(&x, &n) == target
    });

    // Native room: Argon2id with the default parameters before the cheapest check.
    let params = KdfParams::DEFAULT;
    let kdf_salt = [3u8; 16];
    let native = rate(budget, |p| {
        let stretched = kdf::stretch(p, &kdf_salt, params).expect("default parameters are valid");
        RoomCipher::from_password(&stretched, &room_salt)
            .decrypt(&token)
            .is_ok()
    });

    println!("legacy room, captured ciphertext:  {legacy_ciphertext:>12.0} guesses/s per core");
    println!("legacy room, stolen verifier:      {legacy_verifier:>12.0} guesses/s per core");
    println!(
        "native room, memory dump (Argon2id {} MiB, t={}): {native:>8.2} guesses/s per core",
        params.m_kib / 1024,
        params.t
    );
    println!(
        "{}",
        serde_json::json!({
            "legacy_ciphertext_guesses_per_sec": legacy_ciphertext.round(),
            "legacy_verifier_guesses_per_sec": legacy_verifier.round(),
            "native_guesses_per_sec": (native * 100.0).round() / 100.0,
            "slowdown": (legacy_ciphertext / native).round(),
        })
    );
}
