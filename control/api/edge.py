"""What edges fetch from control: the routing snapshot and certificates with their keys
(msgpack), behind an edge key."""

from __future__ import annotations

import hmac

from aiohttp import web

from bus.events import encode
from certs.records import edge_certificate
from control.errors import ApiError
from control.keys import BOX, CONFIG, DB, OUTBOX
from control.openapi import describe

routes = web.RouteTableDef()


def require_edge(request: web.Request) -> None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    given = value.strip().encode()
    keys = request.app[CONFIG].edge_keys
    ok = scheme.lower() == "bearer" and any(hmac.compare_digest(k.encode(), given) for k in keys)
    if not ok:
        raise ApiError(401, "unauthorized", "this endpoint is for edges: send the edge key")


@routes.get("/v1/edge/routing")
@describe("The routing snapshot edges enforce (msgpack).", auth="edge")
async def routing_snapshot(request: web.Request) -> web.Response:
    require_edge(request)
    snapshot = await request.app[OUTBOX].snapshot()
    return web.Response(body=encode(snapshot), content_type="application/x-msgpack")


@routes.get("/v1/edge/certs/{host}")
@describe(
    "A certificate chain and its key (msgpack), for the edges to serve: keys reach edges "
    "only this way, never on the bus.",
    auth="edge",
)
async def edge_cert(request: web.Request) -> web.Response:
    require_edge(request)
    host = request.match_info["host"][:260].lower()
    cert = await edge_certificate(request.app[DB], request.app[BOX], host)
    if cert is None:
        raise ApiError(404, "not_found", f"control holds no certificate for {host}")
    return web.Response(
        body=encode(cert),
        content_type="application/x-msgpack",
        headers={"Cache-Control": "no-store"},
    )
