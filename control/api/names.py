"""Reserved names: ``<name>.<base domain>`` held by one org, bindable by its agents only.

Each action (``reserved``, ``reserve``, ``release``) is a function of the app, the caller
and the decoded body that checks the caller's role; the routes are thin wrappers around
them, and the console calls the same functions."""

from __future__ import annotations

import functools
import re
from datetime import UTC
from typing import Any

import msgspec
from aiohttp import web

from billing.plans import require_room
from bus.events import DomainRoute, DomainSet, NameClaim, NameRemoved, NameSet
from contracts.token_format import installation_name
from control import principals
from control.api import tunnels
from control.bodies import read_json, to_json, to_json_status
from control.errors import ApiError, not_found
from control.ids import new_id
from control.keys import CONFIG, DB, OUTBOX
from control.openapi import describe
from control.principals import Principal
from control.routing_outbox import domain_route
from control.store.accounts import audit

routes = web.RouteTableDef()

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
MAX_NAMES_PER_ORG = 100


class NameBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str


def _domain_set(route: DomainRoute, seq: int) -> DomainSet:
    return DomainSet(seq=seq, route=route)


def host_for(name: str, base_domain: str) -> str:
    """``app`` or ``app.<base>`` -> ``app.<base>``; 422 for anything else."""
    text = name.strip().lower().rstrip(".")
    suffix = "." + base_domain
    label = text[: -len(suffix)] if text.endswith(suffix) else text
    if not _LABEL.match(label):
        raise ApiError(
            422,
            "invalid",
            f"{name[:80]!r} is not a valid name: use 1-63 letters, digits and hyphens "
            f"(it becomes <name>.{base_domain})",
        )
    if installation_name(label + suffix, base_domain):
        raise ApiError(
            422,
            "reserved",
            f"{label + suffix} is a name this Burrow installation uses itself; pick another name",
        )
    return label + suffix


_COLUMNS = "id, host, created_at"


@routes.get("/v1/names")
@describe("Names reserved by the organization.")
async def list_names(request: web.Request) -> web.Response:
    return to_json(await reserved(request.app, await principals.principal(request)))


async def reserved(app: web.Application, who: Principal) -> dict[str, Any]:
    rows = await app[DB].all(
        f"SELECT {_COLUMNS} FROM reserved_names WHERE org_id = %s ORDER BY host", (who.org_id,)
    )
    return {"names": rows}


@routes.post("/v1/names")
@describe("Reserve a name under the base domain for the organization.", body=NameBody, status=201)
async def reserve_name(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    who.require("admin")
    body = await read_json(request, NameBody)
    return to_json_status(await reserve(request.app, who, body), 201)


async def reserve(app: web.Application, who: Principal, body: NameBody) -> dict[str, Any]:
    who.require("admin")
    config = app[CONFIG]
    host = host_for(body.name, config.base_domain)
    outbox = app[OUTBOX]
    async with app[DB].transaction() as q:
        count = await q.value(
            "SELECT count(*) FROM reserved_names WHERE org_id = %s", (who.org_id,)
        )
        if count >= MAX_NAMES_PER_ORG:
            raise ApiError(409, "limit", f"an organization may reserve {MAX_NAMES_PER_ORG} names")
        await require_room(q, who.org_id, "reserved_names")  # the plan's limit: 402
        # A name another account serves right now stays theirs: reserving it would end
        # their tunnel at once. An operator can still reassign it (POST /v1/admin/names).
        in_use = await q.value(
            f"SELECT count(*) {tunnels.LIVE} AND t.hostname = %(host)s AND t.org_id <> %(org)s",
            {"stale": config.edge_stale_seconds, "host": host, "org": who.org_id},
        )
        if in_use:
            raise ApiError(
                409,
                "in_use",
                f"{host} is in use by another account's tunnel right now; pick another name",
            )
        held = await q.value(
            "SELECT until FROM name_holds WHERE host = %s AND org_id <> %s AND until > now()",
            (host, who.org_id),
        )
        if held is not None:
            raise ApiError(
                409,
                "held",
                f"{host} is held for the account that used it until "
                f"{held.astimezone(UTC).strftime('%H:%M')} UTC; pick another name",
            )
        row = await q.one(
            f"INSERT INTO reserved_names (id, org_id, host) VALUES (%s, %s, %s)"
            f" ON CONFLICT (host) DO NOTHING RETURNING {_COLUMNS}",
            (new_id("name"), who.org_id, host),
        )
        if row is None:
            raise ApiError(409, "taken", f"{host} is already reserved")
        claim = NameClaim(host, who.org_id)
        await outbox.record(q, lambda seq: NameSet(seq=seq, claim=claim))
        await audit(q, who.org_id, who.actor, "name.reserve", host)
    outbox.changed()
    return dict(row)


@routes.delete("/v1/names/{name_id}")
@describe("Release a reserved name.")
async def release_name(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    return to_json(await release(request.app, who, request.match_info["name_id"]))


async def release(app: web.Application, who: Principal, name_id: str) -> dict[str, Any]:
    who.require("admin")
    outbox = app[OUTBOX]
    async with app[DB].transaction() as q:
        row = await q.one(
            f"DELETE FROM reserved_names WHERE id = %s AND org_id = %s RETURNING {_COLUMNS}",
            (name_id[:64], who.org_id),
        )
        if row is None:
            raise not_found("reserved name")
        # Domains routed to this name stop being routed, on the edges too.
        untargeted = await q.all(
            "UPDATE domains SET target_name = NULL WHERE org_id = %s AND target_name = %s"
            " RETURNING host, org_id, verified_at, tls_mode, target_name",
            (who.org_id, row["host"]),
        )
        for domain in untargeted:
            await outbox.record(q, functools.partial(_domain_set, domain_route(domain)))
        host = row["host"]
        await outbox.record(q, lambda seq: NameRemoved(seq=seq, host=host))
        await audit(q, who.org_id, who.actor, "name.release", host)
    outbox.changed()
    return dict(row)
