"""PayPal through its official server SDK (``paypal-server-sdk``): subscriptions (the
customer approves at the subscription's ``approve`` link), and webhooks checked with
PayPal's verify-webhook-signature API: the transmission headers, our webhook id and the
event exactly as it arrived go to PayPal, which answers SUCCESS or FAILURE. The SDK has no
controller for that endpoint, so it is one HTTP call with the SDK's own OAuth token.

``api_base`` replaces the SDK's environments (tests run a local server that answers as
PayPal's REST API does)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import requests
from apimatic_core.utilities.api_helper import ApiHelper
from paypalserversdk.configuration import Configuration, Server
from paypalserversdk.exceptions.api_exception import ApiException
from paypalserversdk.http.auth.o_auth_2 import ClientCredentialsAuthCredentials
from paypalserversdk.models.cancel_subscription_request import CancelSubscriptionRequest
from paypalserversdk.models.create_subscription_request import CreateSubscriptionRequest
from paypalserversdk.models.money import Money
from paypalserversdk.models.refund_request import RefundRequest
from paypalserversdk.models.subscription_application_context import (
    SubscriptionApplicationContext,
)
from paypalserversdk.paypal_serversdk_client import PaypalServersdkClient

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
    "APPROVAL_PENDING": "pending",
    "APPROVED": "pending",
    "ACTIVE": "active",
    "SUSPENDED": "past_due",
    "CANCELLED": "canceled",
    "EXPIRED": "canceled",
}
_TRANSMISSION = (
    "auth_algo",
    "cert_url",
    "transmission_id",
    "transmission_sig",
    "transmission_time",
)
# How far back reconciliation reads a subscription's transactions.
TRANSACTION_DAYS = 400


class _AtBase(Configuration):  # type: ignore[misc]
    """The SDK's configuration with one base URL for every server."""

    def __init__(self, base: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._base = base.rstrip("/")

    def get_base_uri(self, server: Server = Server.DEFAULT) -> str:
        return self._base


def _dict(result: Any) -> dict[str, Any]:
    """The response as PayPal sent it. The SDK's models drop falsy members on the way back
    to a dict (a ``failed_payments_count`` of 0 comes out as None and fails), so the JSON
    text is read instead."""
    text = getattr(result, "text", "") or ""
    if text:
        parsed: dict[str, Any] = json.loads(text)
        return parsed
    return ApiHelper.to_dictionary(result.body) if result.body is not None else {}


def subscription_from(obj: Mapping[str, Any]) -> RemoteSubscription:
    billing = obj.get("billing_info") or {}
    last = (billing.get("last_payment") or {}).get("time")
    status = str(obj.get("status") or "")
    mapped = _STATUS.get(status, "pending")
    if mapped == "active" and int(billing.get("failed_payments_count") or 0) > 0:
        mapped = "past_due"  # PayPal keeps it ACTIVE while it retries a failed payment
    return RemoteSubscription(
        id=str(obj["id"]),
        status=mapped,
        plan_ref=str(obj.get("plan_id") or ""),
        org_id=str(obj.get("custom_id") or ""),
        customer_id=str((obj.get("subscriber") or {}).get("payer_id") or ""),
        period_start=seconds(last or obj.get("start_time")),
        period_end=seconds(billing.get("next_billing_time")),
        raw_status=status,
    )


def transaction_invoice(sub_id: str, obj: Mapping[str, Any]) -> RemoteInvoice:
    amounts = obj.get("amount_with_breakdown") or {}
    gross = amounts.get("gross_amount") or {}
    tax = amounts.get("tax_amount") or {}
    net = amounts.get("net_amount") or {}

    def cents(money: Mapping[str, Any]) -> int:
        return round(float(money.get("value") or 0) * 100)

    status = str(obj.get("status") or "")
    return RemoteInvoice(
        id=str(obj["id"]),
        subscription_id=sub_id,
        status={"COMPLETED": "paid", "DECLINED": "failed", "REFUNDED": "refunded"}.get(
            status, "open"
        ),
        currency=str(gross.get("currency_code") or "").lower(),
        subtotal_cents=cents(gross) - cents(tax),
        tax_cents=cents(tax),
        total_cents=cents(gross) or cents(net),
        payment_ref=str(obj["id"]),  # a subscription payment is refunded as its capture
        issued_at=seconds(obj.get("time")),
    )


class PaypalProvider:
    name = "paypal"

    def __init__(
        self, client_id: str, client_secret: str, webhook_id: str, *, api_base: str
    ) -> None:
        credentials = ClientCredentialsAuthCredentials(
            o_auth_client_id=client_id, o_auth_client_secret=client_secret
        )
        self._client = PaypalServersdkClient(
            config=_AtBase(api_base, client_credentials_auth_credentials=credentials, timeout=30)
        )
        self._base = api_base.rstrip("/")
        self._webhook_id = webhook_id
        self._token = ""
        self._token_until = 0.0

    async def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except (ApiException, requests.RequestException, ValueError) as exc:
            raise ProviderError(f"PayPal refused {what}: {exc}") from exc

    def _bearer(self) -> str:
        """An OAuth access token from the SDK's OAuth controller, kept until it expires."""
        if not self._token or time.time() > self._token_until:
            auth = self._client.auth_managers["Oauth2"]
            token = self._client.o_auth_authorization.request_token(
                {"authorization": auth.build_basic_auth_header()}
            ).body
            self._token = str(token.access_token)
            self._token_until = time.time() + float(getattr(token, "expires_in", 0) or 0) - 60
        return self._token

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
        body = CreateSubscriptionRequest(
            plan_id=provider_plan_id,
            custom_id=org_id,
            application_context=SubscriptionApplicationContext(
                return_url=success_url, cancel_url=cancel_url
            ),
        )
        result = await self._call(
            "the subscription",
            self._client.subscriptions.create_subscription,
            {"body": body, "prefer": "return=representation", "paypal_request_id": checkout_id},
        )
        created = _dict(result)
        approve = next(
            (link["href"] for link in created.get("links") or [] if link.get("rel") == "approve"),
            "",
        )
        if not approve:
            raise ProviderError("PayPal created the subscription without an approval link")
        return CheckoutStart(url=approve, ref=str(created["id"]))

    async def verify(self, raw: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        given = {
            name: header(headers, f"PAYPAL-{name.upper().replace('_', '-')}")
            for name in _TRANSMISSION
        }
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise WebhookRefused(f"the PayPal webhook lacks {', '.join(missing)}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookRefused("the PayPal webhook body is not UTF-8") from None
        # The event goes back byte for byte: re-encoding it could change what was signed.
        request = (
            "{"
            + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in given.items())
            + f',"webhook_id":{json.dumps(self._webhook_id)},"webhook_event":{text}'
            + "}"
        )

        def ask() -> str:
            reply = requests.post(
                f"{self._base}/v1/notifications/verify-webhook-signature",
                data=request.encode(),
                headers={
                    "Authorization": f"Bearer {self._bearer()}",
                    "Content-Type": "application/json",
                },
                timeout=30,
            )
            if reply.status_code >= 400:
                return f"FAILURE ({reply.status_code})"
            return str(reply.json().get("verification_status", ""))

        verdict = await self._call("the webhook verification", ask)
        if verdict != "SUCCESS":
            raise WebhookRefused(f"PayPal does not verify this webhook: {verdict}")
        event = json.loads(text)
        resource = event.get("resource") or {}
        kind = str(event.get("event_type", ""))
        sub = ""
        if kind.startswith("BILLING.SUBSCRIPTION."):
            sub = str(resource.get("id", ""))
        elif kind.startswith("PAYMENT.SALE."):
            sub = str(resource.get("billing_agreement_id", ""))
        return ProviderEvent(
            event_id=str(event["id"]),
            type=kind,
            payload=event,
            subscription_id=sub,
            checkout_ref=sub,
            org_id=str(resource.get("custom_id") or resource.get("custom") or ""),
        )

    async def subscription(self, subscription_id: str) -> RemoteSubscription:
        result = await self._call(
            f"subscription {subscription_id}",
            self._client.subscriptions.get_subscription,
            {"id": subscription_id},
        )
        return subscription_from(_dict(result))

    async def subscriptions(self) -> list[RemoteSubscription]:
        found: list[RemoteSubscription] = []
        for page in range(1, 1001):
            result = await self._call(
                "the subscription list",
                self._client.subscriptions.list_subscriptions,
                {"page_size": 20, "page": page},
            )
            items = _dict(result).get("subscriptions") or []
            found.extend(subscription_from(s) for s in items)
            if len(items) < 20:
                break
        return found

    async def invoices(self, subscription_ids: list[str]) -> list[RemoteInvoice]:
        end = time.time()
        start = end - TRANSACTION_DAYS * 86400

        def iso(t: float) -> str:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

        found: list[RemoteInvoice] = []
        for sub in subscription_ids:
            result = await self._call(
                f"the transactions of {sub}",
                self._client.subscriptions.list_subscription_transactions,
                {"id": sub, "start_time": iso(start), "end_time": iso(end)},
            )
            for item in _dict(result).get("transactions") or []:
                found.append(transaction_invoice(sub, item))
        return found

    async def refund(self, payment_ref: str, amount_cents: int, currency: str) -> str:
        body = RefundRequest(
            amount=Money(currency_code=currency.upper(), value=f"{amount_cents / 100:.2f}")
        )
        result = await self._call(
            f"a refund of {payment_ref}",
            self._client.payments.refund_captured_payment,
            {"capture_id": payment_ref, "body": body, "prefer": "return=representation"},
        )
        return str(_dict(result).get("id", ""))

    async def cancel(self, subscription_id: str) -> None:
        await self._call(
            f"cancelling {subscription_id}",
            self._client.subscriptions.cancel_subscription,
            {"id": subscription_id, "body": CancelSubscriptionRequest(reason="cancelled")},
        )
