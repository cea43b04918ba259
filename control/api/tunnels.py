"""Live tunnels: what the organization's agents serve right now, as edges last reported it.

Only edges heard from within ``edge_stale_seconds`` count: an edge that died without saying
so stops reporting, and its tunnels drop out of the list instead of lingering.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import web

from control import principals
from control.bodies import to_json
from control.errors import not_found
from control.keys import CONFIG, DB
from control.openapi import describe

routes = web.RouteTableDef()

COLUMNS = (
    "t.key, t.edge_id, t.org_id, t.token_id, t.protocol, t.url, t.hostname, t.port,"
    " t.session_id, t.instance_id, t.agent_version, t.client_addr, t.local_addr,"
    " t.started_at, t.seen_at"
)
# Joined with the edge that reported the tunnel; %(stale)s is edge_stale_seconds.
LIVE = (
    "FROM live_tunnels t JOIN edges e ON e.id = t.edge_id"
    " WHERE e.stopped_at IS NULL"
    " AND e.last_seen_at >= now() - make_interval(secs => %(stale)s)"
)


# The stream looks for changes this often, ends after STREAM_SECONDS (browsers reconnect by
# themselves, after RETRY_MS), and sends a comment when idle so proxies keep it open.
STREAM_POLL_SECONDS = 1.0
STREAM_SECONDS = 300.0
STREAM_IDLE_SECONDS = 15.0
RETRY_MS = 2000


async def _online(request: web.Request, org_id: str) -> list[Any]:
    return await request.app[DB].all(
        f"SELECT {COLUMNS} {LIVE} AND t.org_id = %(org)s ORDER BY t.started_at, t.key",
        {"stale": request.app[CONFIG].edge_stale_seconds, "org": org_id},
    )


@routes.get("/v1/tunnels")
@describe("The organization's tunnels that are online now, across every edge.")
async def list_tunnels(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    return to_json({"tunnels": await _online(request, who.org_id)})


@routes.get("/v1/tunnels/stream")
@describe(
    "Server-Sent Events: the organization's online tunnels as GET /v1/tunnels lists them, "
    "in a `tunnels` event at once and again whenever they change. The stream ends after "
    "five minutes; EventSource clients reconnect by themselves."
)
async def stream_tunnels(request: web.Request) -> web.StreamResponse:
    who = await principals.principal(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx would hold events back otherwise
        }
    )
    await response.prepare(request)
    await response.write(f"retry: {RETRY_MS}\n\n".encode())
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_SECONDS
    last = b""
    quiet_since = loop.time()
    while loop.time() < ends:
        data = msgspec.json.encode({"tunnels": await _online(request, who.org_id)})
        if data != last:
            await response.write(b"event: tunnels\ndata: " + data + b"\n\n")
            last = data
            quiet_since = loop.time()
        elif loop.time() - quiet_since >= STREAM_IDLE_SECONDS:
            await response.write(b": still here\n\n")
            quiet_since = loop.time()
        await asyncio.sleep(STREAM_POLL_SECONDS)
    return response


# Keys are "<session id>/<tunnel id>": the route takes the rest of the path, so the slash
# may be sent as is or as %2F.
@routes.get("/v1/tunnels/{key:.+}")
@describe("One online tunnel, by its key.")
async def get_tunnel(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    row = await request.app[DB].one(
        f"SELECT {COLUMNS} {LIVE} AND t.org_id = %(org)s AND t.key = %(key)s",
        {
            "stale": request.app[CONFIG].edge_stale_seconds,
            "org": who.org_id,
            "key": request.match_info["key"][:200],
        },
    )
    if row is None:
        raise not_found("online tunnel")
    return to_json(row)
