#!/usr/bin/env python3
"""Stand-in for the original cmd-chat 1.x server, for interop tests.

Requires:  pip install srp==1.0.22   (plus the standard library)

Usage:
    legacy_server.py PORT_FILE PASSWORD [--host 127.0.0.1]

Binds HOST:0 (a loopback IP literal only), writes the chosen port (decimal, no newline) to
PORT_FILE atomically (temp file + rename), then serves until SIGTERM/SIGINT (exit 0).

Modelled on the 1.x server as its author published it (the asyncio/SRP/HKDF release of
dinosaurtirex/cmd-chat: `cmd_chat/server/server.py`, `srp_auth.py`, `models.py`,
`managers.py`). It writes what that server writes, in the same order and with the same types:
every line is json.dumps(dict) + "\\n" (default separators ", " and ": ", ASCII escapes), keys
in the order below.

  one room    an SRP verifier for identity b"chat" and the password's UTF-8 bytes (srp with
              rfc5054_enable(), SHA-256, NG_2048), and a random 16-byte room_salt.
  auth lines  each read with a 30 s timeout; an empty read closes silently. Not JSON ->
              {"error": "Invalid JSON"}, and the connection closes after every error line.
  srp_init    "cmd" must be "srp_init" ("Expected srp_init"); username = .get("username",
              "unknown") of any type, unchecked; a falsy "A" -> "Missing A"; a name a member
              has -> "Username taken"; base64.b64decode(A) (lenient) and the SRP challenge,
              any failure (A % N == 0 included) -> "SRP init failed". Other fields ("native")
              are ignored.
              -> {"user_id": str(uuid4()), "B": b64, "salt": b64, "room_salt": b64}
  srp_verify  "cmd" must be "srp_verify" ("Expected srp_verify"); a "user_id" that is not the
              one just issued, or a falsy "M" -> "Invalid verify request"; bad base64 in M ->
              the binascii error's text; a wrong proof -> "Authentication failed".
              -> {"H_AMK": b64, "session_key": b64(urlsafe_b64(K[:32]))}: the standard base64
              of a Fernet key made of the SRP session key K itself (sent in clear).
              The member is listed from here on.
  then        -> {"type": "init", "messages": [message, ...], "users": [{"user_id",
              "username"}, ...]} (the history in full, every member including the newcomer, in
              the order they joined); then {"type": "user_joined", "user_id", "username"} to
              the others.
  chat lines  not JSON: skipped; not UTF-8, not an object, or longer than 64 KiB: the
              connection ends. "type" "message" -> a message {"id": str(uuid4()), "text":
              .get("text", "") as sent (any type), "timestamp": datetime.now(timezone.utc)
              .isoformat(), "user_ip": the sender's address, "username"} is stored and sent to
              everyone, sender included, as {"type": "message", "data": message}. "type"
              "clear" -> history emptied, {"type": "cleared"} to everyone. Anything else is
              ignored. A member who goes: {"type": "user_left", "user_id"} to the others.

Where it differs from the original: it binds loopback only, reports its port through a file
and stops on a signal; it never drops members for idleness (the original does after an hour);
and it queues a newcomer's verify reply and init, and a broadcast's lines, without letting other
connections run in between, so that a test sees one order of events (the original can let a
message broadcast slip in between, or send one both in init and as a message).
"""

import argparse
import asyncio
import base64
import binascii
import ipaddress
import json
import os
import signal
import sys
import uuid
from contextlib import suppress
from datetime import datetime, timezone

import srp

SRP_IDENTITY = b"chat"
LINE_LIMIT = 64 * 1024   # asyncio's default StreamReader limit, which the original keeps
AUTH_TIMEOUT = 30.0      # seconds allowed for each line of the SRP handshake

srp.rfc5054_enable()


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encode(obj) -> bytes:
    return (json.dumps(obj) + "\n").encode()


class Refused(Exception):
    """A login refusal: its text goes out as {"error": text} and the connection closes."""


class Room:
    def __init__(self, password: str):
        self.salt, self.vkey = srp.create_salted_verification_key(
            SRP_IDENTITY, password.encode(), hash_alg=srp.SHA256)
        self.room_salt = os.urandom(16)
        self.messages = []   # history: list of message dicts, oldest first
        self.members = {}    # user_id -> username, in the order they proved the password
        self.writers = {}    # user_id -> StreamWriter, members who got init
        self.conns = set()   # every open connection's StreamWriter (for shutdown)

    async def broadcast(self, obj, exclude=None):
        """Send obj to every member; a dead or failing member is simply skipped."""
        data = encode(obj)
        targets = [w for uid, w in list(self.writers.items())
                   if uid != exclude and not w.is_closing()]
        for w in targets:
            w.write(data)
        await asyncio.gather(*(w.drain() for w in targets), return_exceptions=True)

    async def read_json(self, reader):
        """One JSON value from the client during auth, or None at the end of the stream."""
        line = await asyncio.wait_for(reader.readline(), AUTH_TIMEOUT)
        if not line:
            return None
        try:
            return json.loads(line.decode())
        except json.JSONDecodeError:
            raise Refused("Invalid JSON")

    async def authenticate(self, reader, writer):
        """SRP handshake. On success lists the member and returns (user_id, username)."""
        req = await self.read_json(reader)
        if req is None:
            return None
        if req.get("cmd") != "srp_init":
            raise Refused("Expected srp_init")
        username = req.get("username", "unknown")
        A = req.get("A")
        if not A:
            raise Refused("Missing A")
        if any(name == username for name in self.members.values()):
            raise Refused("Username taken")
        try:
            svr = srp.Verifier(SRP_IDENTITY, self.salt, self.vkey, base64.b64decode(A),
                               hash_alg=srp.SHA256)
            s, B = svr.get_challenge()
            if B is None:
                raise ValueError("SRP challenge generation failed")
        except Exception:
            raise Refused("SRP init failed")
        user_id = str(uuid.uuid4())
        writer.write(encode({"user_id": user_id, "B": b64e(B), "salt": b64e(s),
                             "room_salt": b64e(self.room_salt)}))
        await writer.drain()

        req = await self.read_json(reader)
        if req is None:
            return None
        if req.get("cmd") != "srp_verify":
            raise Refused("Expected srp_verify")
        M = req.get("M")
        if req.get("user_id") != user_id or not M:
            raise Refused("Invalid verify request")
        try:
            H_AMK = svr.verify_session(base64.b64decode(M))
        except binascii.Error as exc:
            raise Refused(str(exc))
        if H_AMK is None:
            raise Refused("Authentication failed")
        fernet_key = base64.urlsafe_b64encode(svr.get_session_key()[:32])

        # Listed before the reply, so init's users include the newcomer. The reply and init
        # are queued with no await in between (see the module docstring).
        self.members[user_id] = username
        writer.write(encode({"H_AMK": b64e(H_AMK), "session_key": b64e(fernet_key)}))
        self.writers[user_id] = writer
        writer.write(encode({
            "type": "init",
            "messages": list(self.messages),
            "users": [{"user_id": uid, "username": name} for uid, name in self.members.items()],
        }))
        await writer.drain()
        return user_id, username

    async def chat(self, reader, user_id, username, ip):
        """Member loop: relay messages, handle clear; ends at the end of the stream."""
        await self.broadcast({"type": "user_joined", "user_id": user_id, "username": username},
                             exclude=user_id)
        while True:
            line = await reader.readline()   # ValueError past LINE_LIMIT ends the member
            if not line:
                return
            try:
                req = json.loads(line.decode())   # UnicodeDecodeError ends the member
            except json.JSONDecodeError:
                continue
            kind = req.get("type")   # AttributeError for a non-object ends the member
            if kind == "message":
                msg = {"id": str(uuid.uuid4()), "text": req.get("text", ""),
                       "timestamp": datetime.now(timezone.utc).isoformat(),
                       "user_ip": ip, "username": username}
                self.messages.append(msg)
                await self.broadcast({"type": "message", "data": msg})
            elif kind == "clear":
                self.messages.clear()
                await self.broadcast({"type": "cleared"})

    async def handle(self, reader, writer):
        peer = writer.get_extra_info("peername")
        ip = peer[0] if peer else "unknown"
        user_id = None
        self.conns.add(writer)
        try:
            auth = await self.authenticate(reader, writer)
            if auth:
                user_id, username = auth
                await self.chat(reader, user_id, username, ip)
        except Refused as refusal:
            with suppress(ConnectionError, OSError):
                writer.write(encode({"error": str(refusal)}))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except Exception as exc:   # as the original: one client never takes the server down
            print(f"legacy_server: client {ip} error: {exc!r}", file=sys.stderr)
        finally:
            self.conns.discard(writer)
            if user_id:
                self.writers.pop(user_id, None)
                self.members.pop(user_id, None)
                await self.broadcast({"type": "user_left", "user_id": user_id})
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()


def write_port_file(path: str, port: int):
    """Write atomically: readers see either no file or the complete port number."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.replace(tmp, path)


async def serve(port_file: str, password: str, host: str):
    room = Room(password)
    server = await asyncio.start_server(room.handle, host, 0, limit=LINE_LIMIT)
    port = server.sockets[0].getsockname()[1]
    write_port_file(port_file, port)
    print(f"legacy_server: listening on {host}:{port}", file=sys.stderr, flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    # Close the listener and every connection, then give the handlers a moment to see EOF
    # and finish (cancelling them instead makes asyncio log tracebacks). Not "async with
    # server": since 3.12 its wait_closed() also waits for every connection to end.
    server.close()
    for w in list(room.conns):
        w.close()
    for _ in range(50):
        if not room.conns:
            break
        await asyncio.sleep(0.02)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Stand-in for the cmd-chat 1.x server, for interop tests.")
    ap.add_argument("port_file", help="file to write the chosen port number to")
    ap.add_argument("password")
    ap.add_argument("--host", default="127.0.0.1", help="loopback IP literal (default 127.0.0.1)")
    args = ap.parse_args(argv)
    try:
        if not ipaddress.ip_address(args.host).is_loopback:
            raise ValueError
    except ValueError:
        ap.error(f"--host must be a loopback IP literal, got {args.host!r}")
    asyncio.run(serve(args.port_file, args.password, args.host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
