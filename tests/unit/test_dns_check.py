"""Custom-domain verification against a real DNS server on 127.0.0.1."""

from __future__ import annotations

import socket
import time

import pytest

from control.dns_check import DnsRecord, DomainVerifier, Verification, records_to_create
from tests.fixtures.dns_server import DnsServer
from tests.fixtures.dns_server import dns_server as dns_server_fixture  # noqa: F401

EDGE = "edge.burrow.example"
DOMAIN = "app.example.com"
CHALLENGE = "_burrow-challenge.app.example.com"
TOKEN = "k3Jd9sQ"
EXPECTED = "burrow-verify=k3Jd9sQ"


def verifier_for(server: DnsServer, timeout: float = 2.0, edge: str = EDGE) -> DomainVerifier:
    return DomainVerifier(server.nameservers, server.port, timeout, edge_target=edge)


async def verify(
    server: DnsServer, *, strict: bool, domain: str = DOMAIN, token: str = TOKEN
) -> Verification:
    return await verifier_for(server).verify(domain, token, strict)


# -- TXT ------------------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [True, False])
async def test_the_txt_record_verifies_the_domain(dns_server: DnsServer, strict: bool) -> None:
    dns_server.set_txt(CHALLENGE, EXPECTED)

    result = await verify(dns_server, strict=strict)

    assert result.ok and result.method == "txt"
    assert [(q.name, q.type) for q in dns_server.asked(CHALLENGE)] == [(CHALLENGE, "TXT")]


async def test_a_txt_record_with_the_wrong_value_is_quoted_back(dns_server: DnsServer) -> None:
    dns_server.set_txt(CHALLENGE, "burrow-verify=old-token")

    result = await verify(dns_server, strict=True)

    assert result == Verification(
        False,
        None,
        "TXT record found but its value is 'burrow-verify=old-token', expected "
        "'burrow-verify=k3Jd9sQ'",
    )


async def test_no_txt_record_says_where_it_should_be(dns_server: DnsServer) -> None:
    result = await verify(dns_server, strict=True)

    assert result == Verification(
        False,
        None,
        "no TXT record at _burrow-challenge.app.example.com yet; "
        "DNS changes can take a few minutes",
    )
    assert dns_server.asked(CHALLENGE), "the verifier must have asked the DNS server"


async def test_a_name_with_other_records_but_no_txt_is_reported_missing(
    dns_server: DnsServer,
) -> None:
    dns_server.set_a(CHALLENGE, "192.0.2.1")

    result = await verify(dns_server, strict=True)

    assert not result.ok
    assert result.detail.startswith("no TXT record at _burrow-challenge.app.example.com yet")


async def test_a_record_created_after_a_failed_check_is_seen_at_once(dns_server: DnsServer) -> None:
    verifier = verifier_for(dns_server)
    assert not (await verifier.verify(DOMAIN, TOKEN, strict=True)).ok

    dns_server.set_txt(CHALLENGE, EXPECTED)

    assert (await verifier.verify(DOMAIN, TOKEN, strict=True)).ok


async def test_a_txt_record_split_into_several_strings_is_joined(dns_server: DnsServer) -> None:
    dns_server.set_txt(CHALLENGE, ("burrow-verify=", "k3J", "d9sQ"))

    assert (await verify(dns_server, strict=True)).ok


async def test_a_token_longer_than_one_txt_string(dns_server: DnsServer) -> None:
    token = "t" * 400
    dns_server.set_txt(CHALLENGE, "burrow-verify=" + token)

    assert (await verify(dns_server, strict=True, token=token)).ok


async def test_one_matching_txt_record_among_others_is_enough(dns_server: DnsServer) -> None:
    dns_server.set_txt(CHALLENGE, "v=spf1 -all", EXPECTED, "google-site-verification=x")

    assert (await verify(dns_server, strict=True)).ok


async def test_several_wrong_txt_records_are_listed(dns_server: DnsServer) -> None:
    dns_server.set_txt(CHALLENGE, "burrow-verify=old", "v=spf1 -all")

    result = await verify(dns_server, strict=True)

    assert not result.ok
    assert result.detail.startswith(
        "2 TXT records at _burrow-challenge.app.example.com but none is 'burrow-verify=k3Jd9sQ'"
    )
    assert "'burrow-verify=old'" in result.detail and "'v=spf1 -all'" in result.detail


async def test_quotes_pasted_into_the_value_are_forgiven(dns_server: DnsServer) -> None:
    dns_server.set_txt(CHALLENGE, f' "{EXPECTED}" ')

    assert (await verify(dns_server, strict=True)).ok


async def test_many_txt_records_arrive_over_tcp_after_truncation(dns_server: DnsServer) -> None:
    dns_server.set_txt(CHALLENGE, *[f"filler-{i}-" + "x" * 90 for i in range(40)], EXPECTED)

    assert (await verify(dns_server, strict=True)).ok
    assert {q.transport for q in dns_server.asked(CHALLENGE)} == {"udp", "tcp"}


async def test_the_challenge_may_be_a_cname_into_another_zone(dns_server: DnsServer) -> None:
    delegated = "app-example-com.challenges.dns-host.example"
    dns_server.set_cname(CHALLENGE, delegated)
    dns_server.set_txt(delegated, EXPECTED)

    assert (await verify(dns_server, strict=True)).ok


async def test_host_names_are_compared_without_case_or_trailing_dot(
    dns_server: DnsServer,
) -> None:
    dns_server.set_txt("_BURROW-CHALLENGE.App.Example.Com.", EXPECTED)

    result = await verify(dns_server, strict=True, domain="APP.example.COM.")

    assert result.ok and result.method == "txt"


async def test_a_wildcard_domain_is_proven_at_its_parent(dns_server: DnsServer) -> None:
    dns_server.set_txt("_burrow-challenge.example.com", EXPECTED)

    assert (await verify(dns_server, strict=True, domain="*.example.com")).ok


async def test_an_invalid_domain_is_refused_without_asking_dns(dns_server: DnsServer) -> None:
    result = await verify(dns_server, strict=True, domain="my_app.example.com")

    assert not result.ok and result.method is None
    assert "only letters, digits and hyphens" in result.detail
    assert dns_server.queries == []


# -- CNAME ----------------------------------------------------------------------------------


async def test_strict_mode_refuses_a_correct_cname(dns_server: DnsServer) -> None:
    dns_server.set_cname(DOMAIN, EDGE)

    result = await verify(dns_server, strict=True)

    assert not result.ok and result.method is None
    assert result.detail.startswith("no TXT record at _burrow-challenge.app.example.com")


@pytest.mark.parametrize("target", [EDGE, "Edge.Burrow.EXAMPLE.", "edge.burrow.example."])
async def test_relaxed_mode_accepts_a_cname_to_the_edge(dns_server: DnsServer, target: str) -> None:
    dns_server.set_cname(DOMAIN, target)

    result = await verify(dns_server, strict=False)

    assert result.ok and result.method == "cname"


async def test_the_configured_edge_name_is_folded_too(dns_server: DnsServer) -> None:
    dns_server.set_cname(DOMAIN, EDGE)

    result = await verifier_for(dns_server, edge="EDGE.burrow.example.").verify(
        DOMAIN, TOKEN, strict=False
    )

    assert result.ok and result.method == "cname"


async def test_relaxed_mode_refuses_a_cname_elsewhere(dns_server: DnsServer) -> None:
    dns_server.set_cname(DOMAIN, "Other.Host.")

    result = await verify(dns_server, strict=False)

    assert result == Verification(False, None, "CNAME points to other.host, expected " + EDGE)


async def test_relaxed_mode_with_neither_record(dns_server: DnsServer) -> None:
    result = await verify(dns_server, strict=False)

    assert result == Verification(
        False,
        None,
        "no TXT record at _burrow-challenge.app.example.com and no CNAME at app.example.com "
        "yet; DNS changes can take a few minutes",
    )


async def test_relaxed_mode_explains_an_address_record_in_place_of_the_cname(
    dns_server: DnsServer,
) -> None:
    dns_server.set_a(DOMAIN, "192.0.2.7")

    result = await verify(dns_server, strict=False)

    assert not result.ok
    assert "app.example.com has records but no CNAME" in result.detail
    assert "no TXT record at _burrow-challenge.app.example.com" in result.detail


async def test_relaxed_mode_prefers_the_txt_record(dns_server: DnsServer) -> None:
    dns_server.set_txt(CHALLENGE, EXPECTED)
    dns_server.set_cname(DOMAIN, "somewhere.else")

    result = await verify(dns_server, strict=False)

    assert result.ok and result.method == "txt"


async def test_relaxed_mode_reports_both_wrong_records(dns_server: DnsServer) -> None:
    dns_server.set_txt(CHALLENGE, "burrow-verify=old")
    dns_server.set_cname(DOMAIN, "other.host")

    result = await verify(dns_server, strict=False)

    assert not result.ok
    assert "its value is 'burrow-verify=old'" in result.detail
    assert "CNAME points to other.host" in result.detail
    assert "\n" not in result.detail


# -- broken DNS -----------------------------------------------------------------------------


async def test_servfail_is_reported(dns_server: DnsServer) -> None:
    dns_server.set_servfail(CHALLENGE)

    result = await verify(dns_server, strict=True)

    assert not result.ok and result.method is None
    assert result.detail.startswith(
        "the DNS server answered SERVFAIL for the TXT record at _burrow-challenge.app.example.com"
    )


async def test_servfail_on_one_lookup_does_not_hide_a_good_cname(dns_server: DnsServer) -> None:
    dns_server.set_servfail(CHALLENGE)
    dns_server.set_cname(DOMAIN, EDGE)

    result = await verify(dns_server, strict=False)

    assert result.ok and result.method == "cname"


async def test_a_silent_server_is_given_up_on_after_the_timeout(dns_server: DnsServer) -> None:
    dns_server.set_silent(CHALLENGE)
    verifier = verifier_for(dns_server, timeout=0.5)

    started = time.monotonic()
    result = await verifier.verify(DOMAIN, TOKEN, strict=True)
    elapsed = time.monotonic() - started

    assert not result.ok and result.method is None
    assert result.detail.startswith("the DNS server did not answer in 0.5 s")
    assert CHALLENGE in result.detail
    assert 0.4 <= elapsed < 1.5


async def test_relaxed_mode_waits_one_timeout_not_one_per_record(dns_server: DnsServer) -> None:
    dns_server.set_silent(CHALLENGE)
    dns_server.set_silent(DOMAIN)
    verifier = verifier_for(dns_server, timeout=0.5)

    started = time.monotonic()
    result = await verifier.verify(DOMAIN, TOKEN, strict=False)
    elapsed = time.monotonic() - started

    assert not result.ok
    assert result.detail.startswith("the DNS server did not answer in 0.5 s")
    assert elapsed < 0.95


async def test_no_dns_server_at_all_is_a_result_not_an_exception() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    verifier = DomainVerifier(["127.0.0.1"], closed_port, 0.5, edge_target=EDGE)

    started = time.monotonic()
    for strict in (True, False):
        result = await verifier.verify(DOMAIN, TOKEN, strict)
        assert not result.ok and result.method is None
        assert result.detail and "\n" not in result.detail
    assert time.monotonic() - started < 2.5


# -- what the user is asked to create ------------------------------------------------------


def test_strict_mode_requires_the_txt_record() -> None:
    records = records_to_create(DOMAIN, TOKEN, "Edge.Burrow.Example.", strict=True)

    assert [r for r in records if r.required] == [
        DnsRecord("TXT", CHALLENGE, EXPECTED, True, records[0].purpose)
    ]
    cname = next(r for r in records if r.type == "CNAME")
    assert (cname.name, cname.value, cname.required) == (DOMAIN, EDGE, False)
    assert "not used for verification" in cname.purpose


def test_relaxed_mode_offers_the_txt_or_the_cname() -> None:
    records = records_to_create(DOMAIN, TOKEN, EDGE, strict=False)

    assert {(r.type, r.name, r.value) for r in records} == {
        ("TXT", CHALLENGE, EXPECTED),
        ("CNAME", DOMAIN, EDGE),
    }
    assert not any(r.required for r in records)
    assert all("proves you control the domain" in r.purpose for r in records)


def test_a_wildcard_domain_gets_its_challenge_at_the_parent() -> None:
    records = records_to_create("*.example.com", TOKEN, EDGE, strict=True)

    assert records[0].name == "_burrow-challenge.example.com"
    assert records[1].name == "*.example.com"


@pytest.mark.parametrize(
    ("strict", "create"), [(True, {"TXT"}), (False, {"TXT"}), (False, {"CNAME"})]
)
async def test_creating_the_listed_records_passes_verification(
    dns_server: DnsServer, strict: bool, create: set[str]
) -> None:
    for record in records_to_create(DOMAIN, TOKEN, EDGE, strict):
        if record.type in create and record.type == "TXT":
            dns_server.set_txt(record.name, record.value)
        elif record.type in create:
            dns_server.set_cname(record.name, record.value)

    result = await verify(dns_server, strict=strict)

    assert result.ok and result.method == next(iter(create)).lower()
