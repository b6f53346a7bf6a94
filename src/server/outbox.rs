//! A member's outbound queue, bounded by frames and by bytes.
//!
//! The room fills it without waiting; the member's connection task drains it.
//! A member that stops reading fills it, and is then disconnected: it never
//! delays anyone else, and never holds more than [`MAX_QUEUED_BYTES`] of
//! frames alive.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::limits::{MAX_QUEUED_BYTES, OUTBOUND_QUEUE_FRAMES, PRESENCE_DELAY};
use super::room::{HistoryCursor, Room};
use crate::protocol::{FrameError, FrameWriter};

/// One frame for one member: JSON text without the newline, shared between
/// all recipients so each broadcast is serialized once.
pub type Outbound = Arc<str>;

/// How soon a queued frame must reach the member's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// As soon as the queue is drained: messages, replies, everything else.
    Now,
    /// Within [`PRESENCE_DELAY`], with
    /// whatever else arrives meanwhile: joins and leaves.
    Soon,
}

/// The queue is full: the member is not reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// The sending side, held by the room (and by the connection for its own replies).
#[derive(Clone)]
pub struct Outbox {
    /// The frames, with how soon each must go out.
    tx: mpsc::Sender<(Outbound, Urgency)>,
    /// Bytes in the queue, shared with the [`Inbox`]: the byte bound is checked
    /// against it.
    queued: Arc<AtomicUsize>,
}

/// The receiving side, held by the connection's writer.
pub struct Inbox {
    /// The frames the room and the connection queued.
    rx: mpsc::Receiver<(Outbound, Urgency)>,
    /// Bytes in the queue, lowered as frames are taken out.
    queued: Arc<AtomicUsize>,
}

/// A new empty queue.
pub fn channel() -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE_FRAMES);
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            queued: Arc::clone(&queued),
        },
        Inbox { rx, queued },
    )
}

impl Outbox {
    /// Queues `frame` unless that would exceed the frame or byte bound.
    pub fn push(&self, frame: &Outbound) -> Result<(), Full> {
        self.push_with(frame, Urgency::Now)
    }

    /// [`Outbox::push`], saying how soon the frame must go out.
    pub fn push_with(&self, frame: &Outbound, urgency: Urgency) -> Result<(), Full> {
        let len = frame.len();
        let before = self.queued.fetch_add(len, Ordering::Relaxed);
        if before + len > MAX_QUEUED_BYTES && before > 0 {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            return Err(Full);
        }
        match self.tx.try_send((Arc::clone(frame), urgency)) {
            Ok(()) => Ok(()),
            Err(_) => {
                self.queued.fetch_sub(len, Ordering::Relaxed);
                Err(Full)
            }
        }
    }

    /// Bytes waiting in this queue.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

impl Inbox {
    /// The next frame and how soon it must go out; `None` once every
    /// [`Outbox`] is gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<(Outbound, Urgency)> {
        let (frame, urgency) = self.rx.recv().await?;
        self.queued.fetch_sub(frame.len(), Ordering::Relaxed);
        Some((frame, urgency))
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// Writes what the room queues for a member to its connection until the
/// queue closes or the connection fails. Frames that must go now are
/// flushed as soon as the queue is empty; joins and leaves may wait
/// [`PRESENCE_DELAY`] for company. `replay`: a native joiner's history,
/// written after `init` a part at a time, as the socket takes it.
pub async fn drain<W: tokio::io::AsyncWrite + Unpin>(
    inbox: &mut Inbox,
    writer: &mut FrameWriter<W>,
    mut replay: Option<HistoryCursor>,
    room: &Room,
) -> Result<(), FrameError> {
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
        let Some((frame, urgency)) = next else {
            return Ok(());
        };
        writer.write_text(&frame).await?;
        urgent_unflushed |= urgency == Urgency::Now;
        // The first frame is `init`; a native joiner's history follows it.
        if let Some(mut cursor) = replay.take() {
            write_history(writer, &mut cursor, room).await?;
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
}

/// A joiner's history, each part built from the shared history only when
/// the socket has taken the one before.
async fn write_history<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    cursor: &mut HistoryCursor,
    room: &Room,
) -> Result<(), FrameError> {
    while let Some(part) = room.history_part(cursor) {
        writer.write_text(&part).await?;
        // A replay is bulk work beside live chat: let other members'
        // relaying run between its parts, and this connection's own reader
        // see a `leave`.
        tokio::task::yield_now().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_bytes() {
        let (outbox, _inbox) = channel();
        let big: Outbound = "x".repeat(MAX_QUEUED_BYTES / 2 + 1).into();
        assert_eq!(outbox.push(&big), Ok(()));
        assert_eq!(outbox.push(&big), Err(Full));
        assert_eq!(outbox.queued_bytes(), big.len());
        // A single oversized frame still goes into an empty queue.
        let (outbox, _inbox) = channel();
        let huge: Outbound = "x".repeat(MAX_QUEUED_BYTES + 1).into();
        assert_eq!(outbox.push(&huge), Ok(()));
    }

    #[tokio::test]
    async fn draining_frees_room() {
        let (outbox, mut inbox) = channel();
        let frame: Outbound = "y".repeat(MAX_QUEUED_BYTES).into();
        outbox.push(&frame).unwrap();
        assert_eq!(outbox.push(&frame), Err(Full));
        assert_eq!(inbox.recv().await.unwrap().0.len(), frame.len());
        assert_eq!(outbox.push(&frame), Ok(()));
    }
}
