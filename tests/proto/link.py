"""Two Multiplexers wired back to back, as an edge and an agent are over one TCP link."""

from __future__ import annotations

from typing import NamedTuple

from proto.messages import StreamOpen
from proto.mux import (
    DEFAULT_WINDOW,
    DataReceived,
    Event,
    MessageReceived,
    Multiplexer,
    PongReceived,
    Role,
    StreamOpened,
    StreamReset,
    StreamWritable,
)

VISITOR = StreamOpen(tunnel_id=7, kind="http", visitor_addr="203.0.113.9", visitor_port=51234)
# A link budget that leaves the default initial window whole for the default 1,024 streams,
# so the tests of per-stream credit see the window the protocol starts with.
ROOMY_BUDGET = 2 * 1024 * DEFAULT_WINDOW


class Delivered(NamedTuple):
    """Events each side produced while bytes were carried across."""

    edge: list[Event]
    agent: list[Event]


class BackToBackLink:
    """Carries each side's ``data_to_send`` into the other's ``receive_data``."""

    __slots__ = ("agent", "edge")

    def __init__(self, edge: Multiplexer | None = None, agent: Multiplexer | None = None) -> None:
        self.edge = edge if edge is not None else Multiplexer(Role.EDGE, budget=ROOMY_BUDGET)
        self.agent = agent if agent is not None else Multiplexer(Role.AGENT, budget=ROOMY_BUDGET)

    def pump(self) -> Delivered:
        """Move bytes both ways until neither side has anything left to send."""
        delivered = Delivered([], [])
        while self.edge.has_output or self.agent.has_output:
            delivered.agent.extend(self.agent.receive_data(b"".join(self.edge.data_to_send())))
            delivered.edge.extend(self.edge.receive_data(b"".join(self.agent.data_to_send())))
        return delivered

    def open_visitor_stream(self) -> int:
        """The edge opens a stream for a visitor; the agent has seen it when this returns."""
        stream_id = self.edge.open_stream(VISITOR)
        delivered = self.pump()
        assert summarize(delivered.agent) == [("opened", stream_id, VISITOR)]
        return stream_id


def summarize(events: list[Event]) -> list[tuple[object, ...]]:
    """Events as plain tuples, so a test can compare a whole sequence at once."""
    out: list[tuple[object, ...]] = []
    for event in events:
        if isinstance(event, DataReceived):
            out.append(("data", event.stream_id, event.data, event.end))
        elif isinstance(event, StreamOpened):
            out.append(("opened", event.stream_id, event.open))
        elif isinstance(event, StreamReset):
            out.append(("reset", event.stream_id, event.code, event.reason))
        elif isinstance(event, StreamWritable):
            out.append(("writable", event.stream_id))
        elif isinstance(event, MessageReceived):
            out.append(("message", event.message))
        elif isinstance(event, PongReceived):
            out.append(("pong", event.payload))
        else:
            raise AssertionError(f"unexpected event {event!r}")
    return out


def received_bytes(events: list[Event], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )
