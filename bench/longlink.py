"""``python -m bench longlink``: downloads through a tunnel whose agent is far from the edge.

One tunnel link crosses a delaying relay (``bench.delay_link``: a round trip and a rate
cap, in user space, since the kernel here has no netem) at each round trip asked for (0,
25, 50 and 200 ms by default); the visitor and the local service stay next to their ends,
as a user far from the edge has them:

    burrow   download client -> edge ~~relay~~ agent -> origin          (bench.stack)
    ssh -R   download client -> sshd ~~relay~~ ssh -> origin            (bench.peer_ssh, -N)

Each row is one download of ``--megabytes`` (200 MB) from the origin, over one stream, and
the same bytes split over ``--streams`` (10) downloads at once; MB/s is the bytes over the
time from the first request to the last byte, so a window that starts small and grows is
charged for its growth. The last column is Burrow's MB/s over ssh's on the same delay and
stream count. The origin is Burrow's stack's, for both; the relay has the same settings for
both. ssh's link is encrypted and Burrow's bench link is not (the agent link's TLS is the
operator's to turn on), which costs ssh CPU, not round trips.

When ssh is not installed (``python -m bench tools --install``) or does not start, its
cells say why and the Burrow rows are still measured. Every child process is stopped on
the way out, on errors and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

from bench.environment import describe, headline
from bench.peer_process import PeerUnavailable
from bench.peer_ssh import SshReverseTunnel
from bench.stack import (
    BurrowStack,
    Child,
    StackError,
    SuiteLogs,
    python_module,
    ready_port,
)

DEFAULT_DELAYS_MS = (0.0, 25.0, 50.0, 200.0)
TARGET_RATIO = 1.5  # Burrow's single-stream MB/s over ssh's, at every delay
_HEAD_LIMIT = 64 * 1024


class DownloadError(Exception):
    """A download did not complete: the one line says what went wrong."""


@dataclass(slots=True)
class LongLinkSettings:
    delays_ms: tuple[float, ...] = DEFAULT_DELAYS_MS
    megabytes: float = 200.0
    streams: int = 10  # the many-stream row; the other is one stream
    mbit: float = 1000.0  # the relay's rate each way
    queue_kib: int = 4096  # the relay's bottleneck queue
    timeout: float = 300.0  # one download's bound
    ssh: bool = True
    start_timeout: float = 20.0

    def relay_args(self, rtt_ms: float) -> tuple[str, ...]:
        return (
            "--rtt-ms",
            f"{rtt_ms:g}",
            "--mbit",
            f"{self.mbit:g}",
            "--queue-kib",
            str(self.queue_kib),
        )

    @property
    def stream_counts(self) -> tuple[int, ...]:
        return (1,) if self.streams <= 1 else (1, self.streams)


@dataclass(slots=True)
class Cell:
    """One download figure, or why there is none."""

    megabytes_per_second: float = 0.0
    seconds: float = 0.0
    error: str = ""

    def to_json(self) -> dict[str, object]:
        if self.error:
            return {"error": self.error}
        return {"megabytes_per_second": self.megabytes_per_second, "seconds": self.seconds}


@dataclass(slots=True)
class Row:
    rtt_ms: float
    streams: int
    burrow: Cell
    ssh: Cell

    @property
    def ratio(self) -> float | None:
        if self.burrow.error or self.ssh.error or not self.ssh.megabytes_per_second:
            return None
        return self.burrow.megabytes_per_second / self.ssh.megabytes_per_second


@dataclass(slots=True)
class LongLinkRun:
    settings: LongLinkSettings
    environment: dict[str, object]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        s = self.settings
        return {
            "bench": "longlink",
            "environment": self.environment,
            "megabytes": s.megabytes,
            "mbit": s.mbit,
            "queue_kib": s.queue_kib,
            "rows": [
                {
                    "rtt_ms": r.rtt_ms,
                    "streams": r.streams,
                    "burrow": r.burrow.to_json(),
                    "ssh": r.ssh.to_json(),
                    "ratio": r.ratio,
                }
                for r in self.rows
            ],
            "notes": self.notes,
        }


# -- the download client ------------------------------------------------------------------


class _Download(asyncio.Protocol):
    """One GET whose body is counted, not kept; ``done`` gets the body's size."""

    def __init__(self, request: bytes, done: asyncio.Future[int]) -> None:
        self.request = request
        self.done = done
        self.head = bytearray()
        self.left = -1  # body bytes still to come; -1 while the head is read
        self.got = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.left < 0:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > _HEAD_LIMIT:
                    self._fail("the response head never ended")
                return
            head = bytes(self.head[:end]).decode("latin-1")
            status = head.split(" ", 2)[1] if head.count(" ") >= 1 else "?"
            if status != "200":
                self._fail(f"the response was {head.splitlines()[0]!r}, not 200")
                return
            length = [ln for ln in head.lower().split("\r\n") if ln.startswith("content-length:")]
            if not length:
                self._fail("the response had no Content-Length")
                return
            body = len(self.head) - end - 4
            self.left = int(length[0].split(":", 1)[1]) - body
            self.got = body
            self.head.clear()
        else:
            self.left -= len(data)
            self.got += len(data)
        if self.left <= 0 and not self.done.done():
            self.done.set_result(self.got)
            if self.transport is not None:
                self.transport.close()

    def _fail(self, why: str) -> None:
        if not self.done.done():
            self.done.set_exception(DownloadError(why))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(
                DownloadError(f"the connection closed after {self.got} bytes of the body")
            )


async def _download(port: int, host: str, size: int, streams: int, within: float) -> Cell:
    loop = asyncio.get_running_loop()
    each = size // streams
    request = (
        f"GET /bytes/{each} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: burrow-bench\r\n\r\n"
    ).encode("latin-1")
    started = time.perf_counter()
    futures: list[asyncio.Future[int]] = []
    for _ in range(streams):
        done: asyncio.Future[int] = loop.create_future()
        futures.append(done)
        await loop.create_connection(
            lambda done=done: _Download(request, done),  # type: ignore[misc]
            "127.0.0.1",
            port,
        )
    try:
        sizes = await asyncio.wait_for(asyncio.gather(*futures), within)
    except TimeoutError:
        return Cell(error=f"not done within {within:g}s")
    except DownloadError as exc:
        return Cell(error=str(exc))
    seconds = time.perf_counter() - started
    total = sum(sizes)
    if total != each * streams:
        return Cell(error=f"{total} bytes arrived of {each * streams}")
    return Cell(megabytes_per_second=total / seconds / 1e6, seconds=seconds)


def download(port: int, host: str, size: int, streams: int, timeout: float) -> Cell:
    """Download ``size`` bytes split over ``streams`` connections at once, in this process
    (it does nothing else meanwhile; the tunnels are processes of their own)."""
    try:
        return uvloop.run(_download(port, host, size, streams, timeout))
    except OSError as exc:
        return Cell(error=f"cannot connect to 127.0.0.1:{port}: {exc.strerror or exc}")


# -- the run ------------------------------------------------------------------------------


def _measure(port: int, host: str, settings: LongLinkSettings) -> dict[int, Cell]:
    size = int(settings.megabytes * 1e6)
    warm = download(port, host, 1024, 1, settings.timeout)  # the tunnel works at all
    if warm.error:
        return {
            n: Cell(error=f"the tunnel does not answer: {warm.error}")
            for n in settings.stream_counts
        }
    return {n: download(port, host, size, n, settings.timeout) for n in settings.stream_counts}


def _measure_ssh(
    settings: LongLinkSettings, rtt_ms: float, origin_port: int, log_dir: Path
) -> dict[int, Cell]:
    relays: list[Child] = []

    def via_relay(sshd_port: int) -> int:
        relay = Child(
            "ssh link",
            python_module(
                "bench.delay_link", "--target-port", str(sshd_port), *settings.relay_args(rtt_ms)
            ),
            log_dir / f"ssh-link-{rtt_ms:g}ms.log",
        )
        relays.append(relay)
        return ready_port(relay.read_ready(settings.start_timeout), "port")

    tunnel = SshReverseTunnel(
        pty=False, log_dir=log_dir, start_timeout=settings.start_timeout, link=via_relay
    )
    try:
        missing = tunnel.missing_tools()
        if missing:
            raise PeerUnavailable(
                f"not installed: {', '.join(missing)} (python -m bench tools --install)"
            )
        port, host = tunnel.start(origin_port)
        return _measure(port, host, settings)
    except (PeerUnavailable, StackError) as exc:
        return {n: Cell(error=str(exc).splitlines()[0]) for n in settings.stream_counts}
    finally:
        tunnel.stop()
        for relay in relays:
            relay.stop()


def run_longlink(settings: LongLinkSettings, log_dir: Path) -> LongLinkRun:
    run = LongLinkRun(settings, describe())
    for rtt_ms in settings.delays_ms:
        stack_logs = log_dir / f"burrow-{rtt_ms:g}ms"
        stack_logs.mkdir(parents=True, exist_ok=True)
        with BurrowStack(
            stack_logs, settings.start_timeout, link_delay=settings.relay_args(rtt_ms)
        ) as stack:
            burrow = _measure(stack.edge_http_port, stack.tunnel_host, settings)
            if settings.ssh:
                ssh = _measure_ssh(settings, rtt_ms, stack.origin_port, log_dir)
            else:
                ssh = {n: Cell(error="not run (--no-ssh)") for n in settings.stream_counts}
        for n in settings.stream_counts:
            run.rows.append(Row(rtt_ms, n, burrow[n], ssh[n]))
    return run


def target_met(run: LongLinkRun) -> tuple[bool, list[str]]:
    """Whether Burrow's single stream reached ``TARGET_RATIO`` times ssh's at every delay;
    the delays where it did not (or where there was nothing to compare)."""
    missed = [
        f"{r.rtt_ms:g} ms" + ("" if r.ratio is not None else " (no figure)")
        for r in run.rows
        if r.streams == 1 and (r.ratio is None or r.ratio < TARGET_RATIO)
    ]
    return not missed, missed


def _cell(cell: Cell) -> str:
    return f"{cell.megabytes_per_second:>11.1f}" if not cell.error else f"{'-':>11}"


def format_longlink_report(run: LongLinkRun) -> str:
    s = run.settings
    lines = [
        f"bench longlink: {s.megabytes:g} MB downloads; the agent's link (and ssh's) through a "
        f"relay adding the round trip, {s.mbit:g} Mbit/s each way, {s.queue_kib} KiB queue",
        headline(run.environment),
        "",
        f"{'RTT':>7}  {'streams':>7}  {'burrow MB/s':>11}  {'ssh -R MB/s':>11}  burrow/ssh",
    ]
    errors: list[str] = []
    for r in run.rows:
        ratio = f"{r.ratio:>9.2f}x" if r.ratio is not None else f"{'-':>10}"
        lines.append(
            f"{r.rtt_ms:>4g} ms  {r.streams:>7}  {_cell(r.burrow)}  {_cell(r.ssh)}  {ratio}"
        )
        for name, cell in (("burrow", r.burrow), ("ssh -R", r.ssh)):
            if cell.error:
                errors.append(f"  {name} at {r.rtt_ms:g} ms, {r.streams} streams: {cell.error}")
    met, missed = target_met(run)
    lines.append("")
    lines.append(
        f"target (burrow >= {TARGET_RATIO:g}x ssh -R, one stream, every delay): "
        + ("met" if met else "NOT met at " + ", ".join(missed))
    )
    if errors:
        lines.append("no figure:")
        lines.extend(dict.fromkeys(errors))
    lines.extend(run.notes)
    return "\n".join(lines)


def add_longlink_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "longlink",
        help="downloads through a tunnel whose agent link has a long round trip, vs ssh -R",
        description="Put a delaying, rate-capped relay between the agent and the edge (and "
        "between ssh and sshd) and time one large download, then the same bytes over many "
        "streams, at each round trip.",
    )
    p.add_argument(
        "--rtt-ms",
        type=float,
        nargs="+",
        metavar="MS",
        help="round trips to measure (default 0 25 50 200)",
    )
    p.add_argument("--megabytes", type=float, help="MB per download (default 200; quick 20)")
    p.add_argument("--streams", type=int, default=10, help="the many-stream row (default 10)")
    p.add_argument("--mbit", type=float, default=1000.0, help="relay rate each way (1000)")
    p.add_argument("--queue-kib", type=int, default=4096, help="relay queue (4096 KiB)")
    p.add_argument("--no-ssh", action="store_true", help="measure Burrow only")
    p.add_argument("--quick", action="store_true", help="20 MB at 0 and 50 ms")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    p.add_argument("--logs", type=Path, metavar="DIR", help="keep component logs here")


def run_longlink_command(args: argparse.Namespace) -> int:
    settings = LongLinkSettings(
        streams=args.streams, mbit=args.mbit, queue_kib=args.queue_kib, ssh=not args.no_ssh
    )
    if args.quick:
        settings.delays_ms = (0.0, 50.0)
        settings.megabytes = 20.0
    if args.rtt_ms:
        settings.delays_ms = tuple(args.rtt_ms)
    if args.megabytes is not None:
        settings.megabytes = args.megabytes
    if (
        min(settings.delays_ms) < 0
        or settings.megabytes <= 0
        or settings.streams < 1
        or settings.mbit <= 0
        or settings.queue_kib <= 0
    ):
        print(
            "bench longlink: --rtt-ms must be >= 0; --megabytes, --streams, --mbit and "
            "--queue-kib > 0",
            file=sys.stderr,
        )
        return 2
    logs = SuiteLogs(args.logs, "burrow-bench-longlink-")
    try:
        run = run_longlink(settings, logs.path)
    except StackError as exc:
        print(f"bench longlink: {exc}\n(logs kept in {logs.path})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nbench: interrupted; every child process was stopped (logs in {logs.path})")
        return 130
    print(format_longlink_report(run), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(run.to_json(), indent=2) + "\n")
        print(f"results written to {args.json}")
    logs.finish(troubled=any(r.burrow.error or (settings.ssh and r.ssh.error) for r in run.rows))
    return 0
