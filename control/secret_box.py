"""Small secrets at rest (signing keys, certificate keys), sealed with AES-256-GCM.

A sealed blob is::

    version (1 byte, 0x01) | nonce (12 bytes, random) | ciphertext + GCM tag (16 bytes)

The version byte is authenticated too (it is part of the associated data), so a later
format can be told apart and cannot be faked by flipping it. The caller's associated data
names what the secret is for and which row holds it (``b"signing-key:k1a2b3c4"``): a blob
copied into another row, or read back for another purpose, does not decrypt.

Random 96-bit nonces are safe for far more than the few thousand secrets one installation
seals under a master key (NIST SP 800-38D caps random-nonce GCM at 2^32 messages per key).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32

# Fixed HKDF inputs: the operator's secret is the only thing that varies between
# installations; these name the purpose so the derived key is used for nothing else.
_HKDF_SALT = b"burrow secret-box salt v1"
_HKDF_INFO = b"burrow secret-box aes-256-gcm master key"
_MIN_SECRET_CHARS = 16


class SecretBoxError(Exception):
    """A sealed secret could not be opened; the message says what to check."""


class SecretBox:
    __slots__ = ("_aead",)

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != KEY_BYTES:
            raise ValueError(f"the master key must be {KEY_BYTES} bytes, got {len(master_key)}")
        self._aead = AESGCM(master_key)

    @classmethod
    def from_secret(cls, secret: str) -> SecretBox:
        """A box keyed from an operator's secret string (HKDF-SHA256)."""
        if len(secret) < _MIN_SECRET_CHARS:
            raise ValueError(
                f"the secret key must be at least {_MIN_SECRET_CHARS} characters; "
                "generate one with `python -c 'import secrets; print(secrets.token_urlsafe())'`"
            )
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=_HKDF_SALT, info=_HKDF_INFO)
        return cls(hkdf.derive(secret.encode("utf-8")))

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        header = bytes([VERSION])
        nonce = os.urandom(NONCE_BYTES)
        return header + nonce + self._aead.encrypt(nonce, plaintext, header + aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < 1 + NONCE_BYTES + TAG_BYTES:
            raise SecretBoxError("the sealed secret is truncated; the stored value is damaged")
        if blob[0] != VERSION:
            raise SecretBoxError(
                f"the sealed secret has format version {blob[0]}, this Burrow reads {VERSION}; "
                "upgrade Burrow or restore the value"
            )
        header, nonce, sealed = blob[:1], blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, header + aad)
        except InvalidTag:
            raise SecretBoxError(
                "a stored secret could not be decrypted: the server's secret key differs "
                "from the one it was sealed with, or the stored value was altered or moved"
            ) from None
