"""The admin listener as a load balancer's probes and an operator's curl see it."""

from __future__ import annotations

import asyncio

import pytest

from agent.tunnels import TunnelSpec
from edge.admin.listener import MAX_HEAD
from edge.link.auth import StaticTokens
from edge.server import Edge
from tests.e2e.client import Visitor
from tests.e2e.conftest import edge_config, start_edge, wait_for
from tests.obs.admin_client import admin_get, admin_request


async def test_port_zero_is_read_back_and_health_is_ok(edge):
    port = edge.config.admin_port
    assert port and port != edge.config.http_port
    r = await admin_get(port, "/healthz")
    assert (r.status, r.text) == (200, "ok\n")
    assert r.headers["connection"] == "close"
    r = await admin_get(port, "/readyz")
    assert (r.status, r.text) == (200, "ready\n")


async def test_readyz_is_503_while_draining_then_the_listener_closes(service, agents):
    edge = await start_edge(edge_config(admin_port=0))
    port = edge.config.admin_port
    assert port
    shutdown: asyncio.Future[None] | None = None
    try:
        await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="app"))
        async with Visitor(edge.config.http_port, "app.localhost") as v:
            in_flight = asyncio.ensure_future(v.request("GET", "/slow?s=0.8"))
            await wait_for(lambda: any(s.sinks for s in edge.sessions), what="request in flight")
            assert (await admin_get(port, "/readyz")).status == 200
            shutdown = asyncio.ensure_future(edge.shutdown(drain=5))
            await asyncio.sleep(0.05)
            r = await admin_get(port, "/readyz")
            assert (r.status, r.text) == (503, "not ready: draining\n")
            assert (await admin_get(port, "/healthz")).status == 200  # alive, just not ready
            assert (await asyncio.wait_for(in_flight, 5)).status == 200
            await asyncio.wait_for(shutdown, 5)
        with pytest.raises(OSError):
            await admin_get(port, "/healthz")
    finally:
        if shutdown is None:
            await edge.shutdown(drain=0.1)


async def test_readyz_is_503_until_the_listeners_are_up(monkeypatch):
    """The admin listener opens first, so a probe can tell "starting" from "dead"."""
    release = asyncio.Event()
    listen = Edge._listen

    async def slow_listen(self: Edge) -> None:
        await release.wait()
        await listen(self)

    monkeypatch.setattr(Edge, "_listen", slow_listen)
    edge = Edge(edge_config(admin_port=0), StaticTokens({"token": "alice"}))
    starting = asyncio.ensure_future(edge.start())
    await wait_for(lambda: edge.config.admin_port != 0, what="admin listener")
    port = edge.config.admin_port
    assert port
    r = await admin_get(port, "/readyz")
    assert (r.status, r.text) == (503, "not ready: starting\n")
    assert (await admin_get(port, "/healthz")).status == 200
    release.set()
    await asyncio.wait_for(starting, 5)
    assert (await admin_get(port, "/readyz")).status == 200
    await edge.shutdown(drain=0.1)


async def test_no_admin_listener_unless_configured():
    edge = await start_edge(edge_config())
    try:
        assert edge.config.admin_port is None
        assert edge.not_ready() == ""
    finally:
        await edge.shutdown(drain=0.1)


async def test_head_has_no_body(edge):
    r = await admin_get(edge.config.admin_port, "/metrics", method="HEAD")
    assert r.status == 200 and r.body == b""
    assert int(r.headers["content-length"]) > 1000


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /nope HTTP/1.1\r\n\r\n", 404),
        (b"POST /metrics HTTP/1.1\r\ncontent-length: 0\r\n\r\n", 405),
        (b"GET /healthz?verbose=1 HTTP/1.1\n\n", 200),  # bare LFs, a query: still served
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS to a plain port
        (b"GET /metrics HTTP/1.1\r\nx: " + b"a" * MAX_HEAD + b"\r\n\r\n", 431),
    ],
)
async def test_bad_requests_get_a_status_and_a_closed_connection(edge, raw, status):
    r = await admin_request(edge.config.admin_port, raw)
    assert r.status == status
    assert r.headers["connection"] == "close"


async def test_an_endless_head_is_cut_off_at_the_limit(edge):
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.config.admin_port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\n")
        for _ in range(MAX_HEAD // 1000 + 2):
            writer.write(b"x-filler: " + b"a" * 1000 + b"\r\n")
        answer = await asyncio.wait_for(reader.read(-1), 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 431 ")
