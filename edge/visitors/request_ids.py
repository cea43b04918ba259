"""Request ids: every visitor request gets one, which the edge forwards to the local service
as ``X-Request-Id`` and puts on every log line about the request (``extra={"request_id":
...}``), so one id finds a request in the edge's logs and in the service's.

A visitor's own ``X-Request-Id`` (a proxy in front of the edge, a client that traces) is kept
when it is 1-64 characters of ``[A-Za-z0-9_-]``; anything else is replaced, as it would end
up in log lines and in the service's headers.

Generating one is on the hot path, so it is a random per-process prefix and a counter, not a
uuid4 per request: ``9f1c0a7b2e4d-1234``. The prefix is drawn again in a forked child.
"""

from __future__ import annotations

import os
import re
from typing import Final

from edge.http1.events import Headers

HEADER: Final = b"x-request-id"
_VALID: Final = re.compile(rb"[A-Za-z0-9_-]{1,64}").fullmatch


class _Ids:
    """The prefix and the last count. Compiled (``compiled/``), an instance's fields are read
    from its struct and the id is built without a generic call: most requests need one."""

    __slots__ = ("count", "prefix")

    def __init__(self) -> None:
        self.prefix = b""
        self.count = 0

    def renew(self) -> None:
        self.prefix = os.urandom(6).hex().encode() + b"-"
        self.count = 0

    def next(self) -> bytes:
        self.count += 1
        return b"%b%d" % (self.prefix, self.count)


_IDS: Final = _Ids()
_IDS.renew()
os.register_at_fork(after_in_child=_IDS.renew)


def new_request_id() -> bytes:
    return _IDS.next()


def request_id_for(headers: Headers) -> bytes:
    """The visitor's X-Request-Id if it is a sane one, else a new id. Header names are
    lowercase (both HTTP/1 parsers and h2 give them so)."""
    for name, value in headers:
        if name == HEADER:
            if _VALID(value):
                return value
            break
    return _IDS.next()
