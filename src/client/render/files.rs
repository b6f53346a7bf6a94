//! What file transfers look like: a line for each step of one, progress
//! bars, and the list of files received.

use super::Renderer;
use crate::client::files::{PROGRESS_STEPS, ReceivedFile, mib, percent};
use crate::client::sanitize::sanitize;

/// `[#####-----]  50%`: how far a transfer is, in [`PROGRESS_STEPS`] cells.
pub fn progress_bar(done: u64, size: u64) -> String {
    let percent = percent(done, size);
    let filled = (percent * PROGRESS_STEPS / 100) as usize;
    format!(
        "[{}{}] {percent:>3}%",
        "#".repeat(filled),
        "-".repeat(PROGRESS_STEPS as usize - filled)
    )
}

/// `2.5/5.0 MiB`: done of size, in the unit of the size.
fn sizes(done: u64, size: u64) -> String {
    let total = mib(size);
    match total.split_once(' ') {
        Some((_, "MiB")) => format!("{:.1}/{total}", done as f64 / (1024.0 * 1024.0)),
        Some((_, "KiB")) => format!("{:.0}/{total}", done as f64 / 1024.0),
        _ => format!("{done}/{total}"),
    }
}

impl Renderer {
    /// We started sending a file.
    pub(super) fn file_sending(&self, name: &str, size: u64, now: &str) -> String {
        self.system_at(
            now,
            &format!("sending {} ({}) to the room", sanitize(name), mib(size)),
        )
    }

    /// Someone started sending a file.
    pub(super) fn file_incoming(&self, from: &str, name: &str, size: u64, now: &str) -> String {
        self.system_at(
            now,
            &format!(
                "{} is sending {} ({})",
                self.name(from),
                sanitize(name),
                mib(size)
            ),
        )
    }

    /// How far a transfer is: ours (`sending`) or one `from` someone;
    /// `(done, size)` in bytes.
    pub(super) fn file_progress(
        &self,
        sending: bool,
        from: &str,
        name: &str,
        (done, size): (u64, u64),
        now: &str,
    ) -> String {
        let whose = if sending {
            "to the room".to_owned()
        } else {
            format!("from {}", self.name(from))
        };
        self.system_at(
            now,
            &format!(
                "{} {} ({}) {whose}",
                progress_bar(done, size),
                sanitize(name),
                sizes(done, size)
            ),
        )
    }

    /// We finished sending a file.
    pub(super) fn file_sent(&self, name: &str, size: u64, now: &str) -> String {
        self.system_at(
            now,
            &format!(
                "{} {} ({}) sent",
                progress_bar(size, size),
                sanitize(name),
                mib(size)
            ),
        )
    }

    /// A file arrived whole, as number `n`, and how to save it.
    pub(super) fn file_received(
        &self,
        n: usize,
        from: &str,
        name: &str,
        size: u64,
        now: &str,
    ) -> String {
        self.system_at(
            now,
            &format!(
                "{} received #{n} {} ({}) from {}: it is in memory only; /save {n} [path] writes it",
                progress_bar(size, size),
                sanitize(name),
                mib(size),
                self.name(from)
            ),
        )
    }

    /// A transfer failed: ours (`sending`) or one `from` someone.
    pub(super) fn file_failed(
        &self,
        sending: bool,
        from: &str,
        name: &str,
        reason: &str,
        now: &str,
    ) -> String {
        let what = if sending {
            format!("sending {} failed", sanitize(name))
        } else {
            format!("{} from {} failed", sanitize(name), sanitize(from))
        };
        self.error_at(now, &format!("{what}: {}", sanitize(reason)))
    }

    /// The answer to `/files`: the received files, numbered for `/save`.
    pub fn files<'a>(&self, files: impl Iterator<Item = &'a ReceivedFile>) -> Vec<String> {
        let mut lines: Vec<String> = files
            .map(|f| {
                let saved = match &f.saved {
                    Some(path) => format!(", saved to {}", sanitize(&path.display().to_string())),
                    None => String::new(),
                };
                self.system_text(&format!(
                    "#{} {} ({}) from {}{saved}",
                    f.n,
                    sanitize(&f.name),
                    mib(f.size()),
                    self.name(&f.from)
                ))
            })
            .collect();
        if lines.is_empty() {
            lines.push(
                self.info("no files received yet; they stay in memory until /save <n> [path]"),
            );
        }
        lines
    }
}
