"""Visitor policy cores: address rules (v4, v6, IPv4-mapped), basic-auth headers (good, bad,
garbage), the credential caches and the ration of fresh password checks."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

import edge.visitors.visitor_policy as vp
from contracts.basic_auth import hash_basic_password
from edge.link.auth import Identity
from edge.visitors.visitor_policy import (
    AUTH_BUSY,
    AUTH_REQUIRED,
    IP_DENIED,
    OPEN,
    VisitorPolicy,
    challenge,
    parse_basic,
)

# One real PBKDF2 entry for the whole module (each check costs ~20 ms).
ENTRY = hash_basic_password("ann", "s3cret pass", salt=b"fixed-salt12")


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- building -------------------------------------------------------------------------------


def test_a_token_without_policy_gets_the_shared_open_policy() -> None:
    policy = VisitorPolicy.from_identity(Identity(account="a", token_id="t"))
    assert policy is OPEN
    assert OPEN.allows("203.0.113.9") and OPEN.allows("::1") and OPEN.allows("")
    assert OPEN.check_authorization(None)
    assert OPEN.refusal("198.51.100.1", None) is None


def test_a_token_with_policy_gets_its_own() -> None:
    identity = Identity(account="a", token_id="t", ip_deny=("10.0.0.0/8",))
    policy = VisitorPolicy.from_identity(identity)
    assert policy is not OPEN
    assert not policy.allows("10.1.2.3") and policy.allows("192.0.2.1")


@pytest.mark.parametrize("rule", ["10.0.0.0/33", "example.com", "", "2001:db8::/129", "1.2.3"])
def test_a_rule_that_is_not_a_network_is_refused_by_name(rule: str) -> None:
    with pytest.raises(ValueError, match="ip_allow rule") as info:
        VisitorPolicy(ip_allow=("127.0.0.1/32", rule))
    assert repr(rule) in str(info.value)


# -- addresses ------------------------------------------------------------------------------


def test_ipv4_allow_list_admits_only_its_networks() -> None:
    policy = VisitorPolicy(ip_allow=("192.0.2.0/24", "198.51.100.7"))
    assert policy.allows("192.0.2.1") and policy.allows("192.0.2.255")
    assert policy.allows("198.51.100.7")
    assert not policy.allows("198.51.100.8")
    assert not policy.allows("127.0.0.1")
    assert not policy.allows("2001:db8::1")  # an IPv6 visitor matches no IPv4 rule


def test_ipv4_mapped_visitor_addresses_match_ipv4_rules() -> None:
    policy = VisitorPolicy(ip_allow=("192.0.2.0/24",), ip_deny=("192.0.2.66/32",))
    assert policy.allows("::ffff:192.0.2.1")
    assert not policy.allows("::ffff:192.0.2.66")  # deny matches the mapped address too
    assert not policy.allows("::ffff:198.51.100.1")


def test_ipv4_mapped_rules_match_ipv4_visitors() -> None:
    policy = VisitorPolicy(ip_allow=("::ffff:192.0.2.0/120",))
    assert policy.allows("192.0.2.9") and policy.allows("::ffff:192.0.2.9")
    assert not policy.allows("192.0.3.9")


def test_ipv6_rules() -> None:
    policy = VisitorPolicy(ip_allow=("2001:db8::/32", "::1/128"), ip_deny=("2001:db8:bad::/48",))
    assert policy.allows("2001:db8:1::5") and policy.allows("::1")
    assert policy.allows("2001:DB8::ABCD")  # however the address is spelled
    assert not policy.allows("2001:db8:bad::1")
    assert not policy.allows("2001:db9::1")
    assert not policy.allows("192.0.2.1")
    assert policy.allows("fe80::1%eth0") is False
    scoped = VisitorPolicy(ip_allow=("fe80::/10",))
    assert scoped.allows("fe80::1%eth0")  # a zone index does not change the network


def test_deny_wins_over_allow() -> None:
    policy = VisitorPolicy(ip_allow=("10.0.0.0/8",), ip_deny=("10.9.0.0/16",))
    assert policy.allows("10.1.0.1")
    assert not policy.allows("10.9.0.1")


def test_deny_only_admits_everyone_else() -> None:
    policy = VisitorPolicy(ip_deny=("203.0.113.0/24", "2001:db8::/32"))
    assert policy.allows("192.0.2.1") and policy.allows("::1")
    assert not policy.allows("203.0.113.4") and not policy.allows("2001:db8::4")


def test_an_address_that_is_not_an_ip_is_not_admitted_by_rules() -> None:
    assert not VisitorPolicy(ip_deny=("203.0.113.0/24",)).allows("")
    assert not VisitorPolicy(ip_allow=("0.0.0.0/0",)).allows("not-an-ip")
    assert VisitorPolicy(basic_auth=(ENTRY,)).allows("")  # no address rules at all


def test_address_verdicts_are_remembered_within_bounds() -> None:
    policy = VisitorPolicy(ip_allow=("10.0.0.0/8",))
    for i in range(vp.ADDRESS_CACHE * 2 + 5):
        assert policy.allows(f"10.{i // 256 % 256}.{i % 256}.1")
        assert len(policy._addresses) <= vp.ADDRESS_CACHE


# -- basic auth -----------------------------------------------------------------------------


def test_right_credentials_pass_and_wrong_ones_do_not() -> None:
    policy = VisitorPolicy(basic_auth=(ENTRY,))
    assert policy.check_authorization(basic("ann", "s3cret pass"))
    assert not policy.check_authorization(basic("ann", "wrong"))
    assert not policy.check_authorization(basic("bob", "s3cret pass"))
    assert not policy.check_authorization(None)
    assert policy.refusal("127.0.0.1", None) is AUTH_REQUIRED
    assert policy.refusal("127.0.0.1", basic("ann", "s3cret pass")) is None


@pytest.mark.parametrize(
    "value",
    [
        b"basic " + base64.b64encode(b"ann:s3cret pass"),
        b"BASIC " + base64.b64encode(b"ann:s3cret pass"),
        b"  Basic \t " + base64.b64encode(b"ann:s3cret pass") + b"  ",
        b"Basic " + base64.b64encode(b"ann:s3cret pass").rstrip(b"="),
    ],
    ids=["lowercase", "uppercase", "whitespace", "unpadded"],
)
def test_header_spellings_clients_send_are_understood(value: bytes) -> None:
    assert parse_basic(value) == ("ann", "s3cret pass")


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"Basic",
        b"Basic ",
        b"Bearer " + base64.b64encode(b"ann:s3cret pass"),
        b"Basic !!!!",
        b"Basic " + base64.b64encode(b"no-colon"),
        b"Basic " + base64.b64encode(b":empty-user"),
        b"Basic " + base64.b64encode(b"ann:\xff\xfe"),
        b"Basic a",
        b"Basic " + b"QUFB" * 400,
        b"Basic YW5uOnMzY3JldCBwYXNz extra",
    ],
)
def test_garbage_is_refused_without_raising(value: bytes) -> None:
    assert parse_basic(value) is None
    assert not VisitorPolicy(basic_auth=(ENTRY,)).check_authorization(value)


@given(st.binary(max_size=300))
def test_arbitrary_header_bytes_never_raise(value: bytes) -> None:
    # An entry no password matches: whatever the bytes say, they are refused.
    policy = VisitorPolicy(basic_auth=("zz-user:AAAA:AAAA",))
    assert not policy.check_authorization(value)


@given(st.text(max_size=60), st.text(max_size=60), st.sampled_from(["Basic", "basic", "BaSiC"]))
def test_arbitrary_credentials_never_raise(user: str, password: str, scheme: str) -> None:
    policy = VisitorPolicy(basic_auth=("zz-user:AAAA:AAAA",))
    value = scheme.encode() + b" " + base64.b64encode(f"{user}:{password}".encode())
    assert not policy.check_authorization(value)


def test_an_accepted_header_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = vp.check_basic_password

    def counting(entry: str, user: str, password: str) -> bool:
        calls.append(user)
        return real(entry, user, password)

    monkeypatch.setattr(vp, "check_basic_password", counting)
    policy = VisitorPolicy(basic_auth=(ENTRY,))
    good = basic("ann", "s3cret pass")
    for _ in range(100):
        assert policy.check_authorization(good)
    assert calls == ["ann"]


def test_a_refused_header_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(vp, "check_basic_password", lambda e, u, p: calls.append(p) or False)
    policy = VisitorPolicy(basic_auth=(ENTRY,))
    for _ in range(20):
        assert policy.refusal("127.0.0.1", basic("ann", "guess")) is AUTH_REQUIRED
    assert calls == ["guess"]


def test_credential_caches_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vp, "check_basic_password", lambda e, u, p: p.startswith("good"))
    clock = Clock()
    policy = VisitorPolicy(basic_auth=(ENTRY,), clock=clock)
    for i in range(500):
        clock.now += 1.0  # never rationed here
        assert policy.check_authorization(basic("ann", f"good{i}"))
        assert not policy.check_authorization(basic("ann", f"bad{i}"))
        assert len(policy._accepted) <= vp.ACCEPTED_CACHE
        assert len(policy._refused) <= vp.REFUSED_CACHE
    # The most recent good credential is still remembered (LRU keeps the newest).
    monkeypatch.setattr(vp, "check_basic_password", lambda e, u, p: False)
    assert policy.check_authorization(basic("ann", "good499"))


def test_password_guessing_is_rationed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def check(entry: str, user: str, password: str) -> bool:
        calls.append(password)
        return password == "right"

    monkeypatch.setattr(vp, "check_basic_password", check)
    clock = Clock()
    policy = VisitorPolicy(basic_auth=(ENTRY,), clock=clock)
    verdicts = [policy.refusal("127.0.0.1", basic("ann", f"guess{i}")) for i in range(50)]
    assert verdicts[: vp.VERIFY_BURST] == [AUTH_REQUIRED] * vp.VERIFY_BURST
    assert set(verdicts[vp.VERIFY_BURST :]) == {AUTH_BUSY}
    assert len(calls) == vp.VERIFY_BURST
    # Already-known credentials are not rationed: no fresh check is needed for them.
    assert policy.refusal("127.0.0.1", basic("ann", "guess0")) is AUTH_REQUIRED
    # A moment later, fresh checks are allowed again.
    clock.now += 1.0
    assert policy.refusal("127.0.0.1", basic("ann", "right")) is None


# -- HTTP requests --------------------------------------------------------------------------


def test_screen_drops_the_tunnel_password_before_forwarding() -> None:
    policy = VisitorPolicy(basic_auth=(ENTRY,))
    headers = [(b"host", b"x"), (b"authorization", basic("ann", "s3cret pass")), (b"a", b"1")]
    assert policy.screen("127.0.0.1", headers) == [(b"host", b"x"), (b"a", b"1")]
    assert policy.screen("127.0.0.1", [(b"host", b"x")]) is AUTH_REQUIRED


def test_screen_leaves_authorization_alone_without_basic_auth() -> None:
    policy = VisitorPolicy(ip_allow=("127.0.0.0/8",))
    headers = [(b"host", b"x"), (b"authorization", b"Bearer abc")]
    assert policy.screen("127.0.0.1", headers) == headers
    assert policy.screen("192.0.2.1", headers) is IP_DENIED


def test_an_address_refusal_comes_before_a_password_prompt() -> None:
    policy = VisitorPolicy(basic_auth=(ENTRY,), ip_deny=("192.0.2.0/24",))
    assert policy.refusal("192.0.2.1", None) is IP_DENIED
    assert policy.refusal("192.0.2.1", basic("ann", "s3cret pass")) is IP_DENIED


def test_challenge_names_the_host_as_a_quoted_realm() -> None:
    assert challenge("app.localhost") == b'Basic realm="app.localhost", charset="UTF-8"'
    assert challenge('a"b\\c') == b'Basic realm="a\\"b\\\\c", charset="UTF-8"'
