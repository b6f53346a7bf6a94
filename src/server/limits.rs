//! The server's limits, in one place. Each bounds memory or time that a
//! stranger on the network could otherwise make the server spend.

use std::time::Duration;

/// Default number of messages the history keeps (`serve --history`).
pub const DEFAULT_HISTORY_MESSAGES: usize = 1000;

/// Bytes of ciphertext the history keeps, whatever `--history` says; the
/// oldest messages go first. Also bounds the size of a native `init` frame.
pub const HISTORY_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Default maximum number of members (`serve --max-users`).
pub const DEFAULT_MAX_USERS: usize = 256;

/// Connections that have not finished SRP yet. Each costs a task, a socket and,
/// during `srp_init`, three 2048-bit exponentiations; beyond this newcomers are
/// turned away at once, and members are unaffected.
pub const MAX_UNAUTHENTICATED: usize = 128;

/// Time a connection has to complete SRP, from accept to `H_AMK`.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Frames queued toward one member. A member whose queue is full is not
/// reading; it is disconnected rather than slowing the room or growing memory.
pub const OUTBOUND_QUEUE_FRAMES: usize = 1024;

/// Time given to a departing connection to take its last frame.
pub const FAREWELL_DEADLINE: Duration = Duration::from_secs(2);

/// Time given to connections to finish when the server shuts down.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
