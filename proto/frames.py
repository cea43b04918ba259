"""Frame codec for the agent<->edge link.

Theory of operation
-------------------
A link starts with a fixed preamble from each side (magic + version), then carries frames.
Every frame is a 10-byte header packed with ``struct`` followed by ``length`` body bytes::

    +--------+--------+----------------+----------------+
    | type:8 | flags:8|  stream id:32  |   length:32    |  body ...
    +--------+--------+----------------+----------------+

* DATA bodies are raw stream bytes; flag FIN half-closes the sender's side of the stream.
* CONTROL bodies are msgspec msgpack messages (see ``messages``). Session-wide messages use
  stream 0; ``StreamOpen`` carries the id of the stream it opens in the header.
* WINDOW bodies are a u32 credit increment for the stream in the header.
* RESET bodies are a u32 code and an optional UTF-8 reason.
* PING bodies are 8 opaque bytes; flag ACK marks the answer.

Bodies are capped (``MAX_FRAME_BODY``); an unknown type, an unknown flag or an oversized body
is a ``ProtocolError``: the peer is broken or hostile, and the link is closed.

The decoder keeps the bytes received and a read offset (``proto.receive``) so that parsing
is linear in the bytes received however the stream is split.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

from proto.receive import append_unread

MAGIC: Final = b"\x89BRW\r\n\x1a\n"
PROTOCOL_VERSION: Final = 1
_PREAMBLE: Final = struct.Struct("!8sHHI")  # magic, version, reserved, initial stream window
PREAMBLE_SIZE: Final = _PREAMBLE.size

HEADER: Final = struct.Struct("!BBII")
HEADER_SIZE: Final = HEADER.size
_U32: Final = struct.Struct("!I")

MAX_FRAME_BODY: Final = 1 << 18
"""Largest body a peer may send (256 KiB); DATA is written in smaller pieces."""

MAX_DATA_CHUNK: Final = 1 << 16
INITIAL_WINDOW: Final = 256 * 1024
"""Default credit a receiver grants on every new stream. Each side announces its own in its
preamble; the sender starts each stream with the peer's figure."""
MAX_STREAM_ID: Final = (1 << 32) - 1
_U32_MAX: Final = (1 << 32) - 1


class FrameType(enum.IntEnum):
    DATA = 0
    CONTROL = 1
    WINDOW = 2
    RESET = 3
    PING = 4


# The types as plain ints for the paths taken on every frame: a member read off the IntEnum
# class goes through EnumType.__getattr__, some 190 ns against 15 for a module constant.
T_DATA: Final = int(FrameType.DATA)
T_CONTROL: Final = int(FrameType.CONTROL)
T_WINDOW: Final = int(FrameType.WINDOW)
T_RESET: Final = int(FrameType.RESET)

FLAG_FIN: Final = 0x1
FLAG_ACK: Final = 0x1

# The flags each frame type may carry, indexed by type (the types are 0-4).
_ALLOWED_FLAGS: Final[tuple[int, ...]] = (FLAG_FIN, 0, 0, 0, FLAG_ACK)


class ProtocolError(Exception):
    """The peer sent bytes that break the protocol. The link must be closed."""


class ResetCode(enum.IntEnum):
    """Why a stream was reset; ``reason`` text travels beside the code."""

    CANCEL = 0
    REFUSED = 1  # the agent could not connect to the local service
    FLOW_CONTROL = 2
    TOO_MANY_STREAMS = 3
    UNKNOWN_TUNNEL = 4
    TIMEOUT = 5
    INTERNAL = 6
    GOING_AWAY = 7


def encode_preamble(version: int = PROTOCOL_VERSION, window: int = INITIAL_WINDOW) -> bytes:
    return _PREAMBLE.pack(MAGIC, version, 0, window)


def decode_preamble(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """Return the peer's protocol version and initial stream window from a preamble."""
    magic, version, _reserved, window = _PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError("not a Burrow link: bad preamble magic")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"peer speaks link protocol {version}, this side {PROTOCOL_VERSION}: "
            "upgrade the older of the two"
        )
    if not 0 < window <= (1 << 30):
        raise ProtocolError(f"initial window {window} outside 1 B..1 GiB")
    return int(version), int(window)


def frame_header(ftype: int, flags: int, stream_id: int, length: int) -> bytes:
    """``HEADER.pack`` of the four fields. Compiled, shifts and one ``to_bytes`` cost half
    a call of ``Struct.pack``, which a frame written per request pays."""
    if not (0 <= ftype < 256 and 0 <= flags < 256 and 0 <= stream_id <= _U32_MAX) or not (
        0 <= length <= _U32_MAX
    ):
        raise ValueError(f"frame header field out of range: {ftype, flags, stream_id, length}")
    return ((((ftype << 8 | flags) << 32) | stream_id) << 32 | length).to_bytes(HEADER_SIZE, "big")


def encode_window(stream_id: int, increment: int) -> bytes:
    return HEADER.pack(T_WINDOW, 0, stream_id, 4) + _U32.pack(increment)


def encode_reset(stream_id: int, code: int, reason: str = "") -> bytes:
    # Cap the reason at 1 KiB without cutting a UTF-8 sequence in half.
    text = reason.encode("utf-8", "replace")[:1024].decode("utf-8", "ignore")
    body = _U32.pack(code) + text.encode()
    return HEADER.pack(FrameType.RESET, 0, stream_id, len(body)) + body


def decode_reset(body: bytes) -> tuple[int, str]:
    if len(body) < 4:
        raise ProtocolError("RESET body shorter than its code")
    (code,) = _U32.unpack_from(body)
    return code, body[4:].decode("utf-8", "replace")


def decode_window(body: bytes) -> int:
    if len(body) != 4:
        raise ProtocolError("WINDOW body must be 4 bytes")
    (increment,) = _U32.unpack(body)
    if increment == 0:
        raise ProtocolError("WINDOW increment of 0")
    return int(increment)


def encode_ping(payload: bytes, ack: bool = False) -> bytes:
    if len(payload) != 8:
        raise ValueError("a PING payload is 8 bytes")
    return HEADER.pack(FrameType.PING, FLAG_ACK if ack else 0, 0, 8) + payload


class Frame:
    """One decoded frame. ``body`` is an owned ``bytes`` copy. Compiled (``compiled/``), a
    native class: one per frame received, its fields read from its C struct."""

    __slots__ = ("body", "flags", "stream_id", "type")

    def __init__(self, type: int, flags: int, stream_id: int, body: bytes) -> None:
        self.type = type
        self.flags = flags
        self.stream_id = stream_id
        self.body = body

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (
            self.type == other.type
            and self.flags == other.flags
            and self.stream_id == other.stream_id
            and self.body == other.body
        )

    def __repr__(self) -> str:
        return (
            f"Frame({FrameType(self.type).name}, flags={self.flags:#x}, "
            f"stream={self.stream_id}, {len(self.body)}B)"
        )


def _check_header(ftype: int, flags: int, length: int, max_body: int) -> None:
    if ftype >= len(_ALLOWED_FLAGS):
        raise ProtocolError(f"unknown frame type {ftype}")
    if flags & ~_ALLOWED_FLAGS[ftype]:
        raise ProtocolError(f"unknown flags {flags:#x} on frame type {ftype}")
    if length > max_body:
        raise ProtocolError(f"frame body of {length} bytes exceeds limit {max_body}")


def _read_frames(buf: bytes, pos: int, max_body: int, frames: list[Frame]) -> int:
    """Append the complete frames in ``buf`` from ``pos`` on; returns where the first
    incomplete one starts. The header is read byte by byte: compiled, indexing ``bytes`` is
    a few instructions, where ``Struct.unpack_from`` is a generic call and four boxed ints."""
    end = len(buf)
    while end - pos >= HEADER_SIZE:
        ftype = buf[pos]
        flags = buf[pos + 1]
        stream_id = buf[pos + 2] << 24 | buf[pos + 3] << 16 | buf[pos + 4] << 8 | buf[pos + 5]
        length = buf[pos + 6] << 24 | buf[pos + 7] << 16 | buf[pos + 8] << 8 | buf[pos + 9]
        if ftype >= len(_ALLOWED_FLAGS) or flags & ~_ALLOWED_FLAGS[ftype] or length > max_body:
            _check_header(ftype, flags, length, max_body)
        body_start = pos + HEADER_SIZE
        body_end = body_start + length
        if body_end > end:
            break
        frames.append(Frame(ftype, flags, stream_id, buf[body_start:body_end]))
        pos = body_end
    return pos


def _complete_frames_end(buf: bytearray, pos: int, max_body: int) -> int:
    """Where the complete frames in ``buf`` from ``pos`` on end; headers are checked."""
    end = len(buf)
    while end - pos >= HEADER_SIZE:
        ftype, flags, _, length = HEADER.unpack_from(buf, pos)
        _check_header(ftype, flags, length, max_body)
        if pos + HEADER_SIZE + length > end:
            break
        pos += HEADER_SIZE + length
    return pos


class FrameDecoder:
    """Sans-IO decoder: ``feed`` bytes, get back the complete frames they finish.

    The first ``PREAMBLE_SIZE`` bytes must be the peer's preamble; ``peer_version`` is set
    once it has arrived.
    """

    __slots__ = ("_buf", "_pos", "max_body", "peer_version", "peer_window")

    def __init__(self, *, expect_preamble: bool = True, max_body: int = MAX_FRAME_BODY) -> None:
        self._buf: bytes | bytearray = b""  # see proto.receive
        self._pos = 0
        self.max_body = max_body
        self.peer_version: int | None = None if expect_preamble else PROTOCOL_VERSION
        self.peer_window: int | None = None if expect_preamble else INITIAL_WINDOW

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        buf, pos = self._buf, self._pos = append_unread(self._buf, self._pos, data)
        end = len(buf)
        frames: list[Frame] = []
        if self.peer_version is None:
            if end - pos < PREAMBLE_SIZE:
                return frames
            self.peer_version, self.peer_window = decode_preamble(
                memoryview(buf)[pos : pos + PREAMBLE_SIZE]
            )
            pos += PREAMBLE_SIZE
        if isinstance(buf, bytes):
            pos = _read_frames(buf, pos, self.max_body, frames)
        else:
            # Reads gathered behind a partial frame: the complete frames are copied out once
            # and read as above; a partial one waits in the bytearray.
            ready = _complete_frames_end(buf, pos, self.max_body)
            if ready > pos:
                _read_frames(bytes(memoryview(buf)[pos:ready]), 0, self.max_body, frames)
                pos = ready
        if pos == end:  # all read: let the bytes go now, not at the next read
            self._buf = b""
            pos = 0
        self._pos = pos
        return frames
