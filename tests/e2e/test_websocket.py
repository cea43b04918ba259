"""WebSocket through an HTTP tunnel: the 101 switch, echo both ways, ping, close, and the
bytes a visitor sends right behind its upgrade request.

The client is wsproto over asyncio streams, so it is independent of the edge's h11 path.
The local service (tests/e2e/origin.py) echoes every frame fragment wsproto hands it as a
whole message, so a large or split message can come back as several: checks compare the
concatenated echo, which is what a byte-transparent relay must preserve.
"""

from __future__ import annotations

import asyncio
import random

import wsproto.events as ws
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.frame_protocol import FrameProtocol

from agent.tunnels import TunnelSpec
from tests.e2e.client import Visitor, raw_exchange

HOST = "app.localhost"
TIMEOUT = 5.0


class WsClient:
    """One WebSocket connection to the edge's HTTP port."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.events: list[ws.Event] = []
        self._text: list[str] = []
        self._bytes = bytearray()

    @classmethod
    async def connect(cls, port: int, *, early: bytes = b"") -> WsClient:
        """Open the connection and finish the handshake; ``early`` is written in the same
        ``write`` as the upgrade request, before any answer has arrived."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        writer.write(client.ws.send(ws.Request(host=HOST, target="/ws")) + early)
        event = await client.next_event()
        assert isinstance(event, ws.AcceptConnection), f"handshake answered with {event!r}"
        assert client.ws.state is ConnectionState.OPEN
        return client

    async def send(self, event: ws.Event) -> None:
        self.writer.write(self.ws.send(event))
        await self.writer.drain()

    async def next_event(self) -> ws.Event:
        while not self.events:
            data = await asyncio.wait_for(self.reader.read(262144), TIMEOUT)
            if not data:
                raise ConnectionError("the edge closed the connection")
            self.ws.receive_data(data)
            self.events.extend(self.ws.events())
        return self.events.pop(0)

    async def receive(self) -> str | bytes | ws.Event:
        """The next whole message (fragments joined), or the next control event."""
        while True:
            event = await self.next_event()
            if isinstance(event, ws.TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    text, self._text = "".join(self._text), []
                    return text
            elif isinstance(event, ws.BytesMessage):
                self._bytes += event.data
                if event.message_finished:
                    data, self._bytes = bytes(self._bytes), bytearray()
                    return data
            else:
                return event

    async def receive_echoed_text(self, total_chars: int) -> str:
        """Echoed text with each message's ``echo:`` prefix removed, joined."""
        got: list[str] = []
        size = 0
        while size < total_chars:
            message = await self.receive()
            assert isinstance(message, str), f"expected text, got {message!r}"
            assert message.startswith("echo:"), message
            got.append(message[5:])
            size += len(message) - 5
        return "".join(got)

    async def receive_bytes(self, total: int) -> bytes:
        got = bytearray()
        while len(got) < total:
            message = await self.receive()
            assert isinstance(message, bytes), f"expected bytes, got {message!r}"
            got += message
        return bytes(got)

    async def close(self) -> ws.CloseConnection:
        """The close handshake (RFC 6455 5.5.1): send Close, get Close back, then EOF."""
        await self.send(ws.CloseConnection(code=1000, reason="done"))
        event = await self.receive()
        assert isinstance(event, ws.CloseConnection), f"expected Close, got {event!r}"
        rest = await asyncio.wait_for(self.reader.read(), TIMEOUT)
        assert rest == b"", "bytes after the Close frame"
        self.writer.close()
        return event

    def abort(self) -> None:
        self.writer.close()


async def test_handshake_text_and_binary_echo(edge, http_tunnel):
    await http_tunnel("app")
    client = await WsClient.connect(edge.config.http_port)
    try:
        await client.send(ws.Message(data="hello"))
        assert await client.receive() == "echo:hello"
        await client.send(ws.Message(data="héllo wörld ✓"))
        assert await client.receive() == "echo:héllo wörld ✓"
        payload = bytes(range(256))
        await client.send(ws.Message(data=payload))
        assert await client.receive_bytes(len(payload)) == payload
        await client.send(ws.Message(data=b""))
        assert await client.receive() == b""
    finally:
        client.abort()


async def test_one_mebibyte_binary_message(edge, http_tunnel):
    await http_tunnel("app")
    payload = random.Random(1).randbytes(1024 * 1024)
    client = await WsClient.connect(edge.config.http_port)
    try:
        await client.send(ws.Message(data=payload))
        assert await client.receive_bytes(len(payload)) == payload
        # The connection is still usable after the bulk message.
        await client.send(ws.Message(data="after"))
        assert await client.receive_echoed_text(5) == "after"
    finally:
        client.abort()


async def test_two_hundred_messages_in_a_row(edge, http_tunnel):
    await http_tunnel("app")
    texts = [f"message-{i:03d};" for i in range(200)]
    client = await WsClient.connect(edge.config.http_port)
    try:
        for text in texts:  # each its own write, none waiting for an answer
            client.writer.write(client.ws.send(ws.Message(data=text)))
        await client.writer.drain()
        expected = "".join(texts)
        assert await client.receive_echoed_text(len(expected)) == expected
    finally:
        client.abort()


async def test_ping_pong_and_clean_close(edge, http_tunnel):
    await http_tunnel("app")
    client = await WsClient.connect(edge.config.http_port)
    try:
        await client.send(ws.Ping(payload=b"are you there"))
        pong = await client.receive()
        assert isinstance(pong, ws.Pong) and pong.payload == b"are you there"
        closed = await client.close()
        assert closed.code == 1000
        assert client.ws.state is ConnectionState.CLOSED
    finally:
        client.abort()


async def test_first_message_in_the_same_write_as_the_upgrade(edge, http_tunnel):
    """Bytes behind the request head are WebSocket frames; the edge must hand them on after
    the 101 instead of dropping them with the HTTP parser."""
    await http_tunnel("app")
    early = FrameProtocol(client=True, extensions=[])
    frames = bytes(early.send_data("first")) + bytes(early.send_data(b"\x00second\xff"))
    client = await WsClient.connect(edge.config.http_port, early=frames)
    try:
        assert await client.receive_echoed_text(5) == "first"
        assert await client.receive_bytes(8) == b"\x00second\xff"
        await client.send(ws.Message(data="third"))
        assert await client.receive_echoed_text(5) == "third"
    finally:
        client.abort()


async def test_two_websockets_on_one_tunnel_do_not_mix(edge, http_tunnel, service):
    await http_tunnel("app")
    port = edge.config.http_port

    async def talk(client: WsClient, tag: str) -> str:
        texts = [f"{tag}{i};" for i in range(100)]
        for text in texts:
            await client.send(ws.Message(data=text))
            await asyncio.sleep(0)  # let the other connection's writes interleave
        return await client.receive_echoed_text(sum(map(len, texts)))

    a = await WsClient.connect(port)
    b = await WsClient.connect(port)
    try:
        got_a, got_b = await asyncio.gather(talk(a, "A"), talk(b, "B"))
        assert got_a == "".join(f"A{i};" for i in range(100))
        assert got_b == "".join(f"B{i};" for i in range(100))
        await asyncio.gather(a.close(), b.close())
    finally:
        a.abort()
        b.abort()
    assert service.connections == 2


async def test_upgrade_that_the_service_declines_gets_the_normal_response(edge, http_tunnel):
    """RFC 9110 7.8: a server may ignore Upgrade; the answer and the connection stay HTTP."""
    await http_tunnel("app")
    async with Visitor(edge.config.http_port, HOST) as v:
        r = await v.request(
            "GET", "/hello", headers=[("connection", "upgrade"), ("upgrade", "foo")]
        )
        assert (r.status, r.body) == (200, b"hello")
        r = await v.request("GET", "/hello")
        assert (r.status, r.body) == (200, b"hello")


async def test_upgrade_declined_with_a_pipelined_request_behind_it(edge, http_tunnel):
    """The parser pauses at an Upgrade request; a request already read behind it must still
    be answered once the service declines the switch."""
    await http_tunnel("app")
    heads = (
        b"GET /hello HTTP/1.1\r\nhost: app.localhost\r\nconnection: upgrade\r\n"
        b"upgrade: foo\r\n\r\n"
        b"GET /bytes?n=3 HTTP/1.1\r\nhost: app.localhost\r\nconnection: close\r\n\r\n"
    )
    answer = await raw_exchange(edge.config.http_port, heads)
    assert answer.count(b"HTTP/1.1 200 ") == 2, answer
    assert answer.endswith(b"\x00\x01\x02"), answer


async def test_service_bytes_in_the_same_write_as_its_101(edge, agents):
    """A service that greets in the same segment as its 101: the greeting is WebSocket data
    the edge's HTTP parser read past the switch, and must reach the visitor."""

    async def greeter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = WSConnection(ConnectionType.SERVER)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                server.receive_data(data)
                for event in server.events():
                    if isinstance(event, ws.Request):
                        writer.write(
                            server.send(ws.AcceptConnection())
                            + server.send(ws.Message(data="welcome"))
                        )
                    elif isinstance(event, ws.TextMessage):
                        writer.write(server.send(ws.Message(data="got:" + event.data)))
                    elif isinstance(event, ws.CloseConnection):
                        writer.write(server.send(event.response()))
                        return
                await writer.drain()
        finally:
            writer.close()

    local = await asyncio.start_server(greeter, "127.0.0.1", 0)
    try:
        port = local.sockets[0].getsockname()[1]
        await agents.start(edge, TunnelSpec("http", "127.0.0.1", port, name="app"))
        client = await WsClient.connect(edge.config.http_port)
        try:
            assert await client.receive() == "welcome"
            await client.send(ws.Message(data="hi"))
            assert await client.receive() == "got:hi"
            assert (await client.close()).code == 1000
        finally:
            client.abort()
    finally:
        local.close()
