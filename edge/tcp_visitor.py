"""Raw TCP tunnels: a visitor connection on a tunnel's public port is piped to one stream."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from edge.agent_session import StreamUnavailable
from edge.visitor_policy import OPEN
from relay.stream import SocketRelay

if TYPE_CHECKING:
    import asyncio

    from edge.server import Edge

log = logging.getLogger("burrow.edge.tcp")


class TcpVisitor(SocketRelay):
    __slots__ = ("edge", "port")

    def __init__(self, edge: Edge) -> None:
        super().__init__(None)
        self.edge = edge
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        # The listening port says which tunnel this is (one listener per tunnel port).
        self.port = self.transport.get_extra_info("sockname")[1]
        pool = self.edge.routes.lookup_port(self.port)
        tunnel = pool.pick() if pool is not None else None
        if tunnel is None:
            self.done = True
            self.transport.close()
            return
        peer = self.transport.get_extra_info("peername") or ("", 0)
        policy = tunnel.session.policy
        if policy is not OPEN and not policy.allows(peer[0]):
            # A raw TCP visitor has no page to read: the connection just ends.
            self.edge.metrics.refused("ip_denied")
            log.debug("tcp visitor %s on port %d: address not allowed", peer[0], self.port)
            self.done = True
            self.transport.close()
            return
        try:
            self.stream_id = tunnel.session.open_visitor_stream(
                tunnel, "tcp", (peer[0], peer[1]), self
            )
        except StreamUnavailable as exc:
            log.info("tcp visitor on port %d refused: %s", self.port, exc.detail)
            self.done = True
            self.transport.close()
            return
        self.session = tunnel.session
        self.edge.visitors.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.edge.visitors.discard(self)
