"""The edge process: listeners, the route table, agent sessions, graceful drain, and the admin
listener that reports on them."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable

from certs.selfsigned import LocalCA
from certs.store import DEFAULT_ALPN, CertStore
from compiled import finder
from edge.admin.listener import AdminConnection
from edge.admin.metrics import EdgeMetrics, EdgeState
from edge.config import EdgeConfig
from edge.context import EdgeContext
from edge.link.agent_session import AgentInstances, AgentSession
from edge.link.auth import Authenticator
from edge.listen import Listener, format_hosts, listen
from edge.pipeline import ACME_CHALLENGE, acme_http01_handler, default_special_paths
from edge.routing.ownership import HostOwnership, check_token_tls_mode
from edge.routing.table import BindError, RouteTable, Tunnel
from edge.tls.listener import TlsVisitor
from edge.visitors.http_visitor import HttpVisitor
from edge.visitors.tcp_visitor import TcpVisitor
from proto.constants import AGENT_ALPN
from proto.messages import Bind, BindFailed, Bound

log = logging.getLogger("burrow.edge")


class Edge:
    def __init__(
        self,
        config: EdgeConfig,
        authenticator: Authenticator,
        ownership: HostOwnership | None = None,
    ) -> None:
        """``ownership``: reserved names and custom domains from control (kept current by
        ``edge.sync.control_sync.RoutingSync``); none: every free name is anyone's, as without
        a control plane."""
        self.config = config
        self.authenticator = authenticator
        self.ownership = ownership if ownership is not None else HostOwnership()
        self.ownership.set_installation(config.base_domain, config.agent_hostname)
        self.routes = RouteTable(
            config.base_domain,
            lease_seconds=config.name_lease_seconds,
            reserved=self.ownership.is_reserved,
            alias=self.ownership.alias_route,
        )
        # Told of every tunnel installed and released (``edge.sync.tunnel_reports``); they must
        # return at once and never raise.
        self.on_tunnel_up: Callable[[Tunnel], None] | None = None
        self.on_tunnel_down: Callable[[Tunnel], None] | None = None
        # Told of an agent link that closed (its last bytes count towards usage).
        self.on_session_closed: Callable[[AgentSession], None] | None = None
        self.metrics = EdgeMetrics(lambda pid: EdgeState(self, pid))
        self.agent_instances = AgentInstances(config.name_lease_seconds)
        # Per account, for its quotas: tunnels installed, and its welcomed agent links (each
        # link holds its account's list, so a stream open sums the account's streams).
        self.org_tunnels: dict[str, int] = {}
        self.org_sessions: dict[str, list[AgentSession]] = {}
        self.sessions: set[AgentSession] = set()
        self.tcp_listeners: dict[int, Listener] = {}
        self.listening = False  # every visitor and agent listener is up
        self.started = time.time()
        self._servers: list[Listener] = []
        self._admin: asyncio.Server | None = None
        self._settle_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        local_ca = LocalCA.load_or_create(config.local_ca_dir) if config.local_ca_dir else None
        self.certs = CertStore(alpn_protocols=(*DEFAULT_ALPN, AGENT_ALPN), local_ca=local_ca)
        # ACME http-01 answers (token -> key authorization), kept by edge.control_sync while
        # the certs worker's orders are validated; tls-alpn-01 ones live in ``certs``.
        self.acme_http01: dict[str, str] = {}
        for cert_file, key_file in config.tls_files:
            self.certs.load_files(cert_file, key_file)
        # All a visitor connection sees of this edge.
        self.context = EdgeContext(
            config,
            self.metrics,
            self.routes,
            self.certs,
            default_special_paths(config.agent_tls),
            lambda: AgentSession(self),
        )
        self.visitors = self.context.visitors
        self.context.special_paths.add(
            ACME_CHALLENGE, acme_http01_handler(lambda: self.acme_http01)
        )

    @property
    def draining(self) -> bool:
        return self.context.draining

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the edge is not started"
        return self._loop

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self.context.bind_loop(loop)
        cfg = self.config
        if cfg.admin_port is not None:
            # First, so /healthz answers (and /readyz says "starting") while the rest opens.
            self._admin = await loop.create_server(
                lambda: AdminConnection(self), cfg.admin_host, cfg.admin_port, reuse_address=True
            )
            cfg.admin_port = self._admin.sockets[0].getsockname()[1]
        try:
            await self._listen()
        except BaseException:
            # Close whatever did open, so the ports are free for a retry.
            for server in self._servers:
                server.close()
            self._servers = []
            if self._admin is not None:
                self._admin.close()
            raise
        self.listening = True
        if self.metrics.multiprocess_dir is not None:
            self._settle_metrics()

    def _settle_metrics(self) -> None:
        """Multiprocess mode: this process's request counts reach its metric files each
        second, whichever process serves the scrape."""
        self.metrics.settle()
        self._settle_timer = self.loop.call_later(1.0, self._settle_metrics)

    async def _listen(self) -> None:
        loop = self.loop
        cfg = self.config
        http = await listen(
            loop, lambda: HttpVisitor(self.context), cfg.http_host, cfg.http_port, backlog=2048
        )
        self._servers = [http]
        agents = await listen(
            loop,
            lambda: AgentSession(self),
            cfg.agent_host,
            cfg.agent_port,
            backlog=2048,
            ssl=self._agent_tls_context() if cfg.agent_tls else None,
            # An agent that connects and says nothing is let go as soon as one that stalls
            # after the handshake would be, not after asyncio's default of 60 s.
            ssl_handshake_timeout=cfg.limits.handshake_timeout if cfg.agent_tls else None,
        )
        self._servers.append(agents)
        # Port 0 means "any": record what the OS chose so URLs and the agent are right.
        cfg.http_port = http.port
        cfg.agent_port = agents.port
        if cfg.https_port is not None:
            https = await listen(
                loop, lambda: TlsVisitor(self.context), cfg.https_host, cfg.https_port, backlog=2048
            )
            self._servers.append(https)
            cfg.https_port = https.port
        log.info(
            "edge %s: http on %s, https on %s, agents on %s%s, tcp ports %d-%d, admin on %s",
            cfg.edge_id,
            format_hosts(cfg.http_host, cfg.http_port),
            format_hosts(cfg.https_host, cfg.https_port) if cfg.https_port is not None else "(off)",
            format_hosts(cfg.agent_host, cfg.agent_port),
            " (TLS)" if cfg.agent_tls else " (plaintext)",
            *cfg.tcp_ports,
            f"{cfg.admin_host}:{cfg.admin_port}" if cfg.admin_port is not None else "(off)",
        )
        log.info("edge %s: data path %s", cfg.edge_id, finder.status())

    def not_ready(self) -> str:
        """Why the edge should get no traffic now ("" when it should): for /readyz."""
        if self.draining:
            return "draining"
        if not self.listening:
            return "starting"
        return ""

    def _agent_tls_context(self) -> ssl.SSLContext:
        """The agent port's context. It holds no certificate of its own: for every handshake
        the SNI callback swaps in the store's current context for the agent hostname, so a
        renewal needs no restart (and the store's shared contexts are never modified)."""
        name = self.config.agent_hostname or self.config.base_domain
        self.certs.context_for(name)  # fail at start, not at the first agent, if unusable
        listener = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        listener.minimum_version = ssl.TLSVersion.TLSv1_2

        def pick(sslobj: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
            sslobj.context = self.certs.context_for(name)

        listener.sni_callback = pick  # type: ignore[assignment]
        return listener

    async def shutdown(self, drain: float | None = None) -> None:
        """Stop accepting, tell agents to go away, let open requests finish up to ``drain``
        seconds, then close everything."""
        drain = self.config.drain_seconds if drain is None else drain
        self.context.draining = True
        log.info("edge %s: draining for up to %gs", self.config.edge_id, drain)
        for server in [*self._servers, *self.tcp_listeners.values()]:
            server.close()
        for session in list(self.sessions):
            session.go_away("the edge is shutting down", drain)
        self.visitors.close_idle()  # idle keep-alive connections have nothing to finish
        deadline = time.monotonic() + drain
        while self.visitors and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded poll
            await asyncio.sleep(0.05)
        self.visitors.abort_all()
        for session in list(self.sessions):
            session.close()
        await asyncio.sleep(0)
        for server in [*self._servers, *self.tcp_listeners.values()]:
            await server.wait_closed()
        self.tcp_listeners.clear()
        self.listening = False
        if self._admin is not None:  # last: /readyz said "draining" until now
            self._admin.close()
            await self._admin.wait_closed()
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        self.metrics.close()

    # -- binds ----------------------------------------------------------------------------

    def bind(self, session: AgentSession, bind: Bind) -> None:
        identity = session.identity
        assert identity is not None
        try:
            if bind.protocol not in identity.protocols:
                raise BindError("protocol", f"this token may not open {bind.protocol} tunnels")
            if len(session.tunnels) >= self.config.limits.max_tunnels_per_agent:
                raise BindError(
                    "too_many_tunnels",
                    f"one agent may run at most {self.config.limits.max_tunnels_per_agent} tunnels",
                )
            if bind.protocol in ("http", "tls"):
                self._bind_host(session, bind)
            elif bind.protocol == "tcp":
                self._check_quota(session, bind.port or None, tcp=True)
                self.loop.create_task(self._bind_tcp(session, bind))
            else:
                raise BindError("protocol", f"unknown tunnel protocol {bind.protocol!r}")
        except BindError as exc:
            session.send(BindFailed(request_id=bind.request_id, code=exc.code, message=exc.message))

    def _bind_host(self, session: AgentSession, bind: Bind) -> None:
        """An HTTP tunnel, or a TLS-passthrough one: both are routed by hostname."""
        identity = session.identity
        assert identity is not None
        routes = self.routes
        if bind.name:
            ownership = self.ownership
            allowed = ownership.allowed_for(identity.account, identity.allowed_hosts, bind.name)
            hostname = routes.hostname_for(bind.name, allowed)
            given = routes.held_for(hostname, identity.account)
            if not given:  # another account's lease says whose it is, and until when
                routes.refuse_if_held(hostname, hostname, identity.account)
            ownership.check_bind(identity.account, hostname, bind.protocol, given=given)
        else:
            hostname = routes.random_hostname()
        if identity.tls_modes:
            check_token_tls_mode(identity.tls_modes, hostname, bind.protocol)
        self._check_quota(session, hostname, tcp=False)
        if bind.protocol == "tls" and self.config.https_port is None:
            raise BindError("protocol", "this edge has no HTTPS listener for TLS tunnels")
        tunnel = session.new_tunnel(bind)
        stale = routes.claim_host(hostname, tunnel)
        self._install(session, tunnel, stale)
        if bind.protocol == "tls":
            urls = [self.config.url_for(hostname, "tls")]
        else:
            urls = self.config.urls_for(hostname)
        session.send(
            Bound(
                request_id=bind.request_id,
                tunnel_id=tunnel.tunnel_id,
                url=urls[0],
                name=hostname,
                urls=urls,
            )
        )

    # -- quotas ---------------------------------------------------------------------------

    def org_quotas(self, account: str) -> tuple[int, int, int, int]:
        """(tunnels, agent links, TCP ports, visitor streams) ``account`` may hold on this
        edge at once: control's values for it where it set them, else this edge's defaults."""
        limits = self.config.limits
        tunnels = limits.max_tunnels_per_org
        links = limits.max_links_per_org
        ports = limits.max_tcp_ports_per_org
        streams = limits.max_streams_per_org
        custom = self.ownership.limits_for(account)
        if custom is not None:
            tunnels = custom.tunnels or tunnels
            links = custom.links or links
            ports = custom.tcp_ports or ports
            streams = custom.streams or streams
        return tunnels, links, ports, streams

    def more_hint(self, account: str) -> str:
        """How ``account`` gets more than its quota: upgrade its billing plan when its
        limits come from one, else ask the operator."""
        custom = self.ownership.limits_for(account)
        if custom is not None and custom.plan:
            return (
                f"upgrade from the {custom.plan} plan (GET /v1/plans, then "
                "POST /v1/billing/checkout)"
            )
        return "ask your operator to raise the limit"

    def _check_quota(self, session: AgentSession, key: str | int | None, *, tcp: bool) -> None:
        """Refuse a bind that would take ``session``'s account past its tunnel or TCP port
        quota. ``key``: the hostname or port asked for (None: any port). Taking back what
        the account already counts (its lease, its own stale tunnel) is always allowed."""
        assert session.identity is not None
        account = session.identity.account
        routes = self.routes
        if key is not None and routes.holds(key, account, session.instance_id):
            return
        tunnels, _, ports_limit, _ = self.org_quotas(account)
        leased, ports = routes.holdings(account)
        if self.org_tunnels.get(account, 0) + leased >= tunnels:
            raise BindError(
                "quota",
                f"your account may hold {tunnels} tunnels on this edge at once (names kept "
                f"for a reconnect count too); stop one, or {self.more_hint(account)}",
            )
        pool = routes.ports.get(key) if isinstance(key, int) else None
        joins = pool is not None and pool.account == account  # a port it serves already
        if tcp and not joins and ports >= ports_limit:
            raise BindError(
                "quota",
                f"your account may hold {ports_limit} TCP ports on this edge at once (ports "
                f"kept for a reconnect count too); stop one, or {self.more_hint(account)}",
            )

    def _count_tunnel(self, account: str, delta: int) -> None:
        left = self.org_tunnels.get(account, 0) + delta
        if left > 0:
            self.org_tunnels[account] = left
        else:
            self.org_tunnels.pop(account, None)

    async def _bind_tcp(self, session: AgentSession, bind: Bind) -> None:
        port = 0
        try:
            port = await self._tcp_port_for(session, bind.port)
            if session.closed:
                self._close_unused_port(port)
                return
            # Again, now the port is open: binds in flight together all passed the first check.
            self._check_quota(session, port, tcp=True)
            tunnel = session.new_tunnel(bind)
            stale = self.routes.claim_port(port, tunnel)
            self._install(session, tunnel, stale)
        except BindError as exc:
            if port:
                self._close_unused_port(port)
            session.send(BindFailed(request_id=bind.request_id, code=exc.code, message=exc.message))
            return
        host = self.config.base_domain
        session.send(
            Bound(
                request_id=bind.request_id,
                tunnel_id=tunnel.tunnel_id,
                url=f"tcp://{host}:{port}",
                name=host,
                port=port,
            )
        )

    async def _tcp_port_for(self, session: AgentSession, wanted: int) -> int:
        assert session.identity is not None
        account = session.identity.account
        low, high = self.config.tcp_ports
        if low == 0:
            # (0, 0): any port the OS picks; for tests and single-user edges.
            if wanted:
                raise BindError("bad_port", "this edge assigns TCP ports itself")
            return await self._listen_tcp(0)
        if wanted:
            if not low <= wanted <= high:
                raise BindError(
                    "bad_port", f"port {wanted} is outside this edge's range {low}-{high}"
                )
            if not self.routes.port_available(wanted, account):
                if wanted not in self.routes.ports:
                    raise self.routes.held_error(wanted, f"port {wanted}")
                raise BindError("taken", f"port {wanted} is in use by another account")
            if not await self._listen_tcp(wanted):
                raise BindError("in_use", f"port {wanted} cannot be opened on the edge")
            return wanted
        ports = list(range(low, high + 1))
        random.shuffle(ports)
        for port in ports:
            if port in self.routes.ports or not self.routes.port_available(port, account):
                continue
            if await self._listen_tcp(port):
                return port
        raise BindError("exhausted", f"all tcp ports {low}-{high} are in use")

    def _close_unused_port(self, port: int) -> None:
        """Stop listening on ``port`` unless a tunnel serves it."""
        if port not in self.routes.ports:
            server = self.tcp_listeners.pop(port, None)
            if server is not None:
                server.close()

    async def _listen_tcp(self, port: int) -> int:
        """Listen on ``port`` (0: any) unless already listening; the port, or 0 on failure."""
        if port and port in self.tcp_listeners:
            return port
        try:
            server = await listen(
                self.loop, lambda: TcpVisitor(self.context), self.config.tcp_host, port
            )
        except OSError:
            return 0
        port = server.port
        self.tcp_listeners[port] = server
        return port

    # -- agents ---------------------------------------------------------------------------

    def agent_welcomed(self, session: AgentSession) -> None:
        if session.instance_id and self.agent_instances.connected(session.instance_id):
            self.metrics.agent_reconnected()
        assert session.identity is not None
        account = session.identity.account
        instance = session.instance_id
        peers = self.org_sessions.setdefault(account, [])
        # One link of the same agent instance is its stale predecessor, about to go: it does
        # not count, so a reconnect at the limit works; a second one does.
        stale = 1 if instance and any(p.instance_id == instance for p in peers) else 0
        others = len(peers) - stale
        peers.append(session)
        session.org_peers = peers
        _, limit, _, streams = self.org_quotas(account)
        session.org_stream_limit = streams
        if others >= limit:
            session.end_refused(
                "quota",
                f"your account may have {limit} agents connected to this edge at once; stop "
                f"one, or {self.more_hint(account)}",
            )

    def _install(self, session: AgentSession, tunnel: Tunnel, stale: list[Tunnel]) -> None:
        session.tunnels[tunnel.tunnel_id] = tunnel
        self._count_tunnel(tunnel.account, 1 - len(stale))
        for old in stale:
            log.info(
                "tunnel %s taken over by a reconnect of the same agent",
                tunnel.hostname or tunnel.port,
            )
            old.session.tunnel_taken(old, "the agent reconnected on a new link")
            if self.on_tunnel_down is not None:
                self.on_tunnel_down(old)
        if self.on_tunnel_up is not None:
            self.on_tunnel_up(tunnel)

    # -- releases -------------------------------------------------------------------------

    def release(self, tunnel: Tunnel) -> None:
        self.routes.release(tunnel)
        self._count_tunnel(tunnel.account, -1)
        if self.on_tunnel_down is not None:
            self.on_tunnel_down(tunnel)
        if tunnel.port and tunnel.port not in self.routes.ports:
            server = self.tcp_listeners.pop(tunnel.port, None)
            if server is not None:
                server.close()

    def evict_others(self, host: str, owner: str, reason: str) -> None:
        """Control gave ``host`` to ``owner``: another account's agents on it lose it now,
        and are told why, rather than keeping it until they reconnect."""
        for tunnel in self.routes.evict_others(host, owner):
            self._count_tunnel(tunnel.account, -1)
            log.info("tunnel %s of %s ended: %s", host, tunnel.account, reason)
            if self.on_tunnel_down is not None:
                self.on_tunnel_down(tunnel)
            tunnel.session.tunnel_taken(tunnel, reason)

    def session_closed(self, session: AgentSession) -> None:
        self.sessions.discard(session)
        if session.identity is not None:  # counted as an agent's while it was open
            self.metrics.link_closed(session.bytes_in, session.bytes_out)
            if self.on_session_closed is not None:
                self.on_session_closed(session)
        if session.welcomed and session.instance_id:
            self.agent_instances.disconnected(session.instance_id, time.monotonic())
        if session.welcomed and session.identity is not None:
            peers = self.org_sessions.get(session.identity.account)
            if peers is not None and session in peers:
                peers.remove(session)
                if not peers:
                    del self.org_sessions[session.identity.account]
        tunnels = list(session.tunnels.values())
        session.tunnels.clear()
        for tunnel in tunnels:
            self.release(tunnel)
