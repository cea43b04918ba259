"""The HTTP/1 event vocabulary the edge is written against.

Parsers turn bytes into these events; writers turn them back into bytes. Names are
lowercased bytes; values are bytes as received. The same events describe a request from a
visitor and a response from a tunnelled service, whichever parser implementation produced
them, so the relay code never depends on one parser library.

The module is part of the compiled data path (``compiled/``): there the events are native
classes, whose fields compiled code reads from the object's C struct. Several events are
built and a few dozen of their fields read on every request; through the attribute protocol
each read cost more than building the event. Run as Python they are ordinary classes with
``__slots__``.
"""

from __future__ import annotations

from typing import Final

Headers = list[tuple[bytes, bytes]]


Framing = tuple[int, int]
"""How a body is delimited: (``BODY_*`` kind from ``edge.http1.framing``, length)."""


class RequestHead:
    """A request head. ``framing`` is set by a parser when the headers hold no hop-by-hop
    field: they may then be sent on as they are, framed the same way, and a writer need not
    read them again (each pass over the headers costs on every request). With it, a parser
    may set ``fields``: the header lines as they came (each ending in CRLF, checked), which a
    writer sends in place of ``headers``, so they need not be joined again."""

    __slots__ = ("fields", "framing", "headers", "http_version", "method", "target")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: Headers,
        http_version: bytes = b"1.1",
        framing: Framing | None = None,
        fields: bytes | None = None,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version
        self.framing = framing
        self.fields = fields

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RequestHead):
            return NotImplemented
        return (
            self.method == other.method
            and self.target == other.target
            and self.headers == other.headers
            and self.http_version == other.http_version
            and self.framing == other.framing
            and self.fields == other.fields
        )

    def __repr__(self) -> str:
        return f"RequestHead({self.method!r}, {self.target!r}, {len(self.headers)} headers)"


class ResponseHead:
    """A final (>= 200) or informational (1xx) response head; ``framing`` and ``fields`` as
    for ``RequestHead``."""

    __slots__ = ("fields", "framing", "headers", "http_version", "reason", "status")

    def __init__(
        self,
        status: int,
        headers: Headers,
        reason: bytes = b"",
        http_version: bytes = b"1.1",
        framing: Framing | None = None,
        fields: bytes | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.reason = reason
        self.http_version = http_version
        self.framing = framing
        self.fields = fields

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResponseHead):
            return NotImplemented
        return (
            self.status == other.status
            and self.headers == other.headers
            and self.reason == other.reason
            and self.http_version == other.http_version
            and self.framing == other.framing
            and self.fields == other.fields
        )

    def __repr__(self) -> str:
        return f"ResponseHead({self.status}, {len(self.headers)} headers)"


class Data:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Data):
            return NotImplemented
        return self.data == other.data

    def __repr__(self) -> str:
        return f"Data({len(self.data)}B)"


class EndOfMessage:
    __slots__ = ("trailers",)

    def __init__(self, trailers: Headers | None = None) -> None:
        self.trailers: Headers = [] if trailers is None else trailers

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EndOfMessage):
            return NotImplemented
        return self.trailers == other.trailers

    def __repr__(self) -> str:
        return f"EndOfMessage({self.trailers!r})"


END_OF_MESSAGE: Final[EndOfMessage] = EndOfMessage()
"""The end of a message with no trailers, one instance for all: those who receive an event
read it and never change it."""


class ConnectionClosed:
    """The peer closed its side; no more events follow."""

    __slots__ = ()


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final[_Sentinel] = _Sentinel("NEED_DATA")
"""No complete event in what has been received so far."""
PAUSED: Final[_Sentinel] = _Sentinel("PAUSED")
"""A message is complete; the next one waits until ``start_next_cycle`` (or a 101)."""

Event = RequestHead | ResponseHead | Data | EndOfMessage | ConnectionClosed | _Sentinel


class ParseError(Exception):
    """The peer sent bytes that are not valid HTTP/1.1. ``status`` is the response a server
    should answer with (400, 413, 431, ...)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class UsageError(Exception):
    """Local error: the edge asked a connection to send something out of order."""
