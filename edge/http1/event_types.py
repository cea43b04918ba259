"""The event classes and sentinels of ``edge.http1.events``, for dispatch in compiled code.

The events are msgspec Structs, which mypyc does not compile, so ``events`` stays a Python
module. Compiled code looks a name imported from such a module up in its own module dict at
every use (about 140 instructions); it reads a ``Final`` name of a compiled module from a C
static. The edge's HTTP/1 loops test an event's type several times per event: they test
against these.
"""

from __future__ import annotations

from typing import Final

from edge.http1 import events

DATA: Final = events.Data
REQUEST_HEAD: Final = events.RequestHead
RESPONSE_HEAD: Final = events.ResponseHead
END_OF_MESSAGE: Final = events.EndOfMessage
CONNECTION_CLOSED: Final = events.ConnectionClosed
NEED_DATA: Final = events.NEED_DATA
PAUSED: Final = events.PAUSED
