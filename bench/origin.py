"""A small, fast HTTP/1.1 origin: the service behind the tunnel in benchmarks and the demo.

Routes:
    GET  /                  a short HTML page saying the tunnel works (the ``burrowd dev`` demo)
    GET  /bytes/N           N bytes of body (keep-alive, Content-Length)
    POST /upload            reads the body (Content-Length or chunked), answers its size
    GET  /echo-headers      the request head back as text

It parses only what it needs, keeps connections alive, and never holds a whole body.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

_PAGE = (
    b"<!doctype html><html><head><meta charset='utf-8'><title>Burrow works</title></head>"
    b"<body style='font:18px system-ui;margin:4em auto;max-width:36em'>"
    b"<h1>Your Burrow tunnel works</h1><p>This page comes from the demo service behind "
    b"the tunnel. Expose your own with <code>burrow http 8000</code>.</p></body></html>"
)
_CHUNK = b"x" * 65536
_MAX_HEAD = 64 * 1024


def _response(status: bytes, body: bytes, ctype: bytes = b"text/plain") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: "
        + ctype
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class OriginProtocol(asyncio.Protocol):
    __slots__ = ("_body_left", "_buf", "_chunked", "_head", "_received", "transport")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._body_left = 0
        self._chunked = False
        self._received = 0
        self._head = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while True:
            if self._body_left or self._chunked:
                if not self._consume_body():
                    return
                self._respond()
                continue
            end = buf.find(b"\r\n\r\n")
            if end == -1:
                if len(buf) > _MAX_HEAD and self.transport is not None:
                    self.transport.write(_response(b"431 Request Header Fields Too Large", b""))
                    self.transport.close()
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            self._head = head
            lower = head.lower()
            self._received = 0
            cl = lower.find(b"\r\ncontent-length:")
            if cl != -1:
                line_end = lower.find(b"\r\n", cl + 2)
                value = lower[cl + 17 : line_end if line_end != -1 else len(lower)]
                self._body_left = int(value.strip() or b"0")
            self._chunked = b"\r\ntransfer-encoding: chunked" in lower
            if self._body_left or self._chunked:
                continue
            self._respond()

    def _consume_body(self) -> bool:
        """Drop body bytes from the buffer; True once the whole body has been read."""
        buf = self._buf
        while True:
            if self._body_left:
                take = min(len(buf), self._body_left)
                del buf[:take]
                self._body_left -= take
                self._received += take
                if self._body_left:
                    return False
                if not self._chunked:
                    return True
            # chunked: [CRLF after the previous chunk] size line, data ... 0 CRLF trailers CRLF
            line_end = buf.find(b"\r\n")
            if line_end == -1:
                return False
            if line_end == 0:  # the CRLF that ends a chunk's data
                del buf[:2]
                continue
            size = int(bytes(buf[:line_end]).split(b";")[0], 16)
            if size == 0:
                trailers_end = buf.find(b"\r\n\r\n", line_end)
                if trailers_end == -1:
                    return False
                del buf[: trailers_end + 4]
                self._chunked = False
                return True
            del buf[: line_end + 2]
            self._body_left = size

    def _respond(self) -> None:
        transport = self.transport
        assert transport is not None
        request_line = self._head.split(b"\r\n", 1)[0]
        parts = request_line.split(b" ")
        method = parts[0]
        path = parts[1] if len(parts) > 1 else b"/"
        if path.startswith(b"/bytes/"):
            n = int(path[7:] or b"0")
            transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: "
                + str(n).encode()
                + b"\r\n\r\n"
            )
            if method != b"HEAD":
                while n > 0:
                    piece = _CHUNK if n >= len(_CHUNK) else _CHUNK[:n]
                    transport.write(piece)
                    n -= len(piece)
        elif path == b"/upload":
            transport.write(_response(b"200 OK", str(self._received).encode()))
        elif path == b"/echo-headers":
            transport.write(_response(b"200 OK", self._head))
        elif path == b"/":
            transport.write(_response(b"200 OK", _PAGE, b"text/html; charset=utf-8"))
        else:
            transport.write(_response(b"404 Not Found", b"not found\n"))


async def start_origin(
    host: str = "127.0.0.1", port: int = 0, *, tls: ssl.SSLContext | None = None
) -> asyncio.Server:
    """Serve on ``host:port``; with ``tls``, HTTPS (HTTP/1.1 only, whatever ALPN offers)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(OriginProtocol, host, port, backlog=2048, ssl=tls)
