//! SRP-6a exactly as cmd-chat 1.x computes it, in constant time.
//!
//! The original uses pysrp 1.0.22 with `rfc5054_enable()`, SHA-256, the RFC 5054
//! 2048-bit group and the fixed identity `I = "chat"`. The `srp` crate's own
//! client and server compute `M` differently, so it is not used; the
//! arithmetic follows pysrp, byte for byte:
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
//!
//! # Arithmetic
//!
//! All of it is `crypto-bigint`'s constant-time Montgomery arithmetic modulo
//! the fixed 2048-bit `N` (`ConstMontyForm<_, 32 limbs>`): no branch and no
//! memory access depends on a secret exponent (`a`, `b`, `x`, `a + u·x`) or on
//! `v`. Three kinds of exponentiation:
//!
//! - **Fixed base, secret exponent** (`g^a`, `g^b`, `g^x`): a table of
//!   `g^(j·16^i)` for every 4-bit window `i` of a 256-bit exponent and every
//!   digit `j`, so `g^e` is the product of one entry per row: 63
//!   multiplications and no squaring. Each entry is picked by reading the
//!   whole row with a constant-time select. 64 rows × 16 entries × 256 bytes
//!   = **256 KiB**, one per process, built on first use (about 1.5 ms).
//! - **Fixed base, public exponent** (the server's `v^u`): `v` is secret, but
//!   `u = H(PAD(A) | PAD(B))` is not: `A` and `B` cross the wire in the
//!   clear. So the table of powers of `v` is indexed directly by the digits
//!   of `u`, with no scan: the memory access pattern and the number of
//!   multiplications may reveal `u`, which anyone can compute anyway, and
//!   nothing else, as the entries read do not depend on `v` and every
//!   product is the crate's constant-time multiplication. Without the scan,
//!   8-bit windows pay: at most 31 multiplications, for a table of 32 rows ×
//!   255 entries × 256 bytes ≈ **2 MiB per [`Verifier`]** (the server's room
//!   has one), built once (about 12 ms). See `PublicExponentTable`.
//! - **Variable base, secret exponent** (`(A·v^u)^b`, the client's
//!   `(B − k·v)^(a + u·x)`): 4-bit fixed windows over the exponent's whole
//!   width (256 bits for `b`, 512 for `a + u·x`), the crate's squarings and
//!   multiplications, each window's power picked by the same whole-row
//!   select as the tables. See `pow_secret`.
//!
//! Per login the server computes `B = k·v + g^b` (table; `k·v` is kept with
//! the verifier), `v^u` (public-exponent table) and `S = (A·v^u)^b` (variable
//! base); the client computes `A = g^a` and `g^x` (table) and
//! `S = (B − k·g^x)^(a + u·x)` (variable base). That is about 0.6 ms for the
//! server's half of a login, most of it `(A·v^u)^b`, and 1.0–1.15 ms for the
//! client's (`examples/srp_cost`; BENCHMARKS.md has the figures and their
//! dates).
//!
//! Every secret integer or residue we hold is a [`SecretUint`] or a
//! `Zeroizing` buffer, wiped on drop, and so is the `v` table. What stays
//! variable-time: the checks on the public values `A`, `B` and `u`, the
//! lookups of `v^u` (in `u` only, above), and the hashing of `S` as minimal
//! bytes (pysrp's `K = H(S)` requires it), whose length depends on how many
//! leading zero bytes `S` has.

use std::sync::LazyLock;

use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams, ConstMontyForm};
use crypto_bigint::{
    BoxedUint, MontyForm, MontyMultiplier, Odd, U256, U512, U2048, Uint, Word, const_monty_params,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::secret::{Key32, Password, SecretUint};

/// The SRP identity every cmd-chat room uses; the chat username is not part of SRP.
pub const IDENTITY: &[u8] = b"chat";
/// Salt length: 128 bits, so verifiers of two rooms with one password differ.
pub const SALT_LEN: usize = 16;
/// Ephemeral secrets `a` and `b`: 256 bits, the strength of the 2048-bit group and of SHA-256.
pub const EPHEMERAL_LEN: usize = 32;
/// Byte length of `N`; public values longer than this are malformed.
pub const N_LEN: usize = 256;

const_monty_params!(
    GroupModulus,
    U2048,
    "AC6BDB41324A9A9BF166DE5E1389582FAF72B6651987EE07FC3192943DB56050\
     A37329CBB4A099ED8193E0757767A13DD52312AB4B03310DCD7F48A9DA04FD50\
     E8083969EDB767B0CF6095179A163AB3661A05FBD5FAAAE82918A9962F0B93B8\
     55F97993EC975EEAA80D740ADBF4FF747359D041D5C33EA71D281E446B14773B\
     CA97B43A23FB801676BD207A436C6481F1D2B9078717461A5B9D32E688F87748\
     544523B524B0D57D5EA77A2775D2ECFA032CFBDBF52FB3786160279004E57AE6\
     AF874E7303CE53299CCC041C7BC308D82A5698F3A8D0C38271AE35F8E9DBFBB6\
     94B5C803D89F7AE435DE236D525F54759B65E372FCD68EF20FA7111F9E4AFF73",
    "The RFC 5054 2048-bit prime `N` (Appendix A)."
);

/// An integer modulo `N` in Montgomery form.
type Residue = ConstMontyForm<GroupModulus, { U2048::LIMBS }>;

/// The generator `g` of the RFC 5054 2048-bit group.
const G: u64 = 2;

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

/// Bits of the exponent one row of a [`FixedBase`] table covers.
const WINDOW: usize = 4;
/// Entries of a row: every `WINDOW`-bit digit.
const ENTRIES: usize = 1 << WINDOW;
/// Rows of a table: fixed-base exponents are at most 256 bits.
const ROWS: usize = U256::BITS as usize / WINDOW;

/// Powers of one base for fixed-base exponentiation with SECRET 256-bit
/// exponents (used for `g`): `rows[i][j] = base^(j · 2^(WINDOW·i))`, in
/// Montgomery form. `ROWS × ENTRIES × 256` bytes = 256 KiB. Wiped on drop, so
/// that it is safe with a secret base too. 4-bit windows: 5- or 6-bit ones
/// (416 or 688 KiB) measured 5–10 µs faster of about 95 µs, as their wider
/// constant-time scans eat most of the multiplications they save.
struct FixedBase {
    rows: Vec<[Residue; ENTRIES]>,
}

impl FixedBase {
    /// `ROWS × (ENTRIES − 1)` multiplications: about 1.5 ms.
    fn new(base: &Residue) -> Self {
        let mut rows = Vec::with_capacity(ROWS);
        // base^(2^(WINDOW·i)) for the current row i.
        let mut row_base = Zeroizing::new(*base);
        for _ in 0..ROWS {
            let mut row = [Residue::ONE; ENTRIES];
            for j in 1..ENTRIES {
                row[j] = row[j - 1].mul(&row_base);
            }
            *row_base = row[ENTRIES - 1].mul(&row_base);
            rows.push(row);
            row.zeroize();
        }
        Self { rows }
    }

    /// `base^exponent` in constant time: the product of one entry per row
    /// (`ROWS − 1` multiplications), each selected by reading all of its row.
    fn pow(&self, exponent: &U256) -> Residue {
        // A window never straddles two words.
        const { assert!((Word::BITS as usize).is_multiple_of(WINDOW)) };
        let words = exponent.as_words();
        // Partial products are as secret as the result: wiped when done.
        let mut acc = Zeroizing::new(Residue::ONE);
        let mut entry = Zeroizing::new(Residue::ONE);
        for (i, row) in self.rows.iter().enumerate() {
            let bit = i * WINDOW;
            let mut digit = Zeroizing::new(
                (words[bit / Word::BITS as usize] >> (bit % Word::BITS as usize))
                    & (ENTRIES as Word - 1),
            );
            *entry = select(row, *digit);
            digit.zeroize();
            *acc = if i == 0 { *entry } else { acc.mul(&entry) };
        }
        *acc
    }
}

/// `base^exponent` for a SECRET exponent and a base known only now (the
/// server's `A·v^u`, the client's `B − k·v`), in constant time: 4-bit fixed
/// windows over every bit of `Uint<L>`, a square-and-multiply whose sequence
/// of operations is the same for every exponent, and each window's power
/// picked by [`select`] reading all 16 of them. The crate's own
/// `pow_bounded_exp` uses the same windows (one multiplication more, for
/// the first) but picks the power a word at a time through `cmov`, copying
/// every candidate (about 25 µs of a 256-bit exponentiation here); this one
/// gives the same results (tested) and shares the tables' select.
///
/// The squarings, three in four of the operations, go through the crate's
/// `BoxedMontyForm` multiplier: since crypto-bigint 0.7.11 it squares
/// 2048-bit values with a dedicated kernel (each cross product computed
/// once), which `ConstMontyForm` does not have: it took the server's half
/// of a login from 666–678 to 617–639 µs in `srp_cost` on 2026-12-04 (the
/// current figure is in BENCHMARKS.md). The accumulator and the
/// multiplier's scratch are wiped on drop; left unwiped, as by the crate:
/// the stack slots that `mul` and `select` return their values through.
fn pow_secret<const L: usize>(base: &Residue, exponent: &Uint<L>) -> Residue {
    const { assert!((Word::BITS as usize).is_multiple_of(WINDOW)) };
    // powers[j] = base^j; as secret as the base.
    let mut powers = Zeroizing::new([Residue::ONE; ENTRIES]);
    powers[1] = *base;
    for j in 2..ENTRIES {
        powers[j] = powers[j - 1].mul(base);
    }
    let params = &GROUP.boxed_params;
    let mut multiplier = <BoxedMontyForm as MontyForm>::Multiplier::from(params);
    let mut acc = Zeroizing::new(BoxedMontyForm::one(params));
    let mut entry = Zeroizing::new(BoxedMontyForm::one(params));
    let words = exponent.as_words();
    for i in (0..Uint::<L>::BITS as usize / WINDOW).rev() {
        let bit = i * WINDOW;
        let mut digit = Zeroizing::new(
            (words[bit / Word::BITS as usize] >> (bit % Word::BITS as usize))
                & (ENTRIES as Word - 1),
        );
        let mut power = Zeroizing::new(select(&powers, *digit));
        digit.zeroize();
        entry
            .as_montgomery_mut()
            .as_mut_words()
            .copy_from_slice(power.as_montgomery().as_words());
        power.zeroize();
        if i == Uint::<L>::BITS as usize / WINDOW - 1 {
            acc.as_montgomery_mut()
                .as_mut_words()
                .copy_from_slice(entry.as_montgomery().as_words());
        } else {
            for _ in 0..WINDOW {
                multiplier.square_assign(&mut acc);
            }
            multiplier.mul_assign(&mut acc, &entry);
        }
    }
    let result = Zeroizing::new(U2048::from_words(
        acc.as_montgomery()
            .as_words()
            .try_into()
            .expect("the accumulator has the width of N"),
    ));
    Residue::from_montgomery(*result)
}

/// `row[digit]`, reading every entry of `row` whole: each word of the
/// result is the OR of every entry's word ANDed with a mask that is all ones
/// for `digit`'s entry and zero elsewhere, so which entry was wanted changes
/// no branch and no address. (The crate's own select moves one word at a
/// time through `cmov`, about 25 ns per entry; whole-entry masks vectorize.)
fn select(row: &[Residue; ENTRIES], digit: Word) -> Residue {
    let mut words = Zeroizing::new([0 as Word; U2048::LIMBS]);
    for (j, candidate) in row.iter().enumerate() {
        let mask = Word::from(ct_eq_word(j as Word, digit).to_u8()).wrapping_neg();
        for (word, entry) in words.iter_mut().zip(candidate.as_montgomery().as_words()) {
            *word |= entry & mask;
        }
    }
    Residue::from_montgomery(U2048::from_words(*words))
}

/// crypto-bigint's constant-time equality of two words (called by path: its
/// method name is also `subtle`'s).
fn ct_eq_word(a: Word, b: Word) -> crypto_bigint::Choice {
    crypto_bigint::CtEq::ct_eq(&a, &b)
}

impl Drop for FixedBase {
    fn drop(&mut self) {
        self.rows.zeroize();
    }
}

/// Bits of the exponent one row of a [`PublicExponentTable`] covers.
const PUBLIC_WINDOW: usize = 8;
/// Rows of a [`PublicExponentTable`]: exponents are at most 256 bits.
const PUBLIC_ROWS: usize = (U256::BITS as usize).div_ceil(PUBLIC_WINDOW);
/// Entries stored per row: every nonzero `PUBLIC_WINDOW`-bit digit (digit 0
/// contributes nothing and needs no entry).
const PUBLIC_ENTRIES: usize = (1 << PUBLIC_WINDOW) - 1;

/// Powers of a secret base, for exponents that are PUBLIC: the server's
/// `v^u`, where `v` is secret (a password verifier) but `u = H(PAD(A) |
/// PAD(B))` is not (`A` and `B` are both sent in the clear, so anyone who
/// sees the login can compute `u`).
///
/// Like [`FixedBase`], `base^e` is the product of one entry per row, but each
/// entry is read directly at its index instead of by scanning the whole row
/// with constant-time selects, and rows whose digit is 0 are skipped. So
/// which entries are read (cache lines touched) and how many multiplications
/// are done depend on the exponent, and can tell an observer the exponent,
/// which they can compute anyway. They do not depend on the base: the entries
/// read are the same whatever `v` is, every entry has the same size, and
/// every product is the crate's constant-time Montgomery multiplication,
/// whose time does not depend on its operands. So nothing about `v` leaks.
/// Never use it with a secret exponent: that is what [`FixedBase`] is for.
///
/// Without the scan, wide windows pay: with 8-bit windows a 256-bit exponent
/// takes at most 31 multiplications (63 with [`FixedBase`]'s 4-bit windows,
/// plus their scans), for a table of 32 rows × 255 entries × 256 bytes =
/// 2,040 KiB, built once per [`Verifier`] in about 12 ms. Measured `v^u`:
/// about 38 µs, against 106 µs with a [`FixedBase`] table; 6-bit windows (42
/// multiplications, 672 KiB, 4 ms to build) take about 54 µs, 10-bit ones
/// (25 multiplications, 6.5 MiB, 39 ms to build) about 34 µs. Wiped on drop:
/// it is as sensitive as `v`.
struct PublicExponentTable {
    /// `entries[i · PUBLIC_ENTRIES + (j − 1)] = base^(j · 2^(PUBLIC_WINDOW·i))`
    /// for row `i` and digit `j ≥ 1`, in Montgomery form.
    entries: Vec<Residue>,
}

impl PublicExponentTable {
    /// `PUBLIC_ROWS × PUBLIC_ENTRIES` multiplications: about 12 ms.
    fn new(base: &Residue) -> Self {
        // Allocated once at its final size: a reallocation would leave an
        // unwiped copy of the entries behind.
        let mut entries = Vec::with_capacity(PUBLIC_ROWS * PUBLIC_ENTRIES);
        // base^(2^(PUBLIC_WINDOW·i)) for the current row i.
        let mut row_base = Zeroizing::new(*base);
        for _ in 0..PUBLIC_ROWS {
            let mut power = Zeroizing::new(*row_base);
            entries.push(*power);
            for _ in 1..PUBLIC_ENTRIES {
                *power = power.mul(&row_base);
                entries.push(*power);
            }
            // The last entry is row_base^(2^PUBLIC_WINDOW − 1).
            *row_base = power.mul(&row_base);
        }
        Self { entries }
    }

    /// `base`, the table's entry for exponent 1.
    #[cfg(test)]
    fn base(&self) -> &Residue {
        &self.entries[0]
    }

    /// `base^exponent` for a PUBLIC exponent: which entries are read and
    /// how many multiplications are done depend on `exponent` (see the
    /// type's doc); at most `PUBLIC_ROWS − 1` multiplications.
    fn pow_public(&self, exponent: &U256) -> Residue {
        // Partial products of powers of `v` are secret: wiped when done.
        let mut acc = Zeroizing::new(Residue::ONE);
        let mut first = true;
        for (i, row) in self.entries.chunks_exact(PUBLIC_ENTRIES).enumerate() {
            // Digit i of the exponent, the branch on it and the index into
            // the row: all variable-time in the exponent, which is public.
            let shifted = exponent.shr_vartime((i * PUBLIC_WINDOW) as u32);
            let digit = shifted.as_words()[0] as usize & ((1 << PUBLIC_WINDOW) - 1);
            if digit == 0 {
                continue;
            }
            let entry = &row[digit - 1];
            *acc = if first { *entry } else { acc.mul(entry) };
            first = false;
        }
        *acc
    }
}

impl Drop for PublicExponentTable {
    fn drop(&mut self) {
        self.entries.zeroize();
    }
}

/// Group constants, the hashes that depend only on them and the table of
/// powers of `g`, computed once.
struct Group {
    /// `k = H(PAD(N) | PAD(g))`, in Montgomery form.
    k: Residue,
    /// `H(N) xor H(PAD(g))`, the first input of `M`.
    hn_xor_hg: [u8; 32],
    /// `H(I)`, the second input of `M`.
    h_identity: [u8; 32],
    g_table: FixedBase,
    /// `N` for the crate's `BoxedMontyForm`, whose squaring `pow_secret` uses.
    boxed_params: BoxedMontyParams,
}

static GROUP: LazyLock<Group> = LazyLock::new(|| {
    let n = Residue::MODULUS.get().to_be_bytes();
    let g = U2048::from_u64(G);
    let g_bytes = g.to_be_bytes();
    let k = sha256(&[&n, &g_bytes]);
    let hn = sha256(&[strip_zeros(&n)]);
    let hg = sha256(&[&g_bytes]);
    let mut hn_xor_hg = [0u8; 32];
    for (out, (a, b)) in hn_xor_hg.iter_mut().zip(hn.iter().zip(hg.iter())) {
        *out = a ^ b;
    }
    Group {
        k: Residue::new(&U256::from_be_slice(&k).resize()),
        hn_xor_hg,
        h_identity: sha256(&[IDENTITY]),
        g_table: FixedBase::new(&Residue::new(&g)),
        boxed_params: BoxedMontyParams::new(
            Odd::new(BoxedUint::from(Residue::MODULUS.get())).expect("N is odd"),
        ),
    }
});

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

/// Minimal big-endian bytes, as pysrp's `long_to_bytes` (zero is empty).
fn minimal<const LIMBS: usize>(x: &Uint<LIMBS>) -> Vec<u8> {
    strip_zeros(&x.to_be_bytes()).to_vec()
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

/// A fresh ephemeral secret (`a` or `b`).
fn random_secret() -> SecretUint<U256> {
    let bytes = Zeroizing::new(random_bytes::<EPHEMERAL_LEN>());
    SecretUint::new(U256::from_be_slice(&*bytes))
}

/// `x = H(s | H(I ":" P))`: the salt without leading zeros, the inner hash whole.
fn private_key(salt: &[u8], password: &Password) -> SecretUint<U256> {
    let mut inner = Sha256::new();
    inner.update(IDENTITY);
    inner.update(b":");
    inner.update(password.as_bytes());
    let inner: Zeroizing<[u8; 32]> = Zeroizing::new(inner.finalize().into());
    let x = Zeroizing::new(sha256(&[strip_zeros(salt), &*inner]));
    SecretUint::new(U256::from_be_slice(&*x))
}

/// `u = H(PAD(A) | PAD(B))`.
fn scrambler(a: &U2048, b: &U2048) -> U256 {
    U256::from_be_slice(&sha256(&[&a.to_be_bytes(), &b.to_be_bytes()]))
}

/// `K = H(S)`, then `M` and `H_AMK` from it.
fn proofs(
    salt: &[u8],
    a_pub: &U2048,
    b_pub: &U2048,
    s: &SecretUint<U2048>,
) -> (Key32, [u8; 32], [u8; 32]) {
    let group = &*GROUP;
    let s_bytes = Zeroizing::new(s.expose().to_be_bytes());
    let key = Key32::new(sha256(&[strip_zeros(&s_bytes)]));
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

/// Labels of the native login's proofs and key (see [`bind`]).
const NATIVE_CLIENT_PROOF: &[u8] = b"cmd-chat native 4 client proof";
const NATIVE_SERVER_PROOF: &[u8] = b"cmd-chat native 4 server proof";
const NATIVE_SESSION_KEY: &[u8] = b"cmd-chat native 4 session key";

fn hmac(key: &Key32, parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac =
        hmac::Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// A native login's proofs and session key, bound to the handshake
/// `transcript` (the hash of every field that crossed the network before
/// sealing, `protocol::handshake`):
///
/// ```text
/// M'     = HMAC(K, "cmd-chat native 4 client proof" | M | transcript)
/// H_AMK' = HMAC(K, "cmd-chat native 4 server proof" | M' | transcript)
/// K'     = HMAC(K, "cmd-chat native 4 session key" | transcript)
/// ```
///
/// `M'` never equals a 1.x `M`, so a native client's proof is never taken for
/// a 1.x login; and two ends that saw different fields compute different
/// proofs, so a change on the path fails the login.
fn bind(key: &Key32, m: &[u8; 32], transcript: &[u8; 32]) -> (Key32, [u8; 32], [u8; 32]) {
    let m_bound = hmac(key, &[NATIVE_CLIENT_PROOF, m, transcript]);
    let h_amk_bound = hmac(key, &[NATIVE_SERVER_PROOF, &m_bound, transcript]);
    let key_bound = Key32::new(hmac(key, &[NATIVE_SESSION_KEY, transcript]));
    (key_bound, m_bound, h_amk_bound)
}

/// Parses a peer's public value: the integer as sent (what is hashed) and its
/// residue mod `N` (what is computed with); `None` when longer than `N` or
/// `≡ 0 (mod N)`.
fn parse_public(bytes: &[u8]) -> Option<(U2048, Residue)> {
    if bytes.len() > N_LEN {
        return None;
    }
    let mut padded = [0u8; N_LEN];
    padded[N_LEN - bytes.len()..].copy_from_slice(bytes);
    let value = U2048::from_be_slice(&padded);
    // Any value below 2^2048 is reduced correctly (2^2048 < 2N).
    let residue = Residue::new(&value);
    // Public value: a plain comparison will do.
    if residue.retrieve().is_zero_vartime() {
        None
    } else {
        Some((value, residue))
    }
}

/// What the server keeps instead of the password: salt and verifier `v = g^x`,
/// with `k·v` and the table of powers of `v` it uses in every login.
///
/// Anyone holding it can test password guesses offline, so it is wiped on drop
/// like a secret, but it cannot be used to log in.
pub struct Verifier {
    salt: [u8; SALT_LEN],
    /// `k·v`, the first term of `B`.
    kv: SecretUint<Residue>,
    /// Powers of `v` for `v^u` (`u` is public).
    v_table: PublicExponentTable,
}

impl Verifier {
    /// Derives the verifier with a fresh random salt. The caller drops the
    /// password afterwards; the server never needs it again.
    ///
    /// Builds a 2 MiB table of powers of `v` (about 12 ms).
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
        let v = SecretUint::new(GROUP.g_table.pow(x.expose()));
        let kv = SecretUint::new(GROUP.k.mul(v.expose()));
        let v_table = PublicExponentTable::new(v.expose());
        Self { salt, kv, v_table }
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
    b_pub: U2048,
    expected_m: [u8; 32],
    h_amk: [u8; 32],
    key: Key32,
}

impl ServerSession {
    /// Starts a login from the client's `A` (minimal big-endian bytes).
    ///
    /// Two table exponentiations and one 256-bit exponentiation (about
    /// 0.6 ms): run it off the async reactor.
    pub fn start(verifier: &Verifier, a_bytes: &[u8]) -> Result<Self, SrpError> {
        Self::start_with_secret(verifier, a_bytes, random_secret())
    }

    fn start_with_secret(
        verifier: &Verifier,
        a_bytes: &[u8],
        b: SecretUint<U256>,
    ) -> Result<Self, SrpError> {
        let (a_pub, a_residue) = parse_public(a_bytes).ok_or(SrpError::BadClientPublic)?;
        // B = (k·v + g^b) mod N
        let g_b = SecretUint::new(GROUP.g_table.pow(b.expose()));
        let b_pub = verifier.kv.expose().add(g_b.expose()).retrieve();
        let u = scrambler(&a_pub, &b_pub);
        // S = (A · v^u)^b mod N
        // u is public, so its table may be indexed by it (PublicExponentTable).
        let v_u = SecretUint::new(verifier.v_table.pow_public(&u));
        let base = SecretUint::new(a_residue.mul(v_u.expose()));
        let s_montgomery = SecretUint::new(pow_secret(base.expose(), b.expose()));
        let s = SecretUint::new(s_montgomery.expose().retrieve());
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

    /// The same login as a native one: its proofs and key bound to the
    /// handshake `transcript` (see the module's `bind` function).
    pub fn bind(mut self, transcript: &[u8; 32]) -> Self {
        let (key, m, h_amk) = bind(&self.key, &self.expected_m, transcript);
        self.key = key;
        self.expected_m = m;
        self.h_amk = h_amk;
        self
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
        self.expected_m.zeroize();
        self.h_amk.zeroize();
    }
}

/// The client's half of one login.
pub struct ClientSession {
    a: SecretUint<U256>,
    a_pub: U2048,
}

impl ClientSession {
    pub fn new() -> Self {
        Self::with_secret(random_secret())
    }

    fn with_secret(a: SecretUint<U256>) -> Self {
        let a_pub = GROUP.g_table.pow(a.expose()).retrieve();
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
        let (b_pub, b_residue) = parse_public(b_bytes).ok_or(SrpError::BadServerPublic)?;
        let u = scrambler(&self.a_pub, &b_pub);
        if bool::from(u.is_zero()) {
            return Err(SrpError::BadServerPublic);
        }
        let x = private_key(salt, password);
        let v = SecretUint::new(group.g_table.pow(x.expose()));
        // S = (B - k·v)^(a + u·x) mod N. a + u·x < 2^256 + (2^256 - 1)^2 < 2^512,
        // so the 512-bit sum cannot wrap.
        let kv = SecretUint::new(group.k.mul(v.expose()));
        let base = SecretUint::new(b_residue.sub(kv.expose()));
        let ux: SecretUint<U512> = SecretUint::new(x.expose().concatenating_mul(&u));
        let a: SecretUint<U512> = SecretUint::new(self.a.expose().resize());
        let exponent = SecretUint::new(ux.expose().wrapping_add(a.expose()));
        let s_montgomery = SecretUint::new(pow_secret(base.expose(), exponent.expose()));
        let s = SecretUint::new(s_montgomery.expose().retrieve());
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

    /// The same login as a native one: its proofs and key bound to the
    /// handshake `transcript` (see the module's `bind` function).
    pub fn bind(mut self, transcript: &[u8; 32]) -> Self {
        let (key, m, h_amk) = bind(&self.key, &self.m, transcript);
        self.key = key;
        self.m = m;
        self.expected_h_amk = h_amk;
        self
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

    /// A vector's integer as minimal big-endian bytes.
    fn int(s: &str) -> Vec<u8> {
        strip_zeros(&hex(s)).to_vec()
    }

    fn u256(s: &str) -> U256 {
        let bytes = hex(s);
        let mut padded = [0u8; 32];
        padded[32 - bytes.len()..].copy_from_slice(&bytes);
        U256::from_be_slice(&padded)
    }

    fn random_u256() -> U256 {
        U256::from_be_slice(&random_bytes::<32>())
    }

    /// The constant above is the `srp` crate's (RFC 5054) group.
    #[test]
    fn group_is_rfc5054_2048() {
        let n = Residue::MODULUS.get().to_be_bytes();
        assert_eq!(n.as_ref(), srp::groups::G_2048.n.to_bytes_be().as_slice());
        assert_eq!(
            srp::groups::G_2048.g.to_bytes_be(),
            U256::from_u64(G).to_be_bytes().as_ref()[31..].to_vec()
        );
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

            assert_eq!(minimal(&GROUP.k.retrieve()), int(field("k")), "k ({note})");
            assert_eq!(
                minimal(private_key(&salt, &password).expose()),
                int(field("x")),
                "x ({note})"
            );
            let verifier = Verifier::with_salt(salt, &password);
            assert_eq!(
                minimal(&verifier.v_table.base().retrieve()),
                int(field("v")),
                "v ({note})"
            );

            let client = ClientSession::with_secret(SecretUint::new(u256(field("a"))));
            assert_eq!(client.public(), int(field("A")), "A ({note})");
            let server = ServerSession::start_with_secret(
                &verifier,
                &client.public(),
                SecretUint::new(u256(field("b"))),
            )
            .unwrap();
            assert_eq!(server.public(), int(field("B")), "B ({note})");
            assert_eq!(
                minimal(&scrambler(&client.a_pub, &server.b_pub)),
                int(field("u")),
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

    /// The constant-time tables give what the crate's own constant-time `pow`
    /// gives, for `g` and a random base, and for edge and random exponents.
    #[test]
    fn table_pow_matches_crate_pow() {
        let random_base = Residue::new(&U2048::from_be_slice(&random_bytes::<N_LEN>()));
        let random_table = FixedBase::new(&random_base);
        let g = Residue::new(&U2048::from_u64(G));
        let mut exponents = vec![
            U256::ZERO,
            U256::ONE,
            U256::from_u64(2),
            U256::from_u64(15),
            U256::from_u64(16),
            U256::MAX,
            U256::MAX.shr_vartime(1),
            U256::ONE.shl_vartime(255),
        ];
        exponents.extend((0..16).map(|_| random_u256()));
        for e in &exponents {
            assert_eq!(GROUP.g_table.pow(e), g.pow(e), "g^{e}");
            assert_eq!(random_table.pow(e), random_base.pow(e), "base^{e}");
        }
        assert_eq!(GROUP.g_table.pow(&U256::ZERO), Residue::ONE);
        assert_eq!(random_table.pow(&U256::ONE), random_base);
    }

    /// The variable-base exponentiation gives what the crate's constant-time
    /// `pow` gives, for 256- and 512-bit exponents, edge and random.
    #[test]
    fn secret_pow_matches_crate_pow() {
        let base = Residue::new(&U2048::from_be_slice(&random_bytes::<N_LEN>()));
        let mut exponents = vec![
            U256::ZERO,
            U256::ONE,
            U256::from_u64(15),
            U256::from_u64(16),
            U256::MAX,
            U256::ONE.shl_vartime(255),
        ];
        exponents.extend((0..8).map(|_| random_u256()));
        // The digit 15 alone in each window.
        exponents.extend((0..ROWS).map(|i| U256::from_u64(15).shl_vartime((i * WINDOW) as u32)));
        let base_hex = base.retrieve();
        for e in &exponents {
            assert_eq!(pow_secret(&base, e), base.pow(e), "{base_hex}^{e}");
            let wide: U512 = e.concatenating_mul(&random_u256());
            assert_eq!(
                pow_secret(&base, &wide),
                base.pow(&wide),
                "{base_hex}^{wide}"
            );
        }
        for e in [U512::MAX, U512::ONE.shl_vartime(511)] {
            assert_eq!(pow_secret(&base, &e), base.pow(&e), "{base_hex}^{e}");
        }
    }

    /// The public-exponent table gives what the crate's `pow` gives, for edge
    /// exponents (digits 0 and all-ones, in every row, the first and the
    /// last) and random ones.
    #[test]
    fn public_exponent_table_matches_crate_pow() {
        let base = Residue::new(&U2048::from_be_slice(&random_bytes::<N_LEN>()));
        let table = PublicExponentTable::new(&base);
        let digit_max = U256::from_u64((1 << PUBLIC_WINDOW) - 1);
        let top_row = ((PUBLIC_ROWS - 1) * PUBLIC_WINDOW) as u32;
        let mut exponents = vec![
            U256::ZERO,
            U256::ONE,
            U256::from_u64(2),
            digit_max,
            digit_max.wrapping_add(&U256::ONE),
            U256::MAX,
            U256::MAX.shr_vartime(1),
            U256::ONE.shl_vartime(255),
            U256::ONE.shl_vartime(top_row),
            digit_max.shl_vartime(top_row),
            U256::ONE.shl_vartime(255).wrapping_add(&U256::ONE),
            // Alternating zero and all-ones digits.
            U256::from_be_hex("ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00"),
            U256::from_be_hex("00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff"),
        ];
        exponents.extend((0..32).map(|_| random_u256()));
        for e in &exponents {
            assert_eq!(table.pow_public(e), base.pow(e), "base^{e}");
        }
        assert_eq!(table.pow_public(&U256::ZERO), Residue::ONE);
        assert_eq!(table.pow_public(&U256::ONE), base);
        assert_eq!(*table.base(), base);
    }

    /// Public values up to 2^2048 − 1 (above `N`) are reduced correctly.
    #[test]
    fn public_values_above_n_are_reduced() {
        let n = Residue::MODULUS.get();
        let (value, residue) = parse_public(&[0xff; N_LEN]).unwrap();
        assert_eq!(value, U2048::MAX);
        assert_eq!(residue.retrieve(), U2048::MAX.wrapping_sub(&n));
        let (_, residue) = parse_public(&n.wrapping_add(&U2048::ONE).to_be_bytes()).unwrap();
        assert_eq!(residue, Residue::ONE);
    }

    /// Native proofs: both ends that hashed the same transcript agree; a
    /// different transcript on either end fails the login both ways; and a
    /// native proof is never a 1.x proof.
    #[test]
    fn bound_proofs_need_the_same_transcript() {
        let password = Password::new("pw".into());
        let verifier = Verifier::new(&password);
        let login = |client_t: [u8; 32], server_t: [u8; 32]| {
            let client = ClientSession::new();
            let server = ServerSession::start(&verifier, &client.public()).unwrap();
            let legacy = client
                .respond(&password, verifier.salt(), &server.public())
                .unwrap();
            let legacy_m = *legacy.m();
            let proof = legacy.bind(&client_t);
            assert_ne!(proof.m(), &legacy_m, "a native proof is not a 1.x proof");
            (proof, server.bind(&server_t))
        };
        let (proof, server) = login([1; 32], [1; 32]);
        let (h_amk, server_key) = server.verify(proof.m()).unwrap();
        let client_key = proof.verify_server(&h_amk).unwrap();
        assert_eq!(client_key.as_bytes(), server_key.as_bytes());

        let (proof, server) = login([1; 32], [2; 32]);
        assert_eq!(
            server.verify(proof.m()).unwrap_err(),
            SrpError::WrongPassword
        );

        // A server that binds nothing (a 1.x login) refuses a native proof.
        let client = ClientSession::new();
        let server = ServerSession::start(&verifier, &client.public()).unwrap();
        let proof = client
            .respond(&password, verifier.salt(), &server.public())
            .unwrap()
            .bind(&[1; 32]);
        assert_eq!(
            server.verify(proof.m()).unwrap_err(),
            SrpError::WrongPassword
        );
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
        // The two ends hold different keys: nothing sealed with one would
        // open with the other.
        assert_ne!(proof.key.as_bytes(), server.key.as_bytes());
        assert_eq!(
            server.verify(proof.m()).unwrap_err(),
            SrpError::WrongPassword
        );
    }

    #[test]
    fn degenerate_public_values_are_refused() {
        let verifier = Verifier::new(&Password::new("pw".into()));
        let n = Residue::MODULUS.get();
        let two_n: Uint<{ U2048::LIMBS + 1 }> = n.resize().shl_vartime(1);
        for bytes in [vec![0], minimal(&n), minimal(&two_n), vec![]] {
            assert_eq!(
                ServerSession::start(&verifier, &bytes).err(),
                Some(SrpError::BadClientPublic)
            );
        }
        let client = ClientSession::new();
        let pw = Password::new("pw".into());
        assert_eq!(
            client.respond(&pw, verifier.salt(), &minimal(&n)).err(),
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
