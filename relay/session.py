"""The asyncio shell around a ``Multiplexer``: one per agent link, on either end.

It only moves bytes: reads go into the multiplexer, events go to the stream sinks (or to the
subclass for messages and new streams), and whatever the multiplexer wants to send is written
with one ``writelines``. Liveness is one re-armed timer: every ``heartbeat`` seconds it sends a
ping, and a link that has been silent for ``heartbeat * misses`` seconds is torn down.

Backpressure on the link as a whole: stream credit bounds each stream, but a peer may grant
credit and then read nothing. The link's transport has a high-water mark; above it
(``pause_writing``) every stream's source stops (``StreamSink.stream_blocked``) and writes
return False, until the buffer drains below the low-water mark (``resume_writing``). So what
the link buffers is bounded whatever the peer announces or grants. Meanwhile nothing the peer
sends may fill it either: its pings go unanswered, credit it grants resumes no source, and
past a few messages that may want answers the link is dropped. A peer that takes nothing at
all (the buffer paused and not shrinking for ``heartbeat * misses`` seconds) holds its
streams' visitors for nothing: the link is torn down as a silent one is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import time
from typing import Final, Protocol

from mypy_extensions import mypyc_attr

from proto import frames
from proto.messages import Message, StreamOpen
from proto.mux import (
    DEFAULT_LINK_BUDGET,
    DataReceived,
    MessageReceived,
    Multiplexer,
    PongReceived,
    Role,
    StreamOpened,
    StreamReset,
    StreamWritable,
)

log = logging.getLogger("burrow.link")

_PING: Final = struct.Struct("!d")
# Queued buffers (a data frame is two) at which stream writes go out before the loop pass ends.
_WRITE_AT_ONCE: Final = 16
# The link's write buffer limits: above the high mark every stream's source pauses, below the
# low one they resume. High enough that a fast link never pauses between two loop passes.
LINK_HIGH_WATER: Final = 1024 * 1024
LINK_LOW_WATER: Final = 256 * 1024
# Messages (and streams we refuse) a peer may send while it reads nothing of the link: an
# agent sends a few Binds and Notices in a session's life, an edge a few Bounds and Unbinds.
_MAX_ASKED_WHILE_PAUSED: Final = 64


class StreamSink(Protocol):
    """What a stream's bytes are delivered to (a visitor connection, a local socket)."""

    def stream_data(self, data: bytes) -> None: ...
    def stream_end(self) -> None: ...
    def stream_reset(self, code: int, reason: str) -> None: ...

    def stream_blocked(self) -> None:
        """The link is backed up: stop reading the source until ``stream_writable``."""

    def stream_writable(self) -> None:
        """The stream (or the link) drained: resume reading the source."""


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Small writes (request heads, pings) must not wait 40 ms for Nagle."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# Compiled with mypyc (compiled/); the edge's AgentSession and the agent's AgentLink subclass it.
@mypyc_attr(allow_interpreted_subclasses=True)
class LinkSession(asyncio.Protocol):
    """Base shell for one agent link. Subclasses handle messages and opened streams."""

    def __init__(
        self,
        role: Role,
        *,
        heartbeat: float = 5.0,
        misses: int = 3,
        max_streams: int = 1024,
        budget: int = DEFAULT_LINK_BUDGET,
    ) -> None:
        # The multiplexer reads the clock only at credit batches, to tune stream windows.
        self.mux = Multiplexer(role, max_streams=max_streams, budget=budget, clock=time.monotonic)
        self.sinks: dict[int, StreamSink] = {}
        self.transport: asyncio.Transport | None = None
        self.heartbeat = heartbeat
        self.misses = misses
        self.rtt: float | None = None
        self.closed = False
        self.peer: str = ""
        self._heard = True
        self._missed = 0
        self._stalled = 0  # heartbeats the write buffer stayed paused without shrinking
        self._unsent = -1  # the write buffer's size at the last heartbeat, while paused
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self.bytes_in = 0
        self.bytes_out = 0
        self._dispatching = False
        self._flush_pending = False
        self.write_paused = False  # the link's write buffer is above its high-water mark
        self._asked_while_paused = 0  # messages (refused streams) from the peer since it paused

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        link: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport = link
        set_nodelay(transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        # A transport without limits to set (a test's fake) keeps what it has.
        with contextlib.suppress(NotImplementedError, AttributeError):
            link.set_write_buffer_limits(high=LINK_HIGH_WATER, low=LINK_LOW_WATER)
        self.flush()
        self._timer = self._loop.call_later(self.heartbeat, self._tick)

    def data_received(self, data: bytes) -> None:
        self._heard = True
        self.bytes_in += len(data)
        try:
            events = self.mux.receive_data(data)
        except frames.ProtocolError as exc:
            self.protocol_failed(str(exc))
            return
        sinks = self.sinks
        # Whatever the sinks queue while these events are dispatched goes out in one
        # writelines at the end, not one syscall per stream.
        self._dispatching = True
        for ev in events:
            if type(ev) is DataReceived:
                sink = sinks.get(ev.stream_id)
                if sink is None:
                    continue
                if ev.data:
                    sink.stream_data(ev.data)
                if ev.end:
                    sink.stream_end()
            elif type(ev) is StreamWritable:
                sink = sinks.get(ev.stream_id)
                # While the link is backed up, resume_writing resumes it: a peer granting
                # credit must not pull more of a source into a buffer it does not read.
                if sink is not None and not self.write_paused:
                    sink.stream_writable()
            elif type(ev) is StreamReset:
                sink = sinks.pop(ev.stream_id, None)
                if sink is not None:
                    sink.stream_reset(ev.code, ev.reason)
            elif type(ev) is StreamOpened:
                self.on_stream_opened(ev.stream_id, ev.open)
            elif type(ev) is MessageReceived:
                if self.write_paused and self._asking_without_reading():
                    return
                self.on_message(ev.message)
            elif type(ev) is PongReceived:
                (sent,) = _PING.unpack(ev.payload)
                self.rtt = rtt = time.monotonic() - sent
                self.mux.observe_rtt(rtt)
            if self.closed:
                self._dispatching = False
                return
        self._dispatching = False
        self.flush()

    def _asking_without_reading(self) -> bool:
        """A message (or a stream we refuse) that may want an answer arrived while the peer
        reads nothing of ours: past a few, the peer is making us queue answers for nobody,
        and the link is dropped (aborted: closing would wait for the unread buffer)."""
        self._asked_while_paused += 1
        if self._asked_while_paused <= _MAX_ASKED_WHILE_PAUSED:
            return False
        log.warning("link %s sends requests but reads none of the answers: closing", self.peer)
        self._dispatching = False
        self.closed = True  # nothing more is dispatched or written; connection_lost follows
        self.abort()
        return True

    def pause_writing(self) -> None:
        self.write_paused = True
        self.mux.answer_pings = False
        for sink in list(self.sinks.values()):
            sink.stream_blocked()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.mux.answer_pings = True
        self._asked_while_paused = 0
        mux = self.mux
        for stream_id, sink in list(self.sinks.items()):
            if self.write_paused or self.closed:
                return  # the streams resumed so far filled it again: the rest stay blocked
            # One still waiting for credit resumes on the multiplexer's StreamWritable.
            if not mux.pending(stream_id) and stream_id in self.sinks:
                sink.stream_writable()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        sinks = list(self.sinks.values())
        self.sinks.clear()
        for sink in sinks:
            sink.stream_reset(frames.ResetCode.CANCEL, "the tunnel link closed")
        self.on_closed(exc)

    # -- for subclasses -------------------------------------------------------------------

    def on_message(self, message: Message) -> None:
        raise NotImplementedError

    def on_stream_opened(self, stream_id: int, open_msg: StreamOpen) -> None:
        if self.write_paused and self._asking_without_reading():
            return
        self.mux.reset_stream(stream_id, frames.ResetCode.REFUSED, "streams are not accepted here")

    def on_closed(self, exc: Exception | None) -> None:
        pass

    def protocol_failed(self, reason: str) -> None:
        log.warning("link %s broke the protocol: %s", self.peer, reason)
        self.close()

    # -- stream operations used by sinks --------------------------------------------------

    def flush(self) -> None:
        out = self.mux.data_to_send()
        if out and self.transport is not None and not self.closed:
            self.bytes_out += sum(map(len, out))  # once per request: no generator frame
            self.transport.writelines(out)

    def flush_soon(self) -> None:
        """Write what is queued at the end of this event-loop iteration, so that the
        frames of every stream served in one iteration share one syscall."""
        if not self._dispatching and not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_pending = False
        self.flush()

    def send(self, message: Message) -> None:
        self.mux.send_message(message)
        self.flush()

    def open(self, open_msg: StreamOpen, sink: StreamSink) -> int:
        stream_id = self.mux.open_stream(open_msg)
        self.sinks[stream_id] = sink
        self.flush_soon()
        return stream_id

    def write(self, stream_id: int, data: bytes) -> bool:
        """Queue stream bytes; False: pause the source until the sink's ``stream_writable``
        (the stream waits for credit, or the link is backed up)."""
        ok = self.mux.send_data(stream_id, data) and not self.write_paused
        if self._dispatching:
            return ok  # goes out with the rest of the dispatch's frames
        # Stream bytes wait for the end of the loop pass, so the requests (or responses) of
        # the connections served in one pass share a syscall, but no more than a few frames
        # wait: then they go at once, so the peer starts on them while this side parses the
        # rest. One write per frame cost a fifth of the edge's CPU in syscalls at 1 KiB and
        # 50 connections; one per pass left the peer idle until the pass ended (the two
        # ends took turns); written at eight frames, 17% more requests went through than one
        # per frame, with the 1-connection latency unchanged.
        if self.mux.queued >= _WRITE_AT_ONCE:
            self.flush()
        else:
            self.flush_soon()
        return ok

    def end(self, stream_id: int) -> None:
        self.mux.end_stream(stream_id)
        self.flush_soon()

    def ack(self, stream_id: int, n: int) -> None:
        mux = self.mux
        mux.acknowledge(stream_id, n)
        if mux.has_output:
            self.flush_soon()

    def release(self, stream_id: int, reason: str = "") -> None:
        """The sink is finished with the stream: forget it, resetting it if still open."""
        self.sinks.pop(stream_id, None)
        if self.mux.is_open(stream_id):
            self.mux.reset_stream(stream_id, frames.ResetCode.CANCEL, reason)
            self.flush_soon()

    def reset(self, stream_id: int, code: int, reason: str = "") -> None:
        self.sinks.pop(stream_id, None)
        self.mux.reset_stream(stream_id, code, reason)
        self.flush_soon()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.flush()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- liveness -------------------------------------------------------------------------

    def _tick(self) -> None:
        if self.closed:
            return
        if self._heard:
            self._missed = 0
        else:
            self._missed += 1
            if self._missed >= self.misses:
                log.warning(
                    "link %s silent for %.1fs: closing", self.peer, self.heartbeat * self.misses
                )
                self.abort()
                return
        if self._taking_nothing():
            log.warning(
                "link %s took no bytes for %.1fs: closing", self.peer, self.heartbeat * self.misses
            )
            self.abort()
            return
        self._heard = False
        self.mux.ping(_PING.pack(time.monotonic()))
        self.flush()
        self._timer = self._loop.call_later(self.heartbeat, self._tick)

    def _taking_nothing(self) -> bool:
        """Once a heartbeat: has the peer read nothing of a paused link for ``misses``
        heartbeats in a row?"""
        transport = self.transport
        if not self.write_paused or transport is None:
            self._stalled = 0
            self._unsent = -1
            return False
        unsent = transport.get_write_buffer_size()
        self._stalled = self._stalled + 1 if 0 <= self._unsent <= unsent else 0
        self._unsent = unsent
        return self._stalled >= self.misses


def new_id() -> str:
    return os.urandom(8).hex()
