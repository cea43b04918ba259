"""Agent authtokens: issue (the token text is shown once), list, revoke."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from billing.plans import require_room
from bus.events import TokenRevoked
from contracts.basic_auth import hash_basic_password
from contracts.token_format import TokenClaims, encode_claims, installation_name
from control import principals
from control.api.accounts import _name
from control.bodies import read_json, to_json, to_json_status
from control.config import ControlConfig
from control.db import Queries, Row, json_param
from control.errors import ApiError, not_found
from control.ids import new_id
from control.keys import CONFIG, DB, OUTBOX, SIGNING
from control.openapi import describe
from control.principals import Principal
from control.routing_outbox import revocation
from control.store.accounts import audit
from control.throttle import THROTTLE
from control.token_signing import issue_token

routes = web.RouteTableDef()


class TokenBody(msgspec.Struct, forbid_unknown_fields=True):
    description: str = ""
    # Days until the token expires; 0: the installation's default (which may be never).
    expires_in_days: int = 0
    hosts: list[str] = []
    protocols: list[str] = msgspec.field(default_factory=lambda: ["http", "tcp", "tls"])
    tls: dict[str, str] = {}
    # "user:password" pairs visitors must give; stored in the token only as salted hashes.
    basic_auth: list[str] = []
    ip_allow: list[str] = []
    ip_deny: list[str] = []


_COLUMNS = "id, description, kid, claims, created_by, created_at, expires_at, revoked_at"


def _public(row: Row) -> dict[str, object]:
    claims = dict(row["claims"])
    # The hashes are not secret, but they are noise for a reader; say how many there are.
    claims["basic_auth"] = [entry.split(":", 1)[0] for entry in claims.get("basic_auth", [])]
    return {**row, "claims": claims}


def _claims(body: TokenBody, org_id: str, token_id: str, default_days: int) -> TokenClaims:
    if not 0 <= body.expires_in_days <= 3650:
        raise ApiError(422, "invalid", "expires_in_days must be between 0 and 3650")
    if len(body.basic_auth) > 8:
        raise ApiError(422, "invalid", "at most 8 basic-auth credentials per token")
    credentials = []
    for pair in body.basic_auth:
        user, sep, password = pair.partition(":")
        if not sep or not user or len(password) < 8 or len(pair) > 256:
            raise ApiError(
                422, "invalid", "basic_auth entries are 'user:password' with 8+ character passwords"
            )
        credentials.append(hash_basic_password(user, password))
    now = int(time.time())
    days = body.expires_in_days or default_days
    try:
        claims = TokenClaims(
            org=org_id,
            tid=token_id,
            iat=now,
            exp=now + days * 86400 if days else 0,
            hosts=[h.strip().lower() for h in body.hosts],
            protocols=body.protocols,
            tls={k.strip().lower(): v for k, v in body.tls.items()},
            basic_auth=credentials,
            ip_allow=body.ip_allow,
            ip_deny=body.ip_deny,
        )
        # The constructor runs the cross-field checks; a decode also applies the per-field
        # limits, exactly as the edge will when it reads the token.
        return msgspec.msgpack.decode(encode_claims(claims), type=TokenClaims)
    except (ValueError, TypeError, msgspec.ValidationError) as exc:
        raise ApiError(422, "invalid", str(exc)) from exc


def agent_hostname(config: ControlConfig) -> str:
    """The host part of the configured agent server ("" when none is set)."""
    server = config.agent_server
    host = server.rsplit(":", 1)[0] if server.count(":") == 1 else server
    return host.strip().lower().rstrip(".")


def host_refusal(host: str, base: str, agent_host: str, names: set[str], domains: set[str]) -> str:
    """Why the org with reserved ``names`` and custom ``domains`` may not put ``host`` in a
    token, or "": the rule the edge applies at bind (``edge.routing.ownership``), told up front."""
    if installation_name(host, base, agent_host):
        return "it is a name this Burrow installation uses itself"
    bare = host[2:] if host.startswith("*.") else host
    suffix = "." + base
    if bare.endswith(suffix):
        top = bare[: -len(suffix)].rsplit(".", 1)[-1]
        if f"{top}{suffix}" in names:
            return ""
        return f"{top}{suffix} is not a name your organization has reserved; reserve {top} first"
    if host in domains:
        return ""
    if any(d.startswith("*.") and host.endswith(d[1:]) for d in domains):
        return ""
    return "it is not a domain of your organization; add it (and verify it) first"


async def check_hosts(q: Queries, org_id: str, hosts: list[str], config: ControlConfig) -> None:
    """422 naming the first host in ``hosts`` the org does not own."""
    if not hosts:
        return
    names = {
        r["host"]
        for r in await q.all("SELECT host FROM reserved_names WHERE org_id = %s", (org_id,))
    }
    domains = {
        r["host"] for r in await q.all("SELECT host FROM domains WHERE org_id = %s", (org_id,))
    }
    base = config.base_domain.lower().rstrip(".")
    agent_host = agent_hostname(config)
    for host in hosts:
        why = host_refusal(host, base, agent_host, names, domains)
        if why:
            raise ApiError(422, "not_owned", f"hosts: {host[:253]!r} cannot be bound: {why}")


@routes.post("/v1/tokens")
@describe(
    "Create an agent authtoken; the response holds the token, shown this once.",
    body=TokenBody,
    status=201,
)
async def create_token(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    body = await read_json(request, TokenBody)
    await request.app[THROTTLE].hit("credentials.org", who.org_id)
    config = request.app[CONFIG]
    token_id = new_id("tok")
    claims = _claims(body, who.org_id, token_id, config.default_token_days)
    key = await request.app[SIGNING].current()
    text = issue_token(claims, key)
    expires = datetime.fromtimestamp(claims.exp, UTC) if claims.exp else None
    async with request.app[DB].transaction() as q:
        await check_hosts(q, who.org_id, claims.hosts, config)
        await require_room(q, who.org_id, "tokens")  # the plan's limit: 402
        row = await q.one(
            f"INSERT INTO agent_tokens (id, org_id, created_by, description, kid, claims,"
            f" expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (
                token_id,
                who.org_id,
                who.user_id,
                _name(body.description, "description"),
                key.kid,
                json_param(msgspec.to_builtins(claims)),
                expires,
            ),
        )
        await audit(q, who.org_id, who.actor, "token.create", token_id)
    assert row is not None
    command = f"burrow config add-authtoken {text}"
    extra: dict[str, str] = {"command": command}
    if config.agent_server:
        extra["agent_server"] = config.agent_server
        extra["run"] = f"burrow http 3000 --server {config.agent_server}"
    return to_json_status({**_public(row), "token": text, **extra}, 201)


@routes.get("/v1/tokens")
@describe("Agent authtokens of the organization (never the token text).")
async def list_tokens(request: web.Request) -> web.Response:
    return to_json(await listed(request.app, await principals.principal(request)))


async def listed(app: web.Application, who: Principal) -> dict[str, Any]:
    """The org's agent tokens, revoked ones too (never their text)."""
    rows = await app[DB].all(
        f"SELECT {_COLUMNS} FROM agent_tokens WHERE org_id = %s ORDER BY created_at, id",
        (who.org_id,),
    )
    return {"tokens": [_public(r) for r in rows]}


@routes.get("/v1/tokens/{token_id}")
@describe("One agent authtoken.")
async def get_token(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    row = await request.app[DB].one(
        f"SELECT {_COLUMNS} FROM agent_tokens WHERE id = %s AND org_id = %s",
        (request.match_info["token_id"][:64], who.org_id),
    )
    if row is None:
        raise not_found("token")
    return to_json(_public(row))


@routes.delete("/v1/tokens/{token_id}")
@describe("Revoke an agent authtoken: every edge disconnects its agents within seconds.")
async def revoke_token(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    return to_json(await revoke(request.app, who, request.match_info["token_id"]))


async def revoke(app: web.Application, who: Principal, token_id: str) -> dict[str, Any]:
    """Revoke ``token_id`` of the caller's org (members: their own tokens only)."""
    token_id = token_id[:64]
    outbox = app[OUTBOX]
    async with app[DB].transaction() as q:
        row = await q.one(
            f"SELECT {_COLUMNS} FROM agent_tokens WHERE id = %s AND org_id = %s FOR UPDATE",
            (token_id, who.org_id),
        )
        if row is None:
            raise not_found("token")
        if row["created_by"] != who.user_id or who.via != "session":
            who.require("admin")  # members revoke their own tokens only
        if row["revoked_at"] is None:
            row = await q.one(
                f"UPDATE agent_tokens SET revoked_at = now() WHERE id = %s RETURNING {_COLUMNS}",
                (token_id,),
            )
            assert row is not None
            entry = revocation(token_id, row["expires_at"])
            await outbox.record(q, lambda seq: TokenRevoked(seq=seq, revocation=entry))
            await audit(q, who.org_id, who.actor, "token.revoke", token_id)
    outbox.changed()
    return _public(row)
