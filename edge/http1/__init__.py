"""HTTP/1.1 for the edge: one small connection interface, implementations behind it.

The edge drives two HTTP/1.1 connections per visitor connection: ``VisitorConnection``
(server role: requests in, responses out) and ``OriginConnection`` (client role: requests out
to the tunnelled service, responses in). Both speak the events in ``edge.http1.events``.
h11 is the reference implementation (``edge.http1.h11_impl``); any faster one must pass the
same tests.
"""

from __future__ import annotations

from typing import Protocol

from edge.http1.events import Event, Headers, RequestHead, ResponseHead


class VisitorConnection(Protocol):
    def receive_data(self, data: bytes) -> None:
        """Bytes from the visitor; ``b""`` means it closed its side."""

    def next_event(self) -> Event:
        """RequestHead, Data, EndOfMessage, ConnectionClosed, NEED_DATA or PAUSED.
        Raises ``ParseError``."""

    @property
    def waiting_for_continue(self) -> bool:
        """The request carried ``Expect: 100-continue`` and no body has been read yet."""

    @property
    def trailing_data(self) -> bytes:
        """Bytes received past the request that switched protocols."""

    def send_informational(self, head: ResponseHead) -> bytes: ...
    def send_response(self, head: ResponseHead) -> bytes: ...
    def send_data(self, data: bytes) -> bytes: ...
    def send_end(self, trailers: Headers | None = None) -> bytes: ...

    def start_next_cycle(self) -> bool:
        """After a response: True if the connection may carry another request."""


class OriginConnection(Protocol):
    def send_request(self, head: RequestHead) -> bytes: ...
    def send_data(self, data: bytes) -> bytes: ...
    def send_end(self, trailers: Headers | None = None) -> bytes: ...

    def receive_data(self, data: bytes) -> None: ...

    def next_event(self) -> Event:
        """ResponseHead (1xx or final), Data, EndOfMessage, ConnectionClosed, NEED_DATA or
        PAUSED. Raises ``ParseError``."""

    @property
    def trailing_data(self) -> bytes: ...

    def start_next_cycle(self) -> bool:
        """After a complete exchange: True if the connection may carry another request."""


def visitor_connection(max_header_bytes: int) -> VisitorConnection:
    from edge.http1.h11_impl import H11VisitorConnection

    return H11VisitorConnection(max_header_bytes)


def origin_connection(max_header_bytes: int = 64 * 1024) -> OriginConnection:
    from edge.http1.h11_impl import H11OriginConnection

    return H11OriginConnection(max_header_bytes)
