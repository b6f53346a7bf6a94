//! Delivery receipts for the messages we send, without I/O: each message
//! gets a reference; the server's `sent` receipt confirms it, a refusal or
//! a lost connection fails it, and so does silence past the deadline. A
//! failed message is kept (wiped when forgotten) so that `/resend` can send
//! it again. Every outcome is an [`Event`] for the front end.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use zeroize::Zeroizing;

use super::event::Event;

/// Time the server has to confirm a message before it is reported failed.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Failed messages kept for `/resend`; older ones are forgotten (and wiped).
pub const MAX_FAILED_KEPT: usize = 100;

/// A message sent but not yet confirmed by the server.
struct Unconfirmed {
    /// The number the server's receipt names the message by.
    reference: u64,
    /// When it went out: the receipt is due within the timeout after.
    sent_at: Instant,
    /// What was typed, kept for `/resend` should the message fail.
    text: Zeroizing<String>,
}

/// Our messages between sending and their receipt, and those that failed.
pub struct Receipts {
    /// The reference the next message gets; references are never reused.
    next_reference: u64,
    /// Messages awaiting their receipt, oldest first: the oldest is always the
    /// first to time out.
    unconfirmed: VecDeque<Unconfirmed>,
    /// Failed messages by reference, for `/resend`; at most
    /// [`MAX_FAILED_KEPT`], the oldest forgotten first.
    failed: VecDeque<(u64, Zeroizing<String>)>,
    /// How long the server has to confirm: [`ACK_TIMEOUT`] unless set
    /// otherwise.
    ack_timeout: Duration,
}

impl Default for Receipts {
    fn default() -> Self {
        Self {
            next_reference: 1,
            unconfirmed: VecDeque::new(),
            failed: VecDeque::new(),
            ack_timeout: ACK_TIMEOUT,
        }
    }
}

impl Receipts {
    /// How long a message may wait for its receipt.
    pub fn set_ack_timeout(&mut self, timeout: Duration) {
        self.ack_timeout = timeout;
    }

    /// The reference for the next message: 1, 2, 3, ... in sending order.
    pub fn next_reference(&mut self) -> u64 {
        let reference = self.next_reference;
        self.next_reference += 1;
        reference
    }

    /// `text`, sent now as `reference`, awaits its receipt.
    pub fn sent(&mut self, reference: u64, text: &str, now: Instant) {
        self.unconfirmed.push_back(Unconfirmed {
            reference,
            sent_at: now,
            text: Zeroizing::new(text.to_owned()),
        });
    }

    /// The server confirmed `reference`.
    pub fn confirmed(&mut self, reference: u64) {
        self.unconfirmed.retain(|u| u.reference != reference);
    }

    /// `text` (as `reference`) did not go out or was not taken: it is kept
    /// for `/resend`, and the returned event says why.
    pub fn failed(&mut self, reference: u64, text: Zeroizing<String>, reason: String) -> Event {
        if self.failed.len() >= MAX_FAILED_KEPT {
            self.failed.pop_front();
        }
        self.failed.push_back((reference, text));
        Event::SendFailed { reference, reason }
    }

    /// The server refused `reference`: its failure, if it is ours and
    /// still awaited.
    pub fn refused(&mut self, reference: u64, reason: String) -> Option<Event> {
        let pos = self
            .unconfirmed
            .iter()
            .position(|u| u.reference == reference)?;
        let refused = self.unconfirmed.remove(pos).expect("position is valid");
        Some(self.failed(reference, refused.text, reason))
    }

    /// Messages whose receipt is overdue at `now`, failed.
    pub fn expire(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(oldest) = self.unconfirmed.front() {
            if oldest.sent_at + self.ack_timeout > now {
                break;
            }
            let overdue = self.unconfirmed.pop_front().expect("front exists");
            let reason = "the server did not confirm it in time".to_owned();
            events.push(self.failed(overdue.reference, overdue.text, reason));
        }
        events
    }

    /// The connection is gone: what was in flight may or may not have been
    /// stored, so each is failed, to be sent again if need be.
    pub fn connection_lost(&mut self) -> Vec<Event> {
        let lost: Vec<Unconfirmed> = self.unconfirmed.drain(..).collect();
        let reason = "the connection was lost before the server confirmed it";
        lost.into_iter()
            .map(|u| self.failed(u.reference, u.text, reason.to_owned()))
            .collect()
    }

    /// The text of failed message `reference`, taken to be sent again;
    /// `None` if it is not (or no longer) kept.
    pub fn take_failed(&mut self, reference: u64) -> Option<Zeroizing<String>> {
        let pos = self.failed.iter().position(|(r, _)| *r == reference)?;
        self.failed.remove(pos).map(|(_, text)| text)
    }

    /// When the oldest awaited receipt is overdue.
    pub fn deadline(&self) -> Option<Instant> {
        self.unconfirmed
            .front()
            .map(|u| u.sent_at + self.ack_timeout)
    }

    /// Whether any message awaits its receipt.
    pub fn awaiting(&self) -> bool {
        !self.unconfirmed.is_empty()
    }

    /// The text of message `reference`, if it awaits its receipt.
    pub fn awaiting_text(&self, reference: u64) -> Option<&str> {
        self.unconfirmed
            .iter()
            .find(|u| u.reference == reference)
            .map(|u| u.text.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed_refs(events: &[Event]) -> Vec<u64> {
        events
            .iter()
            .map(|e| match e {
                Event::SendFailed { reference, .. } => *reference,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_confirmed_message_is_done_and_others_expire_in_order() {
        let t0 = Instant::now();
        let mut r = Receipts::default();
        let refs: Vec<u64> = (0..3).map(|_| r.next_reference()).collect();
        assert_eq!(refs, [1, 2, 3]);
        for (i, reference) in refs.iter().enumerate() {
            r.sent(*reference, "hi", t0 + Duration::from_secs(i as u64));
        }
        r.confirmed(2);
        assert_eq!(r.deadline(), Some(t0 + ACK_TIMEOUT));
        assert!(
            r.expire(t0 + ACK_TIMEOUT - Duration::from_millis(1))
                .is_empty()
        );
        let expired = r.expire(t0 + ACK_TIMEOUT + Duration::from_secs(5));
        assert_eq!(failed_refs(&expired), [1, 3]);
        assert!(!r.awaiting());
        assert_eq!(r.take_failed(3).as_deref().map(String::as_str), Some("hi"));
        assert!(r.take_failed(3).is_none(), "taken once");
        // Sent again, it awaits its receipt under its new reference.
        let again = r.next_reference();
        r.sent(again, "hi", t0);
        assert_eq!(r.awaiting_text(again), Some("hi"));
        assert_eq!(r.awaiting_text(3), None);
        assert!(
            r.take_failed(2).is_none(),
            "a confirmed message is not kept"
        );
    }

    #[test]
    fn a_refusal_fails_only_our_awaited_message() {
        let mut r = Receipts::default();
        let reference = r.next_reference();
        r.sent(reference, "too fast", Instant::now());
        assert!(r.refused(99, "no".into()).is_none());
        let failed = r.refused(reference, "slow down".into()).unwrap();
        assert_eq!(
            failed,
            Event::SendFailed {
                reference,
                reason: "slow down".into()
            }
        );
        assert!(r.refused(reference, "again".into()).is_none());
    }

    #[test]
    fn a_lost_connection_fails_everything_in_flight() {
        let mut r = Receipts::default();
        for _ in 0..2 {
            let reference = r.next_reference();
            r.sent(reference, "in flight", Instant::now());
        }
        assert_eq!(failed_refs(&r.connection_lost()), [1, 2]);
        assert!(!r.awaiting());
        assert!(r.connection_lost().is_empty());
    }

    #[test]
    fn only_the_newest_failures_are_kept() {
        let mut r = Receipts::default();
        for _ in 0..MAX_FAILED_KEPT + 1 {
            let reference = r.next_reference();
            r.failed(reference, Zeroizing::new("x".into()), "no".into());
        }
        assert!(r.take_failed(1).is_none(), "the oldest is forgotten");
        assert!(r.take_failed(2).is_some());
    }
}
