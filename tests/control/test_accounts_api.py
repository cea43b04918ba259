from __future__ import annotations

from typing import Any

from tests.control.conftest import PASSWORD, Api


async def join(api: Api, inviter_key: str, invitee: dict[str, Any], role: str) -> dict[str, Any]:
    """``invitee`` joins the inviter's org: invited by email, accepted with their session."""
    invitation = await api.call(
        "POST",
        "/v1/members",
        inviter_key,
        status=201,
        json={"email": invitee["user"]["email"], "role": role},
    )
    resp = await api.client.post(
        "/v1/invitations/accept",
        json={"token": invitation["token"]},
        headers={"Cookie": f"burrow_session={invitee['cookie']}", "X-Requested-With": "t"},
    )
    assert resp.status == 200, await resp.text()
    api.client.session.cookie_jar.clear()
    return {"user_id": invitee["user"]["id"], **(await resp.json())}


async def test_signup_login_me_and_logout(api: Api) -> None:
    client = api.client
    resp = await client.post(
        "/v1/signup", json={"email": "Ada@Example.com", "password": PASSWORD, "name": "Ada"}
    )
    assert resp.status == 202
    assert "burrow_session" not in resp.cookies  # signing in is the next step
    client.session.cookie_jar.clear()

    resp = await client.post(
        "/v1/login", json={"email": "ada@example.com", "password": "nope-nope-nope"}
    )
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "bad_credentials"

    resp = await client.post("/v1/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert resp.status == 200
    me = await (await client.get("/v1/me")).json()
    assert me["user"]["email"] == "Ada@Example.com"
    assert [o["role"] for o in me["orgs"]] == ["owner"]

    resp = await client.post("/v1/logout", headers={"X-Requested-With": "t"})
    assert resp.status == 200
    assert (await client.get("/v1/me")).status == 401


async def test_duplicate_email_is_refused_case_insensitively(api: Api) -> None:
    # The answer does not say the email is taken (that would tell anyone who asks), and
    # the existing account is left exactly as it was.
    await api.signup("dup@example.com")
    resp = await api.client.post(
        "/v1/signup", json={"email": "DUP@example.com", "password": PASSWORD + " other"}
    )
    assert resp.status == 202
    assert "burrow_session" not in resp.cookies
    login = {"email": "dup@example.com", "password": PASSWORD + " other"}
    assert (await api.client.post("/v1/login", json=login)).status == 401
    login["password"] = PASSWORD
    assert (await api.client.post("/v1/login", json=login)).status == 200


async def test_weak_password_and_bad_email(api: Api) -> None:
    resp = await api.client.post("/v1/signup", json={"email": "a@example.com", "password": "short"})
    assert resp.status == 422
    assert "at least" in (await resp.json())["error"]["message"]
    resp = await api.client.post("/v1/signup", json={"email": "not-an-email", "password": PASSWORD})
    assert resp.status == 422


async def test_cookie_session_needs_same_site_marker_for_writes(api: Api) -> None:
    user = await api.signup()
    cookie = {"Cookie": f"burrow_session={user['cookie']}"}
    resp = await api.client.post("/v1/api-keys", json={}, headers=cookie)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "csrf"
    resp = await api.client.post(
        "/v1/api-keys", json={}, headers={**cookie, "Sec-Fetch-Site": "same-origin"}
    )
    assert resp.status == 201


async def test_api_keys_are_shown_once_and_revocable(api: Api) -> None:
    user = await api.signup()
    keys = await api.call("GET", "/v1/api-keys", user["key"])
    assert len(keys["api_keys"]) == 1
    assert "key" not in keys["api_keys"][0]
    assert all(user["key"] not in str(v) for v in keys["api_keys"][0].values())
    created = await api.call(
        "POST", "/v1/api-keys", user["key"], status=201, json={"role": "member"}
    )
    await api.call("DELETE", f"/v1/api-keys/{created['id']}", user["key"])
    resp = await api.client.get("/v1/me", headers=api.bearer(created["key"]))
    assert resp.status == 401
    assert "revoked" in (await resp.json())["error"]["message"]


async def test_member_keys_cannot_manage_keys(api: Api) -> None:
    user = await api.signup()
    member = await api.call(
        "POST", "/v1/api-keys", user["key"], status=201, json={"role": "member"}
    )
    err = await api.call("POST", "/v1/api-keys", member["key"], status=403, json={})
    assert "admin role" in err["error"]["message"]


async def test_members_roles_and_last_owner(api: Api) -> None:
    owner = await api.signup()
    other = await api.signup()
    added = await join(api, owner["key"], other, "admin")
    members = await api.call("GET", "/v1/members", owner["key"])
    assert {m["role"] for m in members["members"]} == {"owner", "admin"}
    # An API key acts with admin rights: it may not make owners or demote the last owner.
    await api.call(
        "PATCH", f"/v1/members/{added['user_id']}", owner["key"], status=403, json={"role": "owner"}
    )
    await api.call(
        "PATCH",
        f"/v1/members/{owner['user']['id']}",
        owner["key"],
        status=403,
        json={"role": "member"},
    )
    await api.call("DELETE", f"/v1/members/{added['user_id']}", owner["key"])
    await api.call("DELETE", f"/v1/members/{added['user_id']}", owner["key"], status=404)


async def test_api_keys_stop_working_when_their_maker_leaves(api: Api) -> None:
    owner = await api.signup()
    other = await api.signup()
    await join(api, owner["key"], other, "admin")
    # The new admin signs in, switches to the owner's org and makes a key there.
    resp = await api.client.post(
        "/v1/login", json={"email": other["user"]["email"], "password": PASSWORD}
    )
    assert resp.status == 200
    resp = await api.client.post(
        "/v1/api-keys",
        json={},
        headers={"X-Requested-With": "t", "Burrow-Org": owner["org"]["id"]},
    )
    assert resp.status == 201, await resp.text()
    made = (await resp.json())["key"]
    api.client.session.cookie_jar.clear()
    assert (await api.call("GET", "/v1/me", made))["org_id"] == owner["org"]["id"]
    await api.call("DELETE", f"/v1/members/{other['user']['id']}", owner["key"])
    resp = await api.client.get("/v1/me", headers=api.bearer(made))
    assert resp.status == 401
