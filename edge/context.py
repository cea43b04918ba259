"""What a visitor connection may see of its edge: ``EdgeContext``, built once per edge.

Visitor protocols (HTTP/1.1, HTTP/2, TLS, TCP) are handed this object, not ``edge.server.Edge``:
the limits, the clock, the metrics, the route table, the certificate store, whether the edge is
draining, the registry of open visitor connections, the special request paths, and one way to
hand a connection on to an agent session. So a visitor can be built in a unit test with a fake
transport and a context, and what a visitor reads of the edge is listed here in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from certs.store import CertStore
    from edge.admin.metrics import EdgeMetrics
    from edge.config import EdgeConfig, Limits
    from edge.pipeline import SpecialPaths
    from edge.routing.table import RouteTable


class Visitor(Protocol):
    """One open visitor connection, as the edge's shutdown sees it."""

    @property
    def transport(self) -> asyncio.Transport | None: ...

    @property
    def idle(self) -> bool:
        """Nothing in flight: closing it now loses no request (a keep-alive connection
        between requests)."""
        ...

    def close(self) -> None: ...


class VisitorRegistry:
    """The edge's open visitor connections: added at connection_made, discarded when lost."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: set[Visitor] = set()

    def add(self, visitor: Visitor) -> None:
        self._open.add(visitor)

    def discard(self, visitor: Visitor) -> None:
        self._open.discard(visitor)

    def __len__(self) -> int:
        return len(self._open)

    def __bool__(self) -> bool:
        return bool(self._open)

    def __iter__(self) -> Iterator[Visitor]:
        return iter(list(self._open))

    def close_idle(self) -> int:
        """Close every idle connection (they have nothing to finish); how many."""
        idle = [visitor for visitor in self._open if visitor.idle]
        for visitor in idle:
            visitor.close()
        return len(idle)

    def abort_all(self) -> None:
        """Cut every connection still open, without waiting for its buffers."""
        for visitor in list(self._open):
            transport = visitor.transport
            if transport is not None:
                transport.abort()


class EdgeContext:
    """The narrow view of one edge its visitor connections get."""

    __slots__ = (
        "_loop",
        "certs",
        "config",
        "draining",
        "limits",
        "metrics",
        "open_agent_link",
        "routes",
        "special_paths",
        "visitors",
    )

    def __init__(
        self,
        config: EdgeConfig,
        metrics: EdgeMetrics,
        routes: RouteTable,
        certs: CertStore,
        special_paths: SpecialPaths,
        open_agent_link: Callable[[], asyncio.Protocol],
    ) -> None:
        self.config = config
        self.limits: Limits = config.limits  # fixed for the edge's life
        self.metrics = metrics
        self.routes = routes
        self.certs = certs
        self.special_paths = special_paths
        # A new agent session for a connection that turned out to be an agent link (ALPN
        # burrow/1 on the TLS port, or a WebSocket upgrade to the link path).
        self.open_agent_link = open_agent_link
        self.visitors = VisitorRegistry()
        self.draining = False  # set once, when the edge starts to shut down
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:  # the first visitor of an edge built outside its loop
            self._loop = loop = asyncio.get_running_loop()
        return loop

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
