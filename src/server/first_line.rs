//! A stranger's first line, awaited before its login starts.
//!
//! Until a connection has sent a whole line it has cost the server only a
//! socket, and its place among the pending connections may be taken (see
//! [`super::pending`]); it also has a deadline of its own, shorter than the
//! handshake's. [`read_first_line`] waits for that line; [`Replay`] then
//! hands the bytes read so far, and the rest of the stream, to the
//! connection handler as though nothing had been read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Reads from `reader` into `buf` until a line has ended, `max` bytes have
/// come (a line that long is refused by the handler, which reads it next),
/// or the stream has ended. Whatever came is left in `buf` for [`Replay`].
pub async fn read_first_line<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<()> {
    let mut chunk = [0u8; 1024];
    while buf.len() < max {
        let room = chunk.len().min(max - buf.len());
        let n = reader.read(&mut chunk[..room]).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if chunk[..n].contains(&b'\n') {
            break;
        }
    }
    Ok(())
}

/// A stream that yields `prefix` before reading from `inner`; writes go
/// straight to `inner`.
pub struct Replay<S> {
    /// Bytes already read from `inner`, not yet handed on.
    prefix: Vec<u8>,
    /// How much of `prefix` has been handed on.
    at: usize,
    /// The connection.
    inner: S,
}

impl<S> Replay<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = out.remaining().min(this.prefix.len() - this.at);
            out.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                // Handed on: free it for the rest of the connection's life.
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    #[tokio::test]
    async fn the_first_line_is_read_then_replayed_with_the_rest() {
        let (mut peer, server) = tokio::io::duplex(64);
        let mut server = server;
        peer.write_all(b"first line\nsecond").await.unwrap();
        let mut buf = Vec::new();
        read_first_line(&mut server, &mut buf, 4096).await.unwrap();
        assert!(buf.starts_with(b"first line\n"));
        peer.write_all(b" line\n").await.unwrap();
        let mut lines = BufReader::new(Replay::new(buf, server)).lines();
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "first line");
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "second line");
        // Writes go through to the peer.
        let mut replay = lines.into_inner().into_inner();
        replay.write_all(b"reply\n").await.unwrap();
        let mut reply = [0u8; 6];
        peer.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"reply\n");
    }

    #[tokio::test]
    async fn a_line_without_end_stops_at_the_bound() {
        let (mut peer, mut server) = tokio::io::duplex(64 * 1024);
        peer.write_all(&[b'x'; 10_000]).await.unwrap();
        let mut buf = Vec::new();
        read_first_line(&mut server, &mut buf, 4096).await.unwrap();
        assert_eq!(buf.len(), 4096);
        // End of stream before any line: what came is kept.
        let (mut peer, mut server) = tokio::io::duplex(64);
        peer.write_all(b"partial").await.unwrap();
        drop(peer);
        let mut buf = Vec::new();
        read_first_line(&mut server, &mut buf, 4096).await.unwrap();
        assert_eq!(buf, b"partial");
    }
}
