"""Telling control which tunnels this edge serves: ``TunnelReporter``.

Reports go to ``EDGE_REPORTS_STREAM``: the whole list (``EdgeState``) at start and every
``interval`` seconds, ``TunnelUp`` / ``TunnelDown`` as tunnels come and go, ``EdgeStopped`` at
shutdown. They are best effort by design: the edge's callbacks only queue a report, one task
sends them, and a report the bus cannot take is dropped, because the next ``EdgeState``
replaces whatever control knew of this edge. So a slow or absent bus never delays a bind, a
visitor or the event loop, and an outage is logged once, not per report.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from bus.base import EDGE_REPORTS_STREAM, Bus
from bus.events import (
    EdgeState,
    EdgeStopped,
    LiveTunnel,
    OrgUsage,
    TunnelDown,
    TunnelUp,
    encode,
)

if TYPE_CHECKING:
    from edge.link.agent_session import AgentSession
    from edge.routing.table import Tunnel
    from edge.server import Edge

log = logging.getLogger("burrow.edge.reports")


def _version() -> str:
    try:
        return importlib.metadata.version("burrow-tunnel")
    except importlib.metadata.PackageNotFoundError:
        return ""


EDGE_VERSION = _version()
MAX_QUEUED = 10_000  # past this the queue is dropped for a full EdgeState


def tunnel_key(tunnel: Tunnel) -> str:
    return f"{tunnel.session.session_id}/{tunnel.tunnel_id}"


def live_tunnel(edge: Edge, tunnel: Tunnel) -> LiveTunnel:
    config = edge.config
    session = tunnel.session
    identity = session.identity
    if tunnel.protocol == "tcp":
        url = f"tcp://{config.base_domain}:{tunnel.port}"
    elif tunnel.protocol == "tls":
        url = config.url_for(tunnel.hostname, "tls")
    else:
        url = config.urls_for(tunnel.hostname)[0]
    return LiveTunnel(
        key=tunnel_key(tunnel),
        org=tunnel.account,
        token_id=identity.token_id if identity is not None else "",
        protocol=tunnel.protocol,
        url=url,
        hostname=tunnel.hostname,
        port=tunnel.port,
        session_id=session.session_id,
        instance_id=tunnel.instance_id,
        agent_version=session.agent_version,
        client_addr=session.peer,
        local=tunnel.local,
        started=tunnel.created,
    )


class TunnelReporter:
    def __init__(
        self,
        edge: Edge,
        bus: Bus,
        interval: float = 10.0,
        *,
        send_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.edge = edge
        self.bus = bus
        self.interval = interval
        self.send_timeout = send_timeout
        self._clock = clock
        self._queue: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._state_due = True
        self._task: asyncio.Task[None] | None = None
        self.bus_down = False
        self.closed = False
        self.sent = 0  # reports the bus took
        # Usage already reported, per live link: (bytes, streams opened); and what links
        # that closed since the last EdgeState carried past that, per org.
        self._counted: dict[str, tuple[int, int]] = {}
        self._closed_usage: dict[str, list[int]] = {}

    def start(self) -> None:
        """Hook into the edge and send the first ``EdgeState`` (in the background)."""
        self.edge.on_tunnel_up = self.tunnel_up
        self.edge.on_tunnel_down = self.tunnel_down
        self.edge.on_session_closed = self.session_closed
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop reporting and say the edge stopped (bounded by ``send_timeout``)."""
        if self.closed:
            return
        self.closed = True
        edge = self.edge
        if edge.on_tunnel_up == self.tunnel_up:
            edge.on_tunnel_up = None
        if edge.on_tunnel_down == self.tunnel_down:
            edge.on_tunnel_down = None
        if edge.on_session_closed == self.session_closed:
            edge.on_session_closed = None
        task = self._task
        self._task = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._queue.clear()
        await self._send(
            encode(EdgeStopped(edge_id=edge.config.edge_id, at=self._clock())), full=True
        )

    # -- from the edge (synchronous, never raise) -----------------------------------------

    def tunnel_up(self, tunnel: Tunnel) -> None:
        if self.bus_down:
            return  # the EdgeState after the outage carries it
        report = TunnelUp(
            edge_id=self.edge.config.edge_id,
            at=self._clock(),
            tunnel=live_tunnel(self.edge, tunnel),
        )
        self._enqueue(encode(report))

    def tunnel_down(self, tunnel: Tunnel) -> None:
        if self.bus_down:
            return
        report = TunnelDown(
            edge_id=self.edge.config.edge_id, at=self._clock(), key=tunnel_key(tunnel)
        )
        self._enqueue(encode(report))

    def session_closed(self, session: AgentSession) -> None:
        """Keep what a closing link carried since it was last counted, for the next state."""
        if session.identity is None:
            return
        done_bytes, done_streams = self._counted.pop(session.session_id, (0, 0))
        usage = self._closed_usage.setdefault(session.identity.account, [0, 0])
        usage[0] += session.bytes_in + session.bytes_out - done_bytes
        usage[1] += session.mux.streams_opened - done_streams

    def usage(self) -> list[OrgUsage]:
        """Bytes and visitor connections per org since the previous call. A state the bus
        does not take loses its share: usage is never counted twice, but may be missed."""
        totals = self._closed_usage
        self._closed_usage = {}
        counted: dict[str, tuple[int, int]] = {}
        for session in self.edge.sessions:
            if session.identity is None:
                continue
            now = (session.bytes_in + session.bytes_out, session.mux.streams_opened)
            done = self._counted.get(session.session_id, (0, 0))
            counted[session.session_id] = now
            usage = totals.setdefault(session.identity.account, [0, 0])
            usage[0] += now[0] - done[0]
            usage[1] += now[1] - done[1]
        self._counted = counted
        return [
            OrgUsage(org=org, bytes=b, connections=c) for org, (b, c) in totals.items() if b or c
        ]

    def _enqueue(self, payload: bytes) -> None:
        if len(self._queue) >= MAX_QUEUED:
            # The bus is far behind: one EdgeState says it all.
            self._queue.clear()
            self._state_due = True
        else:
            self._queue.append(payload)
        self._wake.set()

    # -- sending --------------------------------------------------------------------------

    def state(self) -> EdgeState:
        edge = self.edge
        tunnels = [
            live_tunnel(edge, tunnel)
            for session in edge.sessions
            for tunnel in session.tunnels.values()
        ]
        return EdgeState(
            edge_id=edge.config.edge_id,
            at=self._clock(),
            started=edge.started,
            tunnels=tunnels,
            version=EDGE_VERSION,
            draining=edge.draining,
            usage=self.usage(),
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_state = loop.time()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that
        # lands as the inner await finishes, and close() would wait for ever.
        while not self.closed:
            if self._state_due or loop.time() >= next_state:
                self._state_due = False
                # The state is taken now, so everything queued before is already in it.
                self._queue.clear()
                await self._send(encode(self.state()), full=True)
                next_state = loop.time() + self.interval
            queue = self._queue
            while queue and not self._state_due:
                if not await self._send(queue.popleft()):
                    queue.clear()  # dropped: the next EdgeState heals control's view
            self._wake.clear()
            if self._state_due:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_state - loop.time())):
                    await self._wake.wait()

    async def _send(self, payload: bytes, *, full: bool = False) -> bool:
        try:
            async with asyncio.timeout(self.send_timeout):
                await self.bus.append(EDGE_REPORTS_STREAM, payload)
        except Exception as exc:
            if not self.bus_down:
                self.bus_down = True
                log.warning(
                    "tunnel reports are not reaching the bus (%s); dropping them until it is back",
                    str(exc) or type(exc).__name__,
                )
            return False
        self.sent += 1
        if self.bus_down:
            self.bus_down = False
            # What changed meanwhile was dropped; a full state (this one, or the next) heals.
            self._state_due = not full
            log.info("tunnel reports reach the bus again")
        return True
