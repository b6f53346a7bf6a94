//! Types for the few secrets cmd-chat holds.
//!
//! Every secret lives in a type that wipes its bytes when dropped, prints as
//! `[redacted]` under `{:?}` and has no `Display`, so it cannot end up in a log
//! line or an error message by accident.

use std::fmt;

use num_bigint::BigUint;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

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

/// A secret big integer (SRP's `a`, `b`, `x`, `S`).
///
/// `num-bigint` has no zeroize support, so on drop the limbs are overwritten in
/// place before the allocation is freed. Temporaries inside `modpow` are out of
/// reach; this wipes what we own.
pub struct SecretUint(BigUint);

impl SecretUint {
    pub fn new(value: BigUint) -> Self {
        Self(value)
    }

    pub fn from_bytes_be(bytes: &[u8]) -> Self {
        Self(BigUint::from_bytes_be(bytes))
    }

    pub fn expose(&self) -> &BigUint {
        &self.0
    }
}

impl Drop for SecretUint {
    fn drop(&mut self) {
        // `assign_from_slice` clears the limb vector and refills it in the same
        // allocation, so the old limbs are overwritten with zeros.
        // Exactly as many (64-bit) digits as the number holds, so the
        // refill fits the allocation and never reallocates it.
        let limbs = Zeroizing::new(vec![0u32; (self.0.bits() as usize).div_ceil(64) * 2]);
        self.0.assign_from_slice(&limbs);
    }
}

impl fmt::Debug for SecretUint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretUint([redacted])")
    }
}
