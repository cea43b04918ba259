"""A visitor: an HTTP/1.1 client (h11 over asyncio streams) that talks to the edge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import h11


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


class Visitor:
    """One keep-alive visitor connection to the edge's HTTP port."""

    def __init__(self, port: int, host: str, address: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.address = address  # the edge's address to dial: ::1 for an IPv6 visitor
        self.conn = h11.Connection(h11.CLIENT)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Visitor:
        self.reader, self.writer = await asyncio.open_connection(self.address, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()

    async def send_head(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        length: int | None = None,
        chunked: bool = False,
    ) -> None:
        assert self.writer is not None
        hdrs = [("host", self.host), *headers]
        if length is not None:
            hdrs.append(("content-length", str(length)))
        elif chunked:
            hdrs.append(("transfer-encoding", "chunked"))
        self.writer.write(self.conn.send(h11.Request(method=method, target=target, headers=hdrs)))

    async def send_body(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(self.conn.send(h11.Data(data=data)))
        await self.writer.drain()

    async def end_body(self) -> None:
        assert self.writer is not None
        self.writer.write(self.conn.send(h11.EndOfMessage()))
        await self.writer.drain()

    async def read_response(self, *, discard_body: bool = False) -> Response:
        assert self.reader is not None
        status = 0
        headers: dict[str, str] = {}
        body = bytearray()
        size = 0
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(262144)
                self.conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if not discard_body:
                    body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the edge closed the connection mid-response")
        if discard_body:
            headers["x-test-received"] = str(size)
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return Response(status, headers, bytes(body))

    async def request(
        self,
        method: str = "GET",
        target: str = "/",
        body: bytes | AsyncIterator[bytes] | None = None,
        headers: Iterable[tuple[str, str]] = (),
        *,
        chunked: bool = False,
        discard_body: bool = False,
    ) -> Response:
        if isinstance(body, bytes) and not chunked:
            await self.send_head(method, target, headers, length=len(body))
            if body:
                await self.send_body(body)
        elif body is not None:
            await self.send_head(method, target, headers, chunked=True)
            if isinstance(body, bytes):
                await self.send_body(body)
            else:
                async for piece in body:
                    await self.send_body(piece)
        else:
            await self.send_head(method, target, headers)
        await self.end_body()
        return await self.read_response(discard_body=discard_body)


async def get(port: int, host: str, target: str = "/", **kw: object) -> Response:
    async with Visitor(port, host) as v:
        return await v.request("GET", target, **kw)  # type: ignore[arg-type]


async def raw_exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything the edge answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()
