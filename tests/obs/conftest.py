from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from agent.client import Agent
from agent.tunnels import TunnelSpec
from edge.server import Edge
from tests.e2e.conftest import AgentRunner, edge_config, start_edge
from tests.e2e.origin import LocalService


@pytest.fixture
async def service() -> AsyncIterator[LocalService]:
    svc = await LocalService().start()
    yield svc
    await svc.stop()


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    """An edge with its admin listener on a port the OS picks."""
    e = await start_edge(edge_config(admin_port=0))
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
    async def make(name: str = "app") -> Agent:
        return await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name=name))

    return make
