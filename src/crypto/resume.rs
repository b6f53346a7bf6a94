//! The proof a reconnecting member shows to resume its session.

use hmac::{KeyInit, Mac};

use super::secret::Key32;

/// `HMAC-SHA256(resume_token, hello)`, where `hello` is the digest of the
/// reconnecting login's `srp_init` fields (`protocol::handshake`). The
/// server gave the session its `resume_token` inside the sealed channel;
/// binding the proof to the new login's fresh `A` means someone who sees it
/// and replays it gets a challenge they cannot answer, and it reveals nothing
/// about the token.
pub fn resume_proof(resume_token: &Key32, hello: &[u8; 32]) -> [u8; 32] {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(resume_token.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(hello);
    mac.finalize().into_bytes().into()
}
