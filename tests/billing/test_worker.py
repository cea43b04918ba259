"""``burrowd worker billing``: reconciliation with each provider, invoices with their tax
fields, dunning through its stages on a test clock with mail to a real local SMTP server,
cancellations and refunds, and two workers at once."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller

from billing.email import SmtpSender
from billing.service import BILLING
from billing.worker import BillingWorker, billing_worker
from control import workers
from tests.billing.conftest import Shop


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def worker(shop: Shop, port: int = 1) -> BillingWorker:
    billing = shop.client.app[BILLING]  # type: ignore[index]
    return BillingWorker(
        billing, SmtpSender("127.0.0.1", port, "billing@burrow.test", starttls=False)
    )


async def paying_on(shop: Shop, provider: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A customer whose checkout through ``provider`` went through; (plan, user, sub id)."""
    plan = await shop.plan()
    user = await shop.customer()
    await shop.checkout(user, provider, plan["id"])
    apis = shop.apis
    if provider == "stripe":
        session = next(iter(apis.stripe_sessions.values()))
        event = apis.stripe_complete(session["id"])
        await shop.webhook("stripe", apis.stripe_signed(event))
        sub_id = session["subscription"]
    elif provider == "razorpay":
        sub_id = next(iter(apis.razorpay_subs))
        apis.razorpay_charge(sub_id)
        event = apis.razorpay_event("subscription.activated", sub_id)
        await shop.webhook("razorpay", apis.razorpay_signed(event))
    else:
        sub_id = next(iter(apis.paypal_subs))
        apis.paypal_activate(sub_id)
        event = apis.paypal_event("BILLING.SUBSCRIPTION.ACTIVATED", sub_id)
        await shop.webhook("paypal", apis.paypal_signed(event))
    assert (await shop.state(user))["plan"]["id"] == plan["id"]
    return plan, user, sub_id


async def razorpay_charged(shop: Shop, sub_id: str, *, ok: bool) -> None:
    """Razorpay charges the next cycle (or fails to) and sends its webhook about it."""
    shop.apis.razorpay_charge(sub_id, ok=ok)
    kind = "subscription.charged" if ok else "subscription.pending"
    await shop.webhook(
        "razorpay", shop.apis.razorpay_signed(shop.apis.razorpay_event(kind, sub_id))
    )


def test_the_billing_worker_is_registered() -> None:
    assert workers.factory("billing") is billing_worker


@pytest.mark.parametrize("provider", ["stripe", "razorpay", "paypal"])
async def test_reconciliation_repairs_what_webhooks_missed_and_records_invoices(
    shop: Shop, provider: str
) -> None:
    _plan, user, sub_id = await paying_on(shop, provider)
    org = user["org"]["id"]
    # The provider cancels and no webhook ever arrives.
    if provider == "stripe":
        shop.apis.stripe_subs[sub_id]["status"] = "canceled"
    elif provider == "razorpay":
        shop.apis.razorpay_subs[sub_id]["status"] = "cancelled"
    else:
        shop.apis.paypal_subs[sub_id]["status"] = "CANCELLED"
    findings = await worker(shop).reconciler.run_once()
    mine = [f for f in findings if f.org_id == org]
    repaired = [f for f in mine if f.subject == f"subscription {sub_id}"]
    assert len(repaired) == 1 and repaired[0].action.startswith("repaired: canceled")
    assert (await shop.state(user))["plan"]["id"] == "free"
    invoices = (await shop.state(user))["invoices"]
    assert invoices, "the provider's invoice is recorded"
    assert all(i["tax_cents"] > 0 for i in invoices)
    if provider != "paypal":
        assert invoices[0]["tax_id"]
    listed = await shop.as_operator("GET", "/v1/admin/billing/reconciliation")
    assert any(
        f["org_id"] == org and f["subject"] == f"subscription {sub_id}" for f in listed["findings"]
    )
    # Nothing differs any more: the next pass finds nothing for this org.
    again = await worker(shop).reconciler.run_once()
    assert [f for f in again if f.org_id == org] == []


async def test_two_workers_at_once_repair_an_org_once(shop: Shop) -> None:
    _plan, user, sub_id = await paying_on(shop, "stripe")
    shop.apis.stripe_subs[sub_id]["status"] = "canceled"
    first, second = await asyncio.gather(
        worker(shop).reconciler.run_once(), worker(shop).reconciler.run_once()
    )
    org = user["org"]["id"]
    repairs = [f for f in first + second if f.org_id == org and f.subject.startswith("sub")]
    assert len(repairs) == 1
    assert await shop.audits(org, "billing.plan") == 2  # up at checkout, down once


async def test_dunning_reminds_then_downgrades_on_the_test_clock(
    shop: Shop, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    plan, user, sub_id = await paying_on(shop, "razorpay")
    await razorpay_charged(shop, sub_id, ok=False)
    dunning = worker(shop, port).dunning
    email = user["user"]["email"]

    def mine() -> list[Message]:
        return [m for m in inbox.messages if m["To"] == email]

    assert any(f"{user['org']['id']}: reminder 1" in d for d in await dunning.run_once())
    assert len(mine()) == 1 and "Payment failed" in mine()[0]["Subject"]
    assert not [d for d in await dunning.run_once() if user["org"]["id"] in d]  # not twice
    shop.clock.now += timedelta(days=3, minutes=1)
    await dunning.run_once()
    assert len(mine()) == 2
    shop.clock.now += timedelta(days=3)
    await dunning.run_once()
    assert len(mine()) == 3
    assert (await shop.state(user))["plan"]["id"] == plan["id"]  # still in the grace period
    shop.clock.now += timedelta(days=1)
    done = await dunning.run_once()
    assert any(user["org"]["id"] in d and "downgraded" in d for d in done)
    assert len(mine()) == 4 and "has ended" in mine()[3]["Subject"]
    state = await shop.state(user)
    assert state["plan"]["id"] == "free"
    assert state["subscription"]["status"] == "canceled"
    assert sub_id in shop.apis.cancels  # no more charges at the provider
    assert await shop.audits(user["org"]["id"], "billing.downgrade") == 1


async def test_a_payment_in_the_grace_period_ends_dunning(
    shop: Shop, smtp: tuple[Inbox, int]
) -> None:
    _inbox, port = smtp
    plan, user, sub_id = await paying_on(shop, "razorpay")
    await razorpay_charged(shop, sub_id, ok=False)
    dunning = worker(shop, port).dunning
    await dunning.run_once()
    await razorpay_charged(shop, sub_id, ok=True)
    shop.clock.now += timedelta(days=30)
    assert not [d for d in await dunning.run_once() if user["org"]["id"] in d]
    assert (await shop.state(user))["plan"]["id"] == plan["id"]


async def test_a_mail_server_that_is_down_delays_the_reminder_not_loses_it(
    shop: Shop, smtp: tuple[Inbox, int]
) -> None:
    _inbox, port = smtp
    _plan, user, sub_id = await paying_on(shop, "razorpay")
    await razorpay_charged(shop, sub_id, ok=False)
    org = user["org"]["id"]
    assert not [d for d in await worker(shop, _free_port()).dunning.run_once() if org in d]
    assert await shop.audits(org, "billing.reminder") == 0
    assert [d for d in await worker(shop, port).dunning.run_once() if org in d]
    assert await shop.audits(org, "billing.reminder") == 1


async def test_cancel_and_refund_through_the_api(shop: Shop) -> None:
    _plan, user, sub_id = await paying_on(shop, "stripe")
    await worker(shop).reconciler.run_once()  # brings in the first invoice
    invoice = (await shop.state(user))["invoices"][0]
    # Customers cannot refund themselves.
    await shop.api.call(
        "POST", "/v1/billing/refunds", user["key"], 403, json={"invoice_id": invoice["id"]}
    )
    too_much = {"invoice_id": invoice["id"], "amount_cents": invoice["total_cents"] + 1}
    await shop.as_operator("POST", "/v1/billing/refunds", 422, json=too_much)
    part = await shop.as_operator(
        "POST",
        "/v1/billing/refunds",
        201,
        json={"invoice_id": invoice["id"], "amount_cents": 500, "reason": "outage credit"},
    )
    assert part["provider_refund_id"].startswith("re_")
    rest = await shop.as_operator(
        "POST", "/v1/billing/refunds", 201, json={"invoice_id": invoice["id"]}
    )
    assert rest["amount_cents"] == invoice["total_cents"] - 500
    assert [r["amount"] for r in shop.apis.refunds] == [500, invoice["total_cents"] - 500]
    await shop.as_operator("POST", "/v1/billing/refunds", 422, json={"invoice_id": invoice["id"]})
    assert await shop.audits(user["org"]["id"], "billing.refund") == 2

    await shop.api.call("POST", "/v1/billing/cancel", user["key"], json={"reason": "too dear"})
    assert sub_id in shop.apis.cancels
    state = await shop.state(user)
    assert state["plan"]["id"] == "free" and state["subscription"]["status"] == "canceled"
    assert await shop.audits(user["org"]["id"], "billing.cancel") == 1
    await shop.api.call("POST", "/v1/billing/cancel", user["key"], 409, json={})


async def test_the_mock_provider_walks_the_whole_flow(shop: Shop) -> None:
    plan = await shop.plan(price_cents=900)
    user = await shop.customer()
    started = await shop.checkout(user, "mock", plan["id"])
    page = await shop.client.get(urlsplit(started["url"]).path)
    text = await page.text()
    assert page.status == 200 and "Mock checkout" in text and "no money" in text
    sub = started["url"].rsplit("/", 1)[1]
    resp = await shop.client.post(f"/v1/billing/mock/{sub}/pay", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/v1/billing/return?checkout=")
    state = await shop.state(user)
    assert state["plan"]["id"] == plan["id"]
    assert state["subscription"]["provider"] == "mock"
    # The renewal fails, then dunning and reconciliation see the mock's books.
    await shop.client.post(f"/v1/billing/mock/{sub}/fail", allow_redirects=False)
    assert (await shop.state(user))["subscription"]["status"] == "past_due"
    findings = await worker(shop).reconciler.run_once()
    invoices = (await shop.state(user))["invoices"]
    assert {i["status"] for i in invoices} == {"paid", "failed"}
    assert {i["total_cents"] for i in invoices} == {900}
    assert not [
        f
        for f in findings
        if f.subject.startswith("subscription") and f.org_id == user["org"]["id"]
    ]
    events = await shop.as_operator("GET", f"/v1/admin/billing/events?org_id={user['org']['id']}")
    assert len(events["events"]) == 2


async def test_plans_are_listed_and_checkout_refuses_what_is_not_sold(shop: Shop) -> None:
    plan = await shop.plan()
    user = await shop.customer()
    listed = await shop.client.get("/v1/plans")
    plans = {p["id"]: p for p in (await listed.json())["plans"]}
    assert plans[plan["id"]]["providers"] == ["mock", "paypal", "razorpay", "stripe"]
    assert "free" in plans
    bad = await shop.api.call(
        "POST",
        "/v1/billing/checkout",
        user["key"],
        422,
        json={"provider": "stripe", "plan": "free"},
    )
    assert "no paid plan" in bad["error"]["message"]
    off = await shop.api.call(
        "POST",
        "/v1/billing/checkout",
        user["key"],
        404,
        json={"provider": "square", "plan": plan["id"]},
    )
    assert "not enabled" in off["error"]["message"]


async def test_two_paid_subscriptions_for_one_org_are_left_for_an_operator(shop: Shop) -> None:
    plan, user, first = await paying_on(shop, "stripe")
    # A second checkout was paid at Stripe too (say, in another tab before the first landed).
    second = dict(shop.apis.stripe_subs[first], id="sub_second_" + first[-6:])
    shop.apis.stripe_subs[second["id"]] = second
    findings = await worker(shop).reconciler.run_once()
    mine = [f for f in findings if f.org_id == user["org"]["id"]]
    assert [f.action for f in mine if f.subject == f"subscription {second['id']}"] == [
        "left for an operator: the org has two live subscriptions"
    ]
    state = await shop.state(user)
    assert state["subscription"]["provider_subscription_id"] == first
    assert state["plan"]["id"] == plan["id"]
    again = await worker(shop).reconciler.run_once()  # said once, not on every pass
    assert not [f for f in again if f.org_id == user["org"]["id"]]
