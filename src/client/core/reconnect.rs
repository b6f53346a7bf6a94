//! Getting a lost connection back: the client gives up on what was in
//! flight, logs in again with backoff (resuming its session where it left
//! off), and on success adopts the new connection and reports what changed
//! meanwhile. Part of [`Client`]; the front end sees only events.

use std::time::Duration;

use super::{
    Client, ClientConfig, RECONNECT_ATTEMPTS, RECONNECT_FIRST_DELAY, RECONNECT_MAX_DELAY,
    RECONNECT_STABLE_AFTER,
};
use crate::client::error::ClientError;
use crate::client::event::{Event, Transport};
use crate::client::login::{Link, LoginFailed, ResumeRequest, ResumeState, protocol};
use crate::protocol::wire::UserInfo;

/// The connection is gone and the client is trying to get it back.
pub(super) struct Broken {
    /// Why the connection was lost: said of each message refused meanwhile,
    /// and in the error if we give up.
    pub(super) reason: String,
    /// Which attempt of this run is next (from 1), for the backoff and the
    /// limit of [`RECONNECT_ATTEMPTS`].
    attempt: u32,
    /// When the next attempt may start: the backoff is over.
    next_try: tokio::time::Instant,
    /// The attempt under way. It runs as a task of its own so that a
    /// `next_event` call cancelled by other input (a `select!` moving on)
    /// resumes it rather than starting over.
    attempt_task: Option<tokio::task::JoinHandle<Result<Link, LoginFailed>>>,
}

impl Drop for Broken {
    fn drop(&mut self) {
        if let Some(task) = self.attempt_task.take() {
            task.abort();
        }
    }
}

impl Client {
    /// The connection is gone: start reconnecting, or give up if we can't.
    pub(super) fn lost(&mut self, reason: String) -> Result<(), ClientError> {
        if !self.reconnect || self.transport != Transport::Sealed || self.resume.is_none() {
            return Err(ClientError::ConnectionLost(reason));
        }
        match self.reconnected_at.take() {
            Some(at) if at.elapsed() < RECONNECT_STABLE_AFTER => self.quick_drops += 1,
            _ => self.quick_drops = 0,
        }
        if self.quick_drops >= RECONNECT_ATTEMPTS {
            return Err(ClientError::ConnectionLost(format!(
                "{reason} (gave up: the server dropped {RECONNECT_ATTEMPTS} reconnections in a row at once)"
            )));
        }
        let attempt = 1 + self.quick_drops;
        // Transfers do not survive the connection: say which ended.
        let ended = self.transfers.connection_lost();
        self.pending.extend(ended);
        // What was in flight may or may not have been stored: say so.
        let lost = self.receipts.connection_lost();
        self.pending.extend(lost);
        self.pending.push_back(Event::Reconnecting {
            attempt,
            reason: reason.clone(),
        });
        self.broken = Some(Broken {
            reason,
            attempt,
            next_try: tokio::time::Instant::now() + reconnect_delay(attempt),
            attempt_task: None,
        });
        Ok(())
    }

    /// One reconnection attempt, after its backoff. `Ok(Some(event))` reports
    /// the next attempt; `Ok(None)` means back in the room (events queued).
    pub(super) async fn try_reconnect(&mut self) -> Result<Option<Event>, ClientError> {
        match self.reconnect_attempt().await {
            Ok(link) => {
                self.rejoin(link);
                Ok(None)
            }
            Err(failed) => self.attempt_failed(failed).map(Some),
        }
    }

    /// The outcome of the reconnection attempt under way, started once its
    /// backoff is over if there is none. Cancel-safe: the attempt is a task
    /// of its own, which a cancelled call leaves running for the next.
    async fn reconnect_attempt(&mut self) -> Result<Link, LoginFailed> {
        let broken = self.broken.as_ref().expect("only called while broken");
        if broken.attempt_task.is_none() {
            tokio::time::sleep_until(broken.next_try).await;
            let task = self.log_in_again();
            self.broken.as_mut().expect("still broken").attempt_task = Some(task);
        }
        let broken = self.broken.as_mut().expect("still broken");
        let task = broken.attempt_task.as_mut().expect("just started");
        let outcome = task.await.unwrap_or_else(|_| {
            Err(LoginFailed::after_proof(protocol(
                "the reconnection attempt failed",
            )))
        });
        broken.attempt_task = None;
        outcome
    }

    /// Starts logging in again, in a task of its own, asking to take this
    /// session over where it left off.
    fn log_in_again(&self) -> tokio::task::JoinHandle<Result<Link, LoginFailed>> {
        let config = ClientConfig {
            server: self.config.server.clone(),
            username: self.config.username.clone(),
            password: self.config.password.clone(),
            allow_legacy: self.config.allow_legacy,
        };
        let resume = self.resume.as_ref().map(|r| ResumeRequest {
            session: ResumeState {
                user_id: r.user_id.clone(),
                token: r.token.clone(),
            },
            room_id: self.room.id.clone(),
            after_seq: self.last_seq,
        });
        tokio::spawn(
            async move { crate::client::login::open(&config, resume.as_ref(), |_| {}).await },
        )
    }

    /// A reconnection attempt failed: the event announcing the next one,
    /// or the error that ends the session.
    fn attempt_failed(&mut self, failed: LoginFailed) -> Result<Event, ClientError> {
        match failed {
            // Refused or cut before our proof went out: worth trying again,
            // a room refusing logins for a moment too. Never once the proof
            // has gone out (see `LoginFailed`).
            LoginFailed {
                error: e,
                proof_sent: false,
            } if e.is_transient() || matches!(e, ClientError::LockedOut(_)) => {
                let broken = self.broken.as_mut().expect("still broken");
                if broken.attempt >= RECONNECT_ATTEMPTS {
                    return Err(ClientError::ConnectionLost(format!(
                        "{}; gave up after {} attempts to reconnect, the last: {e}",
                        broken.reason, broken.attempt
                    )));
                }
                broken.attempt += 1;
                broken.next_try = tokio::time::Instant::now() + reconnect_delay(broken.attempt);
                Ok(Event::Reconnecting {
                    attempt: broken.attempt,
                    reason: e.to_string(),
                })
            }
            // The room took this password minutes ago; refusing it now
            // means the login was changed on its way (each field of it is
            // bound into the proof), unless the host restarted the room
            // with another password.
            LoginFailed {
                error: ClientError::WrongPassword,
                ..
            } => Err(ClientError::Tampered(
                "the room refused on reconnecting the password it took before \
                 (unless its host restarted it with another password)"
                    .into(),
            )),
            failed => Err(failed.error),
        }
    }

    /// Back in the room over `link`: adopts the new connection and the
    /// room's state, reports [`Event::Reconnected`], what changed among the
    /// members meanwhile, and the messages missed.
    fn rejoin(&mut self, link: Link) {
        self.broken = None;
        self.reconnected_at = Some(tokio::time::Instant::now());
        let missed = link.replayed();
        // The room key comes with it: a restarted server's is new.
        self.conn = link.conn;
        self.locked = link.locked;
        self.knocking = link.knocking;
        self.transfers.set_max_file_size(link.max_file_size);
        // A restarted server is a new room: its numbers start again, and
        // whoever we knew there is gone.
        let restarted = link.room != self.room;
        if restarted {
            self.room = link.room;
            self.last_seq = 0;
            self.departed.clear();
            self.pending.push_back(Event::RoomRestarted);
        }
        // A new member id means the old session ended on the server (the
        // others saw us leave): private sessions with it are gone too.
        let same_member = match (&self.resume, &link.resume) {
            (Some(old), Some(new)) => old.user_id == new.user_id,
            _ => false,
        };
        let mut ours: Vec<String> = self.resume.iter().map(|r| r.user_id.clone()).collect();
        ours.extend(link.resume.iter().map(|r| r.user_id.clone()));
        if link.resume.is_some() {
            self.resume = link.resume;
        }
        self.last_heard = tokio::time::Instant::now();
        self.replay_is_history = false;
        self.pending.push_back(Event::Reconnected {
            missed,
            // A new room has nothing from before our return but its own
            // history, which follows whole (RoomRestarted said that the
            // old room's is gone).
            complete: restarted || link.complete.unwrap_or(false),
        });
        if restarted {
            // Nobody we knew is in the new room: RoomRestarted says so once,
            // rather than a leave and a join per member.
            self.users = link.users;
        } else {
            // Before any reset below, so what waited for a departed member
            // is reported as not sent.
            self.reconcile_members(link.users, &ours);
        }
        if !same_member || restarted {
            let why = "the connection was lost before the private session was set up";
            let failed = self.private.reset(why);
            self.pending.extend(failed);
        }
        for data in link.messages {
            let event = self.message_event(data, false);
            self.pending.extend(event);
        }
    }

    /// Back in the same room after a reconnect: takes the server's member
    /// list `users` and reports the difference from ours as if it had been
    /// seen live, [`Event::Left`] for each member gone (as a live
    /// `user_left`, keys and all), then [`Event::Joined`] for each newcomer
    /// in the server's order. A member id whose name changed is both. Our
    /// own entries, under any of the ids in `ours`, are no event.
    fn reconcile_members(&mut self, users: Vec<UserInfo>, ours: &[String]) {
        let me = self.config.username.clone();
        let is_us = |u: &UserInfo| u.username == me || ours.contains(&u.user_id);
        let same = |a: &UserInfo, b: &UserInfo| a.user_id == b.user_id && a.username == b.username;
        let old = std::mem::take(&mut self.users);
        let joined: Vec<String> = users
            .iter()
            .filter(|u| !is_us(u) && !old.iter().any(|o| same(o, u)))
            .map(|u| u.username.clone())
            .collect();
        for user in old {
            if !is_us(&user) && !users.iter().any(|u| same(u, &user)) {
                self.member_left(user);
            }
        }
        self.pending
            .extend(joined.into_iter().map(|user| Event::Joined { user }));
        self.users = users;
    }
}

/// The wait before reconnection attempt `attempt` (from 1): doubling from
/// [`RECONNECT_FIRST_DELAY`] up to [`RECONNECT_MAX_DELAY`].
fn reconnect_delay(attempt: u32) -> Duration {
    RECONNECT_FIRST_DELAY
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(RECONNECT_MAX_DELAY)
}
