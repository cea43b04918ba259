"""HTTP/2 visitors (h2c by prior knowledge on the plain port) through a tunnel: requests,
multiplexing, flow control both ways, error pages, and the protections against abusive clients.

The client is the ``h2`` library over a plain TCP connection; the local service behind the
tunnel is the same HTTP/1.1 one the other end-to-end tests use."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import socket
import time
from collections.abc import Iterable

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes

from agent.tunnels import TunnelSpec
from edge.config import Limits
from edge.visitors.h2_visitor import H2Visitor
from tests.e2e.conftest import edge_config, start_edge, wait_for
from tests.e2e.origin import pattern_bytes

MB = 1024 * 1024


class Result:
    """One stream's response as the client saw it."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = bytearray()
        self.trailers: dict[bytes, bytes] = {}
        self.reset: int | None = None  # the RST_STREAM code, if the edge reset the stream
        self.done = asyncio.Event()

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


class H2Client:
    """One HTTP/2 connection to the edge, with prior knowledge (no Upgrade)."""

    def __init__(self, port: int, authority: str = "app.localhost") -> None:
        self.port = port
        self.authority = authority.encode()
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.results: dict[int, Result] = {}
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.closed = asyncio.Event()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._window_waiters: list[asyncio.Future[None]] = []
        self.unread: set[int] = set()  # streams whose DATA is never acknowledged (a stuck reader)

    async def connect(self, *, split: int = 0, start_reading: bool = True) -> H2Client:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(16 * MB)
        if split:
            # The preface in two reads: the edge must wait before it decides HTTP/1 or h2.
            data = self.conn.data_to_send()
            self.writer.write(data[:split])
            await self.writer.drain()
            await asyncio.sleep(0.05)
            self.writer.write(data[split:])
        if start_reading:
            self.start_reading()
        return self

    def start_reading(self) -> None:
        self.flush()
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def __aenter__(self) -> H2Client:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self.writer is not None:
            self.writer.close()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.writer is not None and not self.writer.is_closing():
            self.writer.write(data)

    async def _read(self) -> None:
        assert self.reader is not None
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                for ev in self.conn.receive_data(data):
                    self._on_event(ev)
                self.flush()
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            self.closed.set()
            for result in self.results.values():
                result.done.set()
            self._wake_senders()

    def _on_event(self, ev: h2.events.Event) -> None:
        if isinstance(ev, h2.events.ResponseReceived):
            r = self.results[ev.stream_id]
            r.headers = dict(ev.headers)  # type: ignore[arg-type]
            r.status = int(r.headers.pop(b":status"))
        elif isinstance(ev, h2.events.DataReceived):
            self.results[ev.stream_id].body += ev.data
            if ev.stream_id not in self.unread:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            self.results[ev.stream_id].trailers = dict(ev.headers)  # type: ignore[arg-type]
        elif isinstance(ev, h2.events.StreamEnded):
            self.results[ev.stream_id].done.set()
        elif isinstance(ev, h2.events.StreamReset):
            if ev.stream_id in self.results:
                self.results[ev.stream_id].reset = ev.error_code
                self.results[ev.stream_id].done.set()
            self._wake_senders()
        elif isinstance(ev, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._wake_senders()
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.terminated = ev

    def _wake_senders(self) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def start(
        self,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        end: bool = True,
    ) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        head = [
            (b":method", method.encode()),
            (b":scheme", b"http"),
            (b":authority", self.authority),
            (b":path", path.encode()),
            *((k.encode(), v.encode()) for k, v in headers),
        ]
        self.results[stream_id] = Result()
        self.conn.send_headers(stream_id, head, end_stream=end)
        self.flush()
        return stream_id

    async def send_body(
        self,
        stream_id: int,
        body: bytes,
        *,
        end: bool = True,
        trailers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        assert self.writer is not None
        view = memoryview(body)
        while view:
            if self.closed.is_set() or self.results[stream_id].done.is_set():
                return
            window = min(
                self.conn.local_flow_control_window(stream_id),
                self.conn.max_outbound_frame_size,
                len(view),
            )
            if window <= 0:
                fut = asyncio.get_running_loop().create_future()
                self._window_waiters.append(fut)
                await asyncio.wait_for(fut, 10)
                continue
            self.conn.send_data(stream_id, view[:window].tobytes())
            view = view[window:]
            self.flush()
            await self.writer.drain()
        if trailers:
            self.conn.send_headers(stream_id, trailers, end_stream=True)
        elif end:
            self.conn.end_stream(stream_id)
        self.flush()

    async def response(self, stream_id: int, timeout: float = 10) -> Result:
        result = self.results[stream_id]
        await asyncio.wait_for(result.done.wait(), timeout)
        return result

    async def request(
        self,
        method: str = "GET",
        path: str = "/",
        body: bytes | None = None,
        headers: Iterable[tuple[str, str]] = (),
        *,
        trailers: list[tuple[bytes, bytes]] | None = None,
    ) -> Result:
        stream_id = self.start(method, path, headers, end=body is None)
        if body is not None:
            await self.send_body(stream_id, body, trailers=trailers)
        return await self.response(stream_id)

    async def wait_closed(self, timeout: float = 5) -> int | None:
        """Wait until the edge closes the connection; the GOAWAY's error code, if one came."""
        await asyncio.wait_for(self.closed.wait(), timeout)
        return None if self.terminated is None else self.terminated.error_code


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- requests and responses ---------------------------------------------------------------


async def test_get_through_tunnel_over_h2c(edge, http_tunnel):
    await http_tunnel("app")
    async with H2Client(edge.config.http_port) as c:
        r = await c.request("GET", "/hello")
        assert (r.status, bytes(r.body)) == (200, b"hello")
        settings = c.conn.remote_settings
        assert settings.max_concurrent_streams == 100
        assert settings.initial_window_size == 256 * 1024
        assert settings.max_header_list_size == 64 * 1024
        # What the local service saw: an ordinary HTTP/1.1 request with forwarded headers.
        r = await c.request(
            "GET", "/headers", headers=[("cookie", "a=1"), ("cookie", "b=2"), ("expect", "x")]
        )
        headers = dict(json.loads(r.body)["headers"])
        assert headers["host"] == "app.localhost"
        assert headers["x-forwarded-proto"] == "http"
        assert headers["x-forwarded-for"] == "127.0.0.1"
        assert headers["cookie"] == "a=1; b=2"
        assert "expect" not in headers and not any(k.startswith(":") for k in headers)
        r = await c.request("HEAD", "/bytes?n=5000")
        assert (r.status, r.headers[b"content-length"], bytes(r.body)) == (200, b"5000", b"")
        r = await c.request("POST", "/digest", b"x" * 1000, headers=[("content-length", "1000")])
        assert json.loads(r.body)["size"] == 1000


async def test_first_bytes_split_across_reads(edge, http_tunnel):
    """The edge waits until the first bytes tell HTTP/2's preface from an HTTP/1.1 request."""
    await http_tunnel("app")
    c = await H2Client(edge.config.http_port).connect(split=7)
    try:
        assert (await c.request("GET", "/hello")).body == b"hello"
    finally:
        await c.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.config.http_port)
    try:
        for piece in (b"P", b"R", b"OPFIND / HTTP/1.1\r\nhost: app.localhost\r\n\r\n"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert answer.startswith(b"HTTP/1.1 404 ")  # the local service's own 404
    finally:
        writer.close()


async def test_fifty_concurrent_streams_on_one_connection(edge, http_tunnel, service):
    await http_tunnel("app")
    sizes = [1000 * i + i for i in range(1, 51)]
    async with H2Client(edge.config.http_port) as c:
        ids = [c.start("GET", f"/bytes?n={n}") for n in sizes]
        results = await asyncio.gather(*(c.response(i) for i in ids))
    for n, r in zip(sizes, results, strict=True):
        assert r.status == 200 and r.headers[b"content-length"] == str(n).encode()
        assert bytes(r.body) == pattern_bytes(n)
    assert service.connections >= 50  # one local connection per stream


async def test_streams_one_after_another_share_one_local_connection(service, agents):
    """As an HTTP/1.1 keep-alive visitor does: the next stream to the same tunnel takes the
    last one's tunnel stream and local connection, and they are let go once the connection
    has idled for stream_idle_timeout."""
    edge = await start_edge(edge_config(limits=Limits(stream_idle_timeout=0.5)))
    try:
        await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="app"))
        async with H2Client(edge.config.http_port) as c:
            ids = {(await c.request("GET", "/conn")).text for _ in range(5)}
            upload = await c.request("POST", "/echo", body=b"x" * 100_000)
            assert bytes(upload.body) == b"x" * 100_000
            assert (await c.request("GET", "/conn")).text in ids
            assert len(ids) == 1, "five streams one after another used several local ones"
            assert service.connections == 1
            assert sum(s.mux.stream_count for s in edge.sessions) == 1
            # Idle: the kept tunnel stream goes, the visitor connection stays.
            await wait_for(
                lambda: sum(s.mux.stream_count for s in edge.sessions) == 0,
                timeout=3,
                what="the kept tunnel stream let go",
            )
            assert (await c.request("GET", "/conn")).text not in ids
            assert service.connections == 2
    finally:
        await edge.shutdown(drain=0.2)


async def test_large_upload_and_download_alongside_small_streams(edge, http_tunnel):
    await http_tunnel("app")
    total = 5 * MB
    body = pattern_bytes(total)
    async with H2Client(edge.config.http_port) as c:
        started = time.monotonic()
        upload = asyncio.ensure_future(c.request("POST", "/digest", body))
        download = asyncio.ensure_future(c.request("GET", f"/bytes?n={total}"))
        await asyncio.sleep(0.05)
        small = [await c.request("GET", "/hello") for _ in range(5)]
        assert all(r.body == b"hello" for r in small)
        small_done = time.monotonic()
        up, down = await asyncio.gather(upload, download)
    assert json.loads(up.body) == {"sha256": hashlib.sha256(body).hexdigest(), "size": total}
    assert len(down.body) == total and bytes(down.body) == body
    assert small_done - started < 5


async def test_stalled_upload_holds_one_window_and_gives_it_back(edge, http_tunnel):
    """/hang never reads its body: the edge stops granting window on that stream (the body
    waits in the client, not in the edge), other streams flow, and a cancelled stream's share
    of the connection window comes back (five stalls would otherwise use it all up)."""
    await http_tunnel("app")
    async with H2Client(edge.config.http_port) as c:
        for _ in range(5):
            stream_id = c.start("POST", "/hang", end=False)
            sending = asyncio.ensure_future(c.send_body(stream_id, pattern_bytes(16 * MB)))
            window = functools.partial(c.conn.local_flow_control_window, stream_id)
            await wait_for(lambda w=window: w() == 0, what="stall")
            await asyncio.sleep(0.2)
            assert c.conn.local_flow_control_window(stream_id) == 0, "the edge kept granting"
            assert not sending.done()
            assert (await c.request("GET", "/hello")).body == b"hello"
            c.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
            c.flush()
            sending.cancel()
        r = await c.request("POST", "/digest", pattern_bytes(2 * MB))
        assert json.loads(r.body)["size"] == 2 * MB


async def test_client_that_reads_nothing_holds_bounded_memory(edge, http_tunnel):
    await http_tunnel("app")
    async with H2Client(edge.config.http_port) as c:
        stream_id = c.start("GET", f"/bytes?n={20 * MB}")
        c.unread.add(stream_id)
        visitors: list[H2Visitor] = []

        def opened() -> bool:
            visitors[:] = [v for v in edge.visitors if isinstance(v, H2Visitor)]
            return bool(visitors) and stream_id in visitors[0].streams

        await wait_for(opened, what="stream")
        stream = visitors[0].streams[stream_id]
        await wait_for(lambda: stream.buffered > 0, what="backlog")
        await asyncio.sleep(0.3)
        # At most what the stream had queued when it reported backlog, plus the tunnel
        # window the agent had in flight.
        assert stream.buffered <= 65535 + 256 * 1024 + 64 * 1024
        assert len(c.results[stream_id].body) <= 65535
        assert (await c.request("GET", "/hello")).body == b"hello"


async def test_response_headers_fit_http2_and_trailers_pass_both_ways(edge, agents):
    """A local service that answers with hop-by-hop headers and trailers (and reads the
    request's trailers): HTTP/2 gets neither the former, and both of the latter."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        got = b"none"
        if b"transfer-encoding: chunked" in head.lower():
            while True:
                size = int((await reader.readline()).split(b";")[0].strip(), 16)
                if size == 0:
                    break
                await reader.readexactly(size + 2)
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"x-checksum":
                    got = value.strip()
        writer.write(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n"
            b"connection: keep-alive, x-hop\r\nkeep-alive: timeout=5\r\nx-hop: 1\r\n"
            b"proxy-connection: keep-alive\r\nX-End: 1\r\n\r\n"
            b"5\r\nhello\r\n0\r\nx-got: " + got + b"\r\nx-trailer: yes\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        await agents.start(edge, TunnelSpec("http", "127.0.0.1", port, name="trail"))
        async with H2Client(edge.config.http_port, "trail.localhost") as c:
            r = await c.request("POST", "/", b"data", trailers=[(b"x-checksum", b"abc123")])
    finally:
        server.close()
    assert r.status == 200 and r.body == b"hello"
    for name in (b"connection", b"keep-alive", b"x-hop", b"proxy-connection", b"upgrade"):
        assert name not in r.headers
    assert b"transfer-encoding" not in r.headers
    assert r.headers[b"x-end"] == b"1"
    assert r.trailers == {b"x-got": b"abc123", b"x-trailer": b"yes"}


async def test_unknown_host_is_404_response(edge, http_tunnel):
    await http_tunnel("app")
    async with H2Client(edge.config.http_port, "nope.localhost") as c:
        r = await c.request("GET", "/")
        assert r.status == 404 and r.headers[b"content-type"].startswith(b"text/html")
        assert "No tunnel is serving nope.localhost" in r.text
        # The connection stays usable after an error page.
        assert (await c.request("GET", "/")).status == 404


async def test_local_service_down_is_502(edge, agents):
    await agents.start(edge, TunnelSpec("http", "127.0.0.1", _free_port(), name="down"))
    async with H2Client(edge.config.http_port, "down.localhost") as c:
        r = await c.request("GET", "/")
    assert r.status == 502 and "could not reach its local service" in r.text


async def test_oversized_head_is_431_and_connection_survives(edge, http_tunnel):
    await http_tunnel("app")
    async with H2Client(edge.config.http_port) as c:
        r = await c.request("GET", "/hello", headers=[("x-big", "a" * 20000)])
        assert r.status == 431
        assert (await c.request("GET", "/hello")).body == b"hello"


async def test_malformed_requests_are_reset_and_the_connection_goes_on(edge, http_tunnel):
    """RFC 9113 8.1.1: a malformed request is a stream error; the other streams, and the
    ones after it, are served. CR LF in a value must never reach the HTTP/1.1 side."""
    await http_tunnel("app")
    async with H2Client(edge.config.http_port) as c:
        c.conn.config.validate_outbound_headers = False  # let the client send what it is told
        c.conn.config.normalize_outbound_headers = False
        good = c.start("GET", "/hello")
        bad = [
            c.start("GET", "/echo-headers", [(name, value)])
            for name, value in (
                ("X-Upper", "1"),
                ("x-split", "a\r\nx-injected: 1"),
                ("connection", "close"),
                ("te", "gzip"),
                ("x-lead", " padded"),
            )
        ]
        for stream_id in bad:
            r = await c.response(stream_id)
            assert r.reset == ErrorCodes.PROTOCOL_ERROR and r.status == 0, stream_id
        assert (await c.response(good)).body == b"hello"
        sid = c.start("POST", "/echo", end=False)
        await c.send_body(sid, b"data", trailers=[(b"x-sum", b"ok\r\nx-injected: 1")])
        assert (await c.response(sid)).reset == ErrorCodes.PROTOCOL_ERROR
        assert (await c.request("GET", "/hello")).body == b"hello"
        assert c.terminated is None


async def test_slow_local_service_is_504(service, agents):
    edge = await start_edge(edge_config(limits=Limits(response_timeout=0.5)))
    try:
        await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="app"))
        async with H2Client(edge.config.http_port) as c:
            hang = c.start("GET", "/hang")
            r = await c.response(hang, timeout=3)
            assert r.status == 504 and "did not answer within 0.5 seconds" in r.text
            assert (await c.request("GET", "/hello")).body == b"hello"
    finally:
        await edge.shutdown(drain=0.2)


async def test_idle_connection_is_closed_with_goaway(service, agents):
    edge = await start_edge(edge_config(limits=Limits(idle_timeout=0.3)))
    try:
        await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="app"))
        async with H2Client(edge.config.http_port) as c:
            assert (await c.request("GET", "/hello")).status == 200
            started = time.monotonic()
            assert await c.wait_closed(3) == ErrorCodes.NO_ERROR
            assert time.monotonic() - started < 2
    finally:
        await edge.shutdown(drain=0.2)


async def test_shutdown_lets_open_streams_finish_then_goes_away(service, agents):
    edge = await start_edge()
    try:
        await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="app"))
        async with H2Client(edge.config.http_port) as c:
            slow = c.start("GET", "/slow?s=0.5")
            await wait_for(lambda: any(s.sinks for s in edge.sessions), what="stream")
            started = time.monotonic()
            shutdown = asyncio.ensure_future(edge.shutdown(drain=5))
            r = await c.response(slow)
            assert (r.status, bytes(r.body)) == (200, b"slow")
            assert await c.wait_closed(3) == ErrorCodes.NO_ERROR
            await asyncio.wait_for(shutdown, 3)
            assert time.monotonic() - started < 2.5
    finally:
        await edge.shutdown(drain=0.2)


# -- protections ----------------------------------------------------------------------


async def test_streams_past_the_limit_are_refused(edge, http_tunnel):
    """A client that opens 120 streams before it has read the edge's SETTINGS: 100 are
    served, the rest refused (REFUSED_STREAM, safe to retry), and the connection lives."""
    await http_tunnel("app")
    c = await H2Client(edge.config.http_port).connect(start_reading=False)
    try:
        ids = [c.start("GET", "/slow?s=0.3") for _ in range(120)]
        c.start_reading()
        results = [await c.response(i) for i in ids]
        served = [r for r in results if r.status == 200]
        refused = [r for r in results if r.reset == ErrorCodes.REFUSED_STREAM]
        assert (len(served), len(refused)) == (100, 20)
        assert all(r.reset is None for r in results[:100])
        assert (await c.request("GET", "/hello")).body == b"hello"
        assert c.terminated is None
    finally:
        await c.close()


def _rapid_reset(c: H2Client) -> None:
    for _ in range(300):
        stream_id = c.start("GET", "/hello")
        c.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
    c.flush()


def _ping_flood(c: H2Client) -> None:
    for i in range(1100):
        c.conn.ping(i.to_bytes(8, "big"))
    c.flush()


def _settings_flood(c: H2Client) -> None:
    for _ in range(1100):
        c.conn.update_settings({})
    c.flush()


def _empty_data_flood(c: H2Client) -> None:
    stream_id = c.start("POST", "/digest", end=False)
    for _ in range(1100):
        c.conn.send_data(stream_id, b"")
    c.flush()


def _hpack_bomb(c: H2Client) -> None:
    # One 4 KB header enters the HPACK dynamic table; each repeat costs the sender one byte
    # and the receiver 4 KB: 20 of them decode past the 64 KiB header list limit.
    c.start("GET", "/hello", [("x-bomb", "a" * 4000)] * 20)


def _broken_frame(c: H2Client) -> None:
    assert c.writer is not None
    c.writer.write(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00")  # DATA on stream 0


_CALM = {ErrorCodes.ENHANCE_YOUR_CALM}


@pytest.mark.parametrize(
    ("abuse", "codes", "counted"),
    [
        (_rapid_reset, _CALM, True),
        (_ping_flood, _CALM, True),
        (_settings_flood, _CALM, True),
        (_empty_data_flood, _CALM, True),
        # h2 refuses these itself, before the edge sees a stream.
        (_hpack_bomb, {*_CALM, ErrorCodes.COMPRESSION_ERROR}, False),
        (_broken_frame, {ErrorCodes.PROTOCOL_ERROR}, False),
    ],
    ids=[
        "rapid-reset",
        "ping-flood",
        "settings-flood",
        "empty-data-flood",
        "hpack-bomb",
        "protocol-error",
    ],
)
async def test_abusive_client_is_cut_off_others_unaffected(
    edge, http_tunnel, service, abuse, codes, counted
):
    await http_tunnel("app")
    async with H2Client(edge.config.http_port) as normal, H2Client(edge.config.http_port) as bad:
        slow = normal.start("GET", "/slow?s=0.3")  # in flight while the other one misbehaves
        assert (await normal.request("GET", "/hello")).body == b"hello"
        before = service.connections
        abuse(bad)
        assert await bad.wait_closed(5) in codes
        if abuse is _rapid_reset:
            # Streams opened and reset in one read never reach the local service.
            assert service.connections - before < 50
        r = await normal.response(slow)
        assert (r.status, bytes(r.body)) == (200, b"slow")
        assert (await normal.request("GET", "/hello")).body == b"hello"
        assert normal.terminated is None and not normal.closed.is_set()
    assert edge.metrics.refusals["h2_abuse"] == int(counted)
