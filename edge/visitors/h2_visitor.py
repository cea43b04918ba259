"""Public HTTP/2 visitors: one ``H2Visitor`` per visitor connection (h2c by prior knowledge on
the plain listener, handed over by ``HttpVisitor``).

Theory of operation
-------------------
h2's ``H2Connection`` is the sans-IO core: bytes in, events out, frames queued for sending.
This shell carries each visitor stream to the tunnel as an ``OriginExchange`` of its own (one
tunnel stream; the agent opens a fresh connection to the local service for it), so the local
service sees ordinary HTTP/1.1 requests. ``_VisitorStream`` is the ``ExchangeFront`` of one
stream; everything that touches the h2 connection happens here in the shell.

Flow control, both ways:

- Request bodies: DATA is acknowledged to the visitor (``acknowledge_received_data``) only once
  the tunnel stream took it. While the tunnel stream's window is used up, the visitor's stream
  window stays closed, so a local service that reads slowly holds at most one h2 window
  (``INITIAL_WINDOW``) of a stream's body at the edge.
- Responses: bytes from the tunnel wait in a per-stream queue and go out as the visitor's
  windows allow. A stream with more than ``_BACKLOG`` bytes queued, or any stream while the
  socket is above its high-water mark, is ``backlogged``: its exchange holds tunnel credit back
  until the queue drains.

Protections, per connection: streams past the advertised concurrency limit are refused
(RFC 9113 5.1.2); every stream reset, whoever sent it (the visitor's own, rapid reset,
CVE-2023-44487; the ones h2 or the edge send for a visitor's misstep, a stream WINDOW_UPDATE
that overflows or DATA after END_STREAM, "MadeYouReset", CVE-2025-8671; refused and malformed
streams), the streams opened, and frames that cost work but carry nothing (PING, SETTINGS,
empty DATA; CVE-2019-9512, CVE-2019-9518) are counted over a sliding window, and a visitor
past any limit gets GOAWAY(ENHANCE_YOUR_CALM). h2 bounds header blocks itself (HPACK bombs,
CVE-2016-6581; CONTINUATION floods) and answers any protocol violation with a GOAWAY, which is
sent before the connection closes.

One timer per connection, re-armed: the idle timeout while no stream is open; per stream
the request body's idle timeout (408), the wait for the response head (504), and a response
the visitor's stream window has held up for ``send_timeout`` (the stream is reset); and a
socket whose writing stays paused that long (the visitor takes nothing: the connection is
aborted, its queued bytes let go).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
from typing import TYPE_CHECKING, Final, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack.hpack
import hpack.table
from h2.errors import ErrorCodes
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from edge.admin.access_log import INFO, access, log_access
from edge.http1.events import Headers, RequestHead, ResponseHead, UsageError
from edge.link.agent_session import StreamUnavailable
from edge.pipeline import (
    AGENT_LINK,
    EdgeAnswer,
    FilterRequest,
    RequestStage,
    body_filters,
    response_filters,
)
from edge.routing.table import normalize_host
from edge.visitors.exchange import OriginExchange
from edge.visitors.forwarding import forward_headers, trailer_fields
from edge.visitors.h2_fields import CONNECTION_SPECIFIC, field_problem
from edge.visitors.request_ids import request_id_for
from proto.frames import ResetCode
from relay.session import set_nodelay

if TYPE_CHECKING:
    from edge.context import EdgeContext
    from edge.routing.table import Tunnel

log = logging.getLogger("burrow.edge.h2")

# hpack traces every field it encodes or decodes at DEBUG: visitors' cookies and credentials,
# which the edge does not log at any level, and two Python calls a field even with DEBUG off
# (19 a request, a tenth of the edge's time per HTTP/2 request). Its loggers are swapped for
# h2's no-op one.
hpack.hpack.log = hpack.table.log = h2.config.DummyLogger()  # type: ignore[assignment]

MAX_CONCURRENT_STREAMS: Final = 100
INITIAL_WINDOW: Final = 256 * 1024  # per stream, as the tunnel's stream windows
# Shared by all streams of the connection: a few stalled uploads may hold it, so it is several
# stream windows, but it bounds the request bytes one connection can have in flight.
CONNECTION_WINDOW: Final = 4 * INITIAL_WINDOW
MAX_HEADER_LIST: Final = 64 * 1024
# h2 treats a HEADERS frame past its own MAX_CONCURRENT_STREAMS as a connection error; RFC 9113
# 5.1.2 makes it a stream error. So h2 enforces this higher ceiling, and streams between the
# advertised limit and it are refused one by one.
_HARD_STREAM_LIMIT: Final = 2 * MAX_CONCURRENT_STREAMS
# Queued response bytes per stream (one default h2 window) past which tunnel credit is held.
_BACKLOG: Final = 65535

ABUSE_PERIOD: Final = 10.0  # seconds
MAX_RESETS: Final = 200  # streams reset (by either side), refused or malformed per ABUSE_PERIOD
MAX_IDLE_FRAMES: Final = 1000  # PING, SETTINGS, empty DATA, unknown frames per ABUSE_PERIOD

# RFC 9113 8.2.2: connection-specific fields have no place in HTTP/2 (``field_problem``
# refuses them from a visitor; responses drop them). TE is hop-by-hop in HTTP/1.1 too.
_CONNECTION_SPECIFIC: Final = CONNECTION_SPECIFIC | {b"te"}
# HTTP/1.1 servers may answer 411 to these without a length; an HTTP/2 request needs none.
_LENGTH_EXPECTED: Final = frozenset((b"POST", b"PUT", b"PATCH"))

_StreamReset = h2.events.StreamReset
_DataReceived = h2.events.DataReceived
_RequestReceived = h2.events.RequestReceived
_StreamEnded = h2.events.StreamEnded
_WindowUpdated = h2.events.WindowUpdated
_TrailersReceived = h2.events.TrailersReceived
_RemoteSettingsChanged = h2.events.RemoteSettingsChanged
_ConnectionTerminated = h2.events.ConnectionTerminated
_IDLE_FRAME_EVENTS: Final = (
    h2.events.PingReceived,
    h2.events.PingAckReceived,
    h2.events.UnknownFrameReceived,
)


def _settings(max_streams: int) -> dict[SettingCodes, int]:
    return {
        SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
        SettingCodes.INITIAL_WINDOW_SIZE: INITIAL_WINDOW,
        SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
    }


class _Rate:
    """Events per ``period`` over a sliding window, estimated from two fixed windows (the
    previous one's count weighted by how much of it the sliding window still covers), so it
    takes constant memory whatever the limit."""

    __slots__ = ("current", "limit", "period", "previous", "start")

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self.start = 0.0
        self.current = 0
        self.previous = 0

    def hit(self, now: float) -> bool:
        """Count one event; True once the rate is over the limit."""
        elapsed = now - self.start
        if elapsed >= self.period:
            windows = int(elapsed // self.period)
            self.previous = self.current if windows == 1 else 0
            self.current = 0
            self.start += windows * self.period
            elapsed -= windows * self.period
        self.current += 1
        return self.current + self.previous * (1.0 - elapsed / self.period) > self.limit


def _response_headers(headers: Headers) -> Headers:
    """HTTP/1.1 response (or trailer) fields as HTTP/2 allows them: lowercase names, without
    connection-specific fields or the ones the Connection field names (RFC 9113 8.2.2)."""
    named: set[bytes] | None = None
    for name, value in headers:
        if name.lower() == b"connection":
            named = named or set()
            named.update(token.strip().lower() for token in value.split(b","))
    out: Headers = []
    for name, value in headers:
        name = name.lower()
        if name in _CONNECTION_SPECIFIC or (named and name in named):
            continue
        out.append((name, value))
    return out


class _VisitorStream:
    """One HTTP/2 stream: the ``ExchangeFront`` of its exchange, and its share of the
    connection's state (flow control both ways, the response queue, the deadline)."""

    __slots__ = (
        "authority",
        "blocked",
        "body_bytes",
        "body_since",
        "buffered",
        "chunked",
        "chunks",
        "closed",
        "end_queued",
        "exchange",
        "filtered",
        "head_sent",
        "method",
        "offset",
        "path",
        "request_ended",
        "request_id",
        "response_ended",
        "since",
        "stalled_at",
        "started",
        "status",
        "stream_id",
        "trailers_in",
        "trailers_out",
        "unacked",
        "visitor",
    )

    def __init__(
        self,
        visitor: H2Visitor,
        stream_id: int,
        request: tuple[bytes, bytes, bytes, bytes],
        now: float,
    ) -> None:
        self.visitor = visitor
        self.stream_id = stream_id
        self.method, self.authority, self.path, self.request_id = request
        self.status = 0
        self.exchange: OriginExchange | None = None
        self.filtered: FilterRequest | None = None  # the request's, while its filters run
        self.started = now
        self.since = now  # last request byte, or the request's end while awaiting the head
        self.closed = False
        # request side
        self.chunked = False  # the body goes upstream chunked (so trailers can follow)
        self.blocked = False  # the tunnel stream's window is used up
        self.unacked = 0  # request bytes received but not yet acknowledged to the visitor
        # The request body's bytes since body_since (its minimum rate, body_min_rate).
        self.body_bytes = 0
        self.body_since = now
        self.request_ended = False
        self.trailers_in: Headers | None = None
        # response side
        self.head_sent = False  # a final response head went out
        self.chunks: collections.deque[bytes] = collections.deque()
        self.offset = 0  # into chunks[0]
        self.buffered = 0
        self.end_queued = False
        self.trailers_out: Headers | None = None
        self.response_ended = False  # END_STREAM went out
        self.stalled_at = 0.0  # since when the visitor's window holds the response back

    @property
    def backlogged(self) -> bool:
        return self.buffered > _BACKLOG or self.visitor.write_paused

    @property
    def log_extra(self) -> dict[str, str]:
        return {"request_id": self.request_id.decode()}

    def log_access(self, seconds: float | None) -> None:
        visitor = self.visitor
        log_access(
            "h2",
            self.request_id,
            visitor.client[0],
            self.method,
            self.authority,
            self.path,
            self.status,
            seconds,
        )

    def exchange_head(self, head: ResponseHead) -> None:
        self.visitor.send_head(self, head)

    def exchange_data(self, data: bytes) -> None:
        self.visitor.send_body(self, data)

    def exchange_end(self, trailers: Headers) -> None:
        self.visitor.send_end(self, trailers)

    def exchange_switched(self, head: ResponseHead, leftover: bytes) -> None:
        # HTTP/2 has no Upgrade (RFC 9113 8.6); h2 refuses requests that ask for one, so only a
        # local service that switches unasked gets here.
        self.visitor.stream_failed(
            self, 502, "The local service switched protocols (101), which HTTP/2 cannot carry."
        )

    def exchange_raw(self, data: bytes) -> None:
        pass  # never raw: a switch fails the stream

    def exchange_raw_end(self) -> None:
        pass

    def exchange_failed(self, status: int, detail: str) -> None:
        self.exchange = None  # the exchange has let its tunnel stream go already
        self.visitor.stream_failed(self, status, detail)

    def exchange_blocked(self) -> None:
        self.blocked = True  # acknowledge no more of the body until exchange_writable

    def exchange_writable(self) -> None:
        self.visitor.stream_writable(self)

    def exchange_flush(self) -> None:
        self.visitor.stream_flush(self)


class _Parked:
    """The front of an exchange waiting between streams: nothing asked for its bytes. One
    that fails while parked has let its tunnel stream go (``exchange.open`` is False), and is
    dropped when it is next looked at."""

    __slots__ = ()

    backlogged = False

    def exchange_head(self, head: ResponseHead) -> None:
        pass

    def exchange_data(self, data: bytes) -> None:
        pass

    def exchange_end(self, trailers: Headers) -> None:
        pass

    def exchange_switched(self, head: ResponseHead, leftover: bytes) -> None:
        pass

    def exchange_raw(self, data: bytes) -> None:
        pass

    def exchange_raw_end(self) -> None:
        pass

    def exchange_failed(self, status: int, detail: str) -> None:
        pass

    def exchange_blocked(self) -> None:
        pass

    def exchange_writable(self) -> None:
        pass

    def exchange_flush(self) -> None:
        pass


_PARKED: Final = _Parked()


class H2Visitor(asyncio.Protocol):
    __slots__ = (
        "_goaway_sent",
        "_idle_frames",
        "_idle_since",
        "_last_stream",
        "_opened",
        "_parked",
        "_paused_at",
        "_resets",
        "_server_name",
        "_silent",
        "_timer",
        "client",
        "closing",
        "conn",
        "edge",
        "phase",
        "scheme",
        "stage",
        "streams",
        "transport",
        "write_paused",
    )

    def __init__(self, edge: EdgeContext, scheme: str = "http") -> None:
        self.edge = edge
        self.scheme = scheme
        # Limits, host, special paths, routing and filters: the same as HTTP/1.1's.
        self.stage = RequestStage(edge, scheme)
        self.transport: asyncio.Transport | None = None
        self.client = ("", 0)
        self.streams: dict[int, _VisitorStream] = {}
        self.phase = 0  # 0: no open stream, like HttpVisitor between requests
        self.closing = False
        self.write_paused = False
        self._goaway_sent = False
        self._last_stream = 0
        self._resets = _Rate(MAX_RESETS, ABUSE_PERIOD)
        self._opened = _Rate(edge.config.limits.h2_streams_per_period, ABUSE_PERIOD)
        self._idle_frames = _Rate(MAX_IDLE_FRAMES, ABUSE_PERIOD)
        self._timer: asyncio.TimerHandle | None = None
        self._idle_since = 0.0
        self._paused_at = 0.0  # when writing paused, while it is
        self._silent = True  # no byte from the visitor yet
        # Exchanges whose stream ended with both sides done, kept for the next stream to the
        # same tunnel, as an HTTP/1.1 keep-alive visitor keeps its own: the tunnel stream and
        # the agent's connection to the local service are not opened again per request.
        self._parked: list[OriginExchange] = []
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(
                client_side=False,
                header_encoding=None,
                # What the edge sends is valid by construction: response fields come from a
                # strict HTTP/1 parser (token names, values without CR, LF or NUL, trimmed),
                # lowercased and without connection-specific ones (``_response_headers``);
                # error pages are the edge's own. h2 checking them again, field by field,
                # was a tenth of the edge's time per HTTP/2 request.
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                # What the visitor sends is checked by ``field_problem`` instead: the same
                # rules in one pass, where h2's look at every byte of every field in Python.
                validate_inbound_headers=False,
            )
        )
        conn.local_settings = Settings(
            client=False, initial_values=_settings(MAX_CONCURRENT_STREAMS)
        )
        conn.initiate_connection()  # advertises the settings above
        conn.local_settings = Settings(client=False, initial_values=_settings(_HARD_STREAM_LIMIT))
        conn.increment_flow_control_window(CONNECTION_WINDOW - conn.inbound_flow_control_window)
        self.conn = conn

    @property
    def idle(self) -> bool:
        """No open stream: closing loses nothing (``edge.context.Visitor``)."""
        return self.phase == 0

    # -- visitor socket -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = transport  # type: ignore[assignment]
        set_nodelay(transport)
        limits = self.edge.config.limits
        transport.set_write_buffer_limits(limits.visitor_write_buffer)  # type: ignore[attr-defined]
        peer = transport.get_extra_info("peername")
        if peer:
            self.client = (peer[0], peer[1])
            self.stage.client_ip = peer[0]
        if self.scheme == "https":
            self.stage.server_name = normalize_host(transport.get_extra_info("server_name") or "")
        self.edge.visitors.add(self)
        self._flush()  # our SETTINGS
        now = self.edge.loop.time()
        # Until its first byte a connection gets as long as a request head would (HTTP/2
        # over TLS starts here, right after the handshake), not the idle time.
        header_timeout = limits.header_timeout
        self._idle_since = now + min(header_timeout - limits.idle_timeout, 0.0)
        self._arm(now + min(header_timeout, limits.idle_timeout))

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self._silent:
            self._silent = False
            self._idle_since = self.edge.loop.time()
        if self.edge.draining:
            self._drain()  # before any new stream is read: those are refused
            if self.closing:
                return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued a GOAWAY with the matching error code: send it, then close.
            log.info("h2 visitor %s broke the protocol: %s", self.client[0], exc)
            self._teardown("the visitor broke the HTTP/2 protocol")
            return
        self._process(events)
        self._flush()

    def eof_received(self) -> bool:
        return False  # an HTTP/2 client that half-closes is gone: close

    def pause_writing(self) -> None:
        self.write_paused = True
        self._paused_at = now = self.edge.loop.time()
        self._arm(now + self.edge.config.limits.send_timeout)

    def resume_writing(self) -> None:
        self.write_paused = False
        self._paused_at = 0.0
        if not self.closing:
            self._pump_all()
            self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.edge.visitors.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._release_all("the visitor closed the connection")

    # -- frames from the visitor ----------------------------------------------------------

    def _process(self, events: list[h2.events.Event]) -> None:
        # A stream opened and reset within one read costs no tunnel stream (rapid reset).
        cancelled = {ev.stream_id for ev in events if type(ev) is _StreamReset}
        for ev in events:
            if self.closing:
                return
            t = type(ev)
            if t is _DataReceived:
                self._on_data(cast(h2.events.DataReceived, ev))
            elif t is _RequestReceived:
                request = cast(h2.events.RequestReceived, ev)
                if self._opened.hit(self.edge.loop.time()):
                    self._calm_down("too many streams opened")
                    return
                if request.stream_id not in cancelled:
                    self._on_request(request)
            elif t is _StreamEnded:
                self._on_request_end(cast(h2.events.StreamEnded, ev).stream_id)
            elif t is _WindowUpdated:
                self._on_window(cast(h2.events.WindowUpdated, ev).stream_id)
            elif t is _TrailersReceived:
                trailers = cast(h2.events.TrailersReceived, ev)
                stream = self.streams.get(trailers.stream_id)
                if stream is None:
                    continue
                problem = field_problem(trailers.headers, trailers=True)
                if problem is None:
                    stream.trailers_in = trailer_fields(cast(Headers, trailers.headers))
                else:
                    self._malformed(trailers.stream_id, problem, stream)
            elif t is _StreamReset:
                self._on_reset(cast(h2.events.StreamReset, ev))
            elif t is _RemoteSettingsChanged:
                if not self._idle_frame():
                    self._pump_all()  # INITIAL_WINDOW_SIZE may have grown every window
            elif t in _IDLE_FRAME_EVENTS:
                self._idle_frame()
            elif t is _ConnectionTerminated:
                # The visitor's GOAWAY: h2 sends nothing more after it, so finish now.
                self._teardown("the visitor closed the connection (GOAWAY)")
                return

    def _on_request(self, ev: h2.events.RequestReceived) -> None:
        stream_id = ev.stream_id
        problem = field_problem(ev.headers)
        if problem is not None:
            self._malformed(stream_id, problem)
            return
        # Our own count, not h2's: h2 has taken in the whole read already, streams opened
        # later in it included.
        if self._goaway_sent or len(self.streams) >= MAX_CONCURRENT_STREAMS:
            self._refuse(stream_id)
            return
        edge = self.edge
        limits = edge.config.limits
        now = edge.loop.time()
        method = path = authority = b""
        headers: Headers = []
        cookies: list[bytes] = []
        has_length = False
        size = 0
        raw = cast(Headers, ev.headers)
        for name, value in raw:
            size += len(name) + len(value) + 4
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
                continue  # :scheme: the listener decides what the visitor used
            if name == b"host":
                # field_problem has checked it names the same host as :authority (RFC 9113
                # 8.3.1).
                authority = authority or value
            elif name == b"cookie":
                cookies.append(value)
            elif name not in _CONNECTION_SPECIFIC:
                has_length = has_length or name == b"content-length"
                headers.append((name, value))
        request = (method, authority, path, request_id_for(headers))
        stream = _VisitorStream(self, stream_id, request, now)
        self.streams[stream_id] = stream
        self.phase = 1
        idle = limits.body_idle_timeout
        window = limits.body_rate_window
        self._arm(now + (window if limits.body_min_rate and window < idle else idle))
        if size > limits.max_header_bytes:
            self._respond_error(
                stream, 431, f"The request head is over {limits.max_header_bytes} bytes."
            )
            return
        stage = self.stage
        admitted = stage.admit(method, path, authority, headers, len(raw), stream.request_id)
        if type(admitted) is EdgeAnswer:
            if admitted is AGENT_LINK:  # a WebSocket upgrade needs HTTP/1.1 (RFC 9113 8.6)
                admitted = EdgeAnswer(400, "Agent links over WebSocket need HTTP/1.1.")
            self._respond(stream, admitted)
            return
        tunnel = cast("Tunnel", admitted)
        headers = stage.headers
        stream.filtered = stage.filtered
        authority = stage.authority
        try:
            exchange = stream.exchange = self._exchange_for(stream, tunnel)
        except StreamUnavailable as exc:
            self._respond_error(stream, exc.status, exc.detail)
            return
        if cookies:
            # RFC 9113 8.2.3: crumbs split for compression are joined again for HTTP/1.1.
            headers.append((b"cookie", b"; ".join(cookies)))
        if ev.stream_ended is not None:
            if not has_length and method in _LENGTH_EXPECTED:
                headers.append((b"content-length", b"0"))
        elif not has_length:
            # A body of unknown length follows: HTTP/1.1 needs chunked framing for it.
            headers.append((b"transfer-encoding", b"chunked"))
            stream.chunked = True
        client_ip = self.client[0]
        forwarded = RequestHead(
            method,
            path,
            [
                (b"host", authority),
                *forward_headers(headers, authority, client_ip, self.scheme, stream.request_id),
            ],
        )
        try:
            if not exchange.send_request(forwarded):
                stream.blocked = True
        except UsageError as exc:
            self._drop_exchange(stream, "the request cannot be forwarded")
            self._respond_error(stream, 400, f"The request cannot be forwarded to HTTP/1.1: {exc}.")

    def _on_data(self, ev: h2.events.DataReceived) -> None:
        stream_id = ev.stream_id
        n = ev.flow_controlled_length
        data = ev.data
        if not data and ev.stream_ended is None and self._idle_frame():
            return
        stream = self.streams.get(stream_id)
        exchange = stream.exchange if stream is not None else None
        if stream is None or exchange is None:
            # Nothing takes these bytes any more (the response is over): let the window go.
            if n:
                self.conn.acknowledge_received_data(n, stream_id)
            return
        stream.since = self.edge.loop.time()
        stream.body_bytes += n
        if stream.filtered is not None and data and self._filter_body(stream, data, False):
            if n:
                self.conn.acknowledge_received_data(n, stream_id)
            return
        if stream.blocked:
            # Within the window the visitor was given; held by the tunnel stream until it
            # drains, and acknowledged then.
            stream.unacked += n
            if data:
                exchange.send_data(data)
        elif not data or exchange.send_data(data):
            if n:
                self.conn.acknowledge_received_data(n, stream_id)
        else:
            stream.blocked = True
            stream.unacked += n

    def _on_request_end(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        stream.request_ended = True
        if stream.response_ended:
            self._finish(stream)
            return
        if stream.filtered is not None and self._filter_body(stream, b"", True):
            return
        if stream.exchange is not None:
            # HTTP/1.1 carries trailers only in a chunked body.
            stream.exchange.send_end(stream.trailers_in if stream.chunked else None)
        if not stream.head_sent:
            now = self.edge.loop.time()
            stream.since = now
            self._arm(now + self.edge.config.limits.response_timeout)

    def _filter_body(self, stream: _VisitorStream, data: bytes, end: bool) -> bool:
        """The body phase of the request's filters; True when one answered instead."""
        filtered = stream.filtered
        if filtered is None or stream.head_sent:
            return False
        answer = body_filters(filtered, data, end)
        if answer is None:
            return False
        stream.filtered = None
        if answer.reason:
            self.edge.metrics.refused(answer.reason)
        exchange = stream.exchange
        if exchange is not None:
            stream.exchange = None
            exchange.cancel(ResetCode.CANCEL, "a request filter answered")
        self._respond(stream, answer)
        return True

    def _on_window(self, stream_id: int) -> None:
        if stream_id == 0:
            self._pump_all()
            return
        stream = self.streams.get(stream_id)
        if stream is not None and (stream.buffered or stream.end_queued):
            self._pump(stream)

    def _on_reset(self, ev: h2.events.StreamReset) -> None:
        stream = self.streams.get(ev.stream_id)
        if stream is not None:
            self._forget(stream, "the visitor reset the stream")
        # The resets h2 sends itself for a visitor's misstep come as events too (remote_reset
        # False): they end a stream the local service may be working on all the same.
        if self._resets.hit(self.edge.loop.time()):
            self._calm_down("too many streams reset")

    def _malformed(
        self, stream_id: int, problem: str, stream: _VisitorStream | None = None
    ) -> None:
        """A malformed request or trailer block is a stream error (RFC 9113 8.1.1): the
        stream is reset with PROTOCOL_ERROR, the connection goes on. Counted with the
        visitor's other resets, so a flood of them is cut off."""
        log.info("h2 visitor %s: stream %d is malformed: %s", self.client[0], stream_id, problem)
        if stream is not None:
            # Counted there with the edge's other resets.
            self._reset(stream, ErrorCodes.PROTOCOL_ERROR, "the visitor sent malformed trailers")
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):  # reset later in the read
            self.conn.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
        if self._resets.hit(self.edge.loop.time()):
            self._calm_down("too many malformed requests")

    def _refuse(self, stream_id: int) -> None:
        """REFUSED_STREAM: nothing was done, the visitor may retry it (RFC 9113 8.7)."""
        with contextlib.suppress(h2.exceptions.ProtocolError):  # reset later in the read
            self.conn.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
        if self._resets.hit(self.edge.loop.time()):
            self._calm_down("too many streams refused")

    def _idle_frame(self) -> bool:
        """Count a frame that makes work but carries nothing; True if the visitor was cut
        off for it."""
        if self._idle_frames.hit(self.edge.loop.time()):
            self._calm_down("too many PING, SETTINGS or empty DATA frames")
            return True
        return False

    # -- responses (called by _VisitorStream) ---------------------------------------------

    def send_head(self, stream: _VisitorStream, head: ResponseHead) -> None:
        if self.closing or stream.closed:
            return
        status = head.status
        if status >= 200:
            if stream.filtered is not None:
                response_filters(stream.filtered, head)
                stream.filtered = None
            stream.head_sent = True
            stream.status = status
            self.edge.metrics.h2.status(status)
        headers = [(b":status", str(status).encode()), *_response_headers(head.headers)]
        try:
            self.conn.send_headers(stream.stream_id, headers)
        except h2.exceptions.ProtocolError as exc:
            log.info(
                "h2 visitor %s: response head not relayed: %s",
                self.client[0],
                exc,
                extra=stream.log_extra,
            )
            self._reset(stream, ErrorCodes.INTERNAL_ERROR, "the response cannot be relayed")

    def send_body(self, stream: _VisitorStream, data: bytes) -> None:
        if self.closing or stream.closed or not data:
            return
        stream.chunks.append(data)
        stream.buffered += len(data)

    def send_end(self, stream: _VisitorStream, trailers: Headers) -> None:
        if self.closing or stream.closed:
            return
        edge = self.edge
        elapsed = edge.loop.time() - stream.started
        edge.metrics.h2.request_done(elapsed)
        if access.isEnabledFor(INFO):
            stream.log_access(elapsed)
        self._park_exchange(stream)
        stream.end_queued = True
        stream.trailers_out = trailer_fields(_response_headers(trailers)) if trailers else None

    def stream_flush(self, stream: _VisitorStream) -> None:
        """A chunk from the tunnel has been relayed into ``stream``: send what it queued,
        so a small response goes out as HEADERS and one DATA frame that ends the stream, in
        one write."""
        pending = stream.buffered or (stream.end_queued and not stream.response_ended)
        if pending and not self.closing and not stream.closed:
            self._pump(stream)
        self._flush()

    def stream_failed(self, stream: _VisitorStream, status: int, detail: str) -> None:
        self._drop_exchange(stream, "the exchange failed")
        if self.closing or stream.closed:
            return
        if stream.head_sent:
            # The response was cut short: it must not look whole.
            log.info(
                "h2 visitor %s: response cut short: %s",
                self.client[0],
                detail,
                extra=stream.log_extra,
            )
            self._reset(stream, ErrorCodes.INTERNAL_ERROR, detail)
            return
        self._respond_error(stream, status, detail)

    def stream_writable(self, stream: _VisitorStream) -> None:
        if stream.closed or not stream.blocked:
            return
        stream.blocked = False
        # A window the edge held the body back in measures nothing of the visitor's rate.
        stream.body_since = self.edge.loop.time()
        stream.body_bytes = 0
        n, stream.unacked = stream.unacked, 0
        if n and not self.closing:
            self.conn.acknowledge_received_data(n, stream.stream_id)
            self._flush()

    def _respond_error(
        self, stream: _VisitorStream, status: int, detail: str, extra: Headers | None = None
    ) -> None:
        """An error page as the stream's response (no response head has gone out);
        ``extra``: more response header fields."""
        self._respond(stream, EdgeAnswer(status, detail, headers=extra))

    def _respond(self, stream: _VisitorStream, answer: EdgeAnswer) -> None:
        """The edge's own response on the stream (no response head has gone out)."""
        status = answer.status
        detail = answer.detail
        self.edge.metrics.h2.status(status)
        stream.head_sent = True
        stream.status = status
        log.log(
            logging.INFO if status >= 500 else logging.DEBUG,
            "h2 visitor %s, %s: %d: %s",
            self.client[0],
            stream.authority.decode("latin-1") or "(no host)",
            status,
            detail,
            extra=stream.log_extra,
        )
        if access.isEnabledFor(INFO):
            stream.log_access(None)
        fields, page = answer.fields(stream.request_id)
        headers = [(b":status", str(status).encode()), *fields]
        try:
            self.conn.send_headers(stream.stream_id, headers)
        except h2.exceptions.ProtocolError:
            self._reset(stream, ErrorCodes.INTERNAL_ERROR, detail)
            return
        if stream.method != b"HEAD":
            stream.chunks.append(page)
            stream.buffered += len(page)
        stream.end_queued = True
        self._pump(stream)
        self._flush()

    def _pump(self, stream: _VisitorStream) -> None:
        """Send the stream's queued response as far as the visitor's windows allow, then its
        end once the queue is empty."""
        conn = self.conn
        stream_id = stream.stream_id
        chunks = stream.chunks
        buffered_before = stream.buffered
        try:
            while stream.buffered and not self.write_paused:
                window = conn.local_flow_control_window(stream_id)
                window = min(window, conn.max_outbound_frame_size)
                if window <= 0:
                    break
                chunk = chunks[0]
                offset = stream.offset
                size = len(chunk) - offset
                if size <= window:
                    stream.offset = 0
                    stream.buffered -= size
                    chunks.popleft()
                    # The last bytes of a response carry its end when no trailers follow.
                    last = not stream.buffered and stream.end_queued and not stream.trailers_out
                    conn.send_data(stream_id, chunk[offset:] if offset else chunk, end_stream=last)
                    if last:
                        stream.response_ended = True
                else:
                    conn.send_data(stream_id, chunk[offset : offset + window])
                    stream.offset = offset + window
                    stream.buffered -= window
            if stream.end_queued and not stream.buffered and not stream.response_ended:
                stream.response_ended = True
                if stream.trailers_out:
                    conn.send_headers(stream_id, stream.trailers_out, end_stream=True)
                else:
                    conn.end_stream(stream_id)
        except h2.exceptions.ProtocolError as exc:
            log.info(
                "h2 visitor %s: response not relayed: %s",
                self.client[0],
                exc,
                extra=stream.log_extra,
            )
            self._reset(stream, ErrorCodes.INTERNAL_ERROR, "the response cannot be relayed")
            return
        if stream.response_ended:
            self._finish(stream)
            return
        if stream.buffered and not self.write_paused:
            # Held back by the visitor's window, not by the socket: since now, if some bytes
            # went out.
            if buffered_before != stream.buffered or not stream.stalled_at:
                stream.stalled_at = now = self.edge.loop.time()
                self._arm(now + self.edge.config.limits.send_timeout)
        elif stream.stalled_at:
            stream.stalled_at = 0.0
        exchange = stream.exchange
        if exchange is not None and not stream.backlogged:
            exchange.drained()

    def _pump_all(self) -> None:
        for stream in list(self.streams.values()):
            if self.closing:
                return
            if stream.buffered or (stream.end_queued and not stream.response_ended):
                self._pump(stream)

    # -- stream lifetime ------------------------------------------------------------------

    def _finish(self, stream: _VisitorStream) -> None:
        """The response went out whole."""
        if stream.closed:
            return
        if not stream.request_ended:
            # RFC 9113 8.1: the response does not need the rest of the request; ask the
            # visitor to stop sending it, without error.
            self._reset(stream, ErrorCodes.NO_ERROR, "")
            return
        self._forget(stream, "")

    def _reset(self, stream: _VisitorStream, code: ErrorCodes, reason: str) -> None:
        if not stream.closed and not self.closing:
            with contextlib.suppress(h2.exceptions.ProtocolError):  # closed already
                self.conn.reset_stream(stream.stream_id, code)
            counted = True
        else:
            counted = False
        self._forget(stream, reason)
        self._flush()
        # A reset the edge sends counts like one the visitor sends: a visitor that can make
        # the edge reset its streams gets requests served without holding a stream open.
        if counted and self._resets.hit(self.edge.loop.time()):
            self._calm_down("too many streams reset")

    def _forget(self, stream: _VisitorStream, reason: str) -> None:
        stream.closed = True
        self.streams.pop(stream.stream_id, None)
        self._drop_exchange(stream, reason)
        stream.chunks.clear()
        stream.buffered = 0
        if stream.unacked and not self.closing:
            # The connection window must not leak what this stream held.
            self.conn.acknowledge_received_data(stream.unacked, stream.stream_id)
        stream.unacked = 0
        if not self.streams and not self.closing:
            self.phase = 0
            now = self.edge.loop.time()
            self._idle_since = now
            limits = self.edge.config.limits
            idle = limits.stream_idle_timeout if self._parked else limits.idle_timeout
            self._arm(now + min(idle, limits.idle_timeout))
            if self.edge.draining:
                self._drain()

    def _drop_exchange(self, stream: _VisitorStream, reason: str) -> None:
        exchange = stream.exchange
        if exchange is not None:
            stream.exchange = None
            exchange.release(reason)

    def _exchange_for(self, stream: _VisitorStream, tunnel: Tunnel) -> OriginExchange:
        """A parked exchange to ``tunnel`` taken over by ``stream``, or a new one (raises
        ``StreamUnavailable``)."""
        parked = self._parked
        for i in range(len(parked) - 1, -1, -1):
            exchange = parked[i]
            if exchange.tunnel is tunnel or not exchange.open:
                del parked[i]
                if exchange.open:
                    exchange.front = stream
                    return exchange
        return OriginExchange(stream, tunnel, self.client)

    def _park_exchange(self, stream: _VisitorStream) -> None:
        """The response has ended: keep the exchange for a later stream if its local
        connection may serve another request, else let it go."""
        exchange = stream.exchange
        if exchange is None:
            return
        stream.exchange = None
        if not exchange.next_cycle():
            return  # released
        if self.closing or len(self._parked) >= MAX_CONCURRENT_STREAMS:
            exchange.release("")
            return
        exchange.front = _PARKED
        exchange.drained()  # credit held back for the stream's visitor goes back now
        self._parked.append(exchange)

    def _release_parked(self, reason: str) -> None:
        parked, self._parked = self._parked, []
        for exchange in parked:
            exchange.release(reason)

    def _release_all(self, reason: str) -> None:
        streams = list(self.streams.values())
        self.streams.clear()
        self.phase = 0
        for stream in streams:
            stream.closed = True
            self._drop_exchange(stream, reason)
        self._release_parked(reason)

    # -- closing --------------------------------------------------------------------------

    def _drain(self) -> None:
        """The edge is shutting down: take no new stream, close once the open ones finish."""
        if not self._goaway_sent and self.transport is not None:
            self._goaway_sent = True
            self._last_stream = self.conn.highest_inbound_stream_id
            # h2's close_connection would also stop the streams in flight from sending, so
            # this GOAWAY is written past it, between whole frames.
            self._flush()
            self.transport.write(GoAwayFrame(0, last_stream_id=self._last_stream).serialize())
        if not self.streams:
            self.close()

    def close(self) -> None:
        """GOAWAY(NO_ERROR) and close; open streams are cut."""
        self._shut(ErrorCodes.NO_ERROR, "")

    def _calm_down(self, reason: str) -> None:
        log.warning("h2 visitor %s: %s: GOAWAY(ENHANCE_YOUR_CALM)", self.client[0], reason)
        self.edge.metrics.refused("h2_abuse")
        self._shut(ErrorCodes.ENHANCE_YOUR_CALM, reason)

    def _shut(self, code: ErrorCodes, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self._release_all("the visitor connection closed")
        last = self._last_stream if self._goaway_sent else None
        with contextlib.suppress(h2.exceptions.ProtocolError):  # a GOAWAY went out already
            self.conn.close_connection(code, reason.encode() or None, last_stream_id=last)
        self._flush()
        self._close_transport()

    def _close_transport(self) -> None:
        """Close once the queued bytes are out, or abort if the visitor takes none of them
        for ``send_timeout`` (``connection_lost`` cancels the timer)."""
        transport = self.transport
        if transport is None:
            return
        transport.close()
        if self.write_paused:
            if self._timer is not None:
                self._timer.cancel()
            send_timeout = self.edge.config.limits.send_timeout
            self._timer = self.edge.loop.call_later(send_timeout, transport.abort)

    def _teardown(self, reason: str) -> None:
        """h2 has ended the connection (and queued its GOAWAY, if any): send it and close."""
        self.closing = True
        self._release_all(reason)
        self._flush()
        self._close_transport()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    # -- the connection's one timer -------------------------------------------------------

    def _arm(self, when: float) -> None:
        """Make sure the timer fires by ``when`` (it never fires later than needed)."""
        timer = self._timer
        if timer is None or timer.when() > when:
            if timer is not None:
                timer.cancel()
            self._timer = self.edge.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.closing:
            return
        now = self.edge.loop.time()
        limits = self.edge.config.limits
        next_at = math.inf
        if self.write_paused and self._paused_at:
            stalled_until = self._paused_at + limits.send_timeout
            if now >= stalled_until:
                self._stalled()
                return
            next_at = stalled_until
        for stream in list(self.streams.values()):
            if stream.closed:
                continue
            if stream.head_sent:
                if stream.stalled_at:
                    deadline = stream.stalled_at + limits.send_timeout
                    if now >= deadline:
                        self._reset(stream, ErrorCodes.CANCEL, "the visitor took no response bytes")
                        if self.closing:
                            return
                        continue
                    next_at = min(next_at, deadline)
                continue
            if stream.request_ended:
                deadline = stream.since + limits.response_timeout
                if now >= deadline:
                    self._response_timeout(stream)
                    continue
            else:
                if stream.blocked:
                    stream.since = now  # our backpressure, not the visitor's silence
                    stream.body_since = now
                    stream.body_bytes = 0
                deadline = stream.since + limits.body_idle_timeout
                if now >= deadline:
                    self._drop_exchange(stream, "request body timeout")
                    self._respond_error(stream, 408, "The request body stopped arriving.")
                    continue
                rate = limits.body_min_rate
                if rate:
                    window = limits.body_rate_window
                    window_end = stream.body_since + window
                    if now >= window_end:
                        if stream.body_bytes < rate * window:
                            self.edge.metrics.refused("body_too_slow")
                            self._drop_exchange(stream, "request body too slow")
                            self._respond_error(
                                stream,
                                408,
                                f"The request body arrived slower than {rate} bytes a second "
                                f"over {window:g} seconds.",
                            )
                            continue
                        stream.body_since = now
                        stream.body_bytes = 0
                        window_end = now + window
                    deadline = min(deadline, window_end)
            next_at = min(next_at, deadline)
            if self.closing:
                return
        if not self.streams:
            deadline = self._idle_since + limits.idle_timeout
            if now >= deadline:
                self.close()
                return
            next_at = min(next_at, deadline)
            if self._parked:
                parked_until = self._idle_since + limits.stream_idle_timeout
                if now >= parked_until:
                    self._release_parked("the visitor connection is idle")
                else:
                    next_at = min(next_at, parked_until)
        if next_at < math.inf:
            self._arm(next_at)

    def _stalled(self) -> None:
        """The visitor has taken no bytes for ``send_timeout``: abort (closing would wait
        for the socket buffer to drain)."""
        log.info(
            "h2 visitor %s took no bytes for %g seconds: connection aborted",
            self.client[0],
            self.edge.config.limits.send_timeout,
        )
        self.edge.metrics.refused("send_timeout")
        self.closing = True
        self._release_all("the visitor stopped reading")
        if self.transport is not None:
            self.transport.abort()

    def _response_timeout(self, stream: _VisitorStream) -> None:
        limits = self.edge.config.limits
        self.edge.metrics.refused("response_timeout")
        exchange = stream.exchange
        if exchange is not None:
            stream.exchange = None
            exchange.cancel(ResetCode.TIMEOUT, "response timeout")
        self._respond_error(
            stream,
            504,
            f"The tunnel's local service did not answer within "
            f"{limits.response_timeout:g} seconds.",
        )
