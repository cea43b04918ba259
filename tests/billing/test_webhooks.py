"""Each provider's checkout and webhooks, through its official SDK against a local server
that answers as its REST API does: valid, tampered, stale, replayed, out of order, and
delivered twice at once."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from billing.providers.base import WebhookRefused
from billing.providers.mock_provider import MockProvider
from billing.providers.razorpay_provider import RazorpayProvider
from billing.providers.stripe_provider import StripeProvider
from tests.billing.conftest import Shop


async def stripe_customer_on_plan(shop: Shop) -> tuple[dict, dict, dict]:  # type: ignore[type-arg]
    plan = await shop.plan()
    user = await shop.customer()
    started = await shop.checkout(user, "stripe", plan["id"])
    assert started["url"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    session = next(iter(shop.apis.stripe_sessions.values()))
    assert session["subscription_data"]["metadata"]["org_id"] == user["org"]["id"]
    assert session["line_items"][0]["price"] == plan["prices"]["stripe"]
    event = shop.apis.stripe_complete(session["id"])
    return plan, user, event


async def test_stripe_checkout_and_its_webhook_put_the_org_on_the_plan(shop: Shop) -> None:
    plan, user, event = await stripe_customer_on_plan(shop)
    answer = await shop.webhook("stripe", shop.apis.stripe_signed(event))
    assert answer["duplicate"] is False and "active" in answer["outcome"]
    state = await shop.state(user)
    assert state["plan"]["id"] == plan["id"]
    assert state["subscription"]["status"] == "active"
    assert state["subscription"]["provider"] == "stripe"
    assert state["subscription"]["current_period_end"]


async def test_stripe_webhooks_that_do_not_verify_are_refused_and_kept_nowhere(
    shop: Shop,
) -> None:
    _, user, event = await stripe_customer_on_plan(shop)
    body, headers = shop.apis.stripe_signed(event)
    tampered = body.replace(b'"complete"', b'"COMPLETE"')
    stale = shop.apis.stripe_signed(event, at=int(time.time()) - 3600)
    other_secret = shop.apis.stripe_signed(event, secret="whsec_someone_else")
    for delivery in ((tampered, headers), stale, other_secret, (body, {})):
        answer = await shop.webhook("stripe", delivery, status=400)
        assert answer["error"]["code"] == "bad_signature"
    assert "timestamp" in (await shop.webhook("stripe", stale, 400))["error"]["message"].lower()
    stored = await shop.db.value(
        "SELECT count(*) FROM billing_events WHERE event_id = %s", (event["id"],)
    )
    assert stored == 0
    assert (await shop.state(user))["plan"]["id"] == "free"


async def test_a_replayed_stripe_event_answers_200_and_acts_once(shop: Shop) -> None:
    _plan, user, event = await stripe_customer_on_plan(shop)
    first = await shop.webhook("stripe", shop.apis.stripe_signed(event))
    # The attacker (or Stripe's retry) sends it again later, freshly signed or not.
    again = await shop.webhook("stripe", shop.apis.stripe_signed(event))
    assert first["duplicate"] is False and again["duplicate"] is True
    assert await shop.audits(user["org"]["id"], "billing.plan") == 1
    assert (
        await shop.db.value(
            "SELECT count(*) FROM billing_events WHERE provider = 'stripe' AND event_id = %s",
            (event["id"],),
        )
        == 1
    )


async def test_two_deliveries_of_one_event_at_once_have_one_effect(shop: Shop) -> None:
    _, user, event = await stripe_customer_on_plan(shop)
    delivery = shop.apis.stripe_signed(event)
    answers = await asyncio.gather(*(shop.webhook("stripe", delivery) for _ in range(4)))
    assert sorted(a["duplicate"] for a in answers) == [False, True, True, True]
    assert await shop.audits(user["org"]["id"], "billing.plan") == 1
    assert await shop.audits(user["org"]["id"], "billing.active") == 1


async def test_stripe_events_out_of_order_end_in_the_providers_state(shop: Shop) -> None:
    _plan, user, completed = await stripe_customer_on_plan(shop)
    sub_id = next(iter(shop.apis.stripe_subs))
    sub = shop.apis.stripe_subs[sub_id]
    updated = shop.apis.stripe_event("customer.subscription.updated", dict(sub))
    # At Stripe the subscription is then cancelled; "deleted" arrives first, the older
    # "updated" (active) and "checkout completed" after it.
    sub["status"] = "canceled"
    deleted = shop.apis.stripe_event("customer.subscription.deleted", dict(sub))
    await shop.webhook("stripe", shop.apis.stripe_signed(deleted))
    await shop.webhook("stripe", shop.apis.stripe_signed(updated))
    await shop.webhook("stripe", shop.apis.stripe_signed(completed))
    state = await shop.state(user)
    assert state["plan"]["id"] == "free"
    assert state["subscription"]["status"] == "canceled"


async def test_a_stripe_payment_failure_makes_the_subscription_past_due(shop: Shop) -> None:
    plan, user, completed = await stripe_customer_on_plan(shop)
    await shop.webhook("stripe", shop.apis.stripe_signed(completed))
    sub_id = next(iter(shop.apis.stripe_subs))
    shop.apis.stripe_subs[sub_id]["status"] = "past_due"
    invoice = shop.apis.stripe_invoice(sub_id, "open", 1500)
    failed = shop.apis.stripe_event("invoice.payment_failed", invoice)
    await shop.webhook("stripe", shop.apis.stripe_signed(failed))
    state = await shop.state(user)
    assert state["subscription"]["status"] == "past_due"
    assert state["subscription"]["past_due_since"]
    assert state["plan"]["id"] == plan["id"]  # kept through the grace period
    recorded = {i["id"]: i for i in state["invoices"]}
    assert recorded[invoice["id"]]["status"] == "failed"
    assert recorded[invoice["id"]]["tax_cents"] == 150


async def test_razorpay_subscription_checkout_and_webhooks(shop: Shop) -> None:
    plan = await shop.plan()
    user = await shop.customer()
    started = await shop.checkout(user, "razorpay", plan["id"])
    assert started["url"].startswith("https://rzp.io/i/")
    sub_id = next(iter(shop.apis.razorpay_subs))
    assert shop.apis.razorpay_subs[sub_id]["plan_id"] == plan["prices"]["razorpay"]
    shop.apis.razorpay_charge(sub_id)
    event = shop.apis.razorpay_event("subscription.activated", sub_id)
    body, headers = shop.apis.razorpay_signed(event)

    tampered = body.replace(b'"active"', b'"halted"')
    await shop.webhook("razorpay", (tampered, headers), status=400)
    wrong = shop.apis.razorpay_signed(event, secret="not-the-secret")
    await shop.webhook("razorpay", wrong, status=400)
    assert (await shop.state(user))["plan"]["id"] == "free"

    assert (await shop.webhook("razorpay", (body, headers)))["duplicate"] is False
    assert (await shop.webhook("razorpay", (body, headers)))["duplicate"] is True
    state = await shop.state(user)
    assert state["plan"]["id"] == plan["id"]
    assert state["subscription"]["status"] == "active"
    assert await shop.audits(user["org"]["id"], "billing.plan") == 1

    # A charge fails: Razorpay marks the subscription pending and retries.
    shop.apis.razorpay_charge(sub_id, ok=False)
    pending = shop.apis.razorpay_event("subscription.pending", sub_id)
    await shop.webhook("razorpay", shop.apis.razorpay_signed(pending))
    assert (await shop.state(user))["subscription"]["status"] == "past_due"


async def test_paypal_subscription_checkout_and_webhooks(shop: Shop) -> None:
    plan = await shop.plan()
    user = await shop.customer()
    started = await shop.checkout(user, "paypal", plan["id"])
    assert "paypal.com/webapps/billing/subscriptions?ba_token=" in started["url"]
    sub_id = next(iter(shop.apis.paypal_subs))
    assert shop.apis.paypal_subs[sub_id]["custom_id"] == user["org"]["id"]
    shop.apis.paypal_activate(sub_id)
    event = shop.apis.paypal_event("BILLING.SUBSCRIPTION.ACTIVATED", sub_id)
    body, headers = shop.apis.paypal_signed(event)

    tampered = body.replace(b'"ACTIVE"', b'"CANCELLED"')
    await shop.webhook("paypal", (tampered, headers), status=400)
    other_webhook = shop.apis.paypal_signed(event, webhook_id="WH-SOMEONE-ELSE")
    await shop.webhook("paypal", other_webhook, status=400)
    lacking = {k: v for k, v in headers.items() if k != "PAYPAL-TRANSMISSION-SIG"}
    await shop.webhook("paypal", (body, lacking), status=400)
    assert (await shop.state(user))["plan"]["id"] == "free"

    assert (await shop.webhook("paypal", (body, headers)))["duplicate"] is False
    assert (await shop.webhook("paypal", (body, headers)))["duplicate"] is True
    state = await shop.state(user)
    assert state["plan"]["id"] == plan["id"]
    assert state["subscription"]["provider_subscription_id"] == sub_id

    # Out of order: PayPal cancels; the cancellation and a late "activated" both arrive.
    shop.apis.paypal_subs[sub_id]["status"] = "CANCELLED"
    cancelled = shop.apis.paypal_event("BILLING.SUBSCRIPTION.CANCELLED", sub_id)
    await shop.webhook("paypal", shop.apis.paypal_signed(cancelled))
    late = dict(event, id="WH-LATE-" + event["id"][3:])
    await shop.webhook("paypal", shop.apis.paypal_signed(late))
    assert (await shop.state(user))["plan"]["id"] == "free"


async def test_a_webhook_for_a_provider_that_is_off_is_404(shop: Shop) -> None:
    resp = await shop.client.post("/v1/billing/webhooks/square", data=b"{}")
    assert resp.status == 404
    assert "not enabled" in (await resp.json())["error"]["message"]


async def test_the_body_is_never_parsed_before_the_signature(shop: Shop) -> None:
    """Not JSON at all, or JSON with control characters: refused for the signature, with
    no 422 or 500 from reading it first."""
    for body in (b"\xff\xfe not json", json.dumps({"id": "evt_1", "x": "\u0001"}).encode()):
        answer = await shop.webhook("stripe", (body, {"Stripe-Signature": "t=1,v1=00"}), status=400)
        assert answer["error"]["code"] == "bad_signature"


@settings(max_examples=200, deadline=None)
@example(body=b"{}", signature="t=" + "9" * 400 + ",v1=00", which="mock")
@example(body=b"{}", signature="\x80", which="razorpay")
@given(
    body=st.binary(max_size=300),
    signature=st.text(max_size=120),
    which=st.sampled_from(["stripe", "razorpay", "mock"]),
)
def test_any_bytes_and_any_signature_header_are_refused_cleanly(
    body: bytes, signature: str, which: str
) -> None:
    """Whatever arrives, verification answers WebhookRefused, never another error."""
    providers = {
        "stripe": (
            StripeProvider("sk_test_x", "whsec_x"),
            "Stripe-Signature",
        ),
        "razorpay": (RazorpayProvider("rzp_x", "secret", "webhook-secret"), "X-Razorpay-Signature"),
        "mock": (MockProvider(None, "mock-secret"), "Mock-Signature"),  # type: ignore[arg-type]
    }
    provider, header = providers[which]
    with pytest.raises(WebhookRefused):
        asyncio.run(provider.verify(body, {header: signature}))
