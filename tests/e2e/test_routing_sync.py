"""The edge's side of the control plane, with a real edge, real agents and a real bus:
reserved names, routing events, revocations, resyncs, the snapshot cache, tunnel reports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.client import Agent, AgentRefused
from agent.tunnels import TunnelSpec
from bus.base import EDGE_REPORTS_STREAM, ROUTING_CHANNEL, Bus
from bus.events import (
    DomainRoute,
    EdgeReport,
    EdgeState,
    EdgeStopped,
    NameClaim,
    NameSet,
    Revocation,
    RoutingEvent,
    RoutingSnapshot,
    TokenRevoked,
    TunnelDown,
    TunnelUp,
    encode,
    report_decoder,
    snapshot_decoder,
)
from bus.memory import MemoryBus
from bus.redis_bus import RedisBus
from contracts.token_format import TokenClaims
from control.token_signing import SigningKey, issue_token
from edge.link.token_auth import SignedTokens
from edge.routing.ownership import HostOwnership
from edge.server import Edge
from edge.sync.control_sync import HttpSnapshotSource, RoutingSync, SnapshotUnavailable
from edge.sync.tunnel_reports import TunnelReporter
from tests.e2e.client import get
from tests.e2e.conftest import AgentRunner, edge_config, start_edge, wait_for
from tests.e2e.origin import LocalService
from tests.fixtures.redis import PrivateRedis

KEY = SigningKey.generate("k1")


def token(org: str, tid: str, expires: int = 0) -> str:
    claims = TokenClaims(org=org, tid=tid, iat=int(time.time()) - 5, exp=expires)
    return issue_token(claims, KEY)


ACME = token("acme", "t-acme")
GLOBEX = token("globex", "t-globex")


def control_state(seq: int = 10, **changes: object) -> RoutingSnapshot:
    snapshot = RoutingSnapshot(
        seq=seq,
        names=[
            NameClaim(host="shop.localhost", org="acme"),
            NameClaim(host="brief.localhost", org="acme"),
            NameClaim(host="other.localhost", org="globex"),
            NameClaim(host="globex.localhost", org="globex"),
        ],
        domains=[DomainRoute(host="www.acme.test", org="acme", verified=True)],
        keys=[KEY.verify_key()],
    )
    for name, value in changes.items():
        setattr(snapshot, name, value)
    return snapshot


class HeldSnapshot:
    """Stands in for control's routing endpoint: serves whatever snapshot it holds (through
    the wire encoding), or fails while ``down``."""

    def __init__(self, snapshot: RoutingSnapshot) -> None:
        self.snapshot = snapshot
        self.down = False
        self.fetches = 0

    async def fetch(self) -> RoutingSnapshot:
        await asyncio.sleep(0)
        if self.down:
            raise SnapshotUnavailable("control at http://control.test is down")
        self.fetches += 1
        return snapshot_decoder.decode(encode(self.snapshot))


class Stack:
    """An edge whose tokens and routing state come from ``source`` and ``bus``."""

    def __init__(self, source: HeldSnapshot, bus: Bus | None, **sync_options: object) -> None:
        self.source = source
        self.bus = bus
        self.keyring = SignedTokens([])
        self.edge = Edge(edge_config(), self.keyring, HostOwnership())
        options: dict[str, object] = {
            "outage_interval": 0.2,
            "start_timeout": 1.0,
            "expiry_interval": 0.2,
        }
        options.update(sync_options)
        self.sync = RoutingSync(
            self.edge,
            source,
            bus,
            self.keyring,
            **options,  # type: ignore[arg-type]
        )

    async def start(self) -> Stack:
        await self.sync.start()
        await self.edge.start()
        return self

    async def stop(self) -> None:
        await self.sync.close()
        await self.edge.shutdown(drain=0.5)

    async def publish(self, event: RoutingEvent) -> None:
        assert self.bus is not None
        await self.bus.publish(ROUTING_CHANNEL, encode(event))


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    memory = MemoryBus()
    yield memory
    await memory.close()


@pytest.fixture
async def stack(bus: MemoryBus) -> AsyncIterator[Stack]:
    running = await Stack(HeldSnapshot(control_state()), bus).start()
    yield running
    await running.stop()


def http(service: LocalService, name: str) -> TunnelSpec:
    return TunnelSpec("http", "127.0.0.1", service.port, name=name)


async def bind_error(agents: AgentRunner, edge: Edge, spec: TunnelSpec, tok: str) -> str:
    agent = await agents.start(edge, spec, token=tok, wait=False)
    await wait_for(lambda: bool(agent.tunnels[0].error), what="the bind to be refused")
    return agent.tunnels[0].error


async def refused(agent_task: asyncio.Task[None], timeout: float = 5.0) -> str:
    with pytest.raises(AgentRefused) as caught:
        await asyncio.wait_for(agent_task, timeout)
    return str(caught.value)


def task_of(agents: AgentRunner, agent: Agent) -> asyncio.Task[None]:
    return next(task for a, task in agents.running if a is agent)


# -- reserved names and routing events ------------------------------------------------------


async def test_a_reserved_name_is_refused_to_another_org(
    stack: Stack, agents: AgentRunner, service: LocalService
) -> None:
    error = await bind_error(agents, stack.edge, http(service, "shop"), GLOBEX)
    assert error == "shop.localhost is reserved by another account"
    await agents.start(stack.edge, http(service, "shop"), token=ACME)
    r = await get(stack.edge.config.http_port, "shop.localhost", "/hello")
    assert (r.status, r.body) == (200, b"hello")


async def test_an_orgs_verified_domain_binds_without_being_in_its_token(
    stack: Stack, agents: AgentRunner, service: LocalService
) -> None:
    agent = await agents.start(stack.edge, http(service, "www.acme.test"), token=ACME)
    assert agent.tunnels[0].url.startswith("http://www.acme.test:")
    error = await bind_error(agents, stack.edge, http(service, "www.acme.test"), GLOBEX)
    assert "another account" in error


async def test_a_name_claimed_on_the_bus_applies_to_the_next_bind(
    stack: Stack, agents: AgentRunner, service: LocalService
) -> None:
    await stack.publish(NameSet(seq=11, claim=NameClaim(host="blog.localhost", org="acme")))
    await wait_for(lambda: stack.edge.ownership.seq == 11, what="the event to apply")
    error = await bind_error(agents, stack.edge, http(service, "blog"), GLOBEX)
    assert "reserved by another account" in error
    # Random names never land on a reserved one, and the owner still gets it.
    assert stack.edge.ownership.is_reserved("blog.localhost")
    await agents.start(stack.edge, http(service, "blog"), token=ACME)


async def test_a_seq_gap_loads_a_fresh_snapshot(
    stack: Stack, agents: AgentRunner, service: LocalService
) -> None:
    before = stack.source.fetches
    # Control changed things at seq 11 and 12; the edge never saw those events.
    stack.source.snapshot = control_state(
        seq=12, names=[NameClaim("shop.localhost", "acme"), NameClaim("wiki.localhost", "acme")]
    )
    await stack.publish(NameSet(seq=13, claim=NameClaim(host="news.localhost", org="acme")))
    await wait_for(lambda: stack.edge.ownership.seq == 13, what="the resync")
    assert stack.source.fetches > before
    assert stack.sync.in_sync
    # Both the snapshot's change and the held event are in force.
    for name in ("wiki", "news"):
        error = await bind_error(agents, stack.edge, http(service, name), GLOBEX)
        assert "reserved by another account" in error


# -- revocation and expiry ------------------------------------------------------------------


async def test_a_revoked_token_is_disconnected_and_refused_on_reconnect(
    stack: Stack, agents: AgentRunner, service: LocalService
) -> None:
    agent = await agents.start(stack.edge, http(service, "shop"), token=ACME)
    other = await agents.start(stack.edge, http(service, "other"), token=GLOBEX)
    port = stack.edge.config.http_port
    assert (await get(port, "shop.localhost", "/hello")).status == 200

    await stack.publish(TokenRevoked(seq=11, revocation=Revocation(token_id="t-acme", until=0)))
    message = await refused(task_of(agents, agent))
    assert message.startswith("authtoken revoked")
    assert agent.last_error == message
    assert (await get(port, "shop.localhost", "/hello")).status == 404
    # Only that token's sessions went.
    assert other.connected and (await get(port, "other.localhost", "/hello")).status == 200

    again = await agents.start(stack.edge, http(service, "shop"), token=ACME, wait=False)
    assert "revoked" in await refused(task_of(agents, again))


async def test_an_expired_token_is_disconnected(
    stack: Stack, agents: AgentRunner, service: LocalService
) -> None:
    short = token("acme", "t-short", expires=int(time.time()) + 2)
    agent = await agents.start(stack.edge, http(service, "brief"), token=short)
    message = await refused(task_of(agents, agent), timeout=6.0)
    assert message.startswith("authtoken expired")
    assert not any(s.identity and s.identity.token_id == "t-short" for s in stack.edge.sessions)


async def test_revocations_arrive_through_control_while_the_bus_is_down(
    stack: Stack, bus: MemoryBus, agents: AgentRunner, service: LocalService
) -> None:
    agent = await agents.start(stack.edge, http(service, "shop"), token=ACME)
    await bus.close()
    await wait_for(lambda: not stack.sync.bus_up, what="the bus outage to be noticed")
    stack.source.snapshot = control_state(seq=11, revoked=[Revocation("t-acme", until=0)])
    message = await refused(task_of(agents, agent))
    assert message.startswith("authtoken revoked")


async def subscribed(redis_bus: RedisBus, key: str, timeout: float = 5.0) -> None:
    """Wait until Redis counts a subscriber on ``key``, so a publish reaches the edge."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        [(_, count)] = await redis_bus.client.pubsub_numsub(key)
        if count:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"nobody subscribed to {key}")
        await asyncio.sleep(0.02)


async def test_revocation_over_redis_and_through_control_when_redis_dies(
    private_redis: PrivateRedis, agents: AgentRunner, service: LocalService
) -> None:
    redis_bus = RedisBus(private_redis.url, "burrowtest:sync:")
    stack = await Stack(HeldSnapshot(control_state()), redis_bus).start()
    try:
        first = await agents.start(stack.edge, http(service, "shop"), token=ACME)
        second = await agents.start(stack.edge, http(service, "globex"), token=GLOBEX)
        await subscribed(redis_bus, "burrowtest:sync:" + ROUTING_CHANNEL)
        await stack.publish(TokenRevoked(seq=11, revocation=Revocation("t-acme", until=0)))
        assert (await refused(task_of(agents, first))).startswith("authtoken revoked")

        private_redis.stop()
        await wait_for(lambda: not stack.sync.bus_up, timeout=5.0, what="the outage noticed")
        stack.source.snapshot = control_state(
            seq=12, revoked=[Revocation("t-acme", 0), Revocation("t-globex", 0)]
        )
        assert (await refused(task_of(agents, second))).startswith("authtoken revoked")
    finally:
        await stack.stop()
        await redis_bus.close()


# -- starting without control ---------------------------------------------------------------


async def test_an_edge_started_during_a_control_outage_uses_its_cache(
    tmp_path: Path, bus: MemoryBus, agents: AgentRunner, service: LocalService
) -> None:
    cache = tmp_path / "state" / "routing.msgpack"
    source = HeldSnapshot(
        control_state(revoked=[Revocation(token_id="t-old", until=time.time() + 3600)])
    )
    first = await Stack(source, bus, cache_path=cache).start()
    await first.stop()
    assert cache.exists()

    source.down = True
    second = await Stack(source, bus, cache_path=cache).start()
    try:
        assert second.sync.loaded_from == "cache"
        edge = second.edge
        # Ownership from the cache...
        error = await bind_error(agents, edge, http(service, "shop"), GLOBEX)
        assert "reserved by another account" in error
        # ...the keys (a token control signed is accepted)...
        await agents.start(edge, http(service, "shop"), token=ACME)
        # ...and the revocations.
        old = await agents.start(edge, http(service, "x"), token=token("acme", "t-old"), wait=False)
        assert "revoked" in await refused(task_of(agents, old))

        source.down = False
        await wait_for(lambda: second.sync.loaded_from == "control", what="control again")
    finally:
        await second.stop()


async def test_without_control_or_cache_the_edge_still_starts(
    bus: MemoryBus, agents: AgentRunner, service: LocalService
) -> None:
    source = HeldSnapshot(control_state())
    source.down = True
    stack = await Stack(source, bus).start()
    try:
        assert not stack.edge.ownership.loaded
        assert stack.edge.listening
        source.down = False
        await wait_for(lambda: stack.edge.ownership.loaded, what="the snapshot after retrying")
        await agents.start(stack.edge, http(service, "shop"), token=ACME)
    finally:
        await stack.stop()


# -- tunnel reports -------------------------------------------------------------------------


class ReportReader:
    def __init__(self, bus: MemoryBus) -> None:
        self.bus = bus
        self.seen: list[EdgeReport] = []

    async def until(
        self, predicate: Callable[[EdgeReport], bool], what: str, timeout: float = 5.0
    ) -> EdgeReport:
        deadline = asyncio.get_running_loop().time() + timeout
        checked = 0
        while True:
            for report in self.seen[checked:]:
                if predicate(report):
                    return report
            checked = len(self.seen)
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no report: {what}; saw {self.seen}")
            entries = await self.bus.read_group(EDGE_REPORTS_STREAM, "control", "c1", block=0.1)
            self.seen += [report_decoder.decode(e.payload) for e in entries]


async def test_tunnel_reports(bus: MemoryBus, agents: AgentRunner, service: LocalService) -> None:
    edge = await start_edge()
    reporter = TunnelReporter(edge, bus, interval=0.3)
    reporter.start()
    reader = ReportReader(bus)
    try:
        await reader.until(lambda r: isinstance(r, EdgeState) and not r.tunnels, "empty state")
        agent = await agents.start(edge, http(service, "app"))
        up = await reader.until(lambda r: isinstance(r, TunnelUp), "tunnel up")
        assert isinstance(up, TunnelUp)
        live = up.tunnel
        assert live.hostname == "app.localhost"
        assert live.url == f"http://app.localhost:{edge.config.http_port}"
        assert (live.org, live.token_id, live.protocol) == ("alice", "alice", "http")
        assert live.instance_id == agent.instance_id and live.client_addr.startswith("127.0.0.1:")
        assert live.local.endswith(f":{service.port}") and live.started > 0
        state = await reader.until(
            lambda r: isinstance(r, EdgeState) and bool(r.tunnels), "state with the tunnel"
        )
        assert isinstance(state, EdgeState)
        assert [t.hostname for t in state.tunnels] == ["app.localhost"]
        assert state.edge_id == edge.config.edge_id

        agent.stop()
        down = await reader.until(lambda r: isinstance(r, TunnelDown), "tunnel down")
        assert isinstance(down, TunnelDown) and down.key == live.key
        await reporter.close()
        await reader.until(lambda r: isinstance(r, EdgeStopped), "edge stopped")
    finally:
        await reporter.close()
        await edge.shutdown(drain=0.5)


async def test_a_dead_bus_never_stops_binds_or_traffic(
    bus: MemoryBus, agents: AgentRunner, service: LocalService
) -> None:
    edge = await start_edge()
    reporter = TunnelReporter(edge, bus, interval=0.2)
    reporter.start()
    try:
        await bus.close()
        await wait_for(lambda: reporter.bus_down, what="the outage noticed")
        await agents.start(edge, http(service, "app"))
        r = await get(edge.config.http_port, "app.localhost", "/hello")
        assert (r.status, r.body) == (200, b"hello")
    finally:
        await reporter.close()
        await edge.shutdown(drain=0.5)


# -- the HTTP snapshot source ---------------------------------------------------------------


async def test_http_snapshot_source_speaks_the_control_contract() -> None:
    from aiohttp import web

    seen: list[str] = []
    status = {"code": 200}

    async def routing(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != "Bearer edge-secret":
            return web.Response(status=401, text="no")
        if status["code"] != 200:
            return web.Response(status=status["code"], text="database\nunavailable")
        return web.Response(body=encode(control_state()), content_type="application/x-msgpack")

    app = web.Application()
    app.router.add_get("/v1/edge/routing", routing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    good = HttpSnapshotSource(f"http://127.0.0.1:{port}/", "edge-secret", timeout=2.0)
    bad = HttpSnapshotSource(f"http://127.0.0.1:{port}", "wrong", timeout=2.0)
    try:
        snapshot = await good.fetch()
        assert snapshot.seq == 10 and snapshot.names == control_state().names
        assert seen == ["Bearer edge-secret"]
        with pytest.raises(SnapshotUnavailable, match=r"refused this edge's key \(401\)"):
            await bad.fetch()
        status["code"] = 503
        with pytest.raises(SnapshotUnavailable, match="answered 503") as caught:
            await good.fetch()
        assert "\n" not in str(caught.value)
    finally:
        await good.close()
        await bad.close()
        await runner.cleanup()
    gone = HttpSnapshotSource(f"http://127.0.0.1:{port}", "edge-secret", timeout=2.0)
    try:
        with pytest.raises(SnapshotUnavailable, match="cannot reach control"):
            await gone.fetch()
    finally:
        await gone.close()
