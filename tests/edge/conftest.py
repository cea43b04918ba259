"""Fixtures of the shell tests: a started edge, and an agent bound to ``app.localhost``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from edge.server import Edge
from tests.edge.harness import FakeAgent, started_edge


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    async for edge in started_edge():
        yield edge


@pytest.fixture
async def agent(edge: Edge) -> FakeAgent:
    agent = FakeAgent(edge)
    agent.hello_and_bind("app")
    return agent
