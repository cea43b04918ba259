"""The one interface every payment provider implements, and the provider-neutral records it
returns.

A provider speaks its own API; what leaves it is in our vocabulary: a subscription status
of ``pending | active | past_due | canceled``, amounts in the currency's minor unit, times in
unix seconds. SDK calls block, so implementations run them in a thread
(``asyncio.to_thread``); the event loop never waits on a provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

STATUSES = ("pending", "active", "past_due", "canceled")


class WebhookRefused(Exception):
    """A webhook whose signature does not verify (forged, tampered, stale, or signed with
    another secret). Nothing of its body was parsed or acted on."""


class ProviderError(Exception):
    """The provider's API refused or failed a call; the message says which and why."""


@dataclass(frozen=True, slots=True)
class CheckoutStart:
    url: str  # where the customer goes to pay
    ref: str  # the provider's id of what was created (session, subscription)


@dataclass(frozen=True, slots=True)
class RemoteSubscription:
    """A subscription as the provider holds it now."""

    id: str
    status: str  # one of STATUSES
    plan_ref: str  # the provider's plan / price id
    org_id: str = ""  # from the metadata we attached at checkout
    customer_id: str = ""
    period_start: float | None = None
    period_end: float | None = None
    raw_status: str = ""  # the provider's own word for it, for findings and support


@dataclass(frozen=True, slots=True)
class RemoteInvoice:
    id: str
    subscription_id: str
    status: str  # paid | open | failed | void | refunded
    currency: str = ""
    subtotal_cents: int = 0
    tax_cents: int = 0
    total_cents: int = 0
    tax_id: str = ""
    payment_ref: str = ""  # what a refund is made against
    period_start: float | None = None
    period_end: float | None = None
    issued_at: float | None = None


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A verified webhook event."""

    event_id: str
    type: str
    payload: dict[str, Any]
    subscription_id: str = ""
    checkout_ref: str = ""  # a checkout this event completes
    org_id: str = ""  # when the event itself names it (metadata, notes, custom_id)
    invoice: RemoteInvoice | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    name: str

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
        """Start a subscription to ``provider_plan_id``; where the customer pays."""
        ...

    async def verify(self, raw: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        """Check the signature over ``raw`` exactly as the provider documents it, then parse
        it. WebhookRefused when it does not verify."""
        ...

    async def subscription(self, subscription_id: str) -> RemoteSubscription:
        """The subscription's current state at the provider."""
        ...

    async def subscriptions(self) -> list[RemoteSubscription]:
        """Every subscription the provider holds for us (for reconciliation)."""
        ...

    async def invoices(self, subscription_ids: list[str]) -> list[RemoteInvoice]:
        """Invoices (or, for PayPal, the subscription's transactions)."""
        ...

    async def refund(self, payment_ref: str, amount_cents: int, currency: str) -> str:
        """Refund ``amount_cents`` of a payment; the provider's refund id."""
        ...

    async def cancel(self, subscription_id: str) -> None:
        """Cancel the subscription at once."""
        ...


def header(headers: Mapping[str, str], name: str) -> str:
    """A header's value whatever the case of its name (aiohttp's are case-insensitive; a
    plain dict in a test is not)."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), "")
    return value


def seconds(value: object) -> float | None:
    """Unix seconds from an int, a float, a numeric string, or an ISO 8601 time."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value) or None
    text = str(value)
    try:
        return float(text)
    except ValueError:
        pass
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
