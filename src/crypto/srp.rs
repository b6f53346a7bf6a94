//! SRP-6a exactly as cmd-chat 1.x computes it.
//!
//! The original uses pysrp 1.0.22 with `rfc5054_enable()`, SHA-256, the RFC 5054
//! 2048-bit group and the fixed identity `I = "chat"`. The `srp` crate's own
//! client and server compute `M` differently, so only its group constants are
//! used here; the arithmetic follows pysrp, byte for byte:
//!
//! ```text
//! x = H(s | H("chat" ":" password))      v = g^x mod N
//! k = H(PAD(N) | PAD(g))                 u = H(PAD(A) | PAD(B))
//! K = H(S)
//! M = H((H(N) xor H(PAD(g))) | H("chat") | s | A | B | K)
//! H_AMK = H(A | M | K)
//! ```
//!
//! `PAD` left-pads to the byte length of `N`; every other integer is written
//! as minimal big-endian bytes. pysrp's default (OpenSSL) backend treats the
//! salt as an integer, so its leading zero bytes drop out of `x` and `M`; its
//! pure-Python backend does not. We strip them as the default backend does and
//! never generate a salt that starts with a zero byte, so both agree with us.
//! `tests/data/srp_vectors.json` holds vectors produced by pysrp itself.

use std::sync::LazyLock;

use num_bigint::BigUint;
use num_traits::Zero;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::secret::{Key32, Password, SecretUint};

/// The SRP identity every cmd-chat room uses; the chat username is not part of SRP.
pub const IDENTITY: &[u8] = b"chat";
/// Salt length: 128 bits, so verifiers of two rooms with one password differ.
pub const SALT_LEN: usize = 16;
/// Ephemeral secrets `a` and `b`: 256 bits, the strength of the 2048-bit group and of SHA-256.
pub const EPHEMERAL_LEN: usize = 32;
/// Byte length of `N`; public values longer than this are malformed.
pub const N_LEN: usize = 256;

/// Why an SRP exchange was abandoned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SrpError {
    #[error("the client's public value A is invalid (A mod N = 0 or longer than N)")]
    BadClientPublic,
    #[error("the server's public value B is invalid (B mod N = 0, u = 0 or longer than N)")]
    BadServerPublic,
    #[error("the proof does not match: wrong password")]
    WrongPassword,
    #[error("the server's proof does not match: the server does not know the room password")]
    ServerNotAuthentic,
}

/// Group constants and the hashes that depend only on them, computed once.
struct Group {
    n: BigUint,
    g: BigUint,
    /// `k = H(PAD(N) | PAD(g))`.
    k: BigUint,
    /// `H(N) xor H(PAD(g))`, the first input of `M`.
    hn_xor_hg: [u8; 32],
    /// `H(I)`, the second input of `M`.
    h_identity: [u8; 32],
}

static GROUP: LazyLock<Group> = LazyLock::new(|| {
    let n = srp::groups::G_2048.n.clone();
    let g = srp::groups::G_2048.g.clone();
    assert_eq!(n.to_bytes_be().len(), N_LEN);
    let k = BigUint::from_bytes_be(&sha256(&[&pad(&n), &pad(&g)]));
    let hn = sha256(&[&n.to_bytes_be()]);
    let hg = sha256(&[&pad(&g)]);
    let mut hn_xor_hg = [0u8; 32];
    for (out, (a, b)) in hn_xor_hg.iter_mut().zip(hn.iter().zip(hg.iter())) {
        *out = a ^ b;
    }
    Group {
        n,
        g,
        k,
        hn_xor_hg,
        h_identity: sha256(&[IDENTITY]),
    }
});

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

/// `x` left-padded with zeros to the byte length of `N`.
fn pad(x: &BigUint) -> Vec<u8> {
    let bytes = x.to_bytes_be();
    let mut out = vec![0u8; N_LEN.saturating_sub(bytes.len())];
    out.extend_from_slice(&bytes);
    out
}

/// Minimal big-endian bytes, as pysrp's `long_to_bytes` (zero is empty).
fn minimal(x: &BigUint) -> Vec<u8> {
    if x.is_zero() {
        Vec::new()
    } else {
        x.to_bytes_be()
    }
}

/// Leading zero bytes removed: what pysrp hashes after turning bytes into an integer.
fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

fn random_bytes<const L: usize>() -> [u8; L] {
    use rand::Rng;
    let mut buf = [0u8; L];
    rand::rng().fill_bytes(&mut buf);
    buf
}

/// `x = H(s | H(I ":" P))`: the salt without leading zeros, the inner hash whole.
fn private_key(salt: &[u8], password: &Password) -> SecretUint {
    let mut inner = Sha256::new();
    inner.update(IDENTITY);
    inner.update(b":");
    inner.update(password.as_bytes());
    let inner: zeroize::Zeroizing<[u8; 32]> = zeroize::Zeroizing::new(inner.finalize().into());
    let x = zeroize::Zeroizing::new(sha256(&[strip_zeros(salt), &*inner]));
    SecretUint::from_bytes_be(&*x)
}

fn scrambler(a: &BigUint, b: &BigUint) -> BigUint {
    BigUint::from_bytes_be(&sha256(&[&pad(a), &pad(b)]))
}

/// `K = H(S)`, then `M` and `H_AMK` from it.
fn proofs(
    salt: &[u8],
    a_pub: &BigUint,
    b_pub: &BigUint,
    s: &SecretUint,
) -> (Key32, [u8; 32], [u8; 32]) {
    let group = &*GROUP;
    let s_bytes = zeroize::Zeroizing::new(minimal(s.expose()));
    let key = Key32::new(sha256(&[&s_bytes]));
    let a_bytes = minimal(a_pub);
    let m = sha256(&[
        &group.hn_xor_hg,
        &group.h_identity,
        strip_zeros(salt),
        &a_bytes,
        &minimal(b_pub),
        key.as_bytes(),
    ]);
    let h_amk = sha256(&[&a_bytes, &m, key.as_bytes()]);
    (key, m, h_amk)
}

/// Parses a peer's public value; `None` when longer than `N` or `≡ 0 (mod N)`.
fn parse_public(bytes: &[u8]) -> Option<BigUint> {
    if bytes.len() > N_LEN {
        return None;
    }
    let value = BigUint::from_bytes_be(bytes);
    if (&value % &GROUP.n).is_zero() {
        None
    } else {
        Some(value)
    }
}

/// What the server keeps instead of the password: salt and verifier `v = g^x`.
///
/// Anyone holding it can test password guesses offline, so it is wiped on drop
/// like a secret, but it cannot be used to log in.
pub struct Verifier {
    salt: [u8; SALT_LEN],
    v: SecretUint,
}

impl Verifier {
    /// Derives the verifier with a fresh random salt. The caller drops the
    /// password afterwards; the server never needs it again.
    pub fn new(password: &Password) -> Self {
        let mut salt: [u8; SALT_LEN] = random_bytes();
        // A leading zero byte would make pysrp's two backends disagree on `x`.
        while salt[0] == 0 {
            salt[0] = random_bytes::<1>()[0];
        }
        Self::with_salt(salt, password)
    }

    fn with_salt(salt: [u8; SALT_LEN], password: &Password) -> Self {
        let x = private_key(&salt, password);
        let v = SecretUint::new(GROUP.g.modpow(x.expose(), &GROUP.n));
        Self { salt, v }
    }

    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier([redacted])")
    }
}

/// The server's half of one login, between `srp_init` and `srp_verify`.
///
/// As in pysrp, everything is computed up front from `A`, so `verify` is a
/// cheap comparison. It is consumed by `verify`, whatever the outcome, so a
/// session can be tried once only.
pub struct ServerSession {
    b_pub: BigUint,
    expected_m: [u8; 32],
    h_amk: [u8; 32],
    key: Key32,
}

impl ServerSession {
    /// Starts a login from the client's `A` (minimal big-endian bytes).
    ///
    /// Three 2048-bit exponentiations: run it off the async reactor.
    pub fn start(verifier: &Verifier, a_bytes: &[u8]) -> Result<Self, SrpError> {
        let b = SecretUint::from_bytes_be(&random_bytes::<EPHEMERAL_LEN>());
        Self::start_with_secret(verifier, a_bytes, b)
    }

    fn start_with_secret(
        verifier: &Verifier,
        a_bytes: &[u8],
        b: SecretUint,
    ) -> Result<Self, SrpError> {
        let group = &*GROUP;
        let a_pub = parse_public(a_bytes).ok_or(SrpError::BadClientPublic)?;
        let v = verifier.v.expose();
        let b_pub = (&group.k * v + group.g.modpow(b.expose(), &group.n)) % &group.n;
        let u = scrambler(&a_pub, &b_pub);
        // S = (A · v^u)^b mod N
        let base = SecretUint::new((&a_pub * v.modpow(&u, &group.n)) % &group.n);
        let s = SecretUint::new(base.expose().modpow(b.expose(), &group.n));
        let (key, expected_m, h_amk) = proofs(&verifier.salt, &a_pub, &b_pub, &s);
        Ok(Self {
            b_pub,
            expected_m,
            h_amk,
            key,
        })
    }

    /// `B`, minimal big-endian, for the `srp_init` reply.
    pub fn public(&self) -> Vec<u8> {
        minimal(&self.b_pub)
    }

    /// Checks the client's proof in constant time; on success returns `H_AMK`
    /// for the client and the session key `K`.
    pub fn verify(self, m: &[u8]) -> Result<([u8; 32], Key32), SrpError> {
        if bool::from(self.expected_m.as_slice().ct_eq(m)) {
            Ok((self.h_amk, self.key.clone()))
        } else {
            Err(SrpError::WrongPassword)
        }
    }
}

impl Drop for ServerSession {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.expected_m.zeroize();
        self.h_amk.zeroize();
    }
}

/// The client's half of one login.
pub struct ClientSession {
    a: SecretUint,
    a_pub: BigUint,
}

impl ClientSession {
    pub fn new() -> Self {
        Self::with_secret(SecretUint::from_bytes_be(&random_bytes::<EPHEMERAL_LEN>()))
    }

    fn with_secret(a: SecretUint) -> Self {
        let a_pub = GROUP.g.modpow(a.expose(), &GROUP.n);
        Self { a, a_pub }
    }

    /// `A`, minimal big-endian, for `srp_init`.
    pub fn public(&self) -> Vec<u8> {
        minimal(&self.a_pub)
    }

    /// Answers the server's challenge: returns the proof `M` to send and what
    /// is needed to check the server's `H_AMK`.
    pub fn respond(
        self,
        password: &Password,
        salt: &[u8],
        b_bytes: &[u8],
    ) -> Result<ClientProof, SrpError> {
        let group = &*GROUP;
        let b_pub = parse_public(b_bytes).ok_or(SrpError::BadServerPublic)?;
        let u = scrambler(&self.a_pub, &b_pub);
        if u.is_zero() {
            return Err(SrpError::BadServerPublic);
        }
        let x = private_key(salt, password);
        let v = SecretUint::new(group.g.modpow(x.expose(), &group.n));
        // S = (B - k·v)^(a + u·x) mod N, kept non-negative.
        let kv = SecretUint::new((&group.k * v.expose()) % &group.n);
        let base = SecretUint::new(((&b_pub % &group.n) + &group.n - kv.expose()) % &group.n);
        let exponent = SecretUint::new(self.a.expose() + &u * x.expose());
        let s = SecretUint::new(base.expose().modpow(exponent.expose(), &group.n));
        let (key, m, h_amk) = proofs(salt, &self.a_pub, &b_pub, &s);
        Ok(ClientProof {
            m,
            expected_h_amk: h_amk,
            key,
        })
    }
}

impl Default for ClientSession {
    fn default() -> Self {
        Self::new()
    }
}

/// The client's proof `M`, waiting for the server's `H_AMK`.
pub struct ClientProof {
    m: [u8; 32],
    expected_h_amk: [u8; 32],
    key: Key32,
}

impl ClientProof {
    pub fn m(&self) -> &[u8; 32] {
        &self.m
    }

    /// Checks the server's `H_AMK` in constant time. Only a server that knows
    /// the verifier can produce it, so success authenticates the server too.
    pub fn verify_server(self, h_amk: &[u8]) -> Result<Key32, SrpError> {
        if bool::from(self.expected_h_amk.as_slice().ct_eq(h_amk)) {
            Ok(self.key.clone())
        } else {
            Err(SrpError::ServerNotAuthentic)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s = if s.len() % 2 == 1 {
            format!("0{s}")
        } else {
            s.to_owned()
        };
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn big(s: &str) -> BigUint {
        BigUint::parse_bytes(s.as_bytes(), 16).unwrap()
    }

    /// Vectors produced by pysrp 1.0.22 (`tests/python/gen_srp_vectors.py`).
    #[test]
    fn matches_pysrp_vectors() {
        let vectors: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("../../tests/data/srp_vectors.json")).unwrap();
        assert!(vectors.len() >= 4);
        for case in &vectors {
            let field = |name: &str| {
                case[name]
                    .as_str()
                    .unwrap_or_else(|| panic!("missing {name}"))
            };
            let note = case["note"].as_str().unwrap_or("");
            let password = Password::new(field("password").to_owned());
            let salt: [u8; SALT_LEN] = hex(field("salt")).try_into().expect("16-byte salt");

            assert_eq!(GROUP.k, big(field("k")), "k ({note})");
            assert_eq!(
                *private_key(&salt, &password).expose(),
                big(field("x")),
                "x ({note})"
            );
            let verifier = Verifier::with_salt(salt, &password);
            assert_eq!(*verifier.v.expose(), big(field("v")), "v ({note})");

            let client = ClientSession::with_secret(SecretUint::new(big(field("a"))));
            assert_eq!(client.a_pub, big(field("A")), "A ({note})");
            let server = ServerSession::start_with_secret(
                &verifier,
                &client.public(),
                SecretUint::new(big(field("b"))),
            )
            .unwrap();
            assert_eq!(server.b_pub, big(field("B")), "B ({note})");
            assert_eq!(
                scrambler(&client.a_pub, &server.b_pub),
                big(field("u")),
                "u ({note})"
            );

            let proof = client.respond(&password, &salt, &server.public()).unwrap();
            assert_eq!(proof.m.to_vec(), hex(field("M")), "M ({note})");
            assert_eq!(proof.key.as_bytes().to_vec(), hex(field("K")), "K ({note})");
            let (h_amk, server_key) = server.verify(proof.m()).unwrap();
            assert_eq!(h_amk.to_vec(), hex(field("H_AMK")), "H_AMK ({note})");
            assert_eq!(server_key.as_bytes(), proof.key.as_bytes());
            proof.verify_server(&h_amk).unwrap();
        }
    }

    #[test]
    fn wrong_password_is_refused_and_keys_differ() {
        let verifier = Verifier::new(&Password::new("right".into()));
        let client = ClientSession::new();
        let server = ServerSession::start(&verifier, &client.public()).unwrap();
        let proof = client
            .respond(
                &Password::new("wrong".into()),
                verifier.salt(),
                &server.public(),
            )
            .unwrap();
        assert_eq!(
            server.verify(proof.m()).unwrap_err(),
            SrpError::WrongPassword
        );
    }

    #[test]
    fn degenerate_public_values_are_refused() {
        let verifier = Verifier::new(&Password::new("pw".into()));
        let n = GROUP.n.clone();
        for a in [BigUint::zero(), n.clone(), &n * 2u32] {
            let bytes = if a.is_zero() {
                vec![0]
            } else {
                a.to_bytes_be()
            };
            assert_eq!(
                ServerSession::start(&verifier, &bytes).err(),
                Some(SrpError::BadClientPublic)
            );
        }
        assert_eq!(
            ServerSession::start(&verifier, &[]).err(),
            Some(SrpError::BadClientPublic)
        );
        let client = ClientSession::new();
        let pw = Password::new("pw".into());
        assert_eq!(
            client.respond(&pw, verifier.salt(), &n.to_bytes_be()).err(),
            Some(SrpError::BadServerPublic)
        );
    }

    #[test]
    fn forged_server_proof_is_refused() {
        let pw = Password::new("pw".into());
        let verifier = Verifier::new(&pw);
        let client = ClientSession::new();
        let server = ServerSession::start(&verifier, &client.public()).unwrap();
        let proof = client
            .respond(&pw, verifier.salt(), &server.public())
            .unwrap();
        assert_eq!(
            proof.verify_server(&[0u8; 32]).unwrap_err(),
            SrpError::ServerNotAuthentic
        );
    }
}
