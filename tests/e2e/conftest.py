from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from agent.client import Agent
from agent.tunnels import TunnelSpec
from edge.config import EdgeConfig, Limits
from edge.link.auth import StaticTokens
from edge.server import Edge
from tests.e2e.origin import LocalService

TOKEN = "test-token"
OTHER_TOKEN = "other-token"


def edge_config(**changes: object) -> EdgeConfig:
    limits = changes.pop("limits", None) or Limits()
    cfg = EdgeConfig(
        http_port=0,
        agent_port=0,
        tcp_ports=(0, 0),
        heartbeat=0.5,
        heartbeat_misses=3,
        drain_seconds=2.0,
        limits=limits,  # type: ignore[arg-type]
    )
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


async def start_edge(config: EdgeConfig | None = None) -> Edge:
    edge = Edge(config or edge_config(), StaticTokens({TOKEN: "alice", OTHER_TOKEN: "bob"}))
    await edge.start()
    return edge


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


def edge_held_bytes(edge: Edge) -> int:
    """Bytes the edge holds for its visitors: socket write buffers plus stream backlogs."""
    held = 0
    for visitor in edge.visitors:
        if visitor.transport is not None:
            held += visitor.transport.get_write_buffer_size()
    for session in edge.sessions:
        held += session.mux.buffered_bytes()
        if session.transport is not None:
            held += session.transport.get_write_buffer_size()
    return held


class AgentRunner:
    """Starts agents against an edge and stops them at the end of the test."""

    def __init__(self) -> None:
        self.running: list[tuple[Agent, asyncio.Task[None]]] = []

    async def start(
        self, edge: Edge, *specs: TunnelSpec, token: str = TOKEN, wait: bool = True, **kw: object
    ) -> Agent:
        return await self.start_at(
            ("127.0.0.1", edge.config.agent_port), edge, *specs, token=token, wait=wait, **kw
        )

    async def start_at(
        self,
        server: tuple[str, int],
        edge: Edge,
        *specs: TunnelSpec,
        token: str = TOKEN,
        wait: bool = True,
        **kw: object,
    ) -> Agent:
        """An agent dialling ``server`` (a hostname, for TLS links) instead of the edge's
        plaintext agent address."""
        agent = Agent(server, token, list(specs), heartbeat=0.5, **kw)  # type: ignore[arg-type]
        task = asyncio.get_running_loop().create_task(agent.run())
        self.running.append((agent, task))
        if wait:
            await wait_for(lambda: all(s.url for s in agent.tunnels) or task.done(), what="bind")
            if task.done():
                task.result()
        return agent

    async def stop_all(self) -> None:
        for agent, _ in self.running:
            agent.stop()
        for _, task in self.running:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 5)


@pytest.fixture
async def service() -> AsyncIterator[LocalService]:
    svc = await LocalService().start()
    yield svc
    await svc.stop()


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    e = await start_edge()
    yield e
    await e.shutdown(drain=0.5)


@pytest.fixture
async def agents() -> AsyncIterator[AgentRunner]:
    runner = AgentRunner()
    yield runner
    await runner.stop_all()


@pytest.fixture
def http_tunnel(
    edge: Edge, service: LocalService, agents: AgentRunner
) -> Callable[..., Awaitable[Agent]]:
    async def make(name: str = "app", **kw: object) -> Agent:
        spec = TunnelSpec("http", "127.0.0.1", service.port, name=name, **kw)  # type: ignore[arg-type]
        return await agents.start(edge, spec)

    return make
