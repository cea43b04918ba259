"""The operator's API under /v1/admin: every user, org, domain, edge and tunnel of the
installation, and the keys agent tokens are signed with.

Only a signed-in operator (``users.is_admin``) may call it. API keys belong to one
organization and never act for the installation, whoever created them.

Lists page by id: ``?limit=`` (1-1000, default 100) and ``?after=<last id seen>``; a full page
carries ``next_after`` to ask for the next one.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import web

from billing.plans import FREE_PLAN, PLAN_COLUMNS, publish_limits, publish_plan_limits
from bus.events import NameClaim, NameSet, OrgSuspended
from control import principals
from control.api import domains, tunnels
from control.api.names import host_for
from control.bodies import read_json, to_json, to_json_status
from control.db import Row, json_param
from control.errors import ApiError
from control.ids import new_id
from control.keys import CONFIG, DB, OUTBOX, SIGNING
from control.openapi import describe
from control.principals import Principal
from control.signing_keys import SigningKeyError
from control.store.accounts import audit
from control.store.tokens import revoke_tokens

routes = web.RouteTableDef()

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class UserPatch(msgspec.Struct, forbid_unknown_fields=True):
    disabled: bool | msgspec.UnsetType = msgspec.UNSET
    is_admin: bool | msgspec.UnsetType = msgspec.UNSET


Quota = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]


class LimitsBody(msgspec.Struct, forbid_unknown_fields=True):
    """An org's quotas at every edge; 0: the edge's default."""

    tunnels: Quota = 0
    links: Quota = 0
    tcp_ports: Quota = 0
    streams: Quota = 0  # visitor connections open at once


class OrgPatch(msgspec.Struct, forbid_unknown_fields=True):
    suspended: bool | msgspec.UnsetType = msgspec.UNSET
    limits: LimitsBody | msgspec.UnsetType = msgspec.UNSET


class AssignBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    org_id: str


async def operator(request: web.Request) -> Principal:
    who = await principals.principal(request)
    if who.via != "session":
        raise ApiError(
            403,
            "forbidden",
            "the admin API takes a signed-in operator; API keys belong to one organization",
        )
    if not who.is_admin:
        raise ApiError(403, "forbidden", "this needs an operator of this Burrow installation")
    return who


def page(request: web.Request) -> dict[str, Any]:
    """``limit`` and ``after`` from the query string, as SQL parameters; 422 when bad."""
    text = request.query.get("limit", str(DEFAULT_LIMIT))
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(
            422, "invalid", f"limit must be a whole number from 1 to {MAX_LIMIT}, not {text[:20]!r}"
        )
    after = request.query.get("after", "")
    if len(after) > 200 or any(ord(c) < 32 for c in after):
        raise ApiError(422, "invalid", "after must be an id from a previous page")
    return {"limit": int(text), "after": after}


def paged(name: str, rows: list[Row], params: dict[str, Any], key: str = "id") -> web.Response:
    more = rows[-1][key] if len(rows) == params["limit"] else None
    return to_json({name: rows, "next_after": more})


@routes.get("/v1/admin/users")
@describe("Every user of the installation.", auth="admin")
async def admin_users(request: web.Request) -> web.Response:
    await operator(request)
    params = page(request)
    rows = await request.app[DB].all(
        "SELECT u.id, u.email, u.name, u.is_admin, u.disabled_at, u.created_at,"
        " (SELECT count(*) FROM memberships m WHERE m.user_id = u.id) AS org_count"
        " FROM users u WHERE u.id > %(after)s ORDER BY u.id LIMIT %(limit)s",
        params,
    )
    return paged("users", rows, params)


@routes.patch("/v1/admin/users/{user_id}")
@describe(
    "Disable or enable a user (disabling signs them out everywhere), or make or unmake an "
    "operator.",
    body=UserPatch,
    auth="admin",
)
async def admin_update_user(request: web.Request) -> web.Response:
    who = await operator(request)
    body = await read_json(request, UserPatch)
    user_id = request.match_info["user_id"][:64]
    if user_id == who.user_id and (body.disabled is True or body.is_admin is False):
        raise ApiError(
            409,
            "own_account",
            "you cannot disable or demote your own account; ask another operator",
        )
    async with request.app[DB].transaction() as q:
        row = await q.one(
            "UPDATE users SET"
            " disabled_at = CASE WHEN %(disabled)s IS NULL THEN disabled_at"
            "   WHEN %(disabled)s THEN coalesce(disabled_at, now()) ELSE NULL END,"
            " is_admin = coalesce(%(is_admin)s, is_admin)"
            " WHERE id = %(id)s"
            " RETURNING id, email, name, is_admin, disabled_at, created_at",
            {
                "disabled": None if body.disabled is msgspec.UNSET else body.disabled,
                "is_admin": None if body.is_admin is msgspec.UNSET else body.is_admin,
                "id": user_id,
            },
        )
        if row is None:
            raise ApiError(404, "not_found", "no user with that id")
        if body.disabled is True:
            await q.execute("DELETE FROM sessions WHERE user_id = %s", (user_id,))
            # Their agent tokens stop too, in every org, and their tunnels end.
            await revoke_tokens(q, request.app[OUTBOX], created_by=user_id)
        if body.disabled is not msgspec.UNSET:
            action = "user.disable" if body.disabled else "user.enable"
            await audit(q, None, who.actor, action, user_id)
        if body.is_admin is not msgspec.UNSET:
            action = "user.make_admin" if body.is_admin else "user.remove_admin"
            await audit(q, None, who.actor, action, user_id)
    request.app[OUTBOX].changed()
    return to_json(row)


@routes.get("/v1/admin/orgs")
@describe("Every organization, with its member, token and domain counts.", auth="admin")
async def admin_orgs(request: web.Request) -> web.Response:
    await operator(request)
    params = page(request)
    rows = await request.app[DB].all(
        "SELECT o.id, o.name, o.created_at, o.suspended_at, o.limits,"
        " (SELECT count(*) FROM memberships m WHERE m.org_id = o.id) AS member_count,"
        " (SELECT count(*) FROM agent_tokens t WHERE t.org_id = o.id AND t.revoked_at IS NULL)"
        "   AS token_count,"
        " (SELECT count(*) FROM domains d WHERE d.org_id = o.id) AS domain_count"
        " FROM orgs o WHERE o.id > %(after)s ORDER BY o.id LIMIT %(limit)s",
        params,
    )
    return paged("orgs", rows, params)


_ORG_COLUMNS = "id, name, created_at, suspended_at, limits"


@routes.patch("/v1/admin/orgs/{org_id}")
@describe(
    "Suspend an organization (its agents are ended and refused at every edge until lifted) "
    "or lift that, or set its quotas (tunnels, agent links, TCP ports, visitor streams; "
    "0: the edge default).",
    body=OrgPatch,
    auth="admin",
)
async def admin_update_org(request: web.Request) -> web.Response:
    who = await operator(request)
    body = await read_json(request, OrgPatch)
    org_id = request.match_info["org_id"][:64]
    outbox = request.app[OUTBOX]
    async with request.app[DB].transaction() as q:
        row = await q.one(f"SELECT {_ORG_COLUMNS} FROM orgs WHERE id = %s FOR UPDATE", (org_id,))
        if row is None:
            raise ApiError(404, "not_found", "no organization with that id")
        if body.suspended is not msgspec.UNSET:
            suspended = body.suspended
            row = await q.one(
                "UPDATE orgs SET suspended_at = CASE WHEN %s THEN coalesce(suspended_at, now())"
                f" END WHERE id = %s RETURNING {_ORG_COLUMNS}",
                (suspended, org_id),
            )
            await outbox.record(
                q, lambda seq: OrgSuspended(seq=seq, org=org_id, suspended=suspended)
            )
            await audit(
                q, org_id, who.actor, "org.suspend" if suspended else "org.unsuspend", org_id
            )
        if body.limits is not msgspec.UNSET:
            given = {k: v for k, v in msgspec.to_builtins(body.limits).items() if v}
            row = await q.one(
                f"UPDATE orgs SET limits = %s WHERE id = %s RETURNING {_ORG_COLUMNS}",
                (json_param(given), org_id),
            )
            # Edges get the override merged with the org's plan (0: the plan's value).
            await publish_limits(q, outbox, org_id)
            await audit(q, org_id, who.actor, "org.limits", org_id)
    outbox.changed()
    return to_json(row)


@routes.post("/v1/admin/orgs/{org_id}/revoke-tokens")
@describe(
    "Revoke every agent token of an organization: every edge ends their agents' links.",
    auth="admin",
)
async def admin_revoke_org_tokens(request: web.Request) -> web.Response:
    who = await operator(request)
    org_id = request.match_info["org_id"][:64]
    outbox = request.app[OUTBOX]
    async with request.app[DB].transaction() as q:
        if await q.value("SELECT 1 FROM orgs WHERE id = %s", (org_id,)) is None:
            raise ApiError(404, "not_found", "no organization with that id")
        revoked = await revoke_tokens(q, outbox, org_id=org_id)
        await audit(q, org_id, who.actor, "org.revoke_tokens", org_id)
    outbox.changed()
    return to_json({"revoked": revoked})


@routes.post("/v1/admin/names")
@describe(
    "Give a name under the base domain to an organization, taking it from whoever holds or "
    "uses it: their tunnels on it end at every edge.",
    body=AssignBody,
    auth="admin",
)
async def admin_assign_name(request: web.Request) -> web.Response:
    who = await operator(request)
    body = await read_json(request, AssignBody)
    host = host_for(body.name, request.app[CONFIG].base_domain)
    org_id = body.org_id[:64]
    outbox = request.app[OUTBOX]
    async with request.app[DB].transaction() as q:
        if await q.value("SELECT 1 FROM orgs WHERE id = %s", (org_id,)) is None:
            raise ApiError(404, "not_found", "no organization with that id")
        row = await q.one(
            "INSERT INTO reserved_names (id, org_id, host) VALUES (%s, %s, %s)"
            " ON CONFLICT (host) DO UPDATE SET org_id = excluded.org_id, created_at = now()"
            " RETURNING id, host, org_id, created_at",
            (new_id("name"), org_id, host),
        )
        claim = NameClaim(host, org_id)
        await outbox.record(q, lambda seq: NameSet(seq=seq, claim=claim))
        await audit(q, org_id, who.actor, "name.assign", host)
    outbox.changed()
    return to_json_status(row, 201)


@routes.get("/v1/admin/domains")
@describe("Every custom domain, with its verification and TLS state.", auth="admin")
async def admin_domains(request: web.Request) -> web.Response:
    await operator(request)
    params = page(request)
    rows = await request.app[DB].all(
        "SELECT d.id, d.host, d.org_id, o.name AS org_name, d.strict, d.verified_at,"
        " d.verified_by, d.last_check_at, d.last_check_error, d.target_name AS target,"
        " d.tls_mode, d.tls_status, d.tls_not_after, d.tls_last_checked_at, d.tls_last_error,"
        " d.created_at"
        " FROM domains d JOIN orgs o ON o.id = d.org_id"
        " WHERE d.id > %(after)s ORDER BY d.id LIMIT %(limit)s",
        params,
    )
    return paged("domains", rows, params)


@routes.post("/v1/admin/domains/{domain_id}/release")
@describe(
    "Release a custom domain from the organization holding it, verified or not: edges stop "
    "routing it and any organization may add it again. Audited under that organization.",
    auth="admin",
)
async def admin_release_domain(request: web.Request) -> web.Response:
    who = await operator(request)
    outbox = request.app[OUTBOX]
    async with request.app[DB].transaction() as q:
        row = await q.one(
            "DELETE FROM domains WHERE id = %s RETURNING id, host, org_id, verified_at",
            (request.match_info["domain_id"][:64],),
        )
        if row is None:
            raise ApiError(404, "not_found", "no domain with that id")
        await domains.remove_domain_row(request, q, row, who.actor, "domain.release")
    outbox.changed()
    return to_json({"released": row["host"], "org_id": row["org_id"]})


@routes.post("/v1/admin/domains/{domain_id}/tls/retry")
@describe(
    "Clear a domain's certificate backoff and failure count, so the certs worker orders "
    "again at its next pass (after fixing what tls_last_error said). Audited.",
    auth="admin",
)
async def admin_retry_tls(request: web.Request) -> web.Response:
    who = await operator(request)
    async with request.app[DB].transaction() as q:
        row = await q.one(
            "SELECT id, host, org_id FROM domains WHERE id = %s",
            (request.match_info["domain_id"][:64],),
        )
        if row is None:
            raise ApiError(404, "not_found", "no domain with that id")
        queued = await q.execute(
            "UPDATE cert_work SET next_attempt_at = NULL, failures = 0, failed_alerted = false"
            " WHERE host = %s",
            (row["host"],),
        )
        await audit(q, row["org_id"], who.actor, "domain.tls_retry", str(row["host"]))
    return to_json({"host": row["host"], "queued": bool(queued)})


@routes.get("/v1/admin/edges")
@describe("Every edge that has reported: its tunnel count, and whether it is stale.", auth="admin")
async def admin_edges(request: web.Request) -> web.Response:
    await operator(request)
    params = {**page(request), "stale": request.app[CONFIG].edge_stale_seconds}
    rows = await request.app[DB].all(
        "SELECT e.id, e.version, e.started_at, e.last_seen_at, e.draining, e.stopped_at,"
        " (SELECT count(*) FROM live_tunnels t WHERE t.edge_id = e.id) AS tunnel_count,"
        " e.last_seen_at < now() - make_interval(secs => %(stale)s) AS stale"
        " FROM edges e WHERE e.id > %(after)s ORDER BY e.id LIMIT %(limit)s",
        params,
    )
    return paged("edges", rows, params)


@routes.get("/v1/admin/tunnels")
@describe("Every tunnel online now, on edges that are not stale.", auth="admin")
async def admin_tunnels(request: web.Request) -> web.Response:
    await operator(request)
    params = {**page(request), "stale": request.app[CONFIG].edge_stale_seconds}
    rows = await request.app[DB].all(
        f"SELECT {tunnels.COLUMNS} {tunnels.LIVE} AND t.key > %(after)s"
        " ORDER BY t.key LIMIT %(limit)s",
        params,
    )
    return paged("tunnels", rows, params, key="key")


@routes.get("/v1/admin/signing-keys")
@describe("The keys agent tokens are signed with; the newest active one signs.", auth="admin")
async def admin_signing_keys(request: web.Request) -> web.Response:
    await operator(request)
    return to_json({"signing_keys": await request.app[SIGNING].list()})


@routes.post("/v1/admin/signing-keys/rotate")
@describe(
    "Make a new signing key; new tokens use it, tokens already issued keep working.",
    auth="admin",
    status=201,
)
async def admin_rotate_key(request: web.Request) -> web.Response:
    who = await operator(request)
    key = await request.app[SIGNING].rotate()
    await audit(request.app[DB], None, who.actor, "signing_key.rotate", key.kid)
    row = next(r for r in await request.app[SIGNING].list() if r["kid"] == key.kid)
    return to_json_status(row, 201)


@routes.post("/v1/admin/signing-keys/{kid}/retire")
@describe("Retire a signing key: every token it signed stops working at every edge.", auth="admin")
async def admin_retire_key(request: web.Request) -> web.Response:
    who = await operator(request)
    kid = request.match_info["kid"][:64]
    try:
        row = await request.app[SIGNING].retire(kid)
    except SigningKeyError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    if row is None:
        raise ApiError(404, "not_found", "no active signing key with that id")
    await audit(request.app[DB], None, who.actor, "signing_key.retire", kid)
    return to_json(row)


# -- billing: plans, an org's plan, events, reconciliation --------------------------------

PlanId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
Money = Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]
Entitlement = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
UNSET = msgspec.UNSET


class PlanBody(msgspec.Struct, forbid_unknown_fields=True):
    """A plan; every entitlement defaults to 0 (no limit of ours; for the edge limits, the
    edge's own default). ``prices``: provider name -> that provider's plan or price id."""

    id: PlanId
    name: str
    price_cents: Money = 0
    currency: str = "usd"
    interval: str = "month"
    public: bool = True
    tunnels: Entitlement = 0
    agents: Entitlement = 0
    tcp_ports: Entitlement = 0
    connections: Entitlement = 0
    requests_per_minute: Entitlement = 0
    bandwidth_bytes_month: Entitlement = 0
    capture_retention_days: Entitlement = 0
    reserved_names: Entitlement = 0
    custom_domains: Entitlement = 0
    seats: Entitlement = 0
    tokens: Entitlement = 0
    prices: dict[str, str] = {}


class PlanPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: str | msgspec.UnsetType = UNSET
    price_cents: Money | msgspec.UnsetType = UNSET
    currency: str | msgspec.UnsetType = UNSET
    interval: str | msgspec.UnsetType = UNSET
    public: bool | msgspec.UnsetType = UNSET
    tunnels: Entitlement | msgspec.UnsetType = UNSET
    agents: Entitlement | msgspec.UnsetType = UNSET
    tcp_ports: Entitlement | msgspec.UnsetType = UNSET
    connections: Entitlement | msgspec.UnsetType = UNSET
    requests_per_minute: Entitlement | msgspec.UnsetType = UNSET
    bandwidth_bytes_month: Entitlement | msgspec.UnsetType = UNSET
    capture_retention_days: Entitlement | msgspec.UnsetType = UNSET
    reserved_names: Entitlement | msgspec.UnsetType = UNSET
    custom_domains: Entitlement | msgspec.UnsetType = UNSET
    seats: Entitlement | msgspec.UnsetType = UNSET
    tokens: Entitlement | msgspec.UnsetType = UNSET
    prices: dict[str, str] | msgspec.UnsetType = UNSET


class OrgPlanBody(msgspec.Struct, forbid_unknown_fields=True):
    plan: str


# Entitlements the edges enforce: a change to one of these reaches every org on the plan.
_EDGE_ENTITLEMENTS = frozenset({"tunnels", "agents", "tcp_ports", "connections"})
_PROVIDERS = frozenset({"stripe", "razorpay", "paypal", "mock"})


def _checked_plan_fields(fields: dict[str, Any]) -> dict[str, Any]:
    if "interval" in fields and fields["interval"] not in ("month", "year"):
        raise ApiError(422, "invalid", "interval must be month or year")
    if "currency" in fields:
        currency = str(fields["currency"]).lower()
        if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
            raise ApiError(422, "invalid", "currency must be a three-letter ISO 4217 code")
        fields["currency"] = currency
    if "name" in fields and not 1 <= len(fields["name"].strip()) <= 80:
        raise ApiError(422, "invalid", "name must be 1 to 80 characters")
    for provider, ref in (fields.get("prices") or {}).items():
        if provider not in _PROVIDERS:
            raise ApiError(
                422,
                "invalid",
                f"prices: unknown provider {provider[:20]!r} "
                f"(known: {', '.join(sorted(_PROVIDERS))})",
            )
        if not 1 <= len(ref) <= 200:
            raise ApiError(422, "invalid", f"prices.{provider} must be the provider's plan id")
    return fields


async def _plan_with_prices(q: Any, plan_id: str) -> dict[str, Any] | None:
    row = await q.one(f"SELECT {PLAN_COLUMNS} FROM plans WHERE id = %s", (plan_id,))
    if row is None:
        return None
    prices = await q.all(
        "SELECT provider, provider_plan_id FROM plan_prices WHERE plan_id = %s", (plan_id,)
    )
    row["prices"] = {p["provider"]: p["provider_plan_id"] for p in prices}
    return row


async def _set_prices(q: Any, plan_id: str, prices: dict[str, str]) -> None:
    await q.execute("DELETE FROM plan_prices WHERE plan_id = %s", (plan_id,))
    for provider, ref in sorted(prices.items()):
        taken = await q.value(
            "SELECT plan_id FROM plan_prices WHERE provider = %s AND provider_plan_id = %s",
            (provider, ref),
        )
        if taken:
            raise ApiError(409, "taken", f"{provider} plan {ref} already belongs to plan {taken}")
        await q.execute(
            "INSERT INTO plan_prices (plan_id, provider, provider_plan_id) VALUES (%s, %s, %s)",
            (plan_id, provider, ref),
        )


@routes.get("/v1/admin/plans")
@describe("Every plan, public or not, with its provider plan ids.", auth="admin")
async def admin_plans(request: web.Request) -> web.Response:
    await operator(request)
    async with request.app[DB].transaction() as q:
        ids = await q.all("SELECT id FROM plans ORDER BY price_cents, id")
        plans = [await _plan_with_prices(q, r["id"]) for r in ids]
    return to_json({"plans": plans})


@routes.post("/v1/admin/plans")
@describe("Create a plan.", body=PlanBody, auth="admin", status=201)
async def admin_create_plan(request: web.Request) -> web.Response:
    who = await operator(request)
    body = await read_json(request, PlanBody)
    fields = _checked_plan_fields(msgspec.to_builtins(body))
    prices = fields.pop("prices")
    columns = ", ".join(fields)
    async with request.app[DB].transaction() as q:
        created = await q.value(
            f"INSERT INTO plans ({columns}) VALUES ({', '.join(f'%({c})s' for c in fields)})"
            " ON CONFLICT (id) DO NOTHING RETURNING id",
            fields,
        )
        if created is None:
            raise ApiError(409, "taken", f"a plan called {body.id} exists; PATCH it instead")
        await _set_prices(q, body.id, prices)
        await audit(q, None, who.actor, "plan.create", body.id)
        row = await _plan_with_prices(q, body.id)
    return to_json_status(row, 201)


@routes.patch("/v1/admin/plans/{plan_id}")
@describe(
    "Change a plan: its price, its provider plan ids, its entitlements (edges enforce the "
    "new limits for every organization on it at once).",
    body=PlanPatch,
    auth="admin",
)
async def admin_update_plan(request: web.Request) -> web.Response:
    who = await operator(request)
    body = await read_json(request, PlanPatch)
    plan_id = request.match_info["plan_id"][:64]
    fields = _checked_plan_fields(
        {k: v for k, v in msgspec.structs.asdict(body).items() if v is not UNSET}
    )
    prices = fields.pop("prices", None)
    outbox = request.app[OUTBOX]
    async with request.app[DB].transaction() as q:
        old = await q.one(f"SELECT {PLAN_COLUMNS} FROM plans WHERE id = %s FOR UPDATE", (plan_id,))
        if old is None:
            raise ApiError(404, "not_found", "no plan with that id")
        if fields:
            sets = ", ".join(f"{c} = %({c})s" for c in fields)
            await q.execute(
                f"UPDATE plans SET {sets}, updated_at = now() WHERE id = %(plan_id)s",
                {**fields, "plan_id": plan_id},
            )
        if prices is not None:
            await _set_prices(q, plan_id, prices)
        if any(fields.get(k, old[k]) != old[k] for k in _EDGE_ENTITLEMENTS):
            await publish_plan_limits(q, outbox, plan_id)
        await audit(q, None, who.actor, "plan.update", plan_id)
        row = await _plan_with_prices(q, plan_id)
    outbox.changed()
    return to_json(row)


@routes.delete("/v1/admin/plans/{plan_id}")
@describe("Delete a plan nobody is on (the free plan stays).", auth="admin")
async def admin_delete_plan(request: web.Request) -> web.Response:
    who = await operator(request)
    plan_id = request.match_info["plan_id"][:64]
    if plan_id == FREE_PLAN:
        raise ApiError(
            409, "in_use", "the free plan is every unsubscribed org's; change it instead"
        )
    async with request.app[DB].transaction() as q:
        on = await q.value("SELECT count(*) FROM subscriptions WHERE plan_id = %s", (plan_id,))
        if on:
            raise ApiError(
                409, "in_use", f"{on} organization(s) are on {plan_id}; make it non-public instead"
            )
        await q.execute("DELETE FROM checkouts WHERE plan_id = %s", (plan_id,))
        deleted = await q.value("DELETE FROM plans WHERE id = %s RETURNING id", (plan_id,))
        if deleted is None:
            raise ApiError(404, "not_found", "no plan with that id")
        await audit(q, None, who.actor, "plan.delete", plan_id)
    return to_json({"deleted": plan_id})


@routes.put("/v1/admin/orgs/{org_id}/plan")
@describe(
    "Put an organization on a plan without a payment (a comp, a contract paid elsewhere); "
    "its limits change at every edge.",
    body=OrgPlanBody,
    auth="admin",
)
async def admin_set_org_plan(request: web.Request) -> web.Response:
    who = await operator(request)
    body = await read_json(request, OrgPlanBody)
    org_id = request.match_info["org_id"][:64]
    outbox = request.app[OUTBOX]
    async with request.app[DB].transaction() as q:
        if await q.value("SELECT 1 FROM orgs WHERE id = %s", (org_id,)) is None:
            raise ApiError(404, "not_found", "no organization with that id")
        if await q.value("SELECT 1 FROM plans WHERE id = %s", (body.plan[:64],)) is None:
            raise ApiError(422, "invalid", f"no plan called {body.plan[:64]!r}")
        await q.execute(
            "INSERT INTO subscriptions (org_id, plan_id, status) VALUES (%s, %s, 'active')"
            " ON CONFLICT (org_id) DO UPDATE SET plan_id = excluded.plan_id, updated_at = now()",
            (org_id, body.plan),
        )
        await publish_limits(q, outbox, org_id)
        await audit(q, org_id, who.actor, "billing.plan_set", body.plan)
    outbox.changed()
    return to_json({"org_id": org_id, "plan": body.plan})


@routes.get("/v1/admin/billing/events")
@describe("Provider webhook events as received, newest first (?provider=, ?org_id=).", auth="admin")
async def admin_billing_events(request: web.Request) -> web.Response:
    await operator(request)
    params = {
        **page(request),
        "provider": request.query.get("provider", "")[:20],
        "org": request.query.get("org_id", "")[:64],
    }
    rows = await request.app[DB].all(
        "SELECT provider, event_id, type, org_id, outcome, received_at FROM billing_events"
        " WHERE (%(provider)s = '' OR provider = %(provider)s)"
        " AND (%(org)s = '' OR org_id = %(org)s)"
        " AND (%(after)s = '' OR event_id < %(after)s)"
        " ORDER BY received_at DESC, event_id DESC LIMIT %(limit)s",
        params,
    )
    return paged("events", rows, params, key="event_id")


@routes.get("/v1/admin/billing/reconciliation")
@describe(
    "What reconciliation found different between the providers and us, and what it did.",
    auth="admin",
)
async def admin_reconciliation(request: web.Request) -> web.Response:
    await operator(request)
    params = page(request)
    after = int(params["after"]) if params["after"].isdigit() else 2**62
    rows = await request.app[DB].all(
        "SELECT id, provider, org_id, subject, ours, theirs, action, found_at"
        " FROM reconciliation_findings WHERE id < %s ORDER BY id DESC LIMIT %s",
        (after, params["limit"]),
    )
    for row in rows:
        row["id"] = str(row["id"])
    return paged("findings", rows, params)
