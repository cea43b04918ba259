"""Public HTTP/1.1 listener: one ``HttpVisitor`` per visitor TCP connection.

Theory of operation
-------------------
The visitor's bytes go through a server-role HTTP/1 connection (``visitor``). Each request is
routed by its Host header to a tunnel; the edge opens one tunnel stream per visitor
connection and writes the request, re-framed by a client-role connection (``origin``), into
it. The agent pipes that stream to the local service, so a keep-alive visitor connection is
a keep-alive connection to the local service. The response comes back on the stream, is
parsed by ``origin`` and re-framed by ``visitor``.

Bodies stream both ways chunk by chunk; nothing is buffered whole. Backpressure:
- visitor -> stream: if the stream's window is used up, stop reading the visitor until the
  stream drains (``stream_writable``);
- stream -> visitor: credit goes back to the agent only while the visitor's socket buffer is
  below its high-water mark, so a visitor that reads nothing stalls its stream after one
  window and holds at most that much edge memory.

Pipelined requests wait in the parser (reading paused) until the response in flight ends.
After a 101 response both sides switch to raw bytes (WebSocket, any Upgrade), with the bytes
each parser had read past the switch handed on.

One timer per connection, re-armed between phases: waiting for a request head (slowloris
guard), reading a request body, waiting for the response head (504), keep-alive idle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import h11

from edge import http1
from edge.agent_session import StreamUnavailable
from edge.pages import TITLES, error_page
from edge.routing import Tunnel, normalize_host
from proto.frames import ResetCode
from relay.session import set_nodelay

if TYPE_CHECKING:
    from edge.agent_session import AgentSession
    from edge.server import Edge

log = logging.getLogger("burrow.edge.http")

_PHASE_IDLE = 0  # between requests
_PHASE_HEAD = 1  # first byte of a request head seen
_PHASE_BODY = 2  # head sent upstream, reading the visitor's body
_PHASE_WAIT = 3  # request complete, waiting for the response head
_PHASE_RESPONSE = 4  # response streaming
_PHASE_RAW = 5  # switched protocols


class HttpVisitor(asyncio.Protocol):
    __slots__ = (
        "_deadline",
        "_eof_in",
        "_eof_out",
        "_last_read",
        "_read_paused",
        "_timer",
        "_unacked",
        "_write_paused",
        "client",
        "closing",
        "edge",
        "host",
        "method",
        "origin",
        "phase",
        "scheme",
        "session",
        "started",
        "stream_id",
        "transport",
        "tunnel",
        "visitor",
    )

    def __init__(self, edge: Edge, scheme: str = "http") -> None:
        self.edge = edge
        self.scheme = scheme
        self.transport: asyncio.Transport | None = None
        self.visitor = http1.visitor_connection(edge.config.limits.max_header_bytes)
        self.client = ("", 0)
        self.tunnel: Tunnel | None = None
        self.session: AgentSession | None = None
        self.stream_id = 0
        self.origin: http1.Http1Connection | None = None
        self.phase = _PHASE_IDLE
        self.method = b"GET"
        self.host = ""
        self.started = 0.0
        self.closing = False
        self._read_paused = False
        self._write_paused = False
        self._unacked = 0
        self._eof_in = False
        self._eof_out = False
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._last_read = 0.0

    # -- visitor socket -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = transport  # type: ignore[assignment]
        set_nodelay(transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.client = (peer[0], peer[1])
        self.edge.visitors.add(self)
        self._arm(self.edge.config.limits.idle_timeout)

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase == _PHASE_RAW:
            if self.session is not None and not self.session.write(self.stream_id, data):
                self._pause_reading()
            return
        if phase == _PHASE_IDLE:
            self.phase = _PHASE_HEAD
            self._arm(self.edge.config.limits.header_timeout)
        elif phase == _PHASE_BODY:
            self._last_read = time.monotonic()
        self.visitor.receive_data(data)
        self._process_visitor()

    def eof_received(self) -> bool:
        if self.phase == _PHASE_RAW:
            self._eof_in = True
            if self.session is not None:
                self.session.end(self.stream_id)
            if self._eof_out:
                self._close()
                return False
            return True
        # Like nginx without proxy_ignore_client_abort: a visitor that hangs up mid-request
        # gets nothing more, and the local service's connection is let go. (A visitor cannot
        # be told apart from one that only half-closed, and HTTP clients do not half-close.)
        self._close()
        return False

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        n, self._unacked = self._unacked, 0
        if n and self.session is not None:
            self.session.ack(self.stream_id, n)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.edge.visitors.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._drop_stream("the visitor closed the connection")

    # -- requests -------------------------------------------------------------------------

    def _process_visitor(self) -> None:
        visitor = self.visitor
        while not self.closing:
            try:
                event = visitor.next_event()
            except http1.RemoteProtocolError as exc:
                status = exc.error_status_hint if exc.error_status_hint >= 400 else 400
                self._refuse(status, f"The request could not be read: {exc}.")
                return
            t = type(event)
            if t is h11.Data:
                self._send_upstream(event)
            elif t is h11.Request:
                self._on_request(event)
            elif t is h11.EndOfMessage:
                self._send_upstream(event)
                if self.phase == _PHASE_BODY:  # the response has not started early
                    self.phase = _PHASE_WAIT
                    self._arm(self.edge.config.limits.response_timeout)
            elif event is h11.NEED_DATA:
                return
            elif event is h11.PAUSED:
                # A pipelined request (or an upgrade) waits until the response in flight ends.
                self._pause_reading()
                return
            elif t is h11.ConnectionClosed:
                if self.phase in (_PHASE_IDLE, _PHASE_HEAD):
                    self._close()
                return

    def _on_request(self, request: h11.Request) -> None:
        limits = self.edge.config.limits
        self.method = request.method
        self.started = time.monotonic()
        if len(request.headers) > limits.max_header_count:
            self._refuse(431, f"The request has more than {limits.max_header_count} headers.")
            return
        # The parser bounds only a head that arrives in pieces; a whole one in a single read
        # is measured here.
        head_size = len(request.target) + sum(len(n) + len(v) + 4 for n, v in request.headers)
        if head_size > limits.max_header_bytes:
            self._refuse(431, f"The request head is over {limits.max_header_bytes} bytes.")
            return
        if request.method == b"CONNECT":
            self._refuse(405, "CONNECT is not served by Burrow tunnels.")
            return
        host_header = b""
        for name, value in request.headers:
            if name == b"host":
                host_header = value
                break
        if not host_header:
            self._refuse(400, "The request has no Host header, so no tunnel can be chosen.")
            return
        host = normalize_host(host_header.decode("latin-1"))
        self.host = host
        edge = self.edge
        pool = edge.routes.lookup_host(host)
        tunnel = pool.pick() if pool is not None else None
        if tunnel is None:
            edge.metrics.refused("unknown_host")
            self._refuse(
                404,
                f"No tunnel is serving {host} right now. If it is yours, start it with "
                f"`burrow http PORT --name {host.split('.', 1)[0]}`.",
            )
            return
        if tunnel is not self.tunnel or self.origin is None:
            self._drop_stream("a new tunnel was chosen")
            try:
                self._open_stream(tunnel)
            except StreamUnavailable as exc:
                self._refuse(exc.status, exc.detail)
                return
        self.phase = _PHASE_BODY
        self._last_read = time.monotonic()
        self._arm(limits.body_idle_timeout)
        if self.visitor.client_is_waiting_for_100_continue:
            # The edge answers the expectation itself as soon as the request is routed
            # (RFC 9110 15.2.1): many local services never send 100, and the visitor should
            # not stall on them. The header is not forwarded.
            self._send_visitor(h11.InformationalResponse(status_code=100, headers=[]))
        self._send_upstream(
            h11.Request(
                method=request.method,
                target=request.target,
                headers=self._forward_headers(request.headers, host_header),
            )
        )

    def _open_stream(self, tunnel: Tunnel) -> None:
        session = tunnel.session
        self.stream_id = session.open_visitor_stream(tunnel, "http", self.client, self)
        self.session = session
        self.tunnel = tunnel
        self.origin = http1.origin_connection()

    def _forward_headers(
        self, headers: Sequence[tuple[bytes, bytes]], host: bytes
    ) -> list[tuple[bytes, bytes]]:
        """Copy the request headers and add X-Forwarded-* and Forwarded (RFC 7239)."""
        ip = self.client[0]
        out: list[tuple[bytes, bytes]] = []
        xff = b""
        forwarded = b""
        for name, value in headers:
            if name == b"x-forwarded-for":
                xff = value
            elif name == b"forwarded":
                forwarded = value
            elif name not in (b"x-forwarded-proto", b"x-forwarded-host", b"expect"):
                out.append((name, value))
        ip_b = ip.encode()
        node = b'"[' + ip_b + b']"' if b":" in ip_b else ip_b
        proto = self.scheme.encode()
        out.append((b"x-forwarded-for", xff + b", " + ip_b if xff else ip_b))
        out.append((b"x-forwarded-proto", proto))
        out.append((b"x-forwarded-host", host))
        # RFC 7239: a host with a port is not a token and must be quoted.
        host_value = b'"' + host + b'"' if b":" in host else host
        this_hop = b"for=" + node + b";host=" + host_value + b";proto=" + proto
        out.append((b"forwarded", forwarded + b", " + this_hop if forwarded else this_hop))
        return out

    def _send_upstream(self, event: object) -> None:
        origin = self.origin
        session = self.session
        if origin is None or session is None:
            return
        try:
            data = origin.send(event)
        except http1.LocalProtocolError as exc:
            self._refuse(400, f"The request cannot be forwarded: {exc}.")
            return
        if data and not session.write(self.stream_id, data):
            self._pause_reading()

    # -- responses (StreamSink) -----------------------------------------------------------

    def stream_data(self, data: bytes) -> None:
        transport = self.transport
        session = self.session
        if transport is None or session is None:
            return
        stream_id = self.stream_id
        if self.phase == _PHASE_RAW:
            transport.write(data)
        else:
            origin = self.origin
            if origin is None:
                return
            origin.receive_data(data)
            self._process_origin()
        if session.closed:
            return
        if self._write_paused:
            self._unacked += len(data)
        else:
            session.ack(stream_id, len(data))

    def _process_origin(self) -> None:
        origin = self.origin
        transport = self.transport
        assert transport is not None
        while origin is not None and not self.closing:
            try:
                event = origin.next_event()
            except http1.RemoteProtocolError as exc:
                self._origin_failed(f"The local service sent an invalid HTTP response ({exc}).")
                return
            t = type(event)
            if t is h11.Data:
                self._send_visitor(event)
            elif t is h11.Response:
                self.phase = _PHASE_RESPONSE
                self._disarm()
                self.edge.metrics.status(event.status_code)
                self._send_visitor(
                    h11.Response(
                        status_code=event.status_code, headers=event.headers, reason=event.reason
                    )
                )
            elif t is h11.EndOfMessage:
                self._send_visitor(event)
                self._response_done()
                return
            elif t is h11.InformationalResponse:
                if event.status_code == 101:
                    self._switch_protocols(event)
                    return
                if event.status_code != 100:  # 100 was sent by the edge already
                    self._send_visitor(event)
            elif event is h11.NEED_DATA or event is h11.PAUSED:
                return
            elif t is h11.ConnectionClosed:
                self._drop_stream("the local service closed the connection")
                return

    def _send_visitor(self, event: object) -> None:
        try:
            data = self.visitor.send(event)
        except http1.LocalProtocolError as exc:
            self._origin_failed(f"The local service's response cannot be relayed ({exc}).")
            return
        if data and self.transport is not None:
            self.transport.write(data)

    def _response_done(self) -> None:
        edge = self.edge
        edge.metrics.request_done(self.phase, time.monotonic() - self.started)
        visitor = self.visitor
        origin = self.origin
        if origin is not None and origin.our_state is h11.DONE and origin.their_state is h11.DONE:
            origin.start_next_cycle()
        else:
            self._drop_stream("the local service closed the connection")
        if visitor.our_state is h11.DONE and visitor.their_state is h11.DONE and not edge.draining:
            visitor.start_next_cycle()
            self.phase = _PHASE_IDLE
            self._arm(edge.config.limits.idle_timeout)
            self._resume_reading()
            self._process_visitor()  # a pipelined request may be waiting in the parser
        else:
            self._close()

    def _switch_protocols(self, event: h11.InformationalResponse) -> None:
        """101: from here on the stream and the visitor socket are raw byte pipes."""
        origin = self.origin
        transport = self.transport
        session = self.session
        assert origin is not None and transport is not None and session is not None
        self._send_visitor(event)
        self.phase = _PHASE_RAW
        self._disarm()
        upstream_extra = origin.trailing_data[0]
        visitor_extra = self.visitor.trailing_data[0]
        self.origin = None
        if upstream_extra:
            transport.write(upstream_extra)
        if visitor_extra and not session.write(self.stream_id, visitor_extra):
            self._pause_reading()
            return
        self._resume_reading()

    def stream_end(self) -> None:
        if self.phase == _PHASE_RAW:
            self._eof_out = True
            transport = self.transport
            if transport is not None:
                if self._eof_in or not transport.can_write_eof():
                    self._close()
                else:
                    transport.write_eof()
            return
        origin = self.origin
        if origin is None:
            return
        if self.phase in (_PHASE_WAIT, _PHASE_BODY):
            self._fail(502, "The local service closed the connection without responding.")
        else:
            # A response read until close ends here; one cut short is aborted so the
            # visitor cannot mistake it for a whole one.
            origin.receive_data(b"")
            self._process_origin()
            if self.phase == _PHASE_RESPONSE and not self.closing:
                self._abort()
        self._drop_stream("")

    def stream_reset(self, code: int, reason: str) -> None:
        # The session has already forgotten the stream.
        self.session = None
        self.stream_id = 0
        self.origin = None
        self.tunnel = None
        phase = self.phase
        if self.closing:
            return
        if phase in (_PHASE_BODY, _PHASE_WAIT, _PHASE_HEAD):
            if code == ResetCode.REFUSED:
                self.edge.metrics.refused("local_refused")
                self._fail(
                    502,
                    f"The tunnel's agent could not reach its local service: {reason}. "
                    "Check that the service is running.",
                )
            elif code == ResetCode.TIMEOUT:
                self._fail(504, f"The tunnel's local service timed out: {reason}.")
            else:
                self.edge.metrics.refused("agent_gone")
                self._fail(502, f"The tunnel's agent went away ({reason or 'stream reset'}).")
        elif phase in (_PHASE_RESPONSE, _PHASE_RAW):
            self._abort()

    def stream_writable(self) -> None:
        self._resume_reading()

    # -- helpers --------------------------------------------------------------------------

    def _origin_failed(self, detail: str) -> None:
        if self.phase == _PHASE_RESPONSE:
            self._abort()
        else:
            self._fail(502, detail)
        self._drop_stream("invalid response")

    def _drop_stream(self, reason: str) -> None:
        session = self.session
        if session is not None:
            session.release(self.stream_id, reason)
        self.session = None
        self.stream_id = 0
        self.origin = None
        self.tunnel = None

    def _refuse(self, status: int, detail: str) -> None:
        """Answer a request the edge will not forward."""
        self._fail(status, detail)

    def _fail(self, status: int, detail: str) -> None:
        """Write an error page (if no response has started) and close the connection."""
        if self.closing or self.transport is None:
            return
        self.edge.metrics.status(status)
        if self.phase != _PHASE_RESPONSE:
            page = error_page(status, detail)
            body = b"" if self.method == b"HEAD" else page
            head = (
                f"HTTP/1.1 {status} {TITLES.get(status, 'Error')}\r\n"
                "content-type: text/html; charset=utf-8\r\n"
                f"content-length: {len(page)}\r\n"
                "cache-control: no-store\r\n"
                "x-burrow-error: 1\r\n"
                "connection: close\r\n\r\n"
            ).encode()
            self.transport.write(head + body)
        self._close()

    def close(self) -> None:
        self._close()

    def _close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self._disarm()
        self._drop_stream("the visitor connection closed")
        if self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        self.closing = True
        self._disarm()
        self._drop_stream("the visitor connection was aborted")
        if self.transport is not None:
            self.transport.abort()

    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self.transport is not None and not self.closing:
            self._read_paused = False
            self._last_read = time.monotonic()
            self.transport.resume_reading()

    # -- the connection's one timer -------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds
        if self._timer is None:
            self._timer = self.edge.loop.call_later(seconds, self._on_timer)
        elif self._timer.when() > self.edge.loop.time() + seconds:
            self._timer.cancel()
            self._timer = self.edge.loop.call_later(seconds, self._on_timer)

    def _disarm(self) -> None:
        self._deadline = 0.0

    def _on_timer(self) -> None:
        self._timer = None
        if self.closing or not self._deadline:
            return
        now = time.monotonic()
        limits = self.edge.config.limits
        deadline = self._deadline
        if self.phase == _PHASE_BODY:
            # Only the visitor's own silence counts: not a pause we imposed for backpressure.
            last = now if self._read_paused else self._last_read
            deadline = max(deadline, last + limits.body_idle_timeout)
        if now < deadline:
            self._timer = self.edge.loop.call_later(deadline - now, self._on_timer)
            return
        phase = self.phase
        if phase == _PHASE_IDLE:
            self._close()
        elif phase == _PHASE_HEAD:
            self.edge.metrics.refused("header_timeout")
            self._fail(408, "The request head did not arrive in time.")
        elif phase == _PHASE_BODY:
            self._fail(408, "The request body stopped arriving.")
        elif phase == _PHASE_WAIT:
            self.edge.metrics.refused("response_timeout")
            if self.session is not None:
                self.session.reset(self.stream_id, ResetCode.TIMEOUT, "response timeout")
                self.session = None
            self._fail(
                504,
                f"The tunnel's local service did not answer within "
                f"{limits.response_timeout:g} seconds.",
            )
