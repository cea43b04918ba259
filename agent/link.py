"""The agent's end of one link to an edge: hello, binds, and one local socket per stream."""

from __future__ import annotations

import asyncio
import logging
import platform
import time
from typing import TYPE_CHECKING, Final

from agent.tunnels import TunnelState
from proto.frames import PROTOCOL_VERSION, ResetCode
from proto.messages import (
    Bind,
    BindFailed,
    Bound,
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
from relay.session import LinkSession
from relay.stream import SocketRelay

if TYPE_CHECKING:
    from agent.client import Agent
    from agent.inspector import ExchangeObserver

log = logging.getLogger("burrow.agent")

AGENT_VERSION = "0.1.0"
# Twice a request: compiled code calls a Final name from a C static.
_monotonic: Final = time.monotonic
_MAX_REQUEST_LINE: Final = 2048


def _tunnel_label(state: TunnelState) -> str:
    spec = state.spec
    return spec.label or f"{spec.protocol}-{spec.local_port}"


class LocalRelay(SocketRelay):
    """A stream piped to a fresh connection to the local service.

    For HTTP tunnels it also times requests: the first byte from the edge after a response
    starts a request; the first byte back from the service ends its wait.
    """

    __slots__ = (
        "_http",
        "_observer",
        "_opened",
        "_request_line",
        "_request_started",
        "_stats",
        "state",
    )

    def __init__(
        self,
        link: AgentLink,
        stream_id: int,
        state: TunnelState,
        observer: ExchangeObserver | None = None,
    ) -> None:
        super().__init__(link, stream_id)
        self.state = state
        # The inspector's passive reader of both directions; None (one comparison per
        # chunk) while inspection is off or for TCP and TLS tunnels.
        self._observer = observer
        # Read on every chunk: kept here, compiled they are two reads of this struct.
        self._http = state.spec.protocol == "http"
        self._stats = state.stats
        self._request_started = 0.0
        self._request_line = b""
        self._opened = _monotonic()

    async def connect(self) -> None:
        spec = self.state.spec
        try:
            await asyncio.get_running_loop().create_connection(
                lambda: self, spec.local_host, spec.local_port
            )
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            self.state.stats.failed += 1
            self.state.stats.open_connections -= 1
            log.warning("cannot reach %s: %s", spec.local, reason)
            if not self.done and self.session is not None:
                self.done = True
                self.session.reset(
                    self.stream_id, ResetCode.REFUSED, f"{spec.local} refused: {reason}"
                )

    def stream_data(self, data: bytes) -> None:
        if not self._request_started and self._http:
            self._request_started = _monotonic()
            self._stats.requests += 1
            # The request line, for the agent's list of recent requests: one bounded find in
            # the first chunk of a request (the edge writes the head in one piece).
            end = data.find(b"\r\n", 0, _MAX_REQUEST_LINE)
            self._request_line = data[:end] if end > 0 else b""
        # Bytes that come before the local connection is up are handed to stream_data again
        # once it is (SocketRelay keeps them): observed then, once.
        if self._observer is not None and self.transport is not None:
            self._observer.request.feed(data)
        super().stream_data(data)

    def data_received(self, data: bytes) -> None:
        started = self._request_started
        if started:
            seconds = _monotonic() - started
            self._stats.record_latency(seconds)
            self._request_started = 0.0
            if self._request_line:
                # "HTTP/1.1 200 OK": the status is at a fixed offset.
                status = data[9:12]
                code = int(status) if data.startswith(b"HTTP/1.") and status.isdigit() else 0
                self._stats.record_request(self._request_line, code, seconds, started)
                self._request_line = b""
        if self._observer is not None:
            self._observer.response.feed(data)
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        stats = self.state.stats
        stats.open_connections -= 1
        stats.record_duration(_monotonic() - self._opened)
        if self._observer is not None:
            self._observer.closed()
        super().connection_lost(exc)


class AgentLink(LinkSession):
    def __init__(self, agent: Agent) -> None:
        super().__init__(Role.AGENT, heartbeat=agent.heartbeat, misses=agent.heartbeat_misses)
        self.agent = agent
        self.welcome: Welcome | None = None
        self.refused: Refused | None = None
        self.by_tunnel_id: dict[int, TunnelState] = {}
        self.by_request: dict[int, TunnelState] = {}
        self.closed_event = asyncio.Event()
        self.welcomed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        agent = self.agent
        self.send(
            Hello(
                versions=[PROTOCOL_VERSION],
                agent_version=AGENT_VERSION,
                instance_id=agent.instance_id,
                token=agent.token,
                os=f"{platform.system()}/{platform.machine()}",
            )
        )

    def on_closed(self, exc: Exception | None) -> None:
        self.closed_event.set()
        self.welcomed.set()
        self.agent.link_closed(self)

    def on_message(self, message: Message) -> None:
        if isinstance(message, Welcome):
            self.welcome = message
            # Take as many concurrent streams as the edge may open to us.
            self.mux.allow_streams(message.max_streams)
            self.welcomed.set()
            for request_id, tunnel in enumerate(self.agent.tunnels, start=1):
                if not tunnel.dropped:
                    self.bind(request_id, tunnel)
        elif isinstance(message, Bound):
            state = self.by_request.get(message.request_id)
            if state is not None:
                self.by_tunnel_id[message.tunnel_id] = state
                self.agent.tunnel_bound(self, state, message)
        elif isinstance(message, BindFailed):
            state = self.by_request.get(message.request_id)
            if state is not None:
                self.agent.tunnel_failed(self, state, message)
        elif isinstance(message, Refused):
            self.refused = message
            self.welcomed.set()
        elif isinstance(message, Unbind):
            gone = self.by_tunnel_id.pop(message.tunnel_id, None)
            if gone is not None:
                # The state is shared with the agent's newer link when this Unbind is a
                # reconnect's takeover, so it is only logged here.
                log.warning("edge closed tunnel %s: %s", gone.url, message.reason)
        elif isinstance(message, GoAway):
            self.agent.go_away(self, message)
        elif isinstance(message, Notice):
            log.warning("edge: %s", message.message)
        else:
            self.protocol_failed(f"unexpected {type(message).__name__} from the edge")

    def bind(self, request_id: int, state: TunnelState) -> None:
        self.by_request[request_id] = state
        spec = state.spec
        self.send(
            Bind(
                request_id=request_id,
                protocol=spec.protocol,
                name=state.claimed_name or spec.name,
                port=state.claimed_port or spec.remote_port,
                local=spec.local,
                pool=spec.pool,
            )
        )

    def on_stream_opened(self, stream_id: int, open_msg: StreamOpen) -> None:
        state = self.by_tunnel_id.get(open_msg.tunnel_id)
        if state is None:
            self.mux.reset_stream(stream_id, ResetCode.UNKNOWN_TUNNEL, "no such tunnel here")
            return
        inspector = self.agent.inspector
        observer = None
        if inspector is not None and state.spec.protocol == "http":
            visitor = f"{open_msg.visitor_addr}:{open_msg.visitor_port}"
            observer = inspector.observer(_tunnel_label(state), state.spec.local, visitor)
        relay = LocalRelay(self, stream_id, state, observer)
        self.sinks[stream_id] = relay
        state.stats.connections += 1
        state.stats.open_connections += 1
        self.agent.loop.create_task(relay.connect())
