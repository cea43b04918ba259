"""``mock``: the dev/test provider. It keeps its own books in
``mock_provider_subscriptions`` (as a real provider keeps them on its side), serves its
checkout page from control (``/v1/billing/mock/{id}``), and signs its webhooks with an
HMAC like Stripe's (``Mock-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``), so the
whole paid flow (checkout, webhook, plan at the edge, dunning, reconciliation, refunds)
runs on one machine with no account anywhere.

It is on only when ``BillingSettings.mock`` is set (``burrowd dev`` sets it); it takes no
money and must never be enabled where customers pay."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from billing.providers.base import (
    CheckoutStart,
    ProviderError,
    ProviderEvent,
    RemoteInvoice,
    RemoteSubscription,
    WebhookRefused,
    header,
)
from control.db import Database, json_param

TOLERANCE = 300
PERIOD_DAYS = 30
_STATUS = {
    "created": "pending",
    "active": "active",
    "past_due": "past_due",
    "canceled": "canceled",
}
_COLUMNS = "id, org_id, plan_ref, status, period_start, period_end, invoices"


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _remote(row: Mapping[str, Any]) -> RemoteSubscription:
    return RemoteSubscription(
        id=row["id"],
        status=_STATUS.get(row["status"], "pending"),
        plan_ref=row["plan_ref"],
        org_id=row["org_id"],
        period_start=_ts(row["period_start"]),
        period_end=_ts(row["period_end"]),
        raw_status=row["status"],
    )


def sign(secret: str, body: bytes, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


class MockProvider:
    name = "mock"

    def __init__(self, db: Database, webhook_secret: str) -> None:
        self._db = db
        self._secret = webhook_secret

    async def checkout(
        self,
        *,
        checkout_id: str,
        org_id: str,
        provider_plan_id: str,
        email: str,
        success_url: str,
        cancel_url: str,
    ) -> CheckoutStart:
        sub_id = "msub_" + secrets.token_hex(8)
        await self._db.execute(
            "INSERT INTO mock_provider_subscriptions (id, org_id, plan_ref) VALUES (%s, %s, %s)",
            (sub_id, org_id, provider_plan_id),
        )
        origin = urlsplit(success_url)
        return CheckoutStart(
            url=f"{origin.scheme}://{origin.netloc}/v1/billing/mock/{sub_id}", ref=sub_id
        )

    async def verify(self, raw: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        given = dict(
            part.split("=", 1)
            for part in header(headers, "Mock-Signature").split(",")
            if "=" in part
        )
        try:
            at = int(given.get("t", ""))
        except ValueError:
            raise WebhookRefused("Mock-Signature has no timestamp") from None
        # Bounded first: a timestamp of hundreds of digits would overflow the float below.
        if not 0 < at < 2**40 or abs(time.time() - at) > TOLERANCE:
            raise WebhookRefused("Mock-Signature's timestamp is outside the tolerance")
        expected = sign(self._secret, raw, at).split("v1=", 1)[1]
        given_mac = given.get("v1", "")
        if not given_mac.isascii() or not hmac.compare_digest(expected, given_mac):
            raise WebhookRefused("Mock-Signature does not match the body")
        event = json.loads(raw)
        return ProviderEvent(
            event_id=str(event["id"]),
            type=str(event["type"]),
            payload=event,
            subscription_id=str(event.get("subscription", "")),
            checkout_ref=str(event.get("subscription", "")),
        )

    async def _row(self, subscription_id: str) -> dict[str, Any]:
        row = await self._db.one(
            f"SELECT {_COLUMNS} FROM mock_provider_subscriptions WHERE id = %s",
            (subscription_id,),
        )
        if row is None:
            raise ProviderError(f"the mock provider has no subscription {subscription_id}")
        return row

    async def page(self, subscription_id: str) -> dict[str, Any]:
        """What the checkout page shows."""
        return await self._row(subscription_id)

    async def act(self, subscription_id: str, action: str) -> tuple[bytes, dict[str, str]]:
        """What the customer did on the page or what happened at renewal ("pay", "fail",
        "cancel"); the signed webhook the provider sends about it."""
        row = await self._row(subscription_id)
        invoices = list(row["invoices"])
        now = time.time()
        if action in ("pay", "fail"):
            # The price our plan table gives this mock plan id: what a real provider bills.
            price = await self._db.value(
                "SELECT p.price_cents FROM plan_prices pp JOIN plans p ON p.id = pp.plan_id"
                " WHERE pp.provider = 'mock' AND pp.provider_plan_id = %s",
                (row["plan_ref"],),
            )
            invoices.append(
                {
                    "id": f"minv_{secrets.token_hex(6)}",
                    "status": "paid" if action == "pay" else "failed",
                    "total": int(price or 0),
                    "payment_ref": f"mpay_{secrets.token_hex(6)}",
                    "issued_at": now,
                }
            )
        status = {"pay": "active", "fail": "past_due", "cancel": "canceled"}[action]
        await self._db.execute(
            "UPDATE mock_provider_subscriptions SET status = %s, invoices = %s,"
            " period_start = CASE WHEN %s THEN now() ELSE period_start END,"
            " period_end = CASE WHEN %s THEN now() + make_interval(days => %s)"
            "   ELSE period_end END WHERE id = %s",
            (
                status,
                json_param(invoices),
                action == "pay",
                action == "pay",
                PERIOD_DAYS,
                subscription_id,
            ),
        )
        event = {
            "id": f"mevt_{secrets.token_hex(8)}",
            "type": f"subscription.{status}",
            "subscription": subscription_id,
            "created": int(now),
        }
        body = json.dumps(event).encode()
        return body, {"Mock-Signature": sign(self._secret, body)}

    async def subscription(self, subscription_id: str) -> RemoteSubscription:
        return _remote(await self._row(subscription_id))

    async def subscriptions(self) -> list[RemoteSubscription]:
        rows = await self._db.all(f"SELECT {_COLUMNS} FROM mock_provider_subscriptions ORDER BY id")
        return [_remote(r) for r in rows]

    async def invoices(self, subscription_ids: list[str]) -> list[RemoteInvoice]:
        rows = await self._db.all(
            f"SELECT {_COLUMNS} FROM mock_provider_subscriptions WHERE id = ANY(%s)",
            (subscription_ids,),
        )
        return [
            RemoteInvoice(
                id=i["id"],
                subscription_id=r["id"],
                status=i["status"],
                currency="usd",
                total_cents=int(i.get("total", 0)),
                payment_ref=i["payment_ref"],
                issued_at=i["issued_at"],
            )
            for r in rows
            for i in r["invoices"]
        ]

    async def refund(self, payment_ref: str, amount_cents: int, currency: str) -> str:
        return f"mref_{secrets.token_hex(6)}"

    async def cancel(self, subscription_id: str) -> None:
        await self._row(subscription_id)
        await self._db.execute(
            "UPDATE mock_provider_subscriptions SET status = 'canceled' WHERE id = %s",
            (subscription_id,),
        )
