//! One connection, from accept to goodbye.
//!
//! The connection is a typestate: a stranger can only become a member by
//! passing [`authenticate`], which returns an [`Authenticated`] value; only
//! [`serve_member`] takes one, and only it touches the room's messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::Shared;
use super::files::{FileRefusal, Transfers};
use super::guard::{Login, Refusal};
use super::limits::{
    FAREWELL_DEADLINE, FILE_ACK_POLL, HANDSHAKE_DEADLINE, KNOCK_MAX_LINE, PING_INTERVAL,
    PRESENCE_DELAY, RATE_BURST,
};
use super::outbox::{self, Outbound, Outbox, Urgency};
use super::pending::PendingSlot;
use super::room::{
    Decision, Kick, Membership, NameReservation, PrivateRefusal, Resume, RoomError, Superseded,
};
use crate::crypto::srp::ServerSession;
use crate::crypto::transport::{Side, derive_keys};
use crate::protocol::encode::encode;
use crate::protocol::handshake::{self, ServerHello};
use crate::protocol::limits::{MAX_PRIVATE_BODY_LEN, MEMBER_MAX_LINE, PRE_AUTH_MAX_LINE};
use crate::protocol::wire::{ClientFrame, ErrorCode, ErrorReply, HandshakeRequest, ServerEvent};
use crate::protocol::{FrameError, FrameReader, FrameWriter, token, username};

/// A login that passed SRP: its name is reserved and, for native clients,
/// both halves of the connection are sealed.
pub struct Authenticated {
    reservation: NameReservation,
    legacy: bool,
    /// A reconnecting native member: replay only what it missed.
    resume: Option<Resume>,
}

/// Serves one accepted connection to the end. `pending` is this connection's
/// place among the unauthenticated (if it was counted); it is given back once
/// SRP is over.
pub async fn handle<S>(
    socket: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut pending: Option<PendingSlot>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(socket);
    let mut reader = FrameReader::new(read, PRE_AUTH_MAX_LINE);
    let mut writer = FrameWriter::new(write);
    let mut shutdown = shared.shutdown.clone();

    let outcome = tokio::select! {
        outcome = tokio::time::timeout(
            HANDSHAKE_DEADLINE,
            authenticate(&mut reader, &mut writer, &shared, peer, pending.as_mut()),
        ) => outcome,
        _ = shutdown.changed() => return,
    };
    drop(pending);
    let auth = match outcome {
        Ok(Ok(auth)) => auth,
        Ok(Err(refusal)) => {
            debug!(%peer, reason = %refusal.error, "handshake refused");
            farewell(&mut writer, &refusal).await;
            return;
        }
        Err(_elapsed) => {
            debug!(%peer, "handshake deadline passed");
            let reply = ErrorReply::new(
                ErrorCode::Timeout,
                "authentication took too long; connection closed",
            );
            farewell(&mut writer, &reply).await;
            return;
        }
    };
    serve_member(reader, writer, auth, peer, shared).await;
}

/// Sends a last frame, within a short deadline, and closes.
async fn farewell<W: AsyncWrite + Unpin>(writer: &mut FrameWriter<W>, reply: &ErrorReply) {
    if writer.queue(reply).is_ok() {
        let _ = tokio::time::timeout(FAREWELL_DEADLINE, writer.shutdown()).await;
    }
}

/// What a login that found no place among the pending ones is told.
pub(super) fn busy() -> ErrorReply {
    ErrorReply::new(
        ErrorCode::Busy,
        "the server is busy with other logins; try again in a moment",
    )
}

fn bad_request(detail: impl Into<String>) -> ErrorReply {
    ErrorReply::new(ErrorCode::BadRequest, detail)
}

/// Reads the next handshake line, turning every way it can be wrong into a refusal.
async fn next_request<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
) -> Result<HandshakeRequest, ErrorReply> {
    match reader.read::<HandshakeRequest>().await {
        Ok(Some(request)) => Ok(request),
        Ok(None) => Err(bad_request("connection closed during authentication")),
        // serde's words name the field and the fault, never more than the
        // sender itself wrote.
        Err(FrameError::Malformed(detail)) => Err(bad_request(format!(
            "malformed handshake line ({detail}); expected {{\"cmd\":\"srp_init\",...}} \
             or {{\"cmd\":\"srp_verify\",...}}"
        ))),
        Err(e) => Err(bad_request(format!("unreadable handshake line: {e}"))),
    }
}

fn write_failed(_: FrameError) -> ErrorReply {
    bad_request("write failed")
}

/// What a login the guessing guard turned away is told.
fn login_refused(refusal: Refusal) -> ErrorReply {
    match refusal {
        Refusal::Address { retry_after } => ErrorReply::new(
            ErrorCode::RateLimited,
            format!(
                "too many failed logins from your address; try again in {} s",
                retry_after.as_secs().max(1)
            ),
        ),
        Refusal::Global { retry_after } => ErrorReply::new(
            ErrorCode::RateLimited,
            format!(
                "too many failed logins to this room; it accepts no logins for {} s",
                retry_after.as_secs().max(1)
            ),
        ),
        Refusal::Busy => ErrorReply::new(
            ErrorCode::Busy,
            "too many logins in progress from your address; try again in a moment",
        ),
    }
}

/// SRP-6a, as in cmd-chat 1.x, with native logins bound to their transcript
/// (see [`crate::protocol::handshake`]), then (native clients) sealing.
async fn authenticate<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    shared: &Arc<Shared>,
    peer: SocketAddr,
    pending: Option<&mut PendingSlot>,
) -> Result<Authenticated, ErrorReply>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let hello = ServerHello::read(next_request(reader).await?, shared.config.allow_legacy)?;
    // A resume is about the room it was made in. One from another room (this
    // server was restarted on the same address since) is a fresh join: its
    // member id and sequence numbers mean nothing here.
    let same_room = hello.room_id.as_deref() == Some(shared.room.id());
    let resume = hello.resume.clone().filter(|_| same_room);
    // A member coming back proves its session's token before anything else,
    // so the room-wide guessing budget strangers spend never keeps it out.
    let returning = resume
        .as_deref()
        .is_some_and(|id| hello.resume_proved(&shared.room.resume_token(id)));
    let who = if returning {
        Login::Returning
    } else {
        Login::Stranger
    };
    if let Some(place) = pending {
        place.spoke(who).map_err(|lost| {
            debug!(%peer, ?lost, "no place for this login among the pending ones");
            busy()
        })?;
    }
    let attempt = shared.begin_login(peer.ip(), who).map_err(login_refused)?;
    // The member id this login will have, sent in the challenge and echoed
    // in `srp_verify`. The name is reserved only once the password is
    // proved: someone without it learns nothing about who is in the room
    // (every name gets a challenge, and a wrong proof the same refusal), and
    // cannot hold a member's name while a login of theirs is pending. A
    // returning member's login notes now, telling nobody, which connection
    // it may take over: never one that replaced it meanwhile, and only with
    // the session's token.
    let user_id = uuid::Uuid::new_v4().to_string();
    let takeover = returning
        .then(|| {
            shared
                .room
                .takeover_target(&hello.username, resume.as_deref())
        })
        .flatten();

    // Three 2048-bit exponentiations: on the login threads, below the relay.
    let session = {
        let worker = Arc::clone(shared);
        let a = hello.a.clone();
        shared
            .logins
            .run(move || ServerSession::start(&worker.secrets.verifier, &a))
            .await
            .ok_or_else(|| bad_request("internal error"))?
            .map_err(|e| bad_request(e.to_string()))?
    };
    let username = hello.username.clone();
    let legacy = hello.legacy;
    let (awaiting, challenge) = hello.challenge(
        user_id.clone(),
        &session.public(),
        shared.secrets.verifier.salt(),
        &shared.secrets.room_salt_b64,
        shared.secrets.kdf.as_ref(),
    );
    writer.write(&challenge).await.map_err(write_failed)?;
    writer.flush().await.map_err(write_failed)?;

    let proof = awaiting.read_proof(next_request(reader).await?)?;
    let session = match &proof.transcript {
        Some(transcript) => session.bind(transcript),
        None => session,
    };
    // The proof is checked only if this address may make a guess now.
    let checked = attempt
        .settle(|| session.verify(&proof.m))
        .map_err(login_refused)?;
    let Ok((h_amk, key)) = checked else {
        shared.login_failed(peer);
        return Err(ErrorReply::new(
            ErrorCode::AuthFailed,
            "wrong password (or the login was altered on its way)",
        ));
    };
    drop(attempt);
    let reservation = shared
        .room
        .reserve(&username, user_id, takeover)
        .map_err(|e| {
            ErrorReply::new(
                e.code(),
                format!("the name {username:?} is taken, or looks like one that is; pick another"),
            )
        })?;
    writer
        .write(&handshake::welcome(&h_amk, legacy))
        .await
        .map_err(write_failed)?;
    if !legacy {
        let (sealer, opener) = derive_keys(&key, Side::Server);
        writer.seal(sealer);
        reader.seal(opener);
    }
    drop(key);
    Ok(Authenticated {
        reservation,
        legacy,
        // Only a resume picks up after a point; a fresh join gets it all.
        resume: proof
            .after_seq
            .filter(|_| resume.is_some())
            .map(|after_seq| Resume { after_seq }),
    })
}

/// How a knock on a locked room ended, for the knocking connection.
enum KnockEnd {
    /// A member let us in: join.
    Admitted,
    /// The room opened before the knock was registered: join as usual.
    NotLocked,
    /// The newcomer left while waiting; nobody to tell.
    Gone,
    /// Denied, expired, refused or closing: tell the newcomer and close.
    Refused(ErrorReply),
}

/// Waits at a locked room: tells the newcomer it is waiting and the native
/// members that it knocks, then waits for an answer, the knock deadline,
/// the newcomer leaving, or the server shutting down.
async fn knock<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    reservation: &NameReservation,
    locked_by: String,
    shared: &Shared,
) -> KnockEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut ticket = match shared.room.knock(reservation) {
        Ok(Some(ticket)) => ticket,
        Ok(None) => return KnockEnd::NotLocked,
        Err(e) => return KnockEnd::Refused(ErrorReply::new(e.code(), e.to_string())),
    };
    let timeout = shared.config.knock_timeout;
    let waiting = ServerEvent::Waiting {
        locked_by,
        timeout_secs: timeout.as_secs_f64().ceil() as u64,
    };
    if writer.write(&waiting).await.is_err() || writer.flush().await.is_err() {
        return KnockEnd::Gone;
    }
    // A waiting newcomer has nothing to say but `pong` or `leave`.
    reader.set_max_line(KNOCK_MAX_LINE);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut shutdown = shared.shutdown.clone();
    let decision = loop {
        tokio::select! {
            decision = &mut ticket.decision => break decision,
            () = &mut deadline => {
                if ticket.expire() {
                    return KnockEnd::Refused(ErrorReply::new(
                        ErrorCode::KnockExpired,
                        format!(
                            "nobody let you in within {} s: the room is locked. Ask a member to \
                             /admit you or /unlock the room, then try again",
                            timeout.as_secs_f64().ceil()
                        ),
                    ));
                }
                // Answered at the last moment: the answer is already there.
                break (&mut ticket.decision).await;
            }
            read = reader.read::<ClientFrame>() => match read {
                Ok(Some(ClientFrame::Leave) | None) | Err(_) => return KnockEnd::Gone,
                Ok(Some(_)) => continue,
            },
            _ = shutdown.changed() => {
                return KnockEnd::Refused(ErrorReply::new(ErrorCode::ShuttingDown, "the room is closing"));
            }
        }
    };
    match decision {
        Ok(Decision::Admitted { .. }) => KnockEnd::Admitted,
        Ok(Decision::Denied { by }) => KnockEnd::Refused(ErrorReply::new(
            ErrorCode::KnockDenied,
            format!("{by} did not let you in: the room is locked"),
        )),
        // The room dropped every knock: it is closing.
        Err(_) => KnockEnd::Refused(ErrorReply::new(
            ErrorCode::ShuttingDown,
            "the room is closing",
        )),
    }
}

/// Joins the room, knocking first if it is locked. `None` once the
/// connection is over (refused, or gone while waiting).
async fn enter<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    auth: Authenticated,
    outbox: &Outbox,
    shared: &Shared,
) -> Option<(Membership, oneshot::Receiver<Kick>)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut admitted = false;
    loop {
        let (kick_tx, kick_rx) = oneshot::channel();
        let refusal = match shared.room.join(
            &auth.reservation,
            auth.legacy,
            outbox.clone(),
            kick_tx,
            admitted,
            auth.resume,
        ) {
            Ok(membership) => return Some((membership, kick_rx)),
            Err(RoomError::Locked { by }) if auth.legacy => ErrorReply::new(
                ErrorCode::RoomLocked,
                format!(
                    "the room is locked (by {by}), and only native cmd-chat clients can knock \
                     and wait to be admitted; ask a member to /unlock it"
                ),
            ),
            Err(RoomError::Locked { by }) => {
                match knock(reader, writer, &auth.reservation, by, shared).await {
                    KnockEnd::Admitted => {
                        admitted = true;
                        continue;
                    }
                    KnockEnd::NotLocked => continue,
                    KnockEnd::Gone => return None,
                    KnockEnd::Refused(reply) => reply,
                }
            }
            Err(e) => ErrorReply::new(e.code(), e.to_string()),
        };
        farewell(writer, &refusal).await;
        return None;
    }
}

/// Tells the sender of a file that it was refused.
fn file_refused(id: String, from: &str, refusal: &FileRefusal) -> Outbound {
    encode(&ServerEvent::FileAborted {
        from: from.to_owned(),
        id,
        reason: refusal.to_string(),
    })
}

/// Why a member's session ended.
enum Ending {
    /// It left, or its connection closed.
    Left,
    /// It broke the protocol; it is told why.
    Fault(ErrorReply),
    /// The room removed it or a newer connection took its place, and it
    /// noticed by being refused an action; its kick says which.
    Superseded(Superseded),
}

/// The end of a connection the room removed, as it is told.
fn kicked(kick: Kick) -> Ending {
    match kick {
        Kick::TooSlow => Ending::Fault(ErrorReply::new(
            ErrorCode::TooSlow,
            "disconnected: you were not reading messages fast enough",
        )),
        Kick::Replaced => Ending::Fault(ErrorReply::new(
            ErrorCode::Replaced,
            "this session was taken over by a new connection of yours",
        )),
    }
}

/// A member's life in the room: relay what it sends, deliver what the room sends.
async fn serve_member<R, W>(
    mut reader: FrameReader<R>,
    mut writer: FrameWriter<W>,
    auth: Authenticated,
    peer: SocketAddr,
    shared: Arc<Shared>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (outbox, mut inbox) = outbox::channel();
    let own: Outbox = outbox.clone();
    let legacy = auth.legacy;
    let Some((mut membership, mut kick_rx)) =
        enter(&mut reader, &mut writer, auth, &outbox, &shared).await
    else {
        return;
    };
    let mut replay = membership.take_history();
    drop(outbox);
    info!(%peer, user = membership.username(), legacy, "member joined");
    reader.set_max_line(MEMBER_MAX_LINE);
    let mut shutdown = shared.shutdown.clone();
    let config = &shared.config;

    // A member too slow to take its own reply is about to be removed by the room anyway.
    let reply = |reply: ErrorReply| {
        let _ = own.push(&encode(&reply));
    };
    // Lock, unlock, admit and deny are confirmed by the events every member
    // gets; only a refusal needs an answer of its own.
    let room_answer = |result: Result<(), RoomError>| match result {
        Ok(()) => Ok(()),
        Err(RoomError::Superseded(gone)) => Err(gone),
        Err(e) => {
            reply(ErrorReply::new(e.code(), e.to_string()));
            Ok(())
        }
    };
    let mut transfers = Transfers::new(config.max_file_size);

    let read_loop = async {
        // The session's bucket, not this connection's (see `SessionRate`).
        let rate = membership.rate();
        let burst = RATE_BURST.max(config.rate_per_sec);
        let allow = || rate.allow(config.rate_per_sec, burst, Instant::now());
        let mut ping = {
            // Short idle deadlines (tests, tuned rooms) need pings to match.
            let every = PING_INTERVAL.min(config.idle_timeout / 3);
            tokio::time::interval_at(tokio::time::Instant::now() + every, every)
        };
        let ping_frame = encode(&ServerEvent::Ping);
        let mut last_heard = Instant::now();
        let mut ack_poll = tokio::time::interval(FILE_ACK_POLL);
        ack_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let me = membership.username();
        loop {
            let read = tokio::select! {
                read = reader.read::<ClientFrame>() => read,
                // Held-back acknowledgements go out once the receivers catch up.
                _ = ack_poll.tick(), if transfers.holding() => {
                    for ack in transfers.release_acks(&shared.room) {
                        let _ = own.push(&ack);
                    }
                    continue;
                }
                _ = ping.tick(), if !legacy => {
                    if last_heard.elapsed() >= config.idle_timeout {
                        return Ending::Fault(ErrorReply::new(
                            ErrorCode::Idle,
                            "disconnected: no answer to keep-alive pings",
                        ));
                    }
                    let _ = own.push(&ping_frame);
                    continue;
                }
            };
            last_heard = Instant::now();
            let frame = match read {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ending::Left,
                // Valid JSON of the wrong shape: say so and carry on.
                Err(FrameError::Malformed(_)) => {
                    reply(bad_request(
                        "unknown frame; expected {\"type\":\"message\",\"text\":...} or {\"type\":\"clear\"}",
                    ));
                    continue;
                }
                // A broken seal, an oversized or non-UTF-8 line: the stream can't be trusted.
                Err(FrameError::Io(_)) => return Ending::Left,
                Err(e) => return Ending::Fault(bad_request(format!("connection closed: {e}"))),
            };
            // Every room action checks, under the room's lock, that this
            // connection still holds the member's place: one removed or taken
            // over may still be reading frames it had buffered.
            let acted: Result<(), Superseded> = match frame {
                ClientFrame::Message { text, reference } => {
                    if let Err(e) = token::check_shape(&text) {
                        reply(
                            ErrorReply::new(ErrorCode::MessageRefused, e.to_string())
                                .about_message(reference),
                        );
                        Ok(())
                    } else if !allow() {
                        reply(
                            ErrorReply::new(
                                ErrorCode::RateLimited,
                                format!(
                                    "message dropped: slow down (at most {} messages per second)",
                                    config.rate_per_sec
                                ),
                            )
                            .about_message(reference),
                        );
                        Ok(())
                    } else {
                        membership.post(text).map(|seq| {
                            // The echo is queued already; the receipt follows it.
                            if let Some(reference) = reference.filter(|_| !legacy) {
                                let _ = own.push(&encode(&ServerEvent::Sent { reference, seq }));
                            }
                        })
                    }
                }
                ClientFrame::Clear if allow() => membership.clear(),
                ClientFrame::Clear => Ok(()),
                ClientFrame::Private { to, body } => {
                    let refusal = if legacy {
                        // 1.x clients never send it; a hand-made one gets a plain answer.
                        Some(ErrorReply::new(
                            ErrorCode::PrivateUnsupported,
                            "private messages need a native cmd-chat client",
                        ))
                    } else if body.len() > MAX_PRIVATE_BODY_LEN {
                        Some(ErrorReply::new(
                            ErrorCode::MessageRefused,
                            format!(
                                "private message refused: longer than {MAX_PRIVATE_BODY_LEN} bytes"
                            ),
                        ))
                    } else if let Err(e) = token::check_shape(&body) {
                        Some(ErrorReply::new(
                            ErrorCode::MessageRefused,
                            format!("private {e}"),
                        ))
                    } else if !allow() {
                        Some(ErrorReply::new(
                            ErrorCode::RateLimited,
                            format!(
                                "private message dropped: slow down (at most {} messages per second)",
                                config.rate_per_sec
                            ),
                        ))
                    } else {
                        match membership.send_private(&to, body) {
                            Ok(()) => None,
                            Err(PrivateRefusal::Superseded(gone)) => {
                                return Ending::Superseded(gone);
                            }
                            Err(e) => Some(ErrorReply::new(e.code(), e.to_string())),
                        }
                    };
                    if let Some(refusal) = refusal {
                        reply(refusal.about(to));
                    }
                    Ok(())
                }
                ClientFrame::Pong => Ok(()),
                ClientFrame::Leave => return Ending::Left,
                ClientFrame::Lock
                | ClientFrame::Unlock
                | ClientFrame::Admit { .. }
                | ClientFrame::Deny { .. }
                    if legacy =>
                {
                    reply(bad_request(
                        "locking the room needs a native cmd-chat client",
                    ));
                    Ok(())
                }
                ClientFrame::Lock
                | ClientFrame::Unlock
                | ClientFrame::Admit { .. }
                | ClientFrame::Deny { .. }
                    if !allow() =>
                {
                    reply(ErrorReply::new(
                        ErrorCode::RateLimited,
                        "command dropped: slow down",
                    ));
                    Ok(())
                }
                ClientFrame::Lock => room_answer(membership.lock()),
                ClientFrame::Unlock => room_answer(membership.unlock()),
                ClientFrame::Admit { user } | ClientFrame::Deny { user }
                    if username::validate(&user).is_err() =>
                {
                    reply(bad_request("that is not a valid username"));
                    Ok(())
                }
                ClientFrame::Admit { user } => room_answer(membership.answer(&user, true)),
                ClientFrame::Deny { user } => room_answer(membership.answer(&user, false)),
                // A 1.x peer gets an error line it can parse, never a file frame.
                ClientFrame::FileOffer { .. }
                | ClientFrame::FileChunk { .. }
                | ClientFrame::FileCancel { .. }
                    if legacy =>
                {
                    reply(bad_request(FileRefusal::Legacy.to_string()));
                    Ok(())
                }
                // An offer reaches every member, so it counts like a message;
                // a cancel needs an offer, so it is bounded by them.
                ClientFrame::FileOffer { id, .. } if !allow() => {
                    let _ = own.push(&file_refused(id, me, &FileRefusal::TooFast));
                    Ok(())
                }
                ClientFrame::FileOffer { id, chunks, meta } => {
                    match transfers.offer(&membership, id.clone(), chunks, meta) {
                        Ok(()) => Ok(()),
                        Err(FileRefusal::Superseded(gone)) => Err(gone),
                        Err(refusal) => {
                            let _ = own.push(&file_refused(id, me, &refusal));
                            Ok(())
                        }
                    }
                }
                ClientFrame::FileChunk { id, index, data } => {
                    match transfers.chunk(&membership, id.clone(), index, data) {
                        Ok(()) => {
                            for ack in transfers.release_acks(&shared.room) {
                                let _ = own.push(&ack);
                            }
                            Ok(())
                        }
                        Err(FileRefusal::Superseded(gone)) => Err(gone),
                        Err(refusal) => {
                            let _ = own.push(&file_refused(id, me, &refusal));
                            Ok(())
                        }
                    }
                }
                // Only ends this connection's own transfer, telling its receivers.
                ClientFrame::FileCancel { id } => {
                    transfers.abort(
                        &shared.room,
                        me,
                        &id,
                        &format!("{me} cancelled the transfer"),
                    );
                    Ok(())
                }
            };
            if let Err(gone) = acted {
                return Ending::Superseded(gone);
            }
        }
    };
    let write_loop = async {
        // Whether a frame that must go now (`Urgency::Now`) awaits a flush.
        let mut urgent_unflushed = false;
        // Set while everything written since the last flush may wait
        // (`Urgency::Soon`): when to flush it anyway.
        let mut flush_by: Option<tokio::time::Instant> = None;
        loop {
            let next = match flush_by {
                None => inbox.recv().await,
                Some(deadline) => match tokio::time::timeout_at(deadline, inbox.recv()).await {
                    Ok(next) => next,
                    Err(_elapsed) => {
                        writer.flush().await?;
                        flush_by = None;
                        urgent_unflushed = false;
                        continue;
                    }
                },
            };
            let Some((frame, urgency)) = next else { break };
            writer.write_text(&frame).await?;
            urgent_unflushed |= urgency == Urgency::Now;
            // The first frame is `init`; a native joiner's history follows
            // it, built a part at a time as the socket takes it.
            if let Some(mut cursor) = replay.take() {
                while let Some(part) = shared.room.history_part(&mut cursor) {
                    writer.write_text(&part).await?;
                    // A replay is bulk work beside live chat: let other
                    // members' relaying run between its parts, and this
                    // connection's own reader see a `leave`.
                    tokio::task::yield_now().await;
                }
            }
            if inbox.is_empty() {
                if urgent_unflushed {
                    writer.flush().await?;
                    urgent_unflushed = false;
                    flush_by = None;
                } else {
                    flush_by.get_or_insert_with(|| tokio::time::Instant::now() + PRESENCE_DELAY);
                }
            }
        }
        Ok::<(), FrameError>(())
    };

    let ending = tokio::select! {
        ending = read_loop => ending,
        _ = write_loop => Ending::Left,
        kick = &mut kick_rx => kick.map_or(Ending::Left, kicked),
        _ = shutdown.changed() => Ending::Fault(ErrorReply::new(ErrorCode::ShuttingDown, "the room is closing")),
    };
    // The room sends the kick as it removes or replaces the member, so it is
    // there by the time an action is refused (the server closing sends none).
    let ending = match ending {
        Ending::Superseded(_) => kick_rx.try_recv().map_or(Ending::Left, kicked),
        ending => ending,
    };
    match &ending {
        Ending::Left | Ending::Superseded(_) => {
            info!(%peer, user = membership.username(), "member left")
        }
        Ending::Fault(reply) => {
            warn!(%peer, user = membership.username(), reason = %reply.error, "member disconnected")
        }
    }
    // Receivers drop what they have of files this member was still sending.
    transfers.abort_all(
        &shared.room,
        membership.username(),
        &format!(
            "{} left before the file was complete",
            membership.username()
        ),
    );
    drop(membership);
    match ending {
        // At most one write buffer of older frames goes before the reason;
        // the rest of the backlog stays in the dropped queue.
        Ending::Fault(reply) => farewell(&mut writer, &reply).await,
        Ending::Left | Ending::Superseded(_) => {
            let _ = tokio::time::timeout(FAREWELL_DEADLINE, writer.shutdown()).await;
        }
    }
}
