"""Organizations and their members.

Members join by invitation: an admin invites an email (only owners invite owners) and gets
back a one-time token to send the invitee as a link; the invitee accepts it while signed in
with that email. The answer to an invitation is the same whether or not an account with the
email exists, so inviting cannot be used to find out who has an account, and nobody is added
to an organization without accepting.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import msgspec
from aiohttp import web

from billing.plans import require_room
from control import principals
from control.api.accounts import _name, email_address
from control.bodies import read_json, to_json, to_json_status
from control.db import Queries
from control.errors import ApiError, not_found
from control.ids import new_id, new_secret
from control.keys import CONFIG, DB, OUTBOX
from control.openapi import describe
from control.store import accounts
from control.store.tokens import revoke_tokens

routes = web.RouteTableDef()


class OrgBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class MemberBody(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    role: str = "member"


class RoleBody(msgspec.Struct, forbid_unknown_fields=True):
    role: str


class AcceptBody(msgspec.Struct, forbid_unknown_fields=True):
    token: str


_INVITATION_COLUMNS = "id, email, role, invited_by, created_at, expires_at, accepted_at"
NOT_INVITED = ApiError(
    404,
    "not_found",
    "no open invitation for the signed-in account with that token: it may have expired, "
    "been revoked or used, or be for another email; ask for a new one",
)


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


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
@describe(
    "Invite someone by email; the response holds a one-time token to send them as a link. "
    "The answer is the same whether or not they have an account yet.",
    body=MemberBody,
    status=201,
)
async def invite_member(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    who.require("admin")
    body = await read_json(request, MemberBody)
    role = _role(body.role)
    if role == "owner":
        who.require("owner")
    email = email_address(body.email)
    token = new_secret()
    expires = datetime.now(UTC) + timedelta(days=request.app[CONFIG].invitation_days)
    async with request.app[DB].transaction() as q:
        await require_room(q, who.org_id, "seats")  # members and open invitations: 402
        row = await q.one(
            f"INSERT INTO invitations (id, org_id, email, role, token_hash, invited_by,"
            f" expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_INVITATION_COLUMNS}",
            (new_id("inv"), who.org_id, email, role, _token_hash(token), who.actor, expires),
        )
        assert row is not None
        await accounts.audit(q, who.org_id, who.actor, "member.invite", row["id"])
    return to_json_status(
        {
            **row,
            "token": token,
            "accept": "the invitee signs in (or signs up) with this email, then sends "
            'POST /v1/invitations/accept {"token": "..."}',
        },
        201,
    )


@routes.get("/v1/invitations")
@describe("Open invitations of the organization (never their tokens).")
async def list_invitations(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    who.require("admin")
    rows = await request.app[DB].all(
        f"SELECT {_INVITATION_COLUMNS} FROM invitations WHERE org_id = %s"
        " AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()"
        " ORDER BY created_at, id",
        (who.org_id,),
    )
    return to_json({"invitations": rows})


@routes.delete("/v1/invitations/{invitation_id}")
@describe("Revoke an open invitation; its token stops working.")
async def revoke_invitation(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    who.require("admin")
    async with request.app[DB].transaction() as q:
        row = await q.one(
            f"UPDATE invitations SET revoked_at = now() WHERE id = %s AND org_id = %s"
            f" AND accepted_at IS NULL AND revoked_at IS NULL RETURNING {_INVITATION_COLUMNS}",
            (request.match_info["invitation_id"][:64], who.org_id),
        )
        if row is None:
            raise not_found("open invitation")
        await accounts.audit(q, who.org_id, who.actor, "member.invite.revoke", row["id"])
    return to_json(row)


@routes.post("/v1/invitations/accept")
@describe(
    "Accept an invitation: join its organization with its role. Needs a console session "
    "signed in with the invited email.",
    body=AcceptBody,
    auth="user",
)
async def accept_invitation(request: web.Request) -> web.Response:
    who = await _session_user(request)
    body = await read_json(request, AcceptBody)
    assert who.user_id is not None
    db = request.app[DB]
    user = await accounts.user_by_id(db, who.user_id)
    if user is None or not body.token or len(body.token) > 200:
        raise NOT_INVITED
    async with db.transaction() as q:
        invitation = await q.one(
            "SELECT id, org_id, role FROM invitations WHERE token_hash = %s"
            " AND lower(email) = lower(%s) AND accepted_at IS NULL AND revoked_at IS NULL"
            " AND expires_at > now() FOR UPDATE",
            (_token_hash(body.token), user["email"]),
        )
        if invitation is None:
            raise NOT_INVITED
        added = await q.execute(
            "INSERT INTO memberships (org_id, user_id, role) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (invitation["org_id"], who.user_id, invitation["role"]),
        )
        if not added:
            raise ApiError(409, "already_member", "you are already a member of that organization")
        await q.execute(
            "UPDATE invitations SET accepted_at = now(), accepted_by = %s WHERE id = %s",
            (who.user_id, invitation["id"]),
        )
        await accounts.audit(q, invitation["org_id"], who.actor, "member.join", who.user_id)
        org = await q.one("SELECT id, name FROM orgs WHERE id = %s", (invitation["org_id"],))
    assert org is not None
    return to_json({"org": {**org, "role": invitation["role"]}, "user_id": who.user_id})


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
    outbox = request.app[OUTBOX]
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
        # The agent tokens they made in this org go with them, and so do their tunnels.
        revoked = await revoke_tokens(q, outbox, org_id=who.org_id, created_by=user_id)
        await accounts.audit(q, who.org_id, who.actor, "member.remove", user_id)
    outbox.changed()
    return to_json({"removed": user_id, "revoked_tokens": revoked})
