"""Visitors out to hurt the edge or the local service behind it, on real sockets: headers
that try to strip the edge's own, hosts that smuggle a second one, HTTP/2 pseudo-headers that
turn into extra HTTP/1.1 lines, framing fields in trailers, resets the edge is made to send,
visitors that stop reading, and uploads that trickle.

The local service here records the bytes of every request head and trailer section it reads,
so a test can say exactly what reached it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import h2.config
import h2.connection
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, WindowUpdateFrame

from agent.tunnels import TunnelSpec
from edge.config import Limits
from edge.server import Edge
from edge.visitors.h2_visitor import MAX_RESETS, H2Visitor
from tests.e2e import test_tls
from tests.e2e.client import raw_exchange
from tests.e2e.conftest import AgentRunner, edge_config, start_edge, wait_for
from tests.e2e.origin import LocalService
from tests.e2e.test_http2 import H2Client, Result
from tests.e2e.tlshelp import HttpsVisitor, client_context, h2_requests, handshake

MB = 1024 * 1024


class RecordingService(LocalService):
    """An HTTP/1.1 local service that answers every request ``200 ok`` and keeps what it
    read: each head as bytes and each chunked body's trailer lines. Raw, not h11: it must
    see what a lenient server would."""

    def __init__(self) -> None:
        super().__init__()
        self.heads: list[bytes] = []
        self.trailers: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                lower = head.lower()
                if b"transfer-encoding: chunked" in lower:
                    while True:
                        size = int((await reader.readline()).split(b";")[0].strip(), 16)
                        if size == 0:
                            break
                        await reader.readexactly(size + 2)
                    trailer = b""
                    while (line := await reader.readline()) not in (b"\r\n", b""):
                        trailer += line
                    self.trailers.append(trailer)
                elif b"content-length:" in lower:
                    length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()


@pytest.fixture
async def recorder(edge, agents: AgentRunner) -> AsyncIterator[RecordingService]:
    svc = RecordingService()
    await svc.start()
    await agents.start(edge, TunnelSpec("http", "127.0.0.1", svc.port, name="rec"))
    yield svc
    await svc.stop()


def _fields(head: bytes) -> dict[bytes, bytes]:
    lines = head.split(b"\r\n")[1:]
    return {n.strip().lower(): v.strip() for n, _, v in (li.partition(b":") for li in lines if li)}


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _h2_client(port: int, authority: str) -> H2Client:
    """An HTTP/2 client that sends what it is told, valid or not."""
    client = H2Client(port, authority)
    client.conn = h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
    )
    return client


# -- 1. Connection may not strip the edge's own headers -----------------------------------


async def test_connection_header_cannot_strip_forwarding_headers_or_host(edge, recorder):
    listed = b"X-Forwarded-For, Forwarded, X-Forwarded-Host, X-Forwarded-Proto, X-Request-Id, Host"
    answer = await raw_exchange(
        edge.config.http_port,
        b"GET /a HTTP/1.1\r\nHost: rec.localhost\r\nConnection: close, " + listed + b", X-Hop\r\n"
        b"X-Hop: secret\r\nX-Kept: 1\r\n\r\n",
    )
    assert _status(answer) == 200
    seen = _fields(recorder.heads[-1])
    assert seen[b"host"] == b"rec.localhost"
    assert seen[b"x-forwarded-for"] == b"127.0.0.1"
    assert seen[b"x-forwarded-proto"] == b"http"
    assert seen[b"x-forwarded-host"] == b"rec.localhost"
    assert seen[b"forwarded"] == b"for=127.0.0.1;host=rec.localhost;proto=http"
    assert len(seen[b"x-request-id"]) > 8
    # What the Connection header really lists as hop-by-hop is still taken out.
    assert b"x-hop" not in seen and seen[b"x-kept"] == b"1"


async def test_connection_header_cannot_strip_framing(edge, recorder):
    answer = await raw_exchange(
        edge.config.http_port,
        b"POST /a HTTP/1.1\r\nHost: rec.localhost\r\nConnection: Content-Length, close\r\n"
        b"Content-Length: 5\r\n\r\nhello",
    )
    assert _status(answer) == 200
    assert _fields(recorder.heads[-1])[b"content-length"] == b"5"


# -- 2. a port is digits -------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", [b"rec.localhost:@evil.example", b"rec.localhost:80@evil.example", b"[::1]:x"]
)
async def test_host_with_a_port_that_is_not_digits_is_400(edge, recorder, host):
    answer = await raw_exchange(
        edge.config.http_port, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
    )
    assert _status(answer) == 400
    assert recorder.heads == []


async def test_h2_authority_with_a_port_that_is_not_digits_is_400(edge, recorder):
    async with H2Client(edge.config.http_port, "rec.localhost:@evil.example") as c:
        r = await c.request("GET", "/")
    assert r.status == 400
    assert recorder.heads == []


async def test_host_is_forwarded_normalised(edge, recorder):
    answer = await raw_exchange(
        edge.config.http_port,
        b"GET / HTTP/1.1\r\nHost: Rec.LocalHost.:8080\r\nConnection: close\r\n\r\n",
    )
    assert _status(answer) == 200
    seen = _fields(recorder.heads[-1])
    assert seen[b"host"] == b"rec.localhost:8080"
    assert seen[b"x-forwarded-host"] == b"rec.localhost:8080"
    assert seen[b"forwarded"] == b'for=127.0.0.1;host="rec.localhost:8080";proto=http'


# -- 3. what HTTP/2 turns into an HTTP/1.1 request line, and what trailers may carry -------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        (b"GET", b"/a HTTP/1.1\tX: /b"),
        (b"GET", b"/a b"),
        (b"GET", b"/a\x7f"),
        (b"GET /x HTTP/1.1\r\nX:", b"/"),
        (b"GE\tT", b"/"),
        (b"GET", b"a"),
        (b"GET", b"*"),
    ],
)
async def test_h2_bad_method_or_path_is_refused(edge, recorder, method, path):
    c = await _h2_client(edge.config.http_port, "rec.localhost").connect()
    try:
        stream_id = c.conn.get_next_available_stream_id()
        c.results[stream_id] = Result()
        c.conn.send_headers(
            stream_id,
            [(b":method", method), (b":scheme", b"http"), (b":authority", b"rec.localhost"),
             (b":path", path)],
            end_stream=True,
        )  # fmt: skip
        c.flush()
        r = await c.response(stream_id)
        assert r.reset == ErrorCodes.PROTOCOL_ERROR or r.status == 400
        # The connection goes on serving good requests.
        assert (await c.request("OPTIONS", "*")).status == 200
    finally:
        await c.close()
    assert all(not h.startswith(b"GET") for h in recorder.heads)
    assert recorder.heads == [b"OPTIONS * HTTP/1.1\r\n" + recorder.heads[0].split(b"\r\n", 1)[1]]


async def test_absolute_form_target_for_another_host_is_400(edge, recorder):
    answer = await raw_exchange(
        edge.config.http_port,
        b"GET http://other.localhost/a HTTP/1.1\r\nHost: rec.localhost\r\n\r\n",
    )
    assert _status(answer) == 400
    assert recorder.heads == []


async def test_absolute_form_target_for_the_same_host_goes_in_origin_form(edge, recorder):
    answer = await raw_exchange(
        edge.config.http_port,
        b"GET http://rec.localhost/a?b=1 HTTP/1.1\r\nHost: rec.localhost\r\nConnection: close"
        b"\r\n\r\n",
    )
    assert _status(answer) == 200
    assert recorder.heads[-1].startswith(b"GET /a?b=1 HTTP/1.1\r\n")


async def test_framing_fields_in_http1_trailers_are_dropped(edge, recorder):
    answer = await raw_exchange(
        edge.config.http_port,
        b"POST / HTTP/1.1\r\nHost: rec.localhost\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n"
        b"5\r\nhello\r\n0\r\nContent-Length: 99\r\nHost: evil.example\r\n"
        b"Transfer-Encoding: chunked\r\nX-Checksum: abc\r\n\r\n",
    )
    assert _status(answer) == 200
    assert recorder.trailers == [b"x-checksum: abc\r\n"]


async def test_framing_fields_in_h2_trailers_are_dropped(edge, recorder):
    async with H2Client(edge.config.http_port, "rec.localhost") as c:
        r = await c.request(
            "POST",
            "/",
            b"hello",
            trailers=[(b"content-length", b"99"), (b"host", b"evil.example"), (b"x-sum", b"1")],
        )
    assert r.status == 200
    assert recorder.trailers == [b"x-sum: 1\r\n"]


async def test_local_service_sees_json_headers_unchanged(edge, http_tunnel):
    """The usual request, with a Connection header listing only keep-alive, keeps taking the
    path that forwards the lines as read."""
    await http_tunnel("app")
    answer = await raw_exchange(
        edge.config.http_port,
        b"GET /headers HTTP/1.1\r\nHost: app.localhost\r\nConnection: keep-alive, close\r\n\r\n",
    )
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    names = [n for n, _ in body["headers"]]
    assert names[0] == "host" and "x-forwarded-for" in names and "connection" not in names


# -- 4. resets the edge is made to send count (MadeYouReset) -------------------------------


def _window_overflow(c: H2Client, stream_id: int) -> bytes:
    # Past 2^31-1 for the stream's send window: h2 on the edge resets it (FLOW_CONTROL_ERROR).
    return WindowUpdateFrame(stream_id, window_increment=2**31 - 1).serialize()


def _data_after_end(c: H2Client, stream_id: int) -> bytes:
    # The stream is half-closed (remote): h2 on the edge resets it (STREAM_CLOSED).
    return DataFrame(stream_id, data=b"x").serialize()


@pytest.mark.parametrize("misstep", [_window_overflow, _data_after_end])
async def test_resets_the_edge_is_made_to_send_are_counted(edge, recorder, misstep):
    c = await H2Client(edge.config.http_port, "rec.localhost").connect()
    try:
        assert c.writer is not None
        with contextlib.suppress(ConnectionError):  # the edge hangs up mid-loop
            for _ in range(400):
                if c.closed.is_set():
                    break
                stream_id = c.start("GET", "/")  # a whole request: it reaches the service
                await asyncio.sleep(0)
                c.writer.write(misstep(c, stream_id))
                await c.writer.drain()
        assert await c.wait_closed(5) == ErrorCodes.ENHANCE_YOUR_CALM
    finally:
        await c.close()
    assert len(recorder.heads) <= MAX_RESETS + 50
    assert edge.metrics.refusals["h2_abuse"] == 1


async def test_streams_opened_per_period_are_bounded(agents):
    edge = await start_edge(edge_config(limits=Limits(h2_streams_per_period=50)))
    recorder = RecordingService()
    await recorder.start()
    try:
        await agents.start(edge, TunnelSpec("http", "127.0.0.1", recorder.port, name="rec"))
        async with H2Client(edge.config.http_port, "rec.localhost") as c:
            for _ in range(49):
                assert (await c.request("GET", "/")).status == 200
            for _ in range(5):
                c.start("GET", "/")
            assert await c.wait_closed(5) == ErrorCodes.ENHANCE_YOUR_CALM
        assert len(recorder.heads) <= 50
    finally:
        await recorder.stop()
        await edge.shutdown(drain=0.5)


# -- 5. visitors that stop reading ---------------------------------------------------------

STALL = 0.5  # send_timeout for these tests


@pytest.fixture
async def stall_edge() -> AsyncIterator[Edge]:
    e = await start_edge(edge_config(limits=Limits(send_timeout=STALL)))
    yield e
    await e.shutdown(drain=0.5)


async def _tunnel(edge: Edge, agents: AgentRunner, service: LocalService) -> None:
    await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="app"))


async def test_http1_visitor_that_stops_reading_is_cut_off(stall_edge, agents, service):
    await _tunnel(stall_edge, agents, service)
    # A small stream buffer: the client side stops reading the socket after 128 KiB.
    _, writer = await asyncio.open_connection(
        "127.0.0.1", stall_edge.config.http_port, limit=64 * 1024
    )
    try:
        writer.write(b"GET /bytes?n=%d HTTP/1.1\r\nHost: app.localhost\r\n\r\n" % (256 * MB))
        await wait_for(lambda: len(stall_edge.visitors) == 1, what="the visitor")
        (visitor,) = stall_edge.visitors
        await wait_for(lambda: visitor.backlogged, what="the visitor's socket to fill")
        # What the edge holds for it: the socket buffer to its small high-water mark, and
        # at most one tunnel stream window in flight (a stream that stalls early has not
        # grown it: the window tuning grows only what a round trip carried).
        assert visitor.transport.get_write_buffer_size() <= 1024 * 1024 + 64 * 1024
        await wait_for(lambda: not stall_edge.visitors, timeout=STALL + 3, what="the abort")
    finally:
        writer.close()
    assert stall_edge.metrics.refusals["send_timeout"] == 1


async def test_h2_visitor_that_stops_reading_is_cut_off(stall_edge, agents, service):
    await _tunnel(stall_edge, agents, service)
    c = await H2Client(stall_edge.config.http_port).connect(start_reading=False)
    try:
        c.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
        c.start("GET", f"/bytes?n={256 * MB}")  # and nothing read: not even SETTINGS
        visitors = stall_edge.visitors
        await wait_for(lambda: any(isinstance(v, H2Visitor) for v in visitors), what="h2")
        (visitor,) = visitors
        await wait_for(lambda: visitor.write_paused, what="the visitor's socket to fill")
        await wait_for(lambda: not stall_edge.visitors, timeout=STALL + 3, what="the abort")
    finally:
        await c.close()
    assert stall_edge.metrics.refusals["send_timeout"] == 1


async def test_h2_stream_the_visitor_gives_no_window_is_reset(stall_edge, agents, service):
    await _tunnel(stall_edge, agents, service)
    async with H2Client(stall_edge.config.http_port) as c:
        stuck = c.start("GET", f"/bytes?n={4 * MB}")
        c.unread.add(stuck)  # its DATA is never acknowledged: its window stays shut
        r = await c.response(stuck, timeout=STALL + 3)
        assert r.reset == ErrorCodes.CANCEL
        # The connection and its other streams go on.
        assert (await c.request("GET", "/hello")).body == b"hello"
    await wait_for(lambda: not stall_edge.sessions or _streams(stall_edge) == 0, what="release")


def _streams(edge: Edge) -> int:
    return sum(s.mux.stream_count for s in edge.sessions)


# The HTTPS tests' certificates, made once per module.
ca = test_tls.ca
edge_leaf = test_tls.edge_leaf
cert_files = test_tls.cert_files
APP = test_tls.APP


@pytest.fixture
async def stall_tls_edge(cert_files: tuple[str, str]) -> AsyncIterator[Edge]:
    e = await start_edge(test_tls.tls_edge_config(cert_files, limits=Limits(send_timeout=STALL)))
    yield e
    await e.shutdown(drain=0.5)


async def test_tls_visitor_that_stops_reading_is_cut_off(stall_tls_edge, agents, service, ca):
    edge = stall_tls_edge
    await _tunnel(edge, agents, service)
    _, writer = await asyncio.open_connection(
        "127.0.0.1",
        edge.config.https_port,
        ssl=client_context(ca),
        server_hostname=APP,
        limit=64 * 1024,
    )
    try:
        writer.write(b"GET /bytes?n=%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (256 * MB, APP.encode()))
        await wait_for(lambda: any(v.backlogged for v in edge.visitors), what="backlog")
        await wait_for(lambda: not edge.visitors, timeout=STALL + 3, what="the abort")
    finally:
        writer.close()
    assert edge.metrics.refusals["send_timeout"] == 1


# -- 6. slow bodies, and one address holding a tunnel's streams -----------------------------


@pytest.fixture
async def strict_edge() -> AsyncIterator[Edge]:
    limits = Limits(
        body_min_rate=100, body_rate_window=0.5, max_streams_per_agent=40, address_stream_share=0.25
    )
    e = await start_edge(edge_config(limits=limits))
    yield e
    await e.shutdown(drain=0.5)


async def test_http1_body_slower_than_the_minimum_rate_is_408(strict_edge, agents, service):
    await _tunnel(strict_edge, agents, service)
    reader, writer = await asyncio.open_connection("127.0.0.1", strict_edge.config.http_port)
    writer.write(b"POST /digest HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 1000\r\n\r\n")

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(40):  # a byte every 0.1 s: the 60 s idle timer never runs out
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.1)

    sender = asyncio.get_running_loop().create_task(trickle())
    try:
        answer = await asyncio.wait_for(reader.read(-1), 4)
    finally:
        sender.cancel()
        writer.close()
    assert _status(answer) == 408 and b"slower than 100 bytes a second" in answer
    assert strict_edge.metrics.refusals["body_too_slow"] == 1


async def test_h2_body_slower_than_the_minimum_rate_is_408(strict_edge, agents, service):
    await _tunnel(strict_edge, agents, service)
    async with H2Client(strict_edge.config.http_port) as c:
        stream_id = c.start("POST", "/digest", [("content-length", "1000")], end=False)
        for _ in range(30):
            if c.results[stream_id].done.is_set():
                break
            c.conn.send_data(stream_id, b"x")
            c.flush()
            await asyncio.sleep(0.1)
        r = await c.response(stream_id, timeout=3)
        assert r.status == 408 and "slower than 100 bytes a second" in r.text
        # The connection goes on.
        assert (await c.request("GET", "/hello")).body == b"hello"


async def test_a_body_at_the_minimum_rate_goes_through(strict_edge, agents, service):
    await _tunnel(strict_edge, agents, service)
    reader, writer = await asyncio.open_connection("127.0.0.1", strict_edge.config.http_port)
    try:
        writer.write(b"POST /digest HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 600\r\n\r\n")
        for _ in range(20):  # 300 bytes a second for two seconds
            writer.write(b"x" * 30)
            await asyncio.sleep(0.1)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    finally:
        writer.close()
    assert _status(head) == 200


async def _hanging_request(port: int, address: str) -> tuple[asyncio.StreamReader, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    writer.write(b"GET /hang HTTP/1.1\r\nHost: app.localhost\r\n\r\n")
    await writer.drain()
    return reader, writer


async def test_one_address_holds_only_its_share_of_a_tunnels_streams(strict_edge, agents, service):
    await _tunnel(strict_edge, agents, service)
    port = strict_edge.config.http_port
    # The share: a quarter of the tunnel's 40 streams.
    held = [await _hanging_request(port, "127.0.0.1") for _ in range(10)]
    await wait_for(lambda: _streams(strict_edge) == 10, what="ten streams")
    try:
        answer = await raw_exchange(
            port, b"GET /hello HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n"
        )
        assert _status(answer) == 429 and b"Your address already holds 10" in answer
        # Another address is served all the same.
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=("127.0.0.2", 0)
        )
        writer.write(b"GET /hello HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n")
        assert _status(await asyncio.wait_for(reader.read(-1), 5)) == 200
        writer.close()
    finally:
        for _, w in held:
            w.close()
    # Streams given back are the address's to take again.
    await wait_for(lambda: _streams(strict_edge) == 0, what="the streams let go")
    answer = await raw_exchange(
        port, b"GET /hello HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n"
    )
    assert _status(answer) == 200
    assert strict_edge.metrics.refusals["address_share"] == 1


# -- 7. a silent connection, draining, TLS suites, misdirected requests --------------------


async def test_a_connection_that_sends_nothing_gets_the_header_timeout(agents, service):
    edge = await start_edge(edge_config(limits=Limits(header_timeout=0.5)))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.config.http_port)
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(-1), 5) == b""  # closed, not 75 s later
        assert asyncio.get_running_loop().time() - started < 3
        writer.close()
    finally:
        await edge.shutdown(drain=0.5)


async def test_a_response_while_draining_says_connection_close(agents, service):
    edge = await start_edge()
    await _tunnel(edge, agents, service)
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.config.http_port)
    try:
        writer.write(b"GET /slow?s=0.5 HTTP/1.1\r\nHost: app.localhost\r\n\r\n")
        await wait_for(lambda: _streams(edge) == 1, what="the request in flight")
        shutdown = asyncio.get_running_loop().create_task(edge.shutdown(drain=5))
        answer = await asyncio.wait_for(reader.read(-1), 5)
        await shutdown
    finally:
        writer.close()
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert _status(answer) == 200 and b"connection: close" in head


@pytest.fixture
async def tls_edge(cert_files: tuple[str, str]) -> AsyncIterator[Edge]:
    e = await start_edge(test_tls.tls_edge_config(cert_files))
    yield e
    await e.shutdown(drain=0.5)


@pytest.mark.parametrize(
    "ciphers",
    [
        # CBC with SHA-2 MACs: what Python's default server list still offered.
        "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:"
        "ECDHE-RSA-AES256-SHA384",
        "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-SHA256",
        "AES128-GCM-SHA256",
    ],
    ids=["ecdhe-cbc", "dhe", "static-rsa"],
)
async def test_tls12_offers_no_cbc_or_static_rsa_suites(tls_edge, ca, ciphers):
    context = client_context(ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    with pytest.raises(ssl.SSLError):
        await handshake(tls_edge.config.https_port, APP, context)
    context = client_context(ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    assert (await handshake(tls_edge.config.https_port, APP, context)).cert is not None


async def test_tls_request_for_another_tunnels_host_is_421(tls_edge, agents, service, ca):
    await _tunnel(tls_edge, agents, service)
    other = f"other.{test_tls.BASE}"
    await agents.start(tls_edge, TunnelSpec("http", "127.0.0.1", service.port, name="other"))
    port = tls_edge.config.https_port
    async with HttpsVisitor(port, other, client_context(ca), server_name=APP) as v:
        r = await v.request("GET", "/hello")
    assert r.status == 421 and f"made for {APP}" in r.text
    async with HttpsVisitor(port, APP, client_context(ca)) as v:
        assert (await v.request("GET", "/hello")).status == 200
    h2 = client_context(ca, alpn=("h2",))
    ex = await h2_requests(port, APP, h2, ["/hello"], authority=other)
    assert ex.alpn == "h2" and ex.results[0].status == 421
    assert (await h2_requests(port, APP, h2, ["/hello"])).results[0].status == 200


async def test_an_h2_tls_connection_that_sends_nothing_gets_the_header_timeout(cert_files, ca):
    edge = await start_edge(test_tls.tls_edge_config(cert_files, limits=Limits(header_timeout=0.5)))
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            edge.config.https_port,
            ssl=client_context(ca, alpn=("h2",)),
            server_hostname=APP,
        )
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        started = asyncio.get_running_loop().time()
        with contextlib.suppress(ConnectionError):
            while await asyncio.wait_for(reader.read(65536), 5):
                pass  # the edge's SETTINGS, then its GOAWAY
        assert asyncio.get_running_loop().time() - started < 3
        writer.close()
    finally:
        await edge.shutdown(drain=0.5)
