"""Windows that follow the link: grown to the bandwidth-delay product, shrunk when idle,
capped per stream, and bounded per link by the memory budget.

The multiplexers run on a simulated link: a clock the test moves, bytes that arrive half a
round trip after they were sent, at no more than the link's rate. Downloads go as they do
in a tunnel: the agent sends, the edge receives and (unless its visitor is stalled) passes
every byte on at once.
"""

from __future__ import annotations

from collections import deque

import pytest

from proto import frames as f
from proto.mux import (
    DEFAULT_LINK_BUDGET,
    MAX_STREAM_CREDIT,
    DataReceived,
    Event,
    Multiplexer,
    Role,
    StreamOpened,
    StreamReset,
)
from relay.session import LINK_HIGH_WATER
from tests.proto.link import VISITOR

CHUNK = b"d" * f.MAX_DATA_CHUNK
MB = 1_000_000


class DelayedLink:
    """An edge and an agent joined by a link with a round-trip time and a rate."""

    def __init__(
        self,
        rtt: float,
        rate: float,
        *,
        max_streams: int = 1024,
        budget: int = DEFAULT_LINK_BUDGET,
    ) -> None:
        self.now = 1.0
        self.rtt = rtt
        self.rate = rate  # bytes a second, each way
        self.edge = Multiplexer(Role.EDGE, max_streams=max_streams, budget=budget, clock=self.clock)
        self.agent = Multiplexer(
            Role.AGENT, max_streams=max_streams, budget=budget, clock=self.clock
        )
        # The heartbeat pongs' measure of the link.
        self.edge.observe_rtt(rtt)
        self.agent.observe_rtt(rtt)
        self._wire: dict[int, deque[tuple[float, bytes]]] = {
            id(self.edge): deque(),
            id(self.agent): deque(),
        }
        self._free_at = {id(self.edge): 0.0, id(self.agent): 0.0}
        self.stalled: set[int] = set()  # streams whose visitor reads nothing
        self.delivered: dict[int, int] = {}  # stream -> bytes the edge passed on
        self.received: dict[int, int] = {}  # stream -> bytes the edge got
        self.agent_events: list[Event] = []

    def clock(self) -> float:
        return self.now

    def _send(self, sender: Multiplexer) -> None:
        out = b"".join(sender.data_to_send())
        if not out:
            return
        key = id(sender)
        departs = max(self.now, self._free_at[key]) + len(out) / self.rate
        self._free_at[key] = departs
        self._wire[key].append((departs + self.rtt / 2, out))

    def _arrivals(self, sender: Multiplexer) -> bytes:
        wire = self._wire[id(sender)]
        got: list[bytes] = []
        while wire and wire[0][0] <= self.now:
            got.append(wire.popleft()[1])
        return b"".join(got)

    def step(self, dt: float) -> None:
        self.now += dt
        self._send(self.edge)
        self._send(self.agent)
        for event in self.edge.receive_data(self._arrivals(self.agent)):
            if isinstance(event, DataReceived):
                sid = event.stream_id
                self.received[sid] = self.received.get(sid, 0) + len(event.data)
                if sid not in self.stalled:
                    self.edge.acknowledge(sid, len(event.data))
                    self.delivered[sid] = self.delivered.get(sid, 0) + len(event.data)
        self.agent_events += self.agent.receive_data(self._arrivals(self.edge))
        self._send(self.edge)
        self._send(self.agent)

    def open(self, count: int = 1) -> list[int]:
        sids = [self.edge.open_stream(VISITOR) for _ in range(count)]
        for _ in range(int(self.rtt / 0.001) + 2):
            self.step(0.001)
        opened = [e for e in self.agent_events if isinstance(e, StreamOpened)]
        assert [e.stream_id for e in opened] == sids
        return sids

    def feed(self, sid: int, dt: float) -> None:
        """The agent's local service always has more: write until the stream waits for
        credit, a link's worth of a step was written, or the link's send queue is past the
        shell's high-water mark (relay/session.py pauses every source there)."""
        queued = (self._free_at[id(self.agent)] - self.now) * self.rate
        written = 0
        while (
            self.agent.pending(sid) == 0
            and written < self.rate * dt
            and queued + written < LINK_HIGH_WATER
        ):
            self.agent.send_data(sid, CHUNK)
            written += len(CHUNK)


def transfer(link: DelayedLink, sids: list[int], seconds: float, dt: float = 0.002) -> int:
    """Stream from the agent for ``seconds`` of link time; the bytes the edge passed on."""
    before = sum(link.delivered.values())
    for _ in range(round(seconds / dt)):
        for sid in sids:
            link.feed(sid, dt)
        link.step(dt)
        check_bounds(link)
    return sum(link.delivered.values()) - before


def check_bounds(link: DelayedLink) -> None:
    edge, agent = link.edge, link.agent
    assert edge.granted <= edge.budget
    # What the edge holds for its stalled visitors plus what the agent may still send it:
    # never more than the edge agreed to hold.
    held = sum(link.received.get(s, 0) - link.delivered.get(s, 0) for s in link.received)
    in_flight = sum(len(b) for _, b in link._wire[id(agent)])
    credit = sum(agent.send_window(s) for s in link.received)
    assert held + credit <= edge.budget + in_flight
    for sid in link.received:
        assert edge.recv_window(sid) <= MAX_STREAM_CREDIT
        assert agent.send_window(sid) <= MAX_STREAM_CREDIT


def test_a_busy_stream_grows_its_window_to_the_bandwidth_delay_product() -> None:
    # 100 ms at 40 MB/s: 4 MB in flight, 16 times the 256 KiB a stream used to start with.
    link = DelayedLink(rtt=0.1, rate=40 * MB)
    (sid,) = link.open()
    start = link.edge.recv_window(sid)
    assert start == link.edge.initial_window
    transfer(link, [sid], 2.0)  # slow start: the window doubles a round trip
    assert link.edge.recv_window(sid) >= 4 * MB
    # Then the stream runs at the link's rate, not at one start window per round trip.
    carried = transfer(link, [sid], 1.0)
    assert carried >= 0.85 * 40 * MB
    assert carried > 10 * start / 0.1


def test_a_slow_source_keeps_the_window_small() -> None:
    # A local service that makes 1 MB a second over a 100 ms link: 100 KB in flight.
    link = DelayedLink(rtt=0.1, rate=40 * MB)
    (sid,) = link.open()
    for _ in range(300):
        if link.agent.pending(sid) == 0:
            link.agent.send_data(sid, b"s" * 10_000)
        link.step(0.01)
        check_bounds(link)
    assert link.delivered[sid] >= 0.8 * 3 * MB  # all but the last round trip or so
    assert link.edge.recv_window(sid) <= 256 * 1024


def test_the_window_never_passes_the_per_stream_cap() -> None:
    # 200 ms at 200 MB/s wants 40 MB in flight: the window stops at 16 MiB.
    link = DelayedLink(rtt=0.2, rate=200 * MB)
    (sid,) = link.open()
    windows = []
    for _ in range(24):
        transfer(link, [sid], 0.25, dt=0.005)
        windows.append(link.edge.recv_window(sid))
    assert max(windows) == MAX_STREAM_CREDIT
    assert windows[-1] == MAX_STREAM_CREDIT


def test_an_idle_stream_gives_its_window_back_when_it_moves_again() -> None:
    link = DelayedLink(rtt=0.1, rate=40 * MB)
    (sid,) = link.open()
    transfer(link, [sid], 2.5)
    assert link.edge.recv_window(sid) >= 4 * MB
    for _ in range(500):  # five seconds with nothing to send
        link.step(0.01)
    # Then 3.2 MB a second: 320 KB a round trip. The window comes down to about twice
    # that, and what the agent may send comes down with it as it spends its credit.
    for _ in range(500):
        if link.agent.pending(sid) == 0:
            link.agent.send_data(sid, b"t" * 32_000)
        link.step(0.01)
        check_bounds(link)
    assert link.edge.recv_window(sid) <= 1024 * 1024
    assert link.edge.granted == link.edge.recv_window(sid)
    assert link.agent.send_window(sid) <= 1024 * 1024


def test_a_thousand_busy_streams_stay_within_the_link_budget() -> None:
    budget = 16 * 1024 * 1024
    link = DelayedLink(rtt=0.1, rate=100 * MB, max_streams=1000, budget=budget)
    assert link.edge.initial_window * 1000 <= budget // 2
    sids = link.open(1000)
    transfer(link, sids, 2.0, dt=0.01)  # check_bounds holds the budget at every step
    carried = transfer(link, sids, 1.0, dt=0.01)
    assert carried > 0.5 * 100 * MB
    # Every stream grew, into the half of the budget kept for growth, and no further.
    windows = [link.edge.recv_window(s) for s in sids]
    assert min(windows) > link.edge.initial_window
    assert sum(windows) == link.edge.granted <= budget


def test_a_thousand_stalled_visitors_hold_no_more_than_the_budget() -> None:
    # Every visitor reads nothing, and the agent sends all it may on every stream.
    link = DelayedLink(rtt=0.05, rate=1000 * MB, max_streams=1000)
    sids = link.open(1000)
    link.stalled.update(sids)
    transfer(link, sids, 1.0, dt=0.01)
    held = sum(link.received.values())
    assert held == 1000 * link.edge.initial_window  # each stream's first window, no more
    assert held <= DEFAULT_LINK_BUDGET
    assert all(link.agent.send_window(s) == 0 for s in sids)


def test_a_stalled_visitor_freezes_its_stream_only() -> None:
    link = DelayedLink(rtt=0.1, rate=40 * MB)
    stalled, busy = link.open(2)
    link.stalled.add(stalled)
    transfer(link, [stalled, busy], 3.0)
    assert link.received[stalled] == link.edge.initial_window
    assert link.edge.recv_window(busy) >= 4 * MB


def test_streams_the_edge_may_open_after_the_preamble_stay_covered() -> None:
    # The agent takes the edge's stream limit from Welcome, after its preamble announced
    # the initial window: its budget grows to cover that window on every stream.
    agent = Multiplexer(Role.AGENT, max_streams=16, budget=1024 * 1024)
    window = agent.initial_window
    agent.allow_streams(10_000)
    assert agent.max_streams == 10_000
    assert agent.budget == 2 * 10_000 * window
    agent.allow_streams(8)  # never lowered
    assert agent.max_streams == 10_000
    edge = Multiplexer(Role.EDGE, max_streams=10_000, budget=1 << 40)
    agent.receive_data(b"".join(edge.data_to_send()))
    for _ in range(3000):
        edge.open_stream(VISITOR)
    events = agent.receive_data(b"".join(edge.data_to_send()))
    assert len([e for e in events if isinstance(e, StreamOpened)]) == 3000
    assert agent.granted == 3000 * window <= agent.budget


def test_streams_opened_past_the_budget_are_refused() -> None:
    # A stream limit raised by hand, past what the budget covers, still cannot make the
    # agent hold more than the budget.
    budget = 1024 * 1024
    agent = Multiplexer(Role.AGENT, max_streams=16, budget=budget)
    agent.max_streams = 10_000
    edge = Multiplexer(Role.EDGE, max_streams=10_000, budget=1 << 40)
    agent.receive_data(b"".join(edge.data_to_send()))
    for _ in range(100):
        edge.open_stream(VISITOR)
    events = agent.receive_data(b"".join(edge.data_to_send()))
    opened = [e for e in events if isinstance(e, StreamOpened)]
    assert len(opened) == budget // agent.initial_window == 32
    assert agent.granted <= budget
    refused = edge.receive_data(b"".join(agent.data_to_send()))
    assert len(refused) == 100 - 32
    assert all(
        isinstance(e, StreamReset) and e.code == f.ResetCode.TOO_MANY_STREAMS for e in refused
    )


def test_a_budget_too_small_for_the_stream_limit_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="cannot cover 1000 streams"):
        Multiplexer(Role.EDGE, max_streams=1000, budget=1000)


def test_round_trip_samples_are_smoothed_and_nonsense_ignored() -> None:
    mux = Multiplexer(Role.EDGE)
    assert mux.rtt == 0.0
    mux.observe_rtt(0.1)
    assert mux.rtt == 0.1
    mux.observe_rtt(0.9)
    assert mux.rtt == pytest.approx(0.2)
    mux.observe_rtt(-1.0)
    mux.observe_rtt(0.0)
    assert mux.rtt == pytest.approx(0.2)


def test_the_credit_loop_is_timed_with_pings_the_shell_never_sees() -> None:
    now = [1.0]
    edge = Multiplexer(Role.EDGE, clock=lambda: now[0])
    agent = Multiplexer(Role.AGENT)  # any peer answers pings: nothing new is asked of it
    agent.receive_data(b"".join(edge.data_to_send()))
    edge.receive_data(b"".join(agent.data_to_send()))
    sid = edge.open_stream(VISITOR)
    agent.receive_data(b"".join(edge.data_to_send()))
    agent.send_data(sid, b"r" * edge.initial_window)
    edge.receive_data(b"".join(agent.data_to_send()))
    edge.acknowledge(sid, edge.initial_window)  # a credit batch: WINDOW and a timing ping
    agent.receive_data(b"".join(edge.data_to_send()))
    now[0] += 0.08  # the pong takes a round trip of 80 ms
    edge.ping(b"\x41heartbt")  # the shell's own ping still gets its pong to the shell
    agent.receive_data(b"".join(edge.data_to_send()))
    events = edge.receive_data(b"".join(agent.data_to_send()))
    assert edge.rtt == pytest.approx(0.08)
    assert [type(e).__name__ for e in events] == ["PongReceived"]
    # A pong for a probe we did not send (or sent and gave up on) measures nothing.
    edge.receive_data(f.encode_ping(b"\xff" + bytes(7), ack=True))
    assert edge.rtt == pytest.approx(0.08)
