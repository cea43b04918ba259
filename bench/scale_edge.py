"""The edge for ``bench scale``, a process of its own, with the knobs the scale runs need.

    python -m bench.scale_edge --token T [--http-port P] [--agent-port P]
                               [--max-streams N] [--drain S] [--tracemalloc]

Unlike ``bench.component edge`` it can listen on given ports (an edge restarted on the ports
its agents know), raise the per-agent stream limit, and report on itself: it prints one JSON
line when it listens (``{"http_port", "agent_port", "listening_at"}``, the last a
``time.monotonic()`` reading, comparable across processes) and one more on every SIGUSR1:
open visitor connections, agent links, routed hostnames, open tunnel streams and VmRSS. With
``--tracemalloc`` the first SIGUSR1 also takes a baseline snapshot and every later one adds
the allocation sites that grew most since it (``"growth"``). SIGTERM drains and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import signal
import socket
import sys
import time
import tracemalloc
from typing import TYPE_CHECKING

import uvloop

from bench.scale_client import raise_fd_limit, rss_kib

if TYPE_CHECKING:
    from edge.server import Edge

_TOP = 12


def _say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _ports_free(ports: list[int]) -> bool:
    """Whether every (non-zero) port can be listened on now; SO_REUSEADDR as the edge sets
    it, so connections of an earlier edge left in TIME_WAIT do not count."""
    for port in ports:
        if not port:
            continue
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return False
                raise
    return True


class EdgeReporter:
    """Answers SIGUSR1 with a status line (and allocation growth under tracemalloc)."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.baseline: tracemalloc.Snapshot | None = None

    def report(self) -> None:
        edge = self.edge
        fields: dict[str, object] = {
            "visitors": len(edge.visitors),
            "sessions": len(edge.sessions),
            "hosts": len(edge.routes.hosts),
            "streams": sum(s.mux.stream_count for s in edge.sessions),
        }
        tracing = tracemalloc.is_tracing()
        if tracing and self.baseline is None:
            # The baseline snapshot stays alive: count it in the "before" RSS, not in the
            # growth the next report measures.
            fields.update(self._growth())
        fields["rss_kib"] = rss_kib(os.getpid())
        if tracing and "traced_kib" not in fields:
            fields.update(self._growth())
        _say(**fields)

    def _growth(self) -> dict[str, object]:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        if self.baseline is None:
            self.baseline = snapshot
            return {"traced_kib": tracemalloc.get_traced_memory()[0] // 1024}
        diff = snapshot.compare_to(self.baseline, "lineno")
        diff.sort(key=lambda d: d.size_diff, reverse=True)
        growth = [
            {
                "where": f"{d.traceback[0].filename}:{d.traceback[0].lineno}",
                "kib": round(d.size_diff / 1024, 1),
                "blocks": d.count_diff,
            }
            for d in diff[:_TOP]
        ]
        return {
            "traced_kib": tracemalloc.get_traced_memory()[0] // 1024,
            "growth_kib": round(sum(d.size_diff for d in diff) / 1024, 1),
            "growth": growth,
        }


async def _serve(args: argparse.Namespace) -> int:
    from edge.config import EdgeConfig, Limits
    from edge.link.auth import StaticTokens
    from edge.server import Edge

    limits = Limits()
    if args.max_streams:
        limits.max_streams_per_agent = args.max_streams
    deadline = time.monotonic() + args.bind_timeout
    # A restarted edge comes back on the ports of the one before; wait until they are free
    # rather than failing (Edge.start does not close its HTTP listener if the agent port
    # then fails to open, so a retry of start() itself would find its own port taken).
    while not _ports_free([args.http_port, args.agent_port]):
        if time.monotonic() > deadline:
            print(f"scale_edge: ports still in use after {args.bind_timeout:g}s", file=sys.stderr)
            return 1
        await asyncio.sleep(0.02)
    config = EdgeConfig(
        http_host="127.0.0.1",
        http_port=args.http_port,
        agent_host="127.0.0.1",
        agent_port=args.agent_port,
        edge_id="scale",
        limits=limits,
    )
    edge = Edge(config, StaticTokens({args.token: "scale"}))
    await edge.start()
    loop = asyncio.get_running_loop()
    reporter = EdgeReporter(edge)
    loop.add_signal_handler(signal.SIGUSR1, reporter.report)
    _say(
        http_port=config.http_port,
        agent_port=config.agent_port,
        listening_at=time.monotonic(),
        max_streams_per_agent=limits.max_streams_per_agent,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await edge.shutdown(drain=args.drain)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale_edge")
    p.add_argument("--token", required=True)
    p.add_argument("--http-port", type=int, default=0)
    p.add_argument("--agent-port", type=int, default=0)
    p.add_argument("--max-streams", type=int, default=0, help="per agent (0: the default)")
    p.add_argument("--drain", type=float, default=1.0, help="seconds to drain on SIGTERM")
    p.add_argument("--bind-timeout", type=float, default=10.0)
    p.add_argument("--tracemalloc", action="store_true", help="trace allocations (slow)")
    args = p.parse_args(argv)
    raise_fd_limit()
    if args.tracemalloc:
        tracemalloc.start(1)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s edge %(levelname)s %(name)s %(message)s"
    )
    try:
        return uvloop.run(_serve(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
