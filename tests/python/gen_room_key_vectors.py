"""Room-key vectors for cmd-chat, made with the primitives cmd-chat 1.x uses.

room_key = HKDF-SHA256(ikm=password, salt=room_salt, info=b"cmd-chat-room-key", 32)
fernet key = urlsafe_b64encode(room_key)

Regenerate: python3 tests/python/gen_room_key_vectors.py > tests/data/room_key_vectors.json
"""
import base64
import json

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CASES = [
    ("correct horse battery staple", bytes(range(16)), "hello, room"),
    ("pässwörd", bytes.fromhex("ff" * 16), "ünïcödé ✓"),
    ("x", bytes.fromhex("00" * 15 + "01"), ""),
]

out = []
for password, salt, plaintext in CASES:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"cmd-chat-room-key").derive(
        password.encode()
    )
    token = Fernet(base64.urlsafe_b64encode(key)).encrypt(plaintext.encode()).decode()
    out.append(
        {
            "password": password,
            "room_salt": salt.hex(),
            "room_key": key.hex(),
            "plaintext": plaintext,
            "token": token,
        }
    )
print(json.dumps(out, indent=2, ensure_ascii=False))
