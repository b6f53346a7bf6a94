//! The shape of a Fernet token, checked by the server without the key.
//!
//! The server cannot read messages, but it can refuse anything that is not
//! shaped like a Fernet token, so a misconfigured client never posts plaintext
//! into the room's history.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

use super::limits::MAX_TOKEN_LEN;

/// Version byte of every Fernet token.
const FERNET_VERSION: u8 = 0x80;
/// Version (1) + timestamp (8) + IV (16) + HMAC (32).
const FERNET_OVERHEAD: usize = 57;
/// AES block size: the ciphertext is a non-empty multiple of it.
const AES_BLOCK: usize = 16;

/// URL-safe base64 with or without padding (Python emits padding).
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a message text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("message refused: longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("message refused: it is not an encrypted Fernet token (plaintext is never accepted)")]
    NotFernet,
}

/// Length of the Fernet token (padded URL-safe base64, as Python and the
/// `fernet` crate write it) for `plaintext` bytes.
pub const fn fernet_token_len(plaintext: usize) -> usize {
    let padded = (plaintext / AES_BLOCK + 1) * AES_BLOCK;
    (FERNET_OVERHEAD + padded).div_ceil(3) * 4
}

/// Accepts `text` only if it has the structure of a Fernet token.
pub fn check_shape(text: &str) -> Result<(), TokenError> {
    check_shape_within(text, MAX_TOKEN_LEN)
}

/// Like [`check_shape`], with another length bound (file chunks, file
/// metadata). [`TokenError::TooLong`] then means longer than `max_len`.
pub fn check_shape_within(text: &str, max_len: usize) -> Result<(), TokenError> {
    if text.len() > max_len {
        return Err(TokenError::TooLong);
    }
    let raw = URL_SAFE_LENIENT
        .decode(text)
        .map_err(|_| TokenError::NotFernet)?;
    let well_formed = raw.len() >= FERNET_OVERHEAD + AES_BLOCK
        && (raw.len() - FERNET_OVERHEAD).is_multiple_of(AES_BLOCK)
        && raw[0] == FERNET_VERSION;
    if well_formed {
        Ok(())
    } else {
        Err(TokenError::NotFernet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Password, RoomCipher};

    #[test]
    fn real_tokens_pass_and_others_fail() {
        let cipher = RoomCipher::from_password(&Password::new("pw".into()), b"salt");
        for text in ["", "hi", &"x".repeat(1000)] {
            assert_eq!(check_shape(&cipher.encrypt(text)), Ok(()));
        }
        assert_eq!(check_shape("hello world"), Err(TokenError::NotFernet));
        assert_eq!(check_shape(""), Err(TokenError::NotFernet));
        // Right length, wrong version byte.
        let mut raw = vec![0u8; FERNET_OVERHEAD + AES_BLOCK];
        raw[0] = 0x81;
        let token = base64::engine::general_purpose::URL_SAFE.encode(&raw);
        assert_eq!(check_shape(&token), Err(TokenError::NotFernet));
        raw[0] = FERNET_VERSION;
        raw.push(0);
        let token = base64::engine::general_purpose::URL_SAFE.encode(&raw);
        assert_eq!(check_shape(&token), Err(TokenError::NotFernet));
        assert_eq!(
            check_shape(&"A".repeat(MAX_TOKEN_LEN + 4)),
            Err(TokenError::TooLong)
        );
    }

    #[test]
    fn token_length_is_predicted_exactly() {
        let cipher = RoomCipher::from_password(&Password::new("pw".into()), b"salt");
        for n in [0, 1, 15, 16, 17, 1000, crate::protocol::limits::FILE_CHUNK] {
            let token = cipher.encrypt_file_part(&vec![7u8; n]);
            assert_eq!(token.len(), fernet_token_len(n), "{n} bytes");
            assert_eq!(check_shape_within(&token, fernet_token_len(n)), Ok(()));
            assert_eq!(
                check_shape_within(&token, fernet_token_len(n) - 1),
                Err(TokenError::TooLong)
            );
        }
    }
}
