"""The billing API: plans, an org's billing state, checkout through a provider, provider
webhooks, cancellations and refunds, and the mock provider's checkout page.

``GET /v1/plans`` and the webhooks take no credentials (a webhook proves itself by its
signature). Checkout and cancellation take an org admin; refunds take an operator.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from aiohttp import web

from billing.plans import (
    ENTITLEMENTS,
    FREE_PLAN,
    PLAN_COLUMNS,
    plan_of,
    usage_counts,
)
from billing.providers.base import ProviderError
from billing.providers.mock_provider import MockProvider
from billing.service import BILLING
from billing.subscriptions import SUBSCRIPTION_COLUMNS, end_subscription, locked_subscription
from billing.webhooks import receive
from control import principals
from control.bodies import read_json, to_json, to_json_status
from control.errors import ApiError
from control.ids import new_id
from control.keys import DB
from control.openapi import describe
from control.store.accounts import audit

routes = web.RouteTableDef()

Count = Annotated[int, msgspec.Meta(ge=0, le=2**62)]


class CheckoutBody(msgspec.Struct, forbid_unknown_fields=True):
    provider: str
    plan: str


class CancelBody(msgspec.Struct, forbid_unknown_fields=True):
    org_id: str = ""  # an operator cancels for any org; others cancel their own
    reason: str = ""


class RefundBody(msgspec.Struct, forbid_unknown_fields=True):
    invoice_id: str  # the provider's invoice id, as GET /v1/billing lists it
    amount_cents: Count = 0  # 0: what is left to refund of the invoice
    reason: str = ""


def _base_url(request: web.Request) -> str:
    configured = request.app[BILLING].settings.public_url
    return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"


def _plan_view(row: dict[str, Any], prices: dict[str, str] | None = None) -> dict[str, Any]:
    view = {k: row[k] for k in ("id", "name", "price_cents", "currency", "interval", "public")}
    view["entitlements"] = {k: row[k] for k in ENTITLEMENTS}
    if prices is not None:
        view["providers"] = sorted(prices)
    return view


async def plan_prices(request: web.Request) -> dict[str, dict[str, str]]:
    rows = await request.app[DB].all("SELECT plan_id, provider, provider_plan_id FROM plan_prices")
    found: dict[str, dict[str, str]] = {}
    for r in rows:
        found.setdefault(r["plan_id"], {})[r["provider"]] = r["provider_plan_id"]
    return found


@routes.get("/v1/plans")
@describe("The plans on sale, their entitlements (0: no limit of ours) and providers.", auth="none")
async def list_plans(request: web.Request) -> web.Response:
    rows = await request.app[DB].all(
        f"SELECT {PLAN_COLUMNS} FROM plans WHERE public ORDER BY price_cents, id"
    )
    prices = await plan_prices(request)
    enabled = set(request.app[BILLING].providers)
    return to_json(
        {
            "plans": [
                _plan_view(r, {p: v for p, v in prices.get(r["id"], {}).items() if p in enabled})
                for r in rows
            ]
        }
    )


@routes.get("/v1/billing")
@describe(
    "This organization's plan, its entitlements and usage against them, the subscription "
    "and its invoices."
)
async def billing_state(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    db = request.app[DB]
    async with db.transaction() as q:
        plan = await plan_of(q, who.org_id)
        used = await usage_counts(q, who.org_id)
        sub = await q.one(
            f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE org_id = %s", (who.org_id,)
        )
        period_start = _period_start(sub)
        metered = await q.one(
            "SELECT bytes, connections FROM usage_periods WHERE org_id = %s AND period_start = %s",
            (who.org_id, period_start),
        )
        live = await q.value("SELECT count(*) FROM live_tunnels WHERE org_id = %s", (who.org_id,))
        invoices = await q.all(
            "SELECT provider, provider_invoice_id AS id, status, currency, subtotal_cents,"
            " tax_cents, total_cents, tax_id, period_start, period_end, issued_at"
            " FROM invoices WHERE org_id = %s ORDER BY issued_at DESC NULLS LAST LIMIT 50",
            (who.org_id,),
        )
    used["tunnels"] = int(live or 0)
    used["bandwidth_bytes_month"] = int(metered["bytes"]) if metered else 0
    used["connections_this_period"] = int(metered["connections"]) if metered else 0
    subscription = None
    if sub is not None and sub["status"] != "none":
        subscription = {
            k: sub[k]
            for k in (
                "provider",
                "provider_subscription_id",
                "status",
                "current_period_start",
                "current_period_end",
                "past_due_since",
            )
        }
    return to_json(
        {
            "plan": _plan_view(plan),
            "entitlements": {k: plan[k] for k in ENTITLEMENTS},
            "usage": used,
            "usage_period_start": period_start,
            "subscription": subscription,
            "invoices": invoices,
        }
    )


def _period_start(sub: dict[str, Any] | None) -> datetime:
    """The start of the org's billing period: its paid period, else the calendar month."""
    if (
        sub is not None
        and sub["current_period_start"] is not None
        and sub["status"]
        in (
            "active",
            "past_due",
        )
    ):
        start: datetime = sub["current_period_start"]
        return start
    now = datetime.now(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@routes.post("/v1/billing/checkout")
@describe(
    "Start paying for a plan through a provider (stripe, razorpay, paypal, or mock where "
    "enabled); the answer's url is where the customer pays.",
    body=CheckoutBody,
    status=201,
)
async def start_checkout(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    who.require("admin")
    body = await read_json(request, CheckoutBody)
    billing = request.app[BILLING]
    provider = billing.provider(body.provider)
    db = request.app[DB]
    plan = await db.one(
        "SELECT p.id, p.name, pp.provider_plan_id FROM plans p LEFT JOIN plan_prices pp"
        " ON pp.plan_id = p.id AND pp.provider = %s WHERE p.id = %s AND p.public",
        (body.provider, body.plan[:64]),
    )
    if plan is None or plan["id"] == FREE_PLAN:
        raise ApiError(422, "invalid", f"no paid plan called {body.plan[:64]!r}; see GET /v1/plans")
    if not plan["provider_plan_id"]:
        raise ApiError(
            422,
            "invalid",
            f"the {plan['name']} plan is not sold through {body.provider}; see GET /v1/plans",
        )
    current = await db.one(
        "SELECT plan_id, status FROM subscriptions WHERE org_id = %s", (who.org_id,)
    )
    if current is not None and current["status"] in ("active", "past_due"):
        raise ApiError(
            409,
            "subscribed",
            f"this organization already pays for the {current['plan_id']} plan; cancel it "
            "first (POST /v1/billing/cancel)",
        )
    email = ""
    if who.user_id:
        email = str(await db.value("SELECT email FROM users WHERE id = %s", (who.user_id,)) or "")
    checkout_id = new_id("chk")
    base = _base_url(request)
    try:
        started = await provider.checkout(
            checkout_id=checkout_id,
            org_id=who.org_id,
            provider_plan_id=plan["provider_plan_id"],
            email=email,
            success_url=f"{base}/v1/billing/return?checkout={checkout_id}",
            cancel_url=f"{base}/v1/billing/return?checkout={checkout_id}&canceled=1",
        )
    except ProviderError as exc:
        raise ApiError(502, "provider_error", str(exc)) from None
    async with db.transaction() as q:
        await q.execute(
            "INSERT INTO checkouts (id, org_id, plan_id, provider, provider_ref, url)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (checkout_id, who.org_id, plan["id"], body.provider, started.ref, started.url),
        )
        sub = await locked_subscription(q, who.org_id)
        if sub["status"] in ("none", "canceled", "pending"):
            await q.execute(
                "UPDATE subscriptions SET status = 'pending', updated_at = now() WHERE org_id = %s",
                (who.org_id,),
            )
        await audit(q, who.org_id, who.actor, "billing.checkout", f"{body.provider}:{plan['id']}")
    return to_json_status(
        {
            "checkout_id": checkout_id,
            "provider": body.provider,
            "plan": plan["id"],
            "url": started.url,
        },
        201,
    )


@routes.get("/v1/billing/return")
@describe("Where a provider sends the customer back after checkout.", auth="none")
async def checkout_return(request: web.Request) -> web.Response:
    canceled = request.query.get("canceled") == "1"
    text = (
        "Checkout was cancelled; nothing was charged."
        if canceled
        else "Thank you. Your plan changes as soon as the payment provider confirms it."
    )
    return web.Response(
        text=f"<!doctype html><title>Burrow billing</title><p>{html.escape(text)}</p>",
        content_type="text/html",
    )


@routes.post("/v1/billing/webhooks/{provider}")
@describe(
    "A provider's webhook. The signature is checked on the raw body; each event acts once.",
    auth="none",
)
async def provider_webhook(request: web.Request) -> web.Response:
    name = request.match_info["provider"][:20]
    raw = await request.read()
    delivery = await receive(request.app[BILLING], name, raw, request.headers)
    if delivery.status >= 400:
        code = "bad_signature" if delivery.status == 400 else "unavailable"
        raise ApiError(delivery.status, code, delivery.outcome)
    return to_json(
        {
            "event_id": delivery.event_id,
            "duplicate": delivery.duplicate,
            "outcome": delivery.outcome,
        }
    )


@routes.post("/v1/billing/cancel")
@describe(
    "Cancel the subscription at the provider now: the organization goes back to the free "
    "plan at every edge.",
    body=CancelBody,
)
async def cancel_subscription(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    body = await read_json(request, CancelBody)
    org_id = who.org_id
    if body.org_id and body.org_id != who.org_id:
        if not (who.is_admin and who.via == "session"):
            raise ApiError(403, "forbidden", "only an operator cancels another organization's plan")
        org_id = body.org_id[:64]
    else:
        who.require("admin")
    billing = request.app[BILLING]
    async with request.app[DB].transaction() as q:
        if await q.value("SELECT 1 FROM orgs WHERE id = %s", (org_id,)) is None:
            raise ApiError(404, "not_found", "no organization with that id")
        sub = await locked_subscription(q, org_id)
        if sub["status"] not in ("active", "past_due", "pending"):
            raise ApiError(409, "not_subscribed", "this organization has no subscription to cancel")
        provider = billing.providers.get(sub["provider"])
        if provider is not None and sub["provider_subscription_id"]:
            try:
                await provider.cancel(sub["provider_subscription_id"])
            except ProviderError as exc:
                raise ApiError(502, "provider_error", str(exc)) from None
        await end_subscription(q, billing.outbox, org_id, at=billing.clock().timestamp())
        await audit(q, org_id, who.actor, "billing.cancel", body.reason[:200] or sub["plan_id"])
    billing.outbox.changed()
    return to_json({"org_id": org_id, "status": "canceled", "plan": FREE_PLAN})


@routes.post("/v1/billing/refunds")
@describe(
    "Refund an invoice, whole or in part, through its provider (operators only).",
    body=RefundBody,
    auth="admin",
    status=201,
)
async def refund_invoice(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    if not (who.is_admin and who.via == "session"):
        raise ApiError(403, "forbidden", "refunds are made by an operator of this installation")
    body = await read_json(request, RefundBody)
    billing = request.app[BILLING]
    async with request.app[DB].transaction() as q:
        invoice = await q.one(
            "SELECT provider, provider_invoice_id, org_id, status, currency, total_cents,"
            " payment_ref FROM invoices WHERE provider_invoice_id = %s FOR UPDATE",
            (body.invoice_id[:200],),
        )
        if invoice is None or invoice["org_id"] is None:
            raise ApiError(404, "not_found", "no invoice with that id")
        refunded = int(
            await q.value(
                "SELECT coalesce(sum(amount_cents), 0) FROM refunds"
                " WHERE provider = %s AND invoice_id = %s",
                (invoice["provider"], invoice["provider_invoice_id"]),
            )
        )
        left = int(invoice["total_cents"]) - refunded
        amount = body.amount_cents or left
        if invoice["status"] not in ("paid", "refunded") or not invoice["payment_ref"]:
            raise ApiError(409, "not_paid", "only a paid invoice can be refunded")
        if amount <= 0 or amount > left:
            raise ApiError(
                422,
                "invalid",
                f"this invoice has {left} {invoice['currency']} cents left to refund",
            )
        provider = billing.provider(invoice["provider"])
        try:
            refund_id = await provider.refund(invoice["payment_ref"], amount, invoice["currency"])
        except ProviderError as exc:
            raise ApiError(502, "provider_error", str(exc)) from None
        row = await q.one(
            "INSERT INTO refunds (id, org_id, provider, provider_refund_id, invoice_id,"
            " amount_cents, reason, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id, org_id, provider, provider_refund_id, invoice_id, amount_cents,"
            " reason, created_at",
            (
                new_id("rfd"),
                invoice["org_id"],
                invoice["provider"],
                refund_id,
                invoice["provider_invoice_id"],
                amount,
                body.reason[:500],
                who.actor,
            ),
        )
        if amount == left:
            await q.execute(
                "UPDATE invoices SET status = 'refunded', updated_at = now()"
                " WHERE provider = %s AND provider_invoice_id = %s",
                (invoice["provider"], invoice["provider_invoice_id"]),
            )
        await audit(
            q,
            invoice["org_id"],
            who.actor,
            "billing.refund",
            f"{invoice['provider_invoice_id']}:{amount}",
        )
    return to_json_status(row, 201)


# -- the mock provider's checkout page (dev and tests only) -------------------------------


def _mock(request: web.Request) -> MockProvider:
    provider = request.app[BILLING].provider("mock")
    assert isinstance(provider, MockProvider)
    return provider


@routes.get("/v1/billing/mock/{subscription_id}")
@describe("The mock provider's checkout page (only where the mock provider is on).", auth="none")
async def mock_page(request: web.Request) -> web.Response:
    mock = _mock(request)
    sub_id = request.match_info["subscription_id"][:64]
    try:
        row = await mock.page(sub_id)
    except ProviderError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    sid = html.escape(sub_id)
    buttons = "".join(
        f'<form method="post" action="/v1/billing/mock/{sid}/{action}">'
        f'<button name="action" value="{action}">{label}</button></form>'
        for action, label in (("pay", "Pay"), ("fail", "Decline the card"), ("cancel", "Cancel"))
    )
    page = (
        "<!doctype html><title>Mock checkout</title>"
        "<h1>Mock checkout</h1><p><strong>This is the dev/test payment provider: no money "
        "moves.</strong></p>"
        f"<p>Subscription <code>{sid}</code> to plan <code>{html.escape(row['plan_ref'])}</code>"
        f" for organization <code>{html.escape(row['org_id'])}</code>, now "
        f"<code>{html.escape(row['status'])}</code>.</p>{buttons}"
    )
    return web.Response(text=page, content_type="text/html")


@routes.post("/v1/billing/mock/{subscription_id}/{action}")
@describe(
    "Act on the mock provider's checkout page: pay, decline the card, or cancel; the mock "
    "provider then sends its signed webhook.",
    auth="none",
)
async def mock_act(request: web.Request) -> web.Response:
    mock = _mock(request)
    sub_id = request.match_info["subscription_id"][:64]
    action = request.match_info["action"]
    if action not in ("pay", "fail", "cancel"):
        raise ApiError(404, "not_found", "the mock checkout page knows pay, fail and cancel")
    try:
        raw, headers = await mock.act(sub_id, action)
    except ProviderError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    delivery = await receive(request.app[BILLING], "mock", raw, headers)
    checkout = await request.app[DB].value(
        "SELECT id FROM checkouts WHERE provider = 'mock' AND provider_ref = %s", (sub_id,)
    )
    if request.headers.get("Accept", "").startswith("application/json"):
        return to_json({"outcome": delivery.outcome, "checkout_id": checkout})
    raise web.HTTPSeeOther(
        f"/v1/billing/return?checkout={checkout or ''}{'&canceled=1' if action == 'cancel' else ''}"
    )
