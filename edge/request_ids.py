"""Request ids: every visitor request gets one, which the edge forwards to the local service
as ``X-Request-Id`` and puts on every log line about the request (``extra={"request_id":
...}``), so one id finds a request in the edge's logs and in the service's.

A visitor's own ``X-Request-Id`` (a proxy in front of the edge, a client that traces) is kept
when it is 1-64 characters of ``[A-Za-z0-9_-]``; anything else is replaced, as it would end
up in log lines and in the service's headers.

Generating one is on the hot path, so it is a random per-process prefix and a counter, not a
uuid4 per request: ``9f1c0a7b2e4d-1a2b``. The prefix is drawn again in a forked child.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable
from typing import Final

HEADER: Final = b"x-request-id"
_VALID: Final = re.compile(rb"[A-Za-z0-9_-]{1,64}").fullmatch

_prefix = b""
_count = itertools.count(1).__next__


def _new_prefix() -> None:
    global _prefix, _count
    _prefix = os.urandom(6).hex().encode() + b"-"
    _count = itertools.count(1).__next__


_new_prefix()
os.register_at_fork(after_in_child=_new_prefix)


def new_request_id() -> bytes:
    return b"%s%x" % (_prefix, _count())


def request_id_for(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The visitor's X-Request-Id if it is a sane one, else a new id. Header names are
    lowercase (both HTTP/1 parsers and h2 give them so)."""
    for name, value in headers:
        if name == HEADER:
            if _VALID(value):
                return value
            break
    return b"%s%x" % (_prefix, _count())
