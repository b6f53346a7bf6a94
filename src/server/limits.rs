//! The server's limits, in one place. Each bounds memory or time that a
//! stranger on the network could otherwise make the server spend. Those an
//! operator may want to tune are `serve` flags; the rest are fixed here.
//! Line and message sizes shared with clients are in `protocol::limits`.

use std::time::Duration;

/// Default number of messages the history keeps (`serve --history`).
pub const DEFAULT_HISTORY_MESSAGES: usize = 1000;

/// Bytes of ciphertext the history keeps, whatever `--history` says; the
/// oldest messages go first. Also bounds the size of a native `init` frame.
pub const HISTORY_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Default maximum number of members (`serve --max-users`).
pub const DEFAULT_MAX_USERS: usize = 256;

/// Default number of connections that have not finished SRP yet
/// (`serve --max-pending`). Each costs a task, a socket and, during
/// `srp_init`, three 2048-bit exponentiations; beyond this newcomers are turned
/// away at once, and members are unaffected.
pub const DEFAULT_MAX_PENDING: usize = 128;

/// Time a connection has to complete SRP, from accept to `H_AMK`.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Interval between keep-alive pings to native members.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// Default idle deadline (`serve --idle-timeout`): a native member that sends
/// nothing, not even a `pong`, for this long is disconnected as dead.
/// Legacy members cannot answer pings; TCP keep-alive notices their death.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// TCP keep-alive probing for every connection: first probe after this idle time.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Default sustained message rate per member (`serve --rate`), messages per second.
pub const DEFAULT_RATE_PER_SEC: u32 = 10;

/// Burst a member may send at once before the rate applies: enough for a
/// script pasting a block of lines as separate messages.
pub const RATE_BURST: u32 = 50;

/// Frames queued toward one member.
pub const OUTBOUND_QUEUE_FRAMES: usize = 4096;

/// Bytes queued toward one member. A member whose queue would exceed it is not
/// reading: it is disconnected rather than slowing the room or growing memory.
pub const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// Minimum time between two notices to members about failed logins.
pub const NOTICE_INTERVAL: Duration = Duration::from_secs(10);

/// Time given to a departing connection to take its last frame.
pub const FAREWELL_DEADLINE: Duration = Duration::from_secs(2);

/// Time given to connections to finish when the server shuts down.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
