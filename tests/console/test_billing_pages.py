"""The billing pages over HTTP: an org's plan, usage, checkout through the mock provider and
cancellation; the operator's plans, an org's plan, billing records and refunds; the
certificate retry; and the console's routes on the control app's own router."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.web_urldispatcher import MatchedSubAppResource

from control.app import create_app
from tests.billing.conftest import apis as apis  # the fixture
from tests.billing.conftest import billing_settings
from tests.billing.provider_apis import ProviderApis
from tests.console.conftest import ConsoleSession, ConsoleSite, serve_console
from tests.console.test_pages import me
from tests.control.conftest import control_config

ENTITLEMENT_FIELDS = {
    "tunnels": "0",
    "agents": "0",
    "tcp_ports": "0",
    "connections": "0",
    "requests_per_minute": "0",
    "bandwidth_bytes_month": "0",
    "capture_retention_days": "0",
    "reserved_names": "0",
    "custom_domains": "0",
    "seats": "0",
    "tokens": "0",
}


def plan_form(plan_id: str, name: str, **changes: str) -> dict[str, str | list[str]]:
    fields: dict[str, str | list[str]] = {
        "id": plan_id,
        "name": name,
        "price_cents": "1900",
        "currency": "usd",
        "interval": "month",
        "public": "on",
        **ENTITLEMENT_FIELDS,
        "price_mock": f"mock_{plan_id}",
    }
    fields.update(changes)
    return fields


async def new_plan(operator: ConsoleSession, name: str = "Team", **changes: str) -> str:
    plan_id = f"team-{secrets.token_hex(4)}"
    made = await operator.submit(
        "/admin/plans", "/admin/plans", plan_form(plan_id, name, **changes)
    )
    assert made.status == 200 and made.url.endswith(f"/admin/plans/{plan_id}?done=plan_created"), (
        made.status,
        made.url,
        made.error,
    )
    return plan_id


def section(text: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}".*?</(?:table|section|dl)>', text, re.S)
    assert found, f"no #{element_id} on the page"
    return html.unescape(found.group(0))


async def pay_with_mock(user: ConsoleSession, plan_id: str) -> None:
    """Checkout from the billing page, then the mock provider's page's Pay button."""
    started = await user.submit(
        "/billing", "/billing/checkout", {"plan": plan_id, "provider": "mock"}
    )
    assert started.status == 200 and "/v1/billing/mock/msub_" in started.url, started.url
    assert "Mock checkout" in started.text
    pay = re.search(r'action="(/v1/billing/mock/[^"]+/pay)"', started.text)
    assert pay
    paid = await user.post(pay.group(1), {"action": "pay"}, csrf=None)
    assert paid.status == 200 and "Thank you" in paid.text, paid.text[:300]


async def test_checkout_through_the_mock_provider_puts_the_plan_on_the_billing_page(
    site: ConsoleSite,
) -> None:
    operator = await site.operator()
    plan_id = await new_plan(operator, "Team", tunnels="5", reserved_names="3")
    user = await site.user()
    await user.submit("/names", "/names", {"name": f"bill{secrets.token_hex(3)}"})

    before = await user.get("/billing")
    assert before.status == 200
    assert "Free" in section(before.text, "plan") or "free" in section(before.text, "plan")
    assert "none" in section(before.text, "subscription-state")
    offer = section(before.text, f"plan-{plan_id}")
    assert "19.00 USD a month" in offer and "3 reserved names" in offer
    # Only the providers this installation has on: the mock one here.
    assert re.findall(r'<option value="(\w+)">', offer) == ["mock"]

    await pay_with_mock(user, plan_id)

    after = await user.get("/billing")
    assert "Team, 19.00 USD a month" in section(after.text, "plan-name")
    assert "active through Mock" in section(after.text, "subscription-state")
    usage = section(after.text, "usage")
    # One of three reserved names used: a bar of 1 out of 3.
    assert re.search(r"Reserved names</td>\s*<td>1</td>\s*<td>3</td>", usage), usage
    assert '<meter min="0" max="3"' in after.text and 'value="1"' in after.text
    # Paying now, the page offers cancellation (behind a confirm dialog), not another checkout.
    assert 'action="/billing/cancel"' in after.text and "data-confirm=" in after.text
    assert 'action="/billing/checkout"' not in after.text

    canceled = await user.submit("/billing", "/billing/cancel")
    assert "free plan" in canceled.notice, (canceled.notice, canceled.error)
    assert "none" in section(canceled.text, "subscription-state") or "canceled" in section(
        canceled.text, "subscription-state"
    )
    org_id = (await me(user))["org_id"]
    plan = await site.db.value("SELECT plan_id FROM subscriptions WHERE org_id = %s", (org_id,))
    assert plan == "free"


@pytest.fixture
async def shop_site(database_url: str, apis: ProviderApis) -> AsyncIterator[ConsoleSite]:
    """The console with every provider on, against the local server answering as their
    APIs do."""
    config = control_config(database_url, billing=billing_settings(apis))
    async for found in serve_console(create_app(config)):
        yield found


async def test_a_checkout_at_another_sites_provider_opens_from_a_link(
    shop_site: ConsoleSite, apis: ProviderApis
) -> None:
    operator = await shop_site.operator()
    price = f"price_{secrets.token_hex(4)}"
    plan_id = await new_plan(operator, "Team", price_stripe=price, price_paypal="P-1")
    user = await shop_site.user()
    offer = section((await user.get("/billing")).text, f"plan-{plan_id}")
    assert re.findall(r'<option value="(\w+)">', offer) == ["mock", "paypal", "stripe"]
    started = await user.submit(
        "/billing", "/billing/checkout", {"plan": plan_id, "provider": "stripe"}
    )
    # Stripe's page is another site: not a redirect, which a browser refuses after a form's
    # post under form-action 'self', but a link to it.
    assert started.status == 200 and started.url.endswith("/billing/checkout")
    link = re.search(r'href="([^"]+)" id="checkout-link"', started.text)
    assert link and link.group(1).startswith("https://checkout.stripe.com/c/pay/cs_test_")
    assert "Continue to Stripe to pay" in started.text
    session = apis.stripe_sessions[link.group(1).rsplit("/", 1)[-1]]
    assert price in str(session["line_items"])


async def test_invoices_show_their_tax_and_an_operator_refunds_one(site: ConsoleSite) -> None:
    operator = await site.operator()
    plan_id = await new_plan(operator)
    user = await site.user()
    await pay_with_mock(user, plan_id)
    org_id = (await me(user))["org_id"]
    invoice_id = f"minv_{secrets.token_hex(5)}"
    # An invoice as a provider's webhook records it: with tax and the customer's tax id.
    await site.db.execute(
        "INSERT INTO invoices (provider, provider_invoice_id, org_id, status, currency,"
        " subtotal_cents, tax_cents, total_cents, tax_id, payment_ref, issued_at)"
        " VALUES ('mock', %s, %s, 'paid', 'usd', 1900, 342, 2242, 'DE123456789', 'mpay_x', now())",
        (invoice_id, org_id),
    )
    shown = section((await user.get("/billing")).text, "invoices")
    assert invoice_id in shown
    assert all(a in shown for a in ("19.00 USD", "3.42 USD", "22.42 USD", "DE123456789"))

    subject = f"msub_{secrets.token_hex(4)}"
    # A difference the billing worker's reconciliation found and repaired.
    await site.db.execute(
        "INSERT INTO reconciliation_findings (provider, org_id, subject, ours, theirs, action)"
        " VALUES ('mock', %s, %s, 'active', 'canceled', 'ended the subscription')",
        (org_id, subject),
    )
    records = await operator.get("/admin/billing")
    assert records.status == 200
    events = section(records.text, "events")
    assert "subscription.active" in events and org_id in events
    found = section(records.text, "findings")
    assert subject in found and "ended the subscription" in found
    refunded = await operator.submit(
        "/admin/billing",
        "/admin/billing/refund",
        {"invoice_id": invoice_id, "amount": "5.00", "reason": "outage credit"},
    )
    assert "refund is made" in refunded.notice, refunded.error
    row = re.search(rf"{invoice_id}</td>.*?</tr>", refunded.text, re.S)
    assert row and "5.00 USD" in row.group(0)
    too_much = await operator.submit(
        "/admin/billing", "/admin/billing/refund", {"invoice_id": invoice_id, "amount": "99.00"}
    )
    assert too_much.status == 422 and "1742 usd cents left" in too_much.error
    bad = await operator.submit(
        "/admin/billing", "/admin/billing/refund", {"invoice_id": invoice_id, "amount": "1.234"}
    )
    assert bad.status == 422 and "like 12.50" in bad.error
    rest = await operator.submit(
        "/admin/billing", "/admin/billing/refund", {"invoice_id": invoice_id}
    )
    assert "refund is made" in rest.notice, rest.error
    status = await site.db.value(
        "SELECT status FROM invoices WHERE provider_invoice_id = %s", (invoice_id,)
    )
    assert status == "refunded"

    # A user of the same installation is no operator: the API's own refusals.
    assert (await user.get("/admin/billing")).status == 403
    refused = await user.post(
        "/admin/billing/refund", {"invoice_id": invoice_id}, csrf=(await user.get("/billing")).csrf
    )
    assert refused.status == 403


async def test_operators_create_edit_and_delete_plans_and_put_an_org_on_one(
    site: ConsoleSite,
) -> None:
    operator = await site.operator()
    plan_id = await new_plan(operator, "Starter", tunnels="2")
    listed = await operator.get("/admin/plans")
    assert plan_id in listed.text and "2 tunnels online at once" in listed.text

    edit = f"/admin/plans/{plan_id}"
    changed = await operator.submit(
        edit,
        edit,
        {
            **plan_form(plan_id, "Starter Plus", tunnels="4", price_cents="2900"),
            "bandwidth_bytes_month": "50000000000",
        },
    )
    assert "updated" in changed.notice, changed.error
    plan = await site.db.one(
        "SELECT name, tunnels, price_cents, bandwidth_bytes_month FROM plans WHERE id = %s",
        (plan_id,),
    )
    assert plan == {
        "name": "Starter Plus",
        "tunnels": 4,
        "price_cents": 2900,
        "bandwidth_bytes_month": 50_000_000_000,
    }
    wrong = await operator.submit(
        edit, edit, plan_form(plan_id, "Starter Plus", currency="dollars")
    )
    assert wrong.status == 422 and "three-letter ISO 4217" in wrong.error

    user = await site.user()
    org_id = (await me(user))["org_id"]
    placed = await operator.submit(
        "/admin/plans", "/admin/plans/assign", {"org_id": org_id, "plan": plan_id}
    )
    assert "new plan" in placed.notice, placed.error
    assert "Starter Plus" in section((await user.get("/billing")).text, "plan-name")
    in_use = await operator.submit(edit, f"{edit}/delete")
    assert in_use.status == 409 and "1 organization(s)" in in_use.error

    spare = await new_plan(operator, "Spare")
    deleted = await operator.submit(f"/admin/plans/{spare}", f"/admin/plans/{spare}/delete")
    assert "deleted" in deleted.notice and spare not in deleted.text
    assert (await user.get("/admin/plans")).status == 403


async def test_a_plan_limit_refusal_says_why_and_links_to_billing(site: ConsoleSite) -> None:
    operator = await site.operator()
    plan_id = await new_plan(operator, "Tiny", reserved_names="1")
    user = await site.user()
    org_id = (await me(user))["org_id"]
    await operator.submit(
        "/admin/plans", "/admin/plans/assign", {"org_id": org_id, "plan": plan_id}
    )
    first = await user.submit("/names", "/names", {"name": f"one{secrets.token_hex(3)}"})
    assert "reserved" in first.notice, first.error
    second = await user.submit("/names", "/names", {"name": f"two{secrets.token_hex(3)}"})
    assert second.status == 402
    assert "the Tiny plan allows 1 reserved names" in second.error
    assert '<p class="upgrade"><a href="/billing">' in second.text
    # Other refusals carry no such link.
    other = await user.submit("/tokens", "/tokens", {"description": "no protocols"})
    assert other.status == 422 and other.error and 'class="upgrade"' not in other.text


async def test_the_domain_pages_show_the_certificate_state_and_operators_retry_it(
    site: ConsoleSite,
) -> None:
    operator = await site.operator()
    user = await site.user()
    host = f"cert-{secrets.token_hex(4)}.example.net"
    added = await user.submit("/domains", "/domains", {"domain": host})
    domain_id = added.url.rsplit("/", 1)[-1]
    # What the certs worker records after a failed order, and its backoff.
    await site.db.execute(
        "UPDATE domains SET verified_at = now(), verified_by = 'txt', tls_status = 'failed',"
        " tls_last_error = 'acme: CAA forbids this CA', tls_last_checked_at = now(),"
        " tls_not_after = now() + interval '10 days' WHERE id = %s",
        (domain_id,),
    )
    await site.db.execute(
        "INSERT INTO cert_work (host, failures, next_attempt_at, failed_alerted)"
        " VALUES (%s, 4, now() + interval '6 hours', true)",
        (host,),
    )
    mine = await user.get("/domains")
    row = re.search(rf"{re.escape(host)}</a>.*?</tr>", mine.text, re.S)
    assert row and "failed: acme: CAA forbids this CA" in html.unescape(row.group(0))
    assert " UTC" in row.group(0)  # expiry and the last check, as times
    one = await user.get(f"/domains/{domain_id}")
    assert 'id="tls-checked"' in one.text and "CAA forbids" in html.unescape(one.text)

    inventory = await operator.get("/admin/domains?filter=failed")
    assert f'action="/admin/domains/{domain_id}/tls/retry"' in inventory.text
    retried = await operator.submit(
        "/admin/domains?filter=failed", f"/admin/domains/{domain_id}/tls/retry"
    )
    assert "orders again" in retried.notice, retried.error
    work = await site.db.one(
        "SELECT failures, next_attempt_at, failed_alerted FROM cert_work WHERE host = %s", (host,)
    )
    assert work == {"failures": 0, "next_attempt_at": None, "failed_alerted": False}
    action = await site.db.value(
        "SELECT count(*) FROM audit_log WHERE action = 'domain.tls_retry' AND target = %s",
        (host,),
    )
    assert action == 1
    # The owner of the domain is no operator.
    refused = await user.post(
        f"/admin/domains/{domain_id}/tls/retry", {}, csrf=(await user.get("/domains")).csrf
    )
    assert refused.status == 403


async def test_the_console_is_routes_on_the_control_apps_router_not_a_sub_app(
    site: ConsoleSite,
) -> None:
    app: Any = site.server.app
    assert isinstance(app, web.Application)
    assert not any(isinstance(r, MatchedSubAppResource) for r in app.router.resources())
    paths = {r.canonical for r in app.router.resources()}
    assert {"/billing", "/admin/plans", "/admin/billing", "/tokens", "/v1/billing"} <= paths
    user = await site.user()
    script = await user.get("/static/console.js")
    assert script.status == 200 and script.headers["X-Content-Type-Options"] == "nosniff"
    assert (await user.get("/static/../app.py")).status == 404


def test_the_console_touches_no_private_aiohttp_attribute() -> None:
    """An aiohttp upgrade may rename anything with a leading underscore: the console reaches
    aiohttp only through ``aiohttp.web``'s public names."""
    console = Path(__file__).parents[2] / "console"
    for source in sorted(console.glob("*.py")):
        text = source.read_text()
        private = re.findall(r"(?<!self)\.(_[a-z]\w*)", text)
        assert not private, f"{source.name} uses {private}"
        imports = re.findall(r"^from (aiohttp[\w.]*) import", text, re.M)
        assert set(imports) <= {"aiohttp"}, f"{source.name} imports from {imports}"
