"""``SocketRelay``: one TCP socket piped to one tunnel stream, with backpressure both ways.

socket -> stream: bytes go into the stream; when the stream's window is used up the
multiplexer holds the rest and we stop reading the socket until the stream is writable.

stream -> socket: bytes are written to the socket and credit is returned at once, unless the
socket's write buffer is above its high-water mark (``pause_writing``): then credit is held
back until it drains, so a reader that reads nothing stops the sender after one window.

Half-close is carried both ways (EOF <-> FIN); the socket closes when both directions are done
or the stream is reset.
"""

from __future__ import annotations

import asyncio
import logging

from mypy_extensions import mypyc_attr

from relay.session import LinkSession, set_nodelay

log = logging.getLogger("burrow.relay")


# Compiled with mypyc (compiled/); TCP visitors, TLS passthrough and the agent's local
# relays subclass it.
@mypyc_attr(allow_interpreted_subclasses=True)
class SocketRelay(asyncio.Protocol):
    __slots__ = (
        "_early",
        "_eof_in",
        "_eof_out",
        "_paused",
        "_unacked",
        "done",
        "session",
        "stream_id",
        "transport",
    )

    def __init__(self, session: LinkSession | None, stream_id: int = 0) -> None:
        self.session = session
        self.stream_id = stream_id
        self.transport: asyncio.Transport | None = None
        self._paused = False
        self._unacked = 0
        self._eof_in = False  # the socket sent EOF
        self._eof_out = False  # the stream ended (we sent EOF to the socket)
        self._early: list[bytes] | None = None  # stream bytes that arrived before connect
        self.done = False

    # -- socket side ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = transport  # type: ignore[assignment]
        if self.done:
            # The stream was reset while we were still connecting: nothing to relay.
            transport.close()
            return
        set_nodelay(transport)
        early, self._early = self._early, None
        if early:
            for chunk in early:
                self.stream_data(chunk)
        if self._eof_out:
            self._write_eof()

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None or self.done:
            return
        if not session.write(self.stream_id, data):
            assert self.transport is not None
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof_in = True
        if self.session is not None and not self.done:
            self.session.end(self.stream_id)
        # Both directions done: returning False lets asyncio close the socket.
        return not self._eof_out

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        n, self._unacked = self._unacked, 0
        if n and self.session is not None and not self.done:
            self.session.ack(self.stream_id, n)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done:
            self.done = True
            if self.session is not None:
                self.session.release(self.stream_id, "the connection closed")

    # -- stream side (StreamSink) ---------------------------------------------------------

    def stream_data(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            if self._early is None:
                self._early = []
            self._early.append(data)
            return
        transport.write(data)
        if self._paused:
            self._unacked += len(data)
        else:
            assert self.session is not None
            self.session.ack(self.stream_id, len(data))

    def stream_end(self) -> None:
        self._eof_out = True
        if self.transport is not None:
            self._write_eof()

    def _write_eof(self) -> None:
        transport = self.transport
        assert transport is not None
        if self._eof_in or not transport.can_write_eof():
            self.done = True
            if self.session is not None:
                self.session.release(self.stream_id)
            transport.close()
        else:
            transport.write_eof()

    def stream_reset(self, code: int, reason: str) -> None:
        self.done = True
        if self.transport is not None:
            self.transport.close()

    def stream_blocked(self) -> None:
        if self.transport is not None and not self.done:
            self.transport.pause_reading()

    def stream_writable(self) -> None:
        if self.transport is not None and not self.done:
            self.transport.resume_reading()
