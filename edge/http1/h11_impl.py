"""The reference implementation of the HTTP/1 connection interface, on h11."""

from __future__ import annotations

import h11

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


class _H11Base:
    __slots__ = ("_conn",)

    _conn: h11.Connection

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

    def next_event(self) -> Event:
        try:
            return self._convert(self._conn.next_event())
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint if exc.error_status_hint >= 400 else 400
            raise ParseError(str(exc), status) from None


class H11VisitorConnection(_H11Base):
    __slots__ = ()

    def __init__(self, max_header_bytes: int) -> None:
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)

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
        return self._send(
            h11.Response(status_code=head.status, headers=head.headers, reason=head.reason)
        )


class H11OriginConnection(_H11Base):
    __slots__ = ()

    def __init__(self, max_header_bytes: int) -> None:
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_bytes)

    def send_request(self, head: RequestHead) -> bytes:
        return self._send(h11.Request(method=head.method, target=head.target, headers=head.headers))
