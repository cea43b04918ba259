"""HTTP/1.1 load generator on uvloop: closed loop, or open loop at a fixed rate.

N keep-alive connections each send one request, read the whole response, and send the
next at once, for a fixed time. Responses are framed by Content-Length (what the origin and
the edge both send), so a connection stays in step over keep-alive without a full parser;
a response it cannot frame (no Content-Length, chunked) is counted as an error and the
connection is replaced. Every latency is kept in a ``LatencyHistogram``.

With ``--rate R`` the loop is open instead: requests fall due on a fixed timetable, R per
second, each taken by whichever connection is idle (or queued until one is), and a latency
runs from the moment the request was DUE, not from when it was sent, so a stalled server
is charged for every request it held up (no coordinated omission). How late the generator
itself sent them is reported apart (``schedule_lag_ms``).

The bench runs it in a process of its own so it does not share a core (or the GIL) with
the edge:

    python -m bench.loadgen --port 8080 --host-header bench.localhost \
        --path /bytes/1024 --connections 50 --duration 5 --warmup 0.5

and reads the one JSON line it prints. With ``--tls --ca-file CA`` the connections are
HTTPS (HTTP/1.1 by ALPN, SNI ``--server-name``, the certificate checked against CA only);
``wire_bytes`` then counts decrypted bytes. ``--body-bytes N`` sends an N-byte request body
(``--method POST``), streamed from one reused buffer as the socket drains.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import resource
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

import uvloop

from bench.histogram import LatencyHistogram

_RECONNECT_DELAY = 0.005
_CONNECT_RETRY_DELAY = 0.05
_BODY_PIECE = 256 * 1024  # one reused buffer; a body of any size is written from it
_TIMER_MIN_GAP_NS = 100_000  # above 10,000 req/s a wake-up hands out a batch


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


_CLOCK_MONOTONIC = 1  # the clock time.perf_counter_ns reads on Linux
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1


def _timespec(ns: int) -> _Timespec:
    return _Timespec(ns // 1_000_000_000, ns % 1_000_000_000)


def periodic_timerfd(first_ns: int, interval_ns: int) -> int | None:
    """A Linux timerfd that becomes readable at ``first_ns`` (time.perf_counter_ns) and
    every ``interval_ns`` after; None where there is none.

    uvloop's timers count whole milliseconds: a delay under 0.5 ms rounds to "now", so a
    call_later ticker at 2,000 req/s spins a core (and starves the servers on a small
    machine), and one with a 1 ms floor sends requests up to a millisecond late. A kernel
    timer read through the event loop wakes it within tens of microseconds, and a thread
    would not: it waits for the GIL. (os.timerfd_create arrives in Python 3.13.)"""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    fd = create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
    if fd < 0:
        return None
    # Absolute, so the timer is in phase with the timetable however long setting it up took.
    first = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + first_ns - time.perf_counter_ns()
    spec = _Itimerspec(_timespec(interval_ns), _timespec(first))
    if settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
        os.close(fd)
        return None
    return fd


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
    body_bytes: int = 0  # response bodies
    wire_bytes: int = 0
    upload_bytes: int = 0  # request bodies (and bench.tcp_bulk's stream) handed to the socket
    cpu_seconds: float = 0.0  # the load generator's own CPU time in the window
    latency_ms: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    rate: float = 0.0  # requests due per second (--rate); 0: closed loop
    unsent: int = 0  # --rate: requests due but not yet sent when the window closed
    schedule_lag_ms: dict[str, float] = field(default_factory=dict)  # --rate: sent - due

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def megabytes_per_second(self) -> float:
        """Response body bytes per second, in MB (10**6 bytes)."""
        return self.body_bytes / self.seconds / 1e6 if self.seconds else 0.0

    @property
    def upload_megabytes_per_second(self) -> float:
        """Request body bytes sent per second, in MB (10**6 bytes)."""
        return self.upload_bytes / self.seconds / 1e6 if self.seconds else 0.0

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["requests_per_second"] = self.requests_per_second
        out["megabytes_per_second"] = self.megabytes_per_second
        out["upload_megabytes_per_second"] = self.upload_megabytes_per_second
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
        *,
        method: str = "GET",
        body_bytes: int = 0,
        expect_body: bytes | None = None,
        rate: float = 0.0,
    ) -> None:
        self.on_window = on_window or (lambda edge: None)
        self.host = host
        self.port = port
        self.tls = tls
        self.server_name = server_name if tls is not None else None
        length = f"Content-Length: {body_bytes}\r\n" if body_bytes or method == "POST" else ""
        self.request = (
            f"{method} {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: burrow-bench\r\n"
            f"{length}\r\n"
        ).encode("latin-1")
        self.body_bytes = body_bytes
        self.body_piece = memoryview(b"x" * min(body_bytes, _BODY_PIECE))
        self.expect_body = expect_body  # every response body must be this, else an error
        self.result = LoadResult(connections=connections, path=path, seconds=0.0, rate=rate)
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
        # --rate: the timetable. Request k is due at origin + k / rate.
        self.rate = rate
        self.idle: deque[ClientConnection] = deque()  # open, nothing in flight
        self.due: deque[int] = deque()  # perf_counter_ns due times no connection has taken
        self.lag = LatencyHistogram()  # how late the generator sent what was due
        self._timetable_origin_ns = 0
        self._timetabled = 0  # requests put on the timetable so far
        self._timerfd: int | None = None  # wakes the loop when requests fall due

    def new_connection(self) -> asyncio.Protocol:
        return ClientConnection(self)

    def ready(self, conn: ClientConnection) -> None:
        """``conn`` can take a request: the next one now (closed loop), or the oldest one
        due, or it waits in ``idle`` for the timetable."""
        if not self.rate:
            conn.send(0)
        elif self.due:
            conn.send(self.due.popleft())
        else:
            self.idle.append(conn)

    def start_timetable(self) -> None:
        self._timetable_origin_ns = time.perf_counter_ns()
        interval_ns = max(round(1e9 / self.rate), _TIMER_MIN_GAP_NS)
        self._timerfd = periodic_timerfd(self._timetable_origin_ns + interval_ns, interval_ns)
        if self._timerfd is not None:
            self._loop.add_reader(self._timerfd, self._timer_fired)
        self._tick()

    def stop_timetable(self) -> None:
        if self._timerfd is not None:
            self._loop.remove_reader(self._timerfd)
            os.close(self._timerfd)
            self._timerfd = None

    def _timer_fired(self) -> None:
        assert self._timerfd is not None
        with contextlib.suppress(BlockingIOError):
            os.read(self._timerfd, 8)  # the expiry count: _tick works out what is due
        self._tick()

    def _tick(self) -> None:
        # Hand out every request due by now (a wake-up can be late, or cover a batch);
        # each keeps its own due time, which its latency runs from.
        if not self.active:
            return
        interval_ns = 1e9 / self.rate
        origin = self._timetable_origin_ns
        due_by_now = int((time.perf_counter_ns() - origin) / interval_ns) + 1
        while self._timetabled < due_by_now:
            at = origin + round(self._timetabled * interval_ns)
            self._timetabled += 1
            if self.idle:
                self.idle.popleft().send(at)
            else:
                self.due.append(at)
        if self._timerfd is None:
            # No timerfd: the loop's own timer, never under 1 ms (see periodic_timerfd).
            next_at = origin + round(self._timetabled * interval_ns)
            delay = max(0.001, (next_at - time.perf_counter_ns()) / 1e9)
            self._loop.call_later(delay, self._tick)

    def fail(self, reason: str) -> None:
        """Stop the run: what it would measure is not what was asked for."""
        if self.fatal is None:
            self.fatal = reason
        self.failed.set()
        self.active = False
        self.stop_timetable()
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
        self.stop_timetable()
        result = self.result
        result.seconds = time.perf_counter() - self._window_start
        result.cpu_seconds = _cpu_seconds() - self._cpu_start
        self.on_window("end")
        for conn in list(self.open):
            conn.abort()
        result.latency_ms = self.histogram.summary_ms()
        result.statuses = {str(k): v for k, v in sorted(self.statuses.items())}
        if self.rate:
            result.unsent = len(self.due)
            result.schedule_lag_ms = self.lag.summary_ms()


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "_body_left",
        "_close_after",
        "_head",
        "_kept",
        "_sent_ns",
        "_status",
        "_upload_left",
        "_write_paused",
        "run",
        "transport",
    )

    def __init__(self, run: LoadRun) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self._head = bytearray()
        self._body_left = 0
        self._status = 0
        self._close_after = False
        self._sent_ns = 0  # when the request was due (--rate) or sent: its latency's start
        self._upload_left = 0  # request body bytes still to write
        self._write_paused = False
        self._kept = bytearray()  # the response body, when it is checked (expect_body)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.run.open.add(self)
        if self.run.active:
            self.run.ready(self)
        else:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.run.open.discard(self)
        if self in self.run.idle:
            self.run.idle.remove(self)
        self.run.replace()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._upload_left:
            self._write_body()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def send(self, due_ns: int) -> None:
        """Send the next request; its latency runs from ``due_ns`` when given (--rate)."""
        assert self.transport is not None
        run = self.run
        now = time.perf_counter_ns()
        if due_ns and run.recording:
            run.lag.record_ns(now - due_ns)
        self._sent_ns = due_ns or now
        self.transport.write(run.request)
        if run.body_bytes:
            self._upload_left = run.body_bytes
            self._write_body()

    def _write_body(self) -> None:
        """Write the body until the transport's buffer is full; resume_writing goes on."""
        run = self.run
        piece = run.body_piece
        while self._upload_left and not self._write_paused and self.transport is not None:
            n = min(self._upload_left, len(piece))
            self.transport.write(piece[:n])
            self._upload_left -= n
            if run.recording:
                run.result.upload_bytes += n

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
                if run.expect_body is not None and len(self._kept) <= len(run.expect_body):
                    self._kept += view[:take]
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
        # A response before the whole request body went out ends the exchange early: the
        # connection cannot carry the next request (the rest of this body would precede it).
        cut_short = self._upload_left > 0
        wrong_body = run.expect_body is not None and self._kept != run.expect_body
        self._kept.clear()
        if run.recording:
            run.histogram.record_ns(time.perf_counter_ns() - self._sent_ns)
            run.result.requests += 1
            status = self._status
            run.statuses[status] = run.statuses.get(status, 0) + 1
            if status >= 400 or cut_short or wrong_body:
                run.result.errors += 1
        if self.transport is None:
            return
        if cut_short:
            self._upload_left = 0
            self.abort()
        elif self._close_after or not run.active:
            self.transport.close()
        else:
            run.ready(self)

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
    method: str = "GET",
    body_bytes: int = 0,
    expect_body: bytes | None = None,
    rate: float = 0.0,
) -> LoadResult:
    """Drive ``connections`` connections for ``warmup + duration`` seconds: closed loop, or
    ``rate`` requests per second on a timetable.

    ``on_window("start")`` and ``on_window("end")`` are called as the measurement window
    opens and closes (the bench samples the servers' CPU time then). With ``tls`` the
    connections are HTTPS to ``server_name``."""
    run = LoadRun(
        host,
        port,
        host_header,
        path,
        connections,
        on_window,
        tls,
        server_name,
        method=method,
        body_bytes=body_bytes,
        expect_body=expect_body,
        rate=rate,
    )
    return await drive(run, connections, duration=duration, warmup=warmup)


async def drive(run: LoadRun, connections: int, *, duration: float, warmup: float) -> LoadResult:
    """Open the connections, wait out warm-up and window, and return the tallies."""
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(asyncio.gather(*(run.connect() for _ in range(connections))), 10.0)
    if run.rate:
        run.start_timetable()  # warm-up runs at the same rate as the window
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
    p.add_argument("--method", default="GET", help="request method (default GET)")
    p.add_argument(
        "--body-bytes", type=int, default=0, help="request body size, streamed (default none)"
    )
    p.add_argument(
        "--expect-body", help="count a response whose body is not exactly this as an error"
    )
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="requests due per second on a fixed timetable, latency from when each was due "
        "(default: closed loop)",
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
    if args.body_bytes < 0 or args.rate < 0:
        print("loadgen: --body-bytes and --rate cannot be negative", file=sys.stderr)
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
                method=args.method,
                body_bytes=args.body_bytes,
                expect_body=None if args.expect_body is None else args.expect_body.encode(),
                rate=args.rate,
            )
        )
    except LoadError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
