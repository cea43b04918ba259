"""Visitor shells and agent sessions driven through fake transports, with nothing but bytes.

``FakeTransport`` plays the socket (as uvicorn's tests' MockTransport does): it records what
the protocol writes and whether it closed, paused or aborted. ``FakeAgent`` is an agent on
a real ``AgentSession`` of a real, started ``Edge``: its bytes are made and read by the
agent-side ``proto.mux.Multiplexer``, so a visitor's request goes through the real exchange
into a real tunnel stream, and the test answers it as a local service would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import h11

from edge.link.agent_session import AgentSession
from edge.link.auth import StaticTokens
from edge.server import Edge
from proto.frames import PROTOCOL_VERSION
from proto.messages import Bind, Bound, Hello, Message
from proto.mux import DataReceived, MessageReceived, Multiplexer, Role, StreamOpened
from tests.e2e.conftest import TOKEN, edge_config


class FakeTransport(asyncio.Transport):
    """Records what a protocol writes; says it is a TCP socket from ``peer``."""

    def __init__(
        self, peer: tuple[str, int] = ("203.0.113.7", 40000), sockname: tuple[str, int] = ("", 0)
    ) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True
        self.protocol: asyncio.BaseProtocol | None = None
        self._extra: dict[str, Any] = {"peername": peer, "sockname": sockname}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.written += data

    def take(self) -> bytes:
        data = bytes(self.written)
        self.written.clear()
        return data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol


class FakeAgent:
    """An agent link on a fake transport: hello, bind, and answer tunnel streams."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.mux = Multiplexer(Role.AGENT)
        self.transport = FakeTransport(("127.0.0.1", 50000))
        self.session = AgentSession(edge)
        self.session.connection_made(self.transport)
        self.messages: list[Message] = []
        self.requests: dict[int, bytearray] = {}  # stream id -> request bytes read
        self.ended: set[int] = set()

    def pump(self) -> None:
        """Carry bytes both ways until neither side has any to send."""
        for _ in range(100):
            out = self.mux.data_to_send()
            if out:
                self.session.data_received(b"".join(out))
            data = self.transport.take()
            if not data and not out:
                return
            for event in self.mux.receive_data(data):
                if isinstance(event, MessageReceived):
                    self.messages.append(event.message)
                elif isinstance(event, StreamOpened):
                    self.requests[event.stream_id] = bytearray()
                elif isinstance(event, DataReceived):
                    self.requests.setdefault(event.stream_id, bytearray()).extend(event.data)
                    self.mux.acknowledge(event.stream_id, len(event.data))
                    if event.end:
                        self.ended.add(event.stream_id)

    def hello_and_bind(self, name: str) -> str:
        """The hostname the edge bound for ``name``."""
        self.mux.send_message(Hello([PROTOCOL_VERSION], "harness", "harness-1", TOKEN))
        self.pump()
        self.mux.send_message(Bind(request_id=1, protocol="http", name=name))
        self.pump()
        bound = [m for m in self.messages if isinstance(m, Bound)]
        assert bound, f"the edge did not bind {name}: {self.messages}"
        return bound[-1].name

    async def flow(self) -> None:
        """Let the edge's deferred flushes (``flush_soon``) run, carrying bytes each time."""
        for _ in range(5):
            await asyncio.sleep(0)
            self.pump()

    async def respond(self, stream_id: int, response: bytes) -> None:
        """Send ``response`` (an HTTP/1.1 response, as the local service wrote it)."""
        self.mux.send_data(stream_id, response)
        await self.flow()


async def started_edge(**changes: object) -> AsyncIterator[Edge]:
    edge = Edge(edge_config(**changes), StaticTokens({TOKEN: "alice"}))
    await edge.start()
    try:
        yield edge
    finally:
        await edge.shutdown(drain=0.1)


def visitor_on(
    factory: Callable[[], asyncio.Protocol], peer: tuple[str, int] = ("203.0.113.7", 40000)
) -> tuple[asyncio.Protocol, FakeTransport]:
    protocol = factory()
    transport = FakeTransport(peer)
    protocol.connection_made(transport)
    return protocol, transport


def read_response(data: bytes) -> tuple[h11.Response, bytes]:
    """The first HTTP/1.1 response in ``data``, parsed by h11 (the reference), and its body."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    response: h11.Response | None = None
    body = b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif event is h11.NEED_DATA or isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    assert response is not None, f"no response in {data!r}"
    return response, body


def header(response: h11.Response, name: bytes) -> bytes | None:
    for key, value in response.headers:
        if key == name:
            return bytes(value)
    return None
