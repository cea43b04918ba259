"""The agent's lifecycle: connect, bind, serve, and reconnect with backoff until stopped.

Reconnects use exponential backoff with full jitter (0.25 s doubling to 30 s), reset once a
link has been welcomed. Every reconnect asks for the names and ports the edge gave before,
with the same ``instance_id``, so the edge hands them back at once. A ``GoAway`` from a
draining edge starts a new link immediately while the old one finishes its streams.
A refused token is final, at Hello or later on a live link (revoked, expired): retrying
cannot fix it. A refused tunnel is final too unless its BindFailed code is transient
(``agent.tunnels.TRANSIENT_BIND_CODES``): the agent drops it, and ends when none is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import ssl
from collections.abc import Callable

import wsproto

from agent.inspector import Inspector
from agent.link import AgentLink
from agent.state import TunnelMemory
from agent.tunnels import (
    BIND_RETRY_MAX,
    BIND_RETRY_START,
    IN_USE_RETRIES,
    TunnelSpec,
    TunnelState,
    bind_refusal_is_transient,
)
from proto.constants import AGENT_ALPN
from proto.messages import BindFailed, Bound, GoAway
from relay.websocket import WebSocketShell

log = logging.getLogger("burrow.agent")

BACKOFF_START = 0.25
BACKOFF_MAX = 30.0


class AgentRefused(Exception):
    """The edge refused this agent (bad token, wrong version) or every one of its tunnels;
    retrying will not help. ``str()`` is the edge's reason; ``sentence`` says it to a user."""

    def __init__(self, reason: str, sentence: str = "") -> None:
        super().__init__(reason)
        self.sentence = sentence or reason


# Session refusals (``Refused.code``) that a later attempt can get past.
TRANSIENT_REFUSALS = frozenset({"draining"})


class Agent:
    def __init__(
        self,
        server: tuple[str, int],
        token: str,
        tunnels: list[TunnelSpec],
        *,
        heartbeat: float = 5.0,
        heartbeat_misses: int = 3,
        on_change: Callable[[Agent], None] | None = None,
        connect_timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
        transport: str = "direct",
        wss_server: tuple[str, int] | None = None,
        wss_tls: ssl.SSLContext | None = None,
        memory: TunnelMemory | None = None,
    ) -> None:
        """``tls``: the context to verify the edge with (``link_tls_context``); None means
        a plaintext link, which only a caller that asked for it explicitly may use.
        ``transport``: "direct" (the agent port), "wss" (a WebSocket on the edge's HTTPS
        port, ``wss_server``), or "auto" (direct, and WebSocket when direct cannot connect)."""
        if transport not in ("direct", "wss", "auto"):
            raise ValueError(f"unknown link transport {transport!r}")
        if transport != "direct" and wss_server is None:
            raise ValueError("a WebSocket link needs wss_server")
        self.server = server
        self.token = token
        self.tunnels = [TunnelState(spec) for spec in tunnels]
        self.memory = memory
        if memory is not None:
            for state in self.tunnels:
                state.claimed_name, state.claimed_port = memory.recall(state.spec)
        self.heartbeat = heartbeat
        self.heartbeat_misses = heartbeat_misses
        self.instance_id = os.urandom(12).hex()
        self.on_change = on_change or (lambda agent: None)
        # Set while the local inspector is on: HTTP streams are observed into it.
        self.inspector: Inspector | None = None
        self.connect_timeout = connect_timeout
        self.tls = tls
        self.transport = transport
        self.wss_server = wss_server
        self.wss_tls = wss_tls
        self._untrusted = False
        self.link: AgentLink | None = None
        self.links: set[AgentLink] = set()
        self.connected = False
        self.reconnects = 0
        self.last_error = ""
        self.refusal = ""  # set when the agent gives up: why, in one sentence
        self.notices: list[str] = []  # lines for the user; the display takes them
        self._stopping = False
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    @property
    def rtt(self) -> float | None:
        return self.link.rtt if self.link is not None else None

    async def run(self) -> None:
        """Serve until ``stop()``; raises ``AgentRefused`` if the edge refuses us."""
        self._loop = asyncio.get_running_loop()
        delay = BACKOFF_START
        while not self._stopping:
            link = await self._connect()
            if link is not None:
                await link.welcomed.wait()
                if link.refused is not None and link.refused.code in TRANSIENT_REFUSALS:
                    self.last_error = f"the edge is not taking agents: {link.refused.message}"
                    link.close()
                    self.on_change(self)
                    await self._sleep(random.uniform(0, delay))
                    delay = min(delay * 2, BACKOFF_MAX)
                    continue
                if link.refused is not None:
                    self.last_error = link.refused.message
                    link.close()
                    raise _session_refused(link.refused.message)
                if link.welcome is not None:
                    delay = BACKOFF_START
                    self.connected = True
                    self.on_change(self)
                # Wait until this link dies or is told to go away.
                self._wake.clear()
                closed = asyncio.ensure_future(link.closed_event.wait())
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({closed, woken}, return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                woken.cancel()
                if self._stopping:
                    break
                if link.refused is not None:
                    # Refused on a live link: the token was revoked or expired meanwhile.
                    # Reconnecting with it cannot work, so stop and say why.
                    self.connected = False
                    self.last_error = link.refused.message
                    link.close()
                    raise _session_refused(link.refused.message)
                # The link died, or the edge asked us to move (GoAway): either way the
                # tunnels are not served by a live link until the next one is welcomed.
                self.connected = False
                for state in self.tunnels:
                    state.url = ""
                    state.urls = []
                self.on_change(self)
                if link.closed_event.is_set() or link.welcome is None:
                    await self._sleep(random.uniform(0, delay))
                    delay = min(delay * 2, BACKOFF_MAX)
                self.reconnects += 1
                continue
            self.on_change(self)
            await self._sleep(random.uniform(0, delay))
            delay = min(delay * 2, BACKOFF_MAX)
        if self.refusal:
            raise AgentRefused(self.refusal)

    async def _connect(self) -> AgentLink | None:
        if self.transport == "wss":
            return await self._connect_wss()
        link = await self._connect_direct()
        if link is None and self.transport == "auto" and not self._untrusted:
            direct_error = self.last_error
            link = await self._connect_wss()
            if link is None:
                # Name both: the address that failed first is usually the one to fix.
                self.last_error = f"{direct_error}; WebSocket fallback: {self.last_error}"
        return link

    async def _connect_wss(self) -> AgentLink | None:
        """The link inside a WebSocket on the edge's HTTPS port."""
        assert self.wss_server is not None
        host, port = self.wss_server
        link = AgentLink(self)
        shell = WebSocketShell(link, wsproto.ConnectionType.CLIENT, host=host)
        try:
            await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: shell,
                    host,
                    port,
                    ssl=self.wss_tls,
                    server_hostname=host if self.wss_tls is not None else None,
                ),
                self.connect_timeout,
            )
            await asyncio.wait_for(shell.accepted, self.connect_timeout)
        except ssl.SSLCertVerificationError as exc:
            self.last_error = (
                f"the edge at {host}:{port} (WebSocket) has a certificate this agent does not "
                f"trust ({exc.verify_message}); pass --ca FILE for a private CA"
            )
            log.warning("%s", self.last_error)
            return None
        except (TimeoutError, OSError, ConnectionError) as exc:
            self.last_error = f"cannot reach the edge at wss://{host}:{port}: {exc}"
            log.info("%s", self.last_error)
            if shell.raw is not None:
                shell.raw.abort()
            return None
        self.link = link
        self.links.add(link)
        return link

    async def _connect_direct(self) -> AgentLink | None:
        self._untrusted = False
        host, port = self.server
        try:
            _, link = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: AgentLink(self),
                    host,
                    port,
                    ssl=self.tls,
                    server_hostname=host if self.tls is not None else None,
                ),
                self.connect_timeout,
            )
        except ssl.SSLCertVerificationError as exc:
            self._untrusted = True  # never fall back around a certificate problem
            self.last_error = (
                f"the edge at {host}:{port} has a certificate this agent does not trust "
                f"({exc.verify_message}); pass --ca FILE for a private CA"
            )
            log.warning("%s", self.last_error)
            return None
        except (TimeoutError, OSError) as exc:
            self.last_error = f"cannot reach the edge at {host}:{port}: {exc}"
            log.info("%s", self.last_error)
            return None
        self.link = link
        self.links.add(link)
        return link

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def stop(self) -> None:
        self._stopping = True
        for link in list(self.links):
            link.close()
        self._wake.set()

    # -- callbacks from links -------------------------------------------------------------

    def link_closed(self, link: AgentLink) -> None:
        self.links.discard(link)
        if link is self.link:
            self._wake.set()

    def go_away(self, link: AgentLink, message: GoAway) -> None:
        log.info("edge going away (%s): reconnecting", message.reason)
        if link is self.link:
            self.link = None
            self._wake.set()
        # The old link serves its open streams until they finish or the drain runs out.
        self.loop.call_later(message.drain_ms / 1000 + 1, link.close)

    def tunnel_bound(self, link: AgentLink, state: TunnelState, bound: Bound) -> None:
        state.url = bound.url
        state.urls = list(bound.urls) or [bound.url]
        state.error = ""
        state.bind_retries = 0
        state.claimed_name = bound.name if state.spec.protocol in ("http", "tls") else ""
        state.claimed_port = bound.port
        if self.memory is not None:
            self.memory.remember(state.spec, state.claimed_name, state.claimed_port)
        log.info("tunnel %s -> %s", bound.url, state.spec.local)
        self.on_change(self)

    def tunnel_failed(self, link: AgentLink, state: TunnelState, failed: BindFailed) -> None:
        spec = state.spec
        request_id = next(k for k, v in link.by_request.items() if v is state)
        transient = bind_refusal_is_transient(failed.code)
        if failed.code == "in_use" and state.bind_retries >= IN_USE_RETRIES:
            transient = False  # held for longer than our own old link could: someone else
        asked = state.claimed_name or (str(state.claimed_port) if state.claimed_port else "")
        if asked and not (spec.name or spec.remote_port) and not transient:
            # The random name or port we had is not ours any more (someone took it, or this
            # edge assigns ports itself): a fresh random one serves as well.
            self.notice(
                f"Tunnel {spec.label or spec.local}: the edge did not give back {asked} "
                f"({failed.message}); taking a new random one"
            )
            state.claimed_name = ""
            state.claimed_port = 0
            link.bind(request_id, state)
            return
        label = spec.label or spec.local
        state.error = failed.message
        if transient:
            state.bind_retries += 1
            if failed.code == "in_use":
                delay = BIND_RETRY_START
            else:
                delay = min(BIND_RETRY_START * 2 ** (state.bind_retries - 1), BIND_RETRY_MAX)
            log.info("tunnel %s refused for now (%s): retrying in %.0fs", label, failed.code, delay)

            def retry() -> None:
                if not link.closed and not state.dropped and not self._stopping:
                    link.bind(request_id, state)

            self.loop.call_later(delay, retry)
            self.on_change(self)
            return
        state.dropped = True
        log.info("tunnel %s refused (%s): %s", label, failed.code, failed.message)
        self.on_change(self)
        if all(s.dropped for s in self.tunnels):
            reason = f"the edge refused tunnel {label}: {failed.message}"
            if len(self.tunnels) > 1:
                reason = f"the edge refused every tunnel; the last, {label}: {failed.message}"
            self.give_up(reason)

    def notice(self, text: str) -> None:
        """One line for the user about something the agent decided by itself."""
        self.notices.append(text)
        del self.notices[:-20]  # a display takes them; without one, keep the last few
        log.info("%s", text)
        self.on_change(self)

    def give_up(self, reason: str) -> None:
        """Stop, and have ``run`` raise ``AgentRefused(reason)``."""
        self.refusal = reason
        self.stop()


def _session_refused(reason: str) -> AgentRefused:
    return AgentRefused(reason, f"the edge refused this agent: {reason}")


LINK_ALPN = AGENT_ALPN


def link_tls_context(ca_file: str | None = None, *, websocket: bool = False) -> ssl.SSLContext:
    """Verify the edge like a browser would: the system's CAs (or ``ca_file`` for a
    private CA), the hostname checked. ALPN names the link protocol so an edge can take
    agents on its HTTPS port too; a WebSocket link looks like any HTTPS client."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"] if websocket else [LINK_ALPN])
    return context
