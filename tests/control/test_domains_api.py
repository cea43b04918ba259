"""Custom domains through the API, verified against a real DNS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bus.base import ROUTING_CHANNEL, Published
from bus.events import DomainRemoved, DomainRoute, DomainSet, routing_decoder, snapshot_decoder
from control.app import create_app
from control.dns_check import DomainVerifier
from control.keys import BUS
from tests.control.conftest import Api, control_config
from tests.fixtures.dns_server import DnsServer
from tests.fixtures.dns_server import dns_server as dns_server_fixture  # noqa: F401

EDGE = "edge.burrow-edge.example"


@pytest.fixture
async def api(database_url: str, dns_server: DnsServer) -> AsyncIterator[Api]:
    """The control app, verifying domains against the test's DNS server."""
    verifier = DomainVerifier(dns_server.nameservers, dns_server.port, 2.0, edge_target=EDGE)
    app = create_app(control_config(database_url, edge_target=EDGE), verifier=verifier)
    async with TestClient(TestServer(app)) as client:
        yield Api(client)


def fresh_domain(parent: str = "example.com") -> str:
    return f"app-{secrets.token_hex(4)}.{parent}"


async def domains_in_snapshot(api: Api) -> dict[str, DomainRoute]:
    resp = await api.client.get("/v1/edge/routing", headers={"Authorization": "Bearer edge-key-1"})
    assert resp.status == 200
    snap = snapshot_decoder.decode(await resp.read())
    return {d.host: d for d in snap.domains}


async def add(api: Api, key: str, domain: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = await api.call(
        "POST", "/v1/domains", key, status=201, json={"domain": domain, **extra}
    )
    return body


async def verify(api: Api, key: str, domain_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await api.call("POST", f"/v1/domains/{domain_id}/verify", key)
    return body


async def test_adding_a_domain_says_which_records_to_create(api: Api) -> None:
    user = await api.signup()
    host = fresh_domain()
    made = await add(api, user["key"], f"  {host.upper()}. ")
    assert made["host"] == host
    assert made["verified"] is False and made["strict"] is True
    assert made["tls_mode"] == "terminate" and made["target"] is None
    token = made["verification_token"]
    assert len(token) >= 16
    records = {r["type"]: r for r in made["records"]}
    assert records["TXT"]["name"] == f"_burrow-challenge.{host}"
    assert records["TXT"]["value"] == f"burrow-verify={token}"
    assert records["TXT"]["required"] is True
    assert records["CNAME"] == {**records["CNAME"], "name": host, "value": EDGE}

    listed = await api.call("GET", "/v1/domains", user["key"])
    assert [d["id"] for d in listed["domains"]] == [made["id"]]
    one = await api.call("GET", f"/v1/domains/{made['id']}", user["key"])
    assert one["records"] == made["records"]
    # Edges know the claim before it is verified, but do not route it.
    assert (await domains_in_snapshot(api))[host] == DomainRoute(
        host, user["org"]["id"], verified=False
    )


async def test_a_domain_belongs_to_one_org_and_the_other_is_not_told_which(api: Api) -> None:
    alice = await api.signup()
    bob = await api.signup()
    host = fresh_domain()
    await add(api, alice["key"], host)
    err = await api.call("POST", "/v1/domains", bob["key"], status=409, json={"domain": host})
    assert "already added by an organization" in err["error"]["message"]
    assert alice["org"]["id"] not in str(err)
    err = await api.call("POST", "/v1/domains", alice["key"], status=409, json={"domain": host})
    assert err["error"]["code"] == "taken"
    assert (await api.call("GET", "/v1/domains", bob["key"]))["domains"] == []


@pytest.mark.parametrize(
    "domain", ["tunnels.test", "app.tunnels.test", "*.tunnels.test", "A.B.Tunnels.Test."]
)
async def test_domains_of_the_base_domain_are_refused(api: Api, domain: str) -> None:
    user = await api.signup()
    err = await api.call("POST", "/v1/domains", user["key"], status=422, json={"domain": domain})
    assert "tunnels.test" in err["error"]["message"]
    assert "/v1/names" in err["error"]["message"]


async def test_the_edge_host_name_itself_is_refused(api: Api) -> None:
    user = await api.signup()
    err = await api.call("POST", "/v1/domains", user["key"], status=422, json={"domain": EDGE})
    assert err["error"]["code"] == "reserved_domain"


async def test_a_wildcard_must_be_strict_and_is_proven_at_its_parent(
    api: Api, dns_server: DnsServer
) -> None:
    user = await api.signup()
    parent = fresh_domain()
    err = await api.call(
        "POST",
        "/v1/domains",
        user["key"],
        status=422,
        json={"domain": f"*.{parent}", "strict": False},
    )
    assert "strict" in err["error"]["message"]
    made = await add(api, user["key"], f"*.{parent}")
    txt = next(r for r in made["records"] if r["type"] == "TXT")
    assert txt["name"] == f"_burrow-challenge.{parent}"
    await api.call(
        "PATCH", f"/v1/domains/{made['id']}", user["key"], status=422, json={"strict": False}
    )

    dns_server.set_txt(f"_burrow-challenge.{parent}", txt["value"])
    checked = await verify(api, user["key"], made["id"])
    assert checked["verified"] is True and checked["check"]["method"] == "txt"
    assert (await domains_in_snapshot(api))[f"*.{parent}"].verified


async def test_a_txt_record_verifies_and_routes_the_domain(api: Api, dns_server: DnsServer) -> None:
    user = await api.signup()
    host = fresh_domain()
    made = await add(api, user["key"], host, tls_mode="passthrough")
    subscription = api.client.app[BUS].subscribe([ROUTING_CHANNEL])  # type: ignore[index]
    try:
        expected = DomainRoute(host, user["org"]["id"], True, tls_mode="passthrough")
        dns_server.set_txt(
            f"_burrow-challenge.{host}", f"burrow-verify={made['verification_token']}"
        )
        checked = await verify(api, user["key"], made["id"])
        assert checked["verified"] is True
        assert checked["verified_by"] == "txt" and checked["verified_at"]
        assert checked["check"] == {
            "ok": True,
            "method": "txt",
            "detail": f"TXT record at _burrow-challenge.{host} matches",
        }
        assert checked["last_check_error"] is None and checked["last_check_at"]

        # The change reaches edges on the bus, not only in the snapshot.
        async with asyncio.timeout(5):
            async for item in subscription:
                assert isinstance(item, Published)
                event = routing_decoder.decode(item.payload)
                if isinstance(event, DomainSet) and event.route == expected:
                    break
    finally:
        await subscription.close()
    assert (await domains_in_snapshot(api))[host] == expected


async def test_a_missing_txt_record_is_a_failed_check_not_an_error(
    api: Api, dns_server: DnsServer
) -> None:
    user = await api.signup()
    host = fresh_domain()
    made = await add(api, user["key"], host)
    checked = await verify(api, user["key"], made["id"])
    assert checked["verified"] is False
    assert checked["check"]["ok"] is False and checked["check"]["method"] is None
    assert checked["check"]["detail"].startswith(f"no TXT record at _burrow-challenge.{host}")
    again = await api.call("GET", f"/v1/domains/{made['id']}", user["key"])
    assert again["last_check_error"] == checked["check"]["detail"]
    assert again["last_check_at"] is not None

    dns_server.set_txt(f"_burrow-challenge.{host}", "burrow-verify=someone-elses")
    checked = await verify(api, user["key"], made["id"])
    assert "'burrow-verify=someone-elses'" in checked["check"]["detail"]
    assert not (await domains_in_snapshot(api))[host].verified


async def test_a_broken_dns_server_is_reported(api: Api, dns_server: DnsServer) -> None:
    user = await api.signup()
    host = fresh_domain()
    made = await add(api, user["key"], host)
    dns_server.set_servfail(f"_burrow-challenge.{host}")
    checked = await verify(api, user["key"], made["id"])
    assert checked["verified"] is False
    assert "SERVFAIL" in checked["check"]["detail"]


async def test_relaxed_mode_accepts_a_cname_and_strict_mode_does_not(
    api: Api, dns_server: DnsServer
) -> None:
    user = await api.signup()
    strict_host, relaxed_host = fresh_domain(), fresh_domain()
    strict = await add(api, user["key"], strict_host)
    relaxed = await add(api, user["key"], relaxed_host, strict=False)
    dns_server.set_cname(strict_host, EDGE)
    dns_server.set_cname(relaxed_host, EDGE)

    refused = await verify(api, user["key"], strict["id"])
    assert refused["verified"] is False
    assert "no TXT record" in refused["check"]["detail"]

    accepted = await verify(api, user["key"], relaxed["id"])
    assert accepted["verified"] is True and accepted["check"]["method"] == "cname"
    assert (await domains_in_snapshot(api))[relaxed_host].verified

    # Strict mode takes only the TXT proof: switching to it unroutes a CNAME-verified domain.
    switched = await api.call(
        "PATCH", f"/v1/domains/{relaxed['id']}", user["key"], json={"strict": True}
    )
    assert switched["verified"] is False and switched["verified_by"] is None
    assert not (await domains_in_snapshot(api))[relaxed_host].verified


async def test_a_domain_routes_to_a_reserved_name_of_its_org(
    api: Api, dns_server: DnsServer
) -> None:
    alice = await api.signup()
    bob = await api.signup()
    label = f"shop-{secrets.token_hex(3)}"
    await api.call("POST", "/v1/names", alice["key"], status=201, json={"name": label})
    other = f"other-{secrets.token_hex(3)}"
    await api.call("POST", "/v1/names", bob["key"], status=201, json={"name": other})
    host = fresh_domain()
    made = await add(api, alice["key"], host)
    dns_server.set_txt(f"_burrow-challenge.{host}", f"burrow-verify={made['verification_token']}")
    await verify(api, alice["key"], made["id"])
    path = f"/v1/domains/{made['id']}"

    err = await api.call("PATCH", path, alice["key"], status=422, json={"target": other})
    assert "has not reserved" in err["error"]["message"]
    await api.call("PATCH", path, alice["key"], status=422, json={"target": "not a name"})

    routed = await api.call("PATCH", path, alice["key"], json={"target": label})
    assert routed["target"] == f"{label}.tunnels.test"
    routed = await api.call(
        "PATCH",
        path,
        alice["key"],
        json={"target": f"{label}.tunnels.test", "tls_mode": "passthrough"},
    )
    assert routed["tls_mode"] == "passthrough"
    route = (await domains_in_snapshot(api))[host]
    assert (route.verified, route.target, route.tls_mode) == (
        True,
        f"{label}.tunnels.test",
        "passthrough",
    )

    assert (await api.call("PATCH", path, alice["key"], json={"target": None}))["target"] is None
    await api.call("PATCH", path, alice["key"], json={"target": label})
    assert (await api.call("PATCH", path, alice["key"], json={"target": ""}))["target"] is None
    assert (await domains_in_snapshot(api))[host].target == ""
    unchanged = await api.call("PATCH", path, alice["key"], json={})
    assert unchanged["tls_mode"] == "passthrough"


async def test_removing_a_domain_unroutes_it(api: Api, dns_server: DnsServer) -> None:
    user = await api.signup()
    host = fresh_domain()
    made = await add(api, user["key"], host)
    subscription = api.client.app[BUS].subscribe([ROUTING_CHANNEL])  # type: ignore[index]
    try:
        removed = await api.call("DELETE", f"/v1/domains/{made['id']}", user["key"])
        assert removed["host"] == host
        async with asyncio.timeout(5):
            async for item in subscription:
                assert isinstance(item, Published)
                event = routing_decoder.decode(item.payload)
                if isinstance(event, DomainRemoved) and event.host == host:
                    break
    finally:
        await subscription.close()
    assert host not in await domains_in_snapshot(api)
    await api.call("GET", f"/v1/domains/{made['id']}", user["key"], status=404)
    # Once removed, any org may add it.
    other = await api.signup()
    await add(api, other["key"], host)


async def test_another_orgs_domain_is_not_found(api: Api) -> None:
    alice = await api.signup()
    bob = await api.signup()
    made = await add(api, alice["key"], fresh_domain())
    path = f"/v1/domains/{made['id']}"
    for method, suffix, body in [
        ("GET", "", None),
        ("PATCH", "", {"tls_mode": "passthrough"}),
        ("POST", "/verify", None),
        ("DELETE", "", None),
    ]:
        err = await api.call(method, path + suffix, bob["key"], status=404, json=body)
        assert err["error"]["message"] == "no domain with that id in this organization"
    still = await api.call("GET", path, alice["key"])
    assert still["tls_mode"] == "terminate"


async def test_members_read_but_do_not_change_domains(api: Api) -> None:
    user = await api.signup()
    member = await api.call(
        "POST", "/v1/api-keys", user["key"], status=201, json={"role": "member"}
    )
    made = await add(api, user["key"], fresh_domain())
    await api.call("GET", f"/v1/domains/{made['id']}", member["key"])
    await api.call(
        "POST", "/v1/domains", member["key"], status=403, json={"domain": fresh_domain()}
    )
    await api.call("DELETE", f"/v1/domains/{made['id']}", member["key"], status=403)
    await api.call("GET", "/v1/domains", "", status=401)


@pytest.mark.parametrize(
    "domain",
    [
        "'; DROP TABLE domains; --",
        "example.com'; DROP TABLE domains; --",
        "https://app.example.com/",
        "10.0.0.1",
        "app.example.com:8080",
        "*.*.example.com",
        "localhost",
        "",
        "a" * 300 + ".com",
    ],
)
async def test_bad_domains_are_refused_with_a_reason(api: Api, domain: str) -> None:
    user = await api.signup()
    err = await api.call("POST", "/v1/domains", user["key"], status=422, json={"domain": domain})
    assert err["error"]["code"] == "invalid" and err["error"]["message"]
    assert (await api.call("GET", "/v1/domains", user["key"]))["domains"] == []


async def test_malformed_requests(api: Api) -> None:
    user = await api.signup()
    made = await add(api, user["key"], fresh_domain())
    headers = {**api.bearer(user["key"]), "Content-Type": "application/json"}
    path = f"/v1/domains/{made['id']}"
    for method, url in [("POST", "/v1/domains"), ("PATCH", path)]:
        resp = await api.client.request(method, url, data=b"{not json", headers=headers)
        assert resp.status == 400, url
        assert (await resp.json())["error"]["code"] == "bad_json"
        resp = await api.client.request(method, url, data=b'{"surprise": 1}', headers=headers)
        assert resp.status == 422, url
        assert "surprise" in (await resp.json())["error"]["message"]
        resp = await api.client.request(
            method, url, data=b'{"tls_mode": "' + b"x" * 100 * 1024 + b'"}', headers=headers
        )
        assert resp.status == 413, url
    for body in [
        {"domain": 5},
        {"domain": "a.example.com", "strict": "yes"},
        {"domain": "a.example.com", "tls_mode": "both"},
        {},
    ]:
        resp = await api.client.post("/v1/domains", json=body, headers=api.bearer(user["key"]))
        assert resp.status == 422, body
    for body in [{"tls_mode": "both"}, {"target": 7}, {"strict": None}]:
        resp = await api.client.patch(path, json=body, headers=api.bearer(user["key"]))
        assert resp.status == 422, body
    resp = await api.client.post(
        "/v1/domains",
        data=b"domain=a.example.com",
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert resp.status == 415

    for bad_id in ["'; DROP TABLE domains; --", "dom_x' OR '1'='1", "x" * 5000]:
        quoted = bad_id.replace("'", "%27").replace(" ", "%20").replace(";", "%3B")
        await api.call("GET", f"/v1/domains/{quoted}", user["key"], status=404)
        await api.call("POST", f"/v1/domains/{quoted}/verify", user["key"], status=404)
        await api.call("DELETE", f"/v1/domains/{quoted}", user["key"], status=404)
    await api.call(
        "PATCH", path, user["key"], status=422, json={"target": "'; DROP TABLE domains; --"}
    )
    # The table is intact and the domain unchanged.
    listed = await api.call("GET", "/v1/domains", user["key"])
    assert [(d["id"], d["tls_mode"]) for d in listed["domains"]] == [(made["id"], "terminate")]


async def test_releasing_a_name_unroutes_its_domains_on_the_edges(
    api: Api, dns_server: DnsServer
) -> None:
    user = await api.signup()
    label = f"gone-{secrets.token_hex(3)}"
    name = await api.call("POST", "/v1/names", user["key"], status=201, json={"name": label})
    host = fresh_domain()
    made = await add(api, user["key"], host)
    dns_server.set_txt(f"_burrow-challenge.{host}", f"burrow-verify={made['verification_token']}")
    await verify(api, user["key"], made["id"])
    await api.call("PATCH", f"/v1/domains/{made['id']}", user["key"], json={"target": label})
    subscription = api.client.app[BUS].subscribe([ROUTING_CHANNEL])  # type: ignore[index]
    try:
        await api.call("DELETE", f"/v1/names/{name['id']}", user["key"])
        async with asyncio.timeout(5):
            async for item in subscription:
                assert isinstance(item, Published)
                event = routing_decoder.decode(item.payload)
                # (The routing set by the PATCH may still be on its way out first.)
                if (
                    isinstance(event, DomainSet)
                    and event.route.host == host
                    and event.route.target == ""
                ):
                    break
    finally:
        await subscription.close()
    assert (await domains_in_snapshot(api))[host].target == ""
