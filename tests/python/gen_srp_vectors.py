#!/usr/bin/env python3
"""Generate SRP-6a test vectors for cmd-chat from the Python `srp` package.

Regenerate with:

    pip install srp==1.0.22 cryptography
    python3 tests/python/gen_srp_vectors.py            # writes tests/data/srp_vectors.json
    python3 tests/python/gen_srp_vectors.py --check    # regenerate in memory, diff against file

Everything is deterministic (no randomness): salts, passwords and ephemeral
secrets are derived from fixed seeds, and the edge cases are found by a
deterministic search over those seeds.

Parameters (those of the original cmd-chat 1.x): srp.rfc5054_enable(),
hash SHA-256, group NG_2048 (RFC 5054 2048-bit, g = 2), identity I = b"chat".

Backends: `import srp` uses srp._ctsrp (OpenSSL BIGNUM via ctypes) when it can
load libssl.so, and falls back to pure-Python srp._pysrp otherwise.  The vectors
are what the DEFAULT backend computes (the script records which one that is).
Every case is re-run with the other backend and the results compared; where
they differ (a salt with a leading 0x00 byte) the other backend's values are
recorded under "other_backend".

Encoding of the JSON fields (all hex lowercase):
  * "a", "b"          exactly the 32 bytes used as the ephemeral secret (bytes_a /
                      bytes_b for _ctsrp, which requires 32 bytes; _pysrp requires
                      256 bytes, so there it is left-padded with zeros; same integer).
  * "salt"            the salt bytes exactly as passed to srp.Verifier / User.process_challenge.
  * "K", "M", "H_AMK", "inner_hash"   raw 32-byte SHA-256 digests (never trimmed).
  * everything else   (x, v, k, A, B, u, S, salt_challenge, salt_from_create_svk)
                      minimal big-endian (leading zero bytes dropped), as
                      long_to_bytes / BN_bn2bin produce.
"""

import argparse
import ctypes
import hashlib
import json
import os
import sys

import srp
import srp._pysrp as pysrp

try:
    import srp._ctsrp as ctsrp
except (ImportError, OSError):  # no usable libssl.so
    ctsrp = None

IDENTITY = b"chat"
HASH = hashlib.sha256
N_BYTES = 256  # byte length of the RFC 5054 2048-bit modulus

# srp.rfc5054_enable() only flips the flag of the *default* backend module;
# the other backend has its own flag, so enable RFC 5054 mode on both.
srp.rfc5054_enable()
pysrp.rfc5054_enable()
if ctsrp is not None:
    ctsrp.rfc5054_enable()

DEFAULT = srp._mod  # the module `import srp` actually dispatches to
OTHER = pysrp if DEFAULT is ctsrp else ctsrp  # may be None if only _pysrp works

N, G = pysrp.get_ng(pysrp.NG_2048, None, None)
assert len(pysrp.long_to_bytes(N)) == N_BYTES and G == 2

OUT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "srp_vectors.json")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def i2b(n):
    """Minimal big-endian bytes of a non-negative int (b'' for 0), like long_to_bytes."""
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def b2i(b):
    return int.from_bytes(b, "big")


def seed(label, i, n=32):
    """Deterministic pseudo-random bytes: SHA-256 chained from a text label."""
    out = b""
    ctr = 0
    while len(out) < n:
        out += HASH(f"cmd-chat-srp-vectors/{label}/{i}/{ctr}".encode()).digest()
        ctr += 1
    return out[:n]


def to_int(mod, value):
    """Read an internal value of a User/Verifier as an int, for either backend."""
    if isinstance(value, int):
        return value
    return b2i(mod.bn_to_bytes(value))  # _ctsrp keeps BIGNUM pointers


def secret_arg(mod, secret32):
    """bytes_a / bytes_b in the form each backend insists on."""
    if mod is pysrp:
        return secret32.rjust(256, b"\0")  # _pysrp: "256 bytes required"
    return secret32  # _ctsrp: "32 bytes required"


def create_svk_fixed_salt(mod, password, salt):
    """srp.create_salted_verification_key, with the backend's random source
    patched so the salt is `salt`.  Returns (salt_returned, v_bytes)."""
    if mod is pysrp:
        orig = pysrp.get_random
        pysrp.get_random = lambda nbytes: b2i(salt)
        try:
            return pysrp.create_salted_verification_key(
                IDENTITY, password, hash_alg=pysrp.SHA256, ng_type=pysrp.NG_2048, salt_len=len(salt))
        finally:
            pysrp.get_random = orig
    else:
        orig = mod.BN_rand

        def fake_bn_rand(bn, bits, top, bottom):
            mod.BN_bin2bn(salt, len(salt), bn)
            return 1

        mod.BN_rand = fake_bn_rand
        try:
            return mod.create_salted_verification_key(
                IDENTITY, password, hash_alg=mod.SHA256, ng_type=mod.NG_2048, salt_len=len(salt))
        finally:
            mod.BN_rand = orig


def run_exchange(mod, password, salt, a32, b32):
    """Full SRP exchange with backend `mod`.  Returns a dict of hex values."""
    salt_svk, v_bytes = create_svk_fixed_salt(mod, password, salt)
    v_from_svk = v_bytes
    if mod is pysrp:
        # _pysrp's create_salted_verification_key hashes the salt as an int
        # (leading zeros dropped), but User.process_challenge hashes the raw salt
        # bytes.  Use _pysrp's own gen_x on the salt as passed, i.e. the verifier
        # a _pysrp *client* needs the server to hold for this salt.
        v_bytes = pysrp.long_to_bytes(pow(G, pysrp.gen_x(HASH, salt, IDENTITY, password), N))

    usr = mod.User(IDENTITY, password, hash_alg=mod.SHA256, ng_type=mod.NG_2048,
                   bytes_a=secret_arg(mod, a32))
    _, A_bytes = usr.start_authentication()

    svr = mod.Verifier(IDENTITY, salt, v_bytes, A_bytes, hash_alg=mod.SHA256,
                       ng_type=mod.NG_2048, bytes_b=secret_arg(mod, b32))
    s_chal, B_bytes = svr.get_challenge()
    assert B_bytes is not None, "Verifier safety check failed"

    # The client is handed the salt exactly as we chose it (what a server that
    # stores the salt bytes itself would send), not svr.get_challenge()'s copy.
    M = usr.process_challenge(salt, B_bytes)
    assert M is not None, "User safety check failed"
    H_AMK = svr.verify_session(M)
    assert H_AMK is not None, "Verifier rejected the user's M"
    usr.verify_session(H_AMK)
    assert usr.authenticated() and svr.authenticated()
    assert usr.get_session_key() == svr.get_session_key()

    v_usr = to_int(mod, usr.v)
    assert v_usr == b2i(v_bytes), "User's v differs from create_salted_verification_key's v"
    k_usr, k_svr = to_int(mod, usr.k), to_int(mod, svr.k)
    assert k_usr == k_svr
    u_usr, u_svr = to_int(mod, usr.u), to_int(mod, svr.u)
    assert u_usr == u_svr
    S_usr, S_svr = to_int(mod, usr.S), to_int(mod, svr.S)
    assert S_usr == S_svr

    return {
        "salt_from_create_svk": salt_svk.hex(),
        "salt_challenge": s_chal.hex(),
        "v_from_create_svk": v_from_svk.hex(),
        "x": i2b(to_int(mod, usr.x)).hex(),
        "v": v_bytes.hex(),
        "k": i2b(k_usr).hex(),
        "A": A_bytes.hex(),
        "B": B_bytes.hex(),
        "u": i2b(u_usr).hex(),
        "S": i2b(S_usr).hex(),
        "K": usr.K.hex(),
        "M": M.hex(),
        "H_AMK": H_AMK.hex(),
    }


# --------------------------------------------------------------------------
# independent re-implementation, used only to *search* for edge cases quickly
# (results are then produced by, and checked against, the library itself)
# --------------------------------------------------------------------------

def pad(n):
    return n.to_bytes(N_BYTES, "big")


K_MULT = b2i(HASH(pad(N) + pad(G)).digest())


def ref_values(password, salt, a32, b32, strip_salt=True):
    s = i2b(b2i(salt)) if strip_salt else salt
    inner = HASH(IDENTITY + b":" + password.encode()).digest()
    x = b2i(HASH(s + inner).digest())
    v = pow(G, x, N)
    a, b = b2i(a32), b2i(b32)
    A = pow(G, a, N)
    B = (K_MULT * v + pow(G, b, N)) % N
    u = b2i(HASH(pad(A) + pad(B)).digest())
    S = pow(B - K_MULT * v, a + u * x, N)
    K = HASH(i2b(S)).digest()                                   # minimal S
    hn, hg = HASH(i2b(N)).digest(), HASH(pad(G)).digest()       # PAD(g) in rfc5054 mode
    M = HASH(bytes(p ^ q for p, q in zip(hn, hg)) + HASH(IDENTITY).digest()
             + s + i2b(A) + i2b(B) + K).digest()               # minimal s, A, B
    H_AMK = HASH(i2b(A) + M + K).digest()                       # minimal A
    return dict(inner=inner, x=x, v=v, A=A, B=B, u=u, S=S, K=K, M=M, H_AMK=H_AMK)


def find(label, pred, limit=100000):
    for i in range(limit):
        if pred(i):
            return i
    raise RuntimeError(f"no candidate found for {label}")


# --------------------------------------------------------------------------
# the cases
# --------------------------------------------------------------------------

def salt16(i):
    """A 16-byte salt whose first byte is NOT zero (so minimal == as passed)."""
    s = seed("salt", i, 16)
    return s if s[0] != 0 else b"\x01" + s[1:]


def secret(label, i):
    """A 32-byte ephemeral secret whose first byte is not zero."""
    s = seed(label, i, 32)
    return s if s[0] != 0 else b"\x01" + s[1:]


def build_cases():
    cases = []

    def add(note, password, salt, a32, b32, **extra):
        cases.append(dict(note=note, password=password, salt=salt, a=a32, b=b32, **extra))

    add("baseline: ASCII password, 16-byte salt without leading zero",
        "correct horse battery staple", salt16(0), secret("a", 0), secret("b", 0))

    add("non-ASCII password (UTF-8 encoded before hashing: umlauts, Cyrillic, CJK, emoji)",
        "pässwörd-пароль-密码-🔑", salt16(1), secret("a", 1), secret("b", 1))

    add("single-character password 'x'", "x", salt16(2), secret("a", 2), secret("b", 2))

    # (1) salt whose first byte is 0x00
    z_salt = b"\x00" + seed("zero-salt", 0, 15)
    assert z_salt[1] != 0
    add("EDGE salt[0] == 0x00 (16 bytes as passed). The default backend (_ctsrp) loads the salt "
        "into a BIGNUM, so the leading zero byte is DROPPED everywhere it is used: "
        "x = H(minimal(salt) | H(I:p)), the salt term of M is minimal(salt), "
        "Verifier.get_challenge() returns the 15-byte minimal salt, and "
        "create_salted_verification_key returns the 15-byte salt too. "
        "_pysrp keeps the 16 raw bytes in x and M (only its create_salted_verification_key "
        "returns the minimal salt, and derives v from it), so the two backends DISAGREE on "
        "x, v, B, u, S, K, M, H_AMK (see other_backend), and _pysrp on its own cannot "
        "authenticate if the server sends the raw 16-byte salt with the v from "
        "create_salted_verification_key. Legacy Python servers never send such salts (they "
        "send whatever create_salted_verification_key returned, which is minimal, i.e. may be "
        "SHORTER than salt_len); a new server should simply never generate a salt whose first "
        "byte is 0x00.", "zero-salt password", z_salt, secret("a", 3), secret("b", 3))

    # (2) inner hash H("chat:" + password) starting with 0x00
    i = find("inner-hash", lambda i: HASH(IDENTITY + b":" + f"pw-{i}".encode()).digest()[0] == 0)
    add("EDGE inner hash H('chat:' + password) starts with 0x00. Both backends hash the full raw "
        "32-byte digest (zero byte kept): x = H(salt | inner_hash) with inner_hash NOT trimmed.",
        f"pw-{i}", salt16(4), secret("a", 4), secret("b", 4))

    # (3a) A shorter than 256 bytes
    pw, s = "short-A password", salt16(5)
    i = find("short-A", lambda i: pow(G, b2i(secret("a-shortA", i)), N) < 1 << (8 * (N_BYTES - 1)))
    add("EDGE A has fewer than 256 bytes (leading zero byte of PAD(A)). u = H(PAD(A) | PAD(B)) "
        "pads A to 256 bytes, while M = H(H(N) xor H(g) | H(I) | s | A | B | K) and "
        "H_AMK = H(A | M | K) use the MINIMAL A.",
        pw, s, secret("a-shortA", i), secret("b", 5))

    # (3b) B shorter than 256 bytes
    pw, s, a32 = "short-B password", salt16(6), secret("a", 6)
    i = find("short-B", lambda i: ref_values(pw, s, a32, secret("b-shortB", i))["B"] < 1 << (8 * (N_BYTES - 1)))
    add("EDGE B has fewer than 256 bytes. u pads B to 256 bytes; M uses the MINIMAL B.",
        pw, s, a32, secret("b-shortB", i))

    # (4) S shorter than 256 bytes
    pw, s, a32 = "short-S password", salt16(7), secret("a", 7)
    i = find("short-S", lambda i: ref_values(pw, s, a32, secret("b-shortS", i))["S"] < 1 << (8 * (N_BYTES - 1)))
    add("EDGE S has fewer than 256 bytes. K = H(S) hashes the MINIMAL S (no padding to 256 bytes).",
        pw, s, a32, secret("b-shortS", i))

    # (extra) u whose hash starts with 0x00
    pw, s, a32 = "short-u password", salt16(8), secret("a", 8)
    i = find("short-u", lambda i: ref_values(pw, s, a32, secret("b-shortU", i))["u"] < 1 << 248)
    add("EDGE u = H(PAD(A) | PAD(B)) starts with 0x00, so the minimal hex of u is shorter than 32 "
        "bytes. u is only used as an integer exponent, so this only matters for encoding.",
        pw, s, a32, secret("b-shortU", i))

    # (extra) x whose hash starts with 0x00
    pw = "short-x password"
    inner = HASH(IDENTITY + b":" + pw.encode()).digest()
    i = find("short-x", lambda i: HASH(salt16(1000 + i) + inner).digest()[0] == 0)
    add("EDGE x = H(salt | H(I:p)) starts with 0x00 (x minimal hex shorter than 32 bytes). "
        "x is only used as an integer.", pw, salt16(1000 + i), secret("a", 9), secret("b", 9))

    # (extra) several things at once: zero salt + short A
    z2 = b"\x00\x00" + seed("zero-salt", 1, 14)
    i = find("zero-salt-2", lambda i: pow(G, b2i(secret("a-z2", i)), N) < 1 << (8 * (N_BYTES - 1)))
    add("EDGE salt starts with TWO zero bytes (both dropped by _ctsrp -> 14-byte effective salt) "
        "combined with a short A.", "two-zeros", z2, secret("a-z2", i), secret("b", 10))

    return cases


def generate():
    backend_name = DEFAULT.__name__
    out = []
    for c in build_cases():
        pw, salt, a32, b32 = c["password"], c["salt"], c["a"], c["b"]
        vals = run_exchange(DEFAULT, pw, salt, a32, b32)

        # cross-check against the independent re-implementation (stripped-salt
        # semantics for _ctsrp, raw-salt semantics for _pysrp)
        ref = ref_values(pw, salt, a32, b32, strip_salt=(DEFAULT is ctsrp))
        for key in ("x", "v", "A", "B", "u", "S"):
            assert vals[key] == i2b(ref[key]).hex(), (c["note"], key)
        for key in ("K", "M", "H_AMK"):
            assert vals[key] == ref[key].hex(), (c["note"], key)
        assert vals["k"] == i2b(K_MULT).hex()

        case = {
            "note": c["note"],
            "backend": backend_name,
            "I": IDENTITY.decode(),
            "password": pw,
            "password_utf8": pw.encode().hex(),
            "salt": salt.hex(),
            "salt_effective": i2b(b2i(salt)).hex() if DEFAULT is ctsrp else salt.hex(),
            "salt_challenge": vals["salt_challenge"],
            "salt_from_create_svk": vals["salt_from_create_svk"],
            "a": a32.hex(),
            "b": b32.hex(),
            "inner_hash": ref["inner"].hex(),
        }
        for key in ("x", "v", "k", "A", "B", "u", "S", "K", "M", "H_AMK"):
            case[key] = vals[key]

        if OTHER is not None:
            other = run_exchange(OTHER, pw, salt, a32, b32)
            diff = {k: other[k] for k in ("x", "v", "k", "A", "B", "u", "S", "K", "M", "H_AMK",
                                          "salt_challenge", "salt_from_create_svk",
                                          "v_from_create_svk")
                    if other[k] != vals[k]}
            if other["v_from_create_svk"] != other["v"]:
                diff["v_from_create_svk"] = other["v_from_create_svk"]
                diff["v_from_create_svk_note"] = (
                    "this backend's create_salted_verification_key derives v from the salt with "
                    "leading zeros stripped, but its User hashes the raw salt bytes: a server "
                    "holding this v and sending the raw salt would fail to authenticate this "
                    "backend's client")
            if diff:
                case["other_backend"] = dict(backend=OTHER.__name__, **diff)
                # the only expected divergence: a salt with leading zero bytes
                assert salt[0] == 0, (c["note"], diff)
                # ...and with the zeros stripped, the other backend agrees
                other2 = run_exchange(OTHER, pw, i2b(b2i(salt)), a32, b32)
                for k in ("x", "v", "A", "B", "u", "S", "K", "M", "H_AMK"):
                    assert other2[k] == vals[k], (c["note"], k)
            case["crosscheck"] = (f"{OTHER.__name__}: " +
                                  ("identical" if not diff else
                                   "DIFFERS (see other_backend); identical once the salt's leading "
                                   "zero bytes are stripped"))
        else:
            case["crosscheck"] = "not performed (only one backend available)"
        out.append(case)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the existing file instead of writing")
    ap.add_argument("-o", "--output", default=OUT_PATH)
    args = ap.parse_args()

    data = generate()
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if args.check:
        with open(args.output, encoding="utf-8") as f:
            if f.read() != text:
                sys.exit(f"{args.output} is out of date")
        print(f"{args.output} is up to date ({len(data)} cases, backend {DEFAULT.__name__})")
        return
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {len(data)} cases to {os.path.normpath(args.output)} (backend {DEFAULT.__name__})")


if __name__ == "__main__":
    main()
