//! One connection, from accept to goodbye.
//!
//! The connection is a typestate: a stranger can only become a member by
//! passing [`authenticate`], which returns an [`Authenticated`] value; only
//! [`super::member::serve_member`] takes one, and only it touches the
//! room's messages.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tracing::debug;

use super::Shared;
use super::guard::{Login, Refusal};
use super::limits::{FAREWELL_DEADLINE, HANDSHAKE_DEADLINE, KNOCK_MAX_LINE};
use super::outbox::Outbox;
use super::pending::PendingSlot;
use super::room::{Admission, Decision, Kick, Membership, NameReservation, Resume, RoomError};
use crate::crypto::Key32;
use crate::crypto::srp::ServerSession;
use crate::crypto::transport::{Side, derive_keys};
use crate::protocol::handshake::{self, ServerHello};
use crate::protocol::limits::PRE_AUTH_MAX_LINE;
use crate::protocol::wire::{ClientFrame, ErrorCode, ErrorReply, HandshakeRequest, ServerEvent};
use crate::protocol::{FrameError, FrameReader, FrameWriter};

/// A login that passed SRP: its name is reserved and, for native clients,
/// both halves of the connection are sealed.
pub struct Authenticated {
    /// The name, held for this login until it joins (or gives up, which frees
    /// it).
    reservation: NameReservation,
    /// A cmd-chat 1.x client: no sealed transport, no native-only frames.
    legacy: bool,
    /// A reconnecting native member: replay only what it missed.
    resume: Option<Resume>,
}

impl Authenticated {
    /// A cmd-chat 1.x member: nothing sealed, no native-only frames.
    pub(super) fn legacy(&self) -> bool {
        self.legacy
    }
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
    super::member::serve_member(reader, writer, auth, peer, shared).await;
}

/// Sends a last frame, within a short deadline, and closes.
pub(super) async fn farewell<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    reply: &ErrorReply,
) {
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

pub(super) fn bad_request(detail: impl Into<String>) -> ErrorReply {
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
    let (resume, returning) = resuming(&hello, shared);
    let who = count_as(returning, pending, peer)?;
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

    let session = start_srp(shared, hello.a.clone()).await?;
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
        .map_err(|e| name_taken(e.code(), &username))?;
    welcome(reader, writer, &h_amk, key, legacy).await?;
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

/// Who a login counts as for the guessing guard, once it has taken its
/// place among the pending connections (if it holds one).
fn count_as(
    returning: bool,
    pending: Option<&mut PendingSlot>,
    peer: SocketAddr,
) -> Result<Login, ErrorReply> {
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
    Ok(who)
}

/// Tells a login that proved the password that the server knows it too
/// (`H_AMK`) and, for a native client, seals both halves of the connection
/// with keys from the session key, which is wiped when this returns.
async fn welcome<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    h_amk: &[u8; 32],
    key: Key32,
    legacy: bool,
) -> Result<(), ErrorReply>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    writer
        .write(&handshake::welcome(h_amk, legacy))
        .await
        .map_err(write_failed)?;
    if !legacy {
        let (sealer, opener) = derive_keys(&key, Side::Server);
        writer.seal(sealer);
        reader.seal(opener);
    }
    drop(key);
    Ok(())
}

/// The session a login resumes, if it is one of this room's (one from
/// another room, made before this server was restarted on the same
/// address, is a fresh join: its member id and sequence numbers mean
/// nothing here); and whether the login proved that session's token. A
/// member coming back proves it before anything else, so the room-wide
/// guessing budget strangers spend never keeps it out.
fn resuming(hello: &ServerHello, shared: &Shared) -> (Option<String>, bool) {
    let same_room = hello.room_id.as_deref() == Some(shared.room.id());
    let resume = hello.resume.clone().filter(|_| same_room);
    let returning = resume
        .as_deref()
        .is_some_and(|id| hello.resume_proved(&shared.room.resume_token(id)));
    (resume, returning)
}

/// The server's half of SRP for the client's `a`: three 2048-bit
/// exponentiations, on the login threads, below the relay.
async fn start_srp(shared: &Arc<Shared>, a: Vec<u8>) -> Result<ServerSession, ErrorReply> {
    let worker = Arc::clone(shared);
    shared
        .logins
        .run(move || ServerSession::start(&worker.secrets.verifier, &a))
        .await
        .ok_or_else(|| bad_request("internal error"))?
        .map_err(|e| bad_request(e.to_string()))
}

fn name_taken(code: ErrorCode, username: &str) -> ErrorReply {
    ErrorReply::new(
        code,
        format!("the name {username:?} is taken, or looks like one that is; pick another"),
    )
}

/// How a knock on a locked room ended, for the knocking connection.
enum KnockEnd {
    /// A member let us in: join.
    Admitted(Admission),
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
        Ok(Decision::Admitted { by }) => KnockEnd::Admitted(Admission { by }),
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
pub(super) async fn enter<R, W>(
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
    let mut admitted = None;
    loop {
        let (kick_tx, kick_rx) = oneshot::channel();
        let refusal = match shared.room.join(
            &auth.reservation,
            auth.legacy,
            outbox.clone(),
            kick_tx,
            admitted.clone(),
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
                    KnockEnd::Admitted(admission) => {
                        admitted = Some(admission);
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
