//! The room key: what every member derives from the password to encrypt and
//! read messages, and what the server never holds.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::secret::{Key32, Password};

/// HKDF `info` label shared with cmd-chat 1.x.
const ROOM_KEY_INFO: &[u8] = b"cmd-chat-room-key";
/// HKDF `info` label of the file key, derived from the room key (native
/// protocol 3): a file's parts and a message never open under one key, so a
/// file whose bytes look like a message cannot be relayed as one.
const FILE_KEY_INFO: &[u8] = b"cmd-chat-file-key";

/// Length of the per-process room salt the server draws at start-up.
pub const ROOM_SALT_LEN: usize = 16;

/// A peer's Fernet token failed authentication: wrong room key or tampering.
#[derive(Debug, thiserror::Error)]
#[error(
    "a message could not be decrypted with the room key (tampered, or sent with another password)"
)]
pub struct UndecryptableMessage;

/// `HKDF-SHA256(ikm = password, salt = room_salt, info = "cmd-chat-room-key")`.
pub fn derive_room_key(password: &Password, room_salt: &[u8]) -> Key32 {
    let hk = Hkdf::<Sha256>::new(Some(room_salt), password.as_bytes());
    let mut okm = [0u8; 32];
    hk.expand(ROOM_KEY_INFO, &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    let key = Key32::new(okm);
    zeroize::Zeroize::zeroize(&mut okm);
    key
}

/// Encrypts and decrypts room messages as Fernet tokens, as cmd-chat 1.x
/// does, and files' parts under a key of their own.
///
/// `fernet::Fernet` wipes its keys on drop; the base64 form of the key used to
/// build it is wiped here.
pub struct RoomCipher {
    fernet: fernet::Fernet,
    files: fernet::Fernet,
}

impl RoomCipher {
    pub fn new(room_key: &Key32) -> Self {
        let mut okm = [0u8; 32];
        Hkdf::<Sha256>::new(None, room_key.as_bytes())
            .expand(FILE_KEY_INFO, &mut okm)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let file_key = Key32::new(okm);
        zeroize::Zeroize::zeroize(&mut okm);
        Self {
            fernet: fernet_of(room_key),
            files: fernet_of(&file_key),
        }
    }

    pub fn from_password(password: &Password, room_salt: &[u8]) -> Self {
        Self::new(&derive_room_key(password, room_salt))
    }

    /// A Fernet token for `plaintext`.
    pub fn encrypt(&self, plaintext: &str) -> String {
        self.fernet.encrypt(plaintext.as_bytes())
    }

    /// A token for part of a file (a chunk, or the offer's description),
    /// under the file key.
    pub fn encrypt_file_part(&self, plaintext: &[u8]) -> String {
        self.files.encrypt(plaintext)
    }

    /// The plaintext bytes of a file part's token, wiped when dropped.
    pub fn decrypt_file_part(
        &self,
        token: &str,
    ) -> Result<Zeroizing<Vec<u8>>, UndecryptableMessage> {
        self.files
            .decrypt(token)
            .map(Zeroizing::new)
            .map_err(|_| UndecryptableMessage)
    }

    /// The plaintext of a token. Fernet's TTL is not used: history may be old.
    pub fn decrypt(&self, token: &str) -> Result<String, UndecryptableMessage> {
        let bytes = self
            .fernet
            .decrypt(token)
            .map_err(|_| UndecryptableMessage)?;
        String::from_utf8(bytes).map_err(|e| {
            let mut bytes = e.into_bytes();
            zeroize::Zeroize::zeroize(&mut bytes);
            UndecryptableMessage
        })
    }
}

/// When a Fernet token was made, by its writer's clock, in seconds since
/// the Unix epoch. Fernet authenticates this stamp, so read it only from a
/// token that decrypted: then the server cannot have changed it.
pub fn token_written_at(token: &str) -> Option<u64> {
    // Version byte and the 8-byte stamp: the first 12 base64 characters.
    let head = URL_SAFE.decode(token.get(..12)?).ok()?;
    (head[0] == 0x80).then(|| u64::from_be_bytes(head[1..9].try_into().expect("9 bytes")))
}

/// A Fernet for `key`.
fn fernet_of(key: &Key32) -> fernet::Fernet {
    let encoded = Zeroizing::new(URL_SAFE.encode(key.as_bytes()));
    fernet::Fernet::new(&encoded).expect("a 32-byte key is a valid Fernet key")
}

impl std::fmt::Debug for RoomCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomCipher([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_tells_when_it_was_written() {
        let cipher = RoomCipher::new(&Key32::new([3; 32]));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let written = token_written_at(&cipher.encrypt("hi")).unwrap();
        assert!(written.abs_diff(now) <= 2, "{written} vs {now}");
        // 1.x's tokens, made by Python's cryptography, the same way.
        let vectors: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("../../tests/data/room_key_vectors.json")).unwrap();
        let token = vectors[0]["token"].as_str().unwrap();
        assert!(token_written_at(token).unwrap() > 1_600_000_000);
        assert_eq!(token_written_at("not a token"), None);
        assert_eq!(token_written_at(""), None);
    }

    /// Fixed vector computed with Python's `cryptography` HKDF, the primitive
    /// cmd-chat 1.x uses (see tests/data/room_key_vectors.json).
    #[test]
    fn room_key_matches_python_vectors() {
        let vectors: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("../../tests/data/room_key_vectors.json")).unwrap();
        assert!(!vectors.is_empty());
        for case in vectors {
            let password = Password::new(case["password"].as_str().unwrap().to_owned());
            let salt = hex(case["room_salt"].as_str().unwrap());
            let key = derive_room_key(&password, &salt);
            assert_eq!(
                hex(case["room_key"].as_str().unwrap()),
                key.as_bytes().to_vec()
            );
            let cipher = RoomCipher::new(&key);
            assert_eq!(
                cipher.decrypt(case["token"].as_str().unwrap()).unwrap(),
                case["plaintext"]
            );
        }
    }

    #[test]
    fn round_trip_and_wrong_key() {
        let a = RoomCipher::from_password(&Password::new("pw".into()), b"0123456789abcdef");
        let b = RoomCipher::from_password(&Password::new("other".into()), b"0123456789abcdef");
        let token = a.encrypt("héllo");
        assert_eq!(a.decrypt(&token).unwrap(), "héllo");
        assert!(b.decrypt(&token).is_err());
        assert!(a.decrypt("not a token").is_err());
    }

    /// A file's parts and messages never open under each other's key.
    #[test]
    fn file_parts_and_messages_do_not_mix() {
        let cipher = RoomCipher::from_password(&Password::new("pw".into()), b"0123456789abcdef");
        let part = cipher.encrypt_file_part(br#"{"from":"carol","text":"hi"}"#);
        assert!(cipher.decrypt(&part).is_err());
        let message = cipher.encrypt(r#"{"from":"carol","text":"hi"}"#);
        assert!(cipher.decrypt_file_part(&message).is_err());
        assert_eq!(&cipher.decrypt_file_part(&part).unwrap()[..4], b"{\"fr");
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
