"""Sans-IO stream multiplexer with per-stream credit windows.

Theory of operation
-------------------
One ``Multiplexer`` sits at each end of an agent link. The shell feeds it the bytes read
from the socket (``receive_data``) and gets back events; it calls methods to open, write,
end and reset streams, and writes out whatever ``data_to_send`` returns. Nothing here
blocks, sleeps or touches a socket.

Stream ids: the agent opens odd ids, the edge even ids; stream 0 is the session itself.

Flow control (per stream, in each direction): the receiver grants credit, starting at
``INITIAL_WINDOW``. A sender never puts more DATA bytes on the wire than its credit;
bytes beyond it wait in the stream's ``pending`` buffer, and ``send_data`` returns False so
the shell stops reading from the source until a ``StreamWritable`` event says the buffer
drained. The receiver returns credit with WINDOW frames only when the shell calls
``acknowledge`` (the bytes have left for their destination), so a slow visitor throttles its
own stream and no other. Credit goes back in batches (a quarter window) to keep WINDOW
frames rare.

Window tuning (the receiver's side, as gRPC's BDP estimation and QUIC stacks do it): one
stream can carry at most its window per round trip, so a fixed window caps a long link
(1 MiB over 50 ms is 20 MB/s). The round-trip time comes from the heartbeat pongs the shell
passes to ``observe_rtt`` and from pings the multiplexer sends itself at credit batches
(their pongs, timed behind the queued stream bytes, never reach the shell); the injected
clock is read at credit batches only, never per chunk. Once half a round trip has passed
since a stream's last sample, the bytes it received meanwhile, scaled to a round trip, are
its bandwidth-delay product sample: a stream that carried two thirds of its window or more
is held back by the window, and the window doubles (up to ``max_window``); one that used
less than a quarter of it, or that idled, is halved toward twice its sample (never under
the initial window) and gives the excess back by returning less credit than it consumed.
Credit already granted cannot be taken back, so an idle stream shrinks when it next moves.

The windows of all streams together are bounded by ``budget``: the bytes a peer may have
sent us and the shell has not passed on never exceed it, however many streams are open and
whatever their readers do. Half of it is the initial windows of ``max_streams`` streams
(the initial window is lowered until they fit), so a new stream is always covered; growth
comes out of the other half, and a stream grows only into what is left of it.

Any peer may be hostile, so the credit a sender honours is capped: a stream never holds more
than ``MAX_STREAM_CREDIT`` of send credit, whatever window the peer's preamble announces or
its WINDOW frames grant; credit past the cap is dropped. That is safe because a receiver
returns credit for bytes it was sent and consumed, so the sender's view stays at or below the
receiver's and is never overrun; and it never stalls a stream, since one at the cap has the
cap to send with. A ``Multiplexer`` offers no more than the cap either (a receiver that did,
and batched its credit at a quarter of its own window, would wait for bytes that never
come). The cap bounds what one stream puts on the link between two WINDOW frames; what the
link holds as a whole is the shell's to bound (its write buffer's high-water mark).

A peer that sends more than its credit, DATA on a stream it ended, frames for a stream that
never existed, or a malformed message has broken the protocol: ``ProtocolError`` is raised
and the shell closes the link.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import Final

import msgspec

from proto import frames as f
from proto.messages import Message, StreamOpen, decode_message, encode_message

DEFAULT_WINDOW: Final = f.INITIAL_WINDOW
MAX_STREAM_CREDIT: Final = 16 * 1024 * 1024
"""The most send credit a stream holds, whatever the peer announces or grants: room for
window growth on long fat links, and a bound on what a hostile peer can make us send."""
DEFAULT_MAX_WINDOW: Final = MAX_STREAM_CREDIT
DEFAULT_LINK_BUDGET: Final = 64 * 1024 * 1024
"""What the windows of one link's streams may add up to: the most a peer can make one
side of a link hold, with every stream's reader stalled."""
_MAX_CREDIT: Final = (1 << 31) - 1  # the most a peer may grant (as HTTP/2): more is an error
# Credit goes back at a quarter window, but at least this often: a big window still hears
# of its stream every few round trips, so it shrinks soon after its stream slows down.
_MAX_BATCH: Final = 256 * 1024
# The pings that time the credit loop carry 0xff and a sequence number: no heartbeat's
# timestamp (a positive double) starts with 0xff, so their pongs never reach the shell.
_SEQ_MASK: Final = (1 << 56) - 1
# At most this often (seconds), so a link of many small exchanges is not timed per batch.
_PROBE_INTERVAL: Final = 0.1


class Role(enum.Enum):
    AGENT = 1  # opens odd stream ids
    EDGE = 2  # opens even stream ids


# -- events -------------------------------------------------------------------------------


class Event:
    """What the multiplexer reports. Compiled (``compiled/``), the events are native classes:
    the session reads their fields from the object's C struct, where a generic attribute
    read cost more than building the event."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event) or type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def _values(self) -> tuple[object, ...]:
        return ()


class MessageReceived(Event):
    __slots__ = ("message",)

    def __init__(self, message: Message) -> None:
        self.message = message

    def _values(self) -> tuple[object, ...]:
        return (self.message,)

    def __repr__(self) -> str:
        return f"MessageReceived({self.message!r})"


class StreamOpened(Event):
    __slots__ = ("open", "stream_id")

    def __init__(self, stream_id: int, open: StreamOpen) -> None:
        self.stream_id = stream_id
        self.open = open

    def _values(self) -> tuple[object, ...]:
        return (self.stream_id, self.open)

    def __repr__(self) -> str:
        return f"StreamOpened({self.stream_id}, {self.open!r})"


class DataReceived(Event):
    """``data`` arrived on a stream; ``end`` means the peer will send no more."""

    __slots__ = ("data", "end", "stream_id")

    def __init__(self, stream_id: int, data: bytes, end: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.end = end

    def _values(self) -> tuple[object, ...]:
        return (self.stream_id, self.data, self.end)

    def __repr__(self) -> str:
        return f"DataReceived({self.stream_id}, {len(self.data)}B, end={self.end})"


class StreamReset(Event):
    __slots__ = ("code", "reason", "stream_id")

    def __init__(self, stream_id: int, code: int, reason: str) -> None:
        self.stream_id = stream_id
        self.code = code
        self.reason = reason

    def _values(self) -> tuple[object, ...]:
        return (self.stream_id, self.code, self.reason)

    def __repr__(self) -> str:
        return f"StreamReset({self.stream_id}, {self.code}, {self.reason!r})"


class StreamWritable(Event):
    """Everything buffered for the stream has been sent; resume reading its source."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id

    def _values(self) -> tuple[object, ...]:
        return (self.stream_id,)

    def __repr__(self) -> str:
        return f"StreamWritable({self.stream_id})"


class PongReceived(Event):
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def _values(self) -> tuple[object, ...]:
        return (self.payload,)

    def __repr__(self) -> str:
        return f"PongReceived({self.payload!r})"


# -- streams ------------------------------------------------------------------------------


class _Stream:
    __slots__ = (
        "epoch_received",
        "epoch_start",
        "id",
        "last_window",
        "local_closed",
        "pending",
        "pending_fin",
        "received",
        "recv_credit",
        "recv_target",
        "remote_closed",
        "send_window",
        "unacked",
        "window",
    )

    def __init__(self, stream_id: int, send_window: int, recv_window: int) -> None:
        self.id = stream_id
        self.send_window = send_window
        self.recv_credit = recv_window
        # What the peer may send and we have not returned credit for (bounded by the
        # budget), and the window tuning wants it to be: they differ while it shrinks.
        self.recv_target = recv_window
        self.window = recv_window
        self.last_window = recv_window  # the window before the latest tuning decision
        self.unacked = 0
        self.received = 0
        # The window-tuning sample: when it started (0.0: not yet) and ``received`` then.
        self.epoch_start = 0.0
        self.epoch_received = 0
        self.pending = bytearray()
        self.pending_fin = False
        self.local_closed = False
        self.remote_closed = False


class StreamClosedError(Exception):
    """Local error: the caller wrote to a stream it had already ended."""


class Multiplexer:
    __slots__ = (
        "_granted",
        "_last_peer_id",
        "_next_id",
        "_out",
        "_peer_window",
        "_probe",
        "_probe_due",
        "_probe_sent",
        "_probe_seq",
        "_streams",
        "answer_pings",
        "budget",
        "clock",
        "decoder",
        "initial_window",
        "max_streams",
        "max_window",
        "role",
        "rtt",
    )

    def __init__(
        self,
        role: Role,
        *,
        initial_window: int = DEFAULT_WINDOW,
        max_window: int = DEFAULT_MAX_WINDOW,
        max_streams: int = 1024,
        budget: int = DEFAULT_LINK_BUDGET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.role = role
        # Half the budget covers the initial windows of max_streams streams (see the top).
        initial_window = min(initial_window, MAX_STREAM_CREDIT, budget // (2 * max(max_streams, 1)))
        if initial_window < 1:
            raise ValueError(f"a link budget of {budget} bytes cannot cover {max_streams} streams")
        self.initial_window = initial_window
        self.max_window = min(max(max_window, initial_window), MAX_STREAM_CREDIT)
        self.budget = budget
        self.clock = clock
        self.rtt = 0.0  # smoothed round-trip time of the link in seconds; 0.0: not measured
        self._granted = 0  # the windows of all open streams (what the peer may still cost us)
        self._probe = b""  # the payload of the credit-loop ping awaiting its pong
        self._probe_sent = 0.0  # when it went out
        self._probe_due = 0.0  # not before this is the next one sent
        self._probe_seq = 0
        self._peer_window = 0  # the peer's initial window, once its preamble is in
        self.max_streams = max_streams
        # The shell clears it while the peer reads nothing of what we send: a pong queued
        # then helps no one, and a peer pinging without reading (the HTTP/2 "ping flood")
        # would otherwise have us queue answers without end.
        self.answer_pings = True
        self.decoder = f.FrameDecoder()
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1 if role is Role.AGENT else 2
        self._last_peer_id = 0
        self._out: list[bytes | memoryview] = [f.encode_preamble(window=initial_window)]

    @property
    def streams_opened(self) -> int:
        """Streams this side has opened on the link (an edge opens one per visitor
        connection): read for usage metering, costs nothing on the data path."""
        return (self._next_id - (1 if self.role is Role.AGENT else 2)) // 2

    # -- output ---------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes | memoryview]:
        out = self._out
        if out:
            self._out = []
        return out

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    @property
    def queued(self) -> int:
        """Buffers waiting in ``data_to_send`` (a data frame is two: header and payload)."""
        return len(self._out)

    # -- introspection --------------------------------------------------------------------

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def pending(self, stream_id: int) -> int:
        s = self._streams.get(stream_id)
        return len(s.pending) if s else 0

    def send_window(self, stream_id: int) -> int:
        s = self._streams.get(stream_id)
        return s.send_window if s else 0

    def buffered_bytes(self) -> int:
        """Bytes held for all streams waiting for credit (memory accounting)."""
        return sum(len(s.pending) for s in self._streams.values())

    def recv_window(self, stream_id: int) -> int:
        """The stream's receive window as tuned (what the peer may have in flight will
        come down to it as the peer uses the credit it holds)."""
        s = self._streams.get(stream_id)
        return s.window if s else 0

    @property
    def granted(self) -> int:
        """What the peer may send on all open streams and we have not returned credit
        for: at most ``budget``."""
        return self._granted

    def allow_streams(self, count: int) -> None:
        """Take up to ``count`` streams from the peer (the agent takes the edge's figure from
        Welcome, after its preamble announced the initial window): the budget grows to
        cover their initial windows as it covers ``max_streams``' from the start."""
        if count > self.max_streams:
            self.max_streams = count
            self.budget = max(self.budget, 2 * count * self.initial_window)

    # -- measurements ---------------------------------------------------------------------

    def observe_rtt(self, seconds: float) -> None:
        """A round-trip sample of the link (a heartbeat's pong), smoothed as TCP's SRTT."""
        if seconds <= 0.0:
            return
        self.rtt = seconds if self.rtt == 0.0 else self.rtt * 0.875 + seconds * 0.125

    # -- local actions --------------------------------------------------------------------

    def send_message(self, message: Message) -> None:
        body = encode_message(message)
        self._out.append(f.frame_header(f.T_CONTROL, 0, 0, len(body)))
        self._out.append(body)

    def open_stream(self, open_msg: StreamOpen) -> int:
        stream_id = self._next_id
        if stream_id > f.MAX_STREAM_ID:
            raise StreamClosedError("stream ids exhausted; open a new link")
        self._next_id += 2
        self._streams[stream_id] = _Stream(stream_id, self._peer_window, self.initial_window)
        self._granted += self.initial_window
        body = encode_message(open_msg)
        self._out.append(f.frame_header(f.T_CONTROL, 0, stream_id, len(body)))
        self._out.append(body)
        return stream_id

    def send_data(self, stream_id: int, data: bytes, end: bool = False) -> bool:
        """Queue ``data`` (and FIN if ``end``). Returns False when some of it waits for
        credit: the caller should pause its source until ``StreamWritable``."""
        s = self._streams.get(stream_id)
        if s is None:
            return True  # reset or finished: the bytes have nowhere to go
        if s.local_closed or s.pending_fin:
            raise StreamClosedError(f"stream {stream_id} already ended")
        if s.pending:
            s.pending += data
            s.pending_fin = s.pending_fin or end
            return False
        n = len(data)
        window = s.send_window
        if n <= window:
            self._emit_data(s, data, end)
            return True
        if window:
            view = memoryview(data)
            self._emit_data(s, view[:window], False)
            s.pending += view[window:]
        else:
            s.pending += data
        s.pending_fin = end
        return False

    def end_stream(self, stream_id: int) -> None:
        s = self._streams.get(stream_id)
        if s is None or s.local_closed or s.pending_fin:
            return
        if s.pending:
            s.pending_fin = True
        else:
            self._emit_data(s, b"", True)

    def reset_stream(self, stream_id: int, code: int, reason: str = "") -> None:
        s = self._streams.pop(stream_id, None)
        if s is None:
            return
        self._granted -= s.recv_target
        self._out.append(f.encode_reset(stream_id, code, reason))

    def acknowledge(self, stream_id: int, n: int) -> None:
        """The shell delivered ``n`` bytes of the stream onward: return credit."""
        s = self._streams.get(stream_id)
        if s is None or s.remote_closed or n <= 0:
            return
        # Never return more credit than the peer has used (a caller bug would otherwise
        # let the peer overrun us).
        used = s.recv_target - s.recv_credit - s.unacked
        if n > used:
            n = used
        if n <= 0:
            return
        s.unacked += n
        batch = s.recv_target >> 2
        if s.unacked < (batch if batch < _MAX_BATCH else _MAX_BATCH):
            return
        increment = s.unacked
        s.unacked = 0
        increment = self._tune(s, increment)
        if increment <= 0:
            return
        s.recv_credit += increment
        self._out.append(f.encode_window(stream_id, increment))

    def _tune(self, s: _Stream, increment: int) -> int:
        """At a credit batch: once a round trip has passed since the last sample, move the
        stream's window toward what that round trip carried; then return the credit that
        brings what the peer may send to the window (less than ``increment`` to shrink)."""
        now = self.clock()
        if now >= self._probe_due:
            # Time the credit loop as this stream's bytes see it: behind whatever both ends
            # have queued, which a heartbeat sent on an idle link does not see. A probe the
            # peer never answered (it answers none while it reads nothing) is given up on.
            self._probe_sent = now
            self._probe_due = now + max(_PROBE_INTERVAL, 4.0 * self.rtt)
            self._probe_seq += 1
            self._probe = b"\xff" + (self._probe_seq & _SEQ_MASK).to_bytes(7, "big")
            self._out.append(f.encode_ping(self._probe))
        if self.rtt == 0.0:
            return increment
        start = s.epoch_start
        if start == 0.0:
            s.epoch_start = now
            s.epoch_received = s.received
        elif (now - start) * 2.0 >= self.rtt:
            # The bytes one round trip carries at the rate of this sample (an idle spell
            # in it lowers the rate, so an idle stream's window shrinks). Half a round trip
            # is enough to judge: a stream held back by its window gets it in bursts, one a
            # round trip, and waiting for a whole one would miss every burst that came a
            # little early, doubling the window every other round trip.
            sample = int((s.received - s.epoch_received) * (self.rtt / (now - start)))
            s.epoch_start = now
            s.epoch_received = s.received
            window = s.window
            # Credit granted at the last decision reaches the peer, and its bytes us, a
            # round trip later: this sample was sent under the window before that one.
            basis = s.last_window if s.last_window < window else window
            s.last_window = window
            initial = self.initial_window
            # The growth half of the budget: what is left once every open stream's window
            # and the initial windows of the streams that may still open are counted.
            unopened = self.max_streams - len(self._streams)
            room = self.budget - self._granted - (unopened if unopened > 0 else 0) * initial
            if room < 0:  # max_streams was raised past what the budget covers
                window = max(initial, window >> 1)
            elif sample * 3 >= basis * 2:  # the window, not the source, held it back
                window = min(window << 1, self.max_window, window + room)
            elif sample * 4 < window:
                # Halved at most per sample: a keep-alive stream's pause between two
                # requests is not a reason to start the next one from nothing.
                window = max(initial, sample * 2, window >> 1)
            s.window = window
        target = s.recv_target
        window = s.window
        if window > target:
            self._granted += window - target
            s.recv_target = window
            return increment + window - target
        if window < target:
            cut = min(target - window, increment)
            self._granted -= cut
            s.recv_target = target - cut
            return increment - cut
        return increment

    def ping(self, payload: bytes) -> None:
        if len(payload) != 8:
            raise ValueError("ping payload is 8 bytes")
        self._out.append(f.encode_ping(payload))

    def _emit_data(self, s: _Stream, data: bytes | memoryview, end: bool) -> None:
        out = self._out
        n = len(data)
        s.send_window -= n
        chunk = f.MAX_DATA_CHUNK
        if n <= chunk:
            out.append(f.frame_header(f.T_DATA, f.FLAG_FIN if end else 0, s.id, n))
            if n:
                out.append(data)
        else:
            view = memoryview(data)
            for start in range(0, n, chunk):
                piece = view[start : start + chunk]
                last = start + chunk >= n
                flags = f.FLAG_FIN if (end and last) else 0
                out.append(f.frame_header(f.T_DATA, flags, s.id, len(piece)))
                out.append(piece)
        if end:
            s.local_closed = True
            if s.remote_closed:
                del self._streams[s.id]
                self._granted -= s.recv_target

    # -- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        frames_in = self.decoder.feed(data)
        if not self._peer_window and self.decoder.peer_window:
            self._peer_window = min(self.decoder.peer_window, MAX_STREAM_CREDIT)
            # Streams opened before the peer's preamble arrived start with no credit.
            for s in list(self._streams.values()):
                self._credit(s, self._peer_window, events)
        for frame in frames_in:
            ftype = frame.type
            if ftype == f.T_DATA:
                self._on_data(frame, events)
            elif ftype == f.T_WINDOW:
                self._on_window(frame, events)
            elif ftype == f.T_CONTROL:
                self._on_control(frame, events)
            elif ftype == f.T_RESET:
                code, reason = f.decode_reset(frame.body)
                gone = self._streams.pop(frame.stream_id, None)
                if gone is not None:
                    self._granted -= gone.recv_target
                    events.append(StreamReset(frame.stream_id, code, reason))
                else:
                    self._check_known(frame.stream_id)
            else:  # PING
                if frame.stream_id != 0 or len(frame.body) != 8:
                    raise f.ProtocolError("PING must be 8 bytes on stream 0")
                if frame.flags & f.FLAG_ACK:
                    body = frame.body
                    if body[0] != 0xFF:
                        events.append(PongReceived(body))
                    elif body == self._probe:
                        self._probe = b""
                        self.observe_rtt(self.clock() - self._probe_sent)
                elif self.answer_pings:
                    self._out.append(f.encode_ping(frame.body, ack=True))
        return events

    def _check_known(self, stream_id: int) -> None:
        """A frame for a stream we no longer track is fine if the stream once existed
        (it crossed our reset on the wire); for a never-opened id the peer is broken."""
        if stream_id == 0:
            raise f.ProtocolError("stream frame on stream 0")
        mine = (stream_id & 1) == (1 if self.role is Role.AGENT else 0)
        if mine:
            if stream_id >= self._next_id:
                raise f.ProtocolError(f"frame for stream {stream_id} that was never opened")
        elif stream_id > self._last_peer_id:
            raise f.ProtocolError(f"frame for stream {stream_id} before it was opened")

    def _on_data(self, frame: f.Frame, events: list[Event]) -> None:
        s = self._streams.get(frame.stream_id)
        if s is None:
            self._check_known(frame.stream_id)
            return
        if s.remote_closed:
            raise f.ProtocolError(f"DATA on stream {s.id} after its FIN")
        n = len(frame.body)
        if n > s.recv_credit:
            raise f.ProtocolError(
                f"flow control: {n} bytes on stream {s.id} with {s.recv_credit} credit"
            )
        s.recv_credit -= n
        s.received += n
        end = bool(frame.flags & f.FLAG_FIN)
        if end:
            s.remote_closed = True
            if s.local_closed and not s.pending:
                del self._streams[s.id]
                self._granted -= s.recv_target
        events.append(DataReceived(s.id, frame.body, end))

    def _on_window(self, frame: f.Frame, events: list[Event]) -> None:
        increment = f.decode_window(frame.body)
        s = self._streams.get(frame.stream_id)
        if s is None:
            self._check_known(frame.stream_id)
            return
        self._credit(s, increment, events)

    def _credit(self, s: _Stream, increment: int, events: list[Event]) -> None:
        window = s.send_window + increment
        if window > MAX_STREAM_CREDIT:
            if window > _MAX_CREDIT:
                raise f.ProtocolError(f"flow control: window of stream {s.id} overflows")
            window = MAX_STREAM_CREDIT
        s.send_window = window
        if not s.pending:
            return
        window = s.send_window
        pending = s.pending
        if len(pending) <= window:
            s.pending = bytearray()
            self._emit_data(s, bytes(pending), s.pending_fin)
            events.append(StreamWritable(s.id))
        else:
            head = bytes(pending[:window])
            del pending[:window]
            self._emit_data(s, head, False)

    def _on_control(self, frame: f.Frame, events: list[Event]) -> None:
        try:
            message = decode_message(frame.body)
        except msgspec.DecodeError as exc:
            raise f.ProtocolError(f"bad control message: {exc}") from None
        sid = frame.stream_id
        if sid == 0:
            if isinstance(message, StreamOpen):
                raise f.ProtocolError("StreamOpen on stream 0")
            events.append(MessageReceived(message))
            return
        if not isinstance(message, StreamOpen):
            raise f.ProtocolError(f"{type(message).__name__} on stream {sid}")
        peer_parity = 0 if self.role is Role.AGENT else 1
        if (sid & 1) != peer_parity or sid <= self._last_peer_id:
            raise f.ProtocolError(f"peer opened stream {sid} out of order or with our parity")
        self._last_peer_id = sid
        # The budget check matters when max_streams was raised past the budget by hand
        # rather than with allow_streams: a new stream's window must still fit.
        if (
            len(self._streams) >= self.max_streams
            or self._granted + self.initial_window > self.budget
        ):
            self._out.append(
                f.encode_reset(sid, f.ResetCode.TOO_MANY_STREAMS, "too many open streams")
            )
            return
        self._streams[sid] = _Stream(sid, self._peer_window, self.initial_window)
        self._granted += self.initial_window
        events.append(StreamOpened(sid, message))
