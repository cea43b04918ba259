"""Issuing signed agent authtokens, and the ring of signing keys control holds.

Control signs ``TokenClaims`` with the current Ed25519 key; edges verify offline with the
public halves (``VerifyKey``) they receive on the bus. Rotation adds a key and makes it
current while older keys stay verifiable, so tokens already handed out keep working until
the operator retires the old key. The ring is in memory only; storing private keys is the
store layer's job (encrypted with ``control.secret_box.SecretBox``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bus.events import VerifyKey
from contracts.token_format import TokenClaims, b64url_encode, encode_claims, signed_text, valid_kid

_RAW = serialization.Encoding.Raw


class SigningKey:
    """An Ed25519 private key and the id tokens name it by."""

    __slots__ = ("_private", "kid")

    def __init__(self, kid: str, private: Ed25519PrivateKey) -> None:
        if not valid_kid(kid):
            raise ValueError(f"key id {kid!r} must be 1-32 letters, digits or hyphens")
        self.kid = kid
        self._private = private

    @classmethod
    def generate(cls, kid: str | None = None) -> SigningKey:
        return cls(kid if kid is not None else new_kid(), Ed25519PrivateKey.generate())

    @classmethod
    def from_raw(cls, kid: str, raw: bytes) -> SigningKey:
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 private key is 32 bytes, got {len(raw)}")
        return cls(kid, Ed25519PrivateKey.from_private_bytes(raw))

    def private_raw(self) -> bytes:
        return self._private.private_bytes(
            _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def public_raw(self) -> bytes:
        return self._private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)

    def verify_key(self) -> VerifyKey:
        return VerifyKey(kid=self.kid, public_key=self.public_raw())

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def __repr__(self) -> str:
        # Never the private half: reprs end up in logs and tracebacks.
        return f"SigningKey(kid={self.kid!r})"


def new_kid() -> str:
    """A fresh key id: short, random, safe in the token's character set."""
    return "k" + secrets.token_hex(4)


def issue_token(claims: TokenClaims, key: SigningKey) -> str:
    """The authtoken text for ``claims``, signed with ``key`` (``contracts.token_format``)."""
    head = signed_text(key.kid, b64url_encode(encode_claims(claims)))
    return f"{head}.{b64url_encode(key.sign(head.encode('ascii')))}"


class KeyRing:
    """The current signing key plus older keys whose tokens are still accepted."""

    def __init__(self, current: SigningKey, older: Iterable[SigningKey] = ()) -> None:
        self._keys: dict[str, SigningKey] = {}
        for key in [*older, current]:
            self._add(key)
        self._current = current

    @classmethod
    def generate(cls) -> KeyRing:
        return cls(SigningKey.generate())

    def _add(self, key: SigningKey) -> None:
        if key.kid in self._keys:
            raise ValueError(f"key id {key.kid!r} is already in the ring")
        self._keys[key.kid] = key

    @property
    def current(self) -> SigningKey:
        return self._current

    def signing_keys(self) -> list[SigningKey]:
        """Every key in the ring, oldest first, the current one last."""
        return list(self._keys.values())

    def get(self, kid: str) -> SigningKey | None:
        return self._keys.get(kid)

    def issue(self, claims: TokenClaims) -> str:
        return issue_token(claims, self._current)

    def rotate(self, key: SigningKey | None = None) -> SigningKey:
        """Make a new key (or ``key``) current; the previous one stays verifiable."""
        if key is None:
            key = SigningKey.generate()
            while key.kid in self._keys:  # a random id collided: draw again
                key = SigningKey.generate()
        self._add(key)
        self._current = key
        return key

    def retire(self, kid: str) -> None:
        """Stop accepting tokens signed with ``kid``. The current key cannot be retired."""
        if kid == self._current.kid:
            raise ValueError(f"key {kid!r} is the current signing key: rotate before retiring it")
        if self._keys.pop(kid, None) is None:
            raise KeyError(f"no key {kid!r} in the ring")

    def verify_keys(self) -> list[VerifyKey]:
        """The public keys edges should accept, as published on the bus."""
        return [key.verify_key() for key in self._keys.values()]
