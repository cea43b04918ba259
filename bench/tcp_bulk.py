"""TCP bulk throughput: a sink server and the client that streams into it.

The wire protocol is the least that lets the client know the bytes ARRIVED, not only that
its kernel took them: each transfer is an 8-byte big-endian length, then that many bytes;
the sink answers with the 8-byte count it received once it has them all. One connection
carries an unmeasured warm-up transfer, then the measured one, so connection setup and the
tunnel's first stream are outside the window. No half-close is needed, so the figures do
not depend on how a relay forwards FIN.

    python -m bench.component tcp-sink              the sink (prints {"port": ...})
    python -m bench.tcp_bulk --port P --bytes 200000000 --mark-window

The client prints the ``LoadResult`` JSON line the other load generators print:
``upload_bytes`` is the measured transfer, ``requests`` 1, ``seconds`` from the first
byte written to the sink's acknowledgement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import sys
import time
from collections.abc import Callable

import uvloop

from bench.loadgen import LoadResult, print_window

_PIECE = 256 * 1024  # the sink's receive buffer and the client's reused send buffer
_HEADER = 8
_TRANSFER_TIMEOUT = 300.0  # a stalled tunnel fails the run instead of hanging it


class TcpSink(asyncio.BufferedProtocol):
    """Counts each transfer into one reused buffer (no allocation per read) and answers
    with the count when the announced length has arrived."""

    __slots__ = ("_buffer", "_header", "_in_body", "_left", "_received", "transport")

    def __init__(self) -> None:
        self._buffer = memoryview(bytearray(_PIECE))
        self._header = bytearray()
        self._in_body = False
        self._left = 0
        self._received = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        pos = 0
        while pos < nbytes:
            if self._in_body:
                take = min(self._left, nbytes - pos)
                self._left -= take
                self._received += take
                pos += take
            else:
                take = min(_HEADER - len(self._header), nbytes - pos)
                self._header += self._buffer[pos : pos + take]
                pos += take
                if len(self._header) < _HEADER:
                    return
                self._left = int.from_bytes(self._header, "big")
                self._header.clear()
                self._received = 0
                self._in_body = True
            if self._in_body and not self._left:
                self._in_body = False
                if self.transport is not None:
                    self.transport.write(self._received.to_bytes(_HEADER, "big"))

    def eof_received(self) -> bool:
        return False  # close: the client is done


async def start_tcp_sink(host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(TcpSink, host, port, backlog=128)


class BulkSender(asyncio.Protocol):
    """Streams transfers from one reused buffer, as fast as the socket drains."""

    __slots__ = ("_ack", "_done", "_left", "_paused", "_piece", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._piece = memoryview(b"x" * _PIECE)
        self._left = 0
        self._paused = False
        self._ack = bytearray()
        self._done: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError("the connection closed mid-transfer"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._write()

    def transfer(self, size: int) -> asyncio.Future[int]:
        """Send ``size`` bytes; the future is the count the sink acknowledges."""
        assert self.transport is not None and self._done is None
        self._done = asyncio.get_running_loop().create_future()
        self.transport.write(size.to_bytes(_HEADER, "big"))
        self._left = size
        self._write()
        return self._done

    def _write(self) -> None:
        piece = self._piece
        while self._left and not self._paused and self.transport is not None:
            n = min(self._left, len(piece))
            self.transport.write(piece[:n])
            self._left -= n

    def data_received(self, data: bytes) -> None:
        self._ack += data
        if len(self._ack) >= _HEADER and self._done is not None:
            count = int.from_bytes(self._ack[:_HEADER], "big")
            del self._ack[:_HEADER]
            done, self._done = self._done, None
            done.set_result(count)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_bulk(
    port: int,
    size: int,
    *,
    warmup_size: int,
    on_window: Callable[[str], None] | None = None,
) -> LoadResult:
    loop = asyncio.get_running_loop()
    result = LoadResult(connections=1, path="tcp", seconds=0.0)
    transport, sender = await asyncio.wait_for(
        loop.create_connection(BulkSender, "127.0.0.1", port), 10.0
    )
    mark = on_window or (lambda edge: None)
    try:
        if warmup_size:
            await asyncio.wait_for(sender.transfer(warmup_size), _TRANSFER_TIMEOUT)
        t0, cpu0 = time.perf_counter(), _cpu_seconds()
        mark("start")
        received = await asyncio.wait_for(sender.transfer(size), _TRANSFER_TIMEOUT)
        result.seconds = time.perf_counter() - t0
        result.cpu_seconds = _cpu_seconds() - cpu0
        mark("end")
    finally:
        transport.close()
    result.requests = 1
    result.upload_bytes = size
    if received != size:
        result.errors = 1
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.tcp_bulk", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True, help="the sink, or the tunnel to it")
    p.add_argument("--bytes", type=int, default=200_000_000, help="measured transfer (200 MB)")
    p.add_argument(
        "--warmup-bytes", type=int, help="unmeasured transfer first (default a tenth of --bytes)"
    )
    p.add_argument(
        "--mark-window",
        action="store_true",
        help='print {"window": "start"} and {"window": "end"} lines as the window opens/closes',
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    warmup = args.warmup_bytes if args.warmup_bytes is not None else args.bytes // 10
    if args.bytes < 1 or warmup < 0:
        print("tcp_bulk: need --bytes >= 1 and --warmup-bytes >= 0", file=sys.stderr)
        return 2
    try:
        result = uvloop.run(
            run_bulk(
                args.port,
                args.bytes,
                warmup_size=warmup,
                on_window=print_window if args.mark_window else None,
            )
        )
    except (OSError, TimeoutError) as exc:
        print(f"tcp_bulk: the transfer to port {args.port} failed: {exc!r}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
