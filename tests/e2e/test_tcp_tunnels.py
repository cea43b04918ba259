"""Raw TCP tunnels: bytes both ways, bulk, half-close, many visitors, a dead local port, and
a public port that goes away with its agent."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import AsyncIterator

import pytest

from agent.status import status_line
from agent.tunnels import TunnelSpec
from tests.e2e.conftest import wait_for

MB = 1024 * 1024
TIMEOUT = 10.0


class EchoServer:
    """The local TCP service: echoes what it reads, closes once the peer has sent EOF."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.connections = 0
        self.open_connections = 0

    async def start(self) -> EchoServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.open_connections -= 1
            writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = await EchoServer().start()
    yield server
    await server.stop()


def free_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def tcp_tunnel(edge, agents, port: int) -> int:  # type: ignore[no-untyped-def]
    agent = await agents.start(edge, TunnelSpec("tcp", "127.0.0.1", port))
    state = agent.tunnels[0]
    assert state.url == f"tcp://localhost:{state.claimed_port}"
    return state.claimed_port


async def exchange(port: int, payload: bytes) -> bytes:
    """Send ``payload`` and EOF; everything that comes back until EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()


async def closed_promptly(port: int) -> bool:
    """True if a visitor on ``port`` is refused, reset, or sees EOF within 2 s."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    try:
        writer.write(b"anyone there?")
        return await asyncio.wait_for(reader.read(), 2) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        writer.close()


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def test_bytes_echo(edge, agents, echo):
    port = await tcp_tunnel(edge, agents, echo.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for message in (b"ping", b"\x00\xff" * 100, b"x"):
            writer.write(message)
            assert await asyncio.wait_for(reader.readexactly(len(message)), TIMEOUT) == message
    finally:
        writer.close()


async def test_ten_megabytes_written_and_read_at_once(edge, agents, echo):
    port = await tcp_tunnel(edge, agents, echo.port)
    payload = random.Random(7).randbytes(10 * MB)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        view = memoryview(payload)
        for start in range(0, len(payload), 256 * 1024):
            writer.write(view[start : start + 256 * 1024])
            await writer.drain()

    try:
        # Reading while writing: an echo relayed without flow control would deadlock here
        # once both directions' buffers fill.
        _, got = await asyncio.wait_for(
            asyncio.gather(send(), reader.readexactly(len(payload))), TIMEOUT
        )
        assert got == payload
    finally:
        writer.close()


async def test_half_close_delivers_every_byte_then_eof(edge, agents, echo):
    """The visitor shuts its write side; the echo still comes back whole, then EOF."""
    port = await tcp_tunnel(edge, agents, echo.port)
    payload = random.Random(3).randbytes(MB)  # several stream windows: FIN waits for data
    assert await exchange(port, payload) == payload


async def test_fifty_visitors_at_once(edge, agents, echo):
    port = await tcp_tunnel(edge, agents, echo.port)
    payloads = [random.Random(i).randbytes(20_000 + i * 1000) for i in range(50)]
    answers = await asyncio.gather(*(exchange(port, p) for p in payloads))
    for i, (sent, got) in enumerate(zip(payloads, answers, strict=True)):
        assert got == sent, f"visitor {i} got {len(got)} bytes back, not its {len(sent)}"
    assert echo.connections == 50


async def test_local_port_not_listening(edge, agents, echo):
    """The agent cannot connect: the visitor is closed at once, and the edge and the agent's
    link keep serving its other tunnel."""
    agent = await agents.start(
        edge,
        TunnelSpec("tcp", "127.0.0.1", free_port()),
        TunnelSpec("tcp", "127.0.0.1", echo.port),
    )
    dead, alive = (state.claimed_port for state in agent.tunnels)
    for _ in range(3):
        assert await closed_promptly(dead), "a visitor to a dead local port was left hanging"
    assert await exchange(alive, b"still here") == b"still here"


async def test_public_port_closes_when_the_agent_stops(edge, agents, echo):
    port = await tcp_tunnel(edge, agents, echo.port)
    assert await exchange(port, b"hi") == b"hi"
    agent, task = agents.running[-1]
    agent.stop()
    await asyncio.wait_for(task, TIMEOUT)
    assert await closed_promptly(port), "the public port still accepted a visitor"
    # Once the edge has seen the link go, nothing listens on the port at all.
    for _ in range(100):
        if await refused(port):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"port {port} still accepts connections after its agent stopped")


async def test_visitor_reset_before_the_local_connect_leaves_nothing_open(edge, agents, echo):
    """Port scanners connect and reset at once. Each such visitor must not leave a connection
    open at the local service (a database would run out of connection slots)."""
    agent = await agents.start(edge, TunnelSpec("tcp", "127.0.0.1", echo.port))
    port = agent.tunnels[0].claimed_port
    stats = agent.tunnels[0].stats
    # Blocking sockets on purpose: the loop (and so the edge) sees each connection only
    # after the visitor has already reset it, so the reset reaches the agent while its
    # connect to the local service is still in flight.
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST, not FIN
    await wait_for(lambda: stats.connections == 10, what="the agent to get the 10 streams")
    await asyncio.sleep(0.3)  # its connects to the local service finish
    await wait_for(
        lambda: echo.open_connections == 0,
        timeout=2,
        what="the local service's connections to close",
    )
    assert await exchange(port, b"ok") == b"ok"


async def test_status_line_does_not_count_refused_local_connects_as_open(edge, agents):
    """A local connect that fails never reaches connection_lost, so the count of open
    connections must be taken back where the failure is handled."""
    agent = await agents.start(edge, TunnelSpec("tcp", "127.0.0.1", free_port()))
    for _ in range(3):
        assert await closed_promptly(agent.tunnels[0].claimed_port)
    assert "conns 0 open, 3 total" in status_line(agent), status_line(agent)
