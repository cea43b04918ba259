"""Razorpay through its official SDK (``razorpay``): subscriptions (the customer pays at
the subscription's ``short_url``), webhooks signed with X-Razorpay-Signature, the hex
HMAC-SHA256 of the raw body under the webhook secret, checked by the SDK's
``verify_webhook_signature``. Razorpay names each delivery's event in X-Razorpay-Event-Id.

``api_base`` points the SDK's client elsewhere (tests run a local server that answers as
Razorpay's REST API does)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import razorpay
import razorpay.errors
import requests

from billing.providers.base import (
    CheckoutStart,
    ProviderError,
    ProviderEvent,
    RemoteInvoice,
    RemoteSubscription,
    WebhookRefused,
    header,
    seconds,
)

_STATUS = {
    "created": "pending",
    "authenticated": "pending",
    "active": "active",
    "pending": "past_due",  # a charge failed; Razorpay retries it
    "halted": "past_due",  # every retry failed
    "paused": "past_due",
    "cancelled": "canceled",
    "completed": "canceled",
    "expired": "canceled",
}
_INVOICE_STATUS = {"paid": "paid", "issued": "open", "expired": "failed", "cancelled": "void"}
# Subscriptions run this many billing cycles (Razorpay needs a count; ~10 years monthly).
TOTAL_COUNT = 120


def subscription_from(obj: Mapping[str, Any]) -> RemoteSubscription:
    notes = obj.get("notes") or {}
    if not isinstance(notes, Mapping):  # Razorpay sends [] for no notes
        notes = {}
    return RemoteSubscription(
        id=str(obj["id"]),
        status=_STATUS.get(str(obj.get("status")), "pending"),
        plan_ref=str(obj.get("plan_id") or ""),
        org_id=str(notes.get("org_id") or ""),
        customer_id=str(obj.get("customer_id") or ""),
        period_start=seconds(obj.get("current_start")),
        period_end=seconds(obj.get("current_end")),
        raw_status=str(obj.get("status") or ""),
    )


def invoice_from(obj: Mapping[str, Any]) -> RemoteInvoice:
    customer = obj.get("customer_details") or {}
    return RemoteInvoice(
        id=str(obj["id"]),
        subscription_id=str(obj.get("subscription_id") or ""),
        status=_INVOICE_STATUS.get(str(obj.get("status")), str(obj.get("status") or "open")),
        currency=str(obj.get("currency") or "").lower(),
        subtotal_cents=int(obj.get("taxable_amount") or obj.get("gross_amount") or 0),
        tax_cents=int(obj.get("tax_amount") or 0),
        total_cents=int(obj.get("amount") or 0),
        tax_id=str(customer.get("customer_gstin") or customer.get("gstin") or ""),
        payment_ref=str(obj.get("payment_id") or ""),
        period_start=seconds(obj.get("billing_start")),
        period_end=seconds(obj.get("billing_end")),
        issued_at=seconds(obj.get("issued_at") or obj.get("created_at")),
    )


class RazorpayProvider:
    name = "razorpay"

    def __init__(
        self, key_id: str, key_secret: str, webhook_secret: str, *, api_base: str = ""
    ) -> None:
        options = {"base_url": api_base} if api_base else {}
        self._client = razorpay.Client(auth=(key_id, key_secret), **options)
        self._secret = webhook_secret

    async def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except (
            razorpay.errors.BadRequestError,
            razorpay.errors.GatewayError,
            razorpay.errors.ServerError,
            requests.RequestException,
            ValueError,
        ) as exc:
            raise ProviderError(f"Razorpay refused {what}: {exc}") from exc

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
        created = await self._call(
            "the subscription",
            self._client.subscription.create,
            {
                "plan_id": provider_plan_id,
                "total_count": TOTAL_COUNT,
                "customer_notify": 1,
                "notes": {"org_id": org_id, "checkout_id": checkout_id},
                "notify_info": {"notify_email": email} if email else {},
            },
        )
        return CheckoutStart(url=str(created["short_url"]), ref=str(created["id"]))

    async def verify(self, raw: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        signature = header(headers, "X-Razorpay-Signature")
        try:
            text = raw.decode("utf-8")
            # hmac.compare_digest raises TypeError on non-ASCII text (a header may carry
            # any byte), so such a signature is refused here as the forgery it is.
            if not signature or not signature.isascii():
                raise razorpay.errors.SignatureVerificationError("no X-Razorpay-Signature")
            self._client.utility.verify_webhook_signature(text, signature, self._secret)
        except (UnicodeDecodeError, razorpay.errors.SignatureVerificationError) as exc:
            raise WebhookRefused(f"X-Razorpay-Signature does not verify: {exc}") from None
        event = json.loads(text)
        payload = event.get("payload") or {}
        sub = ((payload.get("subscription") or {}).get("entity")) or {}
        inv = ((payload.get("invoice") or {}).get("entity")) or None
        notes = sub.get("notes") if isinstance(sub.get("notes"), Mapping) else {}
        invoice = invoice_from(inv) if inv else None
        # The event id is the header Razorpay retries with; an event without one is keyed
        # by what it is about, so a retry still finds the first delivery.
        event_id = header(headers, "X-Razorpay-Event-Id") or (
            f"{event.get('event')}:{sub.get('id', '')}:{event.get('created_at', '')}"
        )
        return ProviderEvent(
            event_id=event_id,
            type=str(event.get("event", "")),
            payload=event,
            subscription_id=str(sub.get("id") or (invoice.subscription_id if invoice else "")),
            checkout_ref=str(sub.get("id") or ""),
            org_id=str((notes or {}).get("org_id") or ""),
            invoice=invoice,
        )

    async def subscription(self, subscription_id: str) -> RemoteSubscription:
        obj = await self._call(
            f"subscription {subscription_id}", self._client.subscription.fetch, subscription_id
        )
        return subscription_from(obj)

    async def _every(self, what: str, fn: Any, query: dict[str, Any]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for _ in range(1000):  # 100 000 objects: far past any installation's count
            page = await self._call(what, fn, {**query, "count": 100, "skip": len(found)})
            items = page.get("items") or []
            found.extend(items)
            if len(items) < 100:
                break
        return found

    async def subscriptions(self) -> list[RemoteSubscription]:
        items = await self._every("the subscription list", self._client.subscription.all, {})
        return [subscription_from(s) for s in items]

    async def invoices(self, subscription_ids: list[str]) -> list[RemoteInvoice]:
        found: list[RemoteInvoice] = []
        for sub in subscription_ids:
            items = await self._every(
                f"the invoices of {sub}", self._client.invoice.all, {"subscription_id": sub}
            )
            found.extend(invoice_from(i) for i in items)
        return found

    async def refund(self, payment_ref: str, amount_cents: int, currency: str) -> str:
        refund = await self._call(
            f"a refund of {payment_ref}", self._client.payment.refund, payment_ref, amount_cents
        )
        return str(refund["id"])

    async def cancel(self, subscription_id: str) -> None:
        await self._call(
            f"cancelling {subscription_id}",
            self._client.subscription.cancel,
            subscription_id,
            {"cancel_at_cycle_end": 0},
        )
