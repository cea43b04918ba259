"""API keys: created by org admins, shown once, revocable."""

from __future__ import annotations

import msgspec
from aiohttp import web

from control import principals
from control.api.accounts import _name
from control.bodies import read_json, to_json, to_json_status
from control.errors import ApiError, not_found
from control.keys import DB
from control.openapi import describe
from control.store import accounts
from control.throttle import THROTTLE

routes = web.RouteTableDef()


class ApiKeyBody(msgspec.Struct, forbid_unknown_fields=True):
    description: str = ""
    role: str = "admin"


@routes.get("/v1/api-keys")
@describe("API keys of the organization (never their secrets).")
async def list_keys(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    who.require("admin")
    return to_json({"api_keys": await accounts.list_api_keys(request.app[DB], who.org_id)})


@routes.post("/v1/api-keys")
@describe(
    "Create an API key; the response holds its secret, shown this once.",
    body=ApiKeyBody,
    status=201,
)
async def create_key(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    who.require("admin")
    body = await read_json(request, ApiKeyBody)
    if body.role not in ("admin", "member"):
        raise ApiError(422, "invalid", "an API key's role is admin or member")
    await request.app[THROTTLE].hit("credentials.org", who.org_id)
    row, secret = await accounts.create_api_key(
        request.app[DB], who.org_id, who.user_id, body.role, _name(body.description, "description")
    )
    await accounts.audit(request.app[DB], who.org_id, who.actor, "api_key.create", row["id"])
    return to_json_status({**row, "key": secret}, 201)


@routes.delete("/v1/api-keys/{key_id}")
@describe("Revoke an API key; requests with it fail from now on.")
async def revoke_key(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    who.require("admin")
    row = await accounts.revoke_api_key(
        request.app[DB], who.org_id, request.match_info["key_id"][:64]
    )
    if row is None:
        raise not_found("API key")
    await accounts.audit(request.app[DB], who.org_id, who.actor, "api_key.revoke", row["id"])
    return to_json(row)
