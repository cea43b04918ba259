"""Hostile agents: whatever an agent announces or does, the edge holds bounded memory for its
visitors and answers them.

Each test drives a ``HostileAgent`` (tests/fixtures/hostile_agent.py) against a real edge on
real sockets, with real visitors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable

import pytest

from edge.visitors.exchange import MAX_INFORMATIONAL
from proto.messages import Bind, Bound, StreamOpen, Welcome
from tests.e2e.conftest import TOKEN, edge_config, edge_held_bytes, start_edge, wait_for
from tests.e2e.test_http2 import H2Client
from tests.fixtures.hostile_agent import HostileAgent

MB = 1024 * 1024
UPLOAD = 200 * MB
CHUNK = b"u" * MB
UPLOAD_HEAD = b"POST /upload HTTP/1.1\r\nhost: app.localhost\r\ncontent-length: %d\r\n\r\n" % UPLOAD
EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"


def _rss() -> int:
    """This process's resident set now (not its peak), in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _hostile_tunnel(
    edge, protocol: str = "http", **options: int
) -> tuple[HostileAgent, Bound]:
    agent = await HostileAgent(edge.config.agent_port, **options).connect()
    assert isinstance(await agent.hello(TOKEN), Welcome)
    bound = await agent.bind("app", protocol)
    assert isinstance(bound, Bound), bound
    return agent, bound


async def _until_still(
    count: Callable[[], int], task: asyncio.Future[None], timeout: float = 20.0
) -> None:
    """Until ``count`` stops growing (the edge stopped taking bytes) or ``task`` ends."""
    deadline = time.monotonic() + timeout
    last = -1
    while count() != last and not task.done():
        assert time.monotonic() < deadline, "the upload never stalled"
        last = count()
        await asyncio.sleep(0.5)


class Upload:
    """A visitor pushing ``total`` bytes as fast as the edge takes them."""

    def __init__(self, writer: asyncio.StreamWriter, head: bytes, total: int) -> None:
        self.sent = 0
        self.task = asyncio.get_running_loop().create_task(self._run(writer, head, total))

    async def _run(self, writer: asyncio.StreamWriter, head: bytes, total: int) -> None:
        writer.write(head)
        while self.sent < total:
            writer.write(CHUNK)
            await writer.drain()
            self.sent += len(CHUNK)

    async def stalled(self) -> None:
        """Until the upload stops moving (the edge stopped reading it) or ends."""
        await _until_still(lambda: self.sent, self.task)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task


@contextlib.asynccontextmanager
async def _uploading(
    port: int, head: bytes = UPLOAD_HEAD
) -> AsyncIterator[tuple[asyncio.StreamReader, Upload]]:
    """A visitor connection to ``port`` uploading ``UPLOAD`` bytes, stopped on exit."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    upload = Upload(writer, head, UPLOAD)
    try:
        yield reader, upload
    finally:
        await upload.stop()
        writer.close()


@pytest.mark.parametrize(
    ("protocol", "announced", "grants"),
    [
        ("http", 1 << 30, False),  # the largest window a preamble may announce
        ("http", None, True),  # an ordinary window, then credit up to 2^31 - 1
        ("tcp", 1 << 30, True),
    ],
    ids=["http-huge-window", "http-huge-credit", "tcp-huge-window-and-credit"],
)
async def test_agent_that_grants_huge_credit_and_never_reads_holds_edge_memory_bounded(
    protocol: str, announced: int | None, grants: bool
) -> None:
    # Heartbeats far apart: the link that takes nothing is measured before it is let go.
    edge = await start_edge(edge_config(heartbeat=5.0))
    try:
        await _memory_stays_bounded(edge, protocol, announced, grants)
    finally:
        await edge.shutdown(drain=0.5)


async def _memory_stays_bounded(edge, protocol: str, announced: int | None, grants: bool) -> None:
    options = {"window": announced} if announced else {}
    agent, bound = await _hostile_tunnel(edge, protocol, **options)
    if protocol == "http":
        port, head = edge.config.http_port, UPLOAD_HEAD
    else:
        port, head = bound.port, b""
    rss_before = _rss()
    try:
        async with _uploading(port, head) as (_, upload):
            stream_id = await agent.stream_opened()
            if grants:
                agent.grant_all_it_may(stream_id)
            agent.stop_reading()
            await upload.stalled()
            held = edge_held_bytes(edge)
            rss_growth = _rss() - rss_before
            # The link's write buffer stops at its high-water mark and the visitor's reading
            # pauses; without a bound the edge buffered the whole upload.
            assert upload.sent < UPLOAD // 4, f"the edge took {upload.sent} bytes of the upload"
            assert held < 4 * MB, f"the edge holds {held} bytes for a link that reads nothing"
            assert rss_growth < 32 * MB, f"edge RSS grew {rss_growth} bytes"
            # The link is throttled, not torn down: the agent keeps it alive.
            assert len(edge.sessions) == 1
    finally:
        agent.close()
    await wait_for(lambda: not edge.sessions, what="the hostile link to go")


async def test_agent_that_never_reads_holds_an_http2_upload_bounded() -> None:
    edge = await start_edge(edge_config(heartbeat=5.0))
    agent, _ = await _hostile_tunnel(edge, window=1 << 30)
    client = await H2Client(edge.config.http_port).connect()
    h2_stream = client.start("POST", "/upload", end=False)
    sending = asyncio.ensure_future(client.send_body(h2_stream, b"u" * UPLOAD))
    try:
        stream_id = await agent.stream_opened()
        agent.grant_all_it_may(stream_id)
        agent.stop_reading()
        (session,) = edge.sessions
        await _until_still(lambda: session.bytes_out, sending)
        held = edge_held_bytes(edge)
        assert session.bytes_out < UPLOAD // 4, f"the edge took {session.bytes_out} bytes"
        assert held < 4 * MB, f"the edge holds {held} bytes for a link that reads nothing"
    finally:
        sending.cancel()
        with contextlib.suppress(BaseException):
            await sending
        await client.close()
        agent.close()
        await edge.shutdown(drain=0.5)


async def test_agent_that_floods_pings_and_never_reads_makes_the_edge_queue_no_pongs() -> None:
    edge = await start_edge(edge_config(heartbeat=5.0))
    agent, _ = await _hostile_tunnel(edge)
    try:
        (session,) = edge.sessions
        agent.stop_reading()
        pings = 1_000_000  # 18 MB of pings, each asking for an 18-byte pong
        await agent.flood_pings(pings)
        await wait_for(lambda: session.bytes_in >= pings * 18, timeout=20, what="pings read")
        assert session.transport is not None
        queued = session.transport.get_write_buffer_size()
        assert queued < 2 * MB, f"the edge queued {queued} bytes of pongs nobody reads"
    finally:
        agent.close()
        await edge.shutdown(drain=0.5)


@pytest.mark.parametrize("asks", ["binds", "streams"])
async def test_agent_that_asks_without_reading_the_answers_is_dropped(asks: str) -> None:
    edge = await start_edge(edge_config(heartbeat=5.0))
    agent, _ = await _hostile_tunnel(edge, window=1 << 30)
    try:
        async with _uploading(edge.config.http_port) as (_, upload):
            await agent.stream_opened()
            agent.stop_reading()
            await upload.stalled()  # the link is backed up
            (session,) = edge.sessions
            assert session.write_paused
            # Each gets an answer the agent never reads: a Bound, or a reset (agents open none).
            for n in range(1000):
                if asks == "binds":
                    agent.send_message(Bind(request_id=n + 2, protocol="http", name="app"))
                else:
                    agent.send_message(StreamOpen(1, "http", "198.51.100.7", 4000), 2 * n + 1)
            await wait_for(lambda: not edge.sessions, timeout=3, what="the link to be dropped")
    finally:
        agent.close()
        await edge.shutdown(drain=0.5)


async def test_a_link_that_takes_nothing_is_torn_down_and_its_visitor_let_go(edge) -> None:
    agent, _ = await _hostile_tunnel(edge, window=1 << 30)
    try:
        async with _uploading(edge.config.http_port) as (reader, _):
            await agent.stream_opened()
            agent.stop_reading()  # but its pings go on: the link is not silent
            started = time.monotonic()
            # heartbeat * misses (0.5 s * 3 here) without a byte taken, give or take a beat
            await wait_for(lambda: not edge.sessions, timeout=5, what="the link to be torn down")
            assert time.monotonic() - started < 4
            assert "app.localhost" not in edge.routes.hosts
            # The visitor is not left hanging on a tunnel that is gone: its connection ends
            # (with a 502 page, which mid-upload the kernel may turn into a reset).
            with contextlib.suppress(ConnectionResetError):
                answer = await asyncio.wait_for(reader.read(65536), 5)
                assert answer.startswith(b"HTTP/1.1 502") or not answer, answer[:100]
            await wait_for(lambda: not edge.visitors, timeout=5, what="the visitor to be let go")
    finally:
        agent.close()


async def test_endless_informational_responses_to_http1_visitor_end_in_502(edge) -> None:
    agent, _ = await _hostile_tunnel(edge)
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.config.http_port)
    writer.write(b"GET / HTTP/1.1\r\nhost: app.localhost\r\n\r\n")
    try:
        stream_id = await agent.stream_opened()
        hostile = asyncio.ensure_future(agent.endless_informational(stream_id, EARLY_HINTS))
        answer = b""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while b"HTTP/1.1 502" not in answer:
                    data = await reader.read(65536)
                    if not data:
                        break
                    answer += data
        sent = await asyncio.wait_for(hostile, 15)
    finally:
        writer.close()
        agent.close()
    final = answer.find(b"HTTP/1.1 502")
    assert final >= 0, f"no 502 after {answer.count(b'HTTP/1.1 103')} informational responses"
    assert answer[:final].count(b"HTTP/1.1 103") <= MAX_INFORMATIONAL
    assert b"informational" in answer[final:]
    # The stream is reset: the agent is not left talking to nobody.
    assert stream_id in agent.resets
    assert sent < 1000


class _CountingH2Client(H2Client):
    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.informational = 0

    def _on_event(self, ev) -> None:  # type: ignore[no-untyped-def]
        import h2.events

        if isinstance(ev, h2.events.InformationalResponseReceived):
            self.informational += 1
        super()._on_event(ev)


async def test_endless_informational_responses_to_http2_visitor_end_in_502(edge) -> None:
    agent, _ = await _hostile_tunnel(edge)
    client = await _CountingH2Client(edge.config.http_port).connect()
    try:
        h2_stream = client.start("GET", "/")
        stream_id = await agent.stream_opened()
        sent = await agent.endless_informational(stream_id, EARLY_HINTS, seconds=5)
        result = client.results[h2_stream]
        await asyncio.wait_for(result.done.wait(), 5)
    finally:
        await client.close()
        agent.close()
    assert result.status == 502 and b"informational" in result.body
    assert client.informational <= MAX_INFORMATIONAL
    assert stream_id in agent.resets
    assert sent < 1000


async def test_garbage_after_the_handshake_closes_only_that_link(edge, http_tunnel) -> None:
    await http_tunnel("good")
    agent, _ = await _hostile_tunnel(edge)
    agent.send_raw(b"\xff" * 64)
    assert await agent.closed_by_edge(timeout=5)
    await wait_for(lambda: "app.localhost" not in edge.routes.hosts, what="release")
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.config.http_port)
    writer.write(b"GET /hello HTTP/1.1\r\nhost: good.localhost\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(65536), 5)).endswith(b"hello")
    writer.close()
