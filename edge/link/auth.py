"""Who may open an agent link: the ``Authenticator`` interface and the static token list.

The static list (tokens from the edge's config, or one shared secret) serves ``burrowd dev``
and single-operator installs. Signed, revocable tokens verified offline come with the control
plane and implement the same interface.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Protocol

from contracts.token_format import AuthError

__all__ = ["AuthError", "Authenticator", "Identity", "StaticTokens"]


@dataclass(frozen=True, slots=True)
class Identity:
    """The account an agent acts for and what it may bind."""

    account: str
    token_id: str
    protocols: frozenset[str] = frozenset({"http", "tcp", "tls"})
    # Hostname patterns the agent may bind besides random names: "demo.example.com",
    # "*.example.com". Empty: any free name under the base domain.
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
    # (host pattern, "terminate" | "passthrough"): how the edge treats TLS for a host.
    tls_modes: tuple[tuple[str, str], ...] = ()
    # Basic-auth credentials visitors of this token's tunnels must present, each
    # "user:salt:hash" as made by ``hash_basic_password``. Empty: no basic auth.
    basic_auth: tuple[str, ...] = ()
    # Visitor address rules (CIDR, v4 or v6). A non-empty allow list admits only matching
    # addresses; deny wins over allow.
    ip_allow: tuple[str, ...] = ()
    ip_deny: tuple[str, ...] = ()
    expires_at: float = 0.0  # unix seconds; 0: never
    # The signing key that vouched for the token ("" for static tokens): its retirement ends
    # the sessions it let in.
    key_id: str = ""


class Authenticator(Protocol):
    def authenticate(self, token: str) -> Identity: ...


class StaticTokens:
    """Accept tokens from a fixed table (token -> account name).

    Comparison is constant-time per entry so response timing does not reveal a prefix.
    """

    def __init__(self, tokens: dict[str, str]) -> None:
        if not tokens:
            raise ValueError("at least one agent token must be configured")
        self._tokens = [(t.encode(), account) for t, account in tokens.items()]

    def authenticate(self, token: str) -> Identity:
        given = token.encode()
        found: str | None = None
        for candidate, account in self._tokens:
            if hmac.compare_digest(candidate, given):
                found = account
        if found is None:
            raise AuthError(
                "the authtoken was not accepted; run `burrow config add-authtoken TOKEN` "
                "with a token from your Burrow operator"
            )
        return Identity(account=found, token_id=found)
