"""A plan's entitlements that control checks: reserved names, custom domains, agent
tokens and seats are refused past the plan with 402 naming the limit; operators edit
plans and put an org on one; GET /v1/billing shows usage against the plan."""

from __future__ import annotations

import pytest

from billing.settings import BillingSettings
from tests.billing.conftest import Shop


async def test_control_side_limits_follow_the_plan(shop: Shop) -> None:
    plan = await shop.plan(reserved_names=1, custom_domains=1, tokens=1, seats=1)
    user = await shop.customer()
    key, org = user["key"], user["org"]["id"]
    await shop.as_operator("PUT", f"/v1/admin/orgs/{org}/plan", json={"plan": plan["id"]})

    await shop.api.call("POST", "/v1/names", key, 201, json={"name": f"first-{org[-6:]}"})
    refused = await shop.api.call("POST", "/v1/names", key, 402, json={"name": f"two-{org[-6:]}"})
    assert refused["error"]["code"] == "plan_limit"
    assert refused["error"]["limit"] == "reserved_names"
    assert f"the {plan['name']} plan allows 1 reserved names" in refused["error"]["message"]
    assert "upgrade" in refused["error"]["message"]

    await shop.api.call(
        "POST", "/v1/domains", key, 201, json={"domain": f"a{org[-6:]}.example.com"}
    )
    refused = await shop.api.call(
        "POST", "/v1/domains", key, 402, json={"domain": f"b{org[-6:]}.example.com"}
    )
    assert refused["error"]["limit"] == "custom_domains"

    await shop.api.call("POST", "/v1/tokens", key, 201, json={})
    refused = await shop.api.call("POST", "/v1/tokens", key, 402, json={})
    assert refused["error"]["limit"] == "tokens"

    refused = await shop.api.call("POST", "/v1/members", key, 402, json={"email": "x@example.com"})
    assert refused["error"]["limit"] == "seats"

    state = await shop.state(user)
    assert state["plan"]["id"] == plan["id"]
    assert state["entitlements"]["reserved_names"] == 1
    assert state["usage"]["reserved_names"] == 1
    assert state["usage"]["tokens"] == 1
    assert state["usage"]["seats"] == 1

    # The operator raises the plan: the same request goes through.
    await shop.as_operator("PATCH", f"/v1/admin/plans/{plan['id']}", json={"reserved_names": 2})
    await shop.api.call("POST", "/v1/names", key, 201, json={"name": f"two-{org[-6:]}"})


async def test_operators_manage_plans(shop: Shop) -> None:
    plan = await shop.plan(tunnels=3)
    listed = await shop.as_operator("GET", "/v1/admin/plans")
    assert any(p["id"] == plan["id"] and p["tunnels"] == 3 for p in listed["plans"])
    again = await shop.as_operator(
        "POST", "/v1/admin/plans", 409, json={"id": plan["id"], "name": "x"}
    )
    assert "exists" in again["error"]["message"]
    bad = await shop.as_operator(
        "POST", "/v1/admin/plans", 422, json={"id": "y1", "name": "Y", "prices": {"square": "a"}}
    )
    assert "unknown provider" in bad["error"]["message"]
    taken = await shop.as_operator(
        "POST",
        "/v1/admin/plans",
        409,
        json={"id": f"{plan['id']}-b", "name": "B", "prices": {"stripe": plan["prices"]["stripe"]}},
    )
    assert "already belongs" in taken["error"]["message"]
    await shop.as_operator("DELETE", "/v1/admin/plans/free", 409)
    user = await shop.customer()
    await shop.as_operator(
        "PUT", f"/v1/admin/orgs/{user['org']['id']}/plan", json={"plan": plan["id"]}
    )
    busy = await shop.as_operator("DELETE", f"/v1/admin/plans/{plan['id']}", 409)
    assert "1 organization" in busy["error"]["message"]
    spare = await shop.plan()
    await shop.as_operator("DELETE", f"/v1/admin/plans/{spare['id']}")
    # Customers never reach the admin routes.
    await shop.api.call("GET", "/v1/admin/plans", user["key"], 403)


def test_a_provider_without_its_webhook_secret_is_named_at_start() -> None:
    settings = BillingSettings.from_environ(
        {"BURROW_BILLING_STRIPE_API_KEY": "sk_live_x", "BURROW_BILLING_GRACE_DAYS": "3"}
    )
    assert settings.providers == ("stripe",) and settings.grace_days == 3.0
    assert settings.problems() == [
        "stripe is on but BURROW_BILLING_STRIPE_WEBHOOK_SECRET is unset; set it (from the "
        "stripe dashboard) or unset the stripe keys"
    ]
    with pytest.raises(ValueError, match="BURROW_BILLING_GRACE_DAYS='soon'"):
        BillingSettings.from_environ({"BURROW_BILLING_GRACE_DAYS": "soon"})
