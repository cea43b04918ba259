"""Which tunnel serves a hostname or port: names, claims, pools and leases."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.routing import table as routing
from edge.routing.table import BindError, RouteTable, Tunnel, normalize_host

BASE = "tunnels.test"


class Clock:
    """An injectable monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def agent_session(streams: int = 0) -> SimpleNamespace:
    """Only ``pick()`` looks at the session: how many streams its link carries."""
    return SimpleNamespace(mux=SimpleNamespace(stream_count=streams))


_ids = itertools.count(1)


def tunnel(
    account: str = "acme",
    instance: str = "i-1",
    *,
    pool: bool = False,
    streams: int = 0,
    protocol: str = "http",
) -> Tunnel:
    return Tunnel(
        next(_ids),
        agent_session(streams),  # type: ignore[arg-type]
        protocol,
        account,
        instance,
        pool=pool,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def routes(clock: Clock) -> RouteTable:
    return RouteTable(BASE, lease_seconds=600.0, clock=clock)


# -- normalize_host -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_host", "expected"),
    [
        ("demo.tunnels.test", "demo.tunnels.test"),
        ("Demo.Tunnels.TEST", "demo.tunnels.test"),
        ("demo.tunnels.test:8080", "demo.tunnels.test"),
        ("demo.tunnels.test.", "demo.tunnels.test"),
        ("Demo.Tunnels.Test.:443", "demo.tunnels.test"),
        ("  demo.tunnels.test  ", "demo.tunnels.test"),
        ("[::1]:8080", "[::1]"),
        ("[::1]", "[::1]"),
        ("[FE80::1]:80", "[fe80::1]"),
        ("::1", "::1"),  # a bare IPv6 address has no port to strip
        ("demo.tunnels.test:", "demo.tunnels.test"),  # an empty port (RFC 3986 3.2.3)
        # A port that is not digits names no host: never routed to the name before it.
        ("demo.tunnels.test:@evil.example", ""),
        ("demo.tunnels.test:80@evil.example", ""),
        ("demo.tunnels.test:\uff18\uff10", ""),  # digits of another script (fullwidth 80)
        ("demo.tunnels.test:123456", ""),
        ("[::1]:x", ""),
        ("[::1]evil", ""),
    ],
)
def test_normalize_host(given_host: str, expected: str) -> None:
    assert normalize_host(given_host) == expected


@given(st.from_regex(r"[A-Za-z0-9-]{1,20}(\.[A-Za-z0-9-]{1,20}){0,3}", fullmatch=True))
def test_normalize_host_ignores_case_port_and_trailing_dot(host: str) -> None:
    plain = normalize_host(host)
    assert plain == host.lower()
    assert normalize_host(host.upper() + ".:8443") == plain


# -- hostname_for ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("demo", "demo.tunnels.test"),
        ("Demo", "demo.tunnels.test"),
        ("my-app-2", "my-app-2.tunnels.test"),
        ("demo.tunnels.test", "demo.tunnels.test"),
        ("DEMO.Tunnels.Test.", "demo.tunnels.test"),
    ],
)
def test_hostname_for_label_or_full_name_under_base_domain(
    routes: RouteTable, name: str, expected: str
) -> None:
    assert routes.hostname_for(name, ()) == expected


@pytest.mark.parametrize("name", ["-demo", "demo-", "de_mo", "dé", "a" * 64, "sp ace"])
def test_hostname_for_invalid_label_is_bad_name(routes: RouteTable, name: str) -> None:
    with pytest.raises(BindError) as info:
        routes.hostname_for(name, ())
    assert info.value.code == "bad_name"
    assert "letters, digits and hyphens" in info.value.message


def test_hostname_for_invalid_label_in_full_hostname_is_bad_name(routes: RouteTable) -> None:
    with pytest.raises(BindError) as info:
        routes.hostname_for("-demo.tunnels.test", ())
    assert info.value.code == "bad_name"


@pytest.mark.parametrize("name", ["demo.example.com", "a.b.tunnels.test", "example.com"])
def test_hostname_for_foreign_name_is_refused_without_allowed_hosts(
    routes: RouteTable, name: str
) -> None:
    with pytest.raises(BindError) as info:
        routes.hostname_for(name, ())
    assert info.value.code == "not_allowed"
    assert BASE in info.value.message  # tells the user which names they may ask for


def test_hostname_for_foreign_name_allowed_by_exact_pattern(routes: RouteTable) -> None:
    assert routes.hostname_for("Demo.Example.com", ("demo.example.com",)) == "demo.example.com"
    with pytest.raises(BindError):
        routes.hostname_for("other.example.com", ("demo.example.com",))


@pytest.mark.parametrize(
    "name", ["a.example.com", "deep.a.example.com", "*.example.com", "A.EXAMPLE.COM"]
)
def test_hostname_for_wildcard_pattern_allows_subdomains(routes: RouteTable, name: str) -> None:
    assert routes.hostname_for(name, ("*.example.com",)) == name.lower()


@pytest.mark.parametrize("name", ["example.com", "evilexample.com", "a.example.org"])
def test_hostname_for_wildcard_pattern_does_not_allow_lookalikes(
    routes: RouteTable, name: str
) -> None:
    with pytest.raises(BindError) as info:
        routes.hostname_for(name, ("*.example.com",))
    assert info.value.code == "not_allowed"


# -- random_hostname ------------------------------------------------------------------------


def test_random_hostnames_are_distinct_valid_names_under_base(routes: RouteTable) -> None:
    names = set()
    for _ in range(200):
        host = routes.random_hostname()
        routes.claim_host(host, tunnel(instance=host))
        names.add(host)
    assert len(names) == 200
    for host in names:
        assert routes.hostname_for(host, ()) == host


def test_random_hostname_skips_names_in_use_or_leased(
    routes: RouteTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes.claim_host(f"{'a' * 8}.{BASE}", tunnel("acme"))
    leased = tunnel("other")
    routes.claim_host(f"{'b' * 8}.{BASE}", leased)
    routes.release(leased)
    letters = iter("a" * 8 + "b" * 8 + "c" * 8)
    monkeypatch.setattr(routing.secrets, "choice", lambda alphabet: next(letters))
    assert routes.random_hostname() == f"{'c' * 8}.{BASE}"


# -- claims ---------------------------------------------------------------------------------

HOST = f"demo.{BASE}"


def test_claim_host_routes_the_name_to_the_tunnel(routes: RouteTable) -> None:
    t = tunnel()
    assert routes.claim_host(HOST, t) == []
    assert t.hostname == HOST
    pool = routes.lookup_host(HOST)
    assert pool is not None
    assert pool.pick() is t
    assert routes.lookup_host(f"other.{BASE}") is None


def test_reconnect_of_same_instance_replaces_stale_tunnel(routes: RouteTable) -> None:
    old = tunnel("acme", "i-1")
    routes.claim_host(HOST, old)
    new = tunnel("acme", "i-1")
    assert routes.claim_host(HOST, new) == [old]
    pool = routes.lookup_host(HOST)
    assert pool is not None
    assert pool.members == [new]

    # The old link's eventual teardown must not take the name from the new one.
    routes.release(old)
    pool = routes.lookup_host(HOST)
    assert pool is not None
    assert pool.members == [new]


def test_second_agent_of_same_account_without_pool_is_in_use(routes: RouteTable) -> None:
    routes.claim_host(HOST, tunnel("acme", "i-1"))
    with pytest.raises(BindError) as info:
        routes.claim_host(HOST, tunnel("acme", "i-2"))
    assert info.value.code == "in_use"
    assert "--pool" in info.value.message


def test_pool_only_when_every_agent_asks_for_it(routes: RouteTable) -> None:
    routes.claim_host(HOST, tunnel("acme", "i-1", pool=False))
    with pytest.raises(BindError) as info:
        routes.claim_host(HOST, tunnel("acme", "i-2", pool=True))
    assert info.value.code == "in_use"


def test_pooled_agents_share_the_load(routes: RouteTable) -> None:
    members = [tunnel("acme", f"i-{n}", pool=True) for n in range(3)]
    for t in members:
        assert routes.claim_host(HOST, t) == []
    pool = routes.lookup_host(HOST)
    assert pool is not None
    assert pool.members == members

    picks = [pool.pick() for _ in range(30)]
    assert {id(t) for t in picks} == {id(t) for t in members}
    for t in members:
        assert picks.count(t) == 10


def test_pick_prefers_the_less_busy_agent(routes: RouteTable) -> None:
    busy = tunnel("acme", "i-1", pool=True, streams=50)
    idle = tunnel("acme", "i-2", pool=True, streams=0)
    routes.claim_host(HOST, busy)
    routes.claim_host(HOST, idle)
    pool = routes.lookup_host(HOST)
    assert pool is not None
    assert [pool.pick() for _ in range(6)] == [idle] * 6


def test_another_account_cannot_take_a_name_in_use(routes: RouteTable) -> None:
    routes.claim_host(HOST, tunnel("acme", pool=True))
    with pytest.raises(BindError) as info:
        routes.claim_host(HOST, tunnel("mallory", pool=True))
    assert info.value.code == "taken"


def test_released_name_is_leased_to_its_account_until_expiry(
    routes: RouteTable, clock: Clock
) -> None:
    first = tunnel("acme")
    routes.claim_host(HOST, first)
    routes.release(first)
    assert routes.lookup_host(HOST) is None

    clock.now += 599
    with pytest.raises(BindError) as info:
        routes.claim_host(HOST, tunnel("mallory"))
    assert info.value.code == "held"
    assert "held for the account that used it until" in info.value.message

    clock.now += 2  # the lease has run out
    thief = tunnel("mallory")
    assert routes.claim_host(HOST, thief) == []
    pool = routes.lookup_host(HOST)
    assert pool is not None
    assert pool.pick() is thief


def test_released_name_comes_back_to_its_account_during_lease(
    routes: RouteTable, clock: Clock
) -> None:
    first = tunnel("acme", "i-1")
    routes.claim_host(HOST, first)
    routes.release(first)
    clock.now += 300
    again = tunnel("acme", "i-9")  # e.g. the edge restarted: a new instance of the same user
    assert routes.claim_host(HOST, again) == []

    # Once reclaimed, the lease is gone: releasing again starts a fresh one.
    routes.release(again)
    clock.now += 599
    with pytest.raises(BindError):
        routes.claim_host(HOST, tunnel("mallory"))


def test_pool_keeps_the_name_while_any_member_remains(routes: RouteTable, clock: Clock) -> None:
    a = tunnel("acme", "i-1", pool=True)
    b = tunnel("acme", "i-2", pool=True)
    routes.claim_host(HOST, a)
    routes.claim_host(HOST, b)
    routes.release(a)
    pool = routes.lookup_host(HOST)
    assert pool is not None
    assert pool.members == [b]
    assert [pool.pick() for _ in range(3)] == [b] * 3


# -- wildcard lookups -----------------------------------------------------------------------


def test_wildcard_route_serves_subdomains(routes: RouteTable) -> None:
    wild = tunnel("acme")
    exact = tunnel("acme", "i-2")
    routes.claim_host("*.example.com", wild)
    routes.claim_host("api.example.com", exact)

    for host in ("a.example.com", "x.y.example.com"):
        pool = routes.lookup_host(host)
        assert pool is not None
        assert pool.pick() is wild
    pool = routes.lookup_host("api.example.com")
    assert pool is not None
    assert pool.pick() is exact  # an exact route wins over the wildcard
    assert routes.lookup_host("example.com") is None
    assert routes.lookup_host("a.example.org") is None


# -- ports ----------------------------------------------------------------------------------


def test_ports_claim_available_and_release(routes: RouteTable, clock: Clock) -> None:
    assert routes.port_available(20001, "acme")
    t = tunnel("acme", protocol="tcp")
    assert routes.claim_port(20001, t) == []
    assert t.port == 20001
    pool = routes.lookup_port(20001)
    assert pool is not None
    assert pool.pick() is t

    assert routes.port_available(20001, "acme")  # same account: may pool or reconnect
    assert not routes.port_available(20001, "mallory")
    with pytest.raises(BindError) as info:
        routes.claim_port(20001, tunnel("mallory", protocol="tcp"))
    assert info.value.code == "taken"
    assert "20001" in info.value.message

    routes.release(t)
    assert routes.lookup_port(20001) is None
    assert routes.port_available(20001, "acme")
    assert not routes.port_available(20001, "mallory")
    clock.now += 601
    assert routes.port_available(20001, "mallory")


def test_port_reconnect_replaces_stale_tunnel(routes: RouteTable) -> None:
    old = tunnel("acme", "i-1", protocol="tcp")
    routes.claim_port(20002, old)
    new = tunnel("acme", "i-1", protocol="tcp")
    assert routes.claim_port(20002, new) == [old]
    with pytest.raises(BindError) as info:
        routes.claim_port(20002, tunnel("acme", "i-2", protocol="tcp"))
    assert info.value.code == "in_use"


def test_evict_others_drops_another_accounts_tunnels_and_lease(routes: RouteTable) -> None:
    host = "brand.localhost"
    squatter = tunnel("squatter")
    routes.claim_host(host, squatter)
    assert routes.evict_others(host, "owner") == [squatter]
    assert routes.lookup_host(host) is None
    # No lease is left for the squatter: the owner binds at once.
    routes.claim_host(host, tunnel("owner"))
    assert routes.lookup_host(host) is not None


def test_evict_others_keeps_the_owners_tunnels_and_drops_a_stale_lease(
    routes: RouteTable,
) -> None:
    mine = tunnel("owner")
    routes.claim_host("mine.localhost", mine)
    assert routes.evict_others("mine.localhost", "owner") == []
    assert routes.lookup_host("mine.localhost") is not None
    gone = tunnel("squatter")
    routes.claim_host("left.localhost", gone)
    routes.release(gone)  # leased to the squatter for a while
    with pytest.raises(BindError):
        routes.claim_host("left.localhost", tunnel("owner"))
    routes.evict_others("left.localhost", "owner")
    routes.claim_host("left.localhost", tunnel("owner"))
