#!/usr/bin/env python3
"""Scriptable stand-in for the original cmd-chat 1.x client, for interop tests.

Requires:  pip install -r tests/python/requirements.txt   (srp==1.0.22, cryptography, rich)

Usage:
    legacy_client.py HOST PORT USERNAME PASSWORD [--expect TEXT]... [--send TEXT]... [--timeout SECS]
    legacy_client.py --self-test

Modelled on the 1.x client as its author published it (the asyncio/SRP/HKDF release of
dinosaurtirex/cmd-chat, `cmd_chat/client/client.py`; `secured_console_chat` on PyPI). It
treats every field it receives the way that client does, so that a line the real client
would choke on makes this one fail too:

  connect     asyncio.open_connection, 10 s timeout, StreamReader limit 64 KiB (a line whose
              content is longer than 65536 bytes raises ValueError).
  every line  json.loads(line.decode()) (JSON or UTF-8 errors are ValueErrors); an empty read
              is ConnectionError("Connection closed").
  srp_init    -> {"cmd": "srp_init", "username": U, "A": b64(A)}   (json.dumps, its default
              separators), SRP-6a from `srp` with rfc5054_enable(), SHA-256, NG_2048, identity
              b"chat", password as UTF-8 bytes.
  challenge   `"error" in reply` -> ValueError(reply["error"]). Otherwise reply["user_id"]
              (kept as is, echoed as is), then base64.b64decode (lenient: no validation,
              binascii.Error on bad padding) of reply["B"], reply["salt"], reply["room_salt"],
              in that order. A missing key is a KeyError.
  room key    HKDF-SHA256(password UTF-8, salt=room_salt, info=b"cmd-chat-room-key", 32 bytes),
              Fernet(urlsafe_b64encode(key)); derived before M is sent.
  srp_verify  M = process_challenge(salt, B); None -> ValueError("SRP challenge processing
              failed"). -> {"cmd": "srp_verify", "user_id": user_id, "M": b64(M)}.
  verify      `"error" in reply` -> ValueError(reply["error"]); H_AMK = b64decode(reply["H_AMK"]),
              verify_session(H_AMK), not authenticated -> ValueError("Server authentication
              failed"); then Fernet(base64.b64decode(reply["session_key"])): anything but the
              standard base64 of a Fernet key (the url-safe base64 of 32 bytes) raises
              ValueError("Fernet key must be 32 url-safe base64-encoded bytes."), or
              binascii.Error, and the login ends there. That Fernet is never used again.
              Then user_id[:8] is shown ("SRP authenticated (session: ...)").
  login ends  ValueError -> "Authentication failed: <text>"; ConnectionRefusedError -> "Cannot
              connect to HOST:PORT"; other ConnectionError -> "Connection error: <text>";
              connect timeout -> "Connection timeout to HOST:PORT"; anything else (KeyError,
              TypeError, ...) -> "Error occurred" and a traceback. With the 1.x servers'
              texts: a wrong password shows "Authentication failed: Authentication failed".
  then        every line, in any order (init is not required to come first), by its "type"
              (data.get("type", ""); a line that is not an object ends the session):
              init        messages = [decrypt(m) for m in data.get("messages", [])],
                          users = data.get("users", [])   (replacing both)
              message     decrypt(data.get("data", {})) appended to messages
              user_joined users.append({"user_id": .get("user_id"), "username": .get("username")})
              user_left   users without those whose .get("user_id") equals data.get("user_id")
              cleared     messages = []
              anything else, error lines included, is ignored without a word.
              decrypt(m): if "text" in m and m["text"] is truthy, Fernet(room key).decrypt(
              m["text"].encode()).decode() (no TTL), and on any exception the text becomes
              "[decrypt failed]" (the session goes on).
              After each of those five the screen is redrawn with rich: "Online: " + the users'
              .get("username", "?") joined by ", " (or "none"), then the last 15 messages, each
              as rich markup "[dim]<timestamp[:19] with T as space>[/] [green or cyan]<username
              or 'unknown'>[/]: <text>". Markup the names or texts break (a "[/]" nobody opened)
              raises MarkupError.
              Any exception, or the end of the stream, ends the session: "Disconnected".
  sending     a line that is blank, or "q"/"quit"/"exit" in any case, is never sent (the last
              three quit). Anything else: {"type": "message", "text": Fernet(room key).encrypt(
              line.encode()).decode()}. 1.x sends nothing else: no "clear", no goodbye.

Where this stand-in differs from the real client (what it does not cover):
  * It is driven by the command line, not a terminal: it waits for each --expect, then sends
    each --send, then waits for their echo from USERNAME, and exits. The real client sends
    whatever is typed whenever it is typed, and only quits on "q"; it has no exit codes.
  * It prints one JSON object per line instead of a rich screen; the screen is still drawn,
    into a buffer, so that markup errors happen where they would.
  * A "[decrypt failed]" shows on the real screen and the session goes on; here it goes on
    too, but the exit code is 5 at the end.
  * The real client draws its banner and clears the terminal; not reproduced. Its input loop
    runs beside the receive loop from the moment of login; here sends wait for the expects.
  * --timeout bounds the whole run; the real client has only its 10 s connect timeout.

Output, one JSON object per line on stdout (flushed):
    {"event":"authenticated","session":user_id[:8]}
    {"event":"ready","users":[names]}                       on init
    {"event":"message","from":username,"text":plaintext or "[decrypt failed]","history":bool,
     "decrypt_failed":bool}
    {"event":"joined","user":name}   {"event":"left","user_id":id}   {"event":"cleared"}
    {"event":"ignored","line":obj}                          what 1.x ignores (error lines too)
    {"event":"error","message":...}                         how it ended, as 1.x would say it

Exit codes:
    0  every --expect seen, every --send echoed
    2  bad command line (argparse), or a --send the 1.x client would never send
    3  "Authentication failed: ..." (any ValueError during login, as 1.x reports it)
    4  timeout (--timeout is the budget for the whole run, connect included)
    5  otherwise successful or timed out, but a message showed as "[decrypt failed]"
    6  could not connect, "Connection error", "Error occurred", or "Disconnected" early
"""

import argparse
import asyncio
import base64
import io
import json
import sys
import traceback
from collections import Counter

import srp
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from rich.console import Console

SRP_IDENTITY = b"chat"
ROOM_KEY_INFO = b"cmd-chat-room-key"
CONNECT_TIMEOUT = 10.0
SHOWN_MESSAGES = 15
DECRYPT_FAILED = "[decrypt failed]"
QUIT_WORDS = ("q", "quit", "exit")

EXIT_OK, EXIT_AUTH, EXIT_TIMEOUT, EXIT_DECRYPT, EXIT_PROTOCOL = 0, 3, 4, 5, 6

srp.rfc5054_enable()


class ClientExit(Exception):
    """Stops the client with an exit code and the words 1.x would have shown."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def emit(obj):
    """Print one event as a JSON line on stdout and flush immediately."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def derive_room_key(password: bytes, room_salt: bytes) -> bytes:
    """HKDF-SHA256(password, room_salt, "cmd-chat-room-key") -> 32 bytes."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=room_salt,
                info=ROOM_KEY_INFO).derive(password)


def room_fernet(password: bytes, room_salt: bytes) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive_room_key(password, room_salt)))


def sendable(text: str) -> bool:
    """Whether the 1.x client sends a typed line (blank lines and quit words it never sends)."""
    return bool(text.strip()) and text.lower() not in QUIT_WORDS


class LegacyClient:
    def __init__(self, host, port, username, password, expects, sends):
        self.host, self.port = host, port
        self.username = username
        self.password = password.encode()           # 1.x keeps the UTF-8 bytes
        self.pending_expects = Counter(expects)     # plaintexts still to be seen
        self.sends = list(sends)
        self.pending_echoes = Counter()             # our sends not yet echoed back
        self.sent = False
        self.decrypt_failures = 0
        self.reader = self.writer = None
        self.room_fernet = None
        self.user_id = None
        # The state the real client draws its screen from.
        self.messages = []
        self.users = []
        self.screen = Console(file=io.StringIO(), width=100, color_system=None)

    # -- line I/O, as 1.x does it

    async def send_json(self, obj):
        self.writer.write((json.dumps(obj) + "\n").encode())
        await self.writer.drain()

    async def recv_json(self):
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("Connection closed")
        return json.loads(line.decode())

    # -- login

    async def login(self):
        """Connect and run SRP; raises what the 1.x client would raise, mapped to its words."""
        where = f"{self.host}:{self.port}"
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), timeout=CONNECT_TIMEOUT)
            await self.authenticate()
        except asyncio.TimeoutError:
            raise ClientExit(EXIT_PROTOCOL, f"Connection timeout to {where}")
        except ConnectionRefusedError:
            raise ClientExit(EXIT_PROTOCOL, f"Cannot connect to {where}")
        except ConnectionError as exc:
            raise ClientExit(EXIT_PROTOCOL, f"Connection error: {exc}")
        except ValueError as exc:
            raise ClientExit(EXIT_AUTH, f"Authentication failed: {exc}")
        except ClientExit:
            raise
        except Exception as exc:
            traceback.print_exc()
            raise ClientExit(EXIT_PROTOCOL, f"Error occurred: {exc!r}")

    async def authenticate(self):
        usr = srp.User(SRP_IDENTITY, self.password, hash_alg=srp.SHA256)
        _, A = usr.start_authentication()
        await self.send_json({"cmd": "srp_init", "username": self.username,
                              "A": base64.b64encode(A).decode()})

        challenge = await self.recv_json()
        if "error" in challenge:
            raise ValueError(challenge["error"])
        self.user_id = challenge["user_id"]
        B = base64.b64decode(challenge["B"])
        salt = base64.b64decode(challenge["salt"])
        room_salt = base64.b64decode(challenge["room_salt"])
        self.room_fernet = room_fernet(self.password, room_salt)

        M = usr.process_challenge(salt, B)
        if M is None:
            raise ValueError("SRP challenge processing failed")
        await self.send_json({"cmd": "srp_verify", "user_id": self.user_id,
                              "M": base64.b64encode(M).decode()})

        welcome = await self.recv_json()
        if "error" in welcome:
            raise ValueError(welcome["error"])
        usr.verify_session(base64.b64decode(welcome["H_AMK"]))
        if not usr.authenticated():
            raise ValueError("Server authentication failed")
        # 1.x builds a Fernet from session_key and never uses it again; building it is
        # enough to end the login when the field is anything but a Fernet key.
        Fernet(base64.b64decode(welcome["session_key"]))
        emit({"event": "authenticated", "session": str(self.user_id[:8])})

    # -- the session

    def decrypt(self, msg, history):
        """Decrypts msg["text"] in place, as 1.x does; returns msg."""
        if "text" in msg and msg["text"]:
            try:
                msg["text"] = self.room_fernet.decrypt(msg["text"].encode()).decode()
            except Exception:
                msg["text"] = DECRYPT_FAILED
                self.decrypt_failures += 1
                failed = True
            else:
                failed = False
        else:
            failed = False
        if not isinstance(msg, dict):
            # 1.x keeps it; drawing it (if it is among the last 15) ends the session.
            emit({"event": "message", "malformed": msg, "history": history})
            return msg
        # What the screen shows for it (rendering errors surface in draw()).
        shown_from = msg.get("username", "unknown")
        shown_text = msg.get("text", "")
        emit({"event": "message", "from": f"{shown_from}", "text": f"{shown_text}",
              "history": history, "decrypt_failed": failed})
        if failed:
            return msg
        if self.pending_expects[shown_text] > 0:
            self.pending_expects[shown_text] -= 1
        if self.sent and not history and shown_from == self.username \
                and self.pending_echoes[shown_text] > 0:
            self.pending_echoes[shown_text] -= 1
        return msg

    def draw(self):
        """Draws the 1.x screen into a buffer: raises where the real rich screen raises."""
        self.screen.file = io.StringIO()
        online = ", ".join(u.get("username", "?") for u in self.users) or "none"
        self.screen.print(f"[dim]Online: {online}[/]")
        for msg in self.messages[-SHOWN_MESSAGES:]:
            who = msg.get("username", "unknown")
            when = str(msg.get("timestamp", ""))[:19].replace("T", " ")
            colour = "green" if who == self.username else "cyan"
            self.screen.print(f"[dim]{when}[/] [{colour}]{who}[/]: {msg.get('text', '')}")

    def handle(self, data):
        kind = data.get("type", "")
        if kind == "init":
            self.messages = [self.decrypt(m, True) for m in data.get("messages", [])]
            self.users = data.get("users", [])
            emit({"event": "ready", "users": [u.get("username", "?") for u in self.users]})
        elif kind == "message":
            self.messages.append(self.decrypt(data.get("data", {}), False))
        elif kind == "user_joined":
            self.users.append({"user_id": data.get("user_id"), "username": data.get("username")})
            emit({"event": "joined", "user": data.get("username")})
        elif kind == "user_left":
            gone = data.get("user_id")
            self.users = [u for u in self.users if u.get("user_id") != gone]
            emit({"event": "left", "user_id": gone})
        elif kind == "cleared":
            self.messages = []
            emit({"event": "cleared"})
        else:
            emit({"event": "ignored", "line": data})
            return
        self.draw()

    def done(self):
        return self.sent and sum(self.pending_expects.values()) == 0 \
            and sum(self.pending_echoes.values()) == 0

    async def maybe_send(self):
        """Once every --expect has been seen, send every --send (only once)."""
        if self.sent or sum(self.pending_expects.values()) > 0:
            return
        for text in self.sends:
            token = self.room_fernet.encrypt(text.encode()).decode()
            await self.send_json({"type": "message", "text": token})
            self.pending_echoes[text] += 1
        self.sent = True

    async def run(self):
        await self.login()
        try:
            await self.maybe_send()
            while not self.done():
                line = await self.reader.readline()
                if not line:
                    raise ConnectionError("the server closed the connection")
                self.handle(json.loads(line.decode()))
                await self.maybe_send()
        except Exception as exc:
            # 1.x's receive loop swallows every exception and the program says "Disconnected".
            raise ClientExit(EXIT_PROTOCOL, f"Disconnected ({type(exc).__name__}: {exc})")
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


# ---------------------------------------------------------------- self-test

def self_test():
    """Offline checks of the key handling (no server needed)."""
    password = "pässwörd".encode()
    room_salt = bytes(range(16))
    key = derive_room_key(password, room_salt)
    assert len(key) == 32 and key == derive_room_key(password, room_salt)
    assert key != derive_room_key(password, bytes(16))
    f = room_fernet(password, room_salt)
    token = f.encrypt("hello, мир 👋".encode())
    assert f.decrypt(token).decode() == "hello, мир 👋"
    try:
        room_fernet(b"wrong", room_salt).decrypt(token)
        raise AssertionError("wrong key decrypted the token")
    except InvalidToken:
        pass
    # session_key: the standard base64 of a Fernet key passes, raw key bytes do not.
    Fernet(base64.b64decode(base64.b64encode(Fernet.generate_key())))
    try:
        Fernet(base64.b64decode(base64.b64encode(bytes(range(32)))))
        raise AssertionError("32 raw bytes made a Fernet key")
    except ValueError as exc:
        assert str(exc) == "Fernet key must be 32 url-safe base64-encoded bytes.", exc
    # SRP round trip against the library's own Verifier
    salt, v = srp.create_salted_verification_key(SRP_IDENTITY, password, hash_alg=srp.SHA256)
    usr = srp.User(SRP_IDENTITY, password, hash_alg=srp.SHA256)
    _, A = usr.start_authentication()
    svr = srp.Verifier(SRP_IDENTITY, salt, v, A, hash_alg=srp.SHA256)
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
        description="Scripted stand-in for the cmd-chat 1.x client, for interop tests.",
        epilog="Exit codes: 0 ok, 3 authentication failed, 4 timeout, 5 a message showed as "
               "[decrypt failed], 6 connection error, error or disconnected. "
               "Use --self-test (alone) for an offline check.")
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("username")
    ap.add_argument("password")
    ap.add_argument("--expect", action="append", default=[], metavar="TEXT",
                    help="wait until this plaintext has been seen (repeatable)")
    ap.add_argument("--send", action="append", default=[], metavar="TEXT",
                    help="send this plaintext after all expects were seen, and wait for its "
                         "echo (repeatable)")
    ap.add_argument("--timeout", type=float, default=10.0, metavar="SECS",
                    help="overall time budget in seconds (default 10)")
    args = ap.parse_args(argv)
    for text in args.send:
        if not sendable(text):
            ap.error(f"the 1.x client never sends {text!r} (blank, or a word that quits)")

    client = LegacyClient(args.host, args.port, args.username, args.password,
                          args.expect, args.send)

    async def runner():
        await asyncio.wait_for(client.run(), timeout=args.timeout)

    code = EXIT_OK
    try:
        asyncio.run(runner())
    except ClientExit as exc:
        emit({"event": "error", "message": exc.message})
        code = exc.code
    except asyncio.TimeoutError:
        missing = list((+client.pending_expects).elements())
        unechoed = list((+client.pending_echoes).elements())
        emit({"event": "error", "message":
              f"timeout after {args.timeout}s (still expecting {missing!r}, "
              f"awaiting echo of {unechoed!r}, sent={client.sent})"})
        code = EXIT_TIMEOUT
    if client.decrypt_failures and code in (EXIT_OK, EXIT_TIMEOUT):
        emit({"event": "error", "message":
              f"{client.decrypt_failures} message(s) showed as {DECRYPT_FAILED}"})
        code = EXIT_DECRYPT
    return code


if __name__ == "__main__":
    sys.exit(main())
