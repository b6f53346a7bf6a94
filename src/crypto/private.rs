//! Private messages between two members: keys the host cannot derive.
//!
//! Everyone who knows the room password (the host included) can read the
//! room. A private conversation therefore gets keys of its own, agreed by the
//! two members alone with ephemeral X25519 Diffie-Hellman:
//!
//! 1. Each side draws a fresh [`KeyPair`] for this conversation and sends its
//!    public key (inside the room encryption, relayed by the server).
//! 2. [`KeyPair::agree`] turns the shared secret into one ChaCha20-Poly1305
//!    key per direction with HKDF-SHA256, bound to both names and both public
//!    keys in a fixed order (the names sorted), so both sides derive the same
//!    pair and a key can never be reflected back to its sender.
//! 3. Every message carries its counter `n`, which is also its nonce; `n`
//!    must increase strictly, so a replayed or reordered message is refused.
//!
//! The secrets live only in memory: [`KeyPair`] and [`PrivateSession`] wipe
//! them when dropped, which happens when either side leaves. Past messages
//! then cannot be decrypted by anyone, even with the password (forward
//! secrecy).
//!
//! A host that knows the password can still *substitute* public keys while
//! relaying the handshake and sit in the middle. That is what the
//! [`SafetyCode`] is for: it is computed from both names and both public keys
//! as each side saw them, so the two sides' codes match only if no one
//! substituted a key. People compare it by voice or video.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use x25519_dalek::{EphemeralSecret, PublicKey};
use zeroize::{Zeroize, Zeroizing};

/// Byte length of an X25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Domain separation for everything derived here; bump it if the derivation
/// ever changes, so two versions can never agree on a key by accident.
const TRANSCRIPT_LABEL: &[u8] = b"cmd-chat private v1";
/// HKDF `info` for the key of messages from the lower name to the higher.
const LOW_TO_HIGH_INFO: &[u8] = b"cmd-chat private v1 low->high";
/// HKDF `info` for the key of messages from the higher name to the lower.
const HIGH_TO_LOW_INFO: &[u8] = b"cmd-chat private v1 high->low";
/// Domain separation for the safety code, so it reveals nothing about the keys.
const SAFETY_CODE_LABEL: &[u8] = b"cmd-chat safety code v1";

/// Groups of digits in a safety code.
pub const SAFETY_CODE_GROUPS: usize = 6;
/// Digits per group: 6 × 5 digits is about 99 bits, far beyond what a
/// man in the middle could match by trying key pairs until the codes agree.
pub const SAFETY_CODE_DIGITS: usize = 5;

/// Why a private handshake or message failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivateCryptoError {
    #[error("the peer's public key is not a valid X25519 key")]
    BadPublicKey,
    #[error("the key exchange produced no shared secret (a degenerate public key); refused")]
    NotContributory,
    #[error(
        "a private message failed authentication: it was altered, or sent with another session's keys"
    )]
    Forged,
    #[error(
        "a private message arrived out of order or twice (number {got}, expected at least {expected}); refused"
    )]
    Replayed { got: u64, expected: u64 },
    #[error("this private session has used every message number; start a new one")]
    Exhausted,
}

/// Our half of one private conversation's key exchange. The secret is wiped
/// when this is dropped or consumed by [`KeyPair::agree`].
pub struct KeyPair {
    secret: EphemeralSecret,
    public: PublicKey,
}

impl KeyPair {
    /// A fresh key pair from the operating system's randomness (via the
    /// thread-local CSPRNG).
    pub fn generate() -> Self {
        let secret = EphemeralSecret::random_from_rng(&mut rand::rng());
        let public = PublicKey::from(&secret);
        Self { secret, public }
    }

    /// Our public key, to send to the peer.
    pub fn public(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public.to_bytes()
    }

    /// Completes the exchange with the peer's public key. `me` and `peer` are
    /// the two members' names; both sides pass their own name as `me`.
    pub fn agree(
        self,
        me: &str,
        peer: &str,
        peer_public: &[u8],
    ) -> Result<PrivateSession, PrivateCryptoError> {
        let peer_bytes: [u8; PUBLIC_KEY_LEN] = peer_public
            .try_into()
            .map_err(|_| PrivateCryptoError::BadPublicKey)?;
        let my_public = self.public();
        let shared = self.secret.diffie_hellman(&PublicKey::from(peer_bytes));
        // A low-order point from the peer makes the secret all zeros: anyone
        // could compute it, so it must not become a key.
        if !shared.was_contributory() {
            return Err(PrivateCryptoError::NotContributory);
        }
        let transcript = Transcript::new(me, &my_public, peer, &peer_bytes);
        let salt = Sha256::digest(&transcript.0);
        let hk = Hkdf::<Sha256>::new(Some(salt.as_slice()), shared.as_bytes());
        let derive = |info: &[u8]| {
            let mut okm = Zeroizing::new([0u8; 32]);
            hk.expand(info, okm.as_mut_slice())
                .expect("32 bytes is a valid HKDF-SHA256 length");
            ChaCha20Poly1305::new(&(*okm).into())
        };
        let low_to_high = derive(LOW_TO_HIGH_INFO);
        let high_to_low = derive(HIGH_TO_LOW_INFO);
        let (send, recv) = if me < peer {
            (low_to_high, high_to_low)
        } else {
            (high_to_low, low_to_high)
        };
        Ok(PrivateSession {
            send,
            recv,
            next_send: 0,
            next_recv: 0,
            code: SafetyCode::from_transcript(&transcript),
        })
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPair([redacted])")
    }
}

/// Both names and both public keys, the lower name first, each field
/// length-prefixed so no two different inputs give the same bytes.
struct Transcript(Vec<u8>);

impl Transcript {
    fn new(me: &str, my_public: &[u8; 32], peer: &str, peer_public: &[u8; 32]) -> Self {
        let ((low, low_pub), (high, high_pub)) = if me < peer {
            ((me, my_public), (peer, peer_public))
        } else {
            ((peer, peer_public), (me, my_public))
        };
        let mut bytes = Vec::with_capacity(TRANSCRIPT_LABEL.len() + 2 * (4 + 32 + 32 + 4) + 8);
        for field in [
            TRANSCRIPT_LABEL,
            low.as_bytes(),
            low_pub,
            high.as_bytes(),
            high_pub,
        ] {
            let len = u32::try_from(field.len()).expect("names are short");
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(field);
        }
        Self(bytes)
    }
}

/// The keys of one private conversation, one per direction, and their
/// message counters. Wiped when dropped (the cipher zeroizes its key).
pub struct PrivateSession {
    send: ChaCha20Poly1305,
    recv: ChaCha20Poly1305,
    /// Number of the next message we send; also its nonce.
    next_send: u64,
    /// Lowest number the next message we accept may carry.
    next_recv: u64,
    code: SafetyCode,
}

fn nonce(n: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&n.to_be_bytes());
    nonce.into()
}

impl PrivateSession {
    /// Whether anything was sealed in this session yet.
    pub fn sealed_any(&self) -> bool {
        self.next_send > 0
    }

    /// Encrypts the next message: its number and ciphertext.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<(u64, Vec<u8>), PrivateCryptoError> {
        let n = self.next_send;
        self.next_send = n.checked_add(1).ok_or(PrivateCryptoError::Exhausted)?;
        let ct = self
            .send
            .encrypt(&nonce(n), plaintext)
            .map_err(|_| PrivateCryptoError::Exhausted)?;
        Ok((n, ct))
    }

    /// Decrypts message number `n`. Numbers must increase strictly: a gap
    /// (a message the server refused to relay) is accepted, a number at or
    /// below one already accepted is refused as a replay. A failure changes
    /// nothing, so a forged message cannot block the real ones.
    pub fn open(&mut self, n: u64, ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, PrivateCryptoError> {
        if n < self.next_recv {
            return Err(PrivateCryptoError::Replayed {
                got: n,
                expected: self.next_recv,
            });
        }
        let plain = self
            .recv
            .decrypt(&nonce(n), ct)
            .map_err(|_| PrivateCryptoError::Forged)?;
        self.next_recv = n.checked_add(1).ok_or(PrivateCryptoError::Exhausted)?;
        Ok(Zeroizing::new(plain))
    }

    /// The code both people should see for this conversation.
    pub fn safety_code(&self) -> &SafetyCode {
        &self.code
    }
}

impl fmt::Debug for PrivateSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateSession")
            .field("next_send", &self.next_send)
            .field("next_recv", &self.next_recv)
            .finish_non_exhaustive()
    }
}

/// A short code computed from both names and both public keys, for two
/// people to compare out of band: `12345 67890 13579 24680 11223 34455`.
///
/// Not a secret (it is a hash of public values), so it may be shown and
/// printed; comparison is constant-time all the same.
#[derive(Clone)]
pub struct SafetyCode(String);

impl SafetyCode {
    fn from_transcript(transcript: &Transcript) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(SAFETY_CODE_LABEL);
        hasher.update(&transcript.0);
        let digest = hasher.finalize();
        let groups: Vec<String> = digest
            .chunks_exact(5)
            .take(SAFETY_CODE_GROUPS)
            .map(|chunk| {
                // 40 bits mod 10^5: the bias is below one in ten million.
                let value = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                format!(
                    "{:0width$}",
                    value % 10u64.pow(SAFETY_CODE_DIGITS as u32),
                    width = SAFETY_CODE_DIGITS
                )
            })
            .collect();
        Self(groups.join(" "))
    }

    /// The code as people read it: six groups of five digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `typed` is this code, ignoring spaces.
    pub fn matches(&self, typed: &str) -> bool {
        let ours: Vec<u8> = self.0.bytes().filter(|b| *b != b' ').collect();
        let theirs: Vec<u8> = typed.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        bool::from(ours.ct_eq(&theirs))
    }
}

impl PartialEq for SafetyCode {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

impl Eq for SafetyCode {}

impl fmt::Display for SafetyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SafetyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyCode({})", self.0)
    }
}

impl Drop for SafetyCode {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: &str, b: &str) -> (PrivateSession, PrivateSession) {
        let ka = KeyPair::generate();
        let kb = KeyPair::generate();
        let (pa, pb) = (ka.public(), kb.public());
        (ka.agree(a, b, &pb).unwrap(), kb.agree(b, a, &pa).unwrap())
    }

    #[test]
    fn both_directions_work_and_codes_match() {
        let (mut ann, mut bob) = pair("ann", "bob");
        assert_eq!(ann.safety_code(), bob.safety_code());
        let code = ann.safety_code().as_str();
        assert_eq!(code.len(), 6 * 5 + 5, "{code}");
        assert!(
            code.split(' ')
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        );
        assert!(ann.safety_code().matches(&code.replace(' ', "")));
        assert!(!ann.safety_code().matches("00000"));

        let (n, ct) = ann.seal(b"hi bob").unwrap();
        assert_eq!(n, 0);
        assert_eq!(&bob.open(n, &ct).unwrap()[..], b"hi bob");
        let (n, ct) = bob.seal(b"hi ann").unwrap();
        assert_eq!(&ann.open(n, &ct).unwrap()[..], b"hi ann");
        // The directions have different keys: our own message does not open
        // as if the peer had sent it.
        let (n, ct) = ann.seal(b"echo").unwrap();
        assert_eq!(ann.open(n, &ct).unwrap_err(), PrivateCryptoError::Forged);
    }

    #[test]
    fn replays_and_tampering_are_refused_gaps_are_not() {
        let (mut ann, mut bob) = pair("ann", "bob");
        let m0 = ann.seal(b"zero").unwrap();
        let m1 = ann.seal(b"one").unwrap();
        let m2 = ann.seal(b"two").unwrap();
        bob.open(m0.0, &m0.1).unwrap();
        assert_eq!(
            bob.open(m0.0, &m0.1).unwrap_err(),
            PrivateCryptoError::Replayed {
                got: 0,
                expected: 1
            }
        );
        let mut forged = m2.1.clone();
        forged[0] ^= 1;
        assert_eq!(
            bob.open(m2.0, &forged).unwrap_err(),
            PrivateCryptoError::Forged
        );
        // A wrong number is a wrong nonce: it does not open either.
        assert_eq!(
            bob.open(m2.0, &m1.1).unwrap_err(),
            PrivateCryptoError::Forged
        );
        // Message 1 went missing; message 2 still opens, and 1 is then too late.
        assert_eq!(&bob.open(m2.0, &m2.1).unwrap()[..], b"two");
        assert!(matches!(
            bob.open(m1.0, &m1.1),
            Err(PrivateCryptoError::Replayed { .. })
        ));
    }

    #[test]
    fn a_substituted_key_changes_the_code_and_the_keys() {
        // Mallory sits between ann and bob with a key pair towards each.
        let ann = KeyPair::generate();
        let bob = KeyPair::generate();
        let m_for_ann = KeyPair::generate();
        let m_for_bob = KeyPair::generate();
        let (pa, pb, pma, pmb) = (
            ann.public(),
            bob.public(),
            m_for_ann.public(),
            m_for_bob.public(),
        );
        let mut ann_s = ann.agree("ann", "bob", &pma).unwrap();
        let bob_s = bob.agree("bob", "ann", &pmb).unwrap();
        let mut mallory_ann = m_for_ann.agree("bob", "ann", &pa).unwrap();
        let _mallory_bob = m_for_bob.agree("ann", "bob", &pb).unwrap();
        assert_ne!(ann_s.safety_code(), bob_s.safety_code());
        // Mallory can read what ann sends, which is why the codes matter.
        let (n, ct) = ann_s.seal(b"secret").unwrap();
        assert_eq!(&mallory_ann.open(n, &ct).unwrap()[..], b"secret");
    }

    #[test]
    fn names_are_bound_into_the_keys() {
        let ka = KeyPair::generate();
        let kb = KeyPair::generate();
        let (pa, pb) = (ka.public(), kb.public());
        let mut ann = ka.agree("ann", "bob", &pb).unwrap();
        // Bob believes he is talking to "carol": a different transcript.
        let mut bob = kb.agree("bob", "carol", &pa).unwrap();
        assert_ne!(ann.safety_code(), bob.safety_code());
        let (n, ct) = ann.seal(b"hi").unwrap();
        assert_eq!(bob.open(n, &ct).unwrap_err(), PrivateCryptoError::Forged);
    }

    #[test]
    fn degenerate_and_malformed_keys_are_refused() {
        assert_eq!(
            KeyPair::generate().agree("a", "b", &[0u8; 32]).unwrap_err(),
            PrivateCryptoError::NotContributory
        );
        assert_eq!(
            KeyPair::generate().agree("a", "b", &[9u8; 31]).unwrap_err(),
            PrivateCryptoError::BadPublicKey
        );
    }

    /// Fixed vector: the code for fixed names and keys must never change, or
    /// two versions of cmd-chat would show different codes for one session.
    #[test]
    fn safety_code_is_stable() {
        let t = Transcript::new("bob", &[2u8; 32], "ann", &[1u8; 32]);
        let same = Transcript::new("ann", &[1u8; 32], "bob", &[2u8; 32]);
        assert_eq!(t.0, same.0, "order-independent");
        let code = SafetyCode::from_transcript(&t);
        assert_eq!(code.as_str(), STABLE_CODE);
        assert_eq!(format!("{code:?}"), format!("SafetyCode({STABLE_CODE})"));
    }

    /// Computed independently with Python's `hashlib` from the layout above.
    const STABLE_CODE: &str = "08256 76874 02900 12272 01594 61272";

    #[test]
    fn secrets_print_redacted() {
        let (ann, _) = pair("ann", "bob");
        assert_eq!(format!("{:?}", KeyPair::generate()), "KeyPair([redacted])");
        let shown = format!("{ann:?}");
        assert!(
            shown.starts_with("PrivateSession {") && shown.contains(".."),
            "{shown}"
        );
    }
}
