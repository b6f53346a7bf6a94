//! Sizes every peer agrees on. The server's own operational limits (members,
//! handshakes, deadlines) live in `server::limits`.

/// Longest line accepted before a connection has authenticated: `srp_init`
/// and `srp_verify` fit in well under 1 KiB, so anything bigger is hostile.
pub const PRE_AUTH_MAX_LINE: usize = 4 * 1024;

/// Longest Fernet token accepted as a message text. Chosen so that a message
/// line (token plus JSON envelope) fits the 64 KiB line limit of cmd-chat 1.x
/// clients; it still holds about 44 KiB of typed text.
pub const MAX_TOKEN_LEN: usize = 60 * 1024;

/// Longest line a member may send: one sealed message frame (base64 of the
/// token plus envelope and tag) with room to spare.
pub const MEMBER_MAX_LINE: usize = 96 * 1024;

/// The line limit of cmd-chat 1.x clients (asyncio's reader limit). Every line
/// the server sends to a legacy member fits in it, `init` included.
pub const LEGACY_MAX_LINE: usize = 64 * 1024;

/// Plaintext bytes of frames a writer seals together as one record. Large
/// enough that a burst of chat lines pays the per-record cost of sealing
/// once per hundred lines or so; small enough that a full record, sealed and
/// encoded, stays well under [`MEMBER_MAX_LINE`] (tested below). A frame
/// larger than this is sealed alone.
pub const SEAL_BATCH: usize = 32 * 1024;

/// Frames one sealed record may hold. A writer seals its record when it is
/// full, and a reader refuses a record with more: without it a member could
/// pack tens of thousands of tiny frames (each answered with an error line)
/// into one line of [`MEMBER_MAX_LINE`] bytes.
pub const MAX_RECORD_FRAMES: usize = 1024;

/// Longest line a client accepts from the server: the `init` frame, which
/// carries the whole history (bounded by `server::limits::HISTORY_MAX_BYTES`),
/// sealed and base64-encoded.
pub const CLIENT_MAX_LINE: usize = 16 * 1024 * 1024;

/// Most members a room holds (`serve --max-users` goes up to this). A client
/// refuses a member list, or a list of people knocking, longer than this:
/// what a server announces is bounded like everything else it sends.
pub const MAX_ROOM_MEMBERS: usize = 100_000;

/// Usernames: 1 to 32 printable characters, no whitespace or control.
pub const MAX_USERNAME_CHARS: usize = 32;

/// A native client that hears nothing from the server this long (the server
/// pings every 20 s) takes the connection for dead.
pub const SERVER_SILENCE_LIMIT: std::time::Duration = std::time::Duration::from_secs(75);

/// Longest body a private frame may carry. The body is a Fernet token like a
/// message text, so the same bound keeps a private frame within every line
/// limit a message fits in.
pub const MAX_PRIVATE_BODY_LEN: usize = MAX_TOKEN_LEN;

/// Longest private message text, in bytes. A private text is encrypted
/// twice (the pair's key, then the room key, each adding base64), so less
/// fits than in a room message; 32 KiB leaves a frame under
/// [`MAX_PRIVATE_BODY_LEN`] (see the test below).
pub const MAX_PRIVATE_TEXT_LEN: usize = 32 * 1024;

/// Plaintext bytes in one file chunk. Sealed, a chunk frame is about
/// 58 KiB (Fernet and base64 grow it by 4/3 twice), comfortably under
/// [`MEMBER_MAX_LINE`]; large enough that a 5 MiB file is 160 frames.
pub const FILE_CHUNK: usize = 32 * 1024;

/// Longest Fernet token of a file chunk: a full [`FILE_CHUNK`] encrypted.
pub const FILE_CHUNK_TOKEN_MAX: usize = super::token::fernet_token_len(FILE_CHUNK);

/// Longest Fernet token of a file offer's metadata (name, size, hash): a
/// file name of [`FILE_NAME_MAX`] bytes leaves room to spare.
pub const FILE_META_TOKEN_MAX: usize = 2 * 1024;

/// Longest file name a sender announces, in bytes (the usual file system limit).
pub const FILE_NAME_MAX: usize = 255;

/// Longest transfer id; the client uses a UUID (36 characters).
pub const FILE_ID_MAX: usize = 64;

/// Chunks a sender may have sent and not yet seen acknowledged. The server
/// holds acknowledgements back while receivers are behind, so this bounds
/// what one transfer can pile into their queues (about 470 KiB sealed); the
/// server ends a transfer that runs further ahead.
pub const FILE_WINDOW: u32 = 8;

/// Default largest file a room relays (`serve --max-file-size`).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 5 * 1024 * 1024;

/// The highest `--max-file-size` a server accepts, and the most a client
/// accepts whatever a server announces: received files are held in memory
/// until saved.
pub const MAX_FILE_SIZE_CAP: u64 = 64 * 1024 * 1024;

/// Chunks a file of `size` bytes is sent in: at least one, so an empty file
/// is a transfer like any other.
pub const fn file_chunks(size: u64) -> u64 {
    if size == 0 {
        1
    } else {
        size.div_ceil(FILE_CHUNK as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key32;
    use crate::crypto::private::KeyPair;
    use crate::crypto::transport::{Side, derive_keys};
    use crate::crypto::{Password, RoomCipher};
    use crate::protocol::wire::PrivateEnvelope;
    use crate::protocol::wire::{ClientFrame, ServerEvent};
    use base64::Engine as _;

    #[test]
    fn the_longest_private_text_fits_a_private_body() {
        let a = KeyPair::generate();
        let b = KeyPair::generate();
        let b_pub = b.public();
        let mut session = a.agree("a", "b", &b_pub).unwrap();
        let (_, ct) = session.seal(&vec![b'x'; MAX_PRIVATE_TEXT_LEN]).unwrap();
        let envelope = PrivateEnvelope::Msg {
            n: u64::MAX,
            ct: base64::engine::general_purpose::STANDARD.encode(ct),
        };
        let body = RoomCipher::from_password(&Password::new("pw".into()), b"salt")
            .encrypt(&serde_json::to_string(&envelope).unwrap());
        assert!(body.len() <= MAX_PRIVATE_BODY_LEN, "{}", body.len());
    }

    /// The largest chunk frame either side can send, sealed and base64'd
    /// onto the wire, still fits the member line limit.
    #[test]
    fn a_full_sealed_chunk_fits_a_member_line() {
        let data = "A".repeat(FILE_CHUNK_TOKEN_MAX);
        let id = "f".repeat(FILE_ID_MAX);
        let up = serde_json::to_string(&ClientFrame::FileChunk {
            id: id.clone(),
            index: u32::MAX,
            data: data.clone(),
        })
        .unwrap();
        let down = serde_json::to_string(&ServerEvent::FileChunk {
            from: "\u{10FFFF}".repeat(MAX_USERNAME_CHARS),
            id,
            index: u32::MAX,
            data,
        })
        .unwrap();
        let (mut sealer, _) = derive_keys(&Key32::new([7; 32]), Side::Client);
        for frame in [up, down] {
            let sealed = sealer.seal(frame.as_bytes()).unwrap();
            let line = serde_json::json!({"sealed": base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD, sealed)})
            .to_string();
            assert!(
                line.len() < MEMBER_MAX_LINE,
                "{} bytes against {MEMBER_MAX_LINE}",
                line.len()
            );
        }
    }
}
