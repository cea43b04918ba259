"""The authtoken wire format: what control writes is what the edge reads, and nothing else."""

from __future__ import annotations

import contextlib
import re

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.basic_auth import hash_basic_password
from contracts.token_format import (
    MAX_TOKEN_CHARS,
    TokenClaims,
    TokenFormatError,
    b64url_encode,
    decode_claims,
    encode_claims,
    parse_token,
)
from control.token_signing import SigningKey, issue_token
from edge.link.auth import AuthError

KEY = SigningKey.generate("k-2024")
CLAIMS = TokenClaims(
    org="org_acme",
    tid="tok_1",
    iat=1_700_000_000,
    exp=1_800_000_000,
    hosts=["demo.acme.dev", "*.acme.dev"],
    protocols=["http", "tls"],
    tls={"*.acme.dev": "passthrough", "demo.acme.dev": "terminate"},
    basic_auth=[hash_basic_password("alice", "s3cret", salt=b"0123456789ab")],
    ip_allow=["10.0.0.0/8", "2001:db8::/32"],
    ip_deny=["10.9.9.9/32"],
)
TOKEN = issue_token(CLAIMS, KEY)
TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."


def test_a_token_splits_into_kid_signed_part_payload_and_signature() -> None:
    kid, signed, payload, signature = parse_token(TOKEN)
    assert kid == "k-2024"
    assert TOKEN.startswith("bt1.k-2024.")
    # The signature covers the prefix, the kid and the payload exactly as written.
    assert signed == TOKEN.rsplit(".", 1)[0].encode()
    assert len(signature) == 64
    assert decode_claims(payload) == CLAIMS


def test_a_token_is_safe_unquoted_in_shells_toml_and_headers() -> None:
    assert re.fullmatch(r"[A-Za-z0-9._-]+", TOKEN)
    assert TOKEN.count(".") == 3
    assert len(TOKEN) < 1024


def test_surrounding_whitespace_from_copy_and_paste_is_ignored() -> None:
    assert parse_token(f"  {TOKEN}\n") == parse_token(TOKEN)


def _replace_part(index: int, value: str) -> str:
    parts = TOKEN.split(".")
    parts[index] = value
    return ".".join(parts)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("tok-acme-1", "not a Burrow authtoken"),
        ("eyJhbGciOi.eyJzdWIiOi.c2ln", "not a Burrow authtoken"),
        ("bt2.k1.AAAA.AAAA", "newer Burrow"),
        ("bt1.k1.AAAA", "4 parts"),
        (TOKEN + ".extra", "4 parts"),
        (_replace_part(1, ""), "key id"),
        (_replace_part(1, "k_1"), "key id"),
        (_replace_part(1, "k" * 33), "key id"),
        (_replace_part(2, ""), "payload is damaged"),
        (_replace_part(2, "abc+def/"), "payload is damaged"),
        (_replace_part(2, "A"), "payload is damaged"),  # 6 bits cannot be a whole byte
        (_replace_part(3, "AAAA"), "signature is damaged"),  # 3 bytes, not 64
        (_replace_part(3, TOKEN.split(".")[3] + "=="), "signature is damaged"),
        ("bt1.k1.AAAA.AAAA\u00e9", "signature is damaged"),
        ("bt1." + "A" * MAX_TOKEN_CHARS, "longer than"),
    ],
)
def test_malformed_tokens_are_refused_with_a_one_line_reason(text: str, says: str) -> None:
    with pytest.raises(TokenFormatError) as info:
        parse_token(text)
    message = str(info.value)
    assert says in message
    assert "\n" not in message
    assert isinstance(info.value, AuthError)


def test_a_non_canonical_base64_spelling_is_refused() -> None:
    # "AB" and "AA" both decode to b"\x00"; only "AA" is the canonical spelling.
    assert b64url_encode(b"\x00") == "AA"
    with pytest.raises(TokenFormatError, match="payload is damaged"):
        parse_token(_replace_part(2, "AB"))


@given(st.text(max_size=300))
def test_no_text_makes_the_parser_raise_anything_but_a_format_error(text: str) -> None:
    with contextlib.suppress(TokenFormatError):
        parse_token(text)


@given(st.text(alphabet=TOKEN_CHARS, max_size=200))
def test_token_shaped_text_only_ever_parses_or_raises_a_format_error(tail: str) -> None:
    try:
        kid, signed, _payload, signature = parse_token("bt1." + tail)
    except TokenFormatError:
        return
    assert signed.startswith(f"bt1.{kid}.".encode())
    assert len(signature) == 64


@given(st.integers(0, len(TOKEN) - 1), st.characters(), st.sampled_from(["sub", "ins", "del"]))
def test_edits_of_a_valid_token_parse_or_raise_a_format_error(
    at: int, char: str, edit: str
) -> None:
    if edit == "sub":
        text = TOKEN[:at] + char + TOKEN[at + 1 :]
    elif edit == "ins":
        text = TOKEN[:at] + char + TOKEN[at:]
    else:
        text = TOKEN[:at] + TOKEN[at + 1 :]
    with contextlib.suppress(TokenFormatError):
        parse_token(text)


@given(st.binary(max_size=300))
def test_claims_decoding_of_any_bytes_gives_claims_or_a_format_error(payload: bytes) -> None:
    try:
        claims = decode_claims(payload)
    except TokenFormatError:
        return
    assert isinstance(claims, TokenClaims)


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", b"\x81\xa2\x00\x80", b"\x91" * 10_000, b"\x81\xa3org"],
    ids=["empty", "bad-opcode", "non-utf8-key", "deep-nesting", "truncated"],
)
def test_unreadable_claims_are_refused(payload: bytes) -> None:
    with pytest.raises(TokenFormatError, match=r"claims are (unreadable|invalid)"):
        decode_claims(payload)


_FIELD_NAMES = ["org", "tid", "iat", "exp", "hosts", "protocols", "tls", "basic_auth"]
_FIELD_NAMES += ["ip_allow", "ip_deny", "other"]
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(_FIELD_NAMES), _VALUES))
def test_claims_of_any_shape_give_claims_or_a_format_error(fields: dict[str, object]) -> None:
    with contextlib.suppress(TokenFormatError):
        decode_claims(msgspec.msgpack.encode(fields))


def _claims_payload(**overrides: object) -> bytes:
    fields: dict[str, object] = {"org": "org_acme", "tid": "tok_1", "iat": 1}
    fields.update(overrides)
    return msgspec.msgpack.encode(fields)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"ip_allow": ["10.0.0.0/33"]}, "ip_allow entry '10.0.0.0/33' is not an IP network"),
        ({"ip_deny": ["evil.example.com"]}, "ip_deny entry 'evil.example.com'"),
        ({"protocols": ["http", "udp"]}, "unknown protocol 'udp'"),
        ({"protocols": []}, "protocols"),
        ({"protocols": ["http", "http"]}, "listed twice"),
        ({"tls": {"a.example.com": "offload"}}, "TLS mode 'offload'"),
        ({"hosts": ["Bad Host!"]}, "not a hostname pattern"),
        ({"hosts": ["a.*.example.com"]}, "not a hostname pattern"),
        ({"hosts": [f"h{i}.example.com" for i in range(101)]}, "hosts"),
        ({"basic_auth": ["alice-without-hash"]}, "user:salt:hash"),
        ({"exp": 0.5}, "exp"),
        ({"exp": -1}, "exp"),
        ({"iat": 100, "exp": 50}, "expires before it was issued"),
        ({"org": ""}, "org"),
    ],
)
def test_signed_but_invalid_claims_are_refused_saying_which(
    overrides: dict[str, object], says: str
) -> None:
    with pytest.raises(TokenFormatError) as info:
        decode_claims(_claims_payload(**overrides))
    message = str(info.value)
    assert says in message
    assert "claims are invalid" in message
    assert "new token" in message


def test_a_claim_from_a_newer_control_is_refused_not_ignored() -> None:
    # Ignoring an unknown claim could ignore a restriction; an old edge must say so instead.
    with pytest.raises(TokenFormatError) as info:
        decode_claims(_claims_payload(max_tunnels=1))
    assert "unknown field `max_tunnels`" in str(info.value)
    assert "upgrade the edge" in str(info.value)


def test_missing_required_claims_are_refused() -> None:
    with pytest.raises(TokenFormatError, match="`tid`"):
        decode_claims(msgspec.msgpack.encode({"org": "org_acme", "iat": 1}))


def test_the_issuer_cannot_build_claims_the_edge_would_refuse() -> None:
    with pytest.raises(ValueError, match="unknown protocol"):
        TokenClaims(org="o", tid="t", iat=1, protocols=["ftp"])
    with pytest.raises(ValueError, match="not an IP network"):
        TokenClaims(org="o", tid="t", iat=1, ip_deny=["300.1.1.1"])


def test_claims_default_to_every_protocol_and_no_expiry() -> None:
    claims = decode_claims(encode_claims(TokenClaims(org="o", tid="t", iat=5)))
    assert claims.protocols == ["http", "tcp", "tls"]
    assert claims.exp == 0
    assert claims.hosts == []
