//! The client's side of the login ([`ClientHello`] and its successors), fed
//! an arbitrary challenge and welcome as a hostile server would send them.
//! Whatever arrives, each step answers or refuses; it never panics.
#![no_main]

use cmd_chat::crypto::Password;
use cmd_chat::protocol::handshake::{ClientHello, HelloOptions};
use cmd_chat::protocol::wire::{Challenge, Reply, Welcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Two lines: the challenge, then the welcome.
    let mut lines = data.splitn(2, |&b| b == b'\n');
    let Ok(challenge) = serde_json::from_slice::<Reply<Challenge>>(lines.next().unwrap_or(b""))
    else {
        return;
    };
    let (hello, _init) = ClientHello::start_with(
        "fuzz",
        HelloOptions {
            allow_legacy: data.first().is_some_and(|b| b & 1 == 1),
            ..HelloOptions::default()
        },
    );
    let Ok(respond) = hello.read_challenge(challenge) else {
        return;
    };
    // A stretch within the client's limits costs Argon2id's time, not the
    // fuzzer's findings: answer without it.
    let Ok((awaiting, _verify)) = respond.respond_stretched(Password::new("fuzz".into())) else {
        return;
    };
    let Ok(welcome) = serde_json::from_slice::<Reply<Welcome>>(lines.next().unwrap_or(b"")) else {
        return;
    };
    let _ = awaiting.read_welcome(welcome);
});
