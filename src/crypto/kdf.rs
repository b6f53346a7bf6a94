//! Password stretching for native-only rooms.
//!
//! SRP stops a network eavesdropper from testing guesses, but whoever dumps
//! the server's memory gets the verifier, the salts and the ciphertext history,
//! and could test guesses at hash speed. In rooms that admit only native
//! clients, both SRP's `x` and the room key are therefore derived from
//! `Argon2id(password, kdf_salt, params)` instead of the password itself, so
//! every guess costs tens of MiB of memory and a good fraction of a second.
//! Rooms that admit cmd-chat 1.x clients keep the original derivations, since
//! those clients cannot stretch.

use serde::{Deserialize, Serialize};

use super::secret::Password;

/// Length of the per-room KDF salt.
pub const KDF_SALT_LEN: usize = 16;

/// Argon2id cost parameters, as announced in the `srp_init` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes over the memory.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// 64 MiB, 3 passes, 1 lane: a fraction of a second on a laptop core
    /// (see SECURITY.md for measured figures), paid once per login.
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
    };

    /// The least a client accepts: what `serve --kdf-memory` allows at its
    /// lowest (8 MiB, 3 passes, 1 lane). An impostor posing as the server
    /// who announced less would make each password guess it got to test
    /// (one per login, from the proof the client sends) cheap.
    pub const CLIENT_MIN: KdfParams = KdfParams {
        m_kib: 8 * 1024,
        t: 3,
        p: 1,
    };

    /// The most a client agrees to spend, so a hostile server cannot make it
    /// allocate or compute without bound: 1 GiB (`serve --kdf-memory`'s
    /// highest), 4 passes, 4 lanes.
    pub const CLIENT_MAX: KdfParams = KdfParams {
        m_kib: 1024 * 1024,
        t: 4,
        p: 4,
    };

    /// Whether a client should accept these parameters: within
    /// [`Self::CLIENT_MIN`] and [`Self::CLIENT_MAX`], field by field.
    pub fn within_client_limits(&self) -> bool {
        let (min, max) = (Self::CLIENT_MIN, Self::CLIENT_MAX);
        (min.m_kib..=max.m_kib).contains(&self.m_kib)
            && (min.t..=max.t).contains(&self.t)
            && (min.p..=max.p).contains(&self.p)
            && self.argon2().is_ok()
    }

    fn argon2(&self) -> Result<argon2::Argon2<'static>, argon2::Error> {
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(32))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

/// A stretch the parameters do not allow.
#[derive(Debug, thiserror::Error)]
#[error("invalid password-stretching parameters: {0}")]
pub struct KdfError(String);

/// `Argon2id(password, salt, params)`, 32 bytes, as a new [`Password`] that
/// takes the place of the typed one everywhere. CPU- and memory-heavy: run it
/// off the async reactor.
pub fn stretch(password: &Password, salt: &[u8], params: KdfParams) -> Result<Password, KdfError> {
    let argon = params.argon2().map_err(|e| KdfError(e.to_string()))?;
    let mut out = vec![0u8; 32];
    argon
        .hash_password_into(password.as_bytes(), salt, &mut out)
        .map_err(|e| KdfError(e.to_string()))?;
    Ok(Password::from_bytes(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9106 gives no vector for these exact inputs; this one was computed
    /// with Python's `argon2-cffi` (`hash_secret_raw`, type ID, version 19).
    #[test]
    fn stretch_matches_argon2_cffi_and_is_salted() {
        let params = KdfParams {
            m_kib: 64,
            t: 1,
            p: 1,
        };
        let pw = Password::new("pw".into());
        let a = stretch(&pw, b"0123456789abcdef", params).unwrap();
        let b = stretch(&pw, b"0123456789abcdef", params).unwrap();
        let c = stretch(&pw, b"fedcba9876543210", params).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes());
        assert_ne!(a.as_bytes(), c.as_bytes());
        assert_eq!(
            a.as_bytes(),
            &[
                0x1e, 0x0b, 0x1b, 0x73, 0xa1, 0x43, 0xc2, 0x5f, 0xea, 0x6d, 0x45, 0xb1, 0x0e, 0xba,
                0xfe, 0x66, 0x37, 0xad, 0x61, 0x82, 0x84, 0xfb, 0xb7, 0xc3, 0x7b, 0x96, 0xed, 0x98,
                0xd7, 0x43, 0x7e, 0x6d
            ]
        );
    }

    #[test]
    fn client_refuses_parameters_outside_the_floor_and_ceiling() {
        assert!(KdfParams::DEFAULT.within_client_limits());
        assert!(KdfParams::CLIENT_MIN.within_client_limits());
        assert!(KdfParams::CLIENT_MAX.within_client_limits());
        let refused = [
            // Too much: a client stalled or out of memory.
            (u32::MAX, 3, 1),
            (2 * 1024 * 1024, 3, 1),
            (64 * 1024, 1000, 1),
            (64 * 1024, 16, 1),
            (64 * 1024, 3, 64),
            // Too little: an impostor's guesses made cheap.
            (8, 1, 1),
            (1024, 3, 1),
            (64 * 1024, 1, 1),
            (64 * 1024, 3, 0),
        ];
        for (m_kib, t, p) in refused {
            let params = KdfParams { m_kib, t, p };
            assert!(!params.within_client_limits(), "{params:?}");
        }
    }
}
