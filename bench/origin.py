"""A small, fast HTTP/1.1 origin: the service behind the tunnel in benchmarks and the demo.

Routes:
    GET  /                  a short HTML page saying the tunnel works (the ``burrowd dev`` demo)
    GET  /bytes/N           N bytes of body (keep-alive, Content-Length)
    POST /upload            reads the body (Content-Length or chunked), answers its size
    GET  /echo-headers      the request head back as text
    GET  /ws                a WebSocket (RFC 6455) that echoes every message back

It parses only what it needs, keeps connections alive, and never holds a whole body.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
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
# RFC 6455 1.3: the server proves it read the handshake by hashing the key with this GUID.
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_WS_MAX_PAYLOAD = 1 << 20  # an echo server has no use for larger frames: close 1009
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY = 0x0, 0x1, 0x2
_OP_CLOSE, _OP_PING, _OP_PONG = 0x8, 0x9, 0xA
_FIN = 0x80
_OPCODES = frozenset((_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG))


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


def _header(head: bytes, lower: bytes, name: bytes) -> bytes | None:
    """The value of header ``name`` (lower case), read from ``head`` so case survives."""
    start = lower.find(b"\r\n" + name + b":")
    if start == -1:
        return None
    start += len(name) + 3
    end = lower.find(b"\r\n", start)
    return head[start : end if end != -1 else len(head)].strip()


def websocket_accept(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2, step 5.4)."""
    return base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())


def websocket_frame(first: int, payload: bytes) -> bytes:
    """An unmasked frame's head and payload: what a server sends (RFC 6455 5.1)."""
    n = len(payload)
    if n < 126:
        head = bytes((first, n))
    elif n < 1 << 16:
        head = bytes((first, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 127)) + n.to_bytes(8, "big")
    return head + payload


def unmask(payload: bytes, key: bytes) -> bytes:
    """XOR with the 4-byte masking key (RFC 6455 5.3), as one big-integer operation: a
    Python loop per byte would make the origin, not the tunnel, the bottleneck."""
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


class WebSocketEcho:
    """The server side of an echo WebSocket, sans IO: ``receive_data`` takes bytes from the
    client and returns the bytes to send back. Data frames come back as they came (same
    FIN and opcode, so fragmented messages stay whole), pings get pongs, and a close is
    answered with the same status before ``closed`` turns True."""

    __slots__ = ("_buf", "closed")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.closed = False

    def receive_data(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while not self.closed and len(buf) >= 2:
            first, second = buf[0], buf[1]
            opcode = first & 0x0F
            length = second & 0x7F
            start = 2
            if length == 126:
                start = 4
            elif length == 127:
                start = 10
            if len(buf) < start:
                break
            if start > 2:
                length = int.from_bytes(buf[2:start], "big")
            if not second & 0x80 or first & 0x70 or opcode not in _OPCODES:
                # 5.1: a client frame must be masked; 5.2: no extension was agreed, so the
                # RSV bits must be clear; 5.2: unknown opcodes fail the connection.
                out.append(self._close(1002))
                break
            if length > _WS_MAX_PAYLOAD or (opcode >= _OP_CLOSE and length > 125):
                out.append(self._close(1009 if opcode < _OP_CLOSE else 1002))
                break
            end = start + 4 + length
            if len(buf) < end:
                break
            payload = unmask(bytes(buf[start + 4 : end]), bytes(buf[start : start + 4]))
            del buf[:end]
            if opcode == _OP_CLOSE:
                # 5.5.1: echo the status code the client sent, then close.
                self.closed = True
                out.append(websocket_frame(_FIN | _OP_CLOSE, payload[:2]))
            elif opcode == _OP_PING:
                out.append(websocket_frame(_FIN | _OP_PONG, payload))
            elif opcode != _OP_PONG:
                out.append(websocket_frame(first & (_FIN | 0x0F), payload))
        return out

    def _close(self, code: int) -> bytes:
        self.closed = True
        self._buf.clear()
        return websocket_frame(_FIN | _OP_CLOSE, code.to_bytes(2, "big"))


class OriginProtocol(asyncio.Protocol):
    __slots__ = (
        "_body_left",
        "_buf",
        "_chunked",
        "_head",
        "_received",
        "_websocket",
        "transport",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        self._body_left = 0
        self._chunked = False
        self._received = 0
        self._head = b""
        self._websocket: WebSocketEcho | None = None  # after a 101 on /ws
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self._websocket is not None:
            self._websocket_data(data)
            return
        buf = self._buf
        buf += data
        while True:
            if self._body_left or self._chunked:
                if not self._consume_body():
                    return
                self._respond()
                if self._websocket is not None:
                    self._switched()
                    return
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
            if self._websocket is not None:
                self._switched()
                return

    def _switched(self) -> None:
        # Bytes the client sent after the handshake are WebSocket frames: pass them on.
        leftover = bytes(self._buf)
        self._buf.clear()
        if leftover:
            self._websocket_data(leftover)

    def _websocket_data(self, data: bytes) -> None:
        websocket = self._websocket
        transport = self.transport
        assert websocket is not None
        if transport is None:
            return
        out = websocket.receive_data(data)
        if out:
            transport.writelines(out)
        if websocket.closed:
            transport.close()

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
            head = (
                b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: "
                + str(n).encode()
                + b"\r\n\r\n"
            )
            if method == b"HEAD":
                transport.write(head)
            elif n <= len(_CHUNK):
                # One write, as a server in front of a small file or a rendered page makes it:
                # the head and a small body in one segment.
                transport.write(head + _CHUNK[:n])
            else:
                transport.write(head)
                while n > 0:
                    piece = _CHUNK if n >= len(_CHUNK) else _CHUNK[:n]
                    transport.write(piece)
                    n -= len(piece)
        elif path == b"/upload":
            transport.write(_response(b"200 OK", str(self._received).encode()))
        elif path == b"/echo-headers":
            transport.write(_response(b"200 OK", self._head))
        elif path == b"/ws":
            self._websocket_handshake(method)
        elif path == b"/":
            transport.write(_response(b"200 OK", _PAGE, b"text/html; charset=utf-8"))
        else:
            transport.write(_response(b"404 Not Found", b"not found\n"))

    def _websocket_handshake(self, method: bytes) -> None:
        """RFC 6455 4.2.1: a GET with Upgrade: websocket, Connection: Upgrade, a key, and
        version 13; answered with 101 and the accept hash, or refused."""
        transport = self.transport
        assert transport is not None
        head = self._head
        lower = head.lower()
        upgrade = (_header(head, lower, b"upgrade") or b"").lower()
        connection = (_header(head, lower, b"connection") or b"").lower()
        key = _header(head, lower, b"sec-websocket-key")
        version = _header(head, lower, b"sec-websocket-version")
        if method != b"GET" or upgrade != b"websocket" or b"upgrade" not in connection or not key:
            transport.write(
                _response(b"400 Bad Request", b"/ws needs a WebSocket handshake (RFC 6455)\n")
            )
            return
        if version != b"13":
            transport.write(
                b"HTTP/1.1 426 Upgrade Required\r\nsec-websocket-version: 13\r\n"
                b"content-length: 0\r\n\r\n"
            )
            return
        transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            b"sec-websocket-accept: " + websocket_accept(key) + b"\r\n\r\n"
        )
        self._websocket = WebSocketEcho()


async def start_origin(
    host: str = "127.0.0.1", port: int = 0, *, tls: ssl.SSLContext | None = None
) -> asyncio.Server:
    """Serve on ``host:port``; with ``tls``, HTTPS (HTTP/1.1 only, whatever ALPN offers)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(OriginProtocol, host, port, backlog=2048, ssl=tls)
