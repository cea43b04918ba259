"""The billing resources of a control process: the providers that are on, the clock, and
the database and routing outbox their effects go through (``BILLING`` in the app)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

from billing.providers.base import Provider
from billing.settings import BillingSettings
from control.db import Database
from control.errors import ApiError
from control.routing_outbox import RoutingOutbox

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_providers(settings: BillingSettings, db: Database) -> dict[str, Provider]:
    """One provider object per provider that is on. SDKs are imported only for those."""
    built: dict[str, Provider] = {}
    if settings.stripe_api_key:
        from billing.providers.stripe_provider import StripeProvider

        built["stripe"] = StripeProvider(
            settings.stripe_api_key,
            settings.stripe_webhook_secret,
            api_base=settings.stripe_api_base,
            tolerance=settings.stripe_tolerance,
        )
    if settings.razorpay_key_id:
        from billing.providers.razorpay_provider import RazorpayProvider

        built["razorpay"] = RazorpayProvider(
            settings.razorpay_key_id,
            settings.razorpay_key_secret,
            settings.razorpay_webhook_secret,
            api_base=settings.razorpay_api_base,
        )
    if settings.paypal_client_id:
        from billing.providers.paypal_provider import PaypalProvider

        built["paypal"] = PaypalProvider(
            settings.paypal_client_id,
            settings.paypal_client_secret,
            settings.paypal_webhook_id,
            api_base=settings.paypal_api_base,
        )
    if settings.mock:
        from billing.providers.mock_provider import MockProvider

        built["mock"] = MockProvider(db, settings.mock_webhook_secret)
    return built


class Billing:
    def __init__(
        self,
        db: Database,
        outbox: RoutingOutbox,
        settings: BillingSettings,
        providers: dict[str, Provider],
        clock: Clock = utc_now,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.settings = settings
        self.providers = providers
        self.clock = clock

    def provider(self, name: str) -> Provider:
        found = self.providers.get(name)
        if found is None:
            on = ", ".join(self.providers) or "none is configured"
            raise ApiError(
                404,
                "no_provider",
                f"the payment provider {name[:20]!r} is not enabled here (enabled: {on})",
            )
        return found


BILLING = web.AppKey("billing", Billing)
