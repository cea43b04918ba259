"""The billing pages in real headless Chromium: a user picks a plan and a provider, pays on
the mock provider's page and sees the plan, then cancels through the confirm dialog; an
operator edits a plan, refunds an invoice and retries a domain's certificate.

Screenshots go to ``<pytest tmp>/console-screenshots`` with the other pages'.
"""

from __future__ import annotations

import secrets

from tests.console.conftest import ConsoleSite, fresh_email
from tests.console.test_billing_pages import new_plan
from tests.console.test_browser import BrowserFor, sign_up
from tests.console.test_browser import browser_for as browser_for  # the fixture
from tests.console.test_pages import me


async def test_a_user_pays_for_a_plan_and_cancels_it_from_the_browser(
    site: ConsoleSite, browser_for: BrowserFor
) -> None:
    operator = await site.operator()
    plan_id = await new_plan(operator, "Team", tunnels="5", reserved_names="3", tokens="10")
    browser = browser_for(site.base)
    await sign_up(browser, fresh_email("pay"))
    await browser.open("/names")
    await browser.fill({"name": f"shop{secrets.token_hex(3)}"})
    await browser.press("Reserve")
    await browser.wait_text("The name is reserved")
    await browser.open("/billing")
    assert "Free" in await browser.text("#plan-name")
    await browser.shot("billing-free")
    offer = await browser.text(f"#plan-{plan_id}")
    assert "19.00 USD a month" in offer
    await browser.press("Choose Team", f"#plan-{plan_id}")

    await browser.wait_text("Mock checkout", "body")
    await browser.shot("billing-mock-checkout")
    await browser.press("Pay", "body")
    await browser.wait_text("Thank you", "body")

    await browser.open("/billing")
    assert "Team, 19.00 USD a month" in await browser.wait_text("Team", "#plan-name")
    assert "active through Mock" in await browser.text("#subscription-state")
    assert "Active agent tokens" in await browser.text("#usage")
    await browser.shot("billing")
    await browser.resize(390, 844)
    assert await browser.fits_width(), "/billing scrolls sideways at phone width"
    await browser.resize(1200, 860)

    await browser.press("Cancel the subscription")
    assert "free plan's limits" in await browser.accept_confirm()
    await browser.wait_text("The subscription is cancelled")
    assert "Choose Team" in await browser.text()


async def test_an_operator_edits_a_plan_refunds_and_retries_a_certificate_from_the_browser(
    site: ConsoleSite, browser_for: BrowserFor
) -> None:
    user = await site.user()
    org_id = (await me(user))["org_id"]
    email = fresh_email("op")
    browser = browser_for(site.base)
    await sign_up(browser, email)
    await site.db.execute(
        "UPDATE users SET is_admin = true WHERE lower(email) = lower(%s)", (email,)
    )
    operator = await site.operator()
    plan_id = await new_plan(operator, "Pro", tunnels="3")

    await browser.open("/admin/plans")
    await browser.wait_text(plan_id, "#plans")
    await browser.shot("admin-plans")
    await browser.open(f"/admin/plans/{plan_id}")
    await browser.fill({"name": "Pro Max", "tunnels": "8"})
    await browser.shot("admin-plan")
    await browser.press("Save plan")
    await browser.wait_text("The plan is updated")
    assert await site.db.value("SELECT tunnels FROM plans WHERE id = %s", (plan_id,)) == 8

    invoice_id = f"minv_{secrets.token_hex(5)}"
    await site.db.execute(
        "INSERT INTO invoices (provider, provider_invoice_id, org_id, status, currency,"
        " subtotal_cents, tax_cents, total_cents, payment_ref, issued_at)"
        " VALUES ('mock', %s, %s, 'paid', 'usd', 1000, 190, 1190, 'mpay_b', now())",
        (invoice_id, org_id),
    )
    await browser.open("/admin/billing")
    await browser.wait_text(invoice_id, "#invoices")
    await browser.shot("admin-billing")
    await browser.press("Refund", "#invoices tbody tr:first-child")
    assert "Money goes back" in await browser.accept_confirm()
    await browser.wait_text("The refund is made")
    row = await browser.text("#invoices tbody tr:first-child")
    assert invoice_id in row and "refunded" in row, row

    host = f"retry-{secrets.token_hex(4)}.example.net"
    added = await user.submit("/domains", "/domains", {"domain": host})
    domain_id = added.url.rsplit("/", 1)[-1]
    await site.db.execute(
        "UPDATE domains SET verified_at = now(), tls_status = 'failed',"
        " tls_last_error = 'acme: rate limited', tls_last_checked_at = now() WHERE id = %s",
        (domain_id,),
    )
    await site.db.execute(
        "INSERT INTO cert_work (host, failures, next_attempt_at) VALUES (%s, 3, now() + '1 hour')",
        (host,),
    )
    await browser.open(f"/admin/domains?after={domain_id[:-1]}")
    assert "acme: rate limited" in await browser.wait_text(host, "#domains tbody tr:first-child")
    await browser.press("Retry now", "#domains tbody tr:first-child")
    await browser.wait_text("orders again at its next pass")
    failures = await site.db.value("SELECT failures FROM cert_work WHERE host = %s", (host,))
    assert failures == 0
