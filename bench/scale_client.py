"""The visitor side of ``bench scale``: many cheap HTTP/1.1 client connections in one loop.

``VisitorConnection`` is a bare protocol that can sit idle (a connection that sent nothing)
or send GET requests one at a time over keep-alive. Responses are framed by Content-Length,
which both the origin and the edge's error pages send; a response without one ends at close.
Nothing here retries: a refused connect or a dropped connection is reported to the caller,
which decides whether that is a failure (a latency probe) or "not yet" (a recovery poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import Iterable
from pathlib import Path

_HEAD_END = b"\r\n\r\n"


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one (10,000 sockets need it); the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    """Resident memory now (VmRSS), not the peak: what the process holds at this moment."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class VisitorConnection(asyncio.Protocol):
    """One client connection; ``request`` sends a GET and resolves to the response status."""

    __slots__ = (
        "_buf",
        "_content_length",
        "_head_len",
        "_status",
        "_waiter",
        "closed",
        "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buf = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self._status = 0  # of the response being read; 0 until its head is in
        self._head_len = 0
        self._content_length = -1  # -1: no Content-Length, the body ends at close

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def request(self, host: str, path: str = "/bytes/16") -> asyncio.Future[int]:
        """Send ``GET path`` with ``Host: host``; the future gets the status, or
        ConnectionError if the connection closes first."""
        waiter = asyncio.get_running_loop().create_future()
        if self.closed or self.transport is None:
            waiter.set_exception(ConnectionError("the connection is closed"))
            return waiter
        self._waiter = waiter
        self._status = 0
        self.transport.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        return waiter

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._status:
            end = buf.find(_HEAD_END)
            if end == -1:
                return
            head = bytes(buf[:end]).lower()
            self._head_len = end + len(_HEAD_END)
            try:
                self._status = int(head.split(b" ", 2)[1])
            except (IndexError, ValueError):
                self._status = 999  # not HTTP: the caller sees a status that is no 200
            self._content_length = -1
            at = head.find(b"\r\ncontent-length:")
            if at != -1:
                line_end = head.find(b"\r\n", at + 2)
                value = head[at + 17 : line_end if line_end != -1 else len(head)]
                self._content_length = int(value.strip() or b"0")
        if self._content_length >= 0 and len(buf) >= self._head_len + self._content_length:
            del buf[: self._head_len + self._content_length]
            self._finish(self._status)

    def _finish(self, status: int) -> None:
        self._status = 0
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._status and self._content_length < 0:
            self._finish(self._status)  # read-until-close body
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError("the server closed the connection"))

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


async def connect(port: int, within: float = 5.0) -> VisitorConnection:
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(VisitorConnection, "127.0.0.1", port), within
    )
    return conn


async def open_many(port: int, count: int, batch: int = 500) -> tuple[list[VisitorConnection], int]:
    """Open ``count`` connections, ``batch`` at a time (the edge's listen backlog is 2048:
    a burst past it would wait out SYN retries); returns them and how many failed."""
    conns: list[VisitorConnection] = []
    failed = 0
    for start in range(0, count, batch):
        n = min(batch, count - start)
        results = await asyncio.gather(*(connect(port) for _ in range(n)), return_exceptions=True)
        for r in results:
            if isinstance(r, VisitorConnection):
                conns.append(r)
            else:
                failed += 1
    return conns, failed


async def fetch(port: int, host: str, path: str = "/bytes/16", within: float = 5.0) -> int:
    """One request on a fresh connection, closed after; the status, or 0 if there was no
    response (refused, dropped, timed out)."""
    conn: VisitorConnection | None = None
    try:
        conn = await connect(port, within)
        return await asyncio.wait_for(conn.request(host, path), within)
    except (OSError, TimeoutError):
        return 0
    finally:
        if conn is not None:
            conn.close()


async def keepalive_visitors(
    port: int, host: str, count: int, batch: int = 250
) -> tuple[list[VisitorConnection], dict[int, int]]:
    """``count`` connections that each complete one request and then stay open, idle, on
    keep-alive; returns the ones still open and a count of statuses (0: no response)."""
    kept: list[VisitorConnection] = []
    statuses: dict[int, int] = {}

    async def one() -> None:
        status = 0
        try:
            conn = await connect(port)
        except (OSError, TimeoutError):
            statuses[0] = statuses.get(0, 0) + 1
            return
        try:
            status = await asyncio.wait_for(conn.request(host), 10.0)
        except (OSError, TimeoutError):
            status = 0
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200 and not conn.closed:
            kept.append(conn)
        else:
            conn.close()

    for start in range(0, count, batch):
        await asyncio.gather(*(one() for _ in range(min(batch, count - start))))
    return kept, statuses


async def sequential_latency(
    port: int, host: str, count: int, path: str = "/bytes/1024"
) -> tuple[list[float], dict[int, int]]:
    """``count`` requests one after the other on one keep-alive connection (reconnecting if
    the server closes it); latencies in seconds, and the statuses seen."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    conn: VisitorConnection | None = None
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            status = 0
            try:
                if conn is None or conn.closed:
                    conn = await connect(port)
                status = await asyncio.wait_for(conn.request(host, path), 10.0)
            except (OSError, TimeoutError):
                conn = None
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        if conn is not None:
            conn.close()
    return latencies, statuses


async def port_accepts(port: int) -> bool:
    try:
        conn = await connect(port, within=1.0)
    except (OSError, TimeoutError):
        return False
    conn.close()
    return True


async def poll_until_serving(
    port: int,
    hosts: Iterable[str],
    since: float,
    deadline: float,
    *,
    concurrency: int = 64,
    round_gap: float = 0.1,
) -> dict[str, float]:
    """Request through every host, in rounds, until each has answered 200 once or
    ``deadline`` (monotonic) passes; seconds from ``since`` to each host's first 200.

    While the port refuses connections only one probe is made per round, so the poller
    does not compete for the CPU with the edge that is coming back up."""
    pending = list(hosts)
    served: dict[str, float] = {}
    gate = asyncio.Semaphore(concurrency)

    async def probe(host: str) -> None:
        async with gate:
            if await fetch(port, host, within=3.0) == 200:
                served[host] = time.monotonic() - since

    while pending and time.monotonic() < deadline:
        started = time.monotonic()
        if await port_accepts(port):
            await asyncio.gather(*(probe(h) for h in pending))
            pending = [h for h in pending if h not in served]
        await asyncio.sleep(max(0.0, round_gap - (time.monotonic() - started)))
    return served


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]
