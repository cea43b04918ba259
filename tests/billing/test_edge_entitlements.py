"""A plan's edge entitlements on a real edge, control and Redis: the edge learns them from
the routing snapshot and events, refuses past them offline and says to upgrade, and a
change to the plan reaches it without a reconnect."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from proto.messages import Bound
from tests.e2e.conftest import wait_for
from tests.e2e.test_control_plane import Stack
from tests.e2e.test_control_plane import _stack as platform_stack
from tests.e2e.test_tenant_isolation import bind, link, refused_with


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
        "POST", "/v1/admin/plans", 201,
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
    assert any(l.org == org and l.tunnels == 4 and l.plan == "team-edge" for l in snapshot.limits)
