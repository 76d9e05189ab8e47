"""AES-128-CBC of the payloads and the MD5 answer of the identity check.

The platforms hand each collector a 16-character ASCII key and, in every public implementation
seen, use the key as the IV too (docs/platform.md); padding is zero-fill in the older ones, PKCS#5
in newer ones, and the captured RenewED login frame fills with the character '0'. AES-128-CBC is
FIPS 197 with SP 800-38A's CBC mode, through the `cryptography` package; MD5 is RFC 1321.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from agent.platform.errors import ProtocolError
from agent.platform.profiles import Md5Order, Padding

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

__all__ = ["AesKey", "decrypt", "encrypt", "md5_answer"]

_BLOCK = 16


class AesKey:
    """A 16-byte AES-128 key and its IV (the key itself unless the platform says otherwise)."""

    def __init__(self, key: bytes, *, iv: bytes | None = None) -> None:
        if len(key) != _BLOCK:
            raise ValueError(f"an AES-128 key has 16 bytes, this one {len(key)}")
        if iv is not None and len(iv) != _BLOCK:
            raise ValueError(f"an AES-CBC IV has 16 bytes, this one {len(iv)}")
        self.key = key
        self.iv = key if iv is None else iv

    def __repr__(self) -> str:  # never the key itself in a log line
        return "AesKey(<16 bytes>)"


def _pad(data: bytes, padding: Padding) -> bytes:
    short = -len(data) % _BLOCK
    if padding is Padding.PKCS7:
        fill = short or _BLOCK
        return data + bytes([fill]) * fill
    return data + (b"0" if padding is Padding.ASCII_ZERO else b"\0") * short


def _unpad(data: bytes, padding: Padding) -> bytes:
    if padding is Padding.PKCS7:
        fill = data[-1] if data else 0
        if not 1 <= fill <= _BLOCK or data[-fill:] != bytes([fill]) * fill:
            raise ProtocolError("the decrypted payload's PKCS#7 padding is wrong: wrong key?")
        return data[:-fill]
    # Zero-style fills carry no length: the XML ends with '>', so the fill is what follows.
    end = data.rfind(b">")
    return data[: end + 1] if end >= 0 else data


def _cbc(key: AesKey) -> Cipher[modes.CBC]:
    # `cryptography` on the first message: the site config names an AesKey (this module) when
    # it is validated, and a gateway without a platform never loads the package (about 9 MB).
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(key.key), modes.CBC(key.iv))


def encrypt(key: AesKey, plaintext: bytes, padding: Padding) -> bytes:
    enc = _cbc(key).encryptor()
    return enc.update(_pad(plaintext, padding)) + enc.finalize()


def decrypt(key: AesKey, ciphertext: bytes, padding: Padding) -> bytes:
    if not ciphertext or len(ciphertext) % _BLOCK:
        raise ProtocolError(
            f"an encrypted payload of {len(ciphertext)} bytes is not whole AES blocks: "
            "is the platform encrypting this message (profile setting `encrypted`)?"
        )
    dec = _cbc(key).decryptor()
    return _unpad(dec.update(ciphertext) + dec.finalize(), padding)


def md5_answer(secret: str, sequence: str, order: Md5Order) -> str:
    """Lowercase hex MD5 of the secret and the platform's challenge, in the profile's order."""
    text = secret + sequence if order is Md5Order.KEY_SEQUENCE else sequence + secret
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()
