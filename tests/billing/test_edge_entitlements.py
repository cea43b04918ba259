"""A plan's edge entitlements on a real edge, control and Redis: the edge learns them from
the routing snapshot and events, refuses past them offline and says to upgrade, and a
change to the plan reaches it without a reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agent.tunnels import TunnelSpec
from proto.messages import Bound
from tests.e2e.client import get
from tests.e2e.conftest import AgentRunner, agents, service, wait_for
from tests.e2e.origin import LocalService
from tests.e2e.test_control_plane import Stack
from tests.e2e.test_control_plane import _stack as platform_stack
from tests.e2e.test_tenant_isolation import bind, link, refused_with

__all__ = ["agents", "service"]  # the e2e fixtures this module uses


@pytest.fixture
async def platform(database_url: str, redis_url: str, redis_cleanup: str) -> AsyncIterator[Stack]:
    async for running in platform_stack(database_url, redis_url, redis_cleanup):
        yield running


async def test_the_fourth_tunnel_on_a_three_tunnel_plan_is_refused_at_the_edge(
    platform: Stack,
) -> None:
    customer = await platform.signup("owner@billing-edge.example")
    org = customer["org"]["id"]
    token = await platform.call("POST", "/v1/tokens", customer["key"], status=201, json={})
    await platform.sign_in_operator("ops@billing-edge.example")
    plan = await platform.operator_call(
        "POST",
        "/v1/admin/plans",
        201,
        json={"id": "team-edge", "name": "Team", "price_cents": 2000, "tunnels": 3},
    )
    await platform.operator_call("PUT", f"/v1/admin/orgs/{org}/plan", json={"plan": plan["id"]})
    ownership = platform.edge.ownership

    def tunnels_allowed() -> int:
        limits = ownership.limits_for(org)
        return limits.tunnels if limits is not None else 0

    await wait_for(lambda: tunnels_allowed() == 3, 10.0, "the plan's limit to reach the edge")
    raw = await link(platform.edge.config.agent_port, token["token"])
    try:
        for _ in range(3):
            assert isinstance(await bind(raw, ""), Bound)
        says = refused_with(await bind(raw, ""), "quota")
        assert "may hold 3 tunnels" in says
        assert "upgrade from the team-edge plan" in says

        # The operator raises the plan; every org on it gets the new limit at once.
        await platform.operator_call("PATCH", f"/v1/admin/plans/{plan['id']}", json={"tunnels": 4})
        await wait_for(lambda: tunnels_allowed() == 4, 10.0, "the raised limit")
        assert isinstance(await bind(raw, ""), Bound)
        refused_with(await bind(raw, ""), "quota")
    finally:
        raw.close()

    # An edge that starts now gets the plan's limit in its snapshot.
    snapshot = await platform.sync.source.fetch()
    assert any(x.org == org and x.tunnels == 4 and x.plan == "team-edge" for x in snapshot.limits)


async def test_usage_flows_back_with_edge_reports_and_is_metered_per_period(
    platform: Stack, service: LocalService, agents: AgentRunner
) -> None:
    customer = await platform.signup("owner@billing-usage.example")
    await platform.call("POST", "/v1/names", customer["key"], status=201, json={"name": "meter"})
    token = await platform.call("POST", "/v1/tokens", customer["key"], status=201, json={})
    spec = TunnelSpec("http", "127.0.0.1", service.port, name="meter")
    await agents.start(platform.edge, spec, token=token["token"])
    for _ in range(5):  # five visitors, one connection each
        resp = await get(platform.edge.config.http_port, "meter.tunnels.test", "/hello")
        assert resp.status == 200

    async def usage() -> dict[str, int]:
        state = await platform.call("GET", "/v1/billing", customer["key"])
        return state["usage"]  # type: ignore[no-any-return]

    for _ in range(100):  # the edge reports every 0.5 s in this stack
        if (await usage())["connections_this_period"] >= 5:
            break
        await asyncio.sleep(0.1)
    metered = await usage()
    assert metered["connections_this_period"] == 5
    # Each request and response crossed the agent link: far more than nothing, far less
    # than the heartbeat traffic of a long test could explain alone.
    assert metered["bandwidth_bytes_month"] > 5 * len(b"GET /hello HTTP/1.1\r\n")
    # Later reports add only what is new: no double counting.
    await asyncio.sleep(1.2)
    assert (await usage())["connections_this_period"] == 5
