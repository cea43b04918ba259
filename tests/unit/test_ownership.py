"""Who may bind which hostname: reserved names, custom domains, seq order, aliases."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from bus.events import (
    CertChanged,
    DomainRemoved,
    DomainRoute,
    DomainSet,
    KeysSet,
    NameClaim,
    NameRemoved,
    NameSet,
    Revocation,
    RoutingSnapshot,
    TokenRevoked,
)
from edge.routing import table as routing
from edge.routing.ownership import HostOwnership
from edge.routing.table import BindError, RouteTable, Tunnel

BASE = "tunnels.test"


def snapshot(seq: int = 10) -> RoutingSnapshot:
    return RoutingSnapshot(
        seq=seq,
        names=[NameClaim(host=f"shop.{BASE}", org="acme")],
        domains=[
            DomainRoute(host="www.acme.example", org="acme", verified=True),
            DomainRoute(host="new.acme.example", org="acme", verified=False),
            DomainRoute(
                host="secure.acme.example", org="acme", verified=True, tls_mode="passthrough"
            ),
            DomainRoute(host="*.apps.acme.example", org="acme", verified=True),
            DomainRoute(host="go.acme.example", org="acme", verified=True, target=f"shop.{BASE}"),
            DomainRoute(
                host="pending.acme.example", org="acme", verified=False, target=f"shop.{BASE}"
            ),
            DomainRoute(host="*.links.acme.example", org="acme", verified=True, target="x.acme"),
        ],
    )


@pytest.fixture
def owned() -> HostOwnership:
    ownership = HostOwnership()
    ownership.load(snapshot())
    return ownership


def refusal(ownership: HostOwnership, org: str, host: str, protocol: str = "http") -> BindError:
    with pytest.raises(BindError) as caught:
        ownership.check_bind(org, host, protocol)
    return caught.value


# -- check_bind -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("org", "host", "protocol"),
    [
        ("acme", f"shop.{BASE}", "http"),  # its own reserved name
        ("acme", f"shop.{BASE}", "tls"),
        ("globex", f"free.{BASE}", "http"),  # nobody's name
        ("acme", "www.acme.example", "http"),  # own verified domain, terminate
        ("acme", "secure.acme.example", "tls"),  # own passthrough domain, TLS tunnel
        ("acme", "a.apps.acme.example", "http"),  # under its own wildcard domain
        ("acme", "*.apps.acme.example", "http"),  # the wildcard itself
        ("globex", "unclaimed.example", "http"),  # nobody's domain: the token decides
    ],
)
def test_binds_that_are_allowed(owned: HostOwnership, org: str, host: str, protocol: str) -> None:
    owned.check_bind(org, host, protocol)


@pytest.mark.parametrize(
    ("org", "host", "protocol", "code", "words"),
    [
        ("globex", f"shop.{BASE}", "http", "taken", f"shop.{BASE} is reserved by another account"),
        ("globex", "www.acme.example", "http", "taken", "another account"),
        ("globex", "deep.a.apps.acme.example", "http", "taken", "another account"),
        ("globex", "*.apps.acme.example", "http", "taken", "another account"),
        ("acme", "new.acme.example", "http", "unverified", "verify new.acme.example in the"),
        ("acme", "www.acme.example", "tls", "tls_mode", "passthrough"),
        ("acme", "secure.acme.example", "http", "tls_mode", "terminate"),
    ],
)
def test_binds_that_are_refused(
    owned: HostOwnership, org: str, host: str, protocol: str, code: str, words: str
) -> None:
    error = refusal(owned, org, host, protocol)
    assert error.code == code
    assert words in error.message
    assert "\n" not in error.message


def test_an_empty_ownership_allows_everything_as_before() -> None:
    ownership = HostOwnership()
    ownership.check_bind("anyone", f"shop.{BASE}", "http")
    ownership.check_bind("anyone", "www.acme.example", "tls")
    assert not ownership.is_reserved(f"shop.{BASE}")
    assert ownership.alias_for("go.acme.example") is None


# -- which custom hosts a token may name ----------------------------------------------------


def test_an_orgs_own_domain_is_bindable_without_being_in_the_token(owned: HostOwnership) -> None:
    routes = RouteTable(BASE)
    allowed = owned.allowed_for("acme", (), "WWW.Acme.Example")
    assert routes.hostname_for("WWW.Acme.Example", allowed) == "www.acme.example"
    allowed = owned.allowed_for("acme", (), "x.apps.acme.example")
    assert routes.hostname_for("x.apps.acme.example", allowed) == "x.apps.acme.example"


def test_the_tokens_host_list_still_limits_an_orgs_own_domains(owned: HostOwnership) -> None:
    routes = RouteTable(BASE)
    allowed = owned.allowed_for("acme", ("demo.other.example",), "www.acme.example")
    with pytest.raises(BindError) as caught:
        routes.hostname_for("www.acme.example", allowed)
    assert caught.value.code == "not_allowed"


def test_an_unowned_custom_domain_is_left_to_the_token(owned: HostOwnership) -> None:
    routes = RouteTable(BASE)
    allowed = owned.allowed_for("globex", (), "unclaimed.example")
    assert allowed == ()
    with pytest.raises(BindError) as caught:
        routes.hostname_for("unclaimed.example", allowed)
    assert caught.value.code == "not_allowed"
    allowed = owned.allowed_for("globex", ("*.example",), "unclaimed.example")
    assert routes.hostname_for("unclaimed.example", allowed) == "unclaimed.example"


def test_another_orgs_domain_is_refused_as_taken(owned: HostOwnership) -> None:
    routes = RouteTable(BASE)
    hostname = routes.hostname_for(
        "www.acme.example", owned.allowed_for("globex", (), "www.acme.example")
    )
    assert refusal(owned, "globex", hostname).code == "taken"


# -- events in seq order --------------------------------------------------------------------


def test_events_apply_in_order(owned: HostOwnership) -> None:
    assert owned.apply(NameSet(seq=11, claim=NameClaim(host=f"blog.{BASE}", org="globex")))
    assert refusal(owned, "acme", f"blog.{BASE}").code == "taken"
    assert owned.apply(NameRemoved(seq=12, host=f"shop.{BASE}"))
    owned.check_bind("globex", f"shop.{BASE}", "http")
    assert owned.apply(DomainSet(seq=13, route=DomainRoute("new.acme.example", "acme", True)))
    owned.check_bind("acme", "new.acme.example", "http")
    assert owned.apply(DomainRemoved(seq=14, host="www.acme.example"))
    owned.check_bind("globex", "www.acme.example", "http")
    # Events about tokens, keys and certificates only move the seq on here.
    assert owned.apply(TokenRevoked(seq=15, revocation=Revocation("t1", 0.0)))
    assert owned.apply(KeysSet(seq=16, keys=[]))
    assert owned.apply(CertChanged(seq=17, host="www.acme.example"))
    assert owned.seq == 17


def test_a_seq_jump_is_reported_and_changes_nothing(owned: HostOwnership) -> None:
    assert not owned.apply(NameSet(seq=12, claim=NameClaim(host=f"blog.{BASE}", org="globex")))
    assert owned.seq == 10
    owned.check_bind("acme", f"blog.{BASE}", "http")


def test_duplicates_and_old_events_are_ignored(owned: HostOwnership) -> None:
    assert owned.apply(NameSet(seq=11, claim=NameClaim(host=f"blog.{BASE}", org="globex")))
    # The same seq again (or an older one) with other content must not undo anything.
    assert owned.apply(NameRemoved(seq=11, host=f"blog.{BASE}"))
    assert owned.apply(NameRemoved(seq=3, host=f"shop.{BASE}"))
    assert refusal(owned, "acme", f"blog.{BASE}").code == "taken"
    assert refusal(owned, "globex", f"shop.{BASE}").code == "taken"
    assert owned.seq == 11


def test_a_snapshot_replaces_everything(owned: HostOwnership) -> None:
    owned.load(RoutingSnapshot(seq=3, names=[NameClaim(f"blog.{BASE}", "globex")]))
    assert owned.seq == 3
    owned.check_bind("globex", f"shop.{BASE}", "http")
    owned.check_bind("globex", "www.acme.example", "http")
    assert refusal(owned, "acme", f"blog.{BASE}").code == "taken"
    assert owned.alias_for("go.acme.example") is None


def test_snapshot_round_trip(owned: HostOwnership) -> None:
    copy = HostOwnership()
    copy.load(owned.snapshot())
    assert copy.seq == owned.seq
    assert refusal(copy, "globex", f"shop.{BASE}").code == "taken"
    assert copy.alias_for("go.acme.example") == f"shop.{BASE}"


# -- aliases --------------------------------------------------------------------------------


def test_aliases_need_a_verified_domain_with_a_target(owned: HostOwnership) -> None:
    assert owned.alias_for("go.acme.example") == f"shop.{BASE}"
    assert owned.alias_for("pending.acme.example") is None  # not verified
    assert owned.alias_for("www.acme.example") is None  # no target
    assert owned.alias_for("a.links.acme.example") == "x.acme"  # wildcard domain
    assert owned.alias_for("elsewhere.example") is None
    owned.apply(DomainRemoved(seq=11, host="go.acme.example"))
    assert owned.alias_for("go.acme.example") is None


_ids = itertools.count(1)


def tunnel(account: str) -> Tunnel:
    session = SimpleNamespace(mux=SimpleNamespace(stream_count=0))
    return Tunnel(next(_ids), session, "http", account, "i-1")  # type: ignore[arg-type]


def test_lookup_falls_back_to_the_alias_target(owned: HostOwnership) -> None:
    routes = RouteTable(BASE, reserved=owned.is_reserved, alias=owned.alias_route)
    assert routes.lookup_host("go.acme.example") is None  # nothing serves the target yet
    shop = tunnel("acme")
    routes.claim_host(f"shop.{BASE}", shop)
    pool = routes.lookup_host("go.acme.example")
    assert pool is not None and pool.pick() is shop
    # A tunnel bound to the domain itself wins over the alias.
    direct = tunnel("acme")
    routes.claim_host("go.acme.example", direct)
    pool = routes.lookup_host("go.acme.example")
    assert pool is not None and pool.pick() is direct


def test_an_alias_never_reaches_another_orgs_tunnel() -> None:
    ownership = HostOwnership()
    ownership.load(
        RoutingSnapshot(
            seq=1, domains=[DomainRoute("evil.example", "mallory", True, target=f"bank.{BASE}")]
        )
    )
    routes = RouteTable(BASE, alias=ownership.alias_route)
    routes.claim_host(f"bank.{BASE}", tunnel("bank"))
    assert routes.lookup_host("evil.example") is None


# -- random names ---------------------------------------------------------------------------


def test_random_names_skip_reserved_ones(
    owned: HostOwnership, monkeypatch: pytest.MonkeyPatch
) -> None:
    owned.apply(NameSet(seq=11, claim=NameClaim(host=f"{'a' * 8}.{BASE}", org="acme")))
    routes = RouteTable(BASE, reserved=owned.is_reserved)
    letters = iter("a" * 8 + "b" * 8)
    monkeypatch.setattr(routing.secrets, "choice", lambda alphabet: next(letters))
    assert routes.random_hostname() == f"{'b' * 8}.{BASE}"
