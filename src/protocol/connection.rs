//! Reading and writing frames: newline-delimited JSON, optionally sealed.
//!
//! A connection is split into a [`FrameReader`] and a [`FrameWriter`] so a
//! peer can read and write at once. Both start in clear; after SRP, native
//! peers install one [`DirectionKey`] on each side and from then on every line
//! on the wire is a [`Sealed`] record. Callers only ever see JSON text.
//!
//! A sealed record holds one or more frames, newline-separated: a writer
//! seals whatever it has queued when it flushes, up to [`SEAL_BATCH`] bytes,
//! as one record. Sealing has a fixed cost per record (the Poly1305 tag, the
//! nonce, the cipher's set-up) that dominated a relay's CPU when every small
//! frame paid it (BENCHMARKS.md); a busy member's burst now pays it once.

use std::io;
use std::ops::Range;

// Records are base64 on the wire: base64-simd encodes and decodes them about
// four times as fast as the `base64` crate (0.1 against 0.4 ns per byte here),
// which was 7% of a relaying server's CPU. Same alphabet, padded.
use base64_simd::STANDARD as RECORD_BASE64;
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use super::limits::{MAX_RECORD_FRAMES, SEAL_BATCH};
use super::wire::{Sealed, ServerFrame};
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
    #[error("a sealed record held an empty frame")]
    EmptyFrame,
    #[error("a sealed record held more than {MAX_RECORD_FRAMES} frames")]
    TooManyFrames,
    #[error("an earlier read failed; the connection can't be trusted")]
    Broken,
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
    /// The frames of the last opened record; `record[next..]` are still to be
    /// returned, none once `next` is past the end.
    record: String,
    next: usize,
    /// Frames taken from `record` so far.
    taken: usize,
    /// Set once reading failed other than on a frame's JSON: a record was
    /// forged, dropped or cut, and nothing after it may be believed.
    broken: bool,
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
            record: String::new(),
            next: 1,
            taken: 0,
            broken: false,
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
        let Some(frame) = self.next_frame().await? else {
            return Ok(None);
        };
        Ok(Some(self.take(frame, str::to_owned)))
    }

    /// The next frame parsed as `T`. `Ok(None)` is a clean end of stream.
    pub async fn read<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        self.read_parsed(|text| serde_json::from_str(text)).await
    }

    /// The next frame from a server, parsed by [`ServerFrame::from_json`]:
    /// what a member's client reads all the time.
    pub async fn read_server_frame(&mut self) -> Result<Option<ServerFrame>, FrameError> {
        self.read_parsed(ServerFrame::from_json).await
    }

    /// The next frame parsed by `parse`; its JSON errors are `Malformed`.
    async fn read_parsed<T>(
        &mut self,
        parse: impl FnOnce(&str) -> serde_json::Result<T>,
    ) -> Result<Option<T>, FrameError> {
        let Some(frame) = self.next_frame().await? else {
            return Ok(None);
        };
        self.take(frame, parse)
            .map(Some)
            .map_err(|e| FrameError::Malformed(e.to_string()))
    }

    /// Reads the frame at `frame` with `parse`, then lets the record go if
    /// that was its last frame: each record arrives in a buffer of its own,
    /// and a member that goes quiet holds none here (a legacy member's last
    /// line could be 64 KiB).
    fn take<T>(&mut self, frame: Range<usize>, parse: impl FnOnce(&str) -> T) -> T {
        let value = parse(&self.record[frame]);
        if !self.has_buffered_frame() {
            self.release_record();
        }
        value
    }

    /// Drops the buffer of a record whose frames are all taken.
    fn release_record(&mut self) {
        if self.record.capacity() > 0 {
            self.record = String::new();
            self.next = 1;
        }
    }

    /// Whether the next read is answered from the record opened last,
    /// without waiting for the socket (with a frame, or with the record's
    /// error).
    pub fn has_buffered_frame(&self) -> bool {
        self.next <= self.record.len()
    }

    /// Where the next frame's text lies in `record`, reading and opening the
    /// next line when the last record is used up. Frames are parsed where they
    /// lie: a busy member's frames cost no copy each.
    ///
    /// Cancel-safe: the only await is on the line stream.
    async fn next_frame(&mut self) -> Result<Option<Range<usize>>, FrameError> {
        if self.broken {
            return Err(FrameError::Broken);
        }
        // Any failure is final: a caller that reads on must not get the
        // record after a forged one, opened with the nonce after it.
        let next = self.next_frame_unlatched().await;
        self.broken = next.is_err();
        next
    }

    async fn next_frame_unlatched(&mut self) -> Result<Option<Range<usize>>, FrameError> {
        if let Some(frame) = self.next_in_record()? {
            return Ok(Some(frame));
        }
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
        let Some(opener) = self.opener.as_mut() else {
            // A clear line is a record of one frame, taken whole.
            let frame = 0..line.strip_suffix('\r').unwrap_or(&line).len();
            self.record = line;
            self.next = self.record.len() + 1;
            return Ok(Some(frame));
        };
        let line = line.strip_suffix('\r').unwrap_or(&line);
        // Our own peers write exactly `{"sealed":"..."}`; anything else goes
        // through the JSON parser.
        let mut bytes = match sealed_payload(line) {
            Some(b64) => RECORD_BASE64.decode_to_vec(b64),
            None => {
                let sealed: Sealed =
                    serde_json::from_str(line).map_err(|_| FrameError::NotSealed)?;
                RECORD_BASE64.decode_to_vec(sealed.sealed.as_bytes())
            }
        }
        .map_err(|_| SealError::Forged)?;
        opener.open_in_place(&mut bytes)?;
        self.record = String::from_utf8(bytes).map_err(|_| FrameError::NotUtf8)?;
        self.next = 0;
        self.taken = 0;
        match self.next_in_record()? {
            Some(frame) => Ok(Some(frame)),
            None => Err(FrameError::EmptyFrame),
        }
    }

    /// Where the next frame of the record opened last lies, if any is left.
    fn next_in_record(&mut self) -> Result<Option<Range<usize>>, FrameError> {
        if !self.has_buffered_frame() {
            return Ok(None);
        }
        let rest = &self.record[self.next..];
        let end = rest.find('\n').unwrap_or(rest.len());
        if end == 0 {
            return Err(FrameError::EmptyFrame);
        }
        self.taken += 1;
        if self.taken > MAX_RECORD_FRAMES {
            return Err(FrameError::TooManyFrames);
        }
        let frame = self.next..self.next + end;
        self.next += end + 1;
        Ok(Some(frame))
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
    /// Frames queued for the next sealed record, newline-separated; sealed in
    /// place and encoded into `buf` when the record is full or on a flush.
    record: Vec<u8>,
    /// Frames in `record`.
    record_frames: usize,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            out: inner,
            buf: Vec::new(),
            sent: 0,
            sealer: None,
            record: Vec::new(),
            record_frames: 0,
        }
    }

    /// From now on every line is sealed with `key`.
    pub fn seal(&mut self, key: DirectionKey) {
        self.sealer = Some(key);
    }

    /// Queues one frame whose JSON text is `json` (no newline, not empty).
    pub fn queue_text(&mut self, json: &str) -> Result<(), FrameError> {
        debug_assert!(!json.is_empty() && !json.contains('\n'));
        if self.sealer.is_none() {
            self.buf.extend_from_slice(json.as_bytes());
            self.buf.push(b'\n');
            return Ok(());
        }
        if !self.record.is_empty()
            && (self.record.len() + 1 + json.len() > SEAL_BATCH
                || self.record_frames == MAX_RECORD_FRAMES)
        {
            self.seal_record()?;
        }
        if !self.record.is_empty() {
            self.record.push(b'\n');
        }
        self.record.extend_from_slice(json.as_bytes());
        self.record_frames += 1;
        Ok(())
    }

    /// Seals the queued frames as one record and encodes it into `buf`: in
    /// place in a reused buffer and straight into the output, so no
    /// allocation per record once warm.
    fn seal_record(&mut self) -> Result<(), FrameError> {
        let Some(sealer) = self.sealer.as_mut() else {
            return Ok(());
        };
        if self.record.is_empty() {
            return Ok(());
        }
        sealer.seal_in_place(&mut self.record)?;
        self.buf.extend_from_slice(SEALED_HEAD.as_bytes());
        RECORD_BASE64.encode_append(&self.record, &mut self.buf);
        self.buf.extend_from_slice(SEALED_TAIL.as_bytes());
        self.buf.push(b'\n');
        self.record.clear();
        self.record_frames = 0;
        Ok(())
    }

    /// Bytes queued and not yet sent.
    fn queued(&self) -> usize {
        self.buf.len() - self.sent + self.record.len()
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
        if self.queued() >= WRITE_BUFFER {
            self.flush().await?;
        }
        Ok(())
    }

    /// Queues a frame serialized from `value`, and sends the buffer once it is large.
    pub async fn write<T: Serialize>(&mut self, value: &T) -> Result<(), FrameError> {
        self.queue(value)?;
        if self.queued() >= WRITE_BUFFER {
            self.flush().await?;
        }
        Ok(())
    }

    /// Whether queued bytes are still owed to the socket, e.g. after a flush
    /// that was cancelled.
    pub fn has_unsent(&self) -> bool {
        self.queued() > 0
    }

    /// Sends everything queued. Cancel-safe: the frames are sealed before the
    /// first await, and the buffer keeps what the socket has not taken.
    pub async fn flush(&mut self) -> Result<(), FrameError> {
        self.flush_unless_stalled(None).await
    }

    /// [`Self::flush`], failing with [`io::ErrorKind::TimedOut`] once the
    /// peer has taken nothing for `stall`: a slow peer still gets everything,
    /// one that stopped reading is given up on.
    pub async fn flush_unless_stalled(
        &mut self,
        stall: Option<std::time::Duration>,
    ) -> Result<(), FrameError> {
        self.seal_record()?;
        while self.sent < self.buf.len() {
            let write = self.out.write(&self.buf[self.sent..]);
            let n = match stall {
                None => write.await?,
                Some(stall) => tokio::time::timeout(stall, write).await.map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the peer stopped taking what we send",
                    )
                })??,
            };
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
        if self.record.capacity() > KEEP_CAPACITY {
            self.record = Vec::new();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::secret::Key32;
    use crate::crypto::transport::{Side, derive_keys};
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    fn sealed_pair() -> (FrameWriter<Vec<u8>>, DirectionKey) {
        let key = Key32::new([3; 32]);
        let (sealer, _) = derive_keys(&key, Side::Client);
        let (_, opener) = derive_keys(&key, Side::Server);
        let mut writer = FrameWriter::new(Vec::new());
        writer.seal(sealer);
        (writer, opener)
    }

    /// Sealed records on the wire: one line each.
    fn records(wire: &[u8]) -> usize {
        wire.iter().filter(|&&b| b == b'\n').count()
    }

    fn reader(bytes: Vec<u8>, opener: DirectionKey) -> FrameReader<std::io::Cursor<Vec<u8>>> {
        let mut reader = FrameReader::new(std::io::Cursor::new(bytes), 1 << 20);
        reader.seal(opener);
        reader
    }

    /// Seals `plaintext` as one record by hand and reads its frames: the
    /// first error, or `Ok(None)` at the end.
    async fn first_error(plaintext: &[u8]) -> Result<Option<String>, FrameError> {
        let (_, opener) = sealed_pair();
        let (mut sealer, _) = derive_keys(&Key32::new([3; 32]), Side::Client);
        let sealed = sealer.seal(plaintext).unwrap();
        let line = format!("{SEALED_HEAD}{}{SEALED_TAIL}\n", STANDARD.encode(sealed));
        let mut reader = reader(line.into_bytes(), opener);
        loop {
            match reader.read_text().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    }

    #[tokio::test]
    async fn a_burst_is_one_record_and_reads_back_frame_by_frame() {
        let (mut writer, opener) = sealed_pair();
        for i in 0..100 {
            writer.write_text(&format!("{{\"n\":{i}}}")).await.unwrap();
        }
        writer.flush().await.unwrap();
        let wire = writer.into_inner();
        assert_eq!(records(&wire), 1);
        let mut reader = reader(wire, opener);
        assert!(!reader.has_buffered_frame());
        for i in 0..100 {
            let text = reader.read_text().await.unwrap().unwrap();
            assert_eq!(text, format!("{{\"n\":{i}}}"));
            assert_eq!(reader.has_buffered_frame(), i < 99, "after frame {i}");
        }
        assert_eq!(reader.record.capacity(), 0, "the used record is let go");
        assert!(reader.read_text().await.unwrap().is_none());
    }

    /// A clear line (before sealing, or a legacy member's) is not kept once
    /// parsed: a member that goes quiet after a long line holds no buffer.
    #[tokio::test]
    async fn clear_lines_are_not_kept_once_read() {
        let long = format!("{{\"text\":\"{}\"}}\r\n{{\"n\":1}}\n", "x".repeat(60_000));
        let mut reader = FrameReader::new(long.as_bytes(), 64 * 1024);
        let first: serde_json::Value = reader.read().await.unwrap().unwrap();
        assert_eq!(first["text"].as_str().unwrap().len(), 60_000);
        assert_eq!(reader.record.capacity(), 0);
        assert!(!reader.has_buffered_frame());
        assert_eq!(reader.read_text().await.unwrap().unwrap(), "{\"n\":1}");
        assert!(reader.read_text().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn records_are_bounded_and_large_frames_sealed_alone() {
        let (mut writer, opener) = sealed_pair();
        let small = format!("\"{}\"", "s".repeat(1000));
        let large = format!("\"{}\"", "L".repeat(SEAL_BATCH + 10));
        let frames: Vec<&str> = std::iter::repeat_n(small.as_str(), 70)
            .chain([large.as_str(), small.as_str()])
            .collect();
        for frame in &frames {
            writer.queue_text(frame).unwrap();
        }
        writer.flush().await.unwrap();
        let wire = writer.into_inner();
        let lines = lines_of(&wire);
        // 70 small frames fill two full records and part of a third; the
        // large one is alone; the last small one starts a record of its own.
        assert_eq!(lines.len(), 5);
        let limit = base64::encoded_len(SEAL_BATCH + 16, true).unwrap() + 16;
        assert!(
            lines
                .iter()
                .enumerate()
                .all(|(i, l)| i == 3 || l.len() <= limit)
        );
        let mut reader = reader(wire, opener);
        for frame in frames {
            assert_eq!(reader.read_text().await.unwrap().unwrap(), frame);
        }
    }

    #[tokio::test]
    async fn records_hold_a_bounded_number_of_frames() {
        let (mut writer, opener) = sealed_pair();
        for _ in 0..MAX_RECORD_FRAMES + 1 {
            writer.queue_text("{}").unwrap();
        }
        writer.flush().await.unwrap();
        let wire = writer.into_inner();
        assert_eq!(records(&wire), 2);
        let mut two = reader(wire, opener);
        for _ in 0..MAX_RECORD_FRAMES + 1 {
            assert_eq!(two.read_text().await.unwrap().unwrap(), "{}");
        }
        // One record holding one frame too many is refused.
        let plaintext = vec!["{}"; MAX_RECORD_FRAMES + 1].join("\n");
        let outcome = first_error(plaintext.as_bytes()).await;
        assert!(
            matches!(outcome, Err(FrameError::TooManyFrames)),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_record_with_an_empty_frame_is_refused() {
        for plaintext in [&b""[..], b"{}\n\n{}", b"{}\n"] {
            let outcome = first_error(plaintext).await;
            assert!(
                matches!(outcome, Err(FrameError::EmptyFrame)),
                "{plaintext:?}: {outcome:?}"
            );
        }
    }

    /// The lines a writer put on the wire, without their newlines.
    fn lines_of(wire: &[u8]) -> Vec<&[u8]> {
        wire.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// After a record fails to open, the reader reads nothing more: the next
    /// record would open with the nonce after the failed one, so a record an
    /// on-path attacker replaced with garbage of valid base64 would be cut
    /// out unnoticed by a caller that reads on.
    #[tokio::test]
    async fn nothing_is_read_after_a_record_that_fails_to_open() {
        let (mut writer, opener) = sealed_pair();
        writer.write_text("{\"n\":0}").await.unwrap();
        writer.flush().await.unwrap();
        writer
            .write_text("{\"kick\":\"dropped by the attacker\"}")
            .await
            .unwrap();
        writer.flush().await.unwrap();
        writer.write_text("{\"n\":2}").await.unwrap();
        writer.flush().await.unwrap();
        let wire = writer.into_inner();
        let lines = lines_of(&wire);
        // The attacker replaces record 1 with 32 bytes of base64 garbage.
        let garbage = format!("{SEALED_HEAD}{}{SEALED_TAIL}", STANDARD.encode([0u8; 32]));
        let mut tampered = Vec::new();
        for line in [lines[0], garbage.as_bytes(), lines[2]] {
            tampered.extend_from_slice(line);
            tampered.push(b'\n');
        }
        let mut r = reader(tampered, opener);
        assert_eq!(r.read_text().await.unwrap().unwrap(), "{\"n\":0}");
        assert!(matches!(
            r.read_text().await,
            Err(FrameError::Seal(SealError::Forged))
        ));
        // Final: record 2 is not believed.
        assert!(matches!(r.read_text().await, Err(FrameError::Broken)));
    }

    /// A peer that takes bytes slowly gets them all; one that takes nothing
    /// for the stall limit is given up on. (Paused clock: no real waiting.)
    #[tokio::test(start_paused = true)]
    async fn slow_is_not_stalled() {
        use std::time::Duration;
        use tokio::io::AsyncReadExt;
        let (near, mut far) = tokio::io::duplex(64);
        let mut writer = FrameWriter::new(near);
        writer.queue_text(&"x".repeat(4096)).unwrap();
        let slow_reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 64];
            while got < 4097 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                got += far.read(&mut buf).await.unwrap();
            }
            got
        });
        // About 650 ms in all, never more than 10 ms without progress.
        writer
            .flush_unless_stalled(Some(Duration::from_millis(200)))
            .await
            .unwrap();
        assert_eq!(slow_reader.await.unwrap(), 4097);

        let (near, _not_reading) = tokio::io::duplex(64);
        let mut writer = FrameWriter::new(near);
        writer.queue_text(&"x".repeat(4096)).unwrap();
        let stalled = writer
            .flush_unless_stalled(Some(Duration::from_millis(200)))
            .await;
        assert!(
            matches!(&stalled, Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::TimedOut),
            "{stalled:?}"
        );
    }
}
