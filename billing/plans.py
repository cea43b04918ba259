"""Plans and the entitlements they grant, and how an org's entitlements reach the places
that enforce them.

Edges enforce ``tunnels``, ``agents`` (agent links), ``tcp_ports`` and ``connections``
(visitor connections open at once) offline: an org's effective values (an operator's
override in ``orgs.limits`` where set, else its plan's) travel in the routing snapshot and
in ``OrgLimitsSet`` events (the ``org_edge_limits`` view computes them). Control checks the
rest in the API (``require_room``): reserved names, custom domains, seats, agent tokens.
An entitlement of 0 is "no limit of ours" (for edge limits: the edge's own default).
"""

from __future__ import annotations

from typing import Any

from bus.events import OrgLimitsSet
from control.db import Queries
from control.errors import ApiError
from control.routing_outbox import RoutingOutbox, org_limits

FREE_PLAN = "free"

# Entitlement columns of ``plans``, with what they mean to a customer.
ENTITLEMENTS: dict[str, str] = {
    "tunnels": "tunnels online at once",
    "agents": "agents connected at once",
    "tcp_ports": "TCP ports at once",
    "connections": "visitor connections open at once",
    "requests_per_minute": "requests per minute",
    "bandwidth_bytes_month": "bytes of traffic per month",
    "capture_retention_days": "days captured requests are kept",
    "reserved_names": "reserved names",
    "custom_domains": "custom domains",
    "seats": "members",
    "tokens": "active agent tokens",
}
PLAN_COLUMNS = (
    "id, name, price_cents, currency, interval, public, "
    + ", ".join(ENTITLEMENTS)
    + ", created_at, updated_at"
)
# How to count what an org uses of each entitlement control checks.
_USED = {
    "reserved_names": "SELECT count(*) FROM reserved_names WHERE org_id = %s",
    "custom_domains": "SELECT count(*) FROM domains WHERE org_id = %s",
    "seats": "SELECT (SELECT count(*) FROM memberships WHERE org_id = %(org)s)"
    " + (SELECT count(*) FROM invitations WHERE org_id = %(org)s AND accepted_at IS NULL"
    "    AND expires_at > now())",
    "tokens": "SELECT count(*) FROM agent_tokens WHERE org_id = %s AND revoked_at IS NULL"
    " AND (expires_at IS NULL OR expires_at > now())",
}


async def plan_of(q: Queries, org_id: str) -> dict[str, Any]:
    """The plan ``org_id`` is on now (the free plan when it has no subscription)."""
    columns = ", ".join(f"p.{c.strip()}" for c in PLAN_COLUMNS.split(","))
    row = await q.one(
        f"SELECT {columns} FROM plans p"
        " WHERE p.id = coalesce((SELECT plan_id FROM subscriptions WHERE org_id = %s), %s)",
        (org_id, FREE_PLAN),
    )
    assert row is not None, "the free plan is seeded by migration 0005 and cannot be deleted"
    return row


async def usage_counts(q: Queries, org_id: str) -> dict[str, int]:
    """What ``org_id`` uses now of each entitlement control counts."""
    used = {}
    for name, sql in _USED.items():
        params: Any = {"org": org_id} if "%(org)s" in sql else (org_id,)
        used[name] = int(await q.value(sql, params) or 0)
    return used


async def require_room(q: Queries, org_id: str, entitlement: str, adding: int = 1) -> None:
    """402 naming the limit and the plan when ``adding`` more of ``entitlement`` would take
    ``org_id`` past its plan. Takes the org's row lock, so concurrent requests cannot both
    squeeze past the last free slot."""
    await q.execute("SELECT 1 FROM orgs WHERE id = %s FOR UPDATE", (org_id,))
    plan = await plan_of(q, org_id)
    limit = int(plan[entitlement])
    if not limit:
        return
    sql = _USED[entitlement]
    params: Any = {"org": org_id} if "%(org)s" in sql else (org_id,)
    used = int(await q.value(sql, params) or 0)
    if used + adding > limit:
        raise ApiError(
            402,
            "plan_limit",
            f"the {plan['name']} plan allows {limit} {ENTITLEMENTS[entitlement]}; remove one, "
            "or upgrade the plan (GET /v1/plans, then POST /v1/billing/checkout)",
            limit=entitlement,
            allowed=limit,
            plan=plan["id"],
        )


async def publish_limits(q: Queries, outbox: RoutingOutbox, org_id: str) -> None:
    """Tell every edge ``org_id``'s effective limits, inside the caller's transaction (call
    ``outbox.changed()`` after it commits)."""
    row = await q.one("SELECT limits, plan_id FROM org_edge_limits WHERE id = %s", (org_id,))
    if row is None:
        return
    limits = org_limits(org_id, row["limits"], plan=str(row["plan_id"]))
    await outbox.record(q, lambda seq: OrgLimitsSet(seq=seq, limits=limits))


async def publish_plan_limits(q: Queries, outbox: RoutingOutbox, plan_id: str) -> int:
    """After a plan's entitlements changed: every org on it gets its new limits."""
    if plan_id == FREE_PLAN:
        rows = await q.all(
            "SELECT o.id FROM orgs o LEFT JOIN subscriptions s ON s.org_id = o.id"
            " WHERE coalesce(s.plan_id, %s) = %s ORDER BY o.id",
            (FREE_PLAN, FREE_PLAN),
        )
    else:
        rows = await q.all(
            "SELECT org_id AS id FROM subscriptions WHERE plan_id = %s ORDER BY org_id",
            (plan_id,),
        )
    for row in rows:
        await publish_limits(q, outbox, row["id"])
    return len(rows)
