"""Public HTTP/1.1 listener: one ``HttpVisitor`` per visitor connection.

Theory of operation
-------------------
The visitor's bytes go through a server-role HTTP/1.1 connection (``edge.http1``). Each
request is routed by its Host header to a tunnel and carried by an ``OriginExchange``: one
tunnel stream, kept across requests while the visitor stays on the same tunnel and both
sides keep the connection alive. Bodies stream chunk by chunk in both directions; nothing
is buffered whole.

Backpressure: if the stream's window is used up, reading from the visitor pauses until the
stream drains; while the visitor's socket buffer is above its high-water mark
(``pause_writing``), the exchange holds credit back, so a visitor that reads nothing stalls
its stream after one window.

Pipelined requests wait in the parser (reading paused) until the response in flight ends.
After a 101 response both sides become raw byte pipes, with the bytes each parser had read
past the switch handed on.

One timer per connection, re-armed between phases: waiting for a request head (slowloris
guard), reading a request body, waiting for the response head (504), keep-alive idle, and
while a response is written, a visitor that takes none of it (``send_timeout``: the socket
stays paused; the connection is aborted, not closed, since closing waits for the buffer to
drain).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Final, cast

from edge import http1
from edge.admin.access_log import INFO, access, log_access
from edge.http1.events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Headers,
    ParseError,
    RequestHead,
    ResponseHead,
    UsageError,
)
from edge.http1.native import NativeVisitorConnection
from edge.link.agent_session import StreamUnavailable
from edge.pipeline import (
    AGENT_LINK,
    EdgeAnswer,
    FilterRequest,
    RequestStage,
    body_filters,
    response_filters,
    status_line,
)
from edge.routing.table import normalize_host
from edge.visitors.exchange import OriginExchange
from edge.visitors.forwarding import (
    absolute_target,
    forward_headers,
    forwards_unchanged,
    trailer_fields,
)
from edge.visitors.pages import TITLES
from edge.visitors.request_ids import new_request_id, request_id_for
from proto.frames import ResetCode
from relay.session import set_nodelay

if TYPE_CHECKING:
    from edge.context import EdgeContext
    from edge.routing.table import Tunnel

log = logging.getLogger("burrow.edge.http")

_PHASE_IDLE: Final = 0  # between requests
_PHASE_HEAD: Final = 1  # first byte of a request head seen
_PHASE_BODY: Final = 2  # head sent upstream, reading the visitor's body
_PHASE_WAIT: Final = 3  # request complete, waiting for the response head
_PHASE_RESPONSE: Final = 4  # response streaming
_PHASE_RAW: Final = 5  # switched protocols
_PHASE_REFUSED: Final = 6  # the visitor policy answered; the request's end is next

# Read up to six times a request: compiled code calls a Final name from a C static, where
# ``time.monotonic`` is a dict lookup and an attribute read first.
_monotonic: Final = time.monotonic
_CONTINUE: Final = ResponseHead(100, [])
_H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_PIPELINE_BUFFER: Final = 64 * 1024


class HttpVisitor(asyncio.Protocol):
    __slots__ = (
        "_body_bytes",
        "_body_since",
        "_deadline",
        "_eof_in",
        "_eof_out",
        "_idle_since",
        "_last_read",
        "_out",
        "_preface",
        "_read_paused",
        "_timer",
        "_timer_at",
        "backlogged",  # the transport paused our writing (ExchangeFront)
        "client",
        "closing",
        "edge",
        "exchange",
        "filtered",
        "host",
        "http1_metrics",
        "limits",
        "method",
        "phase",
        "request_id",
        "scheme",
        "stage",
        "started",
        "status",
        "target",
        "transport",
        "visitor",
    )

    def __init__(self, edge: EdgeContext, scheme: str = "http") -> None:
        self.edge = edge
        # Read on every request; ``edge.config`` is fixed for the edge's life.
        self.limits = limits = edge.config.limits
        self.http1_metrics = edge.metrics.http1
        self.scheme = scheme
        self.transport: asyncio.Transport | None = None
        # Native first: compiled code calls it directly, other parsers through the interface.
        self.visitor: NativeVisitorConnection | http1.VisitorConnection = http1.visitor_connection(
            limits.max_header_bytes
        )
        self.client = ("", 0)
        self.exchange: OriginExchange | None = None
        self.phase = _PHASE_IDLE
        self.method = b"GET"
        self.target = b""
        self.host = ""
        self.request_id = b""  # while a request is in flight
        self.status = 0
        self.started = 0.0
        self.closing = False
        self._read_paused = False
        self.backlogged = False
        self._eof_in = False
        self._eof_out = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # the monotonic time the timer is due
        self._deadline = 0.0
        self._last_read = 0.0
        # The request body's bytes since _body_since (its minimum rate, body_min_rate).
        self._body_bytes = 0
        self._body_since = 0.0
        self._idle_since = 0.0
        self._out: list[bytes] = []  # response bytes produced by one stream chunk
        self._preface: bytes | None = b""  # first bytes, until HTTP/1 or h2c is decided
        # The last Host header and its normal form: a connection names one host, as a rule.
        # Limits, host, special paths, routing and filters: the same for HTTP/2 (edge.pipeline).
        self.stage = RequestStage(edge, scheme)
        self.filtered: FilterRequest | None = None  # the request's, while its filters run

    @property
    def idle(self) -> bool:
        """Between requests: closing loses nothing (``edge.context.Visitor``)."""
        return self.phase == _PHASE_IDLE

    # -- visitor socket -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = transport  # type: ignore[assignment]
        set_nodelay(transport)
        transport.set_write_buffer_limits(self.limits.visitor_write_buffer)  # type: ignore[attr-defined]
        peer = transport.get_extra_info("peername")
        if peer:
            self.client = (peer[0], peer[1])
            self.stage.client_ip = peer[0]
        if self.scheme == "https":
            self.stage.server_name = normalize_host(transport.get_extra_info("server_name") or "")
        self.edge.visitors.add(self)
        # A connection that has sent nothing yet gets as long as a request head would, not a
        # keep-alive connection's idle time.
        self._arm(self.limits.header_timeout, _monotonic())

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase == _PHASE_RAW:
            exchange = self.exchange
            if exchange is not None and not exchange.write_raw(data):
                self._pause_reading()
            return
        if phase == _PHASE_IDLE:
            self.phase = _PHASE_HEAD
            self._arm(self.limits.header_timeout, _monotonic())
        elif phase == _PHASE_BODY:
            self._last_read = _monotonic()
            self._body_bytes += len(data)
        if self._preface is not None:
            data = self._sniff_h2c(data)
            if not data:
                return
        self.visitor.receive_data(data)
        self._process_visitor()

    def _sniff_h2c(self, data: bytes) -> bytes:
        """h2c by prior knowledge (RFC 9113 3.3): a connection that opens with the HTTP/2
        preface goes to an ``H2Visitor``, with every byte read so far. Returns the bytes for
        HTTP/1 (empty if handed over, or while the first bytes could still be a preface)."""
        data = (self._preface or b"") + data
        if len(data) < len(_H2_PREFACE) and _H2_PREFACE.startswith(data):
            self._preface = data
            return b""
        self._preface = None
        if not data.startswith(_H2_PREFACE) or self.transport is None:
            return data
        from edge.visitors.h2_visitor import H2Visitor  # lazily: h2 is needed only by h2 visitors

        transport = self.transport
        self.closing = True  # this protocol is done with the connection
        self.edge.visitors.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        h2 = H2Visitor(self.edge, self.scheme)
        transport.set_protocol(h2)
        h2.connection_made(transport)
        h2.data_received(data)
        return b""

    def eof_received(self) -> bool:
        if self.phase == _PHASE_RAW:
            self._eof_in = True
            if self.exchange is not None:
                self.exchange.end_raw()
            if self._eof_out:
                self.close()
                return False
            return True
        # Like nginx without proxy_ignore_client_abort: a visitor that hangs up mid-request
        # gets nothing more, and the local service's connection is let go. (HTTP clients do
        # not half-close, and one cannot be told apart from one that did.)
        self.close()
        return False

    def pause_writing(self) -> None:
        self.backlogged = True
        if self.phase == _PHASE_RESPONSE or self.phase == _PHASE_RAW or self.closing:
            # The response's (or raw pipe's) phase has no other deadline.
            self._arm(self.limits.send_timeout, _monotonic())

    def resume_writing(self) -> None:
        self.backlogged = False
        if self.phase == _PHASE_RESPONSE or self.phase == _PHASE_RAW:
            self._disarm()
        if self.exchange is not None:
            self.exchange.drained()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.edge.visitors.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._drop_exchange("the visitor closed the connection")

    # -- requests -------------------------------------------------------------------------

    def _process_visitor(self) -> None:
        visitor = self.visitor
        while not self.closing:
            try:
                event = visitor.next_event()
            except ParseError as exc:
                self._fail(exc.status, f"The request could not be read: {exc}.")
                return
            if type(event) is Data:
                if self.filtered is not None and self._filter_body(event.data, False):
                    return
                exchange = self.exchange
                if exchange is not None and not exchange.send_data(event.data):
                    self._pause_reading()
            elif type(event) is RequestHead:
                self._on_request(event)
            elif type(event) is EndOfMessage:
                if self.filtered is not None and self._filter_body(b"", True):
                    return
                if self.exchange is not None:
                    trailers = event.trailers
                    self.exchange.send_end(trailer_fields(trailers) if trailers else trailers)
                if self.phase == _PHASE_BODY:  # the response has not started early
                    self.phase = _PHASE_WAIT
                    # In the body phase the time of the last read is kept: this one's.
                    self._arm(self.limits.response_timeout, self._last_read)
                elif self.phase == _PHASE_REFUSED:
                    self._after_refusal()
            elif event is NEED_DATA:
                return
            elif event is PAUSED:
                # A pipelined request (or an upgrade) waits in the parser until the response
                # in flight ends. Reading goes on, so a visitor hanging up is noticed, until
                # the parser holds more than a little.
                if visitor.buffered > _PIPELINE_BUFFER:
                    self._pause_reading()
                return
            elif type(event) is ConnectionClosed:
                if self.phase in (_PHASE_IDLE, _PHASE_HEAD):
                    self.close()
                return

    def _on_request(self, request: RequestHead) -> None:
        limits = self.limits
        # The event's fields are read once each (on the pure-Python path every read is a lookup).
        self.method = method = request.method
        self.target = target = request.target
        self.started = now = _monotonic()
        headers = as_read = request.headers
        self.request_id = request_id = request_id_for(headers)
        host_header = b""
        for name, value in headers:
            if name == b"host":
                host_header = value
                break
        stage = self.stage
        # The parser bounds the head's bytes (``max_header_bytes``); the stage the rest.
        admitted = stage.admit(method, target, host_header, headers, len(headers), request_id)
        self.host = host = stage.host
        if type(admitted) is EdgeAnswer:
            self._answer(admitted, headers, request)
            return
        tunnel = cast("Tunnel", admitted)
        headers = stage.headers
        self.filtered = stage.filtered
        authority = stage.authority
        # Not origin-form ("/..."), the usual one: absolute-form, or nothing we take (RFC 9112 3.2).
        if (not target or target[0] != 47) and target != b"*":
            origin_form = absolute_target(target, host)
            if origin_form is None:
                self._fail(400, "The request target names another host than the Host header.")
                return
            self.target = target = origin_form
        exchange = self.exchange
        if exchange is None or exchange.tunnel is not tunnel or not exchange.open:
            self._drop_exchange("a new tunnel was chosen")
            try:
                exchange = self.exchange = OriginExchange(self, tunnel, self.client)
            except StreamUnavailable as exc:
                self._fail(exc.status, exc.detail)
                return
        self.phase = _PHASE_BODY
        self._last_read = now
        self._body_since = now
        self._body_bytes = 0
        # The body's first look comes after one rate window (``_check_body_rate``).
        idle = limits.body_idle_timeout
        window = limits.body_rate_window
        self._arm(window if limits.body_min_rate and window < idle else idle, now)
        if self.visitor.waiting_for_continue:
            # The edge answers the expectation itself once the request is routed
            # (RFC 9110 10.1.1): many local services never send 100, and the visitor
            # should not stall on them. The header is not forwarded.
            self._write(self.visitor.send_informational(_CONTINUE))
            self.exchange_flush()
        # The forwarded headers add none that frame the body or go hop by hop: the parser's
        # reading of the request holds for them.
        fields = request.fields
        if (
            fields is not None
            and headers is as_read
            and stage.authority_as_read
            and forwards_unchanged(headers)
        ):
            # Nothing to take out: the lines as read, and the edge's own after them.
            fields = b"".join((fields, stage.forwarded_prefix(), request_id, b"\r\n"))
            forwarded = RequestHead(method, target, headers, framing=request.framing, fields=fields)
        else:
            forwarded = RequestHead(
                method,
                target,
                forward_headers(headers, authority, self.client[0], self.scheme, request_id),
                framing=request.framing,
            )
        if not exchange.send_request(forwarded):
            self._pause_reading()

    def _filter_body(self, data: bytes, end: bool) -> bool:
        """The body phase of the request's filters; True when one answered instead (the
        request goes no further and the connection closes: its body is not all read)."""
        filtered = self.filtered
        if filtered is None or self.phase != _PHASE_BODY:
            return False
        answer = body_filters(filtered, data, end)
        if answer is None:
            return False
        if answer.reason:
            self.edge.metrics.refused(answer.reason)
        if self.exchange is not None:
            self.exchange.cancel(ResetCode.CANCEL, "a request filter answered")
            self.exchange = None
        self._close_with(answer)
        return True

    def _answer(self, answer: EdgeAnswer, headers: Headers, request: RequestHead) -> None:
        """The request stage answered: an agent link takes the connection over, anything
        else is the edge's own response."""
        if answer is AGENT_LINK:
            self._become_agent_link(request)
        elif answer.keep and not _has_body(headers):
            self._respond(answer)
        else:
            self._close_with(answer)

    def _become_agent_link(self, request: RequestHead) -> None:
        """Hand the connection to an agent link carried in WebSocket messages."""
        import wsproto  # lazily: an edge that serves no WebSocket links never loads it

        from relay.websocket import WebSocketShell

        transport = self.transport
        assert transport is not None
        handshake = (
            b"GET "
            + request.target
            + b" HTTP/1.1\r\n"
            + b"".join(n + b": " + v + b"\r\n" for n, v in request.headers)
            + b"\r\n"
            + self.visitor.trailing_data
        )
        self.closing = True  # this protocol is done with the connection
        self.edge.visitors.discard(self)
        self._disarm()
        self._drop_exchange("")
        shell = WebSocketShell(
            self.edge.open_agent_link(), wsproto.ConnectionType.SERVER, handshake=handshake
        )
        transport.set_protocol(shell)
        shell.connection_made(transport)

    # -- responses (ExchangeFront) --------------------------------------------------------

    def exchange_head(self, head: ResponseHead) -> None:
        try:
            if head.status < 200:
                self._write(self.visitor.send_informational(head))
                return
            if self.filtered is not None:
                response_filters(self.filtered, head)
                self.filtered = None
            self.phase = _PHASE_RESPONSE
            self._disarm()
            self.status = head.status
            self.http1_metrics.status(head.status)
            if self.edge.draining:
                self.visitor.close_after_response()  # the edge closes it after this one
            self._write(self.visitor.send_response(head))
        except UsageError as exc:
            self._abort_response(f"the response cannot be relayed: {exc}")

    def exchange_data(self, data: bytes) -> None:
        try:
            self._write(self.visitor.send_data(data))
        except UsageError as exc:
            self._abort_response(f"the response cannot be relayed: {exc}")

    def exchange_end(self, trailers: Headers) -> None:
        try:
            self._write(self.visitor.send_end(trailer_fields(trailers) if trailers else trailers))
        except UsageError as exc:
            self._abort_response(f"the response cannot be relayed: {exc}")
            return
        edge = self.edge
        now = _monotonic()
        elapsed = now - self.started
        self.http1_metrics.request_done(elapsed)
        if access.isEnabledFor(INFO):
            self._log_access(self.status, elapsed)
        self.request_id = b""
        exchange = self.exchange
        if exchange is not None and not exchange.next_cycle():
            self.exchange = None
        if self.visitor.start_next_cycle() and not edge.draining:
            self.phase = _PHASE_IDLE
            limits = self.limits
            self._idle_since = now
            idle = limits.stream_idle_timeout
            self._arm(idle if idle < limits.idle_timeout else limits.idle_timeout, now)
            self._resume_reading()
            if self.visitor.buffered:
                self._process_visitor()  # a pipelined request waits in the parser
        else:
            self.close()

    def exchange_switched(self, head: ResponseHead, leftover: bytes) -> None:
        """101: from here on the stream and the visitor socket are raw byte pipes."""
        try:
            self._write(self.visitor.send_informational(head))
        except UsageError as exc:
            self._abort_response(f"the protocol switch cannot be relayed: {exc}")
            return
        self.phase = _PHASE_RAW
        self._disarm()
        if leftover:
            self._write(leftover)
        visitor_extra = self.visitor.trailing_data
        exchange = self.exchange
        if visitor_extra and exchange is not None and not exchange.write_raw(visitor_extra):
            self._pause_reading()
            return
        self._resume_reading()

    def exchange_raw(self, data: bytes) -> None:
        self._write(data)

    def exchange_raw_end(self) -> None:
        self._eof_out = True
        transport = self.transport
        if transport is not None:
            if self._eof_in or not transport.can_write_eof():
                self.close()
            else:
                transport.write_eof()

    def exchange_failed(self, status: int, detail: str) -> None:
        self.exchange = None
        if self.closing:
            return
        if self.phase in (_PHASE_RESPONSE, _PHASE_RAW):
            self._abort()  # the response was cut short: it must not look whole
        elif self.phase != _PHASE_IDLE:
            self._fail(status, detail)

    def exchange_blocked(self) -> None:
        self._pause_reading()

    def exchange_writable(self) -> None:
        self._resume_reading()

    # -- helpers --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        """Queue bytes for the visitor; ``exchange_flush`` writes them with one syscall."""
        if data:
            self._out.append(data)

    def exchange_flush(self) -> None:
        out = self._out
        if out:
            self._out = []
            if self.transport is not None:
                self.transport.writelines(out)

    def _abort_response(self, detail: str) -> None:
        rid = self.request_id.decode()
        log.info("visitor %s: %s", self.client[0], detail, extra={"request_id": rid})
        self._abort()

    def _log_access(self, status: int, seconds: float | None) -> None:
        log_access(
            "http1",
            self.request_id,
            self.client[0],
            self.method,
            self.host,
            self.target,
            status,
            seconds,
        )

    def _drop_exchange(self, reason: str) -> None:
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            exchange.release(reason)

    def _fail(self, status: int, detail: str, extra: Headers | None = None) -> None:
        """Write an error page (if no response has started) and close the connection.
        ``extra``: more response header fields."""
        self._close_with(EdgeAnswer(status, detail, headers=extra))

    def _close_with(self, answer: EdgeAnswer) -> None:
        """The edge's own response (if none has started), then the connection closes."""
        if self.closing or self.transport is None:
            return
        status = answer.status
        rid = self._report(status, answer.detail)
        self.exchange_flush()
        if self.phase not in (_PHASE_RESPONSE, _PHASE_RAW):
            fields, page = answer.fields(rid)
            head = status_line(status) + b"".join(n + b": " + v + b"\r\n" for n, v in fields)
            head += b"connection: close\r\n\r\n"
            self.transport.write(head if self.method == b"HEAD" else head + page)
        self.close()

    def _report(self, status: int, detail: str) -> bytes:
        """Count, log and access-log an answer of the edge's own; returns the request id."""
        self.http1_metrics.status(status)
        if not self.request_id:  # the request's head never arrived whole
            self.request_id = new_request_id()
        rid = self.request_id
        log.log(
            logging.INFO if status >= 500 else logging.DEBUG,
            "visitor %s, %s: %d: %s",
            self.client[0],
            self.host or "(no host)",
            status,
            detail,
            extra={"request_id": rid.decode()},
        )
        if access.isEnabledFor(INFO):
            self._log_access(status, None)
        return rid

    def _respond(self, answer: EdgeAnswer) -> None:
        """Answer a request the stage turned away (a filter's refusal or its own response)
        on a connection that goes on: a browser asks again on it, with the credentials."""
        # Whatever stream the previous request used is not this request's to use.
        self._drop_exchange("the request was answered at the edge")
        rid = self._report(answer.status, answer.detail)
        fields, body = answer.fields(rid)
        head = ResponseHead(answer.status, fields, TITLES.get(answer.status, "Error").encode())
        visitor = self.visitor
        try:
            if self.edge.draining:
                visitor.close_after_response()
            self._write(visitor.send_response(head))
            if self.method != b"HEAD":
                self._write(visitor.send_data(body))
            self._write(visitor.send_end())
        except UsageError as exc:
            self._abort_response(f"the refusal cannot be sent: {exc}")
            return
        self.exchange_flush()
        self.phase = _PHASE_REFUSED

    def _after_refusal(self) -> None:
        """The refused request has ended: on to the next one, if the connection goes on."""
        self.request_id = b""
        if self.visitor.start_next_cycle() and not self.edge.draining:
            self.phase = _PHASE_IDLE
            self._idle_since = now = _monotonic()
            self._arm(self.limits.idle_timeout, now)
        else:
            self.close()

    def _check_body_rate(self, now: float, deadline: float) -> float:
        """Refuse a body slower than ``body_min_rate`` over its last window (0.0 returned);
        else when the timer should next look (the window's end, or ``deadline``)."""
        limits = self.limits
        window = limits.body_rate_window
        window_end = self._body_since + window
        if now >= window_end:
            if not self._read_paused and self._body_bytes < limits.body_min_rate * window:
                self.edge.metrics.refused("body_too_slow")
                self._fail(
                    408,
                    f"The request body arrived slower than {limits.body_min_rate} bytes a "
                    f"second over {window:g} seconds.",
                )
                return 0.0
            self._body_since = now
            self._body_bytes = 0
            window_end = now + window
        return min(deadline, window_end)

    def _stalled(self) -> None:
        self.edge.metrics.refused("send_timeout")
        log.info(
            "visitor %s took no bytes for %g seconds: connection aborted",
            self.client[0],
            self.limits.send_timeout,
        )
        self._abort()

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self._disarm()
        self._drop_exchange("the visitor connection closed")
        self.exchange_flush()
        if self.transport is not None:
            self.transport.close()
            if self.backlogged:
                # close() waits for the buffer to drain: bound the wait.
                self._arm(self.limits.send_timeout, _monotonic())

    def _abort(self) -> None:
        self.closing = True
        self._disarm()
        self._drop_exchange("the visitor connection was aborted")
        if self.transport is not None:
            self.transport.abort()

    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self.transport is not None and not self.closing:
            self._read_paused = False
            self._last_read = now = _monotonic()
            # A window the edge paused for measures nothing of the visitor's rate.
            self._body_since = now
            self._body_bytes = 0
            self.transport.resume_reading()

    # -- the connection's one timer -------------------------------------------------------

    def _arm(self, seconds: float, now: float) -> None:
        """The phase's timer, due ``seconds`` after ``now`` (the caller's clock reading: most
        have one already)."""
        # Four times a request: the timer is re-created only when the new deadline comes
        # before it; a later one is caught up with when it fires (``_on_timer``).
        self._deadline = deadline = now + seconds
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self.edge.loop.call_later(seconds, self._on_timer)

    def _disarm(self) -> None:
        self._deadline = 0.0

    def _on_timer(self) -> None:
        self._timer = None
        if self.closing:
            # Closed with bytes still queued for a visitor that never takes them.
            deadline = self._deadline
            if self.backlogged and deadline and self.transport is not None:
                now = _monotonic()
                if now < deadline:
                    self._timer_at = deadline
                    self._timer = self.edge.loop.call_later(deadline - now, self._on_timer)
                else:
                    self._stalled()
            return
        if not self._deadline:
            return
        now = _monotonic()
        limits = self.limits
        deadline = wake = self._deadline
        if self.phase == _PHASE_BODY:
            # Only the visitor's own silence counts, not a pause we imposed for backpressure.
            last = now if self._read_paused else self._last_read
            deadline = wake = max(deadline, last + limits.body_idle_timeout)
            if limits.body_min_rate:
                wake = self._check_body_rate(now, deadline)
                if wake <= 0.0:
                    return
        if now < deadline:
            self._timer_at = wake
            self._timer = self.edge.loop.call_later(wake - now, self._on_timer)
            return
        phase = self.phase
        if self.backlogged and phase in (_PHASE_RESPONSE, _PHASE_RAW):
            self._stalled()
        elif phase == _PHASE_IDLE:
            remaining = self._idle_since + limits.idle_timeout - now
            if self.exchange is not None and remaining > 0:
                # Idle for a while: free the tunnel stream, keep the visitor connection.
                self._drop_exchange("the visitor connection is idle")
                self._arm(remaining, now)
            else:
                self.close()
        elif phase == _PHASE_HEAD:
            self.edge.metrics.refused("header_timeout")
            self._fail(408, "The request head did not arrive in time.")
        elif phase == _PHASE_BODY:
            self._fail(408, "The request body stopped arriving.")
        elif phase == _PHASE_REFUSED:
            self.close()  # the refused request never ended
        elif phase == _PHASE_WAIT:
            self.edge.metrics.refused("response_timeout")
            if self.exchange is not None:
                self.exchange.cancel(ResetCode.TIMEOUT, "response timeout")
                self.exchange = None
            self._fail(
                504,
                f"The tunnel's local service did not answer within "
                f"{limits.response_timeout:g} seconds.",
            )


def _has_body(headers: Headers) -> bool:
    """Whether a request's head announces a body (RFC 9112 6.3)."""
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False
