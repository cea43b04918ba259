"""Organizations and their members."""

from __future__ import annotations

import msgspec
from aiohttp import web

from control import principals
from control.api.accounts import _name
from control.bodies import read_json, to_json, to_json_status
from control.db import Queries
from control.errors import ApiError, not_found
from control.keys import CONFIG, DB
from control.openapi import describe
from control.store import accounts

routes = web.RouteTableDef()


class OrgBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class MemberBody(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    role: str = "member"


class RoleBody(msgspec.Struct, forbid_unknown_fields=True):
    role: str


def _role(text: str) -> str:
    if text not in accounts.ROLES:
        raise ApiError(422, "invalid", f"role must be one of {', '.join(accounts.ROLES)}")
    return text


async def _session_user(request: web.Request) -> principals.Principal:
    who = await principals.principal(request)
    if who.via != "session" or who.user_id is None:
        raise ApiError(403, "forbidden", "this needs a signed-in user, not an API key")
    return who


async def _locked_role(q: Queries, org_id: str, user_id: str) -> str:
    """The member's role, locked for the rest of the transaction; 404 if not a member."""
    role = await q.value(
        "SELECT role FROM memberships WHERE org_id = %s AND user_id = %s FOR UPDATE",
        (org_id, user_id),
    )
    if role is None:
        raise not_found("member")
    return str(role)


@routes.get("/v1/orgs")
@describe("Organizations the signed-in user belongs to.", auth="user")
async def list_orgs(request: web.Request) -> web.Response:
    who = await _session_user(request)
    assert who.user_id is not None
    rows = await accounts.orgs_of_user(request.app[DB], who.user_id)
    return to_json({"orgs": rows})


@routes.post("/v1/orgs")
@describe(
    "Create an organization owned by the signed-in user.", body=OrgBody, auth="user", status=201
)
async def create_org(request: web.Request) -> web.Response:
    who = await _session_user(request)
    body = await read_json(request, OrgBody)
    name = _name(body.name, "organization name")
    if not name:
        raise ApiError(422, "invalid", "the organization needs a name")
    assert who.user_id is not None
    cap = request.app[CONFIG].max_orgs_per_user
    async with request.app[DB].transaction() as q:
        # The user's row is the lock, so two concurrent creations cannot both pass the cap.
        await q.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (who.user_id,))
        owned = await q.value(
            "SELECT count(*) FROM memberships WHERE user_id = %s AND role = 'owner'",
            (who.user_id,),
        )
        if owned >= cap:
            raise ApiError(
                409,
                "limit",
                f"you own {owned} organizations, the most one user may; "
                "delete one or hand its ownership on",
            )
        org = await accounts.create_org(q, name, who.user_id)
        await accounts.audit(q, org["id"], who.actor, "org.create", org["id"])
    return to_json_status({**org, "role": "owner"}, 201)


@routes.get("/v1/members")
@describe("Members of the current organization.")
async def list_members(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    return to_json({"members": await accounts.members(request.app[DB], who.org_id)})


@routes.post("/v1/members")
@describe("Add an existing user (by email) to the organization.", body=MemberBody, status=201)
async def add_member(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    who.require("admin")
    body = await read_json(request, MemberBody)
    role = _role(body.role)
    if role == "owner":
        who.require("owner")
    db = request.app[DB]
    user = await accounts.user_by_email(db, body.email.strip()[:254])
    if user is None:
        raise ApiError(404, "not_found", "no user with that email; they must sign up first")
    async with db.transaction() as q:
        added = await q.execute(
            "INSERT INTO memberships (org_id, user_id, role) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (who.org_id, user["id"], role),
        )
        if not added:
            raise ApiError(409, "already_member", "that user is already a member")
        await accounts.audit(q, who.org_id, who.actor, "member.add", user["id"])
    return to_json_status({"user_id": user["id"], "email": user["email"], "role": role}, 201)


@routes.patch("/v1/members/{user_id}")
@describe("Change a member's role.", body=RoleBody)
async def change_role(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    who.require("admin")
    role = _role((await read_json(request, RoleBody)).role)
    user_id = request.match_info["user_id"]
    async with request.app[DB].transaction() as q:
        current = await _locked_role(q, who.org_id, user_id)
        if "owner" in (role, current):
            who.require("owner")
            if (
                current == "owner"
                and role != "owner"
                and await accounts.owner_count(q, who.org_id) <= 1
            ):
                raise ApiError(409, "last_owner", "an organization needs at least one owner")
        await q.execute(
            "UPDATE memberships SET role = %s WHERE org_id = %s AND user_id = %s",
            (role, who.org_id, user_id),
        )
        await accounts.audit(q, who.org_id, who.actor, f"member.role.{role}", user_id)
    return to_json({"user_id": user_id, "role": role})


@routes.delete("/v1/members/{user_id}")
@describe("Remove a member from the organization.")
async def remove_member(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    user_id = request.match_info["user_id"]
    if user_id != who.user_id:  # anyone may leave
        who.require("admin")
    async with request.app[DB].transaction() as q:
        current = await _locked_role(q, who.org_id, user_id)
        if current == "owner":
            if user_id != who.user_id:
                who.require("owner")
            if await accounts.owner_count(q, who.org_id) <= 1:
                raise ApiError(409, "last_owner", "an organization needs at least one owner")
        await q.execute(
            "DELETE FROM memberships WHERE org_id = %s AND user_id = %s", (who.org_id, user_id)
        )
        await accounts.audit(q, who.org_id, who.actor, "member.remove", user_id)
    return to_json({"removed": user_id})
