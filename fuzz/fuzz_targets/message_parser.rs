//! Every parser a peer's bytes reach: wire types in both directions, the
//! Fernet shape check and username rules. Errors are fine; panics are not,
//! and the client's direct route for server frames must agree with serde's.
#![no_main]

use cmd_chat::protocol::wire::{
    Challenge, ClientFrame, HandshakeRequest, Reply, ServerFrame, Welcome,
};
use cmd_chat::protocol::{token, username};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<HandshakeRequest>(data);
    let _ = serde_json::from_slice::<ClientFrame>(data);
    let _ = serde_json::from_slice::<Reply<Challenge>>(data);
    let _ = serde_json::from_slice::<Reply<Welcome>>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(
            ServerFrame::from_json(text).ok(),
            serde_json::from_str::<ServerFrame>(text).ok(),
        );
        let _ = token::check_shape(text);
        let _ = username::validate(text);
    }
});
