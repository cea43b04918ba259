"""The one way incoming bytes are buffered, by the link's frame decoder and the HTTP/1 parser.

A buffer is the bytes received and a read offset into them. A read that arrives when
everything before it has been read becomes the buffer as it is, the ``bytes`` object it came
in: the usual read holds whole frames or whole messages, and what is sliced out of it is
``bytes`` already, copied once. Bytes that arrive behind unread ones are gathered in a
``bytearray``, compacted only when most of it has been read, so the work stays linear in the
bytes received however they are split.
"""

from __future__ import annotations

from typing import Final

COMPACT_AFTER: Final = 65536  # read bytes kept before a bytearray is compacted


def append_unread(
    buf: bytes | bytearray, pos: int, data: bytes | bytearray | memoryview
) -> tuple[bytes | bytearray, int]:
    """The buffer and read offset that hold ``buf[pos:]`` followed by ``data``."""
    if pos == len(buf):
        return (data if type(data) is bytes else bytes(data)), 0
    if type(buf) is bytearray:
        if pos > COMPACT_AFTER and pos * 2 > len(buf):
            del buf[:pos]
            pos = 0
        buf += data
        return buf, pos
    gathered = bytearray(memoryview(buf)[pos:])
    gathered += data
    return gathered, 0
