"""The wire format of signed agent authtokens, shared by control (issues) and edge (verifies).

A token is four fields joined by dots::

    bt1.<kid>.<payload>.<signature>

- ``bt1``: the format and its version. A later format gets a new prefix (``bt2``), so an edge
  can tell "made by a newer Burrow" from garbage.
- ``kid``: the id of the Ed25519 signing key, ``[A-Za-z0-9-]{1,32}``. Keys rotate; an edge
  holds the public half of every key still in use (``bus.events.VerifyKey``).
- ``payload``: ``TokenClaims`` encoded with msgpack (a map with the field names below),
  then base64url without padding.
- ``signature``: the 64-byte Ed25519 signature, base64url without padding.

The signature covers the ASCII text ``bt1.<kid>.<payload>`` exactly as written: the prefix
binds the signature to this format and version (a signature over anything else Burrow signs
never verifies as a token), and the kid cannot be swapped without breaking it.

Every character is one of ``A-Z a-z 0-9 - _ .``: safe unquoted in a shell, inside a TOML
string, in an HTTP header and in a URL. base64url never produces a dot, so splitting on dots
is unambiguous. Encodings are canonical (the decoder re-encodes and compares), so one token
has exactly one spelling.

Parsing and claim decoding see untrusted bytes: everything malformed raises
``TokenFormatError`` (an ``AuthError``) with one line a user can act on, and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Annotated, Any

import msgspec


class AuthError(Exception):
    """The token was refused; the message is shown to the agent's user."""


PREFIX = "bt1"
# A token with a few dozen hosts and CIDRs is well under 2 KiB; the cap bounds the work an
# unauthenticated peer can make the edge do before the signature check.
MAX_TOKEN_CHARS = 8192
SIGNATURE_BYTES = 64

PROTOCOLS = frozenset({"http", "tcp", "tls"})
TLS_MODES = frozenset({"terminate", "passthrough"})
MAX_HOSTS = 100
MAX_CIDRS = 200
MAX_BASIC_AUTH = 20
MAX_HOST_CHARS = 253

# Labels directly under the base domain that the installation answers on itself (or will):
# never reservable, never bound, never handed out at random. The one list both control
# (reservations, token hosts) and the edge (binds) read. The agent hostname is added to it
# from each role's config.
INSTALLATION_LABELS = frozenset(
    {
        "_acme-challenge",
        "_burrow",
        "admin",
        "agent",
        "agents",
        "api",
        "autoconfig",
        "autodiscover",
        "billing",
        "console",
        "control",
        "dashboard",
        "docs",
        "edge",
        "login",
        "mail",
        "ns1",
        "ns2",
        "smtp",
        "status",
        "www",
    }
)


def installation_name(host: str, base_domain: str, agent_hostname: str = "") -> str:
    """The installation's own name that ``host`` is or falls under, else "".

    ``host``, ``base_domain`` and ``agent_hostname`` are lowercase, without a trailing dot;
    ``host`` may be a ``*.`` pattern."""
    bare = host[2:] if host.startswith("*.") else host
    # An agent hostname that is the base domain or above it (``burrowd dev`` dials
    # "localhost" with base "localhost") reserves only the base itself, not every name.
    own_agent_name = (
        agent_hostname
        and agent_hostname != base_domain
        and not base_domain.endswith("." + agent_hostname)
    )
    if own_agent_name and (bare == agent_hostname or bare.endswith("." + agent_hostname)):
        return agent_hostname
    if bare == base_domain:
        return base_domain
    suffix = "." + base_domain
    if bare.endswith(suffix):
        top = bare[: -len(suffix)].rsplit(".", 1)[-1]
        if top in INSTALLATION_LABELS:
            return top + suffix
    return ""


_KID = re.compile(r"[A-Za-z0-9-]{1,32}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_OTHER_VERSION = re.compile(r"bt[0-9]{1,3}\.")

_NEW_TOKEN = "ask your Burrow operator for a new token"

ShortText = Annotated[str, msgspec.Meta(max_length=MAX_HOST_CHARS)]
CidrText = Annotated[str, msgspec.Meta(max_length=64)]


class TokenFormatError(AuthError):
    """The token is not a well-formed signed authtoken; the message is shown to the user."""


def valid_kid(kid: str) -> bool:
    return _KID.fullmatch(kid) is not None


def _check_host_pattern(pattern: str) -> None:
    """``demo.example.com`` or ``*.example.com``: lowercase labels, an optional ``*.`` first."""
    name = pattern[2:] if pattern.startswith("*.") else pattern
    if (
        not name
        or len(pattern) > MAX_HOST_CHARS
        or not all(_LABEL.fullmatch(label) for label in name.split("."))
    ):
        raise ValueError(f"{pattern!r} is not a hostname pattern like app.example.com")


def _check_cidr(text: str, field: str) -> None:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{field} entry {text!r} is not an IP network like 10.0.0.0/8") from None


def _check_basic_auth(entry: str) -> None:
    parts = entry.split(":")
    if len(parts) != 3 or not all(parts):
        raise ValueError("a basic_auth entry is not in the form user:salt:hash")


class TokenClaims(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """What a token lets its holder do. Checked on construction and on decode.

    ``forbid_unknown_fields``: a newer control may add a restriction; an older edge must refuse
    such a token rather than silently ignore the restriction.
    """

    org: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    tid: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    iat: Annotated[int, msgspec.Meta(ge=0)]
    exp: Annotated[int, msgspec.Meta(ge=0)] = 0  # unix seconds; 0: never expires
    # Hostname patterns the agent may bind besides random names; empty: names under the
    # base domain only.
    hosts: Annotated[list[ShortText], msgspec.Meta(max_length=MAX_HOSTS)] = []
    # Which tunnel kinds the agent may open; empty is not allowed (it could bind nothing).
    protocols: Annotated[list[str], msgspec.Meta(min_length=1, max_length=3)] = msgspec.field(
        default_factory=lambda: ["http", "tcp", "tls"]
    )
    # host pattern -> "terminate" | "passthrough".
    tls: Annotated[dict[ShortText, str], msgspec.Meta(max_length=MAX_HOSTS)] = {}
    # "user:salt:hash" entries from ``contracts.basic_auth.hash_basic_password``.
    basic_auth: Annotated[list[ShortText], msgspec.Meta(max_length=MAX_BASIC_AUTH)] = []
    ip_allow: Annotated[list[CidrText], msgspec.Meta(max_length=MAX_CIDRS)] = []
    ip_deny: Annotated[list[CidrText], msgspec.Meta(max_length=MAX_CIDRS)] = []

    def __post_init__(self) -> None:
        # msgspec turns a ValueError here into a ValidationError carrying this message.
        if self.exp and self.exp < self.iat:
            raise ValueError("the token expires before it was issued")
        for protocol in self.protocols:
            if protocol not in PROTOCOLS:
                raise ValueError(f"unknown protocol {protocol!r}: use http, tcp or tls")
        if len(set(self.protocols)) != len(self.protocols):
            raise ValueError("a protocol is listed twice")
        for pattern in self.hosts:
            _check_host_pattern(pattern)
        for pattern, mode in self.tls.items():
            _check_host_pattern(pattern)
            if mode not in TLS_MODES:
                raise ValueError(
                    f"TLS mode {mode!r} for {pattern!r} is unknown: use terminate or passthrough"
                )
        for entry in self.basic_auth:
            _check_basic_auth(entry)
        for cidr in self.ip_allow:
            _check_cidr(cidr, "ip_allow")
        for cidr in self.ip_deny:
            _check_cidr(cidr, "ip_deny")


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(TokenClaims)


def encode_claims(claims: TokenClaims) -> bytes:
    return _encoder.encode(claims)


def decode_claims(payload: bytes) -> TokenClaims:
    """The claims in a (verified) payload, or TokenFormatError saying what is wrong."""
    try:
        return _decoder.decode(payload)
    except msgspec.ValidationError as exc:
        if str(exc).startswith("Object contains unknown field"):
            raise TokenFormatError(
                f"the authtoken carries a claim this edge does not understand ({exc}); "
                "ask your Burrow operator to upgrade the edge"
            ) from None
        raise TokenFormatError(
            f"the authtoken's claims are invalid ({exc}); {_NEW_TOKEN}"
        ) from None
    except (msgspec.DecodeError, ValueError, RecursionError):
        # ValueError: msgspec lets UnicodeDecodeError through for a string that is not UTF-8.
        raise TokenFormatError(f"the authtoken's claims are unreadable; {_NEW_TOKEN}") from None


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str, what: str) -> bytes:
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        data = None
    # Re-encoding rejects non-canonical spellings (stray low bits in the last character).
    if data is None or b64url_encode(data) != text:
        raise TokenFormatError(f"the authtoken's {what} is damaged; copy the whole token again")
    return data


def signed_text(kid: str, payload_b64: str) -> str:
    """The part of a token the signature covers."""
    return f"{PREFIX}.{kid}.{payload_b64}"


def parse_token(text: Any) -> tuple[str, bytes, bytes, bytes]:
    """Split a token into ``(kid, signed_bytes, payload_bytes, signature)``.

    Checks only the shape; the caller verifies the signature over ``signed_bytes`` and then
    decodes ``payload_bytes`` with ``decode_claims``. Raises TokenFormatError on any input
    that is not a well-formed token, and nothing else.
    """
    if not isinstance(text, str):
        raise TokenFormatError("the authtoken must be text")
    if len(text) > MAX_TOKEN_CHARS:
        raise TokenFormatError(
            f"the authtoken is longer than {MAX_TOKEN_CHARS} characters; "
            "copy just the token, nothing around it"
        )
    text = text.strip(" \t\r\n")
    if not text:
        raise TokenFormatError("the authtoken is empty; run `burrow config add-authtoken TOKEN`")
    if not text.startswith(PREFIX + "."):
        if _OTHER_VERSION.match(text):
            raise TokenFormatError(
                "the authtoken was made by a newer Burrow than this edge understands; "
                "ask your Burrow operator to upgrade the edge"
            )
        raise TokenFormatError(
            f"this is not a Burrow authtoken (those start with '{PREFIX}.'); "
            "check you copied the right token"
        )
    parts = text.split(".")
    if len(parts) != 4:
        raise TokenFormatError(
            "the authtoken should have 4 parts separated by dots; copy the whole token again"
        )
    _, kid, payload_b64, signature_b64 = parts
    if not valid_kid(kid):
        raise TokenFormatError("the authtoken's key id is malformed; copy the whole token again")
    for part, what in ((payload_b64, "payload"), (signature_b64, "signature")):
        if not _B64URL.fullmatch(part):
            raise TokenFormatError(f"the authtoken's {what} is damaged; copy the whole token again")
    payload = _b64url_decode(payload_b64, "payload")
    signature = _b64url_decode(signature_b64, "signature")
    if len(signature) != SIGNATURE_BYTES:
        raise TokenFormatError("the authtoken's signature is damaged; copy the whole token again")
    return kid, signed_text(kid, payload_b64).encode("ascii"), payload, signature
