"""The edge's end of one agent link: handshake, tunnel binds, visitor streams."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from edge.link.address_streams import AddressStreams
from edge.link.auth import AuthError, Identity
from edge.routing.table import Tunnel
from edge.visitors.visitor_policy import OPEN, VisitorPolicy
from proto.frames import PROTOCOL_VERSION
from proto.messages import (
    Bind,
    GoAway,
    Hello,
    Message,
    Notice,
    Refused,
    StreamOpen,
    Unbind,
    Welcome,
)
from proto.mux import Role
from relay.session import LinkSession, StreamSink, new_id

if TYPE_CHECKING:
    import asyncio

    from edge.pipeline import ConnectFilter, RequestFilter
    from edge.server import Edge

log = logging.getLogger("burrow.edge.agent")


class StreamUnavailable(Exception):
    """A visitor connection cannot get a stream; ``status`` is what the visitor sees."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class AgentInstances:
    """Which agent instances (``Hello.instance_id``) hold links to this edge and which left
    lately; a Hello from one of them is a reconnect, whether its old link is still open (the
    edge has not noticed it die yet) or already closed. Bounded: an instance gone for longer
    than ``memory`` seconds, or the oldest past ``limit`` gone ones, are forgotten."""

    __slots__ = ("_left", "_live", "limit", "memory")

    def __init__(self, memory: float, limit: int = 100_000) -> None:
        self.memory = memory
        self.limit = limit
        self._live: dict[str, int] = {}  # instance -> open links
        self._left: dict[str, float] = {}  # instance -> when its last link closed; oldest first

    def connected(self, instance: str) -> bool:
        """An instance was welcomed on a new link: True if that is a reconnect."""
        again = instance in self._live or self._left.pop(instance, None) is not None
        self._live[instance] = self._live.get(instance, 0) + 1
        return again

    def disconnected(self, instance: str, now: float) -> None:
        links = self._live.pop(instance, 0) - 1
        if links > 0:
            self._live[instance] = links
            return
        left = self._left
        left.pop(instance, None)  # re-inserted below, so the dict stays ordered by time
        left[instance] = now
        horizon = now - self.memory
        while left:
            oldest = next(iter(left))
            if left[oldest] > horizon and len(left) <= self.limit:
                break
            del left[oldest]


class AgentSession(LinkSession):
    def __init__(self, edge: Edge) -> None:
        config = edge.config
        super().__init__(
            Role.EDGE,
            heartbeat=config.heartbeat,
            misses=config.heartbeat_misses,
            max_streams=config.limits.max_streams_per_agent,
            budget=config.limits.link_memory_budget,
        )
        self.edge = edge
        limits = config.limits
        most = limits.max_streams_per_agent
        # Never fewer than a browser's connections to one host (six), and some to spare.
        share = max(int(most * limits.address_stream_share), min(most, 8))
        self.address_streams = AddressStreams(share)  # given back by OriginExchange
        self.identity: Identity | None = None
        # What visitors of this session's tunnels must pass; set from the token at Hello.
        self.policy: VisitorPolicy = OPEN
        # The request and connect filters of this session's tunnels (``edge.pipeline``),
        # the visitor policy first; empty for a token that asks for nothing.
        self.request_filters: tuple[RequestFilter, ...] = ()
        self.connect_filters: tuple[ConnectFilter, ...] = ()
        self.session_id = new_id()
        self.instance_id = ""
        self.agent_version = ""
        self.tunnels: dict[int, Tunnel] = {}
        self.started = time.time()
        self.going_away = False
        self.welcomed = False
        # The welcomed links of this account on this edge (this one included) and how many
        # visitor streams they may have open together; set by ``Edge.agent_welcomed``.
        self.org_peers: list[AgentSession] = []
        self.org_stream_limit = 0
        self._next_tunnel_id = 1
        self._handshake: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.edge.sessions.add(self)
        self._handshake = self.edge.loop.call_later(
            self.edge.config.limits.handshake_timeout, self._handshake_expired
        )

    def _handshake_expired(self) -> None:
        if self.identity is None and not self.closed:
            log.info("agent link %s sent no Hello in time: closing", self.peer)
            self.abort()

    def on_closed(self, exc: Exception | None) -> None:
        if self._handshake is not None:
            self._handshake.cancel()
        self.edge.session_closed(self)
        if self.identity is not None:
            log.info(
                "agent %s (%s) disconnected after %.0fs",
                self.identity.account,
                self.peer,
                time.time() - self.started,
            )

    # -- messages -------------------------------------------------------------------------

    def on_message(self, message: Message) -> None:
        if self.identity is None:
            if type(message) is Hello:
                self._on_hello(message)
            else:
                self.protocol_failed(f"{type(message).__name__} before Hello")
            return
        if type(message) is Bind:
            self.edge.bind(self, message)
        elif type(message) is Unbind:
            tunnel = self.tunnels.pop(message.tunnel_id, None)
            if tunnel is not None:
                self.edge.release(tunnel)
        elif type(message) is Notice:
            log.info("agent %s says: %s", self.peer, message.message)
        else:
            self.protocol_failed(f"unexpected {type(message).__name__} from an agent")

    def _on_hello(self, hello: Hello) -> None:
        if self._handshake is not None:
            self._handshake.cancel()
            self._handshake = None
        if PROTOCOL_VERSION not in hello.versions:
            self._refuse(
                "version",
                f"this edge speaks protocol version {PROTOCOL_VERSION}; "
                "upgrade or downgrade burrow to match",
            )
            return
        try:
            identity = self.edge.authenticator.authenticate(hello.token)
        except AuthError as exc:
            log.info("agent link %s refused: %s", self.peer, exc)
            self._refuse("auth", str(exc))
            return
        try:
            self.policy = VisitorPolicy.from_identity(identity)
            from edge.pipeline import filters_for  # once per link; the pipeline imports us

            self.request_filters, self.connect_filters = filters_for(self.policy)
        except ValueError as exc:
            log.warning("agent link %s refused: its token's visitor policy: %s", self.peer, exc)
            self._refuse(
                "auth", f"the authtoken's visitor policy is not valid ({exc}); ask your operator"
            )
            return
        self.identity = identity
        self.instance_id = hello.instance_id[:64]
        self.agent_version = hello.agent_version[:32]
        if self.edge.draining:
            self._refuse("draining", "this edge is shutting down; reconnect in a moment")
            return
        self.send(
            Welcome(
                version=PROTOCOL_VERSION,
                session_id=self.session_id,
                edge_id=self.edge.config.edge_id,
                account=identity.account,
                heartbeat_ms=int(self.heartbeat * 1000),
                max_streams=self.mux.max_streams,
            )
        )
        self.welcomed = True
        self.edge.agent_welcomed(self)
        log.info(
            "agent %s (%s, burrow %s) connected", identity.account, self.peer, hello.agent_version
        )

    def _refuse(self, code: str, message: str) -> None:
        self.send(Refused(code=code, message=message))
        self.close()

    # -- tunnels and streams --------------------------------------------------------------

    def new_tunnel(self, bind: Bind) -> Tunnel:
        assert self.identity is not None
        tunnel = Tunnel(
            self._next_tunnel_id,
            self,
            bind.protocol,
            self.identity.account,
            self.instance_id,
            local=bind.local[:200],
            pool=bind.pool,
        )
        self._next_tunnel_id += 1
        return tunnel

    def tunnel_taken(self, tunnel: Tunnel, reason: str) -> None:
        """Another link of the same agent took this tunnel's name over."""
        if self.tunnels.pop(tunnel.tunnel_id, None) is not None and not self.closed:
            self.send(Unbind(tunnel_id=tunnel.tunnel_id, reason=reason))
            if not self.tunnels:
                # A stale link with nothing left to serve: let it go now instead of
                # waiting for its heartbeat to time out.
                self.close()

    def open_visitor_stream(
        self, tunnel: Tunnel, kind: str, client: tuple[str, int], sink: StreamSink
    ) -> int:
        if self.closed or self.going_away or tunnel.tunnel_id not in self.tunnels:
            raise StreamUnavailable(502, "The tunnel's agent is reconnecting; retry in a moment.")
        if self.mux.stream_count >= self.mux.max_streams:
            self.edge.metrics.refused("stream_limit")
            raise StreamUnavailable(
                429, f"The tunnel already has {self.mux.max_streams} open connections."
            )
        peers = self.org_peers
        if len(peers) == 1:  # the usual case: one comparison
            open_streams = self.mux.stream_count
        else:
            open_streams = sum(peer.mux.stream_count for peer in peers)
        if open_streams >= self.org_stream_limit and peers:
            self.edge.metrics.refused("org_stream_limit")
            raise StreamUnavailable(
                429, f"The tunnels of this account already have {open_streams} open connections."
            )
        if kind == "http" and not self.address_streams.take(client[0]):
            self.edge.metrics.refused("address_share")
            raise StreamUnavailable(
                429,
                f"Your address already holds {self.address_streams.limit} of this tunnel's "
                "connections: finish some of them, then retry.",
            )
        return self.open(StreamOpen(tunnel.tunnel_id, kind, client[0], client[1]), sink)

    def go_away(self, reason: str, drain: float) -> None:
        if not self.closed and not self.going_away:
            self.going_away = True
            self.send(GoAway(reason=reason, drain_ms=int(drain * 1000)))

    def end_refused(self, code: str, message: str) -> None:
        """End a live session the edge no longer accepts (its token was revoked or has
        expired). The agent is told why exactly as it would be at Hello, so it stops
        instead of reconnecting with the same token; its tunnels are released."""
        if self.closed:
            return
        log.info(
            "agent link %s (%s) ended: %s",
            self.peer,
            self.identity.account if self.identity is not None else "?",
            message,
        )
        self._refuse(code, message)
