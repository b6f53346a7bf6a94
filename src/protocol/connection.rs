//! Reading and writing frames: newline-delimited JSON, optionally sealed.
//!
//! A connection is split into a [`FrameReader`] and a [`FrameWriter`] so a
//! peer can read and write at once. Both start in clear; after SRP, native
//! peers install one [`DirectionKey`] on each side and from then on every line
//! on the wire is a [`Sealed`] frame. Callers only ever see JSON text.

use std::io;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use super::wire::Sealed;
use crate::crypto::transport::{DirectionKey, SealError};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("a line was longer than {limit} bytes")]
    TooLong { limit: usize },
    #[error("a line was not valid UTF-8")]
    NotUtf8,
    #[error("a line was not the expected JSON: {0}")]
    Malformed(String),
    #[error("a clear-text line arrived where a sealed frame was required")]
    NotSealed,
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
}

/// Initial read buffer: chat lines are a few hundred bytes, and an idle
/// member should not hold the codec's default 8 KiB; it grows on demand.
const READ_CAPACITY: usize = 1024;

/// The receiving half of a connection.
pub struct FrameReader<R> {
    lines: FramedRead<R, LinesCodec>,
    /// Present once the session is sealed.
    opener: Option<DirectionKey>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads lines of at most `max_line` bytes.
    pub fn new(inner: R, max_line: usize) -> Self {
        Self {
            lines: FramedRead::with_capacity(
                inner,
                LinesCodec::new_with_max_length(max_line),
                READ_CAPACITY,
            ),
            opener: None,
        }
    }

    /// Changes the line limit, e.g. from the small pre-authentication limit to
    /// the member limit. Bytes already buffered are kept.
    pub fn set_max_line(&mut self, max_line: usize) {
        *self.lines.decoder_mut() = LinesCodec::new_with_max_length(max_line);
    }

    /// From now on every line must be sealed with `key`'s direction.
    pub fn seal(&mut self, key: DirectionKey) {
        self.opener = Some(key);
    }

    pub fn is_sealed(&self) -> bool {
        self.opener.is_some()
    }

    /// The underlying reader, for a peer that only wants raw bytes from now
    /// on (load generators, tests). Bytes already buffered are dropped.
    pub fn into_inner(self) -> R {
        self.lines.into_inner()
    }

    /// The next frame's JSON text, opened if the session is sealed.
    /// `Ok(None)` is a clean end of stream.
    ///
    /// Cancel-safe: the only await is on the line stream.
    pub async fn read_text(&mut self) -> Result<Option<String>, FrameError> {
        let line = match self.lines.next().await {
            None => return Ok(None),
            Some(Ok(line)) => line,
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                return Err(FrameError::TooLong {
                    limit: self.lines.decoder().max_length(),
                });
            }
            Some(Err(LinesCodecError::Io(e))) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(FrameError::NotUtf8);
            }
            Some(Err(LinesCodecError::Io(e))) => return Err(FrameError::Io(e)),
        };
        let line = line.strip_suffix('\r').map(str::to_owned).unwrap_or(line);
        let Some(opener) = self.opener.as_mut() else {
            return Ok(Some(line));
        };
        // Our own peers write exactly `{"sealed":"..."}`; anything else goes
        // through the JSON parser.
        let mut bytes = match sealed_payload(&line) {
            Some(b64) => STANDARD.decode(b64),
            None => {
                let sealed: Sealed =
                    serde_json::from_str(&line).map_err(|_| FrameError::NotSealed)?;
                STANDARD.decode(sealed.sealed.as_bytes())
            }
        }
        .map_err(|_| SealError::Forged)?;
        opener.open_in_place(&mut bytes)?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| FrameError::NotUtf8)
    }

    /// The next frame parsed as `T`. `Ok(None)` is a clean end of stream.
    pub async fn read<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        match self.read_text().await? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| FrameError::Malformed(e.to_string())),
        }
    }
}

const SEALED_HEAD: &str = "{\"sealed\":\"";
const SEALED_TAIL: &str = "\"}";

/// The base64 inside a sealed line written the way [`FrameWriter`] writes it.
fn sealed_payload(line: &str) -> Option<&str> {
    line.strip_prefix(SEALED_HEAD)?.strip_suffix(SEALED_TAIL)
}

/// Bytes of complete frames buffered before [`FrameWriter::write_text`] sends them.
const WRITE_BUFFER: usize = 64 * 1024;

/// Capacity a writer keeps between bursts. A member's `init` frame (the whole
/// history and member list) can be megabytes; keeping that capacity for the
/// life of every idle connection cost ~300 KiB per member (BENCHMARKS.md).
const KEEP_CAPACITY: usize = 4 * 1024;

/// The sending half of a connection.
///
/// Frames are encoded whole into an internal buffer before any byte is sent,
/// and the buffer keeps what the socket has not taken yet. So a write that is
/// cancelled (a `select!` that moved on, a deadline) never leaves half a frame
/// on the wire: the rest goes out with the next flush.
pub struct FrameWriter<W: AsyncWrite> {
    out: W,
    /// Encoded lines not yet sent; `buf[sent..]` is still owed to the socket.
    buf: Vec<u8>,
    sent: usize,
    /// Present once the session is sealed.
    sealer: Option<DirectionKey>,
    /// Where each frame is sealed before it is encoded into `buf`; it only
    /// ever holds ciphertext once a call returns.
    scratch: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            out: inner,
            buf: Vec::new(),
            sent: 0,
            sealer: None,
            scratch: Vec::new(),
        }
    }

    /// From now on every line is sealed with `key`.
    pub fn seal(&mut self, key: DirectionKey) {
        self.sealer = Some(key);
    }

    /// Encodes one frame whose JSON text is `json` (no newline) into the buffer.
    pub fn queue_text(&mut self, json: &str) -> Result<(), FrameError> {
        debug_assert!(!json.contains('\n'));
        match self.sealer.as_mut() {
            None => self.buf.extend_from_slice(json.as_bytes()),
            Some(sealer) => {
                // Sealed in place in a reused buffer and encoded straight into
                // the output: no allocation per frame once warm.
                self.scratch.clear();
                self.scratch.extend_from_slice(json.as_bytes());
                sealer.seal_in_place(&mut self.scratch)?;
                self.buf.extend_from_slice(SEALED_HEAD.as_bytes());
                let start = self.buf.len();
                let len =
                    base64::encoded_len(self.scratch.len(), true).expect("frame fits in memory");
                self.buf.resize(start + len, 0);
                STANDARD
                    .encode_slice(&self.scratch, &mut self.buf[start..])
                    .expect("sized exactly");
                self.buf.extend_from_slice(SEALED_TAIL.as_bytes());
            }
        }
        self.buf.push(b'\n');
        Ok(())
    }

    /// Encodes one frame serialized from `value` into the buffer.
    pub fn queue<T: Serialize>(&mut self, value: &T) -> Result<(), FrameError> {
        let json =
            serde_json::to_string(value).map_err(|e| FrameError::Malformed(e.to_string()))?;
        self.queue_text(&json)
    }

    /// Queues a frame, and sends the buffer once it is large.
    pub async fn write_text(&mut self, json: &str) -> Result<(), FrameError> {
        self.queue_text(json)?;
        if self.buf.len() - self.sent >= WRITE_BUFFER {
            self.flush().await?;
        }
        Ok(())
    }

    /// Queues a frame serialized from `value`, and sends the buffer once it is large.
    pub async fn write<T: Serialize>(&mut self, value: &T) -> Result<(), FrameError> {
        self.queue(value)?;
        if self.buf.len() - self.sent >= WRITE_BUFFER {
            self.flush().await?;
        }
        Ok(())
    }

    /// Whether queued bytes are still owed to the socket, e.g. after a flush
    /// that was cancelled.
    pub fn has_unsent(&self) -> bool {
        self.sent < self.buf.len()
    }

    /// Sends everything queued. Cancel-safe.
    pub async fn flush(&mut self) -> Result<(), FrameError> {
        while self.sent < self.buf.len() {
            let n = self.out.write(&self.buf[self.sent..]).await?;
            if n == 0 {
                return Err(FrameError::Io(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        if self.scratch.capacity() > KEEP_CAPACITY {
            self.scratch = Vec::new();
        }
        self.out.flush().await?;
        Ok(())
    }

    /// The underlying writer; frames queued but not flushed are dropped.
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Sends everything queued and half-closes the connection.
    pub async fn shutdown(&mut self) -> Result<(), FrameError> {
        self.flush().await?;
        self.out.shutdown().await?;
        Ok(())
    }
}
