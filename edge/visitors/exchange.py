"""One visitor's requests carried over one tunnel stream, whatever HTTP version the visitor
speaks.

Theory of operation
-------------------
An ``OriginExchange`` owns one tunnel stream to one agent and an HTTP/1.1 client connection
(``OriginConnection``) framing requests into it and parsing responses out of it. The agent
pipes the stream to a fresh connection to its local service, so the local service sees an
ordinary HTTP/1.1 client. A visitor front (an HTTP/1.1 connection, or one HTTP/2 stream)
drives it with ``send_request``/``send_data``/``send_end`` and hears back through the
``ExchangeFront`` callbacks: response head, body data, end, failure, switch to raw bytes.

For HTTP/1.1 visitors one exchange lives as long as the visitor connection keeps hitting the
same tunnel (keep-alive both sides); an HTTP/2 stream gets an exchange of its own.

Backpressure: body bytes go into the stream until its window is used up (``send_*`` return
False: pause the source until ``exchange_writable``). Credit for response bytes goes back to
the agent only while the front is not ``backlogged``; a front that is, calls ``drained``
when it can take more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

from edge import http1
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
from edge.http1.native import NativeOriginConnection
from proto.frames import ResetCode

if TYPE_CHECKING:
    from edge.link.agent_session import AgentSession
    from edge.routing.table import Tunnel
    from edge.visitors.http_visitor import HttpVisitor

MAX_INFORMATIONAL: Final = 8
"""Informational (1xx) responses a request may get before its final one: 103 Early Hints
and 102 Processing come once or a few times; an agent that sends them without end would
keep a visitor waiting for ever (and cost the edge a parse and a write each)."""


class ExchangeFront(Protocol):
    """What an exchange reports to: the visitor side of one request at a time."""

    @property
    def backlogged(self) -> bool:
        """The visitor is not taking bytes as fast as they come (hold credit back)."""

    def exchange_head(self, head: ResponseHead) -> None:
        """A response head: final, or informational (1xx other than 100 and 101)."""

    def exchange_data(self, data: bytes) -> None: ...
    def exchange_end(self, trailers: Headers) -> None: ...

    def exchange_switched(self, head: ResponseHead, leftover: bytes) -> None:
        """101: from now on the stream carries raw bytes (``exchange_raw``)."""

    def exchange_raw(self, data: bytes) -> None: ...
    def exchange_raw_end(self) -> None: ...

    def exchange_failed(self, status: int, detail: str) -> None:
        """The exchange cannot go on. Before a response head the front answers with
        ``status``; after one it must abort the visitor's response."""

    def exchange_blocked(self) -> None:
        """The agent's link is backed up: stop reading the request body until
        ``exchange_writable``."""

    def exchange_writable(self) -> None:
        """The stream drained: resume reading the request body."""

    def exchange_flush(self) -> None:
        """One chunk from the stream has been processed: write out what it produced."""


class OriginExchange:
    __slots__ = (
        "_held",
        "_informational",
        "address",
        "complete",
        "front",
        "origin",
        "raw",
        "response_started",
        "session",
        "stream_id",
        "tunnel",
    )

    def __init__(
        self, front: ExchangeFront, tunnel: Tunnel, client: tuple[str, int], kind: str = "http"
    ) -> None:
        """Open a stream on the tunnel's agent; raises ``StreamUnavailable``."""
        # The unions name the usual classes first so that compiled code (compiled/) calls
        # them directly; through the interface alone every call is a generic method lookup.
        self.front: HttpVisitor | ExchangeFront = front
        self.tunnel = tunnel
        self.session: AgentSession | None = tunnel.session
        self.origin: NativeOriginConnection | http1.OriginConnection = http1.origin_connection()
        self.response_started = False
        self.complete = False
        self.raw = False
        self._held = 0
        self._informational = 0  # 1xx heads of the request in flight
        self.address = client[0]  # counted in the session's address_streams while open
        self.stream_id = tunnel.session.open_visitor_stream(tunnel, kind, client, self)

    @property
    def open(self) -> bool:
        return self.session is not None

    # -- visitor -> origin ----------------------------------------------------------------

    def _write(self, data: bytes) -> bool:
        session = self.session
        if session is None or not data:
            return True
        return session.write(self.stream_id, data)

    def send_request(self, head: RequestHead) -> bool:
        self.response_started = False
        self.complete = False
        self._informational = 0
        return self._write(self.origin.send_request(head))

    def send_data(self, data: bytes) -> bool:
        try:
            return self._write(self.origin.send_data(data))
        except UsageError:
            return True  # the origin already answered and closed its request side

    def send_end(self, trailers: Headers | None = None) -> bool:
        try:
            return self._write(self.origin.send_end(trailers))
        except UsageError:
            return True

    def write_raw(self, data: bytes) -> bool:
        return self._write(data)

    def end_raw(self) -> None:
        if self.session is not None:
            self.session.end(self.stream_id)

    def next_cycle(self) -> bool:
        """After a complete response: keep the stream for the next request if both sides
        may; otherwise let it go."""
        if self.session is not None and self.origin.start_next_cycle():
            return True
        self.release("the local service closed the connection")
        return False

    def release(self, reason: str = "") -> None:
        session = self.session
        if session is not None:
            self.session = None
            session.address_streams.give(self.address)
            session.release(self.stream_id, reason)

    def cancel(self, code: int, reason: str) -> None:
        session = self.session
        if session is not None:
            self.session = None
            session.address_streams.give(self.address)
            session.reset(self.stream_id, code, reason)

    def drained(self) -> None:
        """The front caught up: return the credit held back for it."""
        n, self._held = self._held, 0
        if n and self.session is not None:
            self.session.ack(self.stream_id, n)

    # -- origin -> visitor (StreamSink) ---------------------------------------------------

    def stream_data(self, data: bytes) -> None:
        session = self.session
        if session is None:
            return
        stream_id = self.stream_id
        front = self.front
        if self.raw:
            front.exchange_raw(data)
        else:
            self.origin.receive_data(data)
            self._process()
        front.exchange_flush()
        if session.closed:
            return
        # The front now, not the one the bytes went to: an exchange parked for a later
        # HTTP/2 stream gives its credit back at once.
        if self.front.backlogged:
            self._held += len(data)
        else:
            session.ack(stream_id, len(data))

    def _process(self) -> None:
        origin = self.origin
        front = self.front
        while self.session is not None:
            try:
                event = origin.next_event()
            except ParseError as exc:
                self._fail(502, f"The local service sent an invalid HTTP response ({exc}).")
                return
            if type(event) is Data:
                front.exchange_data(event.data)
            elif type(event) is ResponseHead:
                head = event
                if head.status >= 200:
                    self.response_started = True
                    front.exchange_head(head)
                elif head.status == 101:
                    self.raw = True
                    self.response_started = True
                    front.exchange_switched(head, origin.trailing_data)
                    return
                else:
                    self._informational += 1
                    if self._informational > MAX_INFORMATIONAL:
                        self._fail(
                            502,
                            f"The local service sent more than {MAX_INFORMATIONAL} "
                            "informational (1xx) responses to one request.",
                        )
                        return
                    if head.status != 100:  # the edge answers 100-continue itself
                        front.exchange_head(head)
            elif type(event) is EndOfMessage:
                self.complete = True
                front.exchange_end(event.trailers)
                return
            elif event is NEED_DATA or event is PAUSED:
                return
            elif type(event) is ConnectionClosed:
                self.release("the local service closed the connection")
                return

    def stream_end(self) -> None:
        if self.raw:
            self.front.exchange_raw_end()
            return
        if self.session is None:
            return
        if not self.response_started:
            self._fail(502, "The local service closed the connection without responding.")
            return
        # A response read until close ends here; one cut short fails.
        front = self.front  # the one the bytes go to, though the exchange may be parked
        self.origin.receive_data(b"")
        self._process()
        front.exchange_flush()
        if not self.complete:
            self._fail(502, "The local service closed the connection mid-response.")
        self.release()

    def stream_reset(self, code: int, reason: str) -> None:
        if self.session is not None:
            self.session.address_streams.give(self.address)
        self.session = None  # the session has forgotten the stream already
        if code == ResetCode.REFUSED:
            self.tunnel.session.edge.metrics.refused("local_refused")
            self.front.exchange_failed(
                502,
                f"The tunnel's agent could not reach its local service: {reason}. "
                "Check that the service is running.",
            )
        elif code == ResetCode.TOO_MANY_STREAMS:
            self.tunnel.session.edge.metrics.refused("stream_limit")
            self.front.exchange_failed(
                429, "The tunnel's agent has as many open connections as it takes; retry later."
            )
        elif code == ResetCode.TIMEOUT:
            self.front.exchange_failed(504, f"The tunnel's local service timed out: {reason}.")
        else:
            self.tunnel.session.edge.metrics.refused("agent_gone")
            self.front.exchange_failed(
                502, f"The tunnel's agent went away ({reason or 'stream reset'})."
            )

    def stream_blocked(self) -> None:
        self.front.exchange_blocked()

    def stream_writable(self) -> None:
        self.front.exchange_writable()

    def _fail(self, status: int, detail: str) -> None:
        self.release("invalid response")
        self.front.exchange_failed(status, detail)
