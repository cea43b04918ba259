"""The operator's pages: users, organizations, the domain inventory, edges, every tunnel,
signing keys and the audit log, through the admin API's handlers (``control.api.admin``),
which refuse anyone who is not an operator."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from console.api_call import internal_request
from console.app import Form, View, action, page
from control.api import admin
from control.keys import DB
from control.store import audit

# A certificate this close to its end counts as expiring in the domain inventory.
EXPIRING_DAYS = 21
AUDIT_PAGE = 100


def _after(view: View) -> dict[str, str]:
    after = view.request.query.get("after", "")
    return {"after": after} if after else {}


@page("/admin/users", "admin_users.html", nav="Users", admin=True)
async def users_page(view: View) -> dict[str, Any]:
    listed = await view.api(admin.admin_users, "GET", "/v1/admin/users", query=_after(view))
    return {"title": "Users", "users": listed["users"], "next_after": listed["next_after"]}


@action("/admin/users/{user_id}", back=users_page)
async def update_user(view: View, form: Form) -> web.StreamResponse:
    change = form.text("change")
    body = {
        "disable": {"disabled": True},
        "enable": {"disabled": False},
        "make_operator": {"is_admin": True},
        "remove_operator": {"is_admin": False},
    }.get(change, {})
    await view.api_for(
        admin.admin_update_user,
        "PATCH",
        "/v1/admin/users/{user_id}",
        body=body,
    )
    raise view.redirect("/admin/users", "user_updated")


@page("/admin/orgs", "admin_orgs.html", nav="Organizations", admin=True)
async def orgs_page(view: View) -> dict[str, Any]:
    listed = await view.api(admin.admin_orgs, "GET", "/v1/admin/orgs", query=_after(view))
    return {
        "title": "Organizations",
        "orgs": listed["orgs"],
        "next_after": listed["next_after"],
        "quotas": ("tunnels", "links", "tcp_ports", "streams"),
    }


@action("/admin/orgs/{org_id}", back=orgs_page)
async def update_org(view: View, form: Form) -> web.StreamResponse:
    body: dict[str, Any]
    if form.text("change") in ("suspend", "unsuspend"):
        body = {"suspended": form.text("change") == "suspend"}
    else:
        body = {
            "limits": {
                name: form.number(name, f"the {name} quota")
                for name in ("tunnels", "links", "tcp_ports", "streams")
            }
        }
    await view.api_for(
        admin.admin_update_org, "PATCH", "/v1/admin/orgs/{org_id}",
        body=body,
    )  # fmt: skip
    raise view.redirect("/admin/orgs", "org_updated")


def _expiring(domain: dict[str, Any], now: datetime) -> bool:
    end = domain.get("tls_not_after")
    if not end:
        return False
    return datetime.fromisoformat(end) <= now + timedelta(days=EXPIRING_DAYS)


def _failed(domain: dict[str, Any]) -> bool:
    return domain.get("tls_status") == "failed" or bool(domain.get("tls_last_error"))


@page("/admin/domains", "admin_domains.html", nav="Domains", admin=True)
async def domains_page(view: View) -> dict[str, Any]:
    listed = await view.api(
        admin.admin_domains, "GET", "/v1/admin/domains", query={"limit": "1000", **_after(view)}
    )
    shown = listed["domains"]
    wanted = view.request.query.get("filter", "")
    now = datetime.now(UTC)
    if wanted == "expiring":
        shown = [d for d in shown if _expiring(d, now)]
    elif wanted == "failed":
        shown = [d for d in shown if _failed(d)]
    else:
        wanted = ""
    return {
        "title": "Domain inventory",
        "domains": shown,
        "filter": wanted,
        "expiring_days": EXPIRING_DAYS,
        "next_after": listed["next_after"],
    }


@page("/admin/edges", "admin_edges.html", nav="Edges", admin=True)
async def edges_page(view: View) -> dict[str, Any]:
    listed = await view.api(admin.admin_edges, "GET", "/v1/admin/edges", query=_after(view))
    live = await view.api(admin.admin_tunnels, "GET", "/v1/admin/tunnels", query={"limit": "1000"})
    sessions = {(t["edge_id"], t["session_id"]) for t in live["tunnels"]}
    agents = Counter(edge_id for edge_id, _ in sessions)
    return {
        "title": "Edges",
        "edges": [{**e, "agent_count": agents.get(e["id"], 0)} for e in listed["edges"]],
        "next_after": listed["next_after"],
    }


@page("/admin/tunnels", "admin_tunnels.html", nav="All tunnels", admin=True)
async def tunnels_page(view: View) -> dict[str, Any]:
    listed = await view.api(admin.admin_tunnels, "GET", "/v1/admin/tunnels", query=_after(view))
    return {
        "title": "All tunnels",
        "tunnels": listed["tunnels"],
        "next_after": listed["next_after"],
    }


@page("/admin/signing-keys", "admin_keys.html", nav="Signing keys", admin=True)
async def keys_page(view: View) -> dict[str, Any]:
    listed = await view.api(admin.admin_signing_keys, "GET", "/v1/admin/signing-keys")
    return {"title": "Signing keys", "keys": listed["signing_keys"]}


@action("/admin/signing-keys/rotate", back=keys_page)
async def rotate_key(view: View, form: Form) -> web.StreamResponse:
    await view.api(admin.admin_rotate_key, "POST", "/v1/admin/signing-keys/rotate")
    raise view.redirect("/admin/signing-keys", "key_rotated")


@action("/admin/signing-keys/{kid}/retire", back=keys_page)
async def retire_key(view: View, form: Form) -> web.StreamResponse:
    await view.api_for(admin.admin_retire_key, "POST", "/v1/admin/signing-keys/{kid}/retire")
    raise view.redirect("/admin/signing-keys", "key_retired")


@page("/admin/audit", "admin_audit.html", nav="Audit log", admin=True)
async def audit_page(view: View) -> dict[str, Any]:
    # The same check as every admin API route, on the same request it would see.
    await admin.operator(internal_request(view.request, "GET", "/v1/admin/audit"))
    text = view.request.query.get("before", "")
    before = int(text) if text.isascii() and text.isdigit() and len(text) < 18 else 0
    org = view.request.query.get("org", "")[:64]
    rows = await audit.entries(
        view.request.config_dict[DB], before=before, limit=AUDIT_PAGE, org_id=org
    )
    older = rows[-1]["id"] if len(rows) == AUDIT_PAGE else None
    return {"title": "Audit log", "entries": rows, "older": older, "org": org}
