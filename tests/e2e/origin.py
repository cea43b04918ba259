"""A local service for end-to-end tests: the thing a developer exposes with ``burrow http``.

Routes (h11 over asyncio streams, so it is an independent HTTP implementation from the edge's
hot path):
    GET  /hello           "hello"
    GET  /conn            the id of this TCP connection (keep-alive checks)
    GET  /headers         the request headers as JSON
    GET  /bytes?n=N       N bytes of a repeating pattern, Content-Length framed
    GET  /chunked?n=N     N bytes, chunked
    POST|PUT /digest      sha256 and length of the request body
    POST|PUT /echo        the request body streamed back as it arrives (chunked)
    GET  /slow?s=SECONDS  waits, then "slow"
    GET  /hang            never answers
    GET  /close           closes the connection without answering
    GET  /ws              WebSocket echo (wsproto)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
from urllib.parse import parse_qs, urlsplit

import h11
import wsproto
import wsproto.events as ws

PATTERN = bytes(range(256)) * 256  # 64 KiB


def pattern_bytes(n: int) -> bytes:
    full, rest = divmod(n, len(PATTERN))
    return PATTERN * full + PATTERN[:rest]


class LocalService:
    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.connections = 0
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> LocalService:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._tasks):
            task.cancel()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        conn_id = next(self._ids)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = await self._next(conn, reader)
                if isinstance(event, h11.ConnectionClosed) or event is None:
                    return
                assert isinstance(event, h11.Request)
                keep = await self._handle(conn, event, reader, writer, conn_id)
                if not keep or conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
            return
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader) -> object:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                continue
            if event is h11.PAUSED:
                return None
            return event

    async def _body(self, conn: h11.Connection, reader: asyncio.StreamReader):  # type: ignore[no-untyped-def]
        while True:
            event = await self._next(conn, reader)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            else:
                return

    async def _handle(
        self,
        conn: h11.Connection,
        req: h11.Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn_id: int,
    ) -> bool:
        url = urlsplit(req.target.decode())
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        method = req.method.decode()

        async def respond(body: bytes, status: int = 200, ctype: str = "text/plain") -> None:
            headers = [("content-type", ctype), ("content-length", str(len(body)))]
            writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
            writer.write(conn.send(h11.Data(data=body)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()

        if path == "/ws":
            return await self._websocket(conn, req, writer, reader)
        if path == "/close":
            return False
        if path == "/hang":
            await asyncio.sleep(3600)
            return False
        if path in ("/digest", "/echo"):
            if path == "/echo":
                writer.write(conn.send(h11.Response(status_code=200, headers=[])))
                async for chunk in self._body(conn, reader):
                    writer.write(conn.send(h11.Data(data=chunk)))
                    await writer.drain()
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                return True
            digest = hashlib.sha256()
            size = 0
            async for chunk in self._body(conn, reader):
                digest.update(chunk)
                size += len(chunk)
            await respond(json.dumps({"sha256": digest.hexdigest(), "size": size}).encode())
            return True
        # Requests without a body of interest: drain whatever body came.
        async for _ in self._body(conn, reader):
            pass
        if path == "/hello":
            await respond(b"hello")
        elif path == "/conn":
            await respond(str(conn_id).encode())
        elif path == "/headers":
            headers = [[k.decode(), v.decode()] for k, v in req.headers]
            await respond(json.dumps({"method": method, "headers": headers}).encode())
        elif path in ("/bytes", "/chunked"):
            n = int(query.get("n", "0"))
            headers = [("content-length", str(n))] if path == "/bytes" else []
            writer.write(conn.send(h11.Response(status_code=200, headers=headers)))
            sent = 0
            while sent < n:
                piece = PATTERN[: min(len(PATTERN), n - sent)]
                writer.write(conn.send(h11.Data(data=piece)))
                sent += len(piece)
                await writer.drain()
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
        elif path == "/slow":
            await asyncio.sleep(float(query.get("s", "1")))
            await respond(b"slow")
        else:
            await respond(b"not found", status=404)
        return True

    async def _websocket(
        self,
        conn: h11.Connection,
        req: h11.Request,
        writer: asyncio.StreamWriter,
        reader: asyncio.StreamReader,
    ) -> bool:
        # Hand the raw request to wsproto, which answers the handshake itself.
        ws_conn = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        head = b"GET " + req.target + b" HTTP/1.1\r\n"
        head += b"".join(k + b": " + v + b"\r\n" for k, v in req.headers) + b"\r\n"
        ws_conn.receive_data(head + conn.trailing_data[0])
        while True:
            for event in ws_conn.events():
                if isinstance(event, ws.Request):
                    writer.write(ws_conn.send(ws.AcceptConnection()))
                elif isinstance(event, ws.TextMessage):
                    writer.write(ws_conn.send(ws.Message(data="echo:" + event.data)))
                elif isinstance(event, ws.BytesMessage):
                    writer.write(ws_conn.send(ws.Message(data=bytes(event.data))))
                elif isinstance(event, ws.CloseConnection):
                    writer.write(ws_conn.send(event.response()))
                    await writer.drain()
                    return False
                elif isinstance(event, ws.Ping):
                    writer.write(ws_conn.send(event.response()))
            await writer.drain()
            data = await reader.read(65536)
            if not data:
                return False
            ws_conn.receive_data(data)
