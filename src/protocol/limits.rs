//! Sizes every peer agrees on. The server's own operational limits (members,
//! handshakes, deadlines) live in `server::limits`.

/// Longest line accepted before a connection has authenticated: `srp_init`
/// and `srp_verify` fit in well under 1 KiB, so anything bigger is hostile.
pub const PRE_AUTH_MAX_LINE: usize = 4 * 1024;

/// Longest Fernet token accepted as a message text. Chosen so that a message
/// line (token plus JSON envelope) fits the 64 KiB line limit of cmd-chat 1.x
/// clients; it still holds about 44 KiB of typed text.
pub const MAX_TOKEN_LEN: usize = 60 * 1024;

/// Longest line a member may send: one sealed message frame (base64 of the
/// token plus envelope and tag) with room to spare.
pub const MEMBER_MAX_LINE: usize = 96 * 1024;

/// The line limit of cmd-chat 1.x clients (asyncio's reader limit). Every line
/// the server sends to a legacy member fits in it, `init` included.
pub const LEGACY_MAX_LINE: usize = 64 * 1024;

/// Longest line a client accepts from the server: the `init` frame, which
/// carries the whole history (bounded by `server::limits::HISTORY_MAX_BYTES`),
/// sealed and base64-encoded.
pub const CLIENT_MAX_LINE: usize = 16 * 1024 * 1024;

/// Usernames: 1 to 32 printable characters, no whitespace or control.
pub const MAX_USERNAME_CHARS: usize = 32;

/// A native client that hears nothing from the server this long (the server
/// pings every 20 s) takes the connection for dead.
pub const SERVER_SILENCE_LIMIT: std::time::Duration = std::time::Duration::from_secs(75);

/// Longest body a private frame may carry. The body is a Fernet token like a
/// message text, so the same bound keeps a private frame within every line
/// limit a message fits in.
pub const MAX_PRIVATE_BODY_LEN: usize = MAX_TOKEN_LEN;

/// Longest private message text, in bytes. A private text is encrypted
/// twice (the pair's key, then the room key, each adding base64), so less
/// fits than in a room message; 32 KiB leaves a frame under
/// [`MAX_PRIVATE_BODY_LEN`] (see the test below).
pub const MAX_PRIVATE_TEXT_LEN: usize = 32 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::private::KeyPair;
    use crate::crypto::{Password, RoomCipher};
    use crate::protocol::wire::PrivateEnvelope;
    use base64::Engine as _;

    #[test]
    fn the_longest_private_text_fits_a_private_body() {
        let a = KeyPair::generate();
        let b = KeyPair::generate();
        let b_pub = b.public();
        let mut session = a.agree("a", "b", &b_pub).unwrap();
        let (_, ct) = session.seal(&vec![b'x'; MAX_PRIVATE_TEXT_LEN]).unwrap();
        let envelope = PrivateEnvelope::Msg {
            n: u64::MAX,
            ct: base64::engine::general_purpose::STANDARD.encode(ct),
        };
        let body = RoomCipher::from_password(&Password::new("pw".into()), b"salt")
            .encrypt(&serde_json::to_string(&envelope).unwrap());
        assert!(body.len() <= MAX_PRIVATE_BODY_LEN, "{}", body.len());
    }
}
