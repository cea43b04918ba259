"""The HTTP/1 parser interface the edge is written against.

The edge drives two HTTP/1.1 state machines per visitor connection: one facing the visitor
(server role: parse requests, frame responses) and one facing the tunnelled service (client
role: frame requests, parse responses). The interface is the subset of ``h11.Connection``
listed in ``Http1Connection``; h11 is the reference implementation. A faster implementation
must provide the same surface and pass the same tests (tests/edge).
"""

from __future__ import annotations

from typing import Any, Protocol

import h11


class Http1Connection(Protocol):
    @property
    def our_state(self) -> Any: ...
    @property
    def their_state(self) -> Any: ...
    @property
    def trailing_data(self) -> tuple[bytes, bool]: ...
    @property
    def client_is_waiting_for_100_continue(self) -> bool: ...

    def receive_data(self, data: bytes) -> None: ...
    def next_event(self) -> Any: ...
    def send(self, event: Any) -> bytes | None: ...
    def start_next_cycle(self) -> None: ...


def visitor_connection(max_header_bytes: int) -> Http1Connection:
    """Server role: requests in from a visitor, responses out."""
    return h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)


def origin_connection(max_header_bytes: int = 64 * 1024) -> Http1Connection:
    """Client role: requests out to the tunnelled service, responses in."""
    return h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_bytes)


RemoteProtocolError = h11.RemoteProtocolError
LocalProtocolError = h11.LocalProtocolError
