"""HTTP/1.1 for the edge: one small connection interface, implementations behind it.

The edge drives two HTTP/1.1 connections per visitor connection: ``VisitorConnection``
(server role: requests in, responses out) and ``OriginConnection`` (client role: requests out
to the tunnelled service, responses in). Both speak the events in ``edge.http1.events``.
h11 is the reference implementation (``edge.http1.h11_impl``); ``edge.http1.native`` is our
own, and ``edge.http1.httptools_impl`` parses with llhttp when httptools (the ``fast`` extra)
is installed. All of them pass the same tests.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Final, Protocol

from edge.http1.events import Event, Headers, RequestHead, ResponseHead
from edge.http1.native import NativeOriginConnection, NativeVisitorConnection

# The other implementations are imported when chosen: an edge on the default loads neither
# h11's connection machinery nor llhttp. httptools is the optional "fast" extra.
HAVE_HTTPTOOLS: Final = importlib.util.find_spec("httptools") is not None


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

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events (pipelined requests)."""

    def send_informational(self, head: ResponseHead) -> bytes: ...

    def close_after_response(self) -> None:
        """The connection ends after the next response, which says so (``connection:
        close``): called before ``send_response``."""

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


IMPLEMENTATIONS: Final = ("native", "h11", "httptools") if HAVE_HTTPTOOLS else ("native", "h11")
# native stays the default even when httptools is installed: it is the faster of the two.
# Sans-IO, a new connection reading one GET: 9.6 us native, 14.5 us httptools, 80 us h11
# for a bench-sized request; 21.3, 22.2 and 97 us for a browser's (ten fields, a cookie).
# Through the whole edge, `python -m bench instructions`, instructions per 1 KiB request at
# 50 connections: 172,426 native, 210,724 httptools (BURROW_HTTP1=httptools) as Python;
# 93,249 and 124,403 with the data path compiled (compiled/).
DEFAULT: Final = "native"
implementation: str = os.environ.get("BURROW_HTTP1", DEFAULT)
"""Which implementation new connections use: ``native`` (the default), ``h11`` (the
reference) or ``httptools``. Set with the environment variable ``BURROW_HTTP1``."""

if implementation not in IMPLEMENTATIONS:
    if implementation == "httptools":
        raise ImportError(
            "BURROW_HTTP1=httptools needs httptools: pip install 'burrow-tunnel[fast]', "
            "or unset BURROW_HTTP1"
        )
    raise ImportError(
        f"BURROW_HTTP1={implementation!r} is not an HTTP/1 implementation: "
        f"use one of {', '.join(IMPLEMENTATIONS)}"
    )


def visitor_connection(max_header_bytes: int) -> VisitorConnection:
    if implementation == "httptools":
        from edge.http1.httptools_impl import HttptoolsVisitorConnection

        return HttptoolsVisitorConnection(max_header_bytes)
    if implementation == "h11":
        from edge.http1.h11_impl import H11VisitorConnection

        return H11VisitorConnection(max_header_bytes)
    return NativeVisitorConnection(max_header_bytes)


def origin_connection(max_header_bytes: int = 64 * 1024) -> OriginConnection:
    if implementation == "httptools":
        from edge.http1.httptools_impl import HttptoolsOriginConnection

        return HttptoolsOriginConnection(max_header_bytes)
    if implementation == "h11":
        from edge.http1.h11_impl import H11OriginConnection

        return H11OriginConnection(max_header_bytes)
    return NativeOriginConnection(max_header_bytes)
