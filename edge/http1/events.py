"""The HTTP/1 event vocabulary the edge is written against.

Parsers turn bytes into these events; writers turn them back into bytes. Names are
lowercased bytes; values are bytes as received. The same events describe a request from a
visitor and a response from a tunnelled service, whichever parser implementation produced
them, so the relay code never depends on one parser library.

The events are msgspec Structs: built in C, several on every request, they cost a fifth of a
class with ``__slots__`` and an ``__init__``. The cycle collector does not track them (they
hold bytes, ints and header lists, never themselves).
"""

from __future__ import annotations

from typing import Final

import msgspec

Headers = list[tuple[bytes, bytes]]


Framing = tuple[int, int]
"""How a body is delimited: (``BODY_*`` kind from ``edge.http1.framing``, length)."""


class RequestHead(msgspec.Struct, gc=False):
    """A request head. ``framing`` is set by a parser when the headers hold no hop-by-hop
    field: they may then be sent on as they are, framed the same way, and a writer need not
    read them again (each pass over the headers costs on every request). With it, a parser
    may set ``fields``: the header lines as they came (each ending in CRLF, checked), which a
    writer sends in place of ``headers``, so they need not be joined again."""

    method: bytes
    target: bytes
    headers: Headers
    http_version: bytes = b"1.1"
    framing: Framing | None = None
    fields: bytes | None = None

    def __repr__(self) -> str:
        return f"RequestHead({self.method!r}, {self.target!r}, {len(self.headers)} headers)"


class ResponseHead(msgspec.Struct, gc=False):
    """A final (>= 200) or informational (1xx) response head; ``framing`` and ``fields`` as
    for ``RequestHead``."""

    status: int
    headers: Headers
    reason: bytes = b""
    http_version: bytes = b"1.1"
    framing: Framing | None = None
    fields: bytes | None = None

    def __repr__(self) -> str:
        return f"ResponseHead({self.status}, {len(self.headers)} headers)"


class Data(msgspec.Struct, gc=False):
    data: bytes

    def __repr__(self) -> str:
        return f"Data({len(self.data)}B)"


class EndOfMessage(msgspec.Struct, gc=False):
    trailers: Headers = msgspec.field(default_factory=list)


END_OF_MESSAGE: Final = EndOfMessage()
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


NEED_DATA: Final = _Sentinel("NEED_DATA")
"""No complete event in what has been received so far."""
PAUSED: Final = _Sentinel("PAUSED")
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
