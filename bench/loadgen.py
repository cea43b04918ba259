"""Closed-loop HTTP/1.1 load generator on uvloop.

N keep-alive connections each send one request, read the whole response, and send the
next at once, for a fixed time. Responses are framed by Content-Length (what the origin and
the edge both send), so a connection stays in step over keep-alive without a full parser;
a response it cannot frame (no Content-Length, chunked) is counted as an error and the
connection is replaced. Every latency is kept in a ``LatencyHistogram``.

The bench runs it in a process of its own so it does not share a core (or the GIL) with
the edge:

    python -m bench.loadgen --port 8080 --host-header bench.localhost \
        --path /bytes/1024 --connections 50 --duration 5 --warmup 0.5

and reads the one JSON line it prints. With ``--tls --ca-file CA`` the connections are
HTTPS (HTTP/1.1 by ALPN, SNI ``--server-name``, the certificate checked against CA only);
``wire_bytes`` then counts decrypted bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

import uvloop

from bench.histogram import LatencyHistogram

_RECONNECT_DELAY = 0.005
_CONNECT_RETRY_DELAY = 0.05


@dataclass(slots=True)
class LoadResult:
    """What one load run measured, over its measurement window (warm-up excluded)."""

    connections: int
    path: str
    seconds: float
    requests: int = 0
    errors: int = 0  # responses with a status >= 400, or that could not be framed
    disconnects: int = 0  # connections the server closed while the run was on
    connect_failures: int = 0
    body_bytes: int = 0
    wire_bytes: int = 0
    cpu_seconds: float = 0.0  # the load generator's own CPU time in the window
    latency_ms: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def megabytes_per_second(self) -> float:
        """Response body bytes per second, in MB (10**6 bytes)."""
        return self.body_bytes / self.seconds / 1e6 if self.seconds else 0.0

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["requests_per_second"] = self.requests_per_second
        out["megabytes_per_second"] = self.megabytes_per_second
        return out

    @classmethod
    def from_json(cls, data: dict[str, object]) -> LoadResult:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})  # type: ignore[arg-type]


class LoadError(Exception):
    """The run cannot give figures (a refused certificate, the wrong protocol): one line."""


class OpenConnection(Protocol):
    def abort(self) -> None: ...


class LoadRun:
    """State shared by all connections of one run (one process, one event loop).

    ``new_connection`` makes the protocol for each connection; ``bench.loadgen_h2`` swaps
    in an HTTP/2 one and keeps the rest (reconnects, the window, the tallies)."""

    def __init__(
        self,
        host: str,
        port: int,
        host_header: str,
        path: str,
        connections: int,
        on_window: Callable[[str], None] | None = None,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
    ) -> None:
        self.on_window = on_window or (lambda edge: None)
        self.host = host
        self.port = port
        self.tls = tls
        self.server_name = server_name if tls is not None else None
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: burrow-bench\r\n\r\n"
        ).encode("latin-1")
        self.result = LoadResult(connections=connections, path=path, seconds=0.0)
        self.histogram = LatencyHistogram()
        self.statuses: dict[int, int] = {}
        self.active = True  # connections keep sending
        self.recording = False  # responses count
        self.open: set[OpenConnection] = set()
        self.fatal: str | None = None  # set by a connection that makes the run pointless
        self.failed = asyncio.Event()  # set with it, so the run ends at once
        self._loop = asyncio.get_running_loop()
        self._window_start = 0.0
        self._cpu_start = 0.0

    def new_connection(self) -> asyncio.Protocol:
        return ClientConnection(self)

    def fail(self, reason: str) -> None:
        """Stop the run: what it would measure is not what was asked for."""
        if self.fatal is None:
            self.fatal = reason
        self.failed.set()
        self.active = False
        for conn in list(self.open):
            conn.abort()

    async def connect(self) -> None:
        """Open one connection, retrying while the run is on."""
        while self.active:
            try:
                await self._loop.create_connection(
                    self.new_connection,
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.server_name,
                )
                return
            except ssl.SSLCertVerificationError as exc:
                # The same next time: retrying would only hide it.
                self.fail(f"the server's certificate was refused: {exc.verify_message}")
                return
            except OSError:
                if self.recording:
                    self.result.connect_failures += 1
                await asyncio.sleep(_CONNECT_RETRY_DELAY)

    def replace(self) -> None:
        """A connection went away mid-run: open another after a short pause."""
        if self.recording:
            self.result.disconnects += 1
        if self.active:
            self._loop.call_later(_RECONNECT_DELAY, lambda: self._loop.create_task(self.connect()))

    def start_window(self) -> None:
        self.recording = True
        self._window_start = time.perf_counter()
        self._cpu_start = _cpu_seconds()
        self.on_window("start")

    def end_window(self) -> None:
        self.recording = False
        self.active = False
        result = self.result
        result.seconds = time.perf_counter() - self._window_start
        result.cpu_seconds = _cpu_seconds() - self._cpu_start
        self.on_window("end")
        for conn in list(self.open):
            conn.abort()
        result.latency_ms = self.histogram.summary_ms()
        result.statuses = {str(k): v for k, v in sorted(self.statuses.items())}


class ClientConnection(asyncio.Protocol):
    __slots__ = ("_body_left", "_close_after", "_head", "_sent_ns", "_status", "run", "transport")

    def __init__(self, run: LoadRun) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self._head = bytearray()
        self._body_left = 0
        self._status = 0
        self._close_after = False
        self._sent_ns = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.run.open.add(self)
        if self.run.active:
            self._send()
        else:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.run.open.discard(self)
        self.run.replace()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _send(self) -> None:
        assert self.transport is not None
        self._sent_ns = time.perf_counter_ns()
        self.transport.write(self.run.request)

    def data_received(self, data: bytes) -> None:
        run = self.run
        recording = run.recording
        if recording:
            run.result.wire_bytes += len(data)
        view = memoryview(data)
        while view:
            if self._body_left:
                take = min(self._body_left, len(view))
                self._body_left -= take
                if recording:
                    run.result.body_bytes += take
                view = view[take:]
                if not self._body_left:
                    self._response_done()
                continue
            head = self._head
            searched = max(0, len(head) - 3)
            head += view
            view = view[len(view) :]
            end = head.find(b"\r\n\r\n", searched)
            if end == -1:
                if len(head) > 65536:
                    self._unframeable()
                return
            if not self._parse_head(bytes(head[:end])):
                self._unframeable()
                return
            rest = bytes(head[end + 4 :])
            head.clear()
            view = memoryview(rest)
            if not self._body_left:
                self._response_done()

    def _parse_head(self, head: bytes) -> bool:
        """Read the status and the body length; False if the body cannot be framed."""
        try:
            self._status = int(head[9:12])
        except ValueError:
            return False
        lower = head.lower()
        self._close_after = b"\r\nconnection: close" in lower
        start = lower.find(b"\r\ncontent-length:")
        if start == -1:
            # RFC 9112 6.3: 1xx, 204 and 304 have no body; anything else needs a length here.
            self._body_left = 0
            return self._status in (204, 304)
        line_end = lower.find(b"\r\n", start + 2)
        value = lower[start + 17 : line_end if line_end != -1 else len(lower)]
        try:
            self._body_left = int(value.strip())
        except ValueError:
            return False
        return self._body_left >= 0

    def _response_done(self) -> None:
        run = self.run
        if run.recording:
            run.histogram.record_ns(time.perf_counter_ns() - self._sent_ns)
            run.result.requests += 1
            status = self._status
            run.statuses[status] = run.statuses.get(status, 0) + 1
            if status >= 400:
                run.result.errors += 1
        if self.transport is None:
            return
        if self._close_after or not run.active:
            self.transport.close()
        else:
            self._send()

    def _unframeable(self) -> None:
        if self.run.recording:
            self.run.result.errors += 1
        self._head.clear()
        self._body_left = 0
        self.abort()


def print_window(edge: str) -> None:
    sys.stdout.write(json.dumps({"window": edge}) + "\n")
    sys.stdout.flush()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_load(
    host: str,
    port: int,
    *,
    host_header: str,
    path: str,
    connections: int,
    duration: float,
    warmup: float,
    on_window: Callable[[str], None] | None = None,
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> LoadResult:
    """Drive ``connections`` closed-loop connections for ``warmup + duration`` seconds.

    ``on_window("start")`` and ``on_window("end")`` are called as the measurement window
    opens and closes (the bench samples the servers' CPU time then). With ``tls`` the
    connections are HTTPS to ``server_name``."""
    run = LoadRun(host, port, host_header, path, connections, on_window, tls, server_name)
    return await drive(run, connections, duration=duration, warmup=warmup)


async def drive(run: LoadRun, connections: int, *, duration: float, warmup: float) -> LoadResult:
    """Open the connections, wait out warm-up and window, and return the tallies."""
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(asyncio.gather(*(run.connect() for _ in range(connections))), 10.0)
    timer = loop.call_later(warmup, run.start_window)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run.failed.wait(), warmup + duration)
    if run.fatal is not None:
        timer.cancel()
        raise LoadError(run.fatal)
    run.end_window()
    await asyncio.sleep(0)  # let aborted transports report connection_lost
    return run.result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host-header", help="Host header to send (default HOST:PORT)")
    p.add_argument("--path", default="/bytes/1024")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    p.add_argument(
        "--mark-window",
        action="store_true",
        help='print {"window": "start"} and {"window": "end"} lines as the window opens/closes',
    )
    p.add_argument("--tls", action="store_true", help="HTTPS (HTTP/1.1 by ALPN)")
    p.add_argument("--ca-file", help="with --tls: the only CA to trust (PEM)")
    p.add_argument(
        "--server-name", help="with --tls: SNI and the name checked (default: the Host header's)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.connections < 1 or args.duration <= 0 or args.warmup < 0:
        print("loadgen: need --connections >= 1, --duration > 0, --warmup >= 0", file=sys.stderr)
        return 2
    host_header = args.host_header or f"{args.host}:{args.port}"
    tls = None
    if args.tls:
        if not args.ca_file:
            print("loadgen: --tls needs --ca-file (the CA that signed the server)", file=sys.stderr)
            return 2
        from bench.certificates import client_context

        tls = client_context(args.ca_file, ["http/1.1"])
    try:
        result = uvloop.run(
            run_load(
                args.host,
                args.port,
                host_header=host_header,
                path=args.path,
                connections=args.connections,
                duration=args.duration,
                warmup=args.warmup,
                on_window=print_window if args.mark_window else None,
                tls=tls,
                server_name=args.server_name or host_header.rsplit(":", 1)[0],
            )
        )
    except LoadError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
