"""Ids for rows and secrets: a type prefix and random base32, so an id says what it names
and cannot be guessed from another."""

from __future__ import annotations

import base64
import secrets


def new_id(prefix: str, nbytes: int = 10) -> str:
    """``org_4fzq…``: ``nbytes`` random bytes, lowercase base32 without padding."""
    text = base64.b32encode(secrets.token_bytes(nbytes)).decode().rstrip("=").lower()
    return f"{prefix}_{text}"


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)
