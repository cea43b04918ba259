"""Billing settings: which providers are on (a provider is on when its keys are set), where
their APIs are, the webhook secrets, dunning and the SMTP server reminders go through.

``burrowd control`` and ``burrowd worker billing`` read them from the environment
(``BillingSettings.from_environ``); ``burrowd dev`` turns on the ``mock`` provider."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields


@dataclass(slots=True)
class BillingSettings:
    # The address customers reach control at, for the provider's return and cancel links
    # and the mock checkout page ("" : the address of the request that started checkout).
    public_url: str = ""
    stripe_api_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = ""  # "" : Stripe's own
    # Seconds a Stripe-Signature timestamp may lag behind our clock (Stripe's default).
    stripe_tolerance: int = 300
    razorpay_key_id: str = ""
    razorpay_key_secret: str = ""
    razorpay_webhook_secret: str = ""
    razorpay_api_base: str = ""  # "" : Razorpay's own
    paypal_client_id: str = ""
    paypal_client_secret: str = ""
    paypal_webhook_id: str = ""
    paypal_api_base: str = "https://api-m.paypal.com"  # the sandbox: api-m.sandbox.paypal.com
    # The dev/test provider: a checkout page served by control itself. Never for production.
    mock: bool = False
    mock_webhook_secret: str = "mock-webhook-secret"
    # Dunning: days a failed payment is retried before the org goes back to the free plan,
    # and the days (after the first failure) on which the owners get a reminder.
    grace_days: float = 7.0
    reminder_days: tuple[float, ...] = (0.0, 3.0, 6.0)
    # Seconds between the worker's passes (reconciliation, invoices, dunning).
    worker_interval: float = 300.0
    smtp_host: str = ""  # "" : reminders are logged, not sent
    smtp_port: int = 587
    smtp_from: str = "billing@localhost"
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_starttls: bool = True

    @classmethod
    def from_environ(cls, env: Mapping[str, str] = os.environ) -> BillingSettings:
        """``BURROW_BILLING_<FIELD>`` for every field (``BURROW_BILLING_STRIPE_API_KEY``...);
        a value that does not parse names its variable."""
        settings = cls()
        for f in fields(cls):
            name = f"BURROW_BILLING_{f.name.upper()}"
            text = env.get(name)
            if text is None:
                continue
            current = getattr(settings, f.name)
            try:
                value: object
                if isinstance(current, bool):
                    if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError(text)
                    value = text.lower() in ("1", "true", "yes")
                elif isinstance(current, int):
                    value = int(text)
                elif isinstance(current, float):
                    value = float(text)
                elif isinstance(current, tuple):
                    value = tuple(float(x) for x in text.split(",") if x.strip())
                else:
                    value = text
            except ValueError:
                raise ValueError(
                    f"{name}={text!r} is not a valid {type(current).__name__}"
                ) from None
            setattr(settings, f.name, value)
        return settings

    def problems(self) -> list[str]:
        """What is missing for the providers that are on, one line each, naming the
        variable to set: a provider whose webhooks cannot be verified must not start."""
        needed = {
            "stripe": ("stripe_webhook_secret",),
            "razorpay": ("razorpay_key_secret", "razorpay_webhook_secret"),
            "paypal": ("paypal_client_secret", "paypal_webhook_id", "paypal_api_base"),
        }
        found = []
        for provider in self.providers:
            for name in needed.get(provider, ()):
                if not getattr(self, name):
                    found.append(
                        f"{provider} is on but BURROW_BILLING_{name.upper()} is unset; set it "
                        f"(from the {provider} dashboard) or unset the {provider} keys"
                    )
        if self.grace_days < 0 or any(d < 0 for d in self.reminder_days):
            found.append("BURROW_BILLING_GRACE_DAYS and _REMINDER_DAYS must not be negative")
        return found

    @property
    def providers(self) -> tuple[str, ...]:
        """The providers that are on, in a fixed order."""
        on = []
        if self.stripe_api_key:
            on.append("stripe")
        if self.razorpay_key_id:
            on.append("razorpay")
        if self.paypal_client_id:
            on.append("paypal")
        if self.mock:
            on.append("mock")
        return tuple(on)
