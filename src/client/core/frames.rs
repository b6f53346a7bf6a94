//! What the client does with each frame the server sends once we are in
//! the room: [`Client::apply`] takes the frame apart and hands it to one
//! handler per kind, each of which queues its events in order.

use zeroize::Zeroizing;

use super::{Client, DEPARTED_MEMORY, too_many_members};
use crate::client::error::ClientError;
use crate::client::event::{ChatMessage, Event, written_long_before};
use crate::client::login::protocol;
use crate::protocol::limits::MAX_ROOM_MEMBERS;
use crate::protocol::wire::{
    ErrorCode, ErrorReply, MessageData, MessagePlaintext, PrivateEnvelope, ServerEvent,
    ServerFrame, UserInfo,
};

impl Client {
    /// Applies one frame from the server: its events join `pending`, in
    /// order. Pings are answered before this. An error ends the session.
    pub(super) fn apply(&mut self, frame: ServerFrame) -> Result<(), ClientError> {
        let event = match frame {
            ServerFrame::Error(refusal) => return self.on_refusal(refusal),
            ServerFrame::Event(event) => event,
        };
        match event {
            ServerEvent::Message { data } => {
                let event = self.message_event(data, false);
                self.pending.extend(event);
            }
            ServerEvent::History { messages } => self.on_history(messages),
            ServerEvent::Sent { reference, seq } => {
                self.receipts.confirmed(reference);
                self.pending.push_back(Event::Sent { reference, seq });
            }
            ServerEvent::UserJoined { user_id, username } => self.on_joined(user_id, username)?,
            ServerEvent::UserLeft { user_id } => self.on_left(&user_id),
            ServerEvent::Private {
                from,
                from_name,
                body,
            } => self.private_frame(&from, &from_name, &body)?,
            ServerEvent::Cleared { by } => self.pending.push_back(Event::Cleared { by }),
            ServerEvent::Notice { text } => self.pending.push_back(Event::Notice { message: text }),
            ServerEvent::Ping => {}
            ServerEvent::Closing { .. } => return Err(ClientError::RoomClosed),
            ServerEvent::Init { .. } => return Err(protocol("a second init frame")),
            ServerEvent::Waiting { .. } => return Err(protocol("a waiting frame after init")),
            ServerEvent::Locked { by } => {
                self.locked = Some(by.clone());
                self.pending.push_back(Event::Locked { by });
            }
            ServerEvent::Unlocked { by } => {
                self.locked = None;
                self.pending.push_back(Event::Unlocked { by });
            }
            ServerEvent::Knock { user } => self.on_knock(user)?,
            ServerEvent::KnockResolved { user, outcome, by } => {
                self.knocking.retain(|u| *u != user);
                let event = Event::KnockResolved { user, outcome, by };
                self.pending.push_back(event);
            }
            ServerEvent::FileOffer {
                from,
                id,
                chunks,
                meta,
            } => self.on_file_offer(from, id, chunks, &meta),
            ServerEvent::FileChunk {
                from,
                id,
                index,
                data,
            } => self.on_file_chunk(&from, &id, index, &data),
            ServerEvent::FileAck { id, index } => self.on_file_ack(&id, index)?,
            ServerEvent::FileAborted { from, id, reason } => {
                let event = self.transfers.aborted(from, &id, reason);
                self.pending.extend(event);
            }
        }
        Ok(())
    }

    /// The server refused something or is sending us away: a refusal of a
    /// private frame goes to that conversation, one of our messages is
    /// reported failed, anything else is shown.
    fn on_refusal(&mut self, refusal: ErrorReply) -> Result<(), ClientError> {
        match refusal.code {
            Some(ErrorCode::ShuttingDown) => return Err(ClientError::RoomClosed),
            Some(ErrorCode::TooSlow | ErrorCode::Idle | ErrorCode::Replaced) => {
                return Err(ClientError::Kicked(refusal.error));
            }
            _ => {}
        }
        if let Some(to) = refusal.to {
            let name = self.name_of(&to).unwrap_or_else(|| "someone".into());
            let unreachable = matches!(
                refusal.code,
                Some(ErrorCode::NoSuchUser | ErrorCode::PrivateUnsupported)
            );
            let events = self
                .private
                .refused(&to, &name, &refusal.error, unreachable);
            self.pending.extend(events);
            return Ok(());
        }
        let failed = refusal
            .reference
            .and_then(|reference| self.receipts.refused(reference, refusal.error.clone()));
        let event = failed.unwrap_or(Event::Error {
            message: refusal.error,
        });
        self.pending.push_back(event);
        Ok(())
    }

    /// Messages replayed: history at join, or what was missed while
    /// reconnecting (shown as live).
    fn on_history(&mut self, messages: Vec<MessageData>) {
        let history = self.replay_is_history;
        for data in messages {
            let event = self.message_event(data, history);
            self.pending.extend(event);
        }
    }

    /// A member joined.
    fn on_joined(&mut self, user_id: String, username: String) -> Result<(), ClientError> {
        // An id we know under another name is someone else now (as on a
        // reconnect): the member it was has left, and the keys agreed with
        // them go too, so they can never speak for the new name.
        if let Some(pos) = self.users.iter().position(|u| u.user_id == user_id) {
            let known = self.users.remove(pos);
            if known.username != username {
                self.member_left(known);
            }
        } else if self.users.len() >= MAX_ROOM_MEMBERS {
            return Err(too_many_members());
        }
        // Likewise a name we know under another id: whoever held it has
        // left, with the keys agreed with them, so the newcomer never
        // inherits a verified name.
        if let Some(pos) = self.users.iter().position(|u| u.username == username) {
            let known = self.users.remove(pos);
            self.member_left(known);
        }
        self.users.push(UserInfo {
            user_id,
            username: username.clone(),
        });
        self.pending.push_back(Event::Joined { user: username });
        Ok(())
    }

    /// A member left; one we do not know is no event.
    fn on_left(&mut self, user_id: &str) {
        if let Some(pos) = self.users.iter().position(|u| u.user_id == user_id) {
            let user = self.users.remove(pos);
            self.member_left(user);
        }
    }

    /// A newcomer knocks at the locked room (again, if they were already).
    fn on_knock(&mut self, user: String) -> Result<(), ClientError> {
        self.knocking.retain(|u| *u != user);
        if self.knocking.len() >= MAX_ROOM_MEMBERS {
            return Err(too_many_members());
        }
        self.knocking.push(user.clone());
        self.pending.push_back(Event::Knock { user });
        Ok(())
    }

    /// Someone offers a file.
    fn on_file_offer(&mut self, from: String, id: String, chunks: u32, meta: &str) {
        let event = self
            .transfers
            .offered(&self.conn.cipher, from, id, chunks, meta);
        self.pending.extend(event);
    }

    /// A piece of someone's file.
    fn on_file_chunk(&mut self, from: &str, id: &str, index: u32, data: &str) {
        let events = self
            .transfers
            .chunk(&self.conn.cipher, from, id, index, data);
        self.pending.extend(events);
    }

    /// The server passed on our chunks up to `index`: more go out.
    fn on_file_ack(&mut self, id: &str, index: u32) -> Result<(), ClientError> {
        let now = tokio::time::Instant::now();
        let out = self.transfers.acked(&self.conn.cipher, id, index, now);
        self.queue_frames(out.frames)?;
        self.pending.extend(out.events);
        Ok(())
    }

    /// A member is gone (the caller has taken it out of `users`): its
    /// private keys go now, anything still waiting for it fails, and a
    /// refusal about it that arrives later can still name it.
    pub(super) fn member_left(&mut self, user: UserInfo) {
        let UserInfo { user_id, username } = user;
        let failed = self.private.departed(&user_id);
        if self.departed.len() == DEPARTED_MEMORY {
            self.departed.pop_front();
        }
        self.departed.push_back((user_id, username.clone()));
        self.pending.push_back(Event::Left { user: username });
        self.pending.extend(failed);
    }

    /// Opens a private frame's room encryption and hands the envelope to the
    /// conversation with its sender.
    fn private_frame(
        &mut self,
        from: &str,
        from_name: &str,
        body: &str,
    ) -> Result<(), ClientError> {
        // The name the server gives must be the member's name we know, so a
        // confused server cannot make one member's keys speak for another.
        let Some(name) = self
            .users
            .iter()
            .find(|u| u.user_id == from && u.username == from_name)
            .map(|u| u.username.clone())
        else {
            self.pending.push_back(Event::Error {
                message: "a private message came from someone who is not in the room; ignored"
                    .into(),
            });
            return Ok(());
        };
        let envelope = self
            .conn
            .cipher
            .decrypt(body)
            .map_err(|e| e.to_string())
            .map(Zeroizing::new)
            .and_then(|json| {
                serde_json::from_str::<PrivateEnvelope>(&json)
                    .map_err(|_| "its envelope is malformed".to_owned())
            });
        match envelope {
            Ok(envelope) => {
                let out = self.private.receive(from, &name, envelope);
                self.apply_private(out.frames, out.events)
            }
            Err(why) => {
                self.pending.push_back(Event::Error {
                    message: format!("a private message from {name} could not be read: {why}"),
                });
                Ok(())
            }
        }
    }

    /// `None` for a message already shown: the server numbers a room's
    /// messages in increasing order, so one at or below the last number
    /// seen is a replay (a server cannot forge a message, but it could
    /// repeat one), not shown twice.
    pub(super) fn message_event(&mut self, mut data: MessageData, history: bool) -> Option<Event> {
        let seq = match data.seq {
            Some(seq) if seq <= self.last_seq => return None,
            Some(seq) => seq,
            // 1.x servers number nothing: count here.
            None => {
                self.local_seq += 1;
                self.local_seq
            }
        };
        self.last_seq = self.last_seq.max(seq);
        let from = std::mem::take(&mut data.username);
        Some(match self.open_message(&data.text, &from) {
            Ok(text) => Event::Message(ChatMessage {
                seq,
                from,
                text,
                relayed_again: written_long_before(&data.text, &data.timestamp),
                timestamp: std::mem::take(&mut data.timestamp),
                history,
            }),
            Err(why) => Event::Error {
                message: format!("message {seq} from {from}: {why}; not shown"),
            },
        })
    }

    /// The text of the token `token` the server says `from` sent. In rooms
    /// whose messages carry their writer's name, that name must be `from`:
    /// otherwise the server (which cannot write a token) has moved one
    /// member's words under another's name.
    fn open_message(&self, token: &str, from: &str) -> Result<String, String> {
        let text = self.conn.cipher.decrypt(token).map_err(|e| e.to_string())?;
        if !self.conn.names_inside {
            return Ok(text);
        }
        let text = Zeroizing::new(text);
        let inside: MessagePlaintext<'_> = serde_json::from_str(&text).map_err(|_| {
            "its token does not name its writer, as every message in this room must".to_owned()
        })?;
        if inside.from != from {
            return Err(format!(
                "written by {}, but the server says {from} sent it",
                inside.from
            ));
        }
        Ok(inside.text.into_owned())
    }

    /// The name of the member `user_id`, present or recently departed.
    fn name_of(&self, user_id: &str) -> Option<String> {
        self.users
            .iter()
            .find(|u| u.user_id == user_id)
            .map(|u| u.username.clone())
            .or_else(|| {
                self.departed
                    .iter()
                    .rev()
                    .find(|(id, _)| id == user_id)
                    .map(|(_, name)| name.clone())
            })
    }
}
