#!/usr/bin/env python3
"""Stand-in for the original (1.x, Python) cmd-chat server, for interop tests.

Requires only:  pip install srp==1.0.22   (plus the standard library)

Usage:
    legacy_server.py PORT_FILE PASSWORD [--host 127.0.0.1]

Binds HOST:0 (a loopback IP literal only), writes the chosen port (decimal, no newline) to
PORT_FILE atomically (temp file + rename), then serves until SIGTERM/SIGINT (exit 0).

Wire protocol: see legacy_client.py. Server side, like the original:
  * one room: SRP verifier for identity b"chat" + PASSWORD, random 16-byte room_salt;
  * srp_init  -> {"user_id","B","salt","room_salt"} or {"error":"Username taken"} (extra fields
    such as "native" are ignored);
  * srp_verify -> {"H_AMK","session_key"} (session key sent in clear, as the original does)
    or {"error":"Wrong password"} and close;
  * then {"type":"init",...}, and broadcasts user_joined / user_left / message / cleared.
    Stored messages carry "user_ip" (the original leaks it; clients must ignore it).
The server never sees plaintext: "text" is an opaque Fernet token, stored and relayed as is.
"""

import argparse
import asyncio
import base64
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
LINE_LIMIT = 64 * 1024   # asyncio StreamReader limit, as in the original
AUTH_TIMEOUT = 30.0      # seconds allowed for each line of the SRP handshake

srp.rfc5054_enable()


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text) -> bytes:
    if not isinstance(text, str) or not text:
        raise ValueError("expected a non-empty base64 string")
    return base64.b64decode(text)  # lenient, like the original (binascii.Error is a ValueError)


def encode(obj) -> bytes:
    return (json.dumps(obj) + "\n").encode("utf-8")


class Room:
    def __init__(self, password: str):
        self.salt, self.vkey = srp.create_salted_verification_key(
            SRP_IDENTITY, password, hash_alg=srp.SHA256, ng_type=srp.NG_2048)
        self.room_salt = os.urandom(16)
        self.messages = []   # history: list of message dicts
        self.clients = {}    # user_id -> (username, StreamWriter), authenticated only
        self.conns = set()   # every open connection's StreamWriter (for shutdown)

    async def broadcast(self, obj, exclude=None):
        """Send obj to every connected client; a dead or failing client is simply skipped."""
        data = encode(obj)
        targets = [w for uid, (_, w) in list(self.clients.items())
                   if uid != exclude and not w.is_closing()]
        for w in targets:
            w.write(data)
        await asyncio.gather(*(w.drain() for w in targets), return_exceptions=True)

    async def read_json(self, reader):
        """One JSON object from the client during auth, or None on EOF/garbage."""
        line = await asyncio.wait_for(reader.readline(), AUTH_TIMEOUT)
        if not line:
            return None
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        return obj if isinstance(obj, dict) else None

    async def authenticate(self, reader, writer):
        """SRP handshake. On success registers the client and returns (user_id, username)."""
        async def fail(message):
            writer.write(encode({"error": message}))
            await writer.drain()

        # step 1: srp_init -> B, salt, room_salt
        req = await self.read_json(reader)
        if req is None or req.get("cmd") != "srp_init":
            return await fail("Expected srp_init")
        username = req.get("username")
        if not isinstance(username, str) or not username:
            return await fail("Missing username")
        if any(name == username for name, _ in self.clients.values()):
            return await fail("Username taken")
        try:
            svr = srp.Verifier(SRP_IDENTITY, self.salt, self.vkey, b64d(req.get("A")),
                               hash_alg=srp.SHA256, ng_type=srp.NG_2048)
            s, B = svr.get_challenge()   # (None, None) if A fails the SRP safety check
        except Exception:
            s = B = None
        if B is None:
            return await fail("SRP init failed")
        user_id = str(uuid.uuid4())
        writer.write(encode({"user_id": user_id, "B": b64e(B), "salt": b64e(s),
                             "room_salt": b64e(self.room_salt)}))
        await writer.drain()

        # step 2: srp_verify -> H_AMK (+ the session key, in clear, like the original)
        req = await self.read_json(reader)
        if req is None or req.get("cmd") != "srp_verify" or req.get("user_id") != user_id:
            return await fail("Invalid verify request")
        try:
            HAMK = svr.verify_session(b64d(req.get("M")))
        except ValueError:
            HAMK = None
        if HAMK is None:
            return await fail("Wrong password")

        # Register and queue H_AMK + init with no await in between, so no broadcast can
        # slip in before the init snapshot. The "users" list includes the new client.
        self.clients[user_id] = (username, writer)
        writer.write(encode({"H_AMK": b64e(HAMK), "session_key": b64e(svr.get_session_key())}))
        writer.write(encode({
            "type": "init",
            "messages": list(self.messages),
            "users": [{"user_id": uid, "username": name}
                      for uid, (name, _) in self.clients.items()],
        }))
        await writer.drain()
        return user_id, username

    async def chat(self, reader, user_id, username, ip):
        """Post-auth loop: relay messages, handle clear; ends on EOF."""
        await self.broadcast({"type": "user_joined", "user_id": user_id, "username": username},
                             exclude=user_id)
        while True:
            line = await reader.readline()
            if not line:
                return
            try:
                req = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue   # the original ignores undecodable lines
            if not isinstance(req, dict):
                continue
            kind = req.get("type")
            if kind == "message":
                msg = {"id": str(uuid.uuid4()), "text": req.get("text", ""),
                       "timestamp": datetime.now(timezone.utc).isoformat(),
                       "username": username, "user_ip": ip}
                self.messages.append(msg)
                await self.broadcast({"type": "message", "data": msg})  # sender included
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
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError,
                ValueError):   # ValueError: line over LINE_LIMIT
            pass
        except Exception as exc:   # never let one client take the server down
            print(f"legacy_server: client {ip} error: {exc!r}", file=sys.stderr)
        finally:
            self.conns.discard(writer)
            if user_id and self.clients.pop(user_id, None):
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
    ap = argparse.ArgumentParser(description="Legacy (cmd-chat 1.x style) chat server for interop tests.")
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
