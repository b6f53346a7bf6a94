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
