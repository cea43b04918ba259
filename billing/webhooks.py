"""Provider webhooks: verified on the raw body, stored once, applied with their effect.

1. The provider's signature check runs on the bytes as they arrived, before any JSON
   parsing (``Provider.verify``); a body that does not verify is refused with 400 and
   nothing of it is kept.
2. An event already stored (same provider, same event id) answers 200 and does nothing:
   providers retry until they get a 2xx, and a replayed delivery must not act twice.
3. The subscription's current state is fetched from the provider, so the order events
   arrive in does not matter (``billing.subscriptions``).
4. The event row and its effect commit in one transaction. Two deliveries of one event at
   once: the second insert waits on the first's unique key, then finds it and does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from billing.providers.base import (
    ProviderError,
    ProviderEvent,
    RemoteSubscription,
    WebhookRefused,
)
from billing.service import Billing
from billing.subscriptions import apply_remote, record_invoice
from control.db import Queries, json_param
from control.store.accounts import audit

log = logging.getLogger("burrow.billing.webhooks")


@dataclass(frozen=True, slots=True)
class Delivery:
    status: int  # what the provider gets back
    outcome: str
    duplicate: bool = False
    event_id: str = ""


async def receive(
    billing: Billing, provider_name: str, raw: bytes, headers: Mapping[str, str]
) -> Delivery:
    provider = billing.provider(provider_name)
    try:
        event = await provider.verify(raw, headers)
    except WebhookRefused as exc:
        log.warning("%s webhook refused: %s", provider_name, exc)
        return Delivery(400, str(exc))
    except ProviderError as exc:  # PayPal's verification call failed: let PayPal retry
        log.warning("%s webhook not verified yet: %s", provider_name, exc)
        return Delivery(503, str(exc))
    except (ValueError, KeyError, TypeError) as exc:  # verified, but not an event
        return Delivery(400, f"the {provider_name} webhook is not an event we can read: {exc}")
    db = billing.db
    seen = await db.value(
        "SELECT outcome FROM billing_events WHERE provider = %s AND event_id = %s",
        (provider_name, event.event_id),
    )
    if seen is not None:
        return Delivery(200, str(seen), duplicate=True, event_id=event.event_id)
    remote = None
    if event.subscription_id:
        try:
            remote = await provider.subscription(event.subscription_id)
        except ProviderError as exc:
            # Not stored: the provider retries, and the next delivery fetches again.
            log.warning("%s event %s waits: %s", provider_name, event.event_id, exc)
            return Delivery(503, str(exc), event_id=event.event_id)
    read_at = billing.clock()
    async with db.transaction() as q:
        inserted = await q.value(
            "INSERT INTO billing_events (provider, event_id, type, payload)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (provider_name, event.event_id, event.type, json_param(event.payload)),
        )
        if not inserted:
            return Delivery(200, "already applied", duplicate=True, event_id=event.event_id)
        org_id, outcome = await _apply(billing, q, provider_name, event, remote, read_at)
        await q.execute(
            "UPDATE billing_events SET outcome = %s, org_id = %s"
            " WHERE provider = %s AND event_id = %s",
            (outcome, org_id or None, provider_name, event.event_id),
        )
    billing.outbox.changed()
    log.info("%s event %s (%s): %s", provider_name, event.event_id, event.type, outcome)
    return Delivery(200, outcome, event_id=event.event_id)


async def _apply(
    billing: Billing,
    q: Queries,
    provider: str,
    event: ProviderEvent,
    remote: RemoteSubscription | None,
    read_at: datetime,
) -> tuple[str, str]:
    hint = event.org_id
    if event.checkout_ref:
        row = await q.one(
            "UPDATE checkouts SET completed_at = coalesce(completed_at, now())"
            " WHERE provider = %s AND provider_ref = %s RETURNING org_id",
            (provider, event.checkout_ref),
        )
        hint = hint or (row["org_id"] if row else "")
    org_id, outcome = "", f"{event.type}: nothing to change"
    if remote is not None:
        org_id, outcome = await apply_remote(
            q,
            billing.outbox,
            provider,
            remote,
            at=read_at.timestamp(),
            now=read_at,
            actor=f"{provider}:webhook",
            hint=hint,
        )
    if event.invoice is not None:
        invoice_org = org_id or await q.value(
            "SELECT org_id FROM subscriptions WHERE provider = %s"
            " AND provider_subscription_id = %s",
            (provider, event.invoice.subscription_id),
        )
        await record_invoice(q, provider, invoice_org, event.invoice)
        if invoice_org:
            await audit(
                q,
                invoice_org,
                f"{provider}:webhook",
                f"invoice.{event.invoice.status}",
                event.invoice.id,
            )
    return org_id, outcome
