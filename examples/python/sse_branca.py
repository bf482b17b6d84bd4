"""Branca tokens (https://github.com/tuupola/branca-spec) for sse-hub / sse-server
backends, in one file, for when `pip install pybranca` is not an option (e.g. on
Debian, which packages PyNaCl and msgpack but not pybranca).

Needs PyNaCl (Debian: python3-nacl; PyPI: pynacl). The API is pybranca's, so
code written for either runs with both:

    from sse_branca import Branca
    branca = Branca(bytes.fromhex(os.environ["SSE_SECRET"]))
    token = branca.encode(msgpack.packb({"topics": ["weather"]}))
    payload = branca.decode(token, ttl=3600)   # raises ValueError if invalid or expired

Copy this file next to your code; it has no other dependencies.
"""
import os
import struct
import time

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)

__all__ = ["Branca", "b62encode", "b62decode"]

VERSION = 0xBA
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def b62encode(data: bytes) -> str:
    """Base62 as the Branca spec uses it: one big number, leading zero bytes as '0'."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = ALPHABET[r] + out
    return "0" * zeros + out


def b62decode(text: str) -> bytes:
    zeros = len(text) - len(text.lstrip("0"))
    n = 0
    for ch in text:
        n = n * 62 + ALPHABET.index(ch)
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


class Branca:
    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("Branca key must be 32 bytes (64 hex characters)")
        self._key = bytes(key)

    def encode(self, payload, timestamp=None) -> str:
        """Encrypts `payload` (bytes, or str as UTF-8) into a token string."""
        if isinstance(payload, str):
            payload = payload.encode()
        if timestamp is None:
            timestamp = int(time.time())
        nonce = os.urandom(24)
        header = struct.pack(">BL", VERSION, timestamp) + nonce
        return b62encode(header + crypto_aead_xchacha20poly1305_ietf_encrypt(payload, header, nonce, self._key))

    def decode(self, token: str, ttl=None) -> bytes:
        """The payload of `token`; ValueError if it is not valid for this key or older than `ttl` seconds."""
        try:
            raw = b62decode(token)
            header, ct = raw[:29], raw[29:]
            version, timestamp = struct.unpack(">BL", header[:5])
            if version != VERSION:
                raise ValueError("not a Branca token (wrong version)")
            payload = crypto_aead_xchacha20poly1305_ietf_decrypt(ct, header, header[5:29], self._key)
        except ValueError:
            raise
        except Exception as err:  # malformed base62, short token, failed authentication
            raise ValueError("invalid Branca token") from err
        if ttl is not None and timestamp + ttl < time.time():
            raise ValueError("Branca token has expired")
        return payload

    def timestamp(self, token: str) -> int:
        return struct.unpack(">BL", b62decode(token)[:5])[1]
