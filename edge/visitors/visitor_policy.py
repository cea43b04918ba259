"""Who may reach a tunnel: the visitor policy an agent's token carries, checked at the edge.

Theory of operation
-------------------
A token (``edge.link.auth.Identity``) may ask the edge to guard the tunnels it opens: visitor
address rules (CIDR allow and deny lists, IPv4 and IPv6) and HTTP basic auth (RFC 7617)
against ``user:salt:hash`` entries. ``VisitorPolicy.from_identity`` turns that into one object
per agent session when its Hello is accepted; a token with nothing to check gets the shared
``OPEN`` policy, so the visitor hot path pays one identity comparison (``policy is OPEN``) and
nothing else.

Address rules are parsed once into ``ipaddress`` networks. Lists are short, so a linear scan
is the fast path; the verdict per visitor address is remembered too (bounded), because one
visitor makes many requests. An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``, what a
dual-stack socket reports for an IPv4 peer) is matched as the IPv4 address it carries, and
an IPv4-mapped rule as its IPv4 network. Deny wins over allow; a non-empty allow list admits
only the addresses it matches.

Basic-auth passwords are checked with PBKDF2 (``contracts.basic_auth.check_basic_password``), about
20 ms of CPU on the event loop each. So:

- header values already accepted are remembered (LRU, ``ACCEPTED_CACHE`` entries): a visitor
  pays once per credential, not once per request;
- header values already refused are remembered too (cleared when full, so it stays bounded):
  a client that keeps sending the same wrong password costs one check;
- fresh checks are rationed per policy (a token bucket): a visitor guessing passwords gets
  429 instead of stalling every other connection on this edge.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from contracts.basic_auth import check_basic_password
from edge.http1.events import Headers

if TYPE_CHECKING:
    from edge.link.auth import Identity

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ACCEPTED_CACHE: Final = 64  # header values known good, per policy (LRU)
REFUSED_CACHE: Final = 64  # header values known bad, per policy (cleared when full)
ADDRESS_CACHE: Final = 1024  # address verdicts, per policy (cleared when full)
# RFC 7617 credentials longer than this are refused unread: no real user name and password
# come near it, and it bounds what the caches above hold.
MAX_AUTHORIZATION: Final = 1024
# Fresh PBKDF2 checks per policy: a burst, then this many per second.
VERIFY_BURST: Final = 8
VERIFY_RATE: Final = 4.0

_MAPPED_V4: Final = ipaddress.IPv6Network("::ffff:0:0/96")

_OK: Final = 0
_BAD: Final = 1
_BUSY: Final = 2


class Refusal:
    """Why a visitor is turned away: the status it sees, the metrics reason, the page text."""

    __slots__ = ("detail", "reason", "status")

    def __init__(self, status: int, reason: str, detail: str) -> None:
        self.status = status
        self.reason = reason
        self.detail = detail

    def __repr__(self) -> str:
        return f"Refusal({self.status}, {self.reason!r})"


IP_DENIED: Final = Refusal(403, "ip_denied", "Your address is not allowed to reach this tunnel.")
AUTH_REQUIRED: Final = Refusal(
    401,
    "auth_required",
    "This tunnel is protected: sign in with the user name and password its owner gave you.",
)
AUTH_BUSY: Final = Refusal(
    429,
    "auth_rate",
    "Too many password attempts for this tunnel; wait a few seconds and try again.",
)


def parse_network(text: str) -> Network:
    """A CIDR rule (or a bare address) as a network; an IPv4-mapped IPv6 rule as the IPv4
    network it covers. Raises ValueError for anything else."""
    network = ipaddress.ip_network(text.strip(), strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED_V4):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def parse_basic(value: bytes) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic ...`` value (RFC 7617), or None
    for anything else. Never raises."""
    if len(value) > MAX_AUTHORIZATION:
        return None
    parts = value.split(None, 1)
    if len(parts) != 2 or parts[0].lower() != b"basic":
        return None
    token = parts[1].strip()
    try:
        # RFC 4648 padding is optional in practice; the strict decoder wants it.
        decoded = base64.b64decode(token + b"=" * (-len(token) % 4), validate=True)
        text = decoded.decode("utf-8")  # the charset the challenge names
    except (binascii.Error, ValueError):
        return None
    user, sep, password = text.partition(":")
    if not sep or not user:
        return None
    return user, password


class VisitorPolicy:
    __slots__ = (
        "_accepted",
        "_addresses",
        "_allow",
        "_clock",
        "_credentials",
        "_deny",
        "_refilled",
        "_refused",
        "_tokens",
        "has_allow",
        "requires_auth",
    )

    def __init__(
        self,
        *,
        basic_auth: Iterable[str] = (),
        ip_allow: Iterable[str] = (),
        ip_deny: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Raises ValueError naming the first rule that is not a CIDR."""
        allow = tuple(ip_allow)
        deny = tuple(ip_deny)
        self._allow = tuple(_parse_rule(r, "ip_allow") for r in allow)
        self._deny = tuple(_parse_rule(r, "ip_deny") for r in deny)
        self.has_allow = bool(allow)
        self._credentials = tuple(basic_auth)
        self.requires_auth = bool(self._credentials)
        self._addresses: dict[str, bool] = {}
        self._accepted: OrderedDict[bytes, None] = OrderedDict()
        self._refused: set[bytes] = set()
        self._clock = clock
        self._tokens = float(VERIFY_BURST)
        self._refilled = clock()

    @classmethod
    def from_identity(cls, identity: Identity) -> VisitorPolicy:
        """The policy for an agent session; ``OPEN`` when the token asks for none."""
        if not (identity.basic_auth or identity.ip_allow or identity.ip_deny):
            return OPEN
        return cls(
            basic_auth=identity.basic_auth, ip_allow=identity.ip_allow, ip_deny=identity.ip_deny
        )

    def __repr__(self) -> str:
        return (
            f"VisitorPolicy(allow={len(self._allow)}, deny={len(self._deny)}, "
            f"basic_auth={len(self._credentials)})"
        )

    # -- visitor addresses ----------------------------------------------------------------

    def allows(self, address: str) -> bool:
        """Whether a visitor at ``address`` (as the socket reports it) may reach the tunnel."""
        verdict = self._addresses.get(address)
        if verdict is None:
            verdict = self._judge(address)
            if len(self._addresses) >= ADDRESS_CACHE:
                self._addresses.clear()
            self._addresses[address] = verdict
        return verdict

    def _judge(self, address: str) -> bool:
        if not self._allow and not self._deny:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            # No address to match (not an IP socket): only a policy without rules admits it.
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        # A network of the other IP version never contains the address (``in`` is False),
        # and a zone index (``fe80::1%eth0``) does not change which networks do.
        for network in self._deny:
            if ip in network:
                return False
        if not self.has_allow:
            return True
        return any(ip in network for network in self._allow)

    # -- basic auth -----------------------------------------------------------------------

    def check_authorization(self, header_value: bytes | None) -> bool:
        """Whether an ``Authorization`` value satisfies the policy's basic auth (always, if
        it asks for none)."""
        return self._verify(header_value) == _OK

    def _verify(self, header_value: bytes | None) -> int:
        if not self.requires_auth:
            return _OK
        if header_value is None:
            return _BAD
        accepted = self._accepted
        if header_value in accepted:
            accepted.move_to_end(header_value)
            return _OK
        refused = self._refused
        if header_value in refused:
            return _BAD
        credentials = parse_basic(header_value)
        if credentials is None:
            return _BAD  # not worth remembering: refusing it again costs nothing
        if not self._take_token():
            return _BUSY
        user, password = credentials
        if any(check_basic_password(entry, user, password) for entry in self._credentials):
            accepted[header_value] = None
            if len(accepted) > ACCEPTED_CACHE:
                accepted.popitem(last=False)
            return _OK
        if len(refused) >= REFUSED_CACHE:
            refused.clear()
        refused.add(header_value)
        return _BAD

    def _take_token(self) -> bool:
        now = self._clock()
        tokens = min(float(VERIFY_BURST), self._tokens + (now - self._refilled) * VERIFY_RATE)
        self._refilled = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True

    # -- both, for HTTP requests ----------------------------------------------------------

    def screen(self, address: str, headers: Headers) -> Refusal | Headers:
        """An HTTP request's verdict: a ``Refusal``, or the headers to forward, without
        Authorization when it carried this tunnel's password (the local service is not
        told the tunnel's password)."""
        if not self.requires_auth:
            return IP_DENIED if not self.allows(address) else headers
        authorization = None
        for name, value in headers:
            if name == b"authorization":
                authorization = value
                break
        refusal = self.refusal(address, authorization)
        if refusal is not None:
            return refusal
        return [(name, value) for name, value in headers if name != b"authorization"]

    def refusal(self, address: str, authorization: bytes | None) -> Refusal | None:
        """Why an HTTP request from ``address`` is refused, or None to let it through.
        Address first: a visitor who may not reach the tunnel is not asked for a password."""
        if not self.allows(address):
            return IP_DENIED
        verdict = self._verify(authorization)
        if verdict == _OK:
            return None
        return AUTH_REQUIRED if verdict == _BAD else AUTH_BUSY


def _parse_rule(text: str, field: str) -> Network:
    try:
        return parse_network(text)
    except ValueError:
        raise ValueError(
            f"{field} rule {text!r} is not an IPv4 or IPv6 address or CIDR network"
        ) from None


OPEN: Final = VisitorPolicy()
"""The policy of a token that asks for nothing: every visitor gets through."""


def challenge(host: str) -> bytes:
    """The ``WWW-Authenticate`` value of a 401 for ``host`` (RFC 7617)."""
    realm = host.replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{realm}", charset="UTF-8"'.encode("latin-1", "replace")
