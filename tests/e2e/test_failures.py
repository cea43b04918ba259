"""What visitors and agents see when things go wrong, and that the edge stays up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time

from agent.tunnels import TunnelSpec
from edge.config import Limits
from proto.messages import Bound, Refused, Unbind, Welcome
from tests.e2e.client import Visitor, get, raw_exchange
from tests.e2e.conftest import OTHER_TOKEN, TOKEN, edge_config, start_edge, wait_for
from tests.e2e.rawlink import RawLink


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_local_service_down_is_502_with_reason(edge, agents):
    spec = TunnelSpec("http", "127.0.0.1", _free_port(), name="down")
    await agents.start(edge, spec)
    r = await get(edge.config.http_port, "down.localhost", "/")
    assert r.status == 502
    assert "could not reach its local service" in r.text
    assert "refused" in r.text.lower()


async def test_local_service_closing_without_answer_is_502(edge, http_tunnel):
    await http_tunnel("app")
    r = await get(edge.config.http_port, "app.localhost", "/close")
    assert r.status == 502 and "without responding" in r.text


async def test_slow_local_service_is_504(service, agents):
    edge = await start_edge(edge_config(limits=Limits(response_timeout=0.5)))
    try:
        await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="app"))
        started = time.monotonic()
        r = await get(edge.config.http_port, "app.localhost", "/hang")
        assert r.status == 504 and "did not answer within 0.5 seconds" in r.text
        assert time.monotonic() - started < 3
        # The same tunnel keeps serving.
        assert (await get(edge.config.http_port, "app.localhost", "/hello")).status == 200
    finally:
        await edge.shutdown(drain=0.2)


async def test_agent_killed_mid_request(edge, http_tunnel, agents, service):
    agent = await http_tunnel("app")
    async with Visitor(edge.config.http_port, "app.localhost") as v:
        pending = asyncio.ensure_future(v.request("GET", "/hang"))
        await wait_for(lambda: edge.visitors and any(s.sinks for s in edge.sessions), what="stream")
        agent.stop()  # the agent process dies: its link closes under the request
        r = await asyncio.wait_for(pending, 5)
    assert r.status == 502 and "agent went away" in r.text
    # The edge is healthy: the name is free again for a new agent.
    await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="app"))
    assert (await get(edge.config.http_port, "app.localhost", "/hello")).body == b"hello"


async def test_edge_restart_agent_gets_same_urls_back(service, agents):
    edge = await start_edge()
    http_port, agent_port = edge.config.http_port, edge.config.agent_port
    agent = await agents.start(
        edge,
        TunnelSpec("http", "127.0.0.1", service.port, name="named"),
        TunnelSpec("http", "127.0.0.1", service.port),  # a random name
    )
    urls = [s.url for s in agent.tunnels]
    await edge.shutdown(drain=0.2)
    await wait_for(lambda: not agent.connected, what="agent notices")
    edge = await start_edge(edge_config(http_port=http_port, agent_port=agent_port))
    try:
        await wait_for(lambda: all(s.url for s in agent.tunnels), timeout=10, what="rebind")
        assert [s.url for s in agent.tunnels] == urls
        for url in urls:
            host = url.split("//")[1].split(":")[0]
            assert (await get(http_port, host, "/hello")).body == b"hello"
    finally:
        await edge.shutdown(drain=0.2)


async def test_silent_agent_is_dropped_by_heartbeat_and_name_released(edge, agents, service):
    raw = await RawLink(edge.config.agent_port).connect()
    assert isinstance(await raw.hello(TOKEN), Welcome)
    assert isinstance(await raw.bind("app"), Bound)
    started = time.monotonic()
    # The raw link never answers pings: the edge must give up on it in about
    # heartbeat * misses (0.5 s * 3 here).
    assert await raw.closed_by_edge(timeout=5)
    assert time.monotonic() - started < 3
    await wait_for(lambda: "app.localhost" not in edge.routes.hosts, what="release")
    await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="app"))
    assert (await get(edge.config.http_port, "app.localhost", "/hello")).body == b"hello"


async def test_reconnect_of_same_agent_takes_its_names_back_at_once(edge):
    instance = os.urandom(6).hex()
    old = await RawLink(edge.config.agent_port).connect()
    await old.hello(TOKEN, instance)
    assert isinstance(await old.bind("app"), Bound)
    # The same agent comes back on a new link while the old one still looks alive.
    new = await RawLink(edge.config.agent_port).connect()
    await new.hello(TOKEN, instance)
    assert isinstance(await new.bind("app"), Bound)
    # The stale link is told its tunnel moved, and is let go.
    assert isinstance(await old.receive(), Unbind)
    assert await old.closed_by_edge(timeout=2)
    pool = edge.routes.lookup_host("app.localhost")
    assert pool is not None and len(pool.members) == 1
    new.close()


async def test_another_account_cannot_take_a_name(edge, agents, service):
    await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="mine"))
    raw = await RawLink(edge.config.agent_port).connect()
    await raw.hello(OTHER_TOKEN)
    failed = await raw.bind("mine")
    assert getattr(failed, "code", None) == "taken"
    raw.close()


async def test_bad_token_is_refused_with_advice(edge):
    raw = await RawLink(edge.config.agent_port).connect()
    refused = await raw.hello("not-a-token")
    assert isinstance(refused, Refused) and "add-authtoken" in refused.message
    assert await raw.closed_by_edge(timeout=2)


async def test_garbage_from_a_visitor_gets_400_and_others_are_served(edge, http_tunnel):
    await http_tunnel("app")
    answer = await raw_exchange(edge.config.http_port, b"\x16\x03\x01garbage\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert (await get(edge.config.http_port, "app.localhost", "/hello")).status == 200


async def test_garbage_from_an_agent_closes_only_that_link(edge, http_tunnel):
    await http_tunnel("app")
    for junk in (os.urandom(4096), b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.config.agent_port)
        writer.write(junk)
        assert await asyncio.wait_for(reader.read(-1), 3) is not None  # closed by the edge
        writer.close()
    # Valid preamble, then a frame of an unknown type.
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.config.agent_port)
    from proto.frames import encode_preamble

    writer.write(encode_preamble() + b"\x7f\x00\x00\x00\x00\x00\x00\x00\x00\x00")
    await asyncio.wait_for(reader.read(-1), 3)
    writer.close()
    assert (await get(edge.config.http_port, "app.localhost", "/hello")).status == 200
    assert len(edge.sessions) == 1


async def test_oversized_and_too_many_headers_are_431(edge, http_tunnel):
    await http_tunnel("app")
    big = b"GET / HTTP/1.1\r\nhost: app.localhost\r\nx-big: " + b"a" * 20000 + b"\r\n\r\n"
    assert (await raw_exchange(edge.config.http_port, big)).startswith(b"HTTP/1.1 431 ")
    many = b"GET / HTTP/1.1\r\nhost: app.localhost\r\n" + b"".join(
        b"x-h%d: v\r\n" % i for i in range(150)
    )
    answer = await raw_exchange(edge.config.http_port, many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_slowloris_is_cut_off(service, agents):
    edge = await start_edge(edge_config(limits=Limits(header_timeout=0.5)))
    try:
        await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="app"))
        loop = asyncio.get_running_loop()
        sock = socket.create_connection(("127.0.0.1", edge.config.http_port))
        sock.setblocking(False)
        started = time.monotonic()
        await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\n")
        answer = b""
        for _ in range(30):  # one header byte every 0.1 s, never finishing the head
            try:
                answer += await asyncio.wait_for(loop.sock_recv(sock, 65536), 0.1)
                break
            except TimeoutError:
                pass
            try:
                await loop.sock_sendall(sock, b"x")
            except OSError:
                break
        elapsed = time.monotonic() - started
        with contextlib.suppress(OSError):
            answer += await asyncio.wait_for(loop.sock_recv(sock, 65536), 1)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert elapsed < 1.5
    finally:
        await edge.shutdown(drain=0.2)


async def test_stream_limit_per_agent_is_429(service, agents):
    edge = await start_edge(edge_config(limits=Limits(max_streams_per_agent=2)))
    try:
        await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="app"))
        hung = [Visitor(edge.config.http_port, "app.localhost") for _ in range(2)]
        tasks = []
        for v in hung:
            await v.__aenter__()
            tasks.append(asyncio.ensure_future(v.request("GET", "/hang")))
        await wait_for(lambda: sum(s.mux.stream_count for s in edge.sessions) == 2)
        r = await get(edge.config.http_port, "app.localhost", "/hello")
        assert r.status == 429
        for t in tasks:
            t.cancel()
        for v in hung:
            await v.__aexit__()
        await wait_for(lambda: sum(s.mux.stream_count for s in edge.sessions) == 0)
        assert (await get(edge.config.http_port, "app.localhost", "/hello")).status == 200
    finally:
        await edge.shutdown(drain=0.2)


async def test_many_concurrent_visitors_on_one_tunnel(edge, http_tunnel):
    await http_tunnel("app")

    async def visit(i: int) -> bytes:
        async with Visitor(edge.config.http_port, "app.localhost") as v:
            r = await v.request("POST", "/digest", b"%d" % i)
            return r.body

    bodies = await asyncio.gather(*(visit(i) for i in range(300)))
    assert all(b'"size"' in b for b in bodies)
    assert len({b for b in bodies}) == len({str(i) for i in range(300)})


async def test_graceful_shutdown_finishes_requests_in_flight(service, agents):
    edge = await start_edge()
    agent = await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="app"))
    async with Visitor(edge.config.http_port, "app.localhost") as v:
        in_flight = asyncio.ensure_future(v.request("GET", "/slow?s=0.6"))
        await wait_for(lambda: any(s.sinks for s in edge.sessions), what="stream open")
        shutdown = asyncio.ensure_future(edge.shutdown(drain=5))
        await asyncio.sleep(0.1)
        # New visitors are refused while the edge drains...
        try:
            await get(edge.config.http_port, "app.localhost", "/hello")
            refused = False
        except OSError:
            refused = True
        assert refused
        # ...and the request in flight completes.
        r = await asyncio.wait_for(in_flight, 5)
        assert (r.status, r.body) == (200, b"slow")
        await asyncio.wait_for(shutdown, 5)
    # The agent was told to go away and is reconnecting.
    await wait_for(lambda: not agent.connected or agent.reconnects > 0, what="go-away")
