"""100 MB bodies both ways, streamed; a visitor that reads nothing holds bounded memory."""

from __future__ import annotations

import asyncio
import hashlib
import json
import resource

from tests.e2e.client import Visitor
from tests.e2e.conftest import edge_held_bytes, wait_for
from tests.e2e.origin import PATTERN, pattern_bytes

MB = 1024 * 1024


async def _pattern_chunks(total: int):
    sent = 0
    while sent < total:
        piece = PATTERN[: min(len(PATTERN), total - sent)]
        sent += len(piece)
        yield piece


async def test_100mb_upload_content_length_and_chunked(edge, http_tunnel):
    await http_tunnel("app")
    total = 100 * MB
    digest = hashlib.sha256()
    for piece in [PATTERN] * (total // len(PATTERN)):
        digest.update(piece)
    async with Visitor(edge.config.http_port, "app.localhost") as v:
        await v.send_head("POST", "/digest", length=total)
        async for piece in _pattern_chunks(total):
            await v.send_body(piece)
        await v.end_body()
        r = await v.read_response()
        assert json.loads(r.body) == {"sha256": digest.hexdigest(), "size": total}
        r = await v.request("PUT", "/digest", _pattern_chunks(total), chunked=True)
        assert json.loads(r.body)["size"] == total


async def test_100mb_download(edge, http_tunnel):
    await http_tunnel("app")
    total = 100 * MB
    async with Visitor(edge.config.http_port, "app.localhost") as v:
        r = await v.request("GET", f"/bytes?n={total}", discard_body=True)
        assert r.headers["x-test-received"] == str(total)
        r = await v.request("GET", f"/chunked?n={total // 4}", discard_body=True)
        assert r.headers["x-test-received"] == str(total // 4)


async def test_echo_streams_both_ways_at_once(edge, http_tunnel):
    """The local service answers while the upload is still arriving (full duplex)."""
    await http_tunnel("app")
    total = 20 * MB
    async with Visitor(edge.config.http_port, "app.localhost") as v:
        reader = asyncio.ensure_future(v.read_response())
        await v.send_head("POST", "/echo", chunked=True)
        async for piece in _pattern_chunks(total):
            await v.send_body(piece)
        await v.end_body()
        r = await asyncio.wait_for(reader, 30)
    assert len(r.body) == total and r.body[: 3 * len(PATTERN)] == pattern_bytes(3 * len(PATTERN))


async def test_visitor_that_reads_nothing_holds_bounded_memory(edge, http_tunnel):
    agent = await http_tunnel("app")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.config.http_port)
    writer.write(b"GET /bytes?n=%d HTTP/1.1\r\nhost: app.localhost\r\n\r\n" % (500 * MB))
    await writer.drain()
    # Let the transfer run into the wall of a visitor that reads nothing.
    await asyncio.sleep(1.5)
    held = edge_held_bytes(edge)
    link = agent.link
    assert link is not None
    agent_held = link.mux.buffered_bytes() + sum(
        s.transport.get_write_buffer_size()
        for s in link.sinks.values()
        if getattr(s, "transport", None) is not None
    )
    # One stream window (256 KiB) plus one socket buffer's worth on each side, not 500 MB.
    assert held < 2 * MB, f"edge holds {held} bytes for a stalled visitor"
    assert agent_held < 2 * MB, f"agent holds {agent_held} bytes for a stalled visitor"
    rss_growth_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert rss_growth_kb < 64 * 1024
    # The stalled visitor hurts nobody else.
    async with Visitor(edge.config.http_port, "app.localhost") as v:
        assert (await v.request("GET", "/hello")).body == b"hello"
    # And when it starts reading again, the transfer resumes.
    got = 0
    while got < 2 * MB:
        got += len(await reader.read(MB))
    writer.close()
    await wait_for(lambda: not edge.visitors, what="visitor gone")
