//! Modular exponentiation in the 2048-bit SRP group, for the server's hot path.
//!
//! num-bigint's `modpow` is general: it allocates on every Montgomery
//! multiplication and recomputes `R² mod N` on every call. Here the modulus is
//! fixed at 32 64-bit limbs, numbers live in stack arrays, and bases the
//! server uses for every login (`g`, and the verifier `v`) get tables of
//! precomputed powers, so `g^b` and `v^u` cost one multiplication per 6-bit
//! digit of the exponent instead of one squaring per bit. `BigUint` stays the
//! type at the edges (the group constants come from the `srp` crate).
//!
//! Exponents may be secret (`b`, `a`), so every table entry is chosen by
//! scanning the whole table with masks rather than by indexing, and the number
//! of multiplications depends only on the exponent's declared width. Working
//! arrays that held secrets are wiped before they go.

use num_bigint::BigUint;
use zeroize::Zeroize;

/// 64-bit limbs in a 2048-bit number.
const LIMBS: usize = 32;

/// A residue mod `N`, in Montgomery form (`x·R mod N`, `R = 2^2048`),
/// least significant limb first.
pub(crate) type Limbs = [u64; LIMBS];

/// Window of the variable-base exponentiation: 16 precomputed powers.
const VAR_WINDOW: u32 = 4;

/// Window of fixed-base tables: 64 entries per 6-bit digit. 43 digits cover
/// a 256-bit exponent, for 704 KiB per table, built in a few milliseconds.
pub(crate) const FIXED_WINDOW: u32 = 6;

/// Arithmetic modulo one odd 2048-bit `N`.
pub(crate) struct Monty {
    n: Limbs,
    /// `-N⁻¹ mod 2^64`.
    n0inv: u64,
    /// `R² mod N`, to enter Montgomery form.
    r2: Limbs,
    /// `R mod N`: 1 in Montgomery form.
    one: Limbs,
}

fn to_limbs(x: &BigUint) -> Limbs {
    let digits = x.to_u64_digits();
    assert!(digits.len() <= LIMBS, "value wider than 2048 bits");
    let mut out = [0u64; LIMBS];
    out[..digits.len()].copy_from_slice(&digits);
    out
}

fn from_limbs(x: &Limbs) -> BigUint {
    let mut bytes = [0u8; LIMBS * 8];
    for (chunk, limb) in bytes.chunks_exact_mut(8).zip(x) {
        chunk.copy_from_slice(&limb.to_le_bytes());
    }
    let value = BigUint::from_bytes_le(&bytes);
    bytes.zeroize();
    value
}

/// Copies `table[index]` into `out` reading every entry, so the memory access
/// pattern does not depend on a secret index.
fn select(table: &[Limbs], index: usize, out: &mut Limbs) {
    *out = [0; LIMBS];
    for (i, entry) in table.iter().enumerate() {
        let mask = ((i == index) as u64).wrapping_neg();
        for (o, e) in out.iter_mut().zip(entry) {
            *o |= e & mask;
        }
    }
}

/// The exponent's bits, `width` of them at least, as little-endian limbs.
fn exponent_limbs(exp: &BigUint, width: u32) -> Vec<u64> {
    let mut digits = exp.to_u64_digits();
    let limbs = (exp.bits().max(u64::from(width)) as usize).div_ceil(64);
    digits.resize(limbs, 0);
    digits
}

/// The `window`-bit digit of `exp` that starts at bit `at`.
fn digit(exp: &[u64], at: usize, window: u32) -> usize {
    let (limb, shift) = (at / 64, at % 64);
    let mut d = exp.get(limb).map_or(0, |l| l >> shift);
    if shift + window as usize > 64 {
        d |= exp.get(limb + 1).map_or(0, |l| l << (64 - shift));
    }
    (d & ((1 << window) - 1)) as usize
}

impl Monty {
    pub(crate) fn new(n: &BigUint) -> Self {
        let n_limbs = to_limbs(n);
        assert!(
            n_limbs[0] & 1 == 1,
            "Montgomery arithmetic needs an odd modulus"
        );
        assert!(n_limbs[LIMBS - 1] != 0, "the modulus must fill 2048 bits");
        // Newton's iteration for N⁻¹ mod 2^64, then negated.
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(n_limbs[0].wrapping_mul(inv)));
        }
        let r = BigUint::from(1u32) << (64 * LIMBS);
        Self {
            n: n_limbs,
            n0inv: inv.wrapping_neg(),
            r2: to_limbs(&((&r * &r) % n)),
            one: to_limbs(&(r % n)),
        }
    }

    /// `a·b·R⁻¹ mod N` (CIOS Montgomery multiplication); inputs and output `< N`.
    pub(crate) fn mul(&self, a: &Limbs, b: &Limbs) -> Limbs {
        let n = &self.n;
        let mut t = [0u64; LIMBS + 2];
        for &bi in b {
            let bi = u128::from(bi);
            let mut carry = 0u128;
            for j in 0..LIMBS {
                let s = u128::from(t[j]) + u128::from(a[j]) * bi + carry;
                t[j] = s as u64;
                carry = s >> 64;
            }
            let s = u128::from(t[LIMBS]) + carry;
            t[LIMBS] = s as u64;
            t[LIMBS + 1] = (s >> 64) as u64;

            let m = u128::from(t[0].wrapping_mul(self.n0inv));
            let mut carry = (u128::from(t[0]) + m * u128::from(n[0])) >> 64;
            for j in 1..LIMBS {
                let s = u128::from(t[j]) + m * u128::from(n[j]) + carry;
                t[j - 1] = s as u64;
                carry = s >> 64;
            }
            let s = u128::from(t[LIMBS]) + carry;
            t[LIMBS - 1] = s as u64;
            t[LIMBS] = t[LIMBS + 1] + (s >> 64) as u64;
        }
        // t < 2N: subtract N unless that borrows, choosing without a branch.
        let mut r = [0u64; LIMBS];
        let mut borrow = 0u64;
        for j in 0..LIMBS {
            let (d, b1) = t[j].overflowing_sub(n[j]);
            let (d, b2) = d.overflowing_sub(borrow);
            r[j] = d;
            borrow = u64::from(b1 | b2);
        }
        let keep_t = u64::from(t[LIMBS] < borrow).wrapping_neg();
        for j in 0..LIMBS {
            r[j] = (t[j] & keep_t) | (r[j] & !keep_t);
        }
        t.zeroize();
        r
    }

    /// `x` (any value `< N`) in Montgomery form.
    pub(crate) fn enter_mont(&self, x: &BigUint) -> Limbs {
        let mut plain = to_limbs(x);
        let out = self.mul(&plain, &self.r2);
        plain.zeroize();
        out
    }

    /// Back from Montgomery form.
    pub(crate) fn leave_mont(&self, x: &Limbs) -> BigUint {
        let mut unit = [0u64; LIMBS];
        unit[0] = 1;
        let mut plain = self.mul(x, &unit);
        let out = from_limbs(&plain);
        plain.zeroize();
        out
    }

    /// `base^exp`, both in and out in Montgomery form, with a fixed 4-bit
    /// window over at least `width` bits of `exp` (pass the secret's nominal
    /// width, so its actual length does not show in the time taken).
    pub(crate) fn pow(&self, base: &Limbs, exp: &BigUint, width: u32) -> Limbs {
        let mut powers = [[0u64; LIMBS]; 1 << VAR_WINDOW];
        powers[0] = self.one;
        powers[1] = *base;
        for i in 2..powers.len() {
            powers[i] = self.mul(&powers[i - 1], base);
        }
        let mut e = exponent_limbs(exp, width);
        let digits = (e.len() * 64).div_ceil(VAR_WINDOW as usize);
        let mut acc = self.one;
        let mut factor = [0u64; LIMBS];
        for d in (0..digits).rev() {
            for _ in 0..VAR_WINDOW {
                acc = self.mul(&acc, &acc);
            }
            select(
                &powers,
                digit(&e, d * VAR_WINDOW as usize, VAR_WINDOW),
                &mut factor,
            );
            acc = self.mul(&acc, &factor);
        }
        powers.zeroize();
        factor.zeroize();
        e.zeroize();
        acc
    }
}

/// Precomputed powers of one base: `table[i][d] = base^(d·2^(6i))`, so
/// `base^e` is one multiplication per 6-bit digit of `e` and no squaring.
pub(crate) struct FixedBase {
    table: Vec<[Limbs; 1 << FIXED_WINDOW]>,
    /// Widest exponent the table covers.
    bits: u32,
}

impl FixedBase {
    /// Tables `base` (Montgomery form) for exponents up to `bits` wide.
    pub(crate) fn new(monty: &Monty, base: &Limbs, bits: u32) -> Self {
        let windows = bits.div_ceil(FIXED_WINDOW) as usize;
        let mut table = Vec::with_capacity(windows);
        let mut step = *base;
        for _ in 0..windows {
            let mut row = [[0u64; LIMBS]; 1 << FIXED_WINDOW];
            row[0] = monty.one;
            row[1] = step;
            for d in 2..row.len() {
                row[d] = monty.mul(&row[d - 1], &step);
            }
            // The next row's base: step^(2^6) = step^63 · step.
            step = monty.mul(&row[row.len() - 1], &step);
            table.push(row);
        }
        step.zeroize();
        Self { table, bits }
    }

    /// `base^exp` in Montgomery form; `exp` must be at most the table's width.
    pub(crate) fn pow(&self, monty: &Monty, exp: &BigUint) -> Limbs {
        assert!(
            exp.bits() <= u64::from(self.bits),
            "exponent wider than the table"
        );
        let mut e = exponent_limbs(exp, self.bits);
        let mut acc = monty.one;
        let mut factor = [0u64; LIMBS];
        for (i, row) in self.table.iter().enumerate() {
            select(
                row,
                digit(&e, i * FIXED_WINDOW as usize, FIXED_WINDOW),
                &mut factor,
            );
            acc = monty.mul(&acc, &factor);
        }
        factor.zeroize();
        e.zeroize();
        acc
    }
}

impl Drop for FixedBase {
    /// A table of the verifier's powers reveals the verifier: wipe it.
    fn drop(&mut self) {
        for row in &mut self.table {
            row.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> (BigUint, Monty) {
        let n = srp::groups::G_2048.n.clone();
        let monty = Monty::new(&n);
        (n, monty)
    }

    #[test]
    fn matches_num_bigint() {
        let (n, monty) = group();
        let base = BigUint::from_bytes_be(&[0x5a; 255]);
        for exp in [
            BigUint::from(0u32),
            BigUint::from(1u32),
            BigUint::from(65537u32),
            BigUint::from_bytes_be(&[0xff; 32]),
            BigUint::from_bytes_be(&[0x3c; 64]),
        ] {
            let expected = base.modpow(&exp, &n);
            let b = monty.enter_mont(&base);
            assert_eq!(monty.leave_mont(&monty.pow(&b, &exp, 256)), expected);
            let table = FixedBase::new(&monty, &b, 512);
            assert_eq!(monty.leave_mont(&table.pow(&monty, &exp)), expected);
        }
    }

    #[test]
    fn reduces_values_near_the_modulus() {
        let (n, monty) = group();
        let x = &n - 1u32;
        let m = monty.enter_mont(&x);
        assert_eq!(monty.leave_mont(&monty.mul(&m, &m)), BigUint::from(1u32));
    }
}
