//! Log output that never blocks the program writing it.
//!
//! Writing to a pipe or terminal blocks once nobody reads it: a terminal
//! paused with Ctrl-S, a log collector that stalled. A log line written from
//! a relay thread would then stop that thread, and with it the room. So the
//! threads that log only put each line in a bounded queue, without waiting;
//! a thread of its own writes the queue out. A line that finds the queue
//! full is dropped and counted, and once output flows again the writer says,
//! in the log, how many lines were lost and where.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Log lines waiting for the writer thread. Room for any burst a running
/// server logs (a line per login or departure) while the output is merely
/// slow; beyond it lines are dropped, so a stalled output costs at most this
/// many lines of memory.
pub const QUEUE_LINES: usize = 1024;

/// Longest the program waits, as it exits, for queued lines to be written:
/// enough for a live terminal or pipe to take them, and a bound on how long a
/// stalled one can hold up the exit.
pub const FLUSH_PATIENCE: Duration = Duration::from_secs(1);

/// A log line in the queue.
struct Entry {
    /// Lines dropped just before this one, reported in its place.
    lost_before: u64,
    /// The formatted line, newline included.
    line: Vec<u8>,
}

/// What the loggers and the writer thread share.
struct Shared {
    /// Lines dropped since a report: the queue was full.
    lost: AtomicU64,
    /// Lines queued and not yet written, for [`LogOutput::flush`].
    unwritten: AtomicUsize,
    /// Signalled when the writer has written everything queued.
    drained: (Mutex<()>, Condvar),
}

/// The loggers' end: cheap to clone, and [`io::Write`] that never blocks.
#[derive(Clone)]
pub struct LogOutput {
    /// Into the queue.
    queue: SyncSender<Entry>,
    /// Shared with the writer thread.
    shared: Arc<Shared>,
}

impl LogOutput {
    /// Starts a thread that writes queued lines to `out`.
    pub fn spawn<W: Write + Send + 'static>(out: W) -> io::Result<Self> {
        let (queue, entries) = mpsc::sync_channel(QUEUE_LINES);
        let shared = Arc::new(Shared {
            lost: AtomicU64::new(0),
            unwritten: AtomicUsize::new(0),
            drained: (Mutex::new(()), Condvar::new()),
        });
        let writer_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("cmd-chat-log".into())
            .spawn(move || write_out(entries, out, &writer_shared))?;
        Ok(Self { queue, shared })
    }

    /// Queues `line` if there is room, else counts it as lost.
    fn send(&self, line: &[u8]) {
        let lost_before = self.shared.lost.swap(0, Ordering::AcqRel);
        self.shared.unwritten.fetch_add(1, Ordering::AcqRel);
        let entry = Entry {
            lost_before,
            line: line.to_vec(),
        };
        if let Err(TrySendError::Full(entry) | TrySendError::Disconnected(entry)) =
            self.queue.try_send(entry)
        {
            // Counted lost before it is no longer counted as unwritten: a
            // writer that finds nothing unwritten also finds it lost.
            self.shared
                .lost
                .fetch_add(entry.lost_before + 1, Ordering::AcqRel);
            self.shared.unwritten.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Waits until every queued line is written, or `patience` is up (the
    /// output is stalled); `true` if everything was written.
    pub fn flush(&self, patience: Duration) -> bool {
        let (lock, drained) = &self.shared.drained;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (_guard, waited) = drained
            .wait_timeout_while(guard, patience, |_| {
                self.shared.unwritten.load(Ordering::Acquire) > 0
            })
            .unwrap_or_else(|e| e.into_inner());
        !waited.timed_out()
    }
}

impl Write for LogOutput {
    /// Takes the whole of `buf` as one line (the formatter writes each event
    /// at once), and never waits.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogOutput {
    type Writer = LogOutput;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The line that reports `lost` dropped lines, in the formatter's layout.
fn loss_report(lost: u64) -> String {
    format!(
        "{}  WARN {lost} log lines lost: the output was not being read lost={lost}\n",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ")
    )
}

/// The writer thread: writes lines as they come, and reports lost ones at
/// the place they were lost, or once everything queued is written.
fn write_out<W: Write>(entries: Receiver<Entry>, mut out: W, shared: &Shared) {
    loop {
        let entry = match entries.try_recv() {
            Ok(entry) => entry,
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => {
                // Written up to date: report lines lost since the last one
                // that made it, if no line came after them to carry the count.
                let lost = shared.lost.swap(0, Ordering::AcqRel);
                if lost > 0 {
                    let _ = out.write_all(loss_report(lost).as_bytes());
                }
                let _ = out.flush();
                {
                    let _lock = shared.drained.0.lock().unwrap_or_else(|e| e.into_inner());
                    shared.drained.1.notify_all();
                }
                match entries.recv() {
                    Ok(entry) => entry,
                    Err(_) => return,
                }
            }
        };
        if entry.lost_before > 0 {
            let _ = out.write_all(loss_report(entry.lost_before).as_bytes());
        }
        // An output that fails is like one nobody reads: nothing to do but go on.
        let _ = out.write_all(&entry.line);
        shared.unwritten.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Sender;

    /// An output that blocks every write until the test lets it go on, and
    /// says when a write has started.
    struct Stalled {
        started: Sender<()>,
        go_on: Receiver<()>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.started.send(());
            let _ = self.go_on.recv();
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn line(n: usize) -> Vec<u8> {
        format!("line {n}\n").into_bytes()
    }

    #[test]
    fn a_stalled_output_drops_and_counts_and_then_says_so() {
        let (started_tx, started) = mpsc::channel();
        let (go_on, go_on_rx) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let mut log = LogOutput::spawn(Stalled {
            started: started_tx,
            go_on: go_on_rx,
            written: Arc::clone(&written),
        })
        .unwrap();
        // The first line is taken by the writer, which is now stuck on it.
        log.write_all(&line(0)).unwrap();
        started.recv().unwrap();
        // These return at once though nothing is written: the queue takes
        // what it holds, the rest is counted.
        const MORE: usize = QUEUE_LINES + 100;
        for n in 1..=MORE {
            log.write_all(&line(n)).unwrap();
        }
        assert!(!log.flush(Duration::from_millis(10)), "still stalled");
        // The output flows again.
        drop(go_on);
        assert!(log.flush(Duration::from_secs(30)));
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + QUEUE_LINES + 1, "{text}");
        assert_eq!(lines[QUEUE_LINES], format!("line {QUEUE_LINES}"));
        let report = lines[QUEUE_LINES + 1];
        assert!(report.ends_with("lost=100"), "{report}");
        // The next line carries on as usual; nothing more is reported.
        log.write_all(&line(9999)).unwrap();
        assert!(log.flush(Duration::from_secs(30)));
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with("lost=100\nline 9999\n"), "{text}");
    }
}
