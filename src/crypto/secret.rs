//! Types for the few secrets cmd-chat holds.
//!
//! Every secret lives in a type that wipes its bytes when dropped, prints as
//! `[redacted]` under `{:?}` and has no `Display`, so it cannot end up in a log
//! line or an error message by accident.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// The room password, as typed by the person who runs or joins the room, or
/// its Argon2id stretch (see [`crate::crypto::kdf`]).
///
/// The server holds it only until it has derived its SRP verifier; a client
/// holds it until it has derived the room key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Password(Vec<u8>);

impl Password {
    /// Takes ownership of the typed password; its bytes are wiped on drop.
    pub fn new(password: String) -> Self {
        Self(password.into_bytes())
    }

    /// A password that is not text: the output of the password stretch.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The password bytes exactly as they feed SRP's `x` and the room key (UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// A 32-byte symmetric secret: the SRP session key `K`, the room key, a
/// transport key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key32([u8; 32]);

impl Key32 {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Key32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key32([redacted])")
    }
}

/// A secret fixed-size integer or Montgomery residue (SRP's `a`, `b`, `x`,
/// `v`, `S` and what is computed from them), wiped on drop.
///
/// `T` is a `crypto-bigint` type: fixed size, no heap, zeroized in place with
/// volatile writes. The arithmetic works on copies of such values on the
/// stack, and temporaries inside the crate's own routines (e.g. the window
/// of powers in `pow`) are out of reach; this wipes what we own.
pub struct SecretUint<T: Zeroize>(T);

impl<T: Zeroize> SecretUint<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for SecretUint<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for SecretUint<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretUint([redacted])")
    }
}
