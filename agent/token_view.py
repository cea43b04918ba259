"""What an authtoken says about itself, read without verifying it (only the edge holds the
keys that can): org, token id, expiry, hosts, protocols. For display and ``burrow diagnose``;
never decides anything. The signature, the secret part, is never returned or shown.

The format (``bt1.<kid>.<payload>.<signature>``, payload msgpack in base64url) is the one the
edge verifies; tokens of other shapes (static shared-secret tokens of a plain ``burrowd
edge``) have no readable claims.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field

import msgspec

PREFIX = "bt1"
MAX_TOKEN_CHARS = 8192  # as the edge: a longer one is not a token


@dataclass(frozen=True, slots=True)
class TokenView:
    kid: str
    org: str
    token_id: str
    issued_at: int
    expires_at: int  # 0: never
    hosts: list[str] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)

    def expiry_text(self, now: float | None = None) -> str:
        if not self.expires_at:
            return "never expires"
        left = self.expires_at - (time.time() if now is None else now)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.expires_at))
        if left <= 0:
            return f"expired {when}"
        return f"expires {when} (in {_span(left)})"


def _span(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{max(1.0, seconds / 60):.0f} minutes"


class UnreadableToken(ValueError):
    """The token is not a signed Burrow authtoken this agent can read; says why in one line."""


def read_token(token: str) -> TokenView:
    token = token.strip()
    if len(token) > MAX_TOKEN_CHARS:
        raise UnreadableToken("the authtoken is far too long; copy it again")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != PREFIX:
        raise UnreadableToken(
            "not a signed Burrow authtoken (bt1.…): a static token, or a damaged copy"
        )
    _, kid, payload, _signature = parts
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = msgspec.msgpack.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise UnreadableToken(
            "the authtoken's claims are damaged; copy the whole token again"
        ) from None
    if not isinstance(claims, dict):
        raise UnreadableToken(
            "the authtoken's claims are damaged; copy the whole token again"
        ) from None

    def text(key: str) -> str:
        value = claims.get(key, "")
        return value if isinstance(value, str) else ""

    def number(key: str) -> int:
        value = claims.get(key, 0)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def texts(key: str, default: list[str]) -> list[str]:
        value = claims.get(key, default)
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []

    return TokenView(
        kid=kid,
        org=text("org"),
        token_id=text("tid"),
        issued_at=number("iat"),
        expires_at=number("exp"),
        hosts=texts("hosts", []),
        protocols=texts("protocols", ["http", "tcp", "tls"]),
    )
