//! One connection, from accept to goodbye.
//!
//! The connection is a typestate: a stranger can only become a member by
//! passing [`authenticate`], which returns an [`Authenticated`] value; only
//! [`serve_member`] takes one, and only it touches the room's messages.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tracing::{debug, info};

use super::Shared;
use super::limits::{FAREWELL_DEADLINE, HANDSHAKE_DEADLINE, OUTBOUND_QUEUE_FRAMES};
use super::room::{Kick, NameReservation, Outbound};
use crate::crypto::srp::ServerSession;
use crate::crypto::transport::{Side, derive_keys};
use crate::protocol::limits::MEMBER_MAX_LINE;
use crate::protocol::token;
use crate::protocol::username;
use crate::protocol::wire::{
    Challenge, ClientFrame, ErrorCode, ErrorReply, HandshakeRequest, NATIVE_PROTOCOL, Welcome,
};
use crate::protocol::{FrameError, FrameReader, FrameWriter};

/// A login that passed SRP: its name is reserved and, for native clients,
/// both halves of the connection are sealed.
pub struct Authenticated {
    reservation: NameReservation,
    legacy: bool,
}

/// Serves one accepted connection to the end.
pub async fn handle<S>(
    socket: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    pending: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(socket);
    let mut reader = FrameReader::new(read, crate::protocol::limits::PRE_AUTH_MAX_LINE);
    let mut writer = FrameWriter::new(write);
    let mut shutdown = shared.shutdown.clone();

    let outcome = tokio::select! {
        outcome = tokio::time::timeout(HANDSHAKE_DEADLINE, authenticate(&mut reader, &mut writer, &shared)) => outcome,
        _ = shutdown.changed() => return,
    };
    // The connection is no longer a stranger: free its place among them.
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
    let _ = tokio::time::timeout(FAREWELL_DEADLINE, async {
        writer.write(reply).await?;
        writer.flush().await?;
        writer.shutdown().await
    })
    .await;
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
        Err(FrameError::Malformed(_)) => Err(bad_request(
            "expected {\"cmd\":\"srp_init\",...} or {\"cmd\":\"srp_verify\",...}",
        )),
        Err(e) => Err(bad_request(format!("unreadable handshake line: {e}"))),
    }
}

fn decode_b64(field: &str, value: &str, max_len: usize) -> Result<Vec<u8>, ErrorReply> {
    // Reject before decoding so a huge field costs nothing.
    if value.len() > max_len.div_ceil(3) * 4 {
        return Err(bad_request(format!("field {field} is too long")));
    }
    STANDARD
        .decode(value.as_bytes())
        .map_err(|_| bad_request(format!("field {field} is not valid base64")))
}

/// SRP-6a, as in cmd-chat 1.x, then (native clients) sealing.
async fn authenticate<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    shared: &Arc<Shared>,
) -> Result<Authenticated, ErrorReply>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let HandshakeRequest::SrpInit {
        username,
        a,
        native,
    } = next_request(reader).await?
    else {
        return Err(bad_request("expected srp_init first"));
    };
    let legacy = match native {
        Some(NATIVE_PROTOCOL) => false,
        Some(other) => {
            return Err(bad_request(format!(
                "this server speaks native protocol {NATIVE_PROTOCOL}, not {other}; upgrade cmd-chat"
            )));
        }
        None if shared.config.allow_legacy => true,
        None => {
            return Err(ErrorReply::new(
                ErrorCode::LegacyRefused,
                "this room admits only native cmd-chat clients (the server was not started with --allow-legacy)",
            ));
        }
    };
    username::validate(&username)
        .map_err(|e| ErrorReply::new(ErrorCode::NameInvalid, format!("invalid username: {e}")))?;
    let a_bytes = decode_b64("A", &a, crate::crypto::srp::N_LEN)?;
    let reservation = shared.room.reserve(&username).map_err(|e| {
        ErrorReply::new(
            e.code(),
            format!("the name {username:?} is taken; pick another"),
        )
    })?;

    // Three 2048-bit exponentiations: keep them off the reactor threads.
    let session = {
        let shared = Arc::clone(shared);
        tokio::task::spawn_blocking(move || {
            ServerSession::start(&shared.secrets.verifier, &a_bytes)
        })
        .await
        .map_err(|_| bad_request("internal error"))?
        .map_err(|e| bad_request(e.to_string()))?
    };
    let challenge = Challenge {
        user_id: reservation.user_id().to_owned(),
        b: STANDARD.encode(session.public()),
        salt: STANDARD.encode(shared.secrets.verifier.salt()),
        room_salt: legacy.then(|| shared.secrets.room_salt_b64.clone()),
        native: (!legacy).then_some(NATIVE_PROTOCOL),
    };
    writer
        .write(&challenge)
        .await
        .map_err(|_| bad_request("write failed"))?;
    writer
        .flush()
        .await
        .map_err(|_| bad_request("write failed"))?;

    let HandshakeRequest::SrpVerify { user_id, m } = next_request(reader).await? else {
        return Err(bad_request("expected srp_verify"));
    };
    if user_id != reservation.user_id() {
        return Err(bad_request("srp_verify names another login"));
    }
    let m = decode_b64("M", &m, 64)?;
    let (h_amk, key) = session
        .verify(&m)
        .map_err(|_| ErrorReply::new(ErrorCode::AuthFailed, "wrong password"))?;

    let welcome = Welcome {
        h_amk: STANDARD.encode(h_amk),
        // 1.x clients require the field; it is random and unrelated to any key.
        session_key: legacy.then(|| STANDARD.encode(rand::random::<[u8; 32]>())),
    };
    writer
        .write(&welcome)
        .await
        .map_err(|_| bad_request("write failed"))?;
    if !legacy {
        let (sealer, opener) = derive_keys(&key, Side::Server);
        writer.seal(sealer);
        reader.seal(opener);
    }
    drop(key);
    Ok(Authenticated {
        reservation,
        legacy,
    })
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
    let (outbox, mut inbox) = mpsc::channel::<Outbound>(OUTBOUND_QUEUE_FRAMES);
    let (kick_tx, kick_rx) = oneshot::channel();
    let own_outbox = outbox.clone();
    let legacy = auth.legacy;
    let membership = match shared.room.join(auth.reservation, legacy, outbox, kick_tx) {
        Ok(m) => m,
        Err(e) => {
            farewell(&mut writer, &ErrorReply::new(e.code(), e.to_string())).await;
            return;
        }
    };
    info!(%peer, user = membership.username(), legacy, "member joined");
    reader.set_max_line(MEMBER_MAX_LINE);
    let mut shutdown = shared.shutdown.clone();

    let reply = |reply: ErrorReply| {
        let json: Outbound = serde_json::to_string(&reply)
            .expect("reply serializes")
            .into();
        // A member too slow to take its own error will be kicked by the room anyway.
        let _ = own_outbox.try_send(json);
    };

    let read_loop = async {
        loop {
            let frame = match reader.read::<ClientFrame>().await {
                Ok(Some(frame)) => frame,
                Ok(None) => return None,
                Err(FrameError::Malformed(_)) => {
                    reply(bad_request(
                        "unknown frame; expected {\"type\":\"message\",\"text\":...} or {\"type\":\"clear\"}",
                    ));
                    continue;
                }
                Err(e) => return Some(e),
            };
            match frame {
                ClientFrame::Message { text } => match token::check_shape(&text) {
                    Ok(()) => membership.post(text),
                    Err(e) => reply(ErrorReply::new(ErrorCode::MessageRefused, e.to_string())),
                },
                ClientFrame::Clear => membership.clear(),
                ClientFrame::Leave => return None,
            }
        }
    };
    let write_loop = async {
        while let Some(frame) = inbox.recv().await {
            writer.write_text(&frame).await?;
            if inbox.is_empty() {
                writer.flush().await?;
            }
        }
        Ok::<(), FrameError>(())
    };

    let ending: Option<ErrorReply> = tokio::select! {
        error = read_loop => error.map(|e| {
            debug!(%peer, error = %e, "member connection ended");
            bad_request(format!("connection closed: {e}"))
        }),
        _ = write_loop => None,
        kick = kick_rx => match kick {
            Ok(Kick::TooSlow) => Some(ErrorReply::new(
                ErrorCode::TooSlow,
                "disconnected: you were not reading messages fast enough",
            )),
            Err(_) => None,
        },
        _ = shutdown.changed() => Some(ErrorReply::new(ErrorCode::ShuttingDown, "the room is closing")),
    };
    info!(%peer, user = membership.username(), "member left");
    drop(membership);
    if let Some(ending) = ending {
        farewell(&mut writer, &ending).await;
    } else {
        let _ = tokio::time::timeout(FAREWELL_DEADLINE, writer.shutdown()).await;
    }
}
