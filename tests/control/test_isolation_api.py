"""What control refuses so one organization cannot act on another's names, hosts, tunnels
or agents: token host claims, reservations of names in use, member removal, operators'
suspensions and reassignments."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bus.events import EdgeState, EdgeStopped, LiveTunnel, RoutingSnapshot, snapshot_decoder
from control.edge_reports import apply_report
from control.keys import DB
from edge.link.auth import AuthError
from edge.link.token_auth import SignedTokens
from tests.control.conftest import Api
from tests.control.test_admin_api import as_user, operator

EDGE = {"Authorization": "Bearer edge-key-1"}


async def snapshot(api: Api) -> RoutingSnapshot:
    resp = await api.client.get("/v1/edge/routing", headers=EDGE)
    assert resp.status == 200
    return snapshot_decoder.decode(await resp.read())


async def refusal(api: Api, token: str) -> str:
    """Why an edge holding the current snapshot refuses ``token`` ("" if it accepts it)."""
    snap = await snapshot(api)
    tokens = SignedTokens(snap.keys)
    tokens.set_revocations(snap.revoked)
    tokens.set_suspended(getattr(snap, "suspended", []))
    try:
        tokens.authenticate(token)
    except AuthError as exc:
        return str(exc)
    return ""


def token_body(*hosts: str) -> dict[str, Any]:
    return {"hosts": list(hosts)}


async def reserve(api: Api, user: dict[str, Any], name: str) -> dict[str, Any]:
    made: dict[str, Any] = await api.call(
        "POST", "/v1/names", user["key"], status=201, json={"name": name}
    )
    return made


# -- 1: token host claims are checked against ownership at creation ------------------------


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("*.com", "not a domain of your organization"),
        ("shop.example.net", "not a domain of your organization"),
        ("*.tunnels.test", "uses itself"),
        ("edge.tunnels.test", "uses itself"),
        ("x.api.tunnels.test", "uses itself"),
        ("{other}.tunnels.test", "not a name your organization has reserved"),
        ("x.{other}.tunnels.test", "not a name your organization has reserved"),
        ("*.{other}.tunnels.test", "not a name your organization has reserved"),
    ],
)
async def test_a_token_may_not_claim_hosts_its_org_does_not_own(
    api: Api, host: str, says: str
) -> None:
    other = await api.signup()
    name = "n" + secrets.token_hex(4)
    await reserve(api, other, name)
    user = await api.signup()
    host = host.format(other=name)
    err = await api.call("POST", "/v1/tokens", user["key"], status=422, json=token_body(host))
    assert err["error"]["code"] == "not_owned"
    assert repr(host) in err["error"]["message"] and says in err["error"]["message"]
    assert (await api.call("GET", "/v1/tokens", user["key"]))["tokens"] == []


async def test_a_token_may_claim_its_orgs_names_and_domains(api: Api) -> None:
    user = await api.signup()
    name = "n" + secrets.token_hex(4)
    await reserve(api, user, name)
    domain = f"d{secrets.token_hex(4)}.example.org"
    for host in (domain, f"*.{domain}"):
        await api.call("POST", "/v1/domains", user["key"], status=201, json={"domain": host})
    hosts = [
        f"{name}.tunnels.test",
        f"x.{name}.tunnels.test",
        f"*.{name}.tunnels.test",
        domain,
        f"*.{domain}",
        f"a.{domain}",
    ]
    made = await api.call("POST", "/v1/tokens", user["key"], status=201, json=token_body(*hosts))
    assert made["claims"]["hosts"] == hosts


async def test_the_installations_names_cannot_be_reserved(api: Api) -> None:
    user = await api.signup()
    for name in ("edge", "api", "www", "console", "admin"):
        err = await api.call("POST", "/v1/names", user["key"], status=422, json={"name": name})
        assert err["error"]["code"] == "reserved"
        assert "uses itself" in err["error"]["message"]


# -- 2: a name another account is using is not theirs to reserve ---------------------------


async def serving(control: TestClient, org_id: str, host: str) -> str:
    """An edge reports a live tunnel of ``org_id`` on ``host``; the edge's id."""
    edge_id = "edge-" + secrets.token_hex(4)
    tunnel = LiveTunnel(
        key=f"s-{edge_id}/1",
        org=org_id,
        token_id="tok-x",
        protocol="http",
        url=f"http://{host}",
        hostname=host,
        started=time.time(),
    )
    report = EdgeState(edge_id=edge_id, at=time.time(), started=time.time(), tunnels=[tunnel])
    async with control.app[DB].transaction() as q:  # type: ignore[index]
        await apply_report(q, report)
    return edge_id


async def test_a_name_in_use_by_another_account_cannot_be_reserved(
    api: Api, control: TestClient
) -> None:
    alice = await api.signup()
    newcomer = await api.signup()
    name = "demo-" + secrets.token_hex(3)
    await serving(control, alice["org"]["id"], f"{name}.tunnels.test")
    err = await api.call("POST", "/v1/names", newcomer["key"], status=409, json={"name": name})
    assert err["error"]["code"] == "in_use"
    assert "in use by another account's tunnel" in err["error"]["message"]
    assert f"{name}.tunnels.test" not in {c.host for c in (await snapshot(api)).names}
    # The account using it may reserve it.
    await reserve(api, alice, name)


async def test_a_name_held_for_the_account_that_just_used_it_cannot_be_reserved(
    api: Api, control: TestClient
) -> None:
    alice = await api.signup()
    newcomer = await api.signup()
    name = "held-" + secrets.token_hex(3)
    edge_id = await serving(control, alice["org"]["id"], f"{name}.tunnels.test")
    async with control.app[DB].transaction() as q:  # type: ignore[index]
        await apply_report(q, EdgeStopped(edge_id=edge_id, at=time.time()))
    err = await api.call("POST", "/v1/names", newcomer["key"], status=409, json={"name": name})
    assert err["error"]["code"] == "held"
    assert "held for the account that used it until" in err["error"]["message"]
    await reserve(api, alice, name)


async def test_an_operator_can_reassign_a_name(api: Api, control: TestClient) -> None:
    admin = await operator(api, control)
    alice = await api.signup()
    bob = await api.signup()
    name = "brand-" + secrets.token_hex(3)
    await reserve(api, alice, name)
    made = await as_user(
        api,
        admin,
        "POST",
        "/v1/admin/names",
        status=201,
        json={"name": name, "org_id": bob["org"]["id"]},
    )
    assert made["org_id"] == bob["org"]["id"]
    names = {c.host: c.org for c in (await snapshot(api)).names}
    assert names[f"{name}.tunnels.test"] == bob["org"]["id"]
    assert (await api.call("GET", "/v1/names", alice["key"]))["names"] == []
    await as_user(
        api,
        alice,
        "POST",
        "/v1/admin/names",
        status=403,
        json={"name": name, "org_id": alice["org"]["id"]},
    )


# -- 3: tokens do not outlive their user; operators suspend orgs ---------------------------


async def test_a_removed_members_tokens_are_revoked(api: Api, control: TestClient) -> None:
    owner = await api.signup()
    member = await api.signup()
    org_id = owner["org"]["id"]
    await control.app[DB].execute(  # type: ignore[index]
        "INSERT INTO memberships (org_id, user_id, role) VALUES (%s, %s, 'member')",
        (org_id, member["user"]["id"]),
    )
    theirs = await as_user(
        api, member, "POST", "/v1/tokens", status=201, json={}, headers={"Burrow-Org": org_id}
    )
    ours = await api.call("POST", "/v1/tokens", owner["key"], status=201, json={})
    assert await refusal(api, theirs["token"]) == ""
    removed = await api.call("DELETE", f"/v1/members/{member['user']['id']}", owner["key"])
    assert removed["revoked_tokens"] == [theirs["id"]]
    assert "revoked" in await refusal(api, theirs["token"])
    assert await refusal(api, ours["token"]) == ""


async def test_a_disabled_users_tokens_are_revoked(api: Api, control: TestClient) -> None:
    admin = await operator(api, control)
    user = await api.signup()
    made = await as_user(api, user, "POST", "/v1/tokens", status=201, json={})
    await as_user(
        api, admin, "PATCH", f"/v1/admin/users/{user['user']['id']}", json={"disabled": True}
    )
    assert "revoked" in await refusal(api, made["token"])


async def test_an_operator_revokes_every_token_of_an_org(api: Api, control: TestClient) -> None:
    admin = await operator(api, control)
    user = await api.signup()
    made = [await api.call("POST", "/v1/tokens", user["key"], status=201, json={}) for _ in "ab"]
    org_id = user["org"]["id"]
    done = await as_user(api, admin, "POST", f"/v1/admin/orgs/{org_id}/revoke-tokens")
    assert sorted(done["revoked"]) == sorted(t["id"] for t in made)
    for token in made:
        assert "revoked" in await refusal(api, token["token"])
    await api.call("POST", f"/v1/admin/orgs/{org_id}/revoke-tokens", user["key"], status=403)


async def test_an_operator_suspends_and_restores_an_org(api: Api, control: TestClient) -> None:
    admin = await operator(api, control)
    user = await api.signup()
    made = await api.call("POST", "/v1/tokens", user["key"], status=201, json={})
    org_id = user["org"]["id"]
    row = await as_user(api, admin, "PATCH", f"/v1/admin/orgs/{org_id}", json={"suspended": True})
    assert row["suspended_at"]
    assert org_id in (await snapshot(api)).suspended
    assert "suspended" in await refusal(api, made["token"])
    await as_user(api, admin, "PATCH", f"/v1/admin/orgs/{org_id}", json={"suspended": False})
    assert org_id not in (await snapshot(api)).suspended
    assert await refusal(api, made["token"]) == ""
    await as_user(
        api, admin, "PATCH", "/v1/admin/orgs/org-nope", status=404, json={"suspended": True}
    )


async def test_an_operator_sets_an_orgs_quotas(api: Api, control: TestClient) -> None:
    admin = await operator(api, control)
    user = await api.signup()
    org_id = user["org"]["id"]
    await as_user(
        api,
        admin,
        "PATCH",
        f"/v1/admin/orgs/{org_id}",
        json={"limits": {"tunnels": 3, "tcp_ports": 1}},
    )
    limits = {entry.org: entry for entry in (await snapshot(api)).limits}
    assert (limits[org_id].tunnels, limits[org_id].links, limits[org_id].tcp_ports) == (3, 0, 1)
    err = await as_user(
        api,
        admin,
        "PATCH",
        f"/v1/admin/orgs/{org_id}",
        status=422,
        json={"limits": {"tunnels": -1}},
    )
    assert "tunnels" in err["error"]["message"]
