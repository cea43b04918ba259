"""The reference implementation of the HTTP/1 connection interface, on h11."""

from __future__ import annotations

import re
from typing import Final

import h11
from h11._readers import ChunkedReader

from edge.http1.events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    Headers,
    ParseError,
    RequestHead,
    ResponseHead,
    UsageError,
)

# h11's header-line pattern (``[ \t]*`` around an optional value) backtracks quadratically
# when a long run of blanks ends in a byte no line may hold: 15,000 blanks then a NUL held
# the loop for 1.8 s. Those bytes fail h11's patterns anyway, so a head holding one is
# refused here first, in one linear scan, with the verdict h11 would have reached.
_NEVER_IN_HEAD: Final = re.compile(rb"[\x00\x0b\x0c]|\r(?!\n)")
_HEAD_END: Final = b"\r\n\r\n"
# The zero-size chunk that ends a chunked body; its trailer lines follow (RFC 9112 7.1).
_LAST_CHUNK: Final = re.compile(rb"0+(?:;[^\r\n]*)?[ \t]*\r\n")


class _H11Base:
    __slots__ = ("_conn", "_head_state", "_max_head")

    _conn: h11.Connection
    # Their state while a head is awaited: IDLE for a server, SEND_RESPONSE for a client.
    _head_state: object
    _max_head: int

    def receive_data(self, data: bytes) -> None:
        self._conn.receive_data(data)

    @property
    def trailing_data(self) -> bytes:
        return bytes(self._conn.trailing_data[0])

    @property
    def buffered(self) -> int:
        return len(self._conn.trailing_data[0])

    def _send(self, event: h11.Event) -> bytes:
        try:
            return self._conn.send(event) or b""
        except h11.LocalProtocolError as exc:
            raise UsageError(str(exc)) from None

    def send_data(self, data: bytes) -> bytes:
        return self._send(h11.Data(data=data))

    def send_end(self, trailers: Headers | None = None) -> bytes:
        return self._send(h11.EndOfMessage(headers=trailers or []))

    def start_next_cycle(self) -> bool:
        conn = self._conn
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            return True
        return False

    def _convert(self, event: object) -> Event:
        t = type(event)
        if t is h11.Data:
            return Data(bytes(event.data))  # type: ignore[attr-defined]
        if t is h11.EndOfMessage:
            return EndOfMessage(list(event.headers))  # type: ignore[attr-defined]
        if event is h11.NEED_DATA:
            return NEED_DATA
        if event is h11.PAUSED:
            return PAUSED
        if t is h11.ConnectionClosed:
            return ConnectionClosed()
        if t is h11.Request:
            # h11 bounds only a head that arrives in pieces; one read whole is measured here.
            request: h11.Request = event  # type: ignore[assignment]
            size = len(request.target) + sum(len(n) + len(v) + 4 for n, v in request.headers)
            if size > self._max_head:
                raise ParseError("the message head is too large", 431)
            return RequestHead(
                event.method,  # type: ignore[attr-defined]
                event.target,  # type: ignore[attr-defined]
                list(event.headers),  # type: ignore[attr-defined]
                event.http_version,  # type: ignore[attr-defined]
            )
        if t is h11.Response or t is h11.InformationalResponse:
            return ResponseHead(
                event.status_code,  # type: ignore[attr-defined]
                list(event.headers),  # type: ignore[attr-defined]
                event.reason,  # type: ignore[attr-defined]
                event.http_version,  # type: ignore[attr-defined]
            )
        raise UsageError(f"unexpected h11 event {event!r}")

    def _lines_start(self, buffered: bytes) -> int:
        """Where in the buffer the header lines h11 reads next begin, or -1 if it reads none.

        That is the head while one is awaited, and the trailer section of a chunked body
        once the zero-size chunk is next.
        """
        conn = self._conn
        if conn.their_state is self._head_state:
            return 0
        reader = conn._reader
        if type(reader) is not ChunkedReader or reader._bytes_in_chunk:
            return -1
        if reader._reading_trailer:
            return 0
        last_chunk = _LAST_CHUNK.match(buffered, len(reader._bytes_to_discard))
        return -1 if last_chunk is None else last_chunk.end()

    def _refuse_unreadable_lines(self) -> None:
        buffered = self._conn.trailing_data[0]
        if not buffered:
            return
        start = self._lines_start(buffered)
        if start < 0:
            return
        if buffered.startswith(b"\r\n", start):
            return  # no trailer lines
        # h11 reads no header line before the blank line arrives, so a partial head waits.
        end = buffered.find(_HEAD_END, start)
        if end >= 0 and _NEVER_IN_HEAD.search(buffered, start, end) is not None:
            raise ParseError("a header line holds a byte no header line may contain", 400)

    def next_event(self) -> Event:
        self._refuse_unreadable_lines()
        try:
            return self._convert(self._conn.next_event())
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint if exc.error_status_hint >= 400 else 400
            raise ParseError(str(exc), status) from None


class H11VisitorConnection(_H11Base):
    __slots__ = ("_close_after",)

    def __init__(self, max_header_bytes: int) -> None:
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self._max_head = max_header_bytes
        self._head_state = h11.IDLE
        self._close_after = False

    def close_after_response(self) -> None:
        self._close_after = True

    @property
    def waiting_for_continue(self) -> bool:
        return bool(self._conn.client_is_waiting_for_100_continue)

    def send_informational(self, head: ResponseHead) -> bytes:
        return self._send(
            h11.InformationalResponse(
                status_code=head.status, headers=head.headers, reason=head.reason
            )
        )

    def send_response(self, head: ResponseHead) -> bytes:
        headers = head.headers
        if self._close_after:
            # h11 closes after a response that says so.
            headers = [(n, v) for n, v in headers if n.lower() != b"connection"]
            headers.append((b"connection", b"close"))
        return self._send(
            h11.Response(status_code=head.status, headers=headers, reason=head.reason)
        )


class H11OriginConnection(_H11Base):
    __slots__ = ()

    def __init__(self, max_header_bytes: int) -> None:
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_bytes)
        self._max_head = max_header_bytes
        self._head_state = h11.SEND_RESPONSE

    def send_request(self, head: RequestHead) -> bytes:
        return self._send(h11.Request(method=head.method, target=head.target, headers=head.headers))
