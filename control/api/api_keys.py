"""API keys: created by org admins, shown once, revocable.

Each action (``keys``, ``create``, ``revoke``) is a function of the app, the caller and the
decoded body that checks the caller's role; the routes are thin wrappers around them, and
the console calls the same functions."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from control import principals
from control.api.accounts import _name
from control.bodies import read_json, to_json, to_json_status
from control.errors import ApiError, not_found
from control.keys import DB
from control.openapi import describe
from control.principals import Principal
from control.store import accounts
from control.throttle import THROTTLE

routes = web.RouteTableDef()


class ApiKeyBody(msgspec.Struct, forbid_unknown_fields=True):
    description: str = ""
    role: str = "admin"


@routes.get("/v1/api-keys")
@describe("API keys of the organization (never their secrets).")
async def list_keys(request: web.Request) -> web.Response:
    return to_json(await keys(request.app, await principals.principal(request)))


async def keys(app: web.Application, who: Principal) -> dict[str, Any]:
    who.require("admin")
    return {"api_keys": await accounts.list_api_keys(app[DB], who.org_id)}


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
    return to_json_status(await create(request.app, who, body), 201)


async def create(app: web.Application, who: Principal, body: ApiKeyBody) -> dict[str, Any]:
    """A new key; the answer holds its secret under "key", shown this once."""
    who.require("admin")
    if body.role not in ("admin", "member"):
        raise ApiError(422, "invalid", "an API key's role is admin or member")
    await app[THROTTLE].hit("credentials.org", who.org_id)
    row, secret = await accounts.create_api_key(
        app[DB], who.org_id, who.user_id, body.role, _name(body.description, "description")
    )
    await accounts.audit(app[DB], who.org_id, who.actor, "api_key.create", row["id"])
    return {**row, "key": secret}


@routes.delete("/v1/api-keys/{key_id}")
@describe("Revoke an API key; requests with it fail from now on.")
async def revoke_key(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    return to_json(await revoke(request.app, who, request.match_info["key_id"]))


async def revoke(app: web.Application, who: Principal, key_id: str) -> dict[str, Any]:
    who.require("admin")
    row = await accounts.revoke_api_key(app[DB], who.org_id, key_id[:64])
    if row is None:
        raise not_found("API key")
    await accounts.audit(app[DB], who.org_id, who.actor, "api_key.revoke", row["id"])
    return dict(row)
