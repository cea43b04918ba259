"""The operator's API under /v1/admin.

The first user to sign up on a fresh installation becomes its operator, but every test in a
run shares one database, so no test can count on being first: ``operator`` signs a user up
and sets ``users.is_admin`` straight in the database through the app's ``DB``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from control.keys import DB
from tests.control.conftest import Api
from tests.control.test_tunnels_api import (
    _equals,
    edge_state,
    eventually,
    new_edge,
    report,
    tunnel,
)

ADMIN_LISTS = [
    "/v1/admin/users",
    "/v1/admin/orgs",
    "/v1/admin/domains",
    "/v1/admin/edges",
    "/v1/admin/tunnels",
]


async def operator(api: Api, control: TestClient) -> dict[str, Any]:
    user = await api.signup()
    await control.app[DB].execute(  # type: ignore[index]
        "UPDATE users SET is_admin = true WHERE id = %s", (user["user"]["id"],)
    )
    return user


async def as_user(
    api: Api, user: dict[str, Any], method: str, path: str, status: int = 200, **kw: Any
) -> Any:
    """Call with the user's console session, as the console's own pages do."""
    headers = {
        "Cookie": f"burrow_session={user['cookie']}",
        "X-Requested-With": "test",
        **kw.pop("headers", {}),
    }
    resp = await api.client.request(method, path, headers=headers, **kw)
    body = await resp.json()
    assert resp.status == status, (resp.status, body)
    return body


async def everything(api: Api, user: dict[str, Any], path: str, name: str) -> list[Any]:
    """Every row of an admin list, following ``next_after`` a few hundred at a time."""
    rows: list[Any] = []
    after = ""
    for _ in range(100):
        body = await as_user(api, user, "GET", path, params={"limit": "500", "after": after})
        rows.extend(body[name])
        if body["next_after"] is None:
            return rows
        after = body["next_after"]
    raise AssertionError(f"{path} did not end after 100 pages")


async def test_only_signed_in_operators_may_call_it(api: Api, control: TestClient) -> None:
    admin = await operator(api, control)
    someone = await api.signup()
    calls = [("GET", path) for path in [*ADMIN_LISTS, "/v1/admin/signing-keys"]] + [
        ("PATCH", f"/v1/admin/users/{someone['user']['id']}"),
        ("POST", "/v1/admin/signing-keys/rotate"),
        ("POST", "/v1/admin/signing-keys/anything/retire"),
    ]
    for method, path in calls:
        err = await as_user(api, someone, method, path, status=403, json={"disabled": True})
        assert "operator" in err["error"]["message"], path
        # An operator's own API key is still only an org's key.
        err = await api.call(method, path, admin["key"], status=403, json={"disabled": True})
        assert "API keys" in err["error"]["message"], path
        resp = await api.client.request(method, path)
        assert resp.status == 401, path
    assert (await as_user(api, someone, "GET", "/v1/me"))["user"]["id"] == someone["user"]["id"]


async def test_users_list_pages_by_id(api: Api, control: TestClient) -> None:
    admin = await operator(api, control)
    made = [await api.signup() for _ in range(3)]
    users = {u["id"]: u for u in await everything(api, admin, "/v1/admin/users", "users")}
    for user in made:
        shown = users[user["user"]["id"]]
        assert shown["email"] == user["user"]["email"]
        assert shown["org_count"] == 1 and shown["is_admin"] is False
        assert shown["disabled_at"] is None and shown["created_at"]
    assert users[admin["user"]["id"]]["is_admin"] is True
    assert "password_hash" not in users[admin["user"]["id"]]

    first = await as_user(api, admin, "GET", "/v1/admin/users", params={"limit": "2"})
    assert len(first["users"]) == 2
    second = await as_user(
        api, admin, "GET", "/v1/admin/users", params={"limit": "2", "after": first["next_after"]}
    )
    assert second["users"][0]["id"] > first["users"][1]["id"]


@pytest.mark.parametrize("path", ADMIN_LISTS)
@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "-1"},
        {"limit": "ten"},
        {"limit": "1e3"},
        {"limit": "'; DROP TABLE users; --"},
        {"after": "x" * 500},
    ],
)
async def test_bad_paging_is_refused(
    api: Api, control: TestClient, path: str, params: dict[str, str]
) -> None:
    admin = await operator(api, control)
    err = await as_user(api, admin, "GET", path, status=422, params=params)
    assert err["error"]["code"] == "invalid"


async def test_sql_in_an_after_id_is_just_text(api: Api, control: TestClient) -> None:
    admin = await operator(api, control)
    for path, name in [("/v1/admin/users", "users"), ("/v1/admin/domains", "domains")]:
        body = await as_user(api, admin, "GET", path, params={"after": "'; DROP TABLE domains; --"})
        assert isinstance(body[name], list)
    await api.call("GET", "/v1/domains", admin["key"])


async def test_disabling_a_user_signs_them_out(api: Api, control: TestClient) -> None:
    admin = await operator(api, control)
    user = await api.signup()
    path = f"/v1/admin/users/{user['user']['id']}"
    disabled = await as_user(api, admin, "PATCH", path, json={"disabled": True})
    assert disabled["disabled_at"] is not None
    await as_user(api, user, "GET", "/v1/me", status=401)
    resp = await api.client.post(
        "/v1/login", json={"email": user["user"]["email"], "password": "correct horse battery"}
    )
    assert resp.status == 401

    enabled = await as_user(api, admin, "PATCH", path, json={"disabled": False})
    assert enabled["disabled_at"] is None
    # The sessions were deleted, not only suspended: the old cookie stays signed out.
    await as_user(api, user, "GET", "/v1/me", status=401)
    promoted = await as_user(api, admin, "PATCH", path, json={"is_admin": True})
    assert promoted["is_admin"] is True


async def test_an_operator_cannot_lock_themselves_out(api: Api, control: TestClient) -> None:
    admin = await operator(api, control)
    path = f"/v1/admin/users/{admin['user']['id']}"
    for body in [{"disabled": True}, {"is_admin": False}]:
        err = await as_user(api, admin, "PATCH", path, status=409, json=body)
        assert "your own account" in err["error"]["message"]
    me = await as_user(api, admin, "PATCH", path, json={"is_admin": True, "disabled": False})
    assert me["is_admin"] is True and me["disabled_at"] is None


async def test_user_patch_input(api: Api, control: TestClient) -> None:
    admin = await operator(api, control)
    user = await api.signup()
    path = f"/v1/admin/users/{user['user']['id']}"
    await as_user(api, admin, "PATCH", path, status=422, json={"disabled": "yes"})
    await as_user(api, admin, "PATCH", path, status=422, json={"role": "owner"})
    await as_user(api, admin, "PATCH", path, status=422, json=[1])
    json_type = {"Content-Type": "application/json"}
    await as_user(api, admin, "PATCH", path, status=400, data=b"{", headers=json_type)
    await as_user(api, admin, "PATCH", path, status=413, data=b"x" * 100 * 1024, headers=json_type)
    await as_user(
        api, admin, "PATCH", "/v1/admin/users/usr_'%3B%20DROP%20TABLE%20users", status=404, json={}
    )
    await as_user(api, admin, "PATCH", path, json={})


async def test_orgs_and_domains_inventory(api: Api, control: TestClient) -> None:
    admin = await operator(api, control)
    user = await api.signup()
    await api.call("POST", "/v1/tokens", user["key"], status=201, json={})
    host = f"inv-{secrets.token_hex(4)}.example.com"
    domain = await api.call(
        "POST",
        "/v1/domains",
        user["key"],
        status=201,
        json={"domain": host, "tls_mode": "passthrough"},
    )
    orgs = {o["id"]: o for o in await everything(api, admin, "/v1/admin/orgs", "orgs")}
    org = orgs[user["org"]["id"]]
    assert (org["member_count"], org["token_count"], org["domain_count"]) == (1, 1, 1)
    assert org["name"] == user["org"]["name"]

    domains = {d["id"]: d for d in await everything(api, admin, "/v1/admin/domains", "domains")}
    shown = domains[domain["id"]]
    assert (shown["host"], shown["org_id"], shown["org_name"]) == (
        host,
        user["org"]["id"],
        user["org"]["name"],
    )
    assert shown["tls_mode"] == "passthrough" and shown["tls_status"] == "pending"
    for field in ("tls_not_after", "tls_last_checked_at", "tls_last_error", "verified_at"):
        assert shown[field] is None
    assert "verification_token" not in shown


async def test_edges_and_tunnels_across_orgs(api: Api, control: TestClient) -> None:
    admin = await operator(api, control)
    alice, bob = await api.signup(), await api.signup()
    live, gone = new_edge(), new_edge()
    tunnels = [tunnel(alice["org"]["id"]), tunnel(bob["org"]["id"])]
    await report(control, edge_state(gone, [tunnel(bob["org"]["id"])], at=time.time() - 300))
    await report(control, edge_state(live, tunnels))

    async def edges() -> dict[str, Any]:
        rows = await everything(api, admin, "/v1/admin/edges", "edges")
        return {e["id"]: e for e in rows if e["id"] in (live, gone)}

    shown = await eventually(lambda: _two(edges()))
    assert shown[live]["tunnel_count"] == 2 and shown[live]["stale"] is False
    assert shown[live]["version"] == "1.2.3" and shown[live]["stopped_at"] is None
    assert shown[gone]["stale"] is True

    async def listed() -> set[str]:
        rows = await everything(api, admin, "/v1/admin/tunnels", "tunnels")
        return {t["key"] for t in rows if t["edge_id"] in (live, gone)}

    await eventually(lambda: _equals(listed(), {t.key for t in tunnels}))


async def _two(got: Any) -> Any:
    found = await got
    return found if len(found) == 2 else None


async def test_signing_keys_rotate_and_retire(api: Api, control: TestClient) -> None:
    admin = await operator(api, control)
    before = await as_user(api, admin, "GET", "/v1/admin/signing-keys")
    assert before["signing_keys"] and "private_key" not in before["signing_keys"][0]
    made = await as_user(api, admin, "POST", "/v1/admin/signing-keys/rotate", status=201)
    assert made["kid"] and made["retired_at"] is None
    # New tokens are signed with the new key.
    token = await api.call("POST", "/v1/tokens", admin["key"], status=201, json={})
    assert token["kid"] == made["kid"]

    active = [
        k["kid"]
        for k in (await as_user(api, admin, "GET", "/v1/admin/signing-keys"))["signing_keys"]
        if k["retired_at"] is None
    ]
    for kid in active:
        if kid != made["kid"]:
            retired = await as_user(api, admin, "POST", f"/v1/admin/signing-keys/{kid}/retire")
            assert retired["retired_at"] is not None
    err = await as_user(
        api, admin, "POST", f"/v1/admin/signing-keys/{made['kid']}/retire", status=409
    )
    assert "only active key" in err["error"]["message"]
    for kid in ["no-such-key", active[0] if active[0] != made["kid"] else "x", "'; DROP --"]:
        await as_user(
            api,
            admin,
            "POST",
            f"/v1/admin/signing-keys/{kid.replace(' ', '%20')}/retire",
            status=404,
        )
    # Signing still works after all that.
    await api.call("POST", "/v1/tokens", admin["key"], status=201, json={})
