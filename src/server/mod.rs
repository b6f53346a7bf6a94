//! The room server.
//!
//! [`Server::bind`] derives the SRP verifier from the password and drops the
//! password; [`Server::run`] accepts connections until the `shutdown` future
//! completes. Everything lives in RAM and is gone when the server stops.

mod files;
mod first_line;
pub mod guard;
mod handler;
pub mod limits;
mod login_pool;
mod member;
pub mod outbox;
mod pending;
pub mod room;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::crypto::Password;
use crate::crypto::kdf::{self, KDF_SALT_LEN, KdfParams};
use crate::crypto::room_key::ROOM_SALT_LEN;
use crate::crypto::srp::Verifier;
use crate::protocol::FrameWriter;
use crate::protocol::limits::PRE_AUTH_MAX_LINE;
use crate::protocol::wire::{ErrorCode, ErrorReply, KdfSpec};
use guard::{GuessGuard, Refusal};
use login_pool::LoginPool;
use pending::{Crowded, Pending, PendingSlot};
use room::{Room, RoomConfig};

/// How the room is run; the CLI's `serve` flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Admit cmd-chat 1.x clients, whose sessions are readable on the wire.
    pub allow_legacy: bool,
    /// History bound by count.
    pub history_messages: usize,
    /// Member bound.
    pub max_users: usize,
    /// Bound on connections still authenticating.
    pub max_pending: usize,
    /// A connection that has not sent its first line this long after it was
    /// accepted is closed, freeing its place among the pending ones.
    pub first_line_timeout: Duration,
    /// Sustained messages per second per member.
    pub rate_per_sec: u32,
    /// A native member silent (not even a `pong`) this long is dropped.
    pub idle_timeout: Duration,
    /// The password stretch of native-only rooms (ignored with `allow_legacy`).
    pub kdf: KdfParams,
    /// End the server once the room has been empty this long (`--idle-exit`).
    pub idle_exit: Option<Duration>,
    /// Drop history messages older than this (`--expire`).
    pub expire: Option<Duration>,
    /// How long a newcomer may wait at a locked room for an answer.
    pub knock_timeout: Duration,
    /// Largest file, in bytes, the room relays (`--max-file-size`); at most
    /// [`MAX_FILE_SIZE_CAP`](crate::protocol::limits::MAX_FILE_SIZE_CAP).
    pub max_file_size: u64,
    /// An address's first wait once its free wrong passwords are spent;
    /// each further failure doubles it, up to [`guard::MAX_LOCKOUT`].
    /// [`guard::BASE_LOCKOUT`] unless a test needs its checks to land
    /// well inside the wait.
    pub base_lockout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            allow_legacy: false,
            history_messages: limits::DEFAULT_HISTORY_MESSAGES,
            max_users: limits::DEFAULT_MAX_USERS,
            max_pending: limits::DEFAULT_MAX_PENDING,
            first_line_timeout: limits::DEFAULT_FIRST_LINE_TIMEOUT,
            rate_per_sec: limits::DEFAULT_RATE_PER_SEC,
            idle_timeout: limits::DEFAULT_IDLE_TIMEOUT,
            kdf: KdfParams::DEFAULT,
            idle_exit: None,
            expire: None,
            knock_timeout: limits::DEFAULT_KNOCK_TIMEOUT,
            max_file_size: crate::protocol::limits::DEFAULT_MAX_FILE_SIZE,
            base_lockout: guard::BASE_LOCKOUT,
        }
    }
}

/// What the server knows about the password: never the password itself.
pub(crate) struct RoomSecrets {
    /// Checks each login's SRP proof without the server knowing the password.
    verifier: Verifier,
    /// Base64 of the per-process room salt members feed into HKDF.
    room_salt_b64: String,
    /// The stretch clients must apply, announced in `srp_init` replies.
    kdf: Option<KdfSpec>,
}

/// Failed-login notices to members, throttled.
struct Notices {
    /// When members were last told, so a guessing spree is one notice per
    /// interval, not one per guess.
    last: Option<Instant>,
    /// Failures since the last notice, for the next one to count.
    unreported: u32,
}

/// A login in progress, as the guessing guard counts it; it ends when
/// dropped, however the handshake ends.
pub(crate) struct LoginAttempt {
    /// The server, whose guard counts the attempt and is told when it ends.
    shared: Arc<Shared>,
    /// The address the guard holds the attempt against.
    ip: IpAddr,
    /// A stranger, or a member who proved its resume token.
    who: guard::Login,
}

impl LoginAttempt {
    /// Checks the login's proof with `check` if the guard lets this address
    /// make a guess now, and counts the outcome (see [`GuessGuard::settle`]).
    fn settle<T, E>(&self, check: impl FnOnce() -> Result<T, E>) -> Result<Result<T, E>, Refusal> {
        self.shared
            .guard()
            .settle_as(self.ip, Instant::now(), self.who, check)
    }
}

impl Drop for LoginAttempt {
    fn drop(&mut self) {
        self.shared.guard().end(self.ip);
    }
}

/// State every connection task shares.
pub(crate) struct Shared {
    /// The limits every connection checks against.
    config: ServerConfig,
    /// What logins are checked with.
    secrets: RoomSecrets,
    /// The room every login joins.
    room: Arc<Room>,
    /// Online guessing bookkeeping.
    guard: Mutex<GuessGuard>,
    /// Where logins' SRP arithmetic runs, below the relay's priority.
    logins: LoginPool,
    /// Throttles the notices of failed logins to members.
    notices: Mutex<Notices>,
    /// Flips to `true` once when the server starts shutting down.
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn guard(&self) -> MutexGuard<'_, GuessGuard> {
        self.guard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a login from `ip` if the guessing guard allows one now.
    fn begin_login(
        self: &Arc<Self>,
        ip: IpAddr,
        who: guard::Login,
    ) -> Result<LoginAttempt, Refusal> {
        self.guard().begin_as(ip, Instant::now(), who)?;
        Ok(LoginAttempt {
            shared: Arc::clone(self),
            ip,
            who,
        })
    }

    /// Tells the members about a wrong password, at most once per
    /// [`limits::NOTICE_INTERVAL`]. (The guard counted the failure when it
    /// checked the proof.)
    fn login_failed(&self, peer: SocketAddr) {
        let now = Instant::now();
        warn!(%peer, "failed login: wrong password");
        let mut notices = self.notices.lock().unwrap_or_else(|e| e.into_inner());
        notices.unreported += 1;
        if notices
            .last
            .is_none_or(|t| now.duration_since(t) >= limits::NOTICE_INTERVAL)
        {
            let n = std::mem::take(&mut notices.unreported);
            notices.last = Some(now);
            drop(notices);
            let text = if n == 1 {
                "someone just tried to join with a wrong password".to_owned()
            } else {
                format!("{n} failed login attempts (wrong password) in the last moments")
            };
            self.room.notice(&text);
        }
    }
}

/// A bound, ready room server.
pub struct Server {
    /// Where newcomers connect.
    listener: TcpListener,
    /// What every connection task gets a handle on.
    shared: Arc<Shared>,
    /// Tells every connection task the server is stopping.
    shutdown_tx: watch::Sender<bool>,
}

/// How often a server turning newcomers away (`--max-pending` reached) says
/// so: a flood of sockets must not become a flood of log lines.
const REFUSALS_REPORTED_EVERY: Duration = Duration::from_secs(10);

/// Newcomers turned away at `--max-pending`, reported at most once per
/// [`REFUSALS_REPORTED_EVERY`]: the first at once, the rest counted and
/// reported when that period is up, even if no one else knocks meanwhile.
#[derive(Default)]
struct Refusals {
    /// Turned away since the last report.
    count: u64,
    /// When the last report went out (`None` before the first): the next
    /// is due a period after it.
    last_report: Option<Instant>,
}

impl Refusals {
    fn refuse(&mut self) {
        self.count += 1;
        if self
            .last_report
            .is_none_or(|at| at.elapsed() >= REFUSALS_REPORTED_EVERY)
        {
            self.report();
        }
    }

    /// When the newcomers counted since the last report are due to be reported.
    fn due(&self) -> Option<tokio::time::Instant> {
        let last = self.last_report?;
        (self.count > 0).then(|| (last + REFUSALS_REPORTED_EVERY).into())
    }

    fn report(&mut self) {
        warn!(
            refused = self.count,
            "too many connections still authenticating; newcomers turned away"
        );
        self.count = 0;
        self.last_report = Some(Instant::now());
    }
}

impl Server {
    /// Binds `addr` and prepares the room. The password is consumed: once the
    /// verifier is derived it is wiped, and the server never holds it again.
    ///
    /// Rooms that admit only native clients stretch the password with
    /// Argon2id first (see [`crate::crypto::kdf`]).
    pub async fn bind(
        addr: impl ToSocketAddrs,
        config: ServerConfig,
        password: Password,
    ) -> io::Result<Self> {
        let stretch = (!config.allow_legacy).then_some(config.kdf);
        if stretch.is_some_and(|params| !params.within_client_limits()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "password stretch {:?} is outside what clients accept ({:?} to {:?})",
                    config.kdf,
                    KdfParams::CLIENT_MIN,
                    KdfParams::CLIENT_MAX
                ),
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        let (verifier, kdf_spec) = tokio::task::spawn_blocking(move || -> io::Result<_> {
            match stretch {
                None => Ok((Verifier::new(&password), None)),
                Some(params) => {
                    let salt: [u8; KDF_SALT_LEN] = rand::random();
                    let stretched = kdf::stretch(&password, &salt, params)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                    drop(password);
                    let spec = KdfSpec {
                        alg: "argon2id".into(),
                        salt: STANDARD.encode(salt),
                        params,
                    };
                    Ok((Verifier::new(&stretched), Some(spec)))
                }
            }
        })
        .await
        .expect("verifier derivation does not panic")?;
        let room_salt: [u8; ROOM_SALT_LEN] = rand::random();
        let room_salt_b64 = STANDARD.encode(room_salt);
        let room = Room::new(
            RoomConfig {
                history_messages: config.history_messages,
                history_bytes: limits::HISTORY_MAX_BYTES,
                max_users: config.max_users,
                max_file_size: config
                    .max_file_size
                    .min(crate::protocol::limits::MAX_FILE_SIZE_CAP),
            },
            room_salt_b64.clone(),
        );
        let (shutdown_tx, shutdown) = watch::channel(false);
        let guard = GuessGuard::with_base_lockout(Instant::now(), config.base_lockout);
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                config,
                secrets: RoomSecrets {
                    verifier,
                    room_salt_b64,
                    kdf: kdf_spec,
                },
                room,
                guard: Mutex::new(guard),
                logins: LoginPool::start()?,
                notices: Mutex::new(Notices {
                    last: None,
                    unreported: 0,
                }),
                shutdown,
            }),
            shutdown_tx,
        })
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether clients must stretch the password (native-only rooms).
    pub fn stretches_password(&self) -> bool {
        self.shared.secrets.kdf.is_some()
    }

    /// The room, for inspection (tests, status lines).
    pub fn room(&self) -> Arc<Room> {
        Arc::clone(&self.shared.room)
    }

    /// Serves one connection that arrived some other way than the listener:
    /// any byte stream, such as an in-memory pipe in a fuzzer. It goes through
    /// exactly the handshake and member loop that accepted sockets do.
    pub async fn serve_stream<S>(&self, stream: S, peer: SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        handler::handle(stream, peer, Arc::clone(&self.shared), None).await;
    }

    /// Accepts connections until `shutdown` completes, then tells members the
    /// room is closing, waits briefly for them, and drops all history.
    ///
    /// With `idle_exit`, the server also ends by itself once the room has
    /// been empty that long; with `expire`, old history is dropped as it ages.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let tracker = TaskTracker::new();
        let strangers = Pending::new(self.shared.config.max_pending);
        let housekeeping = housekeeping(&self.shared.room, &self.shared.config);
        let shutdown = async {
            tokio::select! {
                () = shutdown => {}
                () = housekeeping => {}
            }
        };
        tokio::pin!(shutdown);
        let mut refused = Refusals::default();
        loop {
            let report_due = refused.due();
            let (socket, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Typically out of file descriptors: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = sleep_until_some(report_due) => {
                    refused.report();
                    continue;
                }
                () = &mut shutdown => break,
            };
            let pending = match strangers.admit(peer.ip()) {
                Ok(slot) => slot,
                Err(Crowded::Room) => {
                    refused.refuse();
                    continue;
                }
                // One address holding its share: not worth a line per socket.
                Err(Crowded::Address) => {
                    debug!(%peer, "too many connections from this address still authenticating; refused");
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(limits::TCP_KEEPALIVE)
                .with_interval(limits::TCP_KEEPALIVE / 3);
            let _ = socket2::SockRef::from(&socket).set_tcp_keepalive(&keepalive);
            tracker.spawn(serve_stranger(
                socket,
                peer,
                Arc::clone(&self.shared),
                pending,
            ));
        }
        info!("shutting down");
        let _ = self.shutdown_tx.send(true);
        tracker.close();
        if tokio::time::timeout(limits::SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            warn!("some connections did not close in time");
        }
        self.shared.room.close();
    }
}

/// Serves a connection just accepted: waits for its first line, within
/// [`ServerConfig::first_line_timeout`] and for as long as no newcomer
/// takes its place, then hands it to the connection handler.
async fn serve_stranger(
    mut socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    pending: PendingSlot,
) {
    let mut shutdown = shared.shutdown.clone();
    let mut first = Vec::new();
    let reply = tokio::select! {
        read = first_line::read_first_line(&mut socket, &mut first, PRE_AUTH_MAX_LINE) => match read {
            // The handler reads it, and says who spoke (see `PendingSlot::spoke`).
            Ok(()) => {
                let stream = first_line::Replay::new(first, socket);
                return handler::handle(stream, peer, shared, Some(pending)).await;
            }
            Err(_) => return,
        },
        () = pending.taken() => None,
        () = tokio::time::sleep(shared.config.first_line_timeout) => Some(ErrorReply::new(
            ErrorCode::Timeout,
            "no login request in time; connection closed",
        )),
        _ = shutdown.changed() => return,
    };
    drop(pending);
    let reply = reply.unwrap_or_else(|| {
        debug!(%peer, "silent connection gave its place to a newcomer");
        handler::busy()
    });
    let mut writer = FrameWriter::new(socket);
    if writer.queue(&reply).is_ok() {
        let _ = tokio::time::timeout(limits::FAREWELL_DEADLINE, writer.shutdown()).await;
    }
}

/// Sleeps until `at`; never completes without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Ages the history out (`expire`) and completes once the room has been empty
/// for `idle_exit`. Never completes when neither is set.
async fn housekeeping(room: &Room, config: &ServerConfig) {
    let periods = [config.idle_exit, config.expire];
    let Some(shortest) = periods.iter().flatten().min() else {
        return std::future::pending().await;
    };
    // Checking ten times per period keeps the overshoot to a tenth.
    let tick = (*shortest / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    loop {
        interval.tick().await;
        if let Some(max_age) = config.expire {
            room.expire(max_age);
        }
        if let Some(idle) = config.idle_exit
            && room.empty_for() >= idle
        {
            info!(after = ?idle, "the room has been empty long enough; closing");
            return;
        }
    }
}
