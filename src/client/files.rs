//! Files on the client: the limits, what `/send` reads, what a received
//! file is, and `/save`, the only thing that writes. The transfers
//! themselves (offers, paced chunks, acknowledgements) are
//! `super::transfers`, which has no I/O.
//!
//! Nothing here touches the disk unless the person asks: a received file
//! stays in memory (wiped when dropped) until `/save <n> [path]`, which
//! refuses to overwrite anything. The name a sender supplies is only a
//! suggestion, cleaned of directories and leading dots before it is used.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::error::plain_io;
use crate::protocol::limits::{FILE_NAME_MAX, MAX_FILE_SIZE_CAP};
use crate::protocol::username::is_format_char;

/// Received files held in memory at once. Beyond it the oldest is
/// forgotten (and the person told), as a chat history drops its oldest line.
pub const RECEIVED_FILES_MAX: usize = 10;

/// Bytes of received files held in memory at once; beyond it the oldest are
/// forgotten.
pub const RECEIVED_BYTES_MAX: u64 = MAX_FILE_SIZE_CAP;

/// Files being received at once. Each reserves its whole size up front (so
/// growing never leaves copies of the contents in freed memory); more offers
/// are declined meanwhile.
pub const INCOMING_MAX: usize = 4;

/// A file being sent that sees no acknowledgement for this long is given up:
/// the room is not taking it (a receiver stuck, the server gone quiet).
pub const FILE_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Progress is reported at every tenth of a file, not at every chunk.
pub const PROGRESS_STEPS: u64 = 10;

/// Why a file could not be sent, received or saved. None of these ends the
/// session.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {}", plain_io(source))]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error(
        "{path} is {size} bytes, over this room's limit of {limit} bytes ({}); nothing was sent",
        mib(*limit)
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("already sending {name}; /send again when it is done")]
    Busy { name: String },
    #[error("there is no received file #{0}; /files lists them")]
    NoSuchFile(usize),
    #[error("{0} already exists and was left alone; give another path: /save <n> <path>")]
    Exists(PathBuf),
    #[error("cannot write {path}: {}", plain_io(source))]
    Write { path: PathBuf, source: io::Error },
}

/// `1.5 MiB`, `12 KiB`, `300 B`: sizes as a person reads them.
pub fn mib(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else if b >= KIB {
        format!("{:.0} KiB", b / KIB)
    } else {
        format!("{bytes} B")
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The step (0 to [`PROGRESS_STEPS`]) that `done` of `size` bytes is at; an
/// empty file is done at once.
pub fn progress_step(done: u64, size: u64) -> u64 {
    (done.min(size) * PROGRESS_STEPS)
        .checked_div(size)
        .unwrap_or(PROGRESS_STEPS)
}

/// How far `done` of `size` bytes is, in percent.
pub fn percent(done: u64, size: u64) -> u64 {
    (done.min(size) * 100).checked_div(size).unwrap_or(100)
}

/// A sender-supplied file name made safe to use as a file name here: the
/// last path component only (no `/` or `\`), no leading dots (so nothing
/// hidden and never `..`), no control or invisible formatting characters,
/// at most [`FILE_NAME_MAX`] bytes. `file-<n>` if nothing is left.
pub fn safe_file_name(name: &str, n: usize) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_control() || is_format_char(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    // Dots and spaces together: `" .bashrc"` must not become `.bashrc`.
    let mut cleaned = cleaned
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end()
        .to_owned();
    while cleaned.len() > FILE_NAME_MAX {
        cleaned.pop();
    }
    if cleaned.is_empty() {
        format!("file-{n}")
    } else {
        cleaned
    }
}

/// Where `/save <n> [path]` writes: `path` itself, or the cleaned name
/// inside `path` if it is a directory, or the cleaned name in the current
/// directory if no path was given.
pub fn save_target(path: Option<&Path>, name: &str, n: usize) -> io::Result<PathBuf> {
    let safe = safe_file_name(name, n);
    match path {
        Some(p) if p.is_dir() => Ok(p.join(safe)),
        Some(p) => Ok(p.to_owned()),
        None => Ok(std::env::current_dir()?.join(safe)),
    }
}

/// Writes `contents` to `path`, which must not exist yet.
pub async fn write_new(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    use tokio::io::AsyncWriteExt as _;
    let mut file = match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(FileError::Exists(path.to_owned()));
        }
        Err(source) => {
            return Err(FileError::Write {
                path: path.to_owned(),
                source,
            });
        }
    };
    let written = async {
        file.write_all(contents).await?;
        file.flush().await?;
        file.sync_all().await
    }
    .await;
    written.map_err(|source| FileError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Reads a file to send: at most `limit` bytes, into a buffer sized once (so
/// no copy of the contents is left behind in freed memory) and wiped when
/// dropped.
pub async fn read_for_sending(path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>, FileError> {
    use tokio::io::AsyncReadExt as _;
    let read_err = |source| FileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(read_err)?;
    let metadata = file.metadata().await.map_err(read_err)?;
    if !metadata.is_file() {
        return Err(FileError::NotAFile {
            path: path.to_owned(),
        });
    }
    let too_large = |size| FileError::TooLarge {
        path: path.to_owned(),
        size,
        limit,
    };
    if metadata.len() > limit {
        return Err(too_large(metadata.len()));
    }
    let mut contents = Zeroizing::new(Vec::with_capacity(metadata.len() as usize + 1));
    file.take(limit + 1)
        .read_to_end(&mut contents)
        .await
        .map_err(read_err)?;
    if contents.len() as u64 > limit {
        return Err(too_large(contents.len() as u64));
    }
    Ok(contents)
}

/// A file received whole and verified, held in memory until saved or
/// forgotten. The contents are wiped when it is dropped.
pub struct ReceivedFile {
    /// Its number for `/save`, counted from 1 in this session.
    pub n: usize,
    /// Who sent it.
    pub from: String,
    /// As the sender named it (not yet cleaned: [`safe_file_name`] does that).
    pub name: String,
    /// The verified contents, wiped when the file is dropped.
    pub(crate) contents: Zeroizing<Vec<u8>>,
    /// Where it was saved, if it was.
    pub saved: Option<PathBuf>,
}

impl ReceivedFile {
    pub fn size(&self) -> u64 {
        self.contents.len() as u64
    }

    pub fn contents(&self) -> &[u8] {
        &self.contents
    }
}

impl std::fmt::Debug for ReceivedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedFile")
            .field("n", &self.n)
            .field("from", &self.from)
            .field("name", &self.name)
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_names_cannot_escape_the_directory() {
        assert_eq!(safe_file_name("report.pdf", 1), "report.pdf");
        assert_eq!(safe_file_name("../../etc/passwd", 1), "passwd");
        assert_eq!(safe_file_name("..\\..\\boot.ini", 1), "boot.ini");
        assert_eq!(safe_file_name("/abs/path/x.txt", 1), "x.txt");
        assert_eq!(safe_file_name(".bashrc", 1), "bashrc");
        assert_eq!(safe_file_name(" .bashrc", 1), "bashrc");
        assert_eq!(safe_file_name(". .\u{3000}.profile ", 1), "profile");
        assert_eq!(safe_file_name("\u{200B}.envrc", 1), "_.envrc");
        assert_eq!(safe_file_name("...", 2), "file-2");
        assert_eq!(safe_file_name("", 3), "file-3");
        assert_eq!(safe_file_name("dir/", 4), "file-4");
        assert_eq!(safe_file_name("a\x1b[2Jb\u{202E}c", 1), "a_[2Jb_c");
        assert_eq!(safe_file_name(&"é".repeat(300), 1).len(), FILE_NAME_MAX - 1);
    }

    #[tokio::test]
    async fn errors_read_as_words_not_os_codes() {
        let missing = Path::new("/nonexistent-cmd-chat-dir/notes.txt");
        let e = read_for_sending(missing, 1024).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read /nonexistent-cmd-chat-dir/notes.txt: No such file or directory"
        );
        let e = write_new(missing, b"x").await.unwrap_err();
        assert!(!e.to_string().contains("os error"), "{e}");
    }

    #[test]
    fn progress_moves_in_tenths() {
        assert_eq!(progress_step(0, 100), 0);
        assert_eq!(progress_step(9, 100), 0);
        assert_eq!(progress_step(10, 100), 1);
        assert_eq!(progress_step(100, 100), 10);
        assert_eq!(progress_step(0, 0), 10);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(mib(300), "300 B");
        assert_eq!(mib(12 * 1024), "12 KiB");
        assert_eq!(mib(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(mib(2_621_440), "2.5 MiB");
    }
}
