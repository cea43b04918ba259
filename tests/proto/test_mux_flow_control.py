"""Per-stream credit windows: a slow reader throttles its own stream and holds bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from proto import frames as f
from proto.frames import FrameType, ProtocolError
from proto.messages import encode_message
from proto.mux import (
    DEFAULT_WINDOW,
    MAX_STREAM_CREDIT,
    DataReceived,
    Multiplexer,
    Role,
    StreamReset,
    StreamWritable,
)
from tests.proto.link import ROOMY_BUDGET, VISITOR, BackToBackLink, received_bytes, summarize

PREAMBLE = f.encode_preamble()


@pytest.fixture
def link() -> BackToBackLink:
    link = BackToBackLink()
    link.pump()
    return link


def test_write_beyond_the_window_waits_for_acknowledge(link: BackToBackLink) -> None:
    sid = link.open_visitor_stream()
    body = bytes(range(256)) * ((DEFAULT_WINDOW + 10_000) // 256)
    extra = len(body) - DEFAULT_WINDOW

    assert link.edge.send_data(sid, body) is False  # pause the visitor socket
    assert link.edge.pending(sid) == extra
    assert link.edge.send_window(sid) == 0
    delivered = link.pump()
    assert received_bytes(delivered.agent, sid) == body[:DEFAULT_WINDOW]
    assert link.pump() == ([], [])  # nothing more moves until the agent's shell drains

    link.agent.acknowledge(sid, DEFAULT_WINDOW)
    assert link.agent.has_output  # a WINDOW frame
    delivered = link.pump()
    assert summarize(delivered.edge) == [("writable", sid)]
    assert received_bytes(delivered.agent, sid) == body[DEFAULT_WINDOW:]
    assert link.edge.pending(sid) == 0
    assert link.edge.buffered_bytes() == 0


def test_acknowledge_below_a_quarter_window_is_batched(link: BackToBackLink) -> None:
    sid = link.open_visitor_stream()
    link.edge.send_data(sid, b"x" * DEFAULT_WINDOW)
    link.pump()
    link.agent.acknowledge(sid, DEFAULT_WINDOW // 4 - 1)
    assert not link.agent.has_output  # keep WINDOW frames rare
    link.agent.acknowledge(sid, 1)
    link.pump()
    assert link.edge.send_window(sid) == DEFAULT_WINDOW // 4


def test_writes_while_paused_keep_their_order_and_fin_waits_behind_them() -> None:
    link = BackToBackLink(
        edge=Multiplexer(Role.EDGE, initial_window=100),
        agent=Multiplexer(Role.AGENT, initial_window=100),
    )
    link.pump()
    sid = link.open_visitor_stream()
    assert link.edge.send_data(sid, b"a" * 150) is False
    assert link.edge.send_data(sid, b"b" * 50) is False
    link.edge.end_stream(sid)
    got = link.pump().agent
    assert received_bytes(got, sid) == b"a" * 100
    assert not any(isinstance(e, DataReceived) and e.end for e in got)

    link.agent.acknowledge(sid, 100)
    got = link.pump().agent
    assert received_bytes(got, sid) == b"a" * 50 + b"b" * 50
    assert isinstance(got[-1], DataReceived) and got[-1].end


def test_a_stalled_stream_does_not_block_another(link: BackToBackLink) -> None:
    slow = link.open_visitor_stream()
    fast = link.open_visitor_stream()
    assert link.edge.send_data(slow, b"s" * (DEFAULT_WINDOW + 1)) is False
    assert link.edge.send_data(fast, b"f" * 1000) is True
    delivered = link.pump()
    assert received_bytes(delivered.agent, fast) == b"f" * 1000
    assert link.edge.pending(slow) == 1


def test_peer_exceeding_its_credit_is_a_protocol_error() -> None:
    agent = Multiplexer(Role.AGENT, initial_window=1024)
    open_body = encode_message(VISITOR)
    agent.receive_data(
        PREAMBLE + f.frame_header(FrameType.CONTROL, 0, 2, len(open_body)) + open_body
    )
    agent.receive_data(f.frame_header(FrameType.DATA, 0, 2, 1000) + b"x" * 1000)
    with pytest.raises(ProtocolError, match="flow control: 25 bytes on stream 2 with 24 credit"):
        agent.receive_data(f.frame_header(FrameType.DATA, 0, 2, 25) + b"x" * 25)


def test_single_frame_larger_than_the_window_is_a_protocol_error() -> None:
    agent = Multiplexer(Role.AGENT, initial_window=1024)
    open_body = encode_message(VISITOR)
    with pytest.raises(ProtocolError, match="flow control"):
        agent.receive_data(
            PREAMBLE
            + f.frame_header(FrameType.CONTROL, 0, 2, len(open_body))
            + open_body
            + f.frame_header(FrameType.DATA, 0, 2, 1025)
            + b"x" * 1025
        )


def test_window_overflow_from_peer_is_a_protocol_error(link: BackToBackLink) -> None:
    sid = link.open_visitor_stream()
    with pytest.raises(ProtocolError, match="overflows"):
        link.edge.receive_data(f.encode_window(sid, 2**31))


def test_peers_with_different_initial_windows_respect_the_receivers_window() -> None:
    link = BackToBackLink(
        agent=Multiplexer(Role.AGENT, initial_window=64 * 1024, budget=ROOMY_BUDGET)
    )
    link.pump()
    sid = link.open_visitor_stream()
    link.edge.send_data(sid, b"v" * (128 * 1024))
    delivered = link.pump()
    assert len(received_bytes(delivered.agent, sid)) == 64 * 1024


# -- window growth (tests/proto/test_mux_window_tuning.py has the tuning itself) -------------


def bulk_transfer(link: BackToBackLink, sid: int, total: int) -> tuple[bytes, list[int]]:
    """The edge streams ``total`` bytes while the agent's shell drains everything at once;
    returns what arrived and every send_window the edge saw."""
    chunk = b"z" * f.MAX_DATA_CHUNK
    got: list[bytes] = []
    windows = [link.edge.send_window(sid)]
    sent = 0
    while sent < total or link.edge.pending(sid):
        if sent < total and not link.edge.pending(sid):
            link.edge.send_data(sid, chunk)
            sent += len(chunk)
        delivered = link.pump()
        data = received_bytes(delivered.agent, sid)
        got.append(data)
        link.agent.acknowledge(sid, len(data))
        link.pump()
        windows.append(link.edge.send_window(sid))
    return b"".join(got), windows


def test_without_a_round_trip_measured_the_window_stays_put(link: BackToBackLink) -> None:
    # No heartbeat answered yet: nothing says the link is long, so nothing grows.
    sid = link.open_visitor_stream()
    got, windows = bulk_transfer(link, sid, 4 * 1024 * 1024)
    assert len(got) == 4 * 1024 * 1024
    assert max(windows) == DEFAULT_WINDOW


def test_short_exchange_keeps_the_initial_window(link: BackToBackLink) -> None:
    sid = link.open_visitor_stream()
    _got, windows = bulk_transfer(link, sid, DEFAULT_WINDOW)
    assert max(windows) == DEFAULT_WINDOW


# -- property: credit is never overrun, bytes arrive whole and in order -------------------

WINDOW = 1024
MAX_WINDOW = 4 * WINDOW
PATTERN = bytes(range(251)) * 100  # 251 is prime: a shifted or dropped byte shows


class Half:
    """One direction of the stream and what the test expects of it."""

    __slots__ = ("acked", "ended", "fin_seen", "received", "receiver", "sender", "written")

    def __init__(self, sender: Multiplexer, receiver: Multiplexer) -> None:
        self.sender = sender
        self.receiver = receiver
        self.written = bytearray()
        self.received = bytearray()
        self.acked = 0
        self.ended = False
        self.fin_seen = False


class Wires:
    """Bytes each side has put out that the other has not yet read."""

    def __init__(self, edge: Multiplexer, agent: Multiplexer, sid: int) -> None:
        self.sid = sid
        self.down = Half(edge, agent)
        self.up = Half(agent, edge)
        self.halves = (self.down, self.up)
        self.wire = {id(edge): bytearray(), id(agent): bytearray()}

    def collect(self) -> None:
        for half in self.halves:
            self.wire[id(half.sender)] += b"".join(half.sender.data_to_send())

    def deliver(self, sender: Multiplexer, n: int) -> None:
        wire = self.wire[id(sender)]
        chunk = bytes(wire[:n])
        del wire[:n]
        receiver = self.down.receiver if sender is self.down.sender else self.up.receiver
        for event in receiver.receive_data(chunk):
            assert not isinstance(event, StreamReset), event
            if isinstance(event, DataReceived):
                half = self.down if receiver is self.down.receiver else self.up
                assert not half.fin_seen
                half.received += event.data
                half.fin_seen = event.end
            elif isinstance(event, StreamWritable):
                assert receiver.pending(self.sid) == 0
        self.collect()

    def check(self) -> None:
        for half in self.halves:
            assert half.received == half.written[: len(half.received)]
            assert 0 <= half.sender.send_window(self.sid) <= MAX_WINDOW
            # Bytes on the wire or held by the receiver's shell never exceed what the
            # receiver agreed to hold.
            emitted = len(half.written) - half.sender.pending(self.sid)
            assert emitted - half.acked <= MAX_WINDOW


directions = st.sampled_from(["down", "up"])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), directions, st.integers(0, 8 * WINDOW)),
        st.tuples(st.just("ack"), directions, st.integers(0, 100)),
        st.tuples(st.just("deliver"), directions, st.integers(0, 8 * WINDOW)),
        st.tuples(st.just("end"), directions, st.just(0)),
    ),
    max_size=50,
)


class TickingClock:
    """A clock that moves on a millisecond every time it is read."""

    def __init__(self) -> None:
        self.now = 1.0
        self.step = 0.001

    def __call__(self) -> float:
        self.now += self.step
        return self.now


# A bulk transfer long enough to double the window up to its cap, so every run covers it.
BULK = [("write", "down", 8 * WINDOW), ("deliver", "down", 9 * WINDOW), ("ack", "down", 100)]


@given(operations)
@example(BULK * 8 + [("end", "down", 0), ("end", "up", 0)])
@example([("write", "up", 3 * WINDOW), ("end", "up", 0), ("deliver", "up", 100)])
def test_credit_is_never_overrun_and_bytes_arrive_in_order(
    ops: list[tuple[str, str, int]],
) -> None:
    clock = TickingClock()
    link = BackToBackLink(
        edge=Multiplexer(Role.EDGE, initial_window=WINDOW, max_window=MAX_WINDOW, clock=clock),
        agent=Multiplexer(Role.AGENT, initial_window=WINDOW, max_window=MAX_WINDOW, clock=clock),
    )
    # A measured round trip as long as a few operations, so windows grow and shrink.
    link.edge.observe_rtt(3 * clock.step)
    link.agent.observe_rtt(3 * clock.step)
    link.pump()
    sid = link.open_visitor_stream()
    wires = Wires(link.edge, link.agent, sid)

    for op, direction, amount in ops:
        half = wires.down if direction == "down" else wires.up
        if op == "write" and not half.ended:
            start = len(half.written) % 251
            data = PATTERN[start : start + amount]
            accepted = half.sender.send_data(sid, data)
            half.written += data
            assert accepted == (half.sender.pending(sid) == 0)
        elif op == "end" and not half.ended:
            half.sender.end_stream(sid)
            half.ended = True
        elif op == "ack":
            n = (len(half.received) - half.acked) * amount // 100
            half.receiver.acknowledge(sid, n)
            half.acked += n
        elif op == "deliver":
            wires.collect()
            wires.deliver(half.sender, amount)
        wires.collect()
        wires.check()

    # The shells drain everything: every byte written arrives, then FIN if it was sent.
    for _ in range(10_000):
        for half in wires.halves:
            half.receiver.acknowledge(sid, len(half.received) - half.acked)
            half.acked = len(half.received)
        wires.collect()
        if not any(wires.wire.values()):
            break
        for half in wires.halves:
            wires.deliver(half.sender, len(wires.wire[id(half.sender)]))
            wires.check()
    else:
        raise AssertionError("link never went quiet")
    for half in wires.halves:
        assert half.received == half.written
        assert half.fin_seen == half.ended
    both_ended = wires.down.ended and wires.up.ended
    assert link.edge.is_open(sid) is not both_ended
    assert link.agent.is_open(sid) is not both_ended
    if both_ended:  # a finished stream's window no longer counts against the link budget
        assert link.edge.granted == link.agent.granted == 0


# -- credit a hostile peer announces or grants is capped -----------------------------------


def _edge_facing(announced: int) -> tuple[Multiplexer, int]:
    """An edge whose agent announced ``announced`` bytes of window, with one stream open."""
    edge = Multiplexer(Role.EDGE)
    edge.receive_data(f.encode_preamble(window=announced))
    sid = edge.open_stream(VISITOR)
    edge.data_to_send()
    return edge, sid


def _data_bytes_out(mux: Multiplexer) -> int:
    decoder = f.FrameDecoder(expect_preamble=False)  # the preamble went out already
    frames = decoder.feed(b"".join(mux.data_to_send()))
    return sum(len(fr.body) for fr in frames if fr.type == FrameType.DATA)


def test_a_huge_announced_window_is_honoured_only_up_to_the_cap() -> None:
    edge, sid = _edge_facing(1 << 30)  # the most a preamble may announce
    assert edge.send_window(sid) == MAX_STREAM_CREDIT
    upload = b"u" * (MAX_STREAM_CREDIT + 4 * f.MAX_DATA_CHUNK)
    assert edge.send_data(sid, upload) is False  # the rest waits for credit
    assert edge.pending(sid) == 4 * f.MAX_DATA_CHUNK
    assert _data_bytes_out(edge) == MAX_STREAM_CREDIT


def test_credit_granted_past_the_cap_is_dropped_not_sent_against() -> None:
    edge, sid = _edge_facing(f.INITIAL_WINDOW)
    edge.receive_data(f.encode_window(sid, (1 << 31) - 1 - f.INITIAL_WINDOW))
    assert edge.send_window(sid) == MAX_STREAM_CREDIT
    edge.send_data(sid, b"u" * (MAX_STREAM_CREDIT + 1))
    assert _data_bytes_out(edge) == MAX_STREAM_CREDIT
    # Granted again and again: the stream never holds more than the cap.
    for _ in range(3):
        edge.receive_data(f.encode_window(sid, (1 << 31) - 1 - MAX_STREAM_CREDIT))
        assert edge.send_window(sid) <= MAX_STREAM_CREDIT


def test_a_multiplexer_never_offers_more_than_the_cap() -> None:
    mux = Multiplexer(Role.AGENT, initial_window=1 << 30, max_window=1 << 30, budget=1 << 40)
    assert mux.initial_window == mux.max_window == MAX_STREAM_CREDIT
    _version, window = f.decode_preamble(b"".join(mux.data_to_send()))
    assert window == MAX_STREAM_CREDIT
