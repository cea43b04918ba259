"""Closed-loop WebSocket echo load generator on uvloop.

N connections each open a WebSocket (RFC 6455) on ``--path`` with an HTTP/1.1 upgrade, then
send one small binary message, wait for the origin's echo (bench/origin.py ``/ws``), check
it, and send the next at once, for a fixed time. Every round trip is a latency in a
``LatencyHistogram``; ``requests`` in the result counts echoed messages.

It shares the rest with ``bench.loadgen`` (reconnects, the measurement window, the
``LoadResult`` it prints), and is run the same way:

    python -m bench.loadgen_ws --port 8080 --host-header bench.localhost --path /ws \
        --connections 50 --message-bytes 64 --duration 5 --warmup 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import sys
import time
from collections.abc import Callable

import uvloop

from bench.loadgen import LoadError, LoadResult, LoadRun, drive, print_window
from bench.origin import websocket_accept

_MAX_HEAD = 64 * 1024
_FIN_BINARY = 0x82
_OP_CLOSE = 0x8


def client_frame(payload: bytes, mask: bytes) -> bytes:
    """A masked binary frame (RFC 6455 5.2), as a client must send every frame."""
    n = len(payload)
    if n < 126:
        head = bytes((_FIN_BINARY, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((_FIN_BINARY, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((_FIN_BINARY, 0x80 | 127)) + n.to_bytes(8, "big")
    repeated = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    return head + mask + masked


class WebSocketLoadRun(LoadRun):
    def __init__(
        self,
        port: int,
        *,
        host_header: str,
        path: str,
        connections: int,
        message_bytes: int,
        on_window: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__("127.0.0.1", port, host_header, path, connections, on_window)
        self.host_header = host_header
        self.path = path
        self.message = (bytes(range(256)) * (message_bytes // 256 + 1))[:message_bytes]
        # RFC 6455 5.3 asks for a fresh unpredictable key per frame, to stop a client's
        # bytes being read as HTTP by a proxy in between. The only intermediary here is
        # the edge under test, and one pre-built frame keeps the client's cost per message
        # to a single write; the origin still unmasks every frame for real.
        self.frame = client_frame(self.message, os.urandom(4))

    def new_connection(self) -> asyncio.Protocol:
        return WebSocketClientConnection(self)

    def handshake(self, key: bytes) -> bytes:
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
            "User-Agent: burrow-bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode("latin-1")


class WebSocketClientConnection(asyncio.Protocol):
    __slots__ = ("_buf", "_key", "_open", "_sent_ns", "run", "transport")

    def __init__(self, run: WebSocketLoadRun) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._key = base64.b64encode(os.urandom(16))
        self._open = False  # the server answered 101: frames from here on
        self._sent_ns = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.run.open.add(self)
        if self.run.active:
            transport.write(self.run.handshake(self._key))  # type: ignore[attr-defined]
        else:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.run.open.discard(self)
        self.run.replace()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        run = self.run
        if run.recording:
            run.result.wire_bytes += len(data)
        buf = self._buf
        buf += data
        if not self._open:
            end = buf.find(b"\r\n\r\n")
            if end == -1:
                if len(buf) > _MAX_HEAD:
                    run.fail("the WebSocket handshake response head never ended")
                return
            head = bytes(buf[:end])
            del buf[: end + 4]  # what follows the head is frames: keep it
            problem = self._check_handshake(head)
            if problem:
                run.fail(problem)
                return
            self._open = True
            self._send()
        self._read_frames()

    def _check_handshake(self, head: bytes) -> str:
        """Why the upgrade failed, or "" when the server switched to WebSocket properly."""
        status = head[9:12]
        if status != b"101":
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            return f"the WebSocket handshake was answered {line!r}, not 101"
        # The header name is case-insensitive; its value (base64) is not.
        at = head.lower().find(b"\r\nsec-websocket-accept:")
        if at == -1:
            return "the 101 response to the WebSocket handshake had no Sec-WebSocket-Accept"
        end = head.find(b"\r\n", at + 2)
        value = head[at + 23 : end if end != -1 else len(head)].strip()
        if value != websocket_accept(self._key):
            return "the 101 response carried the wrong Sec-WebSocket-Accept (RFC 6455 4.2.2)"
        return ""

    def _read_frames(self) -> None:
        run = self.run
        buf = self._buf
        while len(buf) >= 2:
            first, second = buf[0], buf[1]
            length = second & 0x7F
            start = 2 if length < 126 else 4 if length == 126 else 10
            if len(buf) < start:
                return
            if start > 2:
                length = int.from_bytes(buf[2:start], "big")
            if second & 0x80:
                run.fail("the server masked a frame (RFC 6455 5.1 forbids it)")
                return
            if len(buf) < start + length:
                return
            payload = bytes(buf[start : start + length])
            del buf[: start + length]
            opcode = first & 0x0F
            if opcode == _OP_CLOSE:
                self.abort()
                return
            if first != _FIN_BINARY:
                continue  # a pong, or a fragment: the origin sends neither for this load
            self._echoed(payload)

    def _echoed(self, payload: bytes) -> None:
        run = self.run
        if run.recording:
            run.histogram.record_ns(time.perf_counter_ns() - self._sent_ns)
            run.result.requests += 1
            run.result.body_bytes += len(payload)
            if payload != run.message:
                run.result.errors += 1
        if self.transport is None:
            return
        if run.active:
            self._send()
        else:
            self.transport.close()

    def _send(self) -> None:
        assert self.transport is not None
        self._sent_ns = time.perf_counter_ns()
        self.transport.write(self.run.frame)


async def run_websocket_load(
    port: int,
    *,
    host_header: str,
    path: str,
    connections: int,
    message_bytes: int,
    duration: float,
    warmup: float,
    on_window: Callable[[str], None] | None = None,
) -> LoadResult:
    run = WebSocketLoadRun(
        port,
        host_header=host_header,
        path=path,
        connections=connections,
        message_bytes=message_bytes,
        on_window=on_window,
    )
    return await drive(run, connections, duration=duration, warmup=warmup)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.loadgen_ws", description=__doc__.split("\n")[0]
    )
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host-header", help="Host header to send (default 127.0.0.1:PORT)")
    p.add_argument("--path", default="/ws")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--message-bytes", type=int, default=64, help="payload per message (64)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    p.add_argument(
        "--mark-window",
        action="store_true",
        help='print {"window": "start"} and {"window": "end"} lines as the window opens/closes',
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.connections < 1 or args.duration <= 0 or args.warmup < 0 or args.message_bytes < 1:
        print(
            "loadgen_ws: need --connections >= 1, --message-bytes >= 1, --duration > 0, "
            "--warmup >= 0",
            file=sys.stderr,
        )
        return 2
    try:
        result = uvloop.run(
            run_websocket_load(
                args.port,
                host_header=args.host_header or f"127.0.0.1:{args.port}",
                path=args.path,
                connections=args.connections,
                message_bytes=args.message_bytes,
                duration=args.duration,
                warmup=args.warmup,
                on_window=print_window if args.mark_window else None,
            )
        )
    except LoadError as exc:
        print(f"loadgen_ws: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
