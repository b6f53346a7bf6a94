//! File transfers on the client, without I/O: the file we send (an offer,
//! then chunks paced by the server's acknowledgements, given up when the
//! room stops taking them) and the files that arrive (checked against their
//! offer, assembled in memory, verified, then kept for `/save`). Each step
//! takes a decoded frame and returns the frames to send and the events to
//! show; the core does the sending. Reading and writing files on disk is
//! [`super::files`].
//!
//! Offers and chunks are encrypted with the room's file key, so every step
//! that opens or makes one is given the room's [`RoomCipher`] (it changes
//! when a reconnection lands in a restarted room).

use std::collections::VecDeque;
use std::path::PathBuf;

use tokio::time::Instant;
use zeroize::Zeroizing;

use super::error::ClientError;
use super::event::Event;
use super::files::{
    self, FILE_STALL_TIMEOUT, FileError, INCOMING_MAX, RECEIVED_BYTES_MAX, RECEIVED_FILES_MAX,
    ReceivedFile, mib,
};
use super::login::protocol;
use crate::crypto::RoomCipher;
use crate::protocol::limits::{
    FILE_CHUNK, FILE_META_TOKEN_MAX, FILE_NAME_MAX, FILE_WINDOW, file_chunks,
};
use crate::protocol::wire::{ClientFrame, FileMeta};

/// What handling one input produced, in order: the frames to send, then
/// the events to show.
#[derive(Debug, Default)]
pub struct Output {
    /// Frames for the server, to be sent in this order.
    pub frames: Vec<ClientFrame>,
    /// Events for the front end, in this order.
    pub events: Vec<Event>,
}

/// A file we are sending.
struct Outgoing {
    /// The transfer id the server knows it by (a fresh UUID).
    id: String,
    /// The file name announced in the offer.
    name: String,
    /// The whole file, read once; wiped when the transfer ends.
    contents: Zeroizing<Vec<u8>>,
    /// Chunks announced in the offer.
    chunks: u32,
    /// Chunks sent so far.
    sent: u32,
    /// Chunks the server has acknowledged.
    acked: u32,
    /// The progress step last reported.
    step: u64,
    /// When the last acknowledgement came (or the offer went out).
    last_ack: Instant,
}

impl Outgoing {
    fn size(&self) -> u64 {
        self.contents.len() as u64
    }

    /// The plaintext of chunk `index`.
    fn chunk(&self, index: u32) -> &[u8] {
        let start = index as usize * FILE_CHUNK;
        let end = (start + FILE_CHUNK).min(self.contents.len());
        &self.contents[start.min(end)..end]
    }

    /// Bytes acknowledged so far.
    fn done(&self) -> u64 {
        (u64::from(self.acked) * FILE_CHUNK as u64).min(self.size())
    }
}

/// A file arriving.
struct Incoming {
    /// The sender: transfer ids are only unique per sender.
    from: String,
    /// The sender's transfer id.
    id: String,
    /// Name, size and checksum from the decrypted offer.
    meta: FileMeta,
    /// Chunks announced, checked against `meta.size`.
    chunks: u32,
    /// Chunks received so far.
    received: u32,
    /// The contents so far; capacity reserved for the whole file.
    data: Zeroizing<Vec<u8>>,
    /// The progress step last reported.
    step: u64,
}

/// Why an offer is not accepted.
fn check_offer(meta: &FileMeta, chunks: u32, limit: u64) -> Result<(), String> {
    if meta.size > limit {
        return Err(format!(
            "it is {}, over the {} this client accepts",
            mib(meta.size),
            mib(limit)
        ));
    }
    if u64::from(chunks) != file_chunks(meta.size) {
        return Err("its chunk count does not match its size".into());
    }
    if meta.sha256.len() != 64 || !meta.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("its checksum is malformed".into());
    }
    Ok(())
}

impl Incoming {
    /// Adds the plaintext of the next chunk, checking its length.
    fn push(&mut self, plain: &[u8]) -> Result<(), String> {
        let index = u64::from(self.received);
        let expected = if index + 1 == u64::from(self.chunks) {
            self.meta.size - index * FILE_CHUNK as u64
        } else {
            FILE_CHUNK as u64
        };
        if plain.len() as u64 != expected {
            return Err(format!(
                "chunk {index} has {} bytes where {expected} were due",
                plain.len()
            ));
        }
        self.data.extend_from_slice(plain);
        self.received += 1;
        Ok(())
    }

    /// Every chunk is in (their lengths were checked on the way).
    fn complete(&self) -> bool {
        self.received == self.chunks
    }

    /// The event saying this transfer ended without a file.
    fn failed(self, reason: String) -> Event {
        Event::FileFailed {
            sending: false,
            from: self.from,
            name: self.meta.name,
            reason,
        }
    }
}

/// Every file transfer of one member, both ways, and the files received.
pub struct Transfers {
    /// Our own name: the writer our offers name, and the sender in events
    /// about our file.
    me: String,
    /// The largest file we send or accept: the room's, within our own cap.
    max_file_size: u64,
    /// The file we are sending, if any (one at a time).
    outgoing: Option<Outgoing>,
    /// Files arriving (at most [`INCOMING_MAX`]).
    incoming: Vec<Incoming>,
    /// Files received whole, oldest first, until forgotten.
    received: VecDeque<ReceivedFile>,
    /// The number the next received file gets.
    next_file: usize,
}

impl Transfers {
    /// No transfers yet, in a room that takes files up to `max_file_size`.
    pub fn new(me: &str, max_file_size: u64) -> Self {
        Self {
            me: me.to_owned(),
            max_file_size,
            outgoing: None,
            incoming: Vec::new(),
            received: VecDeque::new(),
            next_file: 1,
        }
    }

    /// The largest file this room takes, in bytes.
    pub fn max_file_size(&self) -> u64 {
        self.max_file_size
    }

    /// The room's limit as a new login announced it.
    pub fn set_max_file_size(&mut self, limit: u64) {
        self.max_file_size = limit;
    }

    /// Whether a file of ours is still on its way.
    pub fn sending(&self) -> bool {
        self.outgoing.is_some()
    }

    /// Refuses a second file while one is on its way.
    pub fn not_sending(&self) -> Result<(), FileError> {
        match &self.outgoing {
            Some(o) => Err(FileError::Busy {
                name: o.name.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Files received whole, oldest first.
    pub fn received(&self) -> impl Iterator<Item = &ReceivedFile> {
        self.received.iter()
    }

    /// Received file `n`, to be saved.
    pub fn received_mut(&mut self, n: usize) -> Option<&mut ReceivedFile> {
        self.received.iter_mut().find(|f| f.n == n)
    }

    /// Starts sending `contents` as `name` (cut to [`FILE_NAME_MAX`] bytes)
    /// at `now`: the offer and the first window of chunks.
    pub fn send(
        &mut self,
        cipher: &RoomCipher,
        name: &str,
        contents: Zeroizing<Vec<u8>>,
        now: Instant,
    ) -> Result<Output, ClientError> {
        self.not_sending()?;
        let size = contents.len() as u64;
        if size > self.max_file_size {
            return Err(FileError::TooLarge {
                path: PathBuf::from(name),
                size,
                limit: self.max_file_size,
            }
            .into());
        }
        let mut name = name.to_owned();
        while name.len() > FILE_NAME_MAX {
            name.pop();
        }
        let meta = FileMeta {
            from: self.me.clone(),
            name: name.clone(),
            size,
            sha256: files::sha256_hex(&contents),
        };
        let meta_json = Zeroizing::new(serde_json::to_vec(&meta).expect("metadata serializes"));
        let meta_token = cipher.encrypt_file_part(&meta_json);
        if meta_token.len() > FILE_META_TOKEN_MAX {
            return Err(protocol("the file's description does not fit an offer"));
        }
        let chunks = u32::try_from(file_chunks(size)).expect("bounded by MAX_FILE_SIZE_CAP");
        let id = uuid::Uuid::new_v4().to_string();
        let mut out = Output::default();
        out.frames.push(ClientFrame::FileOffer {
            id: id.clone(),
            chunks,
            meta: meta_token,
        });
        self.outgoing = Some(Outgoing {
            id,
            name: name.clone(),
            contents,
            chunks,
            sent: 0,
            acked: 0,
            step: 0,
            last_ack: now,
        });
        out.events.push(Event::FileSending { name, size });
        self.pump(cipher, &mut out.frames);
        Ok(out)
    }

    /// As many chunks of the outgoing file as the window allows.
    fn pump(&mut self, cipher: &RoomCipher, frames: &mut Vec<ClientFrame>) {
        let Some(out) = self.outgoing.as_mut() else {
            return;
        };
        while out.sent < out.chunks && out.sent < out.acked + FILE_WINDOW {
            let data = cipher.encrypt_file_part(out.chunk(out.sent));
            frames.push(ClientFrame::FileChunk {
                id: out.id.clone(),
                index: out.sent,
                data,
            });
            out.sent += 1;
        }
    }

    /// The server passed on our chunks up to `index` (at `now`): more
    /// chunks and progress, or the end.
    pub fn acked(&mut self, cipher: &RoomCipher, id: &str, index: u32, now: Instant) -> Output {
        let mut output = Output::default();
        let Some(out) = self.outgoing.as_mut().filter(|o| o.id == id) else {
            return output;
        };
        out.acked = out.acked.max(index.saturating_add(1)).min(out.sent);
        out.last_ack = now;
        if out.acked == out.chunks {
            let out = self.outgoing.take().expect("just seen");
            output.events.push(Event::FileSent {
                size: out.size(),
                name: out.name.clone(),
            });
            return output;
        }
        let (done, size) = (out.done(), out.size());
        let step = files::progress_step(done, size);
        if step > out.step {
            out.step = step;
            output.events.push(Event::FileProgress {
                sending: true,
                from: self.me.clone(),
                name: out.name.clone(),
                done,
                size,
            });
        }
        self.pump(cipher, &mut output.frames);
        output
    }

    /// When the outgoing file is given up if no acknowledgement comes.
    pub fn stall_deadline(&self) -> Option<Instant> {
        self.outgoing
            .as_ref()
            .map(|o| o.last_ack + FILE_STALL_TIMEOUT)
    }

    /// Gives up on the outgoing file: the room has not taken any of it for
    /// [`FILE_STALL_TIMEOUT`].
    pub fn stalled(&mut self) -> Output {
        let mut output = Output::default();
        if let Some(out) = self.outgoing.take() {
            output.frames.push(ClientFrame::FileCancel { id: out.id });
            output.events.push(Event::FileFailed {
                sending: true,
                from: self.me.clone(),
                name: out.name,
                reason: format!(
                    "the room took none of it for {} s; cancelled",
                    FILE_STALL_TIMEOUT.as_secs()
                ),
            });
        }
        output
    }

    /// `from` offers a file: accept it into memory if it is within bounds.
    /// A repeated offer is ignored.
    pub fn offered(
        &mut self,
        cipher: &RoomCipher,
        from: String,
        id: String,
        chunks: u32,
        meta: &str,
    ) -> Option<Event> {
        if self.incoming.iter().any(|i| i.from == from && i.id == id) {
            return None;
        }
        let meta: FileMeta = match cipher
            .decrypt_file_part(meta)
            .ok()
            .and_then(|plain| serde_json::from_slice(&plain).ok())
        {
            Some(meta) => meta,
            None => {
                return Some(Event::Error {
                    message: format!("a file offer from {from} could not be decrypted; ignored"),
                });
            }
        };
        if meta.from != from {
            return Some(Event::Error {
                message: format!(
                    "a file offer from {from} was written by {}; ignored",
                    meta.from
                ),
            });
        }
        let declined = |reason: String| Event::FileFailed {
            sending: false,
            from: from.clone(),
            name: meta.name.clone(),
            reason: format!("not accepted: {reason}"),
        };
        if let Err(reason) = check_offer(&meta, chunks, self.max_file_size) {
            return Some(declined(reason));
        }
        if self.incoming.len() >= INCOMING_MAX {
            return Some(declined(format!("already receiving {INCOMING_MAX} files")));
        }
        let event = Event::FileIncoming {
            from: from.clone(),
            name: meta.name.clone(),
            size: meta.size,
        };
        self.incoming.push(Incoming {
            from,
            id,
            data: Zeroizing::new(Vec::with_capacity(meta.size as usize)),
            meta,
            chunks,
            received: 0,
            step: 0,
        });
        Some(event)
    }

    /// A piece of a file arrives: add it and report progress; once the
    /// file is whole and matches its checksum, keep it (forgetting the
    /// oldest files if need be, which is reported first).
    pub fn chunk(
        &mut self,
        cipher: &RoomCipher,
        from: &str,
        id: &str,
        index: u32,
        data: &str,
    ) -> Vec<Event> {
        let Some(pos) = self
            .incoming
            .iter()
            .position(|i| i.from == from && i.id == id)
        else {
            return Vec::new();
        };
        let incoming = &mut self.incoming[pos];
        let added = if index != incoming.received {
            Err(format!(
                "chunk {index} arrived where {} was due",
                incoming.received
            ))
        } else {
            match cipher.decrypt_file_part(data) {
                Ok(plain) => incoming.push(&plain),
                Err(_) => Err("a piece of it could not be decrypted".into()),
            }
        };
        if let Err(reason) = added {
            let incoming = self.incoming.remove(pos);
            return vec![incoming.failed(format!("{reason}; discarded"))];
        }
        if !incoming.complete() {
            let done = incoming.data.len() as u64;
            let step = files::progress_step(done, incoming.meta.size);
            if step <= incoming.step {
                return Vec::new();
            }
            incoming.step = step;
            return vec![Event::FileProgress {
                sending: false,
                from: incoming.from.clone(),
                name: incoming.meta.name.clone(),
                done,
                size: incoming.meta.size,
            }];
        }
        let incoming = self.incoming.remove(pos);
        self.complete(incoming)
    }

    /// Keeps a file whose every chunk is in, if it matches its checksum.
    fn complete(&mut self, incoming: Incoming) -> Vec<Event> {
        if files::sha256_hex(&incoming.data) != incoming.meta.sha256 {
            let reason = "it does not match its checksum; discarded".into();
            return vec![incoming.failed(reason)];
        }
        let n = self.next_file;
        self.next_file += 1;
        let size = incoming.meta.size;
        let file = ReceivedFile {
            n,
            from: incoming.from.clone(),
            name: incoming.meta.name.clone(),
            contents: incoming.data,
            saved: None,
        };
        self.received.push_back(file);
        let mut events = self.forget_old_files();
        events.push(Event::FileReceived {
            n,
            from: incoming.from,
            name: incoming.meta.name,
            size,
        });
        events
    }

    /// Keeps received files within [`RECEIVED_FILES_MAX`] and
    /// [`RECEIVED_BYTES_MAX`], forgetting the oldest (and saying so).
    fn forget_old_files(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while self.received.len() > 1
            && (self.received.len() > RECEIVED_FILES_MAX
                || self.received.iter().map(ReceivedFile::size).sum::<u64>() > RECEIVED_BYTES_MAX)
        {
            let Some(old) = self.received.pop_front() else {
                break;
            };
            let kept = if old.saved.is_some() {
                "it was saved"
            } else {
                "it was never saved"
            };
            events.push(Event::Error {
                message: format!(
                    "received file #{} ({}) forgotten to make room ({kept})",
                    old.n, old.name
                ),
            });
        }
        events
    }

    /// A transfer ended early: ours (refused) or someone else's.
    pub fn aborted(&mut self, from: String, id: &str, reason: String) -> Option<Event> {
        if from == self.me && self.outgoing.as_ref().is_some_and(|o| o.id == id) {
            let out = self.outgoing.take().expect("just seen");
            return Some(Event::FileFailed {
                sending: true,
                from,
                name: out.name.clone(),
                reason,
            });
        }
        let pos = self
            .incoming
            .iter()
            .position(|i| i.from == from && i.id == id)?;
        let incoming = self.incoming.remove(pos);
        Some(Event::FileFailed {
            sending: false,
            from,
            name: incoming.meta.name.clone(),
            reason,
        })
    }

    /// The connection is gone and transfers do not survive it: each one
    /// under way ends, ours first. Received files are kept.
    pub fn connection_lost(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        if let Some(out) = self.outgoing.take() {
            events.push(Event::FileFailed {
                sending: true,
                from: self.me.clone(),
                name: out.name.clone(),
                reason: "the connection was lost; send it again".into(),
            });
        }
        for incoming in std::mem::take(&mut self.incoming) {
            events.push(incoming.failed("the connection was lost; nothing was kept".into()));
        }
        events
    }
}

#[cfg(test)]
mod tests;
