//! The room server.
//!
//! [`Server::bind`] derives the SRP verifier from the password and drops the
//! password; [`Server::run`] accepts connections until the `shutdown` future
//! completes. Everything lives in RAM and is gone when the server stops.

mod handler;
pub mod limits;
pub mod room;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::crypto::Password;
use crate::crypto::room_key::ROOM_SALT_LEN;
use crate::crypto::srp::Verifier;
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            allow_legacy: false,
            history_messages: limits::DEFAULT_HISTORY_MESSAGES,
            max_users: limits::DEFAULT_MAX_USERS,
        }
    }
}

/// What the server knows about the password: never the password itself.
pub(crate) struct RoomSecrets {
    verifier: Verifier,
    /// Base64 of the per-process room salt members feed into HKDF.
    room_salt_b64: String,
}

/// State every connection task shares.
pub(crate) struct Shared {
    config: ServerConfig,
    secrets: RoomSecrets,
    room: Arc<Room>,
    /// Flips to `true` once when the server starts shutting down.
    shutdown: watch::Receiver<bool>,
}

/// A bound, ready room server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
}

impl Server {
    /// Binds `addr` and prepares the room. The password is consumed: once the
    /// verifier is derived it is wiped, and the server never holds it again.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        config: ServerConfig,
        password: Password,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let verifier = tokio::task::spawn_blocking(move || Verifier::new(&password))
            .await
            .expect("verifier derivation does not panic");
        let room_salt: [u8; ROOM_SALT_LEN] = rand::random();
        let room_salt_b64 = STANDARD.encode(room_salt);
        let room = Room::new(
            RoomConfig {
                history_messages: config.history_messages,
                history_bytes: limits::HISTORY_MAX_BYTES,
                max_users: config.max_users,
            },
            room_salt_b64.clone(),
        );
        let (shutdown_tx, shutdown) = watch::channel(false);
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                config,
                secrets: RoomSecrets {
                    verifier,
                    room_salt_b64,
                },
                room,
                shutdown,
            }),
            shutdown_tx,
        })
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The room, for inspection (tests, status lines).
    pub fn room(&self) -> Arc<Room> {
        Arc::clone(&self.shared.room)
    }

    /// Accepts connections until `shutdown` completes, then tells members the
    /// room is closing, waits briefly for them, and drops all history.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let tracker = TaskTracker::new();
        let strangers = Arc::new(Semaphore::new(limits::MAX_UNAUTHENTICATED));
        tokio::pin!(shutdown);
        loop {
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
                () = &mut shutdown => break,
            };
            let Ok(pending) = Arc::clone(&strangers).try_acquire_owned() else {
                warn!(%peer, "too many connections still authenticating; refused");
                drop(socket);
                continue;
            };
            let _ = socket.set_nodelay(true);
            tracker.spawn(handler::handle(
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
