//! Every line the server writes, encoded in one place.
//!
//! Most frames are serde's encoding of the types in [`super::wire`]
//! ([`encode`]). Messages are the exception that makes the relay fast: each
//! message's `data` object is encoded once, when it is posted ([`message_data`]),
//! and spliced as it is into every frame that carries it: the live
//! `message`, the `history` parts and a 1.x joiner's `init`. The splicing
//! lives here, beside the types, and each kind is checked by a test that
//! parses what it wrote with the ordinary decoder; `init` itself is still
//! serde's encoding of [`ServerEvent::Init`], so no field of it can be left
//! out by hand.

use std::sync::Arc;

use serde::Serialize;

use super::wire::{MessageData, ServerEvent};

/// A line as the server queues it: JSON text, shared by every member it
/// goes to. (The line's newline, and any sealing, come when it is written.)
pub type Encoded = Arc<str>;

/// A frame as serde encodes it.
pub fn encode(value: &impl Serialize) -> Encoded {
    serde_json::to_string(value)
        .expect("frames serialize")
        .into()
}

/// A message's `data` object, encoded once for all the frames that carry it.
pub fn message_data(data: &MessageData) -> Encoded {
    encode(data)
}

/// The live `message` frame for an encoded `data` object.
pub fn message_frame(data_json: &str) -> Encoded {
    format!("{{\"type\":\"message\",\"data\":{data_json}}}").into()
}

/// What a `history` frame costs beyond its messages (and a comma each).
pub const HISTORY_OVERHEAD: usize = HISTORY_HEAD.len() + LIST_TAIL.len();
const HISTORY_HEAD: &str = "{\"type\":\"history\",\"messages\":[";
const LIST_TAIL: &str = "]}";

/// A `history` frame holding the encoded `data` objects `messages`.
pub fn history_frame<'a>(messages: impl IntoIterator<Item = &'a str>) -> Encoded {
    let mut frame = String::from(HISTORY_HEAD);
    push_list(&mut frame, messages);
    frame.push_str(LIST_TAIL);
    frame.into()
}

/// An `init` frame: `init` (whose own `messages` must be empty) with the
/// encoded `data` objects `messages` in its `messages` list.
pub fn init_frame<'a>(init: &ServerEvent, messages: impl IntoIterator<Item = &'a str>) -> Encoded {
    let (head, rest) = init_halves(init);
    let mut frame = String::from(head);
    push_list(&mut frame, messages);
    frame.push_str(&rest);
    frame.into()
}

/// The length of `init`'s frame with no messages: what a 1.x joiner's line
/// budget is left with is its limit minus this.
pub fn init_len(init: &ServerEvent) -> usize {
    let (head, rest) = init_halves(init);
    head.len() + rest.len()
}

/// `init` encoded, split where its messages go: `messages` is its first
/// field, so the encoding starts `{"type":"init","messages":[` and the rest
/// begins with the `]` that closes the empty list.
fn init_halves(init: &ServerEvent) -> (&'static str, String) {
    const HEAD: &str = "{\"type\":\"init\",\"messages\":[";
    let ServerEvent::Init { messages, .. } = init else {
        panic!("init_frame takes an init event");
    };
    assert!(messages.is_empty(), "init's messages are spliced in");
    let json = serde_json::to_string(init).expect("init serializes");
    let rest = json
        .strip_prefix(HEAD)
        .filter(|rest| rest.starts_with(']'))
        .expect("messages is init's first field");
    (HEAD, rest.to_owned())
}

fn push_list<'a>(frame: &mut String, items: impl IntoIterator<Item = &'a str>) {
    for (n, item) in items.into_iter().enumerate() {
        if n > 0 {
            frame.push(',');
        }
        frame.push_str(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::wire::{ServerFrame, UserInfo};

    fn data(seq: u64, text: &str) -> MessageData {
        MessageData {
            id: seq.to_string(),
            seq: Some(seq),
            text: text.into(),
            timestamp: "2026-12-05T10:00:00.000Z".into(),
            username: "ann \"the\" \u{1F600}".into(),
        }
    }

    fn parsed(line: &str) -> ServerEvent {
        match ServerFrame::from_json(line).unwrap() {
            ServerFrame::Event(event) => event,
            other => panic!("{other:?}"),
        }
    }

    fn init(messages: Vec<MessageData>) -> ServerEvent {
        ServerEvent::Init {
            messages,
            users: vec![UserInfo {
                user_id: "u1".into(),
                username: "ann".into(),
            }],
            room_salt: Some("c2FsdA==".into()),
            user_id: Some("u1".into()),
            room_id: Some("r1".into()),
            resume_token: Some("dG9rZW4=".into()),
            after_seq: Some(3),
            complete: Some(true),
            locked: Some("bob".into()),
            knocking: vec!["cat".into()],
            history: Some(2),
            max_file_size: Some(5),
            admitted_by: Some("bob".into()),
        }
    }

    #[test]
    fn a_message_frame_reads_back_as_the_message() {
        let d = data(7, "gAAAA,\"]}");
        let line = message_frame(&message_data(&d));
        assert_eq!(parsed(&line), ServerEvent::Message { data: d });
    }

    #[test]
    fn a_history_frame_reads_back_as_its_messages() {
        let messages = vec![data(1, "gAAAA1"), data(2, "gAAAA2")];
        let encoded: Vec<Encoded> = messages.iter().map(message_data).collect();
        let line = history_frame(encoded.iter().map(|e| &**e));
        assert_eq!(parsed(&line), ServerEvent::History { messages });
        assert_eq!(history_frame([]).len(), HISTORY_OVERHEAD);
        assert_eq!(
            parsed(&history_frame([])),
            ServerEvent::History { messages: vec![] }
        );
    }

    #[test]
    fn an_init_frame_carries_every_field_and_its_messages() {
        let messages = vec![data(4, "gAAAA4"), data(5, "gAAAA5")];
        let encoded: Vec<Encoded> = messages.iter().map(message_data).collect();
        let line = init_frame(&init(vec![]), encoded.iter().map(|e| &**e));
        assert_eq!(parsed(&line), init(messages));
        let empty = init_frame(&init(vec![]), []);
        assert_eq!(parsed(&empty), init(vec![]));
        assert_eq!(init_len(&init(vec![])), empty.len());
    }
}
