"""Domain squatting: an unverified claim expires and another org may then take the name,
public suffixes cannot be claimed, an operator can release any domain (audited), and the
number of organizations one user may own is capped."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bus.events import DomainRoute, snapshot_decoder
from control.app import create_app
from control.keys import DB
from tests.control.conftest import Api, control_config


@pytest.fixture
async def control(database_url: str) -> AsyncIterator[TestClient]:
    app = create_app(control_config(database_url, domain_claim_days=7.0, max_orgs_per_user=3))
    async with TestClient(TestServer(app)) as client:
        yield client


def _host() -> str:
    return f"app-{secrets.token_hex(4)}.example.net"


async def _snapshot(api: Api) -> dict[str, DomainRoute]:
    resp = await api.client.get("/v1/edge/routing", headers={"Authorization": "Bearer edge-key-1"})
    return {d.host: d for d in snapshot_decoder.decode(await resp.read()).domains}


async def _audit(control: TestClient, action: str, target: str) -> list[dict[str, Any]]:
    return await control.app[DB].all(  # type: ignore[index]
        "SELECT org_id, actor, action, target FROM audit_log WHERE action = %s AND target = %s",
        (action, target),
    )


@pytest.mark.parametrize(
    "domain",
    ["co.uk", "*.co.uk", "github.io", "*.github.io", "s3.amazonaws.com", "com.au", "*.com"],
)
async def test_public_suffixes_cannot_be_claimed(api: Api, domain: str) -> None:
    user = await api.signup()
    err = await api.call("POST", "/v1/domains", user["key"], status=422, json={"domain": domain})
    assert err["error"]["code"] in ("public_suffix", "invalid"), err
    if domain.count(".") >= 1 and domain != "*.com":
        assert err["error"]["code"] == "public_suffix"
    assert (await api.call("GET", "/v1/domains", user["key"]))["domains"] == []


async def test_names_registered_under_a_public_suffix_are_fine(api: Api) -> None:
    user = await api.signup()
    for domain in (f"shop-{secrets.token_hex(3)}.co.uk", f"me-{secrets.token_hex(3)}.github.io"):
        await api.call("POST", "/v1/domains", user["key"], status=201, json={"domain": domain})


async def test_an_expired_unverified_claim_can_be_taken_by_another_org(
    api: Api, control: TestClient
) -> None:
    alice, bob = await api.signup(), await api.signup()
    host = _host()
    mine = await api.call("POST", "/v1/domains", alice["key"], status=201, json={"domain": host})
    assert mine["claim_expires_at"] is not None
    err = await api.call("POST", "/v1/domains", bob["key"], status=409, json={"domain": host})
    assert err["error"]["code"] == "taken"
    await control.app[DB].execute(  # type: ignore[index]
        "UPDATE domains SET created_at = now() - interval '8 days' WHERE host = %s", (host,)
    )
    # Adding it again does not renew the claim or change its TXT token.
    await api.call("POST", "/v1/domains", alice["key"], status=409, json={"domain": host})
    same = await api.call("GET", f"/v1/domains/{mine['id']}", alice["key"])
    assert same["verification_token"] == mine["verification_token"]
    taken = await api.call("POST", "/v1/domains", bob["key"], status=201, json={"domain": host})
    assert taken["host"] == host
    assert (await api.call("GET", "/v1/domains", alice["key"]))["domains"] == []
    assert (await _snapshot(api))[host].org == bob["org"]["id"]
    expired = await _audit(control, "domain.claim_expired", host)
    assert [r["org_id"] for r in expired] == [alice["org"]["id"]]


async def test_a_verified_domain_never_expires(api: Api, control: TestClient) -> None:
    alice, bob = await api.signup(), await api.signup()
    host = _host()
    await api.call("POST", "/v1/domains", alice["key"], status=201, json={"domain": host})
    await control.app[DB].execute(  # type: ignore[index]
        "UPDATE domains SET created_at = now() - interval '400 days', verified_at = now(),"
        " verified_by = 'txt' WHERE host = %s",
        (host,),
    )
    await api.call("POST", "/v1/domains", bob["key"], status=409, json={"domain": host})
    listed = (await api.call("GET", "/v1/domains", alice["key"]))["domains"]
    assert [(d["host"], d["claim_expires_at"]) for d in listed] == [(host, None)]


async def test_an_operator_releases_a_domain_and_it_is_audited(
    api: Api, control: TestClient
) -> None:
    alice, bob, operator = await api.signup(), await api.signup(), await api.signup()
    await control.app[DB].execute(  # type: ignore[index]
        "UPDATE users SET is_admin = true WHERE id = %s", (operator["user"]["id"],)
    )
    host = _host()
    domain = await api.call("POST", "/v1/domains", alice["key"], status=201, json={"domain": host})
    path = f"/v1/admin/domains/{domain['id']}/release"
    as_alice = {"Cookie": f"burrow_session={alice['cookie']}", "X-Requested-With": "t"}
    assert (await api.client.post(path, headers=as_alice)).status == 403
    as_operator = {"Cookie": f"burrow_session={operator['cookie']}", "X-Requested-With": "t"}
    resp = await api.client.post(path, headers=as_operator)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["released"] == host
    assert (await api.client.post(path, headers=as_operator)).status == 404
    assert host not in await _snapshot(api)
    await api.call("POST", "/v1/domains", bob["key"], status=201, json={"domain": host})
    released = await _audit(control, "domain.release", host)
    assert [(r["org_id"], r["actor"]) for r in released] == [
        (alice["org"]["id"], operator["user"]["id"])
    ]


async def test_orgs_one_user_may_own_are_capped(api: Api) -> None:
    user = await api.signup()  # owns one already
    headers = {"Cookie": f"burrow_session={user['cookie']}", "X-Requested-With": "t"}
    for n in range(2):
        resp = await api.client.post("/v1/orgs", json={"name": f"side {n}"}, headers=headers)
        assert resp.status == 201, await resp.text()
    resp = await api.client.post("/v1/orgs", json={"name": "one too many"}, headers=headers)
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "limit"
    orgs = (await (await api.client.get("/v1/orgs", headers=headers)).json())["orgs"]
    assert len(orgs) == 3
