"""Billing in the console: an org's plan, usage, subscription and invoices, checkout and
cancellation (``/billing``); and the operator's plans, an org's plan, billing events,
reconciliation findings and refunds (``/admin/plans``, ``/admin/billing``). Each page and
form calls the API action that does the same thing (``control.api.billing`` and
``control.api.admin``) with the signed-in user as the caller, so the roles and refusals are
the API's own."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from yarl import URL

from billing.plans import ENTITLEMENTS, FREE_PLAN
from billing.service import BILLING
from console import admin_pages, pages  # noqa: F401  (their menu entries come before these)
from console.app import Form, View, action, page
from control.api import admin, billing
from control.errors import ApiError
from control.keys import DB

# Usage the billing page shows against an entitlement, by entitlement (the API's usage keys).
METERED = (
    "tunnels",
    "reserved_names",
    "custom_domains",
    "seats",
    "tokens",
    "bandwidth_bytes_month",
)
PROVIDER_NAMES = {"stripe": "Stripe", "razorpay": "Razorpay", "paypal": "PayPal", "mock": "Mock"}
PROVIDERS = tuple(PROVIDER_NAMES)
RECENT = 50


def usage_bars(entitlements: dict[str, int], used: dict[str, int]) -> list[dict[str, Any]]:
    """One bar per metered entitlement: what is used of what the plan allows (0: no
    limit of ours, so no bar to fill)."""
    bars = []
    for name in METERED:
        allowed = int(entitlements.get(name, 0))
        count = int(used.get(name, 0))
        percent = min(100, count * 100 // allowed) if allowed else 0
        bars.append(
            {
                "name": name,
                "what": ENTITLEMENTS[name],
                "used": count,
                "allowed": allowed,
                "percent": percent,
                "full": bool(allowed) and count >= allowed,
            }
        )
    return bars


# -- an organization's billing ----------------------------------------------------------------


@page("/billing", "billing.html", nav="Billing")
async def billing_page(view: View) -> dict[str, Any]:
    app = view.request.app
    found = await billing.state(app, await view.principal())
    on_sale = await billing.plans_on_sale(app)
    subscription = found["subscription"]
    paying = subscription is not None and subscription["status"] in (
        "active",
        "past_due",
        "pending",
    )
    return {
        "title": "Billing",
        "plan": found["plan"],
        "bars": usage_bars(found["entitlements"], found["usage"]),
        "usage_period_start": found["usage_period_start"],
        "subscription": subscription,
        "paying": paying,
        "invoices": found["invoices"],
        "plans": [p for p in on_sale["plans"] if p["id"] != FREE_PLAN],
        "provider_names": PROVIDER_NAMES,
        "can_pay": view.role in ("admin", "owner"),
        "entitlement_names": ENTITLEMENTS,
    }


@action("/billing/checkout", back=billing_page)
async def checkout(view: View, form: Form) -> web.StreamResponse | dict[str, Any]:
    body = view.body(
        {"provider": form.text("provider"), "plan": form.text("plan")}, billing.CheckoutBody
    )
    base = billing.base_url(view.request)
    started = await billing.checkout(view.request.app, await view.principal(), body, base)
    # The provider's own page takes the payment. The mock provider's is served by control,
    # so the form's answer can redirect there; browsers hold the redirect after a form's
    # post to the page's form-action 'self', so another site's page opens from a link.
    url = URL(started["url"])
    if not url.is_absolute() or url.origin() == URL(base).origin():
        raise web.HTTPSeeOther(str(url))
    name = PROVIDER_NAMES.get(started["provider"], started["provider"])
    return {"checkout": {"url": str(url), "provider": name, "plan": started["plan"]}}


@action("/billing/cancel", back=billing_page)
async def cancel(view: View, form: Form) -> web.StreamResponse:
    body = view.body({"reason": form.text("reason")[:200]}, billing.CancelBody)
    await billing.cancel(view.request.app, await view.principal(), body)
    raise view.redirect("/billing", "plan_canceled")


# -- the operator's plans ---------------------------------------------------------------------


def plan_fields(form: Form) -> dict[str, Any]:
    """A plan form's fields as the admin API's plan body (without the id)."""
    fields: dict[str, Any] = {
        "name": form.text("name").strip(),
        "price_cents": form.number("price_cents", "the price in cents"),
        "currency": form.text("currency").strip() or "usd",
        "interval": form.text("interval") or "month",
        "public": form.flag("public"),
    }
    for name, what in ENTITLEMENTS.items():
        fields[name] = form.number(name, what, digits=19)  # bandwidth runs past nine digits
    fields["prices"] = {p: form.text(f"price_{p}").strip() for p in PROVIDERS}
    fields["prices"] = {p: ref for p, ref in fields["prices"].items() if ref}
    return fields


@page("/admin/plans", "admin_plans.html", nav="Plans", admin=True)
async def plans_page(view: View) -> dict[str, Any]:
    listed = await admin.plans(view.request.app, await view.principal())
    return {
        "title": "Plans",
        "plans": listed["plans"],
        "entitlements": ENTITLEMENTS,
        "providers": PROVIDER_NAMES,
        "enabled": sorted(view.request.app[BILLING].providers),
        "free_plan": FREE_PLAN,
    }


@action("/admin/plans", back=plans_page)
async def create_plan(view: View, form: Form) -> web.StreamResponse:
    body = view.body({"id": form.text("id").strip(), **plan_fields(form)}, admin.PlanBody)
    made = await admin.create_plan(view.request.app, await view.principal(), body)
    raise view.redirect(f"/admin/plans/{made['id']}", "plan_created")


@page("/admin/plans/{plan_id}", "admin_plan.html", admin=True)
async def plan_page(view: View) -> dict[str, Any]:
    wanted = view.request.match_info["plan_id"]
    listed = await admin.plans(view.request.app, await view.principal())
    found = next((p for p in listed["plans"] if p["id"] == wanted), None)
    if found is None:
        raise ApiError(404, "not_found", "no plan with that id; see the Plans page")
    return {
        "title": f"Plan {found['name']}",
        "plan": found,
        "entitlements": ENTITLEMENTS,
        "providers": PROVIDER_NAMES,
        "free_plan": FREE_PLAN,
    }


@action("/admin/plans/{plan_id}", back=plan_page)
async def update_plan(view: View, form: Form) -> web.StreamResponse:
    plan_id = view.request.match_info["plan_id"]
    body = view.body(plan_fields(form), admin.PlanPatch)
    await admin.update_plan(view.request.app, await view.principal(), plan_id, body)
    raise view.redirect(f"/admin/plans/{plan_id}", "plan_updated")


@action("/admin/plans/{plan_id}/delete", back=plan_page)
async def delete_plan(view: View, form: Form) -> web.StreamResponse:
    await admin.delete_plan(
        view.request.app, await view.principal(), view.request.match_info["plan_id"]
    )
    raise view.redirect("/admin/plans", "plan_deleted")


@action("/admin/plans/assign", back=plans_page)
async def set_org_plan(view: View, form: Form) -> web.StreamResponse:
    body = view.body({"plan": form.text("plan")}, admin.OrgPlanBody)
    await admin.set_org_plan(view.request.app, await view.principal(), form.text("org_id"), body)
    raise view.redirect("/admin/plans", "org_plan_set")


# -- the operator's billing records -----------------------------------------------------------


@page("/admin/billing", "admin_billing.html", nav="Billing", admin=True)
async def admin_billing_page(view: View) -> dict[str, Any]:
    app = view.request.app
    who = await view.principal()
    query = view.request.query
    events = await admin.billing_events(app, who, {"limit": str(RECENT), **_only(query)})
    findings = await admin.reconciliation(app, who, {"limit": str(RECENT)})
    # The API lists one org's invoices (GET /v1/billing); an operator refunds any of them,
    # so the page lists the newest of every org, after the same operator check.
    invoices = await app[DB].all(
        "SELECT i.provider, i.provider_invoice_id AS id, i.org_id, o.name AS org_name, i.status,"
        " i.currency, i.subtotal_cents, i.tax_cents, i.total_cents, i.tax_id, i.issued_at,"
        " coalesce((SELECT sum(r.amount_cents) FROM refunds r WHERE r.provider = i.provider"
        "   AND r.invoice_id = i.provider_invoice_id), 0) AS refunded_cents"
        " FROM invoices i LEFT JOIN orgs o ON o.id = i.org_id"
        " ORDER BY i.issued_at DESC NULLS LAST LIMIT %s",
        (RECENT,),
    )
    return {
        "title": "Billing records",
        "events": events["events"],
        "findings": findings["findings"],
        "invoices": invoices,
    }


def _only(query: Any) -> dict[str, str]:
    return {k: str(query[k]) for k in ("provider", "org_id") if query.get(k)}


@action("/admin/billing/refund", back=admin_billing_page)
async def refund(view: View, form: Form) -> web.StreamResponse:
    amount = form.text("amount").strip()
    body = view.body(
        {
            "invoice_id": form.text("invoice_id"),
            "amount_cents": _cents(amount) if amount else 0,
            "reason": form.text("reason")[:500],
        },
        billing.RefundBody,
    )
    await billing.refund(view.request.app, await view.principal(), body)
    raise view.redirect("/admin/billing", "refunded")


def _cents(text: str) -> int:
    """ "12.50" or "12" (in the invoice's currency) as cents."""
    whole, _, part = text.partition(".")
    if not (whole or part) or not (whole + part).isascii() or not (whole + part).isdigit():
        raise ApiError(422, "invalid", f"the amount must be like 12.50, not {text[:20]!r}")
    if len(part) > 2 or len(whole) > 9:
        raise ApiError(422, "invalid", f"the amount must be like 12.50, not {text[:20]!r}")
    return int(whole or "0") * 100 + int(part.ljust(2, "0"))
