"""``SocketRelay`` over two ``LinkSession``s wired back to back through fake transports.

visitor socket <-> SocketRelay <-> edge LinkSession ==link== agent LinkSession <->
SocketRelay <-> local service socket. Nothing touches a real socket; the link is pumped
by hand so every step is deterministic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest

from proto.messages import Message, StreamOpen
from proto.mux import Multiplexer, Role
from relay.session import LinkSession
from relay.stream import SocketRelay

VISITOR = StreamOpen(tunnel_id=7, kind="tcp", visitor_addr="203.0.113.9", visitor_port=51234)
# The window a link's streams start with: the default link budget covers 1,024 streams.
DEFAULT_WINDOW = Multiplexer(Role.AGENT).initial_window


class FakeSocket:
    """The transport of one TCP socket, recording what the relay does to it."""

    def __init__(self, *, can_write_eof: bool = True) -> None:
        self.written = bytearray()
        self.reading = True
        self.eof_written = False
        self.closed = False
        self._can_write_eof = can_write_eof

    def write(self, data: bytes | memoryview) -> None:
        assert not self.closed, "write after close"
        assert not self.eof_written, "write after write_eof"
        self.written += data

    def writelines(self, chunks: Iterable[bytes | memoryview]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def can_write_eof(self) -> bool:
        return self._can_write_eof

    def write_eof(self) -> None:
        self.eof_written = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


class LinkWire(FakeSocket):
    """The link transport: holds what a session wrote until the test carries it across."""

    def take(self) -> bytes:
        out = bytes(self.written)
        self.written.clear()
        return out


class EdgeLink(LinkSession):
    def __init__(self) -> None:
        super().__init__(Role.EDGE, heartbeat=3600)

    def on_message(self, message: Message) -> None:
        raise AssertionError(f"unexpected message {message!r}")


class AgentLink(LinkSession):
    """Connects every opened stream to a fresh fake local socket, at once or on demand."""

    def __init__(self, *, connect_now: bool = True) -> None:
        super().__init__(Role.AGENT, heartbeat=3600)
        self.connect_now = connect_now
        self.relays: dict[int, SocketRelay] = {}

    def on_message(self, message: Message) -> None:
        raise AssertionError(f"unexpected message {message!r}")

    def on_stream_opened(self, stream_id: int, open_msg: StreamOpen) -> None:
        relay = SocketRelay(self, stream_id)
        self.sinks[stream_id] = relay
        self.relays[stream_id] = relay
        if self.connect_now:
            relay.connection_made(FakeSocket())


class Tunnel:
    """One visitor connection carried to one local socket across a pumped link."""

    def __init__(self, *, connect_now: bool = True, visitor_can_write_eof: bool = True) -> None:
        self.edge = EdgeLink()
        self.agent = AgentLink(connect_now=connect_now)
        self.edge_wire = LinkWire()
        self.agent_wire = LinkWire()
        self.edge.connection_made(self.edge_wire)
        self.agent.connection_made(self.agent_wire)
        self.pump()
        self.visitor = SocketRelay(self.edge)
        self.visitor_socket = FakeSocket(can_write_eof=visitor_can_write_eof)
        self.visitor.connection_made(self.visitor_socket)
        self.visitor.stream_id = self.edge.open(VISITOR, self.visitor)
        self.pump()
        self.local = self.agent.relays[self.visitor.stream_id]

    @property
    def local_socket(self) -> FakeSocket:
        transport = self.local.transport
        assert isinstance(transport, FakeSocket)
        return transport

    @property
    def stream_id(self) -> int:
        return self.visitor.stream_id

    def pump(self) -> None:
        while True:
            # What the sessions queued for "the end of this loop iteration" goes out now.
            self.edge.flush()
            self.agent.flush()
            if not (self.edge_wire.written or self.agent_wire.written):
                break
            if self.edge_wire.written:
                self.agent.data_received(self.edge_wire.take())
            if self.agent_wire.written:
                self.edge.data_received(self.agent_wire.take())

    def close(self) -> None:
        self.edge.connection_lost(None)
        self.agent.connection_lost(None)


def socket_eof(relay: SocketRelay, sock: FakeSocket) -> None:
    """The peer half-closed: asyncio closes the transport unless eof_received says keep it."""
    if not relay.eof_received():
        sock.close()
        relay.connection_lost(None)


@pytest.fixture
async def tunnel() -> AsyncIterator[Tunnel]:
    t = Tunnel()
    yield t
    t.close()


async def test_bytes_flow_both_ways(tunnel: Tunnel) -> None:
    tunnel.visitor.data_received(b"GET / HTTP/1.1\r\n\r\n")
    tunnel.pump()
    assert tunnel.local_socket.written == b"GET / HTTP/1.1\r\n\r\n"
    tunnel.local.data_received(b"HTTP/1.1 204 No Content\r\n\r\n")
    tunnel.pump()
    assert tunnel.visitor_socket.written == b"HTTP/1.1 204 No Content\r\n\r\n"


async def test_reading_pauses_when_the_window_is_used_and_resumes_when_writable(
    tunnel: Tunnel,
) -> None:
    body = bytes(range(256)) * (DEFAULT_WINDOW // 256 + 40)
    tunnel.visitor.data_received(body)
    assert not tunnel.visitor_socket.reading  # the window is exhausted: stop reading
    assert tunnel.edge.mux.pending(tunnel.stream_id) == len(body) - DEFAULT_WINDOW

    tunnel.pump()  # the local socket drains, credit returns, the rest goes, writable
    assert tunnel.visitor_socket.reading
    assert tunnel.local_socket.written == body
    assert tunnel.edge.mux.buffered_bytes() == 0


async def test_a_slow_local_socket_holds_back_credit_until_it_drains(tunnel: Tunnel) -> None:
    body = b"x" * (2 * DEFAULT_WINDOW)
    tunnel.local.pause_writing()  # the local service is not reading
    tunnel.visitor.data_received(body)
    tunnel.pump()
    assert len(tunnel.local_socket.written) == DEFAULT_WINDOW  # one window, then stop
    assert tunnel.edge.mux.send_window(tunnel.stream_id) == 0  # no credit came back
    assert tunnel.edge.mux.pending(tunnel.stream_id) == DEFAULT_WINDOW
    assert not tunnel.visitor_socket.reading
    tunnel.pump()
    assert len(tunnel.local_socket.written) == DEFAULT_WINDOW  # still nothing moves

    tunnel.local.resume_writing()  # drained: the held credit goes back
    tunnel.agent.flush()  # (the end of this loop iteration)
    assert tunnel.agent_wire.written  # a WINDOW frame
    tunnel.pump()
    assert tunnel.local_socket.written == body
    assert tunnel.visitor_socket.reading
    assert tunnel.edge.mux.buffered_bytes() == 0


async def test_a_slow_visitor_holds_back_credit_for_the_local_service(tunnel: Tunnel) -> None:
    body = b"y" * (DEFAULT_WINDOW + 1000)
    tunnel.visitor.pause_writing()
    tunnel.local.data_received(body)
    tunnel.pump()
    assert len(tunnel.visitor_socket.written) == DEFAULT_WINDOW
    assert not tunnel.local_socket.reading
    tunnel.visitor.resume_writing()
    tunnel.pump()
    assert tunnel.visitor_socket.written == body
    assert tunnel.local_socket.reading


async def test_visitor_half_close_then_local_reply_and_close(tunnel: Tunnel) -> None:
    tunnel.visitor.data_received(b"request")
    socket_eof(tunnel.visitor, tunnel.visitor_socket)
    assert not tunnel.visitor_socket.closed  # still waiting for the reply
    tunnel.pump()
    assert tunnel.local_socket.written == b"request"
    assert tunnel.local_socket.eof_written  # FIN became EOF on the local socket
    assert not tunnel.local_socket.closed

    tunnel.local.data_received(b"reply")
    socket_eof(tunnel.local, tunnel.local_socket)
    assert tunnel.local_socket.closed  # both directions done on this side
    tunnel.pump()
    assert tunnel.visitor_socket.written == b"reply"
    assert tunnel.visitor_socket.closed  # both directions done on the other side too
    assert tunnel.edge.mux.stream_count == 0
    assert tunnel.agent.mux.stream_count == 0
    assert tunnel.edge.sinks == {}
    assert tunnel.agent.sinks == {}


async def test_local_half_close_then_visitor_close(tunnel: Tunnel) -> None:
    tunnel.local.data_received(b"banner")
    socket_eof(tunnel.local, tunnel.local_socket)
    assert not tunnel.local_socket.closed
    tunnel.pump()
    assert tunnel.visitor_socket.written == b"banner"
    assert tunnel.visitor_socket.eof_written
    assert not tunnel.visitor_socket.closed

    tunnel.visitor.data_received(b"bye")
    socket_eof(tunnel.visitor, tunnel.visitor_socket)
    assert tunnel.visitor_socket.closed
    tunnel.pump()
    assert tunnel.local_socket.written == b"bye"
    assert tunnel.local_socket.closed
    assert tunnel.edge.mux.stream_count == 0
    assert tunnel.agent.mux.stream_count == 0


async def test_stream_end_closes_a_socket_that_cannot_half_close() -> None:
    t = Tunnel(visitor_can_write_eof=False)  # e.g. TLS: no write_eof
    try:
        t.local.data_received(b"last words")
        socket_eof(t.local, t.local_socket)
        t.pump()
        assert t.visitor_socket.written == b"last words"
        assert t.visitor_socket.closed
        # The visitor cannot answer any more: the other direction is reset, not left open.
        t.pump()
        assert t.edge.mux.stream_count == 0
        assert t.local_socket.closed
    finally:
        t.close()


async def test_local_connection_lost_resets_the_visitor(tunnel: Tunnel) -> None:
    tunnel.local_socket.close()
    tunnel.local.connection_lost(ConnectionResetError())
    tunnel.pump()
    assert tunnel.visitor_socket.closed
    assert tunnel.edge.mux.stream_count == 0
    assert tunnel.edge.sinks == {}


async def test_link_loss_closes_every_socket(tunnel: Tunnel) -> None:
    tunnel.agent.connection_lost(ConnectionResetError())
    tunnel.edge.connection_lost(ConnectionResetError())
    assert tunnel.visitor_socket.closed
    assert tunnel.local_socket.closed


async def test_stream_bytes_before_the_local_connection_are_kept() -> None:
    t = Tunnel(connect_now=False)
    try:
        t.visitor.data_received(b"early")
        socket_eof(t.visitor, t.visitor_socket)
        t.pump()
        assert t.local.transport is None
        t.local.connection_made(FakeSocket())
        assert t.local_socket.written == b"early"
        assert t.local_socket.eof_written
    finally:
        t.close()


async def test_a_backed_up_link_pauses_every_stream_until_it_drains(tunnel: Tunnel) -> None:
    """The peer grants credit but reads nothing: the link's write buffer passes its
    high-water mark and every stream's source stops, whatever credit is left."""
    second = SocketRelay(tunnel.edge)
    second_socket = FakeSocket()
    second.connection_made(second_socket)
    second.stream_id = tunnel.edge.open(VISITOR, second)
    tunnel.pump()

    tunnel.edge.pause_writing()
    assert not tunnel.visitor_socket.reading and not second_socket.reading
    # A source that still delivers a chunk (read before the pause) is told to stop again.
    tunnel.visitor_socket.reading = True
    tunnel.visitor.data_received(b"x" * 100)
    assert not tunnel.visitor_socket.reading
    assert tunnel.edge.mux.send_window(tunnel.stream_id) > 0  # credit was not the reason

    tunnel.edge.resume_writing()
    assert tunnel.visitor_socket.reading and second_socket.reading
    tunnel.pump()
    assert tunnel.local_socket.written == b"x" * 100


async def test_resume_leaves_a_stream_that_waits_for_credit_paused(tunnel: Tunnel) -> None:
    tunnel.local.pause_writing()  # the local service reads nothing: no credit comes back
    tunnel.visitor.data_received(b"x" * (DEFAULT_WINDOW + 1))
    tunnel.pump()
    assert not tunnel.visitor_socket.reading
    tunnel.edge.pause_writing()
    tunnel.edge.resume_writing()
    assert not tunnel.visitor_socket.reading  # it resumes on StreamWritable, not before
    tunnel.local.resume_writing()
    tunnel.pump()
    assert tunnel.visitor_socket.reading


async def test_credit_that_comes_back_while_the_link_is_backed_up_resumes_no_source(
    tunnel: Tunnel,
) -> None:
    """A peer that reads nothing but grants credit must not pull a source's bytes, a chunk
    per WINDOW frame, into the buffer it does not read."""
    tunnel.local.pause_writing()  # no credit comes back for now
    tunnel.visitor.data_received(b"x" * (DEFAULT_WINDOW + 1))
    tunnel.pump()
    tunnel.edge.pause_writing()
    tunnel.local.resume_writing()  # the credit comes back: the waiting byte goes out
    tunnel.pump()
    assert tunnel.edge.mux.pending(tunnel.stream_id) == 0
    assert not tunnel.visitor_socket.reading  # but the link is still backed up
    tunnel.edge.resume_writing()
    assert tunnel.visitor_socket.reading


async def test_visitors_keep_arriving_while_the_agents_link_is_backed_up(tunnel: Tunnel) -> None:
    """Streams the edge opens are not requests the agent refuses: however many arrive while
    the agent's own writes are backed up, its link stays."""
    tunnel.agent.pause_writing()
    for _ in range(200):
        relay = SocketRelay(tunnel.edge)
        relay.connection_made(FakeSocket())
        relay.stream_id = tunnel.edge.open(VISITOR, relay)
    tunnel.pump()
    assert not tunnel.agent_wire.closed and not tunnel.agent.closed
    assert len(tunnel.agent.relays) == 201
