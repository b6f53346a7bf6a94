//! The sealed channel native cmd-chat peers use after SRP.
//!
//! Both sides derive one ChaCha20-Poly1305 key per direction from the
//! login's session key (SRP's `K` bound to the handshake transcript, see
//! `protocol::handshake`). The nonce is a per-direction record counter that
//! is never sent: a record that was dropped, replayed, reordered or altered
//! fails to open, and the connection ends.

use chacha20poly1305::aead::{Aead, AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

use super::secret::Key32;

const CLIENT_TO_SERVER_INFO: &[u8] = b"cmd-chat sealed v1 client->server";
const SERVER_TO_CLIENT_INFO: &[u8] = b"cmd-chat sealed v1 server->client";

/// A sealed frame did not open: tampered, replayed, reordered or truncated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("a sealed frame failed authentication (tampered, replayed or out of order)")]
    Forged,
    #[error("the sealed channel has used every nonce; reconnect")]
    Exhausted,
}

/// Which end of the connection this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// One direction of the sealed channel.
pub struct DirectionKey {
    cipher: ChaCha20Poly1305,
    counter: u64,
}

impl DirectionKey {
    fn derive(session_key: &Key32, info: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(None, session_key.as_bytes());
        let mut okm = [0u8; 32];
        hk.expand(info, &mut okm)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        let cipher = ChaCha20Poly1305::new(&okm.into());
        zeroize::Zeroize::zeroize(&mut okm);
        Self { cipher, counter: 0 }
    }

    fn next_nonce(&mut self) -> Result<Nonce, SealError> {
        let counter = self.counter;
        self.counter = counter.checked_add(1).ok_or(SealError::Exhausted)?;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&counter.to_be_bytes());
        Ok(nonce.into())
    }

    /// Encrypts the next frame of this direction.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = self.next_nonce()?;
        self.cipher
            .encrypt(&nonce, plaintext)
            .map_err(|_| SealError::Exhausted)
    }

    /// Encrypts the next frame of this direction in place: `buf` holds the
    /// plaintext and then the ciphertext and tag. Saves the allocations of
    /// [`Self::seal`] on the server's per-member hot path.
    pub fn seal_in_place(&mut self, buf: &mut Vec<u8>) -> Result<(), SealError> {
        let nonce = self.next_nonce()?;
        self.cipher
            .encrypt_in_place(&nonce, b"", buf)
            .map_err(|_| SealError::Exhausted)
    }

    /// Decrypts the next frame of this direction in place: `buf` holds the
    /// ciphertext and tag, and then the plaintext. Any failure is final.
    pub fn open_in_place(&mut self, buf: &mut Vec<u8>) -> Result<(), SealError> {
        let nonce = self.next_nonce()?;
        self.cipher
            .decrypt_in_place(&nonce, b"", buf)
            .map_err(|_| SealError::Forged)
    }

    /// Decrypts the next frame of this direction; any failure is final.
    pub fn open(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = self.next_nonce()?;
        self.cipher
            .decrypt(&nonce, ciphertext)
            .map_err(|_| SealError::Forged)
    }
}

impl std::fmt::Debug for DirectionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectionKey")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

/// Derives `(sealing, opening)` keys for `side` from the login's session
/// key (bound to the handshake transcript).
pub fn derive_keys(session_key: &Key32, side: Side) -> (DirectionKey, DirectionKey) {
    let c2s = DirectionKey::derive(session_key, CLIENT_TO_SERVER_INFO);
    let s2c = DirectionKey::derive(session_key, SERVER_TO_CLIENT_INFO);
    match side {
        Side::Client => (c2s, s2c),
        Side::Server => (s2c, c2s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> ((DirectionKey, DirectionKey), (DirectionKey, DirectionKey)) {
        let k = Key32::new([7; 32]);
        (derive_keys(&k, Side::Client), derive_keys(&k, Side::Server))
    }

    #[test]
    fn frames_open_in_order_only() {
        let ((mut c_seal, _), (_, mut s_open)) = pair();
        let f0 = c_seal.seal(b"zero").unwrap();
        let f1 = c_seal.seal(b"one").unwrap();
        // Reordered: frame 1 where frame 0 is expected.
        assert_eq!(s_open.open(&f1), Err(SealError::Forged));
        let ((mut c_seal, _), (_, mut s_open)) = pair();
        let f0b = c_seal.seal(b"zero").unwrap();
        assert_eq!(f0, f0b, "same key and counter give the same frame");
        assert_eq!(s_open.open(&f0b).unwrap(), b"zero");
        // Replayed.
        assert_eq!(s_open.open(&f0b), Err(SealError::Forged));
    }

    #[test]
    fn in_place_matches_allocating() {
        let ((mut a, _), _) = pair();
        let ((mut b, _), (_, mut s_open)) = pair();
        let mut buf = b"frame".to_vec();
        a.seal_in_place(&mut buf).unwrap();
        assert_eq!(buf, b.seal(b"frame").unwrap());
        s_open.open_in_place(&mut buf).unwrap();
        assert_eq!(buf, b"frame");
        let mut forged = vec![0u8; 20];
        assert_eq!(s_open.open_in_place(&mut forged), Err(SealError::Forged));
    }

    #[test]
    fn directions_differ_and_tampering_fails() {
        let ((mut c_seal, _), (mut s_seal, mut s_open)) = pair();
        let from_server = s_seal.seal(b"hi").unwrap();
        // A frame reflected back to its sender does not open.
        assert_eq!(s_open.open(&from_server), Err(SealError::Forged));
        let ((_, _), (_, mut s_open)) = pair();
        let mut frame = c_seal.seal(b"hello").unwrap();
        frame[0] ^= 1;
        assert_eq!(s_open.open(&frame), Err(SealError::Forged));
        assert_eq!(s_open.open(&[1, 2, 3]), Err(SealError::Forged));
    }
}
