"""Many Burrow agents in one process: the agent side of ``bench scale``.

    python -m bench.scale_swarm --edge-port P --origin-port P --token T --count 1000
                                [--prefix scale-] [--max-streams N] [--bind-timeout S]

Runs ``count`` ``agent.client.Agent`` objects in one event loop, each on a link of its own
with one HTTP tunnel named PREFIX0 .. PREFIX{count-1}, all to the same origin. Prints JSON
lines on stdout: ``{"event": "starting"}`` just before the agents start, ``{"event":
"bound"}`` once every tunnel is bound (or the bind timeout passed), and ``{"event":
"status"}`` on every SIGUSR1, with per-tunnel times of the latest bind (``time.monotonic()``
readings, comparable across processes) and how many tunnels came back under a URL other
than their first. SIGTERM stops every agent.

``--max-streams`` raises the stream limit of each agent's end of the link: the agent's
multiplexer refuses streams past 1024 whatever the edge allows (``Welcome.max_streams`` is
not applied on the agent side).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections import Counter

import uvloop

from agent.client import Agent
from agent.tunnels import TunnelSpec
from bench.scale_client import raise_fd_limit, rss_kib


def _say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class SwarmMember:
    """One agent and what the swarm has seen of its tunnel."""

    __slots__ = ("agent", "binds", "bound_at", "first_url", "serving", "swarm", "url_changes")

    def __init__(self, swarm: Swarm, server: tuple[str, int], token: str, spec: TunnelSpec) -> None:
        self.swarm = swarm
        self.agent = Agent(server, token, [spec], on_change=self.changed)
        self.serving = False
        self.bound_at: float | None = None  # the latest bind
        self.binds = 0
        self.first_url = ""
        self.url_changes = 0  # binds that came back under another URL than the first

    def changed(self, agent: Agent) -> None:
        link = agent.link
        if self.swarm.max_streams and link is not None:
            # Welcome is in and no stream can be open before Bound: safe to raise here.
            link.mux.allow_streams(self.swarm.max_streams)
        url = agent.tunnels[0].url
        if url and not self.serving:
            self.serving = True
            self.bound_at = time.monotonic()
            self.binds += 1
            if not self.first_url:
                self.first_url = url
            elif url != self.first_url:
                self.url_changes += 1
            self.swarm.bound(self)
        elif not url and self.serving:
            self.serving = False
            self.swarm.serving -= 1


class Swarm:
    def __init__(self, args: argparse.Namespace) -> None:
        self.max_streams: int = args.max_streams
        self.count: int = args.count
        self.serving = 0
        self.all_bound = asyncio.Event()
        self.failures: Counter[str] = Counter()  # agent tasks that ended with an error
        server = ("127.0.0.1", args.edge_port)
        self.members = [
            SwarmMember(
                self,
                server,
                args.token,
                TunnelSpec("http", "127.0.0.1", args.origin_port, name=name),
            )
            for name in (f"{args.prefix}{i}" for i in range(args.count))
        ]
        self.tasks: list[asyncio.Task[None]] = []

    def bound(self, member: SwarmMember) -> None:
        self.serving += 1
        if self.serving == self.count:
            self.all_bound.set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for member in self.members:
            task = loop.create_task(member.agent.run())
            task.add_done_callback(self._ended)
            self.tasks.append(task)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.failures[str(task.exception())[:120]] += 1

    def errors(self) -> dict[str, int]:
        """The most common last errors of agents whose tunnel is not served now."""
        seen: Counter[str] = Counter(self.failures)
        for m in self.members:
            if not m.serving:
                state = m.agent.tunnels[0]
                seen[(state.error or m.agent.last_error or "not bound yet")[:120]] += 1
        return dict(seen.most_common(5))

    def status(self) -> None:
        members = self.members
        _say(
            event="status",
            serving=self.serving,
            connected=sum(m.agent.connected for m in members),
            links=sum(len(m.agent.links) for m in members),
            reconnects=sum(m.agent.reconnects for m in members),
            binds=sum(m.binds for m in members),
            url_changes=sum(m.url_changes for m in members),
            bound_at=[m.bound_at for m in members],
            rss_kib=rss_kib(os.getpid()),
            errors=self.errors(),
        )

    async def stop(self) -> None:
        for m in self.members:
            m.agent.stop()
        if self.tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 5.0)


async def _run(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _say(event="starting", rss_kib=rss_kib(os.getpid()), at=time.monotonic())
    swarm = Swarm(args)
    t0 = time.monotonic()
    swarm.start()
    loop.add_signal_handler(signal.SIGUSR1, swarm.status)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(swarm.all_bound.wait(), args.bind_timeout)
    times = [m.bound_at - t0 for m in swarm.members if m.bound_at is not None]
    _say(
        event="bound",
        bound=swarm.serving,
        count=args.count,
        started_at=t0,
        seconds=max(times, default=None),
        first=min(times, default=None),
        median=sorted(times)[len(times) // 2] if times else None,
        rss_kib=rss_kib(os.getpid()),
        errors=swarm.errors(),
    )
    await stop.wait()
    await swarm.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale_swarm")
    p.add_argument("--edge-port", type=int, required=True)
    p.add_argument("--origin-port", type=int, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--prefix", default="scale-")
    p.add_argument("--max-streams", type=int, default=0, help="per agent link (0: the default)")
    p.add_argument("--bind-timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    raise_fd_limit()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s swarm %(levelname)s %(name)s %(message)s"
    )
    try:
        return uvloop.run(_run(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
