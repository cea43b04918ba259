"""The Multiplexer's streams, messages and pings, edge and agent wired back to back.

Flow control has its own file, ``test_mux_flow_control.py``.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proto import frames as f
from proto.frames import FrameType, ProtocolError, ResetCode
from proto.messages import Bound, Hello, Message, Notice, StreamOpen, Welcome, encode_message
from proto.mux import DataReceived, Multiplexer, Role, StreamClosedError
from tests.proto.link import VISITOR, BackToBackLink, received_bytes, summarize

PREAMBLE = f.encode_preamble()


@pytest.fixture
def link() -> BackToBackLink:
    link = BackToBackLink()
    assert link.pump() == ([], [])  # preambles only
    return link


def control(stream_id: int, message: Message) -> bytes:
    body = encode_message(message)
    return f.frame_header(FrameType.CONTROL, 0, stream_id, len(body)) + body


def data(stream_id: int, body: bytes, fin: bool = False) -> bytes:
    return f.frame_header(FrameType.DATA, f.FLAG_FIN if fin else 0, stream_id, len(body)) + body


def feed_agent(*frames: bytes, **options: int) -> tuple[Multiplexer, list[tuple[object, ...]]]:
    """A fresh agent reading hand-crafted frames from a (possibly broken) edge."""
    agent = Multiplexer(Role.AGENT, **options)
    events = agent.receive_data(PREAMBLE + b"".join(frames))
    return agent, summarize(events)


# -- session messages -------------------------------------------------------------------


def test_hello_and_welcome_are_exchanged(link: BackToBackLink) -> None:
    hello = Hello(versions=[1], agent_version="1.4.0", instance_id="i-7f3", token="tk", os="linux")
    link.agent.send_message(hello)
    assert summarize(link.pump().edge) == [("message", hello)]

    welcome = Welcome(
        version=1,
        session_id="s-1",
        edge_id="fra-2",
        account="acme",
        heartbeat_ms=15_000,
        max_streams=256,
    )
    link.edge.send_message(welcome)
    bound = Bound(request_id=1, tunnel_id=7, url="https://acme.burrow.test", name="acme")
    link.edge.send_message(bound)
    delivered = link.pump()
    assert summarize(delivered.agent) == [("message", welcome), ("message", bound)]
    assert delivered.edge == []


def test_ping_gets_an_automatic_pong_with_the_same_payload(link: BackToBackLink) -> None:
    link.edge.ping(b"\x00t=12345")
    delivered = link.pump()
    assert summarize(delivered.edge) == [("pong", b"\x00t=12345")]
    assert delivered.agent == []  # the agent's shell sees nothing: the core answered


def test_ping_payload_must_be_eight_bytes(link: BackToBackLink) -> None:
    with pytest.raises(ValueError, match="8 bytes"):
        link.agent.ping(b"short")
    assert not link.agent.has_output


# -- stream lifecycle -------------------------------------------------------------------


def test_edge_opens_even_streams_and_agent_odd(link: BackToBackLink) -> None:
    assert [link.edge.open_stream(VISITOR) for _ in range(3)] == [2, 4, 6]
    assert [link.agent.open_stream(VISITOR) for _ in range(2)] == [1, 3]
    delivered = link.pump()
    assert summarize(delivered.agent) == [("opened", sid, VISITOR) for sid in (2, 4, 6)]
    assert summarize(delivered.edge) == [("opened", sid, VISITOR) for sid in (1, 3)]
    assert link.edge.stream_count == link.agent.stream_count == 5


def test_data_flows_both_ways(link: BackToBackLink) -> None:
    sid = link.open_visitor_stream()
    request = b"GET / HTTP/1.1\r\nHost: acme.burrow.test\r\n\r\n"
    assert link.edge.send_data(sid, request) is True
    assert summarize(link.pump().agent) == [("data", sid, request, False)]

    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert link.agent.send_data(sid, response) is True
    assert summarize(link.pump().edge) == [("data", sid, response, False)]


def test_large_write_arrives_whole_in_order(link: BackToBackLink) -> None:
    sid = link.open_visitor_stream()
    body = bytes(range(256)) * 800  # 200 KiB: several DATA frames, within one window
    assert link.edge.send_data(sid, body) is True
    events = link.pump().agent
    assert received_bytes(events, sid) == body
    assert all(isinstance(e, DataReceived) and len(e.data) <= f.MAX_DATA_CHUNK for e in events)


@pytest.mark.parametrize("first", ["edge", "agent"])
def test_half_close_each_way_is_independent(link: BackToBackLink, first: str) -> None:
    sid = link.open_visitor_stream()
    closer = link.edge if first == "edge" else link.agent
    other = link.agent if first == "edge" else link.edge

    closer.end_stream(sid)
    delivered = link.pump()
    other_events = delivered.agent if first == "edge" else delivered.edge
    assert summarize(other_events) == [("data", sid, b"", True)]
    assert link.edge.is_open(sid) and link.agent.is_open(sid)

    # The side that got FIN can still talk; the side that sent it can still listen.
    assert other.send_data(sid, b"still here") is True
    delivered = link.pump()
    closer_events = delivered.edge if first == "edge" else delivered.agent
    assert summarize(closer_events) == [("data", sid, b"still here", False)]
    with pytest.raises(StreamClosedError):
        closer.send_data(sid, b"too late")

    other.end_stream(sid)
    delivered = link.pump()
    closer_events = delivered.edge if first == "edge" else delivered.agent
    assert summarize(closer_events) == [("data", sid, b"", True)]
    assert not link.edge.is_open(sid) and not link.agent.is_open(sid)
    assert link.edge.stream_count == link.agent.stream_count == 0


def test_data_with_end_carries_fin_on_the_last_frame(link: BackToBackLink) -> None:
    sid = link.open_visitor_stream()
    body = b"b" * (f.MAX_DATA_CHUNK + 10)
    link.edge.send_data(sid, body, end=True)
    events = summarize(link.pump().agent)
    assert events == [
        ("data", sid, body[: f.MAX_DATA_CHUNK], False),
        ("data", sid, body[f.MAX_DATA_CHUNK :], True),
    ]


def test_end_stream_twice_sends_one_fin(link: BackToBackLink) -> None:
    sid = link.open_visitor_stream()
    link.agent.end_stream(sid)
    link.agent.end_stream(sid)
    assert summarize(link.pump().edge) == [("data", sid, b"", True)]


def test_write_after_end_raises_even_while_fin_waits_for_credit() -> None:
    link = BackToBackLink(
        edge=Multiplexer(Role.EDGE, initial_window=16),
        agent=Multiplexer(Role.AGENT, initial_window=16),
    )
    link.pump()
    sid = link.open_visitor_stream()
    assert link.edge.send_data(sid, b"x" * 32) is False  # 16 bytes wait for credit
    link.edge.end_stream(sid)
    with pytest.raises(StreamClosedError):
        link.edge.send_data(sid, b"after the end")


@pytest.mark.parametrize(
    ("resetter", "code", "reason"),
    [
        ("agent", ResetCode.REFUSED, "dial tcp 127.0.0.1:3000: connection refused"),
        ("edge", ResetCode.TIMEOUT, "visitor idle for 60s"),
        ("edge", ResetCode.CANCEL, ""),
    ],
)
def test_reset_reaches_the_other_side(
    link: BackToBackLink, resetter: str, code: ResetCode, reason: str
) -> None:
    sid = link.open_visitor_stream()
    side = link.agent if resetter == "agent" else link.edge
    side.reset_stream(sid, code, reason)
    assert not side.is_open(sid)
    delivered = link.pump()
    assert summarize(delivered.edge if resetter == "agent" else delivered.agent) == [
        ("reset", sid, code, reason)
    ]
    assert link.edge.stream_count == link.agent.stream_count == 0


def test_reset_discards_bytes_waiting_for_credit(link: BackToBackLink) -> None:
    sid = link.open_visitor_stream()
    link.edge.send_data(sid, b"x" * (link.edge.initial_window + 5000))
    assert link.edge.buffered_bytes() == 5000
    link.edge.reset_stream(sid, ResetCode.CANCEL)
    assert link.edge.buffered_bytes() == 0
    assert link.edge.send_data(sid, b"ignored") is True  # nowhere to go, do not pause


def test_data_crossing_a_local_reset_is_ignored(link: BackToBackLink) -> None:
    sid = link.open_visitor_stream()
    link.agent.reset_stream(sid, ResetCode.REFUSED, "no local service")
    # Before the RESET reaches it, the edge sends data and returns credit.
    link.edge.send_data(sid, b"GET / HTTP/1.1\r\n\r\n", end=True)
    crossing = b"".join(link.edge.data_to_send()) + f.encode_window(sid, 1000)
    assert link.agent.receive_data(crossing) == []
    delivered = link.pump()
    assert summarize(delivered.edge) == [("reset", sid, ResetCode.REFUSED, "no local service")]
    assert link.agent.stream_count == link.edge.stream_count == 0


def test_reset_crossing_a_reset_is_ignored(link: BackToBackLink) -> None:
    sid = link.open_visitor_stream()
    link.agent.reset_stream(sid, ResetCode.REFUSED)
    link.edge.reset_stream(sid, ResetCode.CANCEL)
    assert link.pump() == ([], [])


# -- limits -----------------------------------------------------------------------------


def test_stream_open_beyond_max_streams_is_reset_with_too_many_streams() -> None:
    link = BackToBackLink(agent=Multiplexer(Role.AGENT, max_streams=2))
    link.pump()
    sids = [link.edge.open_stream(VISITOR) for _ in range(3)]
    for sid in sids:  # the edge relays the visitor's first bytes without waiting
        link.edge.send_data(sid, b"hi")
    delivered = link.pump()
    assert summarize(delivered.agent) == [
        ("opened", sids[0], VISITOR),
        ("opened", sids[1], VISITOR),
        ("data", sids[0], b"hi", False),
        ("data", sids[1], b"hi", False),
    ]
    assert summarize(delivered.edge) == [
        ("reset", sids[2], ResetCode.TOO_MANY_STREAMS, "too many open streams")
    ]
    assert link.agent.stream_count == 2 and link.edge.stream_count == 2

    # The limit is on open streams: once one closes, the next visitor gets in.
    link.edge.reset_stream(sids[0], ResetCode.CANCEL)
    link.pump()
    sid = link.edge.open_stream(VISITOR)
    assert summarize(link.pump().agent) == [("opened", sid, VISITOR)]


# -- a broken or hostile peer -----------------------------------------------------------


@pytest.mark.parametrize(
    "stream_id",
    [0, 1, 2, 5],
    ids=["session", "ours-never-opened", "peers-never-opened", "ours-far-ahead"],
)
def test_data_for_a_never_opened_stream_is_a_protocol_error(stream_id: int) -> None:
    with pytest.raises(ProtocolError):
        feed_agent(data(stream_id, b"x"))


def test_window_for_a_never_opened_stream_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="before it was opened"):
        feed_agent(f.encode_window(4, 100))


def test_reset_on_stream_zero_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="stream 0"):
        feed_agent(f.encode_reset(0, ResetCode.CANCEL))


@pytest.mark.parametrize(
    "frames",
    [
        [control(3, VISITOR)],  # odd id: the agent's own parity
        [control(1, VISITOR)],
        [control(4, VISITOR), control(2, VISITOR)],  # going backwards
        [control(2, VISITOR), control(2, VISITOR)],  # reusing an id
    ],
    ids=["agent-parity-3", "agent-parity-1", "out-of-order", "reused"],
)
def test_stream_open_with_wrong_parity_or_order_is_a_protocol_error(
    frames: list[bytes],
) -> None:
    with pytest.raises(ProtocolError, match="out of order or with our parity"):
        feed_agent(*frames)


def test_agent_opening_an_even_stream_is_a_protocol_error_on_the_edge() -> None:
    edge = Multiplexer(Role.EDGE)
    with pytest.raises(ProtocolError, match="parity"):
        edge.receive_data(PREAMBLE + control(2, VISITOR))


def test_stream_open_on_stream_zero_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="StreamOpen on stream 0"):
        feed_agent(control(0, VISITOR))


def test_session_message_on_a_stream_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="Notice on stream 2"):
        feed_agent(control(2, Notice(level="warn", message="hi")))


def test_undecodable_control_body_is_a_protocol_error() -> None:
    body = b"\x92\x63\xa1x"  # tag 99
    with pytest.raises(ProtocolError, match="bad control message"):
        feed_agent(f.frame_header(FrameType.CONTROL, 0, 0, len(body)) + body)


def test_data_after_fin_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="after its FIN"):
        feed_agent(control(2, VISITOR), data(2, b"bye", fin=True), data(2, b"more"))


@pytest.mark.parametrize(
    "frame",
    [
        f.frame_header(FrameType.PING, 0, 2, 8) + b"12345678",
        f.frame_header(FrameType.PING, 0, 0, 4) + b"1234",
    ],
    ids=["on-a-stream", "short"],
)
def test_malformed_ping_is_a_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError, match="PING must be 8 bytes on stream 0"):
        feed_agent(frame)


@st.composite
def hostile_frames(draw: st.DrawFn) -> bytes:
    ftype = draw(st.sampled_from(FrameType))
    flags = draw(st.sampled_from([0, 1])) if ftype in (FrameType.DATA, FrameType.PING) else 0
    stream_id = draw(st.integers(0, 8))
    candidates = {
        FrameType.DATA: st.binary(max_size=64),
        FrameType.CONTROL: st.one_of(
            st.just(encode_message(VISITOR)),
            st.just(encode_message(Notice(level="info", message="m"))),
            st.binary(max_size=16),
        ),
        FrameType.WINDOW: st.integers(0, 2**32 - 1).map(lambda n: n.to_bytes(4, "big"))
        | st.binary(max_size=6),
        FrameType.RESET: st.binary(max_size=12),
        FrameType.PING: st.binary(min_size=8, max_size=8) | st.binary(max_size=10),
    }
    body = draw(candidates[ftype])
    return f.frame_header(ftype, flags, stream_id, len(body)) + body


@given(frames=st.lists(hostile_frames(), max_size=20), stream_first=st.booleans())
def test_hostile_frames_raise_only_protocol_error(frames: list[bytes], stream_first: bool) -> None:
    agent = Multiplexer(Role.AGENT, initial_window=128, max_streams=2)
    agent.receive_data(PREAMBLE)
    if stream_first:
        agent.receive_data(control(2, StreamOpen(1, "tcp", "198.51.100.1", 4000)))
    try:
        for frame in frames:
            agent.receive_data(frame)
            agent.data_to_send()
    except ProtocolError:
        pass
    assert agent.stream_count <= 2


def test_no_pong_is_queued_while_the_shell_says_the_peer_reads_nothing() -> None:
    agent = Multiplexer(Role.AGENT)
    agent.receive_data(PREAMBLE)
    agent.data_to_send()
    agent.answer_pings = False
    assert agent.receive_data(f.encode_ping(b"12345678") * 100) == []
    assert not agent.has_output
    agent.answer_pings = True
    agent.receive_data(f.encode_ping(b"12345678"))
    assert b"".join(agent.data_to_send()) == f.encode_ping(b"12345678", ack=True)
