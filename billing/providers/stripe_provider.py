"""Stripe through its official SDK (``stripe``): Checkout Sessions in subscription mode,
Stripe-Signature webhooks checked by the SDK's own verification (HMAC-SHA256 over
``timestamp.body`` with the endpoint secret, and the timestamp within ``tolerance``).

``api_base`` points the SDK elsewhere (tests run a local server that answers as Stripe's
REST API does)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import stripe

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
    "active": "active",
    "trialing": "active",
    "past_due": "past_due",
    "unpaid": "past_due",
    "canceled": "canceled",
    "incomplete_expired": "canceled",
    "incomplete": "pending",
    "paused": "past_due",
}
_INVOICE_STATUS = {"paid": "paid", "open": "open", "void": "void", "uncollectible": "failed"}


def _dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def subscription_from(obj: Mapping[str, Any]) -> RemoteSubscription:
    items = (obj.get("items") or {}).get("data") or [{}]
    item = items[0] or {}
    price = item.get("price") or {}
    metadata = obj.get("metadata") or {}
    customer = obj.get("customer") or ""
    return RemoteSubscription(
        id=str(obj["id"]),
        status=_STATUS.get(str(obj.get("status")), "pending"),
        plan_ref=str(price.get("id") or (obj.get("plan") or {}).get("id") or ""),
        org_id=str(metadata.get("org_id") or ""),
        customer_id=str(customer if isinstance(customer, str) else customer.get("id", "")),
        # Since API version 2025-03-31 the period lives on each item.
        period_start=seconds(item.get("current_period_start") or obj.get("current_period_start")),
        period_end=seconds(item.get("current_period_end") or obj.get("current_period_end")),
        raw_status=str(obj.get("status") or ""),
    )


def _invoice_subscription(obj: Mapping[str, Any]) -> str:
    sub = obj.get("subscription")
    if not sub:  # API 2025-03-31 on: parent.subscription_details.subscription
        details = (obj.get("parent") or {}).get("subscription_details") or {}
        sub = details.get("subscription")
    if isinstance(sub, Mapping):
        sub = sub.get("id")
    return str(sub or "")


def invoice_from(obj: Mapping[str, Any]) -> RemoteInvoice:
    taxes = obj.get("total_taxes")
    if taxes is not None:
        tax = sum(int(t.get("amount") or 0) for t in taxes)
    else:
        tax = int(obj.get("tax") or 0)
    tax_ids = obj.get("customer_tax_ids") or []
    payment = obj.get("payment_intent") or obj.get("charge") or ""
    if isinstance(payment, Mapping):
        payment = payment.get("id", "")
    status = _INVOICE_STATUS.get(str(obj.get("status")), str(obj.get("status") or "open"))
    if obj.get("attempted") and status == "open" and not obj.get("paid", False):
        status = "failed"
    return RemoteInvoice(
        id=str(obj["id"]),
        subscription_id=_invoice_subscription(obj),
        status=status,
        currency=str(obj.get("currency") or ""),
        subtotal_cents=int(obj.get("subtotal") or 0),
        tax_cents=tax,
        total_cents=int(obj.get("total") or 0),
        tax_id=str(tax_ids[0].get("value", "")) if tax_ids else "",
        payment_ref=str(payment),
        period_start=seconds(obj.get("period_start")),
        period_end=seconds(obj.get("period_end")),
        issued_at=seconds(obj.get("created")),
    )


class StripeProvider:
    name = "stripe"

    def __init__(
        self, api_key: str, webhook_secret: str, *, api_base: str = "", tolerance: int = 300
    ) -> None:
        bases: dict[str, str] = {"api": api_base} if api_base else {}
        self._client = stripe.StripeClient(api_key, base_addresses=bases, max_network_retries=0)  # type: ignore[arg-type]
        self._secret = webhook_secret
        self._tolerance = tolerance

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except stripe.StripeError as exc:
            raise ProviderError(f"Stripe refused {what}: {exc.user_message or exc}") from exc

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
        metadata = {"org_id": org_id, "checkout_id": checkout_id}
        params: dict[str, Any] = {
            "mode": "subscription",
            "line_items": [{"price": provider_plan_id, "quantity": 1}],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": checkout_id,
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
            "automatic_tax": {"enabled": False},
        }
        if email:
            params["customer_email"] = email
        session = await self._call(
            "the checkout session", self._client.v1.checkout.sessions.create, params
        )
        return CheckoutStart(url=str(session.url), ref=str(session.id))

    async def verify(self, raw: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        signature = header(headers, "Stripe-Signature")
        try:
            text = raw.decode("utf-8")
            stripe.WebhookSignature.verify_header(text, signature, self._secret, self._tolerance)
        except (UnicodeDecodeError, stripe.SignatureVerificationError) as exc:
            raise WebhookRefused(f"Stripe-Signature does not verify: {exc}") from None
        event = json.loads(text)
        obj = (event.get("data") or {}).get("object") or {}
        kind = str(event.get("type", ""))
        sub = ""
        invoice = None
        checkout_ref = ""
        org = str((obj.get("metadata") or {}).get("org_id") or "")
        if kind.startswith("customer.subscription."):
            sub = str(obj.get("id", ""))
        elif kind.startswith("invoice."):
            invoice = invoice_from(obj)
            sub = invoice.subscription_id
        elif kind.startswith("checkout.session."):
            sub = str(obj.get("subscription") or "")
            checkout_ref = str(obj.get("id", ""))
        return ProviderEvent(
            event_id=str(event["id"]),
            type=kind,
            payload=event,
            subscription_id=sub,
            checkout_ref=checkout_ref,
            org_id=org,
            invoice=invoice,
        )

    async def subscription(self, subscription_id: str) -> RemoteSubscription:
        obj = await self._call(
            f"subscription {subscription_id}",
            self._client.v1.subscriptions.retrieve,
            subscription_id,
        )
        return subscription_from(_dict(obj))

    async def subscriptions(self) -> list[RemoteSubscription]:
        def every() -> list[dict[str, Any]]:
            page = self._client.v1.subscriptions.list({"status": "all", "limit": 100})
            return [_dict(s) for s in page.auto_paging_iter()]

        return [subscription_from(s) for s in await self._call("the subscription list", every)]

    async def invoices(self, subscription_ids: list[str]) -> list[RemoteInvoice]:
        def every() -> list[dict[str, Any]]:
            page = self._client.v1.invoices.list({"limit": 100})
            return [_dict(i) for i in page.auto_paging_iter()]

        wanted = set(subscription_ids)
        found = [invoice_from(i) for i in await self._call("the invoice list", every)]
        return [i for i in found if i.subscription_id in wanted]

    async def refund(self, payment_ref: str, amount_cents: int, currency: str) -> str:
        key = "charge" if payment_ref.startswith(("ch_", "py_")) else "payment_intent"
        refund = await self._call(
            f"a refund of {payment_ref}",
            self._client.v1.refunds.create,
            {key: payment_ref, "amount": amount_cents},
        )
        return str(refund.id)

    async def cancel(self, subscription_id: str) -> None:
        await self._call(
            f"cancelling {subscription_id}", self._client.v1.subscriptions.cancel, subscription_id
        )
