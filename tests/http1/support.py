"""Shared pieces of the HTTP/1.1 conformance suite: the implementation table, event
normalisation, and drivers that feed bytes to a connection and answer like the edge does.

Every test runs once per implementation in ``edge.http1.IMPLEMENTATIONS``; events are
compared through ``norm`` so that a failure message shows the wire-level meaning, not object
identities.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise

from edge.http1 import HAVE_HTTPTOOLS, IMPLEMENTATIONS, OriginConnection, VisitorConnection
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
)
from edge.http1.h11_impl import H11OriginConnection, H11VisitorConnection
from edge.http1.native import NativeOriginConnection, NativeVisitorConnection

MAX_HEAD = 8 * 1024
"""max_header_bytes for visitor connections unless a test is about the limit."""


@dataclass(frozen=True)
class Impl:
    name: str
    visitor_factory: Callable[[int], VisitorConnection]
    origin_factory: Callable[[int], OriginConnection]

    def visitor(self, max_header_bytes: int = MAX_HEAD) -> VisitorConnection:
        return self.visitor_factory(max_header_bytes)

    def origin(self, max_header_bytes: int = 64 * 1024) -> OriginConnection:
        return self.origin_factory(max_header_bytes)

    @property
    def native(self) -> bool:
        return self.name == "native"


IMPLS: dict[str, Impl] = {
    "native": Impl("native", NativeVisitorConnection, NativeOriginConnection),
    "h11": Impl("h11", H11VisitorConnection, H11OriginConnection),
}
if HAVE_HTTPTOOLS:
    from edge.http1.httptools_impl import HttptoolsOriginConnection, HttptoolsVisitorConnection

    IMPLS["httptools"] = Impl("httptools", HttptoolsVisitorConnection, HttptoolsOriginConnection)
assert set(IMPLS) == set(IMPLEMENTATIONS), "a new implementation must join the suite"


# -- events ---------------------------------------------------------------------------------

Norm = tuple[object, ...]


def norm(event: Event) -> Norm:
    if isinstance(event, RequestHead):
        return ("request", event.method, event.target, tuple(event.headers), event.http_version)
    if isinstance(event, ResponseHead):
        return ("response", event.status, tuple(event.headers), event.reason)
    if isinstance(event, Data):
        return ("data", event.data)
    if isinstance(event, EndOfMessage):
        return ("end", tuple(event.trailers))
    if isinstance(event, ConnectionClosed):
        return ("closed",)
    if event is NEED_DATA:
        return ("need_data",)
    if event is PAUSED:
        return ("paused",)
    raise AssertionError(f"not an event: {event!r}")


def merged(events: Iterable[Norm]) -> list[Norm]:
    """Drop NEED_DATA/PAUSED and join adjacent Data: how a message reads whatever the split."""
    out: list[Norm] = []
    for event in events:
        if event[0] in ("need_data", "paused"):
            continue
        if event[0] == "data" and out and out[-1][0] == "data":
            out[-1] = ("data", out[-1][1] + event[1])  # type: ignore[operator]
            continue
        out.append(event)
    return out


def pull(conn: VisitorConnection | OriginConnection, limit: int = 10_000) -> list[Norm]:
    """Events up to and including the first NEED_DATA, PAUSED or ConnectionClosed."""
    out: list[Norm] = []
    for _ in range(limit):
        event = norm(conn.next_event())
        out.append(event)
        if event[0] in ("need_data", "paused", "closed"):
            return out
    raise AssertionError("next_event never asked for data")


def header(headers: Headers | tuple[tuple[bytes, bytes], ...], name: bytes) -> list[bytes]:
    return [v for n, v in headers if n.lower() == name]


def split_head_body(wire: bytes) -> tuple[bytes, bytes]:
    head, sep, rest = wire.partition(b"\r\n\r\n")
    assert sep, f"no end of head in {wire!r}"
    return head + sep, rest


def head_fields(wire: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields of a serialized head, names lowercased."""
    head, _ = split_head_body(wire)
    fields = []
    for line in head.split(b"\r\n")[1:]:
        if line:
            name, _, value = line.partition(b":")
            fields.append((name.lower(), value.strip()))
    return fields


# -- drivers --------------------------------------------------------------------------------

REPLY = ResponseHead(404, [(b"content-length", b"0")])
"""What the drivers answer every request with: never a 2xx, so a CONNECT never switches."""


def serve(conn: VisitorConnection, pieces: Iterable[bytes]) -> list[Norm]:
    """Feed ``pieces`` then EOF, answering each request once it has been read, as the edge
    does. Returns every event; stops at ConnectionClosed or a connection that cannot be
    reused. ParseError propagates."""
    out: list[Norm] = []
    for piece in [*pieces, b""]:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if event is NEED_DATA or event is PAUSED:
                break
            out.append(norm(event))
            if isinstance(event, ConnectionClosed):
                return out
            if isinstance(event, EndOfMessage):
                conn.send_response(REPLY)
                conn.send_end()
                if not conn.start_next_cycle():
                    return out
    return out


ORIGIN_REQUEST = RequestHead(b"GET", b"/", [(b"host", b"svc.local")])


def fetch(conn: OriginConnection, pieces: Iterable[bytes], requests: int = 1_000) -> list[Norm]:
    """Send a GET, feed the responses in ``pieces`` then EOF; a new GET follows each complete
    response, up to ``requests`` in all, while the connection may be reused. ParseError
    propagates."""
    conn.send_request(ORIGIN_REQUEST)
    conn.send_end()
    sent = 1
    out: list[Norm] = []
    for piece in [*pieces, b""]:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if event is NEED_DATA or event is PAUSED:
                break
            out.append(norm(event))
            if isinstance(event, ConnectionClosed):
                return out
            if isinstance(event, EndOfMessage):
                if sent == requests or not conn.start_next_cycle():
                    return out
                conn.send_request(ORIGIN_REQUEST)
                conn.send_end()
                sent += 1
    return out


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def parse_error(
    conn: VisitorConnection | OriginConnection, data: bytes, eof: bool = False
) -> ParseError:
    """Feed ``data`` (then EOF if asked) and return the ParseError the events end in."""
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    events: list[Norm] = []
    try:
        for _ in range(10_000):
            event = norm(conn.next_event())
            events.append(event)
            if event[0] in ("need_data", "paused", "closed"):
                break
    except ParseError as exc:
        return exc
    raise AssertionError(f"accepted {data!r} as {events}")
