//! The server's limits, in one place. Each bounds memory or time that a
//! stranger on the network could otherwise make the server spend. Those an
//! operator may want to tune are `serve` flags; the rest are fixed here.
//! Line and message sizes shared with clients are in `protocol::limits`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default number of messages the history keeps (`serve --history`).
pub const DEFAULT_HISTORY_MESSAGES: usize = 1000;

/// Bytes of ciphertext the history keeps, whatever `--history` says; the
/// oldest messages go first. Also bounds the size of a native `init` frame.
pub const HISTORY_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Default maximum number of members (`serve --max-users`).
pub const DEFAULT_MAX_USERS: usize = 256;

/// Default number of connections that have not finished SRP yet
/// (`serve --max-pending`). Each costs a task, a socket and, during
/// `srp_init`, three 2048-bit exponentiations. Beyond this a newcomer takes
/// the place of one that has not sent its first line yet (see `pending.rs`
/// for which), or is turned away at once if all have; members are
/// unaffected. Some are kept for members coming back ([`RETURNING_SHARE`]).
pub const DEFAULT_MAX_PENDING: usize = 128;

/// Places among those `--max-pending` connections one address (an IPv6 /64)
/// may hold, from the moment it is accepted; more are closed at once. Twice
/// the logins it may have in progress
/// ([`PARALLEL_LOGINS_PER_ADDRESS`](super::guard::PARALLEL_LOGINS_PER_ADDRESS)):
/// a meeting behind one NAT that joins all at once gets `busy`, which its
/// clients retry, before anyone is closed without a word.
pub const PENDING_PER_ADDRESS: usize = 2 * super::guard::PARALLEL_LOGINS_PER_ADDRESS as usize;

/// One place in this many among `--max-pending` is kept for members coming
/// back with a resume proof: strangers whose logins are under way never hold
/// it, so logins started from many addresses at once cannot keep a member
/// out after a network blip. (With `--max-pending` under this, none is kept.)
pub const RETURNING_SHARE: usize = 4;

/// Time a connection has to complete SRP, from its first line (which has a
/// deadline of its own, [`DEFAULT_FIRST_LINE_TIMEOUT`]) to `H_AMK`.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Default time a connection has to send its first line, `srp_init`, from
/// accept (`ServerConfig::first_line_timeout`). Clients send it as soon as
/// they are connected, so this only has to cover a slow link losing a
/// segment or two; a socket that says nothing for longer is closed (with a
/// `timeout` reply) and its place among the pending connections is free
/// again, well before [`HANDSHAKE_DEADLINE`].
pub const DEFAULT_FIRST_LINE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Longest a join or leave notice waits in a member's queue for other frames
/// to go out with it, in one sealed record and one write. A flood of logins
/// sends every member two notices per login; beside a chat they ride along
/// with its messages, and in a quiet room they go out this much later, which
/// nobody reading a screen can tell.
pub const PRESENCE_DELAY: Duration = Duration::from_millis(50);

/// Bytes queued toward one member. A member whose queue would exceed it is not
/// reading: it is disconnected rather than slowing the room or growing memory.
pub const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// Minimum time between two notices to members about failed logins.
pub const NOTICE_INTERVAL: Duration = Duration::from_secs(10);

/// Time given to a departing connection to take its last frame.
pub const FAREWELL_DEADLINE: Duration = Duration::from_secs(2);

/// Time given to connections to finish when the server shuts down.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Default time a newcomer may wait at a locked room for a member to admit
/// it (`ServerConfig::knock_timeout`). Long enough for someone to notice the
/// knock and answer; after it the newcomer is told nobody answered.
pub const DEFAULT_KNOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// Newcomers who may be knocking at a locked room at once. Each holds a
/// connection and a name, and shows up on every member's screen; beyond this
/// newcomers are told to try later.
pub const MAX_WAITING_KNOCKS: usize = 16;

/// Longest line a knocking newcomer may send while it waits: it has nothing
/// to say but `leave` and `pong`.
pub const KNOCK_MAX_LINE: usize = 1024;

/// Files one member may be sending at once. A person sends one at a time;
/// this only stops a member from opening transfers without end.
pub const MAX_TRANSFERS_PER_MEMBER: usize = 2;

/// Sustained bytes of file chunks per second one member may push through the
/// room. Files do not count against `--rate`, which is meant for chat; they
/// have this budget instead. Going over it is not an error: the server holds
/// back the sender's acknowledgements, which slows the sender down.
pub const FILE_BYTES_PER_SEC: usize = 4 * 1024 * 1024;

/// File bytes a member may send in a burst before [`FILE_BYTES_PER_SEC`]
/// paces it: a default-sized file goes out at full speed.
pub const FILE_BYTES_BURST: usize = 8 * 1024 * 1024;

/// While some receiver of a file has more than this queued, the sender's
/// acknowledgements are held back, so a transfer never fills a slow member's
/// queue (bounded at [`MAX_QUEUED_BYTES`]) and gets it disconnected.
pub const FILE_BACKLOG_PAUSE: usize = 1024 * 1024;

/// Longest a cancelled transfer's unacknowledged chunks keep its place among
/// the sender's transfers while its receivers catch up: long enough that
/// cancelling and offering again paces like one transfer, short enough that
/// a member who stays behind cannot keep the sender from sending for long.
pub const FILE_DRAIN_MAX: Duration = Duration::from_secs(10);

/// A receiver with more than this queued when a chunk is due is dropped from
/// that transfer (and told so) rather than being disconnected for it. Half of
/// [`MAX_QUEUED_BYTES`], so chat keeps flowing to it.
pub const FILE_RECEIVER_QUEUE_MAX: usize = MAX_QUEUED_BYTES / 2;

/// How often a sender whose acknowledgements are held back checks whether
/// the receivers have caught up.
pub const FILE_ACK_POLL: Duration = Duration::from_millis(20);

/// Bytes of history in one `history` frame sent to a native joiner: one
/// sealed record's worth, so a replay of the whole history is built, sealed
/// and sent a part at a time, never as one frame of up to
/// [`HISTORY_MAX_BYTES`] per joiner.
pub const HISTORY_PART: usize = crate::protocol::limits::SEAL_BATCH;

/// A token bucket: `rate` messages per second on average, `burst` at once.
struct RateLimit {
    /// Messages that may be sent now; one is spent per message.
    tokens: f64,
    /// Tokens added per second.
    rate: f64,
    /// The most tokens the bucket holds, however long the member was quiet.
    burst: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl RateLimit {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            at: Instant::now(),
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A member session's `--rate` bucket, shared by every connection that holds
/// the session in turn: taking one's own session over (as a reconnecting
/// client does) must not refill it, or a member could post a fresh burst per
/// takeover without anyone seeing it leave and join.
#[derive(Clone, Default)]
pub struct SessionRate(Arc<Mutex<Option<RateLimit>>>);

impl SessionRate {
    /// Takes one token: `rate` per second on average, `burst` at once (the
    /// bucket starts full, on first use).
    pub fn allow(&self, rate: u32, burst: u32, now: Instant) -> bool {
        let mut bucket = self.0.lock().unwrap_or_else(|e| e.into_inner());
        bucket
            .get_or_insert_with(|| RateLimit::new(rate, burst))
            .allow(now)
    }
}
