"""Our copy of an org's subscription, brought to the provider's state.

Every change goes through ``apply_remote`` with the subscription as the provider holds it
*now* (fetched when a webhook arrives, or listed by reconciliation), never with what an
event says happened: so events arriving out of order, late or twice cannot leave an older
state in place of a newer one. ``at`` is when that state was read; a state read earlier
than the one we hold is ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from billing.plans import FREE_PLAN, publish_limits
from billing.providers.base import RemoteInvoice, RemoteSubscription
from control.db import Queries
from control.routing_outbox import RoutingOutbox
from control.store.accounts import audit

SUBSCRIPTION_COLUMNS = (
    "org_id, plan_id, provider, provider_customer_id, provider_subscription_id, status,"
    " current_period_start, current_period_end, state_at, past_due_since, reminders_sent,"
    " last_reconciled_at, updated_at"
)


def _time(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


async def locked_subscription(q: Queries, org_id: str) -> dict[str, Any]:
    """The org's subscription row, created on the free plan if missing, locked for this
    transaction (one writer per org: webhooks, the API and every worker take this lock)."""
    await q.execute(
        "INSERT INTO subscriptions (org_id, plan_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (org_id, FREE_PLAN),
    )
    row = await q.one(
        f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE org_id = %s FOR UPDATE",
        (org_id,),
    )
    assert row is not None
    return row


async def org_for(q: Queries, provider: str, remote: RemoteSubscription, hint: str = "") -> str:
    """The org a provider subscription belongs to: ours by its id, else the metadata we
    attached at checkout, else ``hint``; "" when none names an org we have."""
    known = await q.value(
        "SELECT org_id FROM subscriptions WHERE provider = %s AND provider_subscription_id = %s",
        (provider, remote.id),
    )
    if known:
        return str(known)
    if not remote.org_id:
        checkout = await q.value(
            "SELECT org_id FROM checkouts WHERE provider = %s AND provider_ref = %s",
            (provider, remote.id),
        )
        if checkout:
            return str(checkout)
    for candidate in (remote.org_id, hint):
        if candidate and await q.value("SELECT 1 FROM orgs WHERE id = %s", (candidate,)):
            return candidate
    return ""


async def apply_remote(
    q: Queries,
    outbox: RoutingOutbox,
    provider: str,
    remote: RemoteSubscription,
    *,
    at: float,
    now: datetime,
    actor: str,
    hint: str = "",
) -> tuple[str, str]:
    """Bring our row to ``remote``; (org id or "", what happened, in words)."""
    org_id = await org_for(q, provider, remote, hint)
    if not org_id:
        return "", f"subscription {remote.id} belongs to no organization here"
    row = await locked_subscription(q, org_id)
    current = row["provider_subscription_id"]
    if (
        current
        and (current != remote.id or row["provider"] != provider)
        and row["status"] in ("active", "past_due", "pending")
        and remote.status == "canceled"
    ):
        return org_id, f"{remote.id} ended, but {current} is the org's subscription now"
    if at < float(row["state_at"]):
        return org_id, f"state of {remote.id} older than the one held; kept ours"
    priced = await q.value(
        "SELECT plan_id FROM plan_prices WHERE provider = %s AND provider_plan_id = %s",
        (provider, remote.plan_ref),
    )
    plan = row["plan_id"]
    if remote.status in ("active", "past_due"):
        plan = priced or plan
    elif remote.status == "canceled":
        plan = FREE_PLAN
    past_due_since = row["past_due_since"]
    reminders = row["reminders_sent"]
    if remote.status == "past_due":
        past_due_since = past_due_since or now
    else:
        past_due_since, reminders = None, 0
    await q.execute(
        "UPDATE subscriptions SET plan_id = %s, provider = %s, provider_subscription_id = %s,"
        " provider_customer_id = coalesce(nullif(%s, ''), provider_customer_id), status = %s,"
        " current_period_start = %s, current_period_end = %s, state_at = %s,"
        " past_due_since = %s, reminders_sent = %s, updated_at = now() WHERE org_id = %s",
        (
            plan,
            provider,
            remote.id,
            remote.customer_id,
            remote.status,
            _time(remote.period_start),
            _time(remote.period_end),
            at,
            past_due_since,
            reminders,
            org_id,
        ),
    )
    if plan != row["plan_id"]:
        await publish_limits(q, outbox, org_id)
        await audit(q, org_id, actor, "billing.plan", f"{row['plan_id']} -> {plan}")
    if remote.status != row["status"]:
        await audit(q, org_id, actor, f"billing.{remote.status}", f"{provider}:{remote.id}")
    return org_id, f"{remote.status} on {plan}"


async def end_subscription(q: Queries, outbox: RoutingOutbox, org_id: str, *, at: float) -> None:
    """Our side of a cancellation (the caller cancelled at the provider): the org is on the
    free plan at every edge, with nothing left to dun. ``at`` becomes the state's time, so
    an older provider state arriving later does not bring the plan back."""
    await q.execute(
        "UPDATE subscriptions SET plan_id = %s, status = 'canceled', past_due_since = NULL,"
        " reminders_sent = 0, state_at = %s, updated_at = now() WHERE org_id = %s",
        (FREE_PLAN, at, org_id),
    )
    await publish_limits(q, outbox, org_id)


async def record_invoice(
    q: Queries, provider: str, org_id: str | None, invoice: RemoteInvoice
) -> bool:
    """Insert or update an invoice; whether it was new or changed."""
    row = await q.one(
        "INSERT INTO invoices (provider, provider_invoice_id, org_id, subscription_id, status,"
        " currency, subtotal_cents, tax_cents, total_cents, tax_id, payment_ref, period_start,"
        " period_end, issued_at) VALUES (%(provider)s, %(id)s, %(org)s, %(sub)s, %(status)s,"
        " %(currency)s, %(subtotal)s, %(tax)s, %(total)s, %(tax_id)s, %(payment)s, %(start)s,"
        " %(end)s, %(issued)s)"
        " ON CONFLICT (provider, provider_invoice_id) DO UPDATE SET"
        " status = excluded.status, org_id = coalesce(invoices.org_id, excluded.org_id),"
        " subtotal_cents = excluded.subtotal_cents, tax_cents = excluded.tax_cents,"
        " total_cents = excluded.total_cents, tax_id = excluded.tax_id,"
        " payment_ref = coalesce(nullif(excluded.payment_ref, ''), invoices.payment_ref),"
        " updated_at = now()"
        " WHERE (invoices.status, invoices.total_cents, invoices.tax_cents)"
        "   IS DISTINCT FROM (excluded.status, excluded.total_cents, excluded.tax_cents)"
        " RETURNING 1",
        {
            "provider": provider,
            "id": invoice.id,
            "org": org_id or None,
            "sub": invoice.subscription_id,
            "status": invoice.status,
            "currency": invoice.currency,
            "subtotal": invoice.subtotal_cents,
            "tax": invoice.tax_cents,
            "total": invoice.total_cents,
            "tax_id": invoice.tax_id,
            "payment": invoice.payment_ref,
            "start": _time(invoice.period_start),
            "end": _time(invoice.period_end),
            "issued": _time(invoice.issued_at),
        },
    )
    return row is not None
