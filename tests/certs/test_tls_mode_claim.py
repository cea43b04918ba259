"""The token's ``tls`` claim (TLS mode per host pattern) holds at bind time: a host the
token sets to passthrough opens only as a TLS tunnel, one it sets to terminate only as an
HTTP tunnel, each refused with a line saying what to do."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from agent.tunnels import TunnelSpec
from bus.memory import MemoryBus
from contracts.token_format import TokenClaims
from control.token_signing import issue_token
from tests.e2e.conftest import AgentRunner, agents, service, wait_for
from tests.e2e.origin import LocalService
from tests.e2e.test_routing_sync import KEY, HeldSnapshot, Stack, control_state

__all__ = ["agents", "service"]  # the e2e fixtures, used here by name


def token_with_tls(modes: dict[str, str]) -> str:
    claims = TokenClaims(org="acme", tid="t-tls", iat=int(time.time()) - 5, tls=modes)
    return issue_token(claims, KEY)


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    bus = MemoryBus()
    running = await Stack(HeldSnapshot(control_state()), bus).start()
    running.edge.config.https_port = 0  # a TLS tunnel needs an HTTPS listener to be asked for
    yield running
    await running.stop()
    await bus.close()


async def test_a_host_the_token_sets_to_passthrough_is_refused_as_an_http_tunnel(
    stack: Stack, service: LocalService, agents: AgentRunner
) -> None:
    token = token_with_tls({"shop.localhost": "passthrough"})
    spec = TunnelSpec("http", "127.0.0.1", service.port, name="shop")
    agent = await agents.start(stack.edge, spec, token=token, wait=False)
    await wait_for(lambda: bool(agent.tunnels[0].error), what="bind refusal")
    assert "this authtoken sets shop.localhost to TLS passthrough" in agent.tunnels[0].error
    assert "burrow tls" in agent.tunnels[0].error
    assert not agent.tunnels[0].url
    assert stack.edge.routes.lookup_host("shop.localhost") is None


async def test_a_host_the_token_sets_to_terminate_is_refused_as_a_tls_tunnel(
    stack: Stack, service: LocalService, agents: AgentRunner
) -> None:
    token = token_with_tls({"*.localhost": "terminate"})
    spec = TunnelSpec("tls", "127.0.0.1", service.port, name="shop")
    agent = await agents.start(stack.edge, spec, token=token, wait=False)
    await wait_for(lambda: bool(agent.tunnels[0].error), what="bind refusal")
    assert "this authtoken sets shop.localhost to TLS termination" in agent.tunnels[0].error
    assert not agent.tunnels[0].url


async def test_the_mode_the_token_sets_binds(
    stack: Stack, service: LocalService, agents: AgentRunner
) -> None:
    token = token_with_tls({"*.localhost": "passthrough", "shop.localhost": "terminate"})
    spec = TunnelSpec("http", "127.0.0.1", service.port, name="shop")
    agent = await agents.start(stack.edge, spec, token=token)
    assert agent.tunnels[0].url.startswith("https://shop.localhost")
