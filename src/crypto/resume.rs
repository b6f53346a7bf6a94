//! The proof a reconnecting member shows to take its session over.

use hmac::{KeyInit, Mac};

use super::secret::Key32;

/// `HMAC-SHA256(resume_token, M)`. The server gave the session its
/// `resume_token` inside the sealed channel; binding the proof to the new
/// login's SRP proof `M` (fresh every login) means an eavesdropper who sees it
/// cannot replay it, and it reveals nothing about the token.
pub fn resume_proof(resume_token: &Key32, m: &[u8]) -> [u8; 32] {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(resume_token.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(m);
    mac.finalize().into_bytes().into()
}
