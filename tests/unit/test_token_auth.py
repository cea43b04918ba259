"""Signed authtokens at the edge: issued by control, verified offline, rotated, revoked."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import edge.link.token_auth as token_auth
from bus.events import Revocation, VerifyKey
from contracts.basic_auth import hash_basic_password
from contracts.token_format import TokenClaims, b64url_encode, signed_text
from control.token_signing import KeyRing, SigningKey, issue_token
from edge.link.auth import AuthError, StaticTokens
from edge.link.token_auth import ChainedAuthenticator, SignedTokens

NOW = 1_700_000_000
DAY = 86_400


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def claims(tid: str = "tok_1", exp: int = NOW + 30 * DAY, **more: object) -> TokenClaims:
    return TokenClaims(org="org_acme", tid=tid, iat=NOW, exp=exp, **more)  # type: ignore[arg-type]


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing(SigningKey.generate("key-a"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def edge(ring: KeyRing, clock: FakeClock) -> SignedTokens:
    return SignedTokens(ring.verify_keys(), clock=clock)


def test_an_issued_token_authenticates_as_its_org_with_its_limits(
    ring: KeyRing, edge: SignedTokens
) -> None:
    password = hash_basic_password("alice", "s3cret")
    token = ring.issue(
        claims(
            hosts=["demo.acme.dev", "*.acme.dev"],
            protocols=["http", "tls"],
            tls={"demo.acme.dev": "terminate", "*.acme.dev": "passthrough"},
            basic_auth=[password],
            ip_allow=["10.0.0.0/8"],
            ip_deny=["10.1.0.0/16", "2001:db8::/32"],
        )
    )
    identity = edge.authenticate(token)
    assert identity.account == "org_acme"
    assert identity.token_id == "tok_1"
    assert identity.protocols == frozenset({"http", "tls"})
    assert identity.allowed_hosts == ("demo.acme.dev", "*.acme.dev")
    assert identity.tls_modes == (("*.acme.dev", "passthrough"), ("demo.acme.dev", "terminate"))
    assert identity.basic_auth == (password,)
    assert identity.ip_allow == ("10.0.0.0/8",)
    assert identity.ip_deny == ("10.1.0.0/16", "2001:db8::/32")
    assert identity.expires_at == NOW + 30 * DAY


def test_a_token_without_limits_may_use_every_protocol(ring: KeyRing, edge: SignedTokens) -> None:
    identity = edge.authenticate(ring.issue(TokenClaims(org="org_acme", tid="t", iat=NOW)))
    assert identity.protocols == frozenset({"http", "tcp", "tls"})
    assert identity.allowed_hosts == ()
    assert identity.expires_at == 0.0


# -- tampering ------------------------------------------------------------------------------


def test_a_payload_swapped_in_from_elsewhere_is_refused(ring: KeyRing, edge: SignedTokens) -> None:
    mine = ring.issue(claims(hosts=["demo.acme.dev"]))
    wider = TokenClaims(org="org_acme", tid="tok_1", iat=NOW, hosts=["*.bank.example"])
    prefix, kid, _, signature = mine.split(".")
    forged = ".".join([prefix, kid, b64url_encode(msgspec.msgpack.encode(wider)), signature])
    with pytest.raises(AuthError, match="signature does not match"):
        edge.authenticate(forged)


def test_a_changed_signature_is_refused(ring: KeyRing, edge: SignedTokens) -> None:
    token = ring.issue(claims())
    at = token.rindex(".") + 10
    flipped = token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]
    with pytest.raises(AuthError, match="signature does not match"):
        edge.authenticate(flipped)


def test_a_token_relabelled_with_another_known_kid_is_refused(
    ring: KeyRing, clock: FakeClock
) -> None:
    token = ring.issue(claims())
    ring.rotate(SigningKey.generate("key-b"))
    edge = SignedTokens(ring.verify_keys(), clock=clock)
    relabelled = token.replace(".key-a.", ".key-b.", 1)
    with pytest.raises(AuthError, match="signature does not match"):
        edge.authenticate(relabelled)


def test_a_token_naming_an_unknown_kid_says_to_issue_a_new_one(
    ring: KeyRing, edge: SignedTokens
) -> None:
    token = ring.issue(claims()).replace(".key-a.", ".key-zz.", 1)
    with pytest.raises(AuthError) as info:
        edge.authenticate(token)
    message = str(info.value)
    assert "signed by a key this edge does not know (key-zz)" in message
    assert "issue a new token" in message


def test_a_token_signed_by_a_stranger_with_the_same_kid_is_refused(edge: SignedTokens) -> None:
    impostor = SigningKey.generate("key-a")
    with pytest.raises(AuthError, match="signature does not match"):
        edge.authenticate(issue_token(claims(), impostor))


def test_signed_but_invalid_claims_are_refused_with_the_reason(
    ring: KeyRing, edge: SignedTokens
) -> None:
    bad = {"org": "org_acme", "tid": "t", "iat": NOW, "ip_allow": ["10.0.0.300/8"]}
    head = signed_text("key-a", b64url_encode(msgspec.msgpack.encode(bad)))
    token = f"{head}.{b64url_encode(ring.current.sign(head.encode()))}"
    with pytest.raises(AuthError, match=r"ip_allow entry '10\.0\.0\.300/8' is not an IP network"):
        edge.authenticate(token)


# -- rotation -------------------------------------------------------------------------------


def test_tokens_survive_a_rotation_until_their_key_is_retired(
    ring: KeyRing, edge: SignedTokens
) -> None:
    old_token = ring.issue(claims("tok_old"))
    assert edge.authenticate(old_token).token_id == "tok_old"  # now cached, too

    new_key = ring.rotate()
    edge.set_keys(ring.verify_keys())
    new_token = ring.issue(claims("tok_new"))
    assert new_token.split(".")[1] == new_key.kid
    assert edge.authenticate(old_token).token_id == "tok_old"
    assert edge.authenticate(new_token).token_id == "tok_new"

    ring.retire("key-a")
    edge.set_keys(ring.verify_keys())
    with pytest.raises(AuthError, match="does not know"):
        edge.authenticate(old_token)
    assert edge.authenticate(new_token).token_id == "tok_new"
    assert edge.key_ids == [new_key.kid]


def test_the_current_key_cannot_be_retired(ring: KeyRing) -> None:
    with pytest.raises(ValueError, match="rotate before retiring"):
        ring.retire("key-a")
    assert [key.kid for key in ring.signing_keys()] == ["key-a"]


def test_a_rotation_publishes_old_and_new_public_keys(ring: KeyRing) -> None:
    new = ring.rotate()
    published = ring.verify_keys()
    assert [k.kid for k in published] == ["key-a", new.kid]
    assert all(len(k.public_key) == 32 for k in published)
    assert ring.current is new


def test_a_malformed_verify_key_is_rejected_and_the_old_keys_stay(
    ring: KeyRing, edge: SignedTokens
) -> None:
    token = ring.issue(claims())
    with pytest.raises(ValueError, match="32"):
        edge.set_keys([VerifyKey(kid="key-x", public_key=b"short")])
    assert edge.authenticate(token).token_id == "tok_1"


def test_a_signing_key_survives_a_round_trip_through_its_raw_bytes() -> None:
    key = SigningKey.generate()
    restored = SigningKey.from_raw(key.kid, key.private_raw())
    assert restored.public_raw() == key.public_raw()
    edge = SignedTokens([key.verify_key()], clock=FakeClock())
    assert edge.authenticate(issue_token(claims(), restored)).account == "org_acme"
    assert key.private_raw().hex() not in repr(key)


def test_a_signing_key_id_must_fit_the_token_format() -> None:
    with pytest.raises(ValueError, match="letters, digits or hyphens"):
        SigningKey.generate("key.with.dots")


# -- expiry ---------------------------------------------------------------------------------


def test_an_expired_token_is_refused_saying_when_it_expired(
    ring: KeyRing, edge: SignedTokens, clock: FakeClock
) -> None:
    token = ring.issue(claims(exp=NOW + 60))  # 2023-11-14 22:14:20 UTC
    assert edge.authenticate(token).token_id == "tok_1"
    clock.now = NOW + 60
    with pytest.raises(AuthError) as info:
        edge.authenticate(token)  # cached, and still refused
    assert "expired at 2023-11-14 22:14 UTC" in str(info.value)
    assert "burrow config add-authtoken" in str(info.value)


def test_a_token_with_exp_zero_never_expires(
    ring: KeyRing, edge: SignedTokens, clock: FakeClock
) -> None:
    token = ring.issue(claims(exp=0))
    clock.now = NOW + 100 * 365 * DAY
    assert edge.authenticate(token).expires_at == 0.0


# -- revocation -----------------------------------------------------------------------------


def test_a_revoked_token_is_refused_and_others_still_work(
    ring: KeyRing, edge: SignedTokens
) -> None:
    revoked, kept = ring.issue(claims("tok_1")), ring.issue(claims("tok_2"))
    assert edge.authenticate(revoked).token_id == "tok_1"  # cached before the revocation
    edge.revoke(Revocation(token_id="tok_1", until=NOW + 30 * DAY))
    with pytest.raises(AuthError) as info:
        edge.authenticate(revoked)
    assert "this authtoken was revoked; create a new one" in str(info.value)
    assert edge.authenticate(kept).token_id == "tok_2"
    assert edge.is_revoked("tok_1")
    assert not edge.is_revoked("tok_2")


def test_a_snapshot_replaces_the_revocation_list(ring: KeyRing, edge: SignedTokens) -> None:
    edge.revoke(Revocation(token_id="tok_1", until=NOW + DAY))
    edge.set_revocations([Revocation(token_id="tok_2", until=NOW + DAY)])
    assert edge.authenticate(ring.issue(claims("tok_1"))).token_id == "tok_1"
    with pytest.raises(AuthError, match="revoked"):
        edge.authenticate(ring.issue(claims("tok_2")))


def test_revocations_are_forgotten_once_their_token_would_have_expired(
    edge: SignedTokens, clock: FakeClock
) -> None:
    for i in range(1000):
        edge.revoke(Revocation(token_id=f"tok_{i}", until=NOW + 60))
    edge.revoke(Revocation(token_id="tok_forever", until=0))  # a token with no expiry
    assert len(edge.revocations()) == 1001

    clock.now = NOW + 61
    assert not edge.is_revoked("tok_0")
    edge.revoke(Revocation(token_id="tok_late", until=NOW + DAY))
    assert sorted(r.token_id for r in edge.revocations()) == ["tok_forever", "tok_late"]

    clock.now = NOW + 1000 * DAY
    edge.revoke(Revocation(token_id="tok_already_expired", until=NOW))
    assert [r.token_id for r in edge.revocations()] == ["tok_forever"]
    assert edge.is_revoked("tok_forever")


def test_a_second_revocation_of_a_token_never_shortens_it(
    edge: SignedTokens, clock: FakeClock
) -> None:
    edge.revoke(Revocation(token_id="tok_1", until=0))
    edge.revoke(Revocation(token_id="tok_1", until=NOW + 60))
    clock.now = NOW + 3600
    edge.revoke(Revocation(token_id="tok_other", until=NOW + DAY))  # prunes
    assert edge.is_revoked("tok_1")


def test_a_snapshot_skips_revocations_already_past(edge: SignedTokens) -> None:
    edge.set_revocations(
        [Revocation(token_id="old", until=NOW - 1), Revocation(token_id="new", until=NOW + 1)]
    )
    assert [r.token_id for r in edge.revocations()] == ["new"]


# -- reconnect storms -----------------------------------------------------------------------


def test_a_reconnect_storm_verifies_each_token_once(
    ring: KeyRing, edge: SignedTokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = [ring.issue(claims(f"tok_{i}")) for i in range(1000)]
    verified: list[str] = []
    real_parse = token_auth.parse_token

    def counting_parse(text: str) -> tuple[str, bytes, bytes, bytes]:
        verified.append(text)
        return real_parse(text)

    monkeypatch.setattr(token_auth, "parse_token", counting_parse)
    for _ in range(3):
        assert [edge.authenticate(t).token_id for t in tokens] == [f"tok_{i}" for i in range(1000)]
    assert len(verified) == 1000


def test_the_verified_token_cache_is_bounded(
    ring: KeyRing, edge: SignedTokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_auth, "MAX_CACHED_TOKENS", 8)
    verified: list[str] = []
    real_parse = token_auth.parse_token

    def counting_parse(text: str) -> tuple[str, bytes, bytes, bytes]:
        verified.append(text)
        return real_parse(text)

    monkeypatch.setattr(token_auth, "parse_token", counting_parse)
    tokens = [ring.issue(claims(f"tok_{i}")) for i in range(20)]
    for token in tokens:
        edge.authenticate(token)
    verified.clear()
    for token in tokens[-8:]:
        edge.authenticate(token)
    assert verified == []  # the newest stay cached
    edge.authenticate(tokens[0])
    assert verified == [tokens[0]]  # the oldest were let go and are verified again


# -- untrusted input ------------------------------------------------------------------------

_RING = KeyRing(SigningKey.generate("key-a"))
_EDGE = SignedTokens(_RING.verify_keys(), clock=FakeClock())
_TOKEN = _RING.issue(claims(hosts=["*.acme.dev"], ip_allow=["10.0.0.0/8"]))


@given(st.text(max_size=300))
def test_random_text_is_refused_with_an_auth_error(text: str) -> None:
    with pytest.raises(AuthError):
        _EDGE.authenticate(text)


@given(st.integers(0, len(_TOKEN) - 1), st.characters(), st.sampled_from(["sub", "ins", "del"]))
def test_every_edit_of_a_valid_token_is_refused_with_an_auth_error(
    at: int, char: str, edit: str
) -> None:
    if edit == "sub":
        text = _TOKEN[:at] + char + _TOKEN[at + 1 :]
    elif edit == "ins":
        text = _TOKEN[:at] + char + _TOKEN[at:]
    else:
        text = _TOKEN[:at] + _TOKEN[at + 1 :]
    if text.strip() == _TOKEN:
        return  # only whitespace around the token changed: still the same token
    with pytest.raises(AuthError):
        _EDGE.authenticate(text)


@given(st.integers(0, 8 * len(_TOKEN) - 1))
def test_every_bit_flip_of_a_valid_token_is_refused(bit: int) -> None:
    raw = bytearray(_TOKEN.encode())
    raw[bit // 8] ^= 1 << (bit % 8)
    text = raw.decode("latin-1")
    if text.strip() == _TOKEN:
        return
    with pytest.raises(AuthError):
        _EDGE.authenticate(text)


@given(st.binary(max_size=200))
def test_any_payload_signed_by_a_known_key_gives_an_identity_or_an_auth_error(
    payload: bytes,
) -> None:
    head = signed_text("key-a", b64url_encode(payload))
    token = f"{head}.{b64url_encode(_RING.current.sign(head.encode()))}"
    with contextlib.suppress(AuthError):
        assert _EDGE.authenticate(token).account


# -- chaining -------------------------------------------------------------------------------


def test_a_chain_accepts_signed_tokens_and_the_dev_secret(
    ring: KeyRing, edge: SignedTokens
) -> None:
    chain = ChainedAuthenticator(edge, StaticTokens({"dev-secret": "dev"}))
    assert chain.authenticate(ring.issue(claims())).account == "org_acme"
    assert chain.authenticate("dev-secret").account == "dev"


def test_a_chain_reports_the_first_authenticators_reason(ring: KeyRing, edge: SignedTokens) -> None:
    chain = ChainedAuthenticator(edge, StaticTokens({"dev-secret": "dev"}))
    edge.revoke(Revocation(token_id="tok_1", until=0))
    with pytest.raises(AuthError, match="was revoked"):
        chain.authenticate(ring.issue(claims()))
    with pytest.raises(AuthError, match="not a Burrow authtoken"):
        chain.authenticate("guess")


def test_a_chain_needs_at_least_one_authenticator() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ChainedAuthenticator()
