#!/usr/bin/env python3
"""Scriptable stand-in for the original (1.x, Python) cmd-chat client, for interop tests.

Requires only:  pip install srp==1.0.22 cryptography

Usage:
    legacy_client.py HOST PORT USERNAME PASSWORD [--expect TEXT]... [--send TEXT]... [--timeout SECS]
    legacy_client.py --self-test

Wire protocol (newline-delimited JSON over TCP, binary fields in standard base64):
  1. -> {"cmd":"srp_init","username":U,"A":b64}
     <- {"user_id":uuid,"B":b64,"salt":b64,"room_salt":b64}      or {"error":"..."}
  2. -> {"cmd":"srp_verify","user_id":..,"M":b64}
     <- {"H_AMK":b64,"session_key":b64}                          or {"error":"..."}
     SRP-6a: srp 1.0.22, rfc5054_enable(), SHA-256, NG_2048, identity b"chat".
  3. room key   = HKDF-SHA256(ikm=password UTF-8, salt=room_salt, info=b"cmd-chat-room-key", L=32)
     fernet key = urlsafe_b64encode(room key)
  4. <- {"type":"init","messages":[{id,text,timestamp,username,...}],"users":[{user_id,username}]}
     then events: {"type":"user_joined","user_id","username"}, {"type":"user_left","user_id"},
                  {"type":"message","data":{id,text,timestamp,username,...}}, {"type":"cleared"},
                  {"error":"..."}
     "text" is always a Fernet token of the UTF-8 plaintext.
     client sends {"type":"message","text":<Fernet token>} and {"type":"clear"}.
  Lines are read with asyncio's StreamReader limit of 65536 bytes, like the original: a line
  whose content (excluding the "\n") is longer than 65536 bytes is a fatal error.

Behaviour: connect, authenticate, read init, print one JSON object per line on stdout (flushed)
for every event:
    {"event":"ready","users":[names]}
    {"event":"message","from":username,"text":plaintext,"history":true|false}
    {"event":"joined","user":name}
    {"event":"left","user_id":id}
    {"event":"cleared"}
    {"event":"error","message":...}
Wait until each --expect TEXT has been seen as a decrypted message (history or live; repeated
--expect values must be seen that many times), then send every --send TEXT, then wait until
each of them has come back as a live message from USERNAME, then exit 0.

Exit codes:
    0  success
    2  bad command line (argparse)
    3  authentication failed (server error, SRP safety check, or bad H_AMK)
    4  timeout (--timeout is the budget for the whole run, connect included)
    5  a message token could not be decrypted with the room key
    6  connection/protocol failure (refused, closed early, bad JSON, line over 64 KiB)
"""

import argparse
import asyncio
import base64
import json
import sys
from collections import Counter

import srp
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SRP_IDENTITY = b"chat"
ROOM_KEY_INFO = b"cmd-chat-room-key"
LINE_LIMIT = 64 * 1024  # asyncio StreamReader limit used by the original client

EXIT_OK, EXIT_AUTH, EXIT_TIMEOUT, EXIT_DECRYPT, EXIT_PROTOCOL = 0, 3, 4, 5, 6

srp.rfc5054_enable()


class ClientExit(Exception):
    """Raised to stop the client with a given exit code (after printing an error event)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------- output helpers

def emit(obj):
    """Print one event as a JSON line on stdout and flush immediately."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected a base64 string")
    return base64.b64decode(text, validate=True)


# ---------------------------------------------------------------- crypto helpers

def derive_room_key(password: str, room_salt: bytes) -> bytes:
    """HKDF-SHA256(password, room_salt, "cmd-chat-room-key") -> 32 bytes."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=room_salt,
                info=ROOM_KEY_INFO).derive(password.encode("utf-8"))


def make_fernet(password: str, room_salt: bytes) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive_room_key(password, room_salt)))


# ---------------------------------------------------------------- the client

class LegacyClient:
    def __init__(self, host, port, username, password, expects, sends):
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.pending_expects = Counter(expects)   # plaintexts still to be seen
        self.sends = list(sends)
        self.pending_echoes = Counter()           # our sends not yet echoed back
        self.sent = False
        self.reader = self.writer = None
        self.fernet = None

    # -- line I/O

    async def send(self, obj):
        self.writer.write((json.dumps(obj) + "\n").encode("utf-8"))
        await self.writer.drain()

    async def recv(self):
        """Read one JSON object; enforce the 64 KiB line limit like the original."""
        try:
            line = await self.reader.readline()
        except (ValueError, asyncio.LimitOverrunError) as exc:
            raise ClientExit(EXIT_PROTOCOL, f"line longer than {LINE_LIMIT} bytes: {exc}")
        except (ConnectionError, OSError) as exc:
            raise ClientExit(EXIT_PROTOCOL, f"connection error: {exc}")
        if not line:
            raise ClientExit(EXIT_PROTOCOL, "connection closed by server")
        if not line.endswith(b"\n"):
            raise ClientExit(EXIT_PROTOCOL, "connection closed in the middle of a line")
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ClientExit(EXIT_PROTOCOL, f"invalid JSON from server: {exc}: {line[:200]!r}")
        if not isinstance(obj, dict):
            raise ClientExit(EXIT_PROTOCOL, f"expected a JSON object, got: {line[:200]!r}")
        return obj

    # -- phases

    async def connect(self):
        try:
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, limit=LINE_LIMIT)
        except OSError as exc:
            raise ClientExit(EXIT_PROTOCOL, f"cannot connect to {self.host}:{self.port}: {exc}")

    async def authenticate(self):
        """SRP-6a login; on success sets self.fernet from the room salt."""
        usr = srp.User(SRP_IDENTITY, self.password, hash_alg=srp.SHA256, ng_type=srp.NG_2048)
        _, A = usr.start_authentication()

        # step 1: send A, receive B, salt, room_salt
        await self.send({"cmd": "srp_init", "username": self.username, "A": b64e(A)})
        resp = await self.recv()
        if "error" in resp:
            raise ClientExit(EXIT_AUTH, f"srp_init rejected: {resp['error']}")
        try:
            user_id = resp["user_id"]
            B = b64d(resp["B"])
            salt = b64d(resp["salt"])
            room_salt = b64d(resp["room_salt"])
        except (KeyError, ValueError) as exc:
            raise ClientExit(EXIT_PROTOCOL, f"malformed srp_init response: {exc!r}: {resp}")

        # step 2: compute and send M, check the server's proof H_AMK
        M = usr.process_challenge(salt, B)
        if M is None:
            raise ClientExit(EXIT_AUTH, "SRP safety check failed on server challenge")
        await self.send({"cmd": "srp_verify", "user_id": user_id, "M": b64e(M)})
        resp = await self.recv()
        if "error" in resp:
            raise ClientExit(EXIT_AUTH, f"srp_verify rejected: {resp['error']}")
        try:
            H_AMK = b64d(resp["H_AMK"])
        except (KeyError, ValueError) as exc:
            raise ClientExit(EXIT_PROTOCOL, f"malformed srp_verify response: {exc!r}: {resp}")
        usr.verify_session(H_AMK)
        if not usr.authenticated():
            raise ClientExit(EXIT_AUTH, "server proof H_AMK is wrong (server does not know the password)")

        # session_key is informational only; report (stderr) if it is not the SRP key K
        try:
            session_key = b64d(resp.get("session_key", ""))
        except ValueError:
            session_key = None
        if session_key is not None and session_key != usr.get_session_key():
            print("legacy_client: note: session_key from server differs from SRP K",
                  file=sys.stderr)

        # step 3: room key
        self.fernet = make_fernet(self.password, room_salt)

    def decrypt(self, token):
        try:
            if not isinstance(token, str):
                raise InvalidToken
            return self.fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise ClientExit(EXIT_DECRYPT, f"cannot decrypt message token: {exc!r}: {str(token)[:120]}")

    def on_message(self, data, history):
        if not isinstance(data, dict):
            raise ClientExit(EXIT_PROTOCOL, f"malformed message object: {data!r}")
        text = self.decrypt(data.get("text"))
        sender = data.get("username")
        emit({"event": "message", "from": sender, "text": text, "history": history})
        if self.pending_expects[text] > 0:
            self.pending_expects[text] -= 1
        if self.sent and not history and sender == self.username and self.pending_echoes[text] > 0:
            self.pending_echoes[text] -= 1

    def handle_event(self, ev):
        """Print one server event; returns nothing, raises ClientExit on fatal problems."""
        if "error" in ev and "type" not in ev:
            emit({"event": "error", "message": ev["error"]})
            return
        kind = ev.get("type")
        if kind == "message":
            self.on_message(ev.get("data"), history=False)
        elif kind == "user_joined":
            emit({"event": "joined", "user": ev.get("username")})
        elif kind == "user_left":
            emit({"event": "left", "user_id": ev.get("user_id")})
        elif kind == "cleared":
            emit({"event": "cleared"})
        else:
            print(f"legacy_client: ignoring unknown event: {ev}", file=sys.stderr)

    def done(self):
        return self.sent and sum(self.pending_expects.values()) == 0 \
            and sum(self.pending_echoes.values()) == 0

    async def maybe_send(self):
        """Once every --expect has been seen, send every --send (only once)."""
        if self.sent or sum(self.pending_expects.values()) > 0:
            return
        for text in self.sends:
            token = self.fernet.encrypt(text.encode("utf-8")).decode("ascii")
            await self.send({"type": "message", "text": token})
            self.pending_echoes[text] += 1
        self.sent = True

    async def run(self):
        await self.connect()
        await self.authenticate()

        # step 4: the first post-auth line must be the init snapshot
        init = await self.recv()
        if "error" in init and "type" not in init:
            raise ClientExit(EXIT_AUTH, f"server error instead of init: {init['error']}")
        if init.get("type") != "init":
            raise ClientExit(EXIT_PROTOCOL, f"expected init, got: {init}")
        users = init.get("users") or []
        emit({"event": "ready", "users": [u.get("username") for u in users if isinstance(u, dict)]})
        for msg in init.get("messages") or []:
            self.on_message(msg, history=True)

        await self.maybe_send()
        while not self.done():
            self.handle_event(await self.recv())
            await self.maybe_send()

        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


# ---------------------------------------------------------------- self-test

def self_test():
    """Offline check of the room-key / Fernet part (no server needed)."""
    room_salt = bytes(range(16))
    key = derive_room_key("pässwörd", room_salt)
    assert len(key) == 32
    assert key == derive_room_key("pässwörd", room_salt)
    assert key != derive_room_key("pässwörd", bytes(16))
    assert key != derive_room_key("passwörd", room_salt)
    f = make_fernet("pässwörd", room_salt)
    token = f.encrypt("hello, мир 👋".encode("utf-8"))
    assert f.decrypt(token).decode("utf-8") == "hello, мир 👋"
    try:
        make_fernet("wrong", room_salt).decrypt(token)
        raise AssertionError("wrong key decrypted the token")
    except InvalidToken:
        pass
    # SRP round trip against the library's own Verifier
    salt, v = srp.create_salted_verification_key(SRP_IDENTITY, "pässwörd",
                                                  hash_alg=srp.SHA256, ng_type=srp.NG_2048)
    usr = srp.User(SRP_IDENTITY, "pässwörd", hash_alg=srp.SHA256, ng_type=srp.NG_2048)
    _, A = usr.start_authentication()
    svr = srp.Verifier(SRP_IDENTITY, salt, v, A, hash_alg=srp.SHA256, ng_type=srp.NG_2048)
    s, B = svr.get_challenge()
    usr.verify_session(svr.verify_session(usr.process_challenge(s, B)))
    assert usr.authenticated()
    print(f"self-test ok (srp backend {srp._mod.__name__}); "
          f"room key for password 'pässwörd', salt 000102..0f: {key.hex()}")


# ---------------------------------------------------------------- main

def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    if argv == ["--self-test"]:
        self_test()
        return EXIT_OK

    ap = argparse.ArgumentParser(
        description="Legacy (cmd-chat 1.x style) scripted chat client for interop tests.",
        epilog="Exit codes: 0 ok, 3 auth failed, 4 timeout, 5 undecryptable message, "
               "6 connection/protocol error. Use --self-test (alone) for an offline check.")
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("username")
    ap.add_argument("password")
    ap.add_argument("--expect", action="append", default=[], metavar="TEXT",
                    help="wait until this plaintext has been seen (repeatable)")
    ap.add_argument("--send", action="append", default=[], metavar="TEXT",
                    help="send this plaintext after all expects were seen, and wait for its echo (repeatable)")
    ap.add_argument("--timeout", type=float, default=10.0, metavar="SECS",
                    help="overall time budget in seconds (default 10)")
    args = ap.parse_args(argv)

    client = LegacyClient(args.host, args.port, args.username, args.password, args.expect, args.send)

    async def runner():
        await asyncio.wait_for(client.run(), timeout=args.timeout)

    try:
        asyncio.run(runner())
    except ClientExit as exc:
        emit({"event": "error", "message": exc.message})
        return exc.code
    except asyncio.TimeoutError:
        missing = list((+client.pending_expects).elements())
        unechoed = list((+client.pending_echoes).elements())
        emit({"event": "error", "message":
              f"timeout after {args.timeout}s (still expecting {missing!r}, "
              f"awaiting echo of {unechoed!r}, sent={client.sent})"})
        return EXIT_TIMEOUT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
