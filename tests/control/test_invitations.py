"""Members join by invitation, never by being added: the inviter learns nothing about
whether an account exists, the invitee accepts while signed in with the invited email,
and only owners invite owners. Signup answers alike for new and existing emails."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import ClientResponse

from control.keys import DB
from tests.control.conftest import PASSWORD, Api


def _session(user: dict[str, Any]) -> dict[str, str]:
    return {"Cookie": f"burrow_session={user['cookie']}", "X-Requested-With": "t"}


async def _invite(api: Api, key: str, email: str, role: str = "member") -> dict[str, Any]:
    body: dict[str, Any] = await api.call(
        "POST", "/v1/members", key, status=201, json={"email": email, "role": role}
    )
    return body


async def _accept(api: Api, user: dict[str, Any], token: str) -> ClientResponse:
    resp = await api.client.post(
        "/v1/invitations/accept", json={"token": token}, headers=_session(user)
    )
    api.client.session.cookie_jar.clear()
    return resp


def _shape(answer: dict[str, Any]) -> dict[str, Any]:
    """What an answer says apart from the values that differ for any two invitations."""
    varying = {"id", "email", "token", "created_at", "expires_at"}
    return {k: (type(v).__name__ if k in varying else v) for k, v in answer.items()}


async def test_inviting_says_nothing_about_whether_an_account_exists(api: Api) -> None:
    owner, existing = await api.signup(), await api.signup()
    nobody = f"nobody-{secrets.token_hex(4)}@example.com"
    to_existing = await _invite(api, owner["key"], existing["user"]["email"])
    to_nobody = await _invite(api, owner["key"], nobody)
    assert _shape(to_existing) == _shape(to_nobody)
    # Nobody joined by being invited.
    members = await api.call("GET", "/v1/members", owner["key"])
    assert [m["user_id"] for m in members["members"]] == [owner["user"]["id"]]
    pending = await api.call("GET", "/v1/invitations", owner["key"])
    assert {i["email"] for i in pending["invitations"]} == {existing["user"]["email"], nobody}
    assert all("token" not in i for i in pending["invitations"])


async def test_only_the_invited_email_signed_in_can_accept(api: Api) -> None:
    owner, invitee, other = await api.signup(), await api.signup(), await api.signup()
    invitation = await _invite(api, owner["key"], invitee["user"]["email"].upper(), "admin")
    token = invitation["token"]
    assert (await _accept(api, other, token)).status == 404  # another account
    resp = await api.client.post(  # an API key is not a person who can accept
        "/v1/invitations/accept", json={"token": token}, headers=api.bearer(invitee["key"])
    )
    assert resp.status == 403
    assert (await _accept(api, invitee, "not-" + token)).status == 404
    resp = await _accept(api, invitee, token)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["org"] == {
        "id": owner["org"]["id"],
        "name": owner["org"]["name"],
        "role": "admin",
    }
    members = await api.call("GET", "/v1/members", owner["key"])
    assert {(m["user_id"], m["role"]) for m in members["members"]} == {
        (owner["user"]["id"], "owner"),
        (invitee["user"]["id"], "admin"),
    }
    assert (await _accept(api, invitee, token)).status == 404  # used
    assert (await api.call("GET", "/v1/invitations", owner["key"]))["invitations"] == []


async def test_someone_without_an_account_signs_up_then_accepts(api: Api) -> None:
    owner = await api.signup()
    email = f"later-{secrets.token_hex(4)}@example.com"
    invitation = await _invite(api, owner["key"], email)
    newcomer = await api.signup(email)
    assert (await _accept(api, newcomer, invitation["token"])).status == 200
    orgs = (await (await api.client.get("/v1/orgs", headers=_session(newcomer))).json())["orgs"]
    assert {o["id"] for o in orgs} == {newcomer["org"]["id"], owner["org"]["id"]}


async def test_only_owners_invite_owners(api: Api) -> None:
    owner, admin = await api.signup(), await api.signup()
    email = f"x-{secrets.token_hex(4)}@example.com"
    # An API key acts with the admin role at most.
    err = await api.call(
        "POST", "/v1/members", owner["key"], status=403, json={"email": email, "role": "owner"}
    )
    assert "owner role" in err["error"]["message"]
    invitation = await _invite(api, owner["key"], admin["user"]["email"], "admin")
    assert (await _accept(api, admin, invitation["token"])).status == 200
    headers = {**_session(admin), "Burrow-Org": owner["org"]["id"]}
    resp = await api.client.post(
        "/v1/members", json={"email": email, "role": "owner"}, headers=headers
    )
    assert resp.status == 403
    resp = await api.client.post(
        "/v1/members", json={"email": email, "role": "admin"}, headers=headers
    )
    assert resp.status == 201
    resp = await api.client.post(
        "/v1/members", json={"email": email, "role": "owner"}, headers=_session(owner)
    )
    assert resp.status == 201
    api.client.session.cookie_jar.clear()


async def test_revoked_and_expired_invitations_cannot_be_accepted(api: Api) -> None:
    owner, invitee = await api.signup(), await api.signup()
    revoked = await _invite(api, owner["key"], invitee["user"]["email"])
    await api.call("DELETE", f"/v1/invitations/{revoked['id']}", owner["key"])
    await api.call("DELETE", f"/v1/invitations/{revoked['id']}", owner["key"], status=404)
    assert (await _accept(api, invitee, revoked["token"])).status == 404
    expired = await _invite(api, owner["key"], invitee["user"]["email"])
    await api.client.app[DB].execute(  # type: ignore[index]
        "UPDATE invitations SET expires_at = now() - interval '1 second' WHERE id = %s",
        (expired["id"],),
    )
    assert (await _accept(api, invitee, expired["token"])).status == 404
    members = await api.call("GET", "/v1/members", owner["key"])
    assert len(members["members"]) == 1


async def test_signup_answers_alike_whether_or_not_the_email_exists(api: Api) -> None:
    taken = (await api.signup())["user"]["email"]
    fresh = f"fresh-{secrets.token_hex(4)}@example.com"
    answers = []
    for email in (taken, fresh):
        resp = await api.client.post("/v1/signup", json={"email": email, "password": PASSWORD})
        body = await resp.json()
        answers.append(
            (resp.status, sorted(resp.headers.keys() - {"Date", "Content-Length"}), body["message"])
        )
        assert body["email"] == email
    assert answers[0] == answers[1]
    assert answers[0][0] == 202
    assert "Set-Cookie" not in answers[0][1]
