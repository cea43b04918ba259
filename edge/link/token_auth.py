"""Signed authtokens verified offline: the edge's ``Authenticator`` for control-issued tokens.

The edge holds the public keys tokens may be signed with and the list of revoked token ids;
both arrive on the bus (``KeysSet``, ``TokenRevoked``, or a ``RoutingSnapshot``) and the edge
keeps using the last ones it had while control or Redis is down. No call here touches the
network.

A reconnect storm (an edge restart sends every agent back at once) presents the same tokens
again, so verified tokens are cached: a hit skips the base64, signature and msgpack work.
Expiry and revocation are still checked on every call, against the cached identity.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bus.events import Revocation, VerifyKey
from contracts.token_format import TokenClaims, decode_claims, parse_token
from edge.link.auth import Authenticator, AuthError, Identity

# Verified tokens remembered. Only tokens with a good signature get in, so an attacker
# cannot fill it; the bound keeps a long-lived edge's memory flat as tokens come and go.
MAX_CACHED_TOKENS = 4096

_ADD_TOKEN = "run `burrow config add-authtoken TOKEN`"
SUSPENDED_MESSAGE = (
    "this account is suspended by the operator of this Burrow installation: its agents are "
    "refused until they lift it; ask them why"
)


class SignedTokens:
    """Accept authtokens signed by a known key, unexpired and not revoked."""

    __slots__ = ("_cache", "_clock", "_expiry_heap", "_keys", "_revoked", "_suspended")

    def __init__(self, keys: Iterable[VerifyKey], clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._keys: dict[str, tuple[bytes, Ed25519PublicKey]] = {}
        # token text -> (kid, raw public key, identity) for tokens whose signature checked out.
        self._cache: dict[str, tuple[str, bytes, Identity]] = {}
        # token id -> until (unix seconds; <= 0: keep for ever, the token never expires).
        self._revoked: dict[str, float] = {}
        # (until, token id) for entries that can be dropped; stale pairs are skipped on pop.
        self._expiry_heap: list[tuple[float, str]] = []
        self._suspended: frozenset[str] = frozenset()  # org ids an operator suspended
        self.set_keys(keys)

    # -- keys -----------------------------------------------------------------------------

    def set_keys(self, keys: Iterable[VerifyKey]) -> None:
        """Replace the accepted keys (after a rotation or a retirement).

        Tokens signed with a key no longer in the set are refused from now on, cached or not.
        """
        loaded: dict[str, tuple[bytes, Ed25519PublicKey]] = {}
        for key in keys:
            raw = bytes(key.public_key)
            if len(raw) != 32:
                raise ValueError(
                    f"verify key {key.kid!r} is {len(raw)} bytes; an Ed25519 public key is 32"
                )
            loaded[key.kid] = (raw, Ed25519PublicKey.from_public_bytes(raw))
        self._keys = loaded
        # Keep cached tokens only while the exact key that verified them is still accepted.
        self._cache = {
            token: entry
            for token, entry in self._cache.items()
            if entry[0] in loaded and loaded[entry[0]][0] == entry[1]
        }

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    # -- revocations ----------------------------------------------------------------------

    def revoke(self, revocation: Revocation) -> None:
        now = self._clock()
        self._prune(now)
        self._add_revocation(revocation, now)

    def set_revocations(self, revocations: Iterable[Revocation]) -> None:
        """Replace the whole revocation list (from a routing snapshot)."""
        now = self._clock()
        self._revoked = {}
        self._expiry_heap = []
        for revocation in revocations:
            self._add_revocation(revocation, now)

    def is_revoked(self, token_id: str) -> bool:
        until = self._revoked.get(token_id)
        return until is not None and (until <= 0 or until > self._clock())

    def revocations(self) -> list[Revocation]:
        """The revocations held now, for the admin view."""
        return [Revocation(token_id=tid, until=until) for tid, until in self._revoked.items()]

    def _add_revocation(self, revocation: Revocation, now: float) -> None:
        until = revocation.until
        if 0 < until <= now:
            return  # the token has expired anyway
        held = self._revoked.get(revocation.token_id)
        if held is not None:
            # Keep the later end; "for ever" beats any time.
            until = 0.0 if held <= 0 or until <= 0 else max(held, until)
        self._revoked[revocation.token_id] = until
        if until > 0:
            heapq.heappush(self._expiry_heap, (until, revocation.token_id))

    def _prune(self, now: float) -> None:
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            until, token_id = heapq.heappop(heap)
            if self._revoked.get(token_id) == until:
                del self._revoked[token_id]

    def set_suspended(self, orgs: Iterable[str]) -> None:
        """Replace the set of suspended orgs, whose tokens are refused while it lasts."""
        self._suspended = frozenset(orgs)

    # -- authentication -------------------------------------------------------------------

    def authenticate(self, token: str) -> Identity:
        cached = self._cache.get(token)
        if cached is not None:
            identity = cached[2]
        else:
            cached = self._verify(token)
            identity = cached[2]
            if len(self._cache) >= MAX_CACHED_TOKENS:
                del self._cache[next(iter(self._cache))]
            self._cache[token] = cached
        now = self._clock()
        if identity.expires_at and now >= identity.expires_at:
            when = datetime.fromtimestamp(identity.expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            raise AuthError(f"this authtoken expired at {when}; create a new one and {_ADD_TOKEN}")
        if self.is_revoked(identity.token_id):
            raise AuthError(
                "this authtoken was revoked; create a new one with the Burrow console or "
                f"your operator and {_ADD_TOKEN}"
            )
        if identity.account in self._suspended:
            raise AuthError(SUSPENDED_MESSAGE)
        return identity

    def _verify(self, token: str) -> tuple[str, bytes, Identity]:
        kid, signed, payload, signature = parse_token(token)
        entry = self._keys.get(kid)
        if entry is None:
            raise AuthError(
                f"this authtoken was signed by a key this edge does not know ({kid}), "
                f"perhaps one since retired: issue a new token and {_ADD_TOKEN}"
            )
        try:
            entry[1].verify(signature, signed)
        except InvalidSignature:
            raise AuthError(
                "the authtoken's signature does not match its contents: it was altered or "
                "copied incompletely; copy the whole token again"
            ) from None
        return kid, entry[0], identity_from_claims(decode_claims(payload), kid)


def identity_from_claims(claims: TokenClaims, key_id: str = "") -> Identity:
    return Identity(
        account=claims.org,
        token_id=claims.tid,
        protocols=frozenset(claims.protocols),
        allowed_hosts=tuple(claims.hosts),
        tls_modes=tuple(sorted(claims.tls.items())),
        basic_auth=tuple(claims.basic_auth),
        ip_allow=tuple(claims.ip_allow),
        ip_deny=tuple(claims.ip_deny),
        expires_at=float(claims.exp),
        key_id=key_id,
    )


class ChainedAuthenticator:
    """Try authenticators in order; if all refuse, raise the first one's error.

    For an edge that accepts signed tokens and, in development, a static shared secret.
    """

    __slots__ = ("_authenticators",)

    def __init__(self, *authenticators: Authenticator) -> None:
        if not authenticators:
            raise ValueError("at least one authenticator is needed")
        self._authenticators = authenticators

    def authenticate(self, token: str) -> Identity:
        first: AuthError | None = None
        for authenticator in self._authenticators:
            try:
                return authenticator.authenticate(token)
            except AuthError as exc:
                first = first or exc
        assert first is not None
        raise first
