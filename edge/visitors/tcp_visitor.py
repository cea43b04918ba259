"""Raw TCP tunnels: a visitor connection on a tunnel's public port is piped to one stream."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from edge.pipeline import admit_connection
from relay.stream import SocketRelay

if TYPE_CHECKING:
    import asyncio

    from edge.context import EdgeContext

log = logging.getLogger("burrow.edge.tcp")


class TcpVisitor(SocketRelay):
    __slots__ = ("edge", "port")
    idle = False  # a raw pipe: closing it would cut what it carries

    def __init__(self, edge: EdgeContext) -> None:
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
        self.stream_id = admit_connection(self.edge, tunnel, "tcp", (peer[0], peer[1]), self)
        if not self.stream_id:
            self.done = True
            self.transport.close()
            return
        self.session = tunnel.session
        self.edge.visitors.add(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.edge.visitors.discard(self)
