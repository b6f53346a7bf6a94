//! Our own messages between Enter and the room's confirmation, as a human
//! front end shows them: each once. The typed line becomes a pending line
//! (dim, ending in `…`) below the room's lines; when the room relays the
//! message back it is printed in its place in the room's order, like
//! anyone's, and the pending line goes. A message that fails is reported
//! by the core ([`Event::SendFailed`], [`Event::PrivateNotSent`]) and is
//! shown once more, marked as not delivered, above the reason.
//!
//! No I/O: the session records what it sent and passes every event
//! through [`Sending::settle`].

use zeroize::Zeroizing;

use super::core::RECONNECT_ATTEMPTS;

use super::event::{ChatMessage, Event, PrivateMessage};
use super::render::{Renderer, Theme};

/// One message waiting for its confirmation.
#[derive(Debug)]
enum Waiting {
    /// To the room, as the core's reference for it.
    Room {
        reference: u64,
        text: Zeroizing<String>,
    },
    /// To one member, through the private session with them.
    Private { to: String, text: Zeroizing<String> },
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Sending {
    /// Our name: the echo of our messages is from it.
    me: String,
    /// Renders pending lines as the messages will look, without escape codes
    /// (the screen dims them itself).
    look: Renderer,
    /// Oldest first: the room confirms our messages in the order they went.
    waiting: Vec<Waiting>,
    /// Messages the core reported undelivered since the session last took
    /// them, so the person sees which words did not go.
    failed: Vec<Waiting>,
    /// The attempt under way to get a lost connection back, and why the
    /// last one failed: one line below the pending ones that changes,
    /// rather than a line per attempt pushing the conversation away.
    reconnecting: Option<(u32, String)>,
}

impl Sending {
    pub fn new(me: &str) -> Self {
        Self {
            me: me.to_owned(),
            look: Renderer::new(me, Theme::Plain),
            waiting: Vec::new(),
            failed: Vec::new(),
            reconnecting: None,
        }
    }

    /// `text` went to the room as `reference`.
    pub fn room(&mut self, reference: u64, text: &str) {
        let text = Zeroizing::new(text.to_owned());
        self.waiting.push(Waiting::Room { reference, text });
    }

    /// `text` went (or is queued) to `to` alone.
    pub fn private(&mut self, to: &str, text: &str) {
        let text = Zeroizing::new(text.to_owned());
        let to = to.to_owned();
        self.waiting.push(Waiting::Private { to, text });
    }

    /// Whether `event` is told by the pending lines rather than printed:
    /// attempts to reconnect after the first.
    pub fn told_below(event: &Event) -> bool {
        matches!(event, Event::Reconnecting { attempt, .. } if *attempt > 1)
    }

    /// Takes `event` into account; whether the pending lines changed.
    pub fn settle(&mut self, event: &Event) -> bool {
        match event {
            Event::Reconnecting { attempt, reason } if Self::told_below(event) => {
                self.reconnecting = Some((*attempt, reason.clone()));
                return true;
            }
            Event::Reconnected { .. } => return self.reconnecting.take().is_some(),
            _ => {}
        }
        let before = self.waiting.len();
        match event {
            Event::Message(m) if m.from == self.me && !m.history => {
                self.remove_first(|w| matches!(w, Waiting::Room { text, .. } if **text == m.text));
            }
            Event::SendFailed { reference, .. } => {
                let failed = *reference;
                let removed = self.remove_first(
                    |w| matches!(w, Waiting::Room { reference, .. } if *reference == failed),
                );
                self.failed.extend(removed);
            }
            Event::Private(m) if m.from == self.me => {
                self.remove_first(|w| {
                    matches!(w, Waiting::Private { to, text } if *to == m.to && **text == m.text)
                });
            }
            // The oldest ones to `to`: they queue for the session in order.
            Event::PrivateNotSent { to, count, .. } => {
                for _ in 0..*count {
                    let removed = self
                        .remove_first(|w| matches!(w, Waiting::Private { to: t, .. } if t == to));
                    self.failed.extend(removed);
                }
            }
            _ => {}
        }
        self.waiting.len() != before
    }

    fn remove_first(&mut self, matches: impl Fn(&Waiting) -> bool) -> Option<Waiting> {
        let at = self.waiting.iter().position(matches)?;
        Some(self.waiting.remove(at))
    }

    /// The pending lines, oldest first, stamped `now` (RFC 3339), and the
    /// reconnection under way.
    pub fn lines(&self, now: &str) -> Vec<String> {
        let mut lines: Vec<String> = self
            .waiting
            .iter()
            .map(|w| self.line(w, now, PENDING))
            .collect();
        // The attempt first: the reason may be cut at the screen's edge.
        if let Some((attempt, reason)) = &self.reconnecting {
            lines.push(format!(
                "{} -- reconnecting, attempt {attempt} of {RECONNECT_ATTEMPTS}: {reason}",
                super::render::local_hhmm(now)
            ));
        }
        lines
    }

    /// The messages reported undelivered since the last call, marked so,
    /// to show above the report that names them.
    pub fn take_failed(&mut self, now: &str) -> Vec<String> {
        let failed = std::mem::take(&mut self.failed);
        failed
            .iter()
            .map(|w| self.line(w, now, UNDELIVERED))
            .collect()
    }

    /// The session is over: what was never confirmed, marked so. The room
    /// may or may not have relayed a room message; nobody here can tell any
    /// more. A private one still waiting was never sent: it waited for its
    /// private session, which goes with us.
    pub fn unconfirmed(&self, now: &str) -> Vec<String> {
        self.waiting
            .iter()
            .map(|w| match w {
                Waiting::Room { .. } => self.line(w, now, UNCONFIRMED),
                Waiting::Private { .. } => self.line(w, now, UNDELIVERED),
            })
            .collect()
    }

    fn line(&self, waiting: &Waiting, now: &str, mark: &str) -> String {
        let shown = match waiting {
            Waiting::Room { text, .. } => self.look.message(&ChatMessage {
                seq: 0,
                from: self.me.clone(),
                text: text.to_string(),
                timestamp: now.to_owned(),
                history: false,
                relayed_again: None,
            }),
            Waiting::Private { to, text } => self.look.private(
                &PrivateMessage {
                    from: self.me.clone(),
                    to: to.clone(),
                    text: text.to_string(),
                },
                &super::render::local_hhmm(now),
            ),
        };
        let lines: Vec<&str> = shown.lines.iter().map(|l| l.trim_start()).collect();
        format!("{} {mark}", lines.join(" ↵ "))
    }
}

/// After a message sent and not yet confirmed.
const PENDING: &str = "…";
/// After a message the core reported undelivered.
const UNDELIVERED: &str = "✗ not delivered";
/// After a message still pending when the session ended.
const UNCONFIRMED: &str = "(not confirmed)";

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-12-05T10:00:00Z";

    fn echo(from: &str, text: &str, history: bool) -> Event {
        Event::Message(ChatMessage {
            seq: 7,
            from: from.into(),
            text: text.into(),
            timestamp: NOW.into(),
            history,
            relayed_again: None,
        })
    }

    fn pending(s: &Sending) -> Vec<String> {
        // Drop the local time, which depends on the machine's zone.
        s.lines(NOW)
            .iter()
            .map(|l| l.split_once(' ').unwrap().1.to_owned())
            .collect()
    }

    #[test]
    fn a_message_is_pending_until_the_room_relays_it_back() {
        let mut s = Sending::new("ann");
        s.room(1, "hi bob");
        s.room(2, "/me waves");
        s.room(3, "two\nlines");
        assert_eq!(
            pending(&s),
            ["ann: hi bob …", "* ann waves …", "ann: ↵ two ↵ lines …"]
        );
        // Someone else's, a replayed one, and our own from history: no change.
        assert!(!s.settle(&echo("bob", "hi bob", false)));
        assert!(!s.settle(&echo("ann", "hi bob", true)));
        assert!(s.settle(&echo("ann", "hi bob", false)));
        assert!(s.settle(&echo("ann", "/me waves", false)));
        assert_eq!(pending(&s), ["ann: ↵ two ↵ lines …"]);
        assert!(!s.settle(&Event::Sent {
            reference: 1,
            seq: 7
        }));
    }

    #[test]
    fn the_same_words_twice_are_confirmed_one_at_a_time() {
        let mut s = Sending::new("ann");
        s.room(1, "ok");
        s.room(2, "ok");
        assert!(s.settle(&echo("ann", "ok", false)));
        assert_eq!(pending(&s).len(), 1);
    }

    #[test]
    fn a_failed_message_stops_being_pending() {
        let mut s = Sending::new("ann");
        s.room(1, "one");
        s.room(2, "two");
        let failed = Event::SendFailed {
            reference: 2,
            reason: "lost".into(),
        };
        assert!(s.settle(&failed));
        assert_eq!(pending(&s), ["ann: one …"]);
        // The words that did not go are given once, marked.
        let failed = s.take_failed(NOW);
        assert_eq!(failed.len(), 1);
        assert!(
            failed[0].ends_with(" ann: two ✗ not delivered"),
            "{failed:?}"
        );
        assert!(s.take_failed(NOW).is_empty());
        // `/resend 2` goes as 3 with the core's copy of the words: pending
        // again, and marked again if it fails again.
        s.room(3, "two");
        assert_eq!(pending(&s), ["ann: one …", "ann: two …"]);
        assert!(s.settle(&Event::SendFailed {
            reference: 3,
            reason: "lost again".into(),
        }));
        assert_eq!(s.take_failed(NOW).len(), 1);
    }

    #[test]
    fn attempts_to_reconnect_after_the_first_change_one_line() {
        let mut s = Sending::new("ann");
        s.room(1, "one");
        let attempt = |attempt| Event::Reconnecting {
            attempt,
            reason: format!("refused {attempt}"),
        };
        // The first is printed as the room's line.
        assert!(!Sending::told_below(&attempt(1)));
        assert!(!s.settle(&attempt(1)));
        for n in 2..=4 {
            assert!(Sending::told_below(&attempt(n)));
            assert!(s.settle(&attempt(n)));
        }
        let lines = s.lines(NOW);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[1].ends_with(" -- reconnecting, attempt 4 of 12: refused 4"),
            "{lines:?}"
        );
        let back = Event::Reconnected {
            missed: 0,
            complete: true,
        };
        assert!(s.settle(&back));
        assert_eq!(pending(&s), ["ann: one …"]);
    }

    #[test]
    fn what_is_pending_when_the_session_ends_is_marked_unconfirmed() {
        let mut s = Sending::new("ann");
        s.room(1, "one");
        s.private("bob", "psst");
        let left = s.unconfirmed(NOW);
        assert!(left[0].ends_with(" ann: one (not confirmed)"), "{left:?}");
        assert!(
            left[1].ends_with(" [private] ann -> bob: psst ✗ not delivered"),
            "{left:?}"
        );
    }

    #[test]
    fn a_private_message_is_pending_until_it_goes() {
        let mut s = Sending::new("ann");
        s.private("bob", "psst");
        s.room(1, "hello");
        assert_eq!(
            pending(&s),
            ["[private] ann -> bob: psst …", "ann: hello …"]
        );
        let sent = Event::Private(PrivateMessage {
            from: "ann".into(),
            to: "bob".into(),
            text: "psst".into(),
        });
        assert!(s.settle(&sent));
        assert_eq!(pending(&s), ["ann: hello …"]);
    }

    #[test]
    fn private_messages_not_sent_are_marked_so_and_others_stay() {
        let mut s = Sending::new("ann");
        s.private("cy", "one");
        s.private("bob", "psst");
        s.private("cy", "two");
        s.private("cy", "three");
        // An error about something else leaves every pending line.
        assert!(!s.settle(&Event::Error {
            message: "a private message from dan could not be read".into()
        }));
        let failed = Event::PrivateNotSent {
            to: "cy".into(),
            count: 2,
            reason: "they left the room".into(),
        };
        assert!(s.settle(&failed));
        assert_eq!(
            pending(&s),
            [
                "[private] ann -> bob: psst …",
                "[private] ann -> cy: three …"
            ]
        );
        let marked = s.take_failed(NOW);
        assert_eq!(marked.len(), 2, "{marked:?}");
        assert!(
            marked[0].ends_with(" ann -> cy: one ✗ not delivered"),
            "{marked:?}"
        );
        assert!(
            marked[1].ends_with(" ann -> cy: two ✗ not delivered"),
            "{marked:?}"
        );
        assert!(s.take_failed(NOW).is_empty());
    }
}
