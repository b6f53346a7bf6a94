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

/// Accepts `text` only if it has the structure of a Fernet token.
pub fn check_shape(text: &str) -> Result<(), TokenError> {
    if text.len() > MAX_TOKEN_LEN {
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
}
