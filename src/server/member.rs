//! A member's life in the room: relay what it sends, deliver what the room
//! sends, until it leaves, breaks the protocol, is removed or the room
//! closes.
//!
//! Each frame the member sends goes through one gate ([`Member::gate`]),
//! which does the checks every kind shares (whether a 1.x member may send
//! it, whether its shape is right, whether the member's rate allows it) and
//! answers a refusal; what passes goes to the one small handler for its
//! kind. The writer half is [`outbox::drain`], beside the queue it drains.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

use super::Shared;
use super::files::{FileRefusal, Transfers};
use super::handler::{Authenticated, bad_request, enter, farewell};
use super::limits::{FAREWELL_DEADLINE, FILE_ACK_POLL, PING_INTERVAL, RATE_BURST, SessionRate};
use super::outbox::{self, Outbound, Outbox};
use super::room::{Kick, Membership, PrivateRefusal, RoomError, Superseded};
use crate::protocol::encode::encode;
use crate::protocol::limits::{MAX_PRIVATE_BODY_LEN, MEMBER_MAX_LINE};
use crate::protocol::wire::{ClientFrame, ErrorCode, ErrorReply, ServerEvent};
use crate::protocol::{FrameError, FrameReader, FrameWriter, token, username};

/// Why a member's session ended.
enum Ending {
    /// It left, or its connection closed.
    Left,
    /// It broke the protocol, or the room is closing; it is told why.
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

/// Tells the sender of a file that it was refused.
fn file_refused(id: String, from: &str, refusal: &FileRefusal) -> Outbound {
    encode(&ServerEvent::FileAborted {
        from: from.to_owned(),
        id,
        reason: refusal.to_string(),
    })
}

/// Serves an authenticated connection as a member, to the end.
pub(super) async fn serve_member<R, W>(
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
    let legacy = auth.legacy();
    let Some((membership, mut kick_rx)) =
        enter(&mut reader, &mut writer, auth, &outbox, &shared).await
    else {
        return;
    };
    let mut member = Member::new(membership, outbox, legacy, &shared);
    let replay = member.membership.take_history();
    info!(%peer, user = member.name(), legacy, "member joined");
    reader.set_max_line(MEMBER_MAX_LINE);
    let mut shutdown = shared.shutdown.clone();

    let ending = tokio::select! {
        ending = member.read_loop(&mut reader) => ending,
        _ = outbox::drain(&mut inbox, &mut writer, replay, &shared.room) => Ending::Left,
        kick = &mut kick_rx => kick.map_or(Ending::Left, kicked),
        _ = shutdown.changed() => Ending::Fault(ErrorReply::new(ErrorCode::ShuttingDown, "the room is closing")),
    };
    // The room sends the kick as it removes or replaces the member, so it is
    // there by the time an action is refused (the server closing sends none).
    let ending = match ending {
        Ending::Superseded(_) => kick_rx.try_recv().map_or(Ending::Left, kicked),
        ending => ending,
    };
    member.end(peer, &ending);
    match ending {
        // At most one write buffer of older frames goes before the reason;
        // the rest of the backlog stays in the dropped queue.
        Ending::Fault(reply) => farewell(&mut writer, &reply).await,
        Ending::Left | Ending::Superseded(_) => {
            let _ = tokio::time::timeout(FAREWELL_DEADLINE, writer.shutdown()).await;
        }
    }
}

/// One member's side of the room, as its connection task holds it.
struct Member<'a> {
    /// This connection's place in the room, through which it acts.
    membership: Membership,
    /// This member's own queue, for replies to it.
    own: Outbox,
    /// A cmd-chat 1.x client, which is sent no native-only frames.
    legacy: bool,
    /// The server's limits and room, for the frames the member sends.
    shared: &'a Shared,
    /// The session's bucket, not this connection's (see `SessionRate`).
    rate: SessionRate,
    /// Files this member is sending, relayed a chunk at a time.
    transfers: Transfers,
}

impl<'a> Member<'a> {
    fn new(membership: Membership, own: Outbox, legacy: bool, shared: &'a Shared) -> Self {
        let rate = membership.rate();
        Self {
            membership,
            own,
            legacy,
            shared,
            rate,
            transfers: Transfers::new(shared.config.max_file_size),
        }
    }

    fn name(&self) -> &str {
        self.membership.username()
    }

    /// Queues a frame for this member. One too slow to take its own reply
    /// is about to be removed by the room anyway.
    fn push(&self, frame: &Outbound) {
        let _ = self.own.push(frame);
    }

    fn reply(&self, reply: ErrorReply) {
        self.push(&encode(&reply));
    }

    /// Whether the member's rate allows one more message, clear, room
    /// command or file offer now.
    fn allow(&self) -> bool {
        let config = &self.shared.config;
        let burst = RATE_BURST.max(config.rate_per_sec);
        self.rate.allow(config.rate_per_sec, burst, Instant::now())
    }

    /// Reads and acts on the member's frames; sends keep-alive pings and
    /// held-back file acknowledgements between them.
    async fn read_loop<R: AsyncRead + Unpin>(&mut self, reader: &mut FrameReader<R>) -> Ending {
        let idle_timeout = self.shared.config.idle_timeout;
        // Short idle deadlines (tests, tuned rooms) need pings to match.
        let every = PING_INTERVAL.min(idle_timeout / 3);
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let ping_frame = encode(&ServerEvent::Ping);
        let mut last_heard = Instant::now();
        let mut ack_poll = tokio::time::interval(FILE_ACK_POLL);
        ack_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let read = tokio::select! {
                read = reader.read::<ClientFrame>() => read,
                // Held-back acknowledgements go out once the receivers catch up.
                _ = ack_poll.tick(), if self.transfers.holding() => {
                    self.release_acks();
                    continue;
                }
                _ = ping.tick(), if !self.legacy => {
                    if last_heard.elapsed() >= idle_timeout {
                        return Ending::Fault(ErrorReply::new(
                            ErrorCode::Idle,
                            "disconnected: no answer to keep-alive pings",
                        ));
                    }
                    self.push(&ping_frame);
                    continue;
                }
            };
            last_heard = Instant::now();
            let frame = match read {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ending::Left,
                // Valid JSON of the wrong shape: say so and carry on.
                Err(FrameError::Malformed(_)) => {
                    self.reply(bad_request(
                        "unknown frame; expected {\"type\":\"message\",\"text\":...} or {\"type\":\"clear\"}",
                    ));
                    continue;
                }
                // A broken seal, an oversized or non-UTF-8 line: the stream can't be trusted.
                Err(FrameError::Io(_)) => return Ending::Left,
                Err(e) => return Ending::Fault(bad_request(format!("connection closed: {e}"))),
            };
            if let Some(ending) = self.gate(frame).and_then(|frame| self.act(frame)) {
                return ending;
            }
        }
    }

    /// The checks every kind of frame shares, in order: native-only frames
    /// from a 1.x member, a shape that is wrong, a rate that is spent. Each
    /// refusal is answered here; what passes is returned to be acted on.
    fn gate(&self, frame: ClientFrame) -> Option<ClientFrame> {
        if self.legacy
            && let Some(refusal) = native_only(&frame)
        {
            self.reply(refusal);
            return None;
        }
        if let Err(refusal) = check_shape(&frame) {
            self.reply(refusal);
            return None;
        }
        if counts_against_rate(&frame) && !self.allow() {
            self.refuse_as_too_fast(frame);
            return None;
        }
        Some(frame)
    }

    /// The answer to a frame the member's rate did not allow.
    fn refuse_as_too_fast(&self, frame: ClientFrame) {
        let per_sec = self.shared.config.rate_per_sec;
        match frame {
            ClientFrame::Message { reference, .. } => self.reply(
                ErrorReply::new(
                    ErrorCode::RateLimited,
                    format!("message dropped: slow down (at most {per_sec} messages per second)"),
                )
                .about_message(reference),
            ),
            ClientFrame::Private { to, .. } => self.reply(
                ErrorReply::new(
                    ErrorCode::RateLimited,
                    format!(
                        "private message dropped: slow down (at most {per_sec} messages per second)"
                    ),
                )
                .about(to),
            ),
            ClientFrame::FileOffer { id, .. } => {
                self.push(&file_refused(id, self.name(), &FileRefusal::TooFast));
            }
            // A clear is dropped without a word, as it always was.
            ClientFrame::Clear => {}
            _ => self.reply(ErrorReply::new(
                ErrorCode::RateLimited,
                "command dropped: slow down",
            )),
        }
    }

    /// Acts on a frame the gate let through. `Some` ends the session.
    ///
    /// Every room action checks, under the room's lock, that this
    /// connection still holds the member's place: one removed or taken over
    /// may still be reading frames it had buffered.
    fn act(&mut self, frame: ClientFrame) -> Option<Ending> {
        let acted = match frame {
            ClientFrame::Message { text, reference } => self.post(text, reference),
            ClientFrame::Clear => self.membership.clear(),
            ClientFrame::Private { to, body } => self.send_private(to, body),
            ClientFrame::Pong => Ok(()),
            ClientFrame::Leave => return Some(Ending::Left),
            ClientFrame::Lock => self.room_answer(self.membership.lock()),
            ClientFrame::Unlock => self.room_answer(self.membership.unlock()),
            ClientFrame::Admit { user } => self.room_answer(self.membership.answer(&user, true)),
            ClientFrame::Deny { user } => self.room_answer(self.membership.answer(&user, false)),
            ClientFrame::FileOffer { id, chunks, meta } => self.offer_file(id, chunks, meta),
            ClientFrame::FileChunk { id, index, data } => self.file_chunk(id, index, data),
            ClientFrame::FileCancel { id } => {
                self.cancel_file(&id);
                Ok(())
            }
        };
        acted.err().map(Ending::Superseded)
    }

    fn post(&self, text: String, reference: Option<u64>) -> Result<(), Superseded> {
        let seq = self.membership.post(text)?;
        // The echo is queued already; the receipt follows it.
        if let Some(reference) = reference.filter(|_| !self.legacy) {
            self.push(&encode(&ServerEvent::Sent { reference, seq }));
        }
        Ok(())
    }

    fn send_private(&self, to: String, body: String) -> Result<(), Superseded> {
        match self.membership.send_private(&to, body) {
            Ok(()) => Ok(()),
            Err(PrivateRefusal::Superseded(gone)) => Err(gone),
            Err(e) => {
                self.reply(ErrorReply::new(e.code(), e.to_string()).about(to));
                Ok(())
            }
        }
    }

    /// Lock, unlock, admit and deny are confirmed by the events every
    /// member gets; only a refusal needs an answer of its own.
    fn room_answer(&self, result: Result<(), RoomError>) -> Result<(), Superseded> {
        match result {
            Ok(()) => Ok(()),
            Err(RoomError::Superseded(gone)) => Err(gone),
            Err(e) => {
                self.reply(ErrorReply::new(e.code(), e.to_string()));
                Ok(())
            }
        }
    }

    fn offer_file(&mut self, id: String, chunks: u32, meta: String) -> Result<(), Superseded> {
        match self
            .transfers
            .offer(&self.membership, id.clone(), chunks, meta)
        {
            Ok(()) => Ok(()),
            Err(FileRefusal::Superseded(gone)) => Err(gone),
            Err(refusal) => {
                self.push(&file_refused(id, self.name(), &refusal));
                Ok(())
            }
        }
    }

    fn file_chunk(&mut self, id: String, index: u32, data: String) -> Result<(), Superseded> {
        match self
            .transfers
            .chunk(&self.membership, id.clone(), index, data)
        {
            Ok(()) => {
                self.release_acks();
                Ok(())
            }
            Err(FileRefusal::Superseded(gone)) => Err(gone),
            Err(refusal) => {
                self.push(&file_refused(id, self.name(), &refusal));
                Ok(())
            }
        }
    }

    /// Only ends this connection's own transfer, telling its receivers.
    fn cancel_file(&mut self, id: &str) {
        let me = self.membership.username().to_owned();
        let reason = format!("{me} cancelled the transfer");
        self.transfers.abort(&self.shared.room, &me, id, &reason);
    }

    fn release_acks(&mut self) {
        for ack in self.transfers.release_acks(&self.shared.room) {
            self.push(&ack);
        }
    }

    /// Logs how the session ended, and drops the files it was still sending.
    fn end(mut self, peer: SocketAddr, ending: &Ending) {
        let me = self.membership.username().to_owned();
        match ending {
            Ending::Left | Ending::Superseded(_) => info!(%peer, user = me, "member left"),
            // The host closing the room is the meeting's normal end.
            Ending::Fault(reply) if reply.code == Some(ErrorCode::ShuttingDown) => {
                info!(%peer, user = me, "member left: the room is closing")
            }
            Ending::Fault(reply) => {
                warn!(%peer, user = me, reason = %reply.error, "member disconnected")
            }
        }
        // Receivers drop what they have of files this member was still sending.
        let reason = format!("{me} left before the file was complete");
        self.transfers.abort_all(&self.shared.room, &me, &reason);
    }
}

/// A refusal for a frame only native members may send, if it is one.
fn native_only(frame: &ClientFrame) -> Option<ErrorReply> {
    match frame {
        // 1.x clients never send it; a hand-made one gets a plain answer.
        ClientFrame::Private { to, .. } => Some(
            ErrorReply::new(
                ErrorCode::PrivateUnsupported,
                "private messages need a native cmd-chat client",
            )
            .about(to.clone()),
        ),
        ClientFrame::Lock
        | ClientFrame::Unlock
        | ClientFrame::Admit { .. }
        | ClientFrame::Deny { .. } => Some(bad_request(
            "locking the room needs a native cmd-chat client",
        )),
        // A 1.x peer gets an error line it can parse, never a file frame.
        ClientFrame::FileOffer { .. }
        | ClientFrame::FileChunk { .. }
        | ClientFrame::FileCancel { .. } => Some(bad_request(FileRefusal::Legacy.to_string())),
        _ => None,
    }
}

/// The shape checks a frame must pass before it costs anything.
fn check_shape(frame: &ClientFrame) -> Result<(), ErrorReply> {
    match frame {
        ClientFrame::Message { text, reference } => token::check_shape(text).map_err(|e| {
            ErrorReply::new(ErrorCode::MessageRefused, e.to_string()).about_message(*reference)
        }),
        ClientFrame::Private { to, body } if body.len() > MAX_PRIVATE_BODY_LEN => {
            Err(ErrorReply::new(
                ErrorCode::MessageRefused,
                format!("private message refused: longer than {MAX_PRIVATE_BODY_LEN} bytes"),
            )
            .about(to.clone()))
        }
        ClientFrame::Private { to, body } => token::check_shape(body).map_err(|e| {
            ErrorReply::new(ErrorCode::MessageRefused, format!("private {e}")).about(to.clone())
        }),
        ClientFrame::Admit { user } | ClientFrame::Deny { user }
            if username::validate(user).is_err() =>
        {
            Err(bad_request("that is not a valid username"))
        }
        _ => Ok(()),
    }
}

/// Whether a frame spends the member's rate: whatever reaches every member
/// or changes the room. (A chunk needs an offer, and a cancel undoes one,
/// so files are bounded by their offers.)
fn counts_against_rate(frame: &ClientFrame) -> bool {
    matches!(
        frame,
        ClientFrame::Message { .. }
            | ClientFrame::Clear
            | ClientFrame::Private { .. }
            | ClientFrame::Lock
            | ClientFrame::Unlock
            | ClientFrame::Admit { .. }
            | ClientFrame::Deny { .. }
            | ClientFrame::FileOffer { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> ClientFrame {
        ClientFrame::Message {
            text: text.into(),
            reference: Some(3),
        }
    }

    fn private(body: &str) -> ClientFrame {
        ClientFrame::Private {
            to: "bob".into(),
            body: body.into(),
        }
    }

    const TOKEN: &str = "gAAAAABnAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn only_native_members_may_send_native_frames() {
        assert!(native_only(&message(TOKEN)).is_none());
        assert!(native_only(&ClientFrame::Clear).is_none());
        assert!(native_only(&ClientFrame::Pong).is_none());
        let refused = native_only(&private(TOKEN)).unwrap();
        assert_eq!(refused.code, Some(ErrorCode::PrivateUnsupported));
        assert_eq!(refused.to.as_deref(), Some("bob"));
        for frame in [ClientFrame::Lock, ClientFrame::Unlock] {
            assert!(native_only(&frame).unwrap().error.contains("native"));
        }
        let cancel = ClientFrame::FileCancel { id: "f".into() };
        assert_eq!(
            native_only(&cancel).unwrap().code,
            Some(ErrorCode::BadRequest)
        );
    }

    #[test]
    fn a_wrong_shape_is_refused_before_it_costs_anything() {
        let refused = check_shape(&message("plaintext")).unwrap_err();
        assert_eq!(refused.code, Some(ErrorCode::MessageRefused));
        assert_eq!(refused.reference, Some(3));
        let long = private(&"x".repeat(MAX_PRIVATE_BODY_LEN + 1));
        assert!(
            check_shape(&long)
                .unwrap_err()
                .error
                .contains("longer than")
        );
        assert_eq!(
            check_shape(&private("plain")).unwrap_err().to.as_deref(),
            Some("bob")
        );
        let admit = ClientFrame::Admit { user: "a b".into() };
        assert!(check_shape(&admit).is_err());
        assert!(check_shape(&ClientFrame::Admit { user: "ann".into() }).is_ok());
    }

    #[test]
    fn what_reaches_everyone_or_changes_the_room_spends_the_rate() {
        assert!(counts_against_rate(&message(TOKEN)));
        assert!(counts_against_rate(&private(TOKEN)));
        assert!(counts_against_rate(&ClientFrame::Clear));
        assert!(counts_against_rate(&ClientFrame::Lock));
        assert!(!counts_against_rate(&ClientFrame::Pong));
        assert!(!counts_against_rate(&ClientFrame::Leave));
        let chunk = ClientFrame::FileChunk {
            id: "f".into(),
            index: 0,
            data: TOKEN.into(),
        };
        assert!(!counts_against_rate(&chunk));
    }
}
