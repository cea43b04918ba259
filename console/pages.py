"""The pages of a user: sign-up and sign-in, getting started, tunnels, agent tokens, API
keys, reserved names, domains, and the organization's members. Each calls the API handler
that does the same thing (``console.api_call``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from console.api_call import ORG_COOKIE, call_raw
from console.app import HOME, SIGN_IN, Form, View, action, copy_cookies, page
from control.api import accounts, api_keys, domains, names, orgs, tokens, tunnels
from control.errors import ApiError
from control.keys import CONFIG

PROTOCOLS = ("http", "tcp", "tls")


# -- signing in and out -----------------------------------------------------------------------


@page("/", "login.html", public=True)
async def index(view: View) -> dict[str, Any] | web.StreamResponse:
    raise web.HTTPSeeOther(HOME if view.signed_in else SIGN_IN)


@page("/login", "login.html", public=True)
async def login_page(view: View) -> dict[str, Any]:
    return {"title": "Sign in"}


@action("/login", back=login_page, public=True)
async def login(view: View, form: Form) -> web.StreamResponse:
    answer = await call_raw(
        view.request,
        accounts.login,
        "POST",
        "/v1/login",
        body={"email": form.text("email"), "password": form.text("password")},
    )
    done = web.HTTPSeeOther(HOME)
    copy_cookies(answer, done)
    done.del_cookie(ORG_COOKIE, path="/")
    raise done


@page("/signup", "signup.html", public=True)
async def signup_page(view: View) -> dict[str, Any]:
    return {"title": "Sign up"}


@action("/signup", back=signup_page, public=True)
async def signup(view: View, form: Form) -> web.StreamResponse:
    await view.api(
        accounts.signup,
        "POST",
        "/v1/signup",
        body={
            "email": form.text("email"),
            "password": form.text("password"),
            "name": form.text("name"),
            "org_name": form.text("org_name"),
        },
    )
    # The same answer for a new and a known email (the API's rule): the user signs in next.
    raise view.redirect(SIGN_IN, "signup")


@action("/logout", back=None)
async def logout(view: View, form: Form) -> web.StreamResponse:
    answer = await call_raw(view.request, accounts.logout, "POST", "/v1/logout")
    done = view.redirect(SIGN_IN, "signed_out")
    copy_cookies(answer, done)
    done.del_cookie(ORG_COOKIE, path="/")
    raise done


@action("/org", back=None)
async def switch_org(view: View, form: Form) -> web.StreamResponse:
    wanted = form.text("org")
    assert view.me is not None
    if not any(o["id"] == wanted for o in view.me["orgs"]):
        raise ApiError(404, "not_found", "no organization with that id among yours")
    done = view.redirect(HOME, "org_switched")
    done.set_cookie(ORG_COOKIE, wanted, httponly=True, samesite="Lax", path="/")
    raise done


# -- getting started --------------------------------------------------------------------------


def agent_commands(view: View, token: str) -> list[str]:
    server = view.request.config_dict[CONFIG].agent_server
    run = "burrow http 3000" + (f" --server {server}" if server else "")
    return ["pipx install burrow-tunnel", f"burrow config add-authtoken {token}", run]


@page("/start", "start.html", nav="Getting started")
async def start(view: View) -> dict[str, Any]:
    listed = await view.api(tokens.list_tokens, "GET", "/v1/tokens")
    live = [t for t in listed["tokens"] if not t["revoked_at"]]
    return {"title": "Getting started", "token_count": len(live), "commands": []}


@action("/start", back=start)
async def start_token(view: View, form: Form) -> dict[str, Any]:
    made = await view.api(
        tokens.create_token, "POST", "/v1/tokens", body={"description": "getting started"}
    )
    return {"commands": agent_commands(view, made["token"]), "created": made}


# -- tunnels ----------------------------------------------------------------------------------


@page("/tunnels", "tunnels.html", nav="Tunnels")
async def tunnels_page(view: View) -> dict[str, Any]:
    listed = await view.api(tunnels.list_tunnels, "GET", "/v1/tunnels")
    return {"title": "Tunnels", "tunnels": listed["tunnels"]}


@action("/tunnels/stop", back=tunnels_page)
async def stop_tunnel(view: View, form: Form) -> web.StreamResponse:
    token_id = form.text("token_id")[:64]
    match = {"token_id": token_id}
    await view.api(tokens.revoke_token, "DELETE", f"/v1/tokens/{token_id}", match=match)
    raise view.redirect("/tunnels", "tunnel_stopped")


# -- agent tokens -----------------------------------------------------------------------------


@page("/tokens", "tokens.html", nav="Agent tokens")
async def tokens_page(view: View) -> dict[str, Any]:
    listed = await view.api(tokens.list_tokens, "GET", "/v1/tokens")
    return {"title": "Agent tokens", "tokens": listed["tokens"], "protocols": PROTOCOLS}


@action("/tokens", back=tokens_page)
async def create_token(view: View, form: Form) -> dict[str, Any]:
    body: dict[str, Any] = {
        "description": form.text("description"),
        "expires_in_days": form.number("expires_in_days", "days until it expires"),
        "hosts": form.lines("hosts"),
        "protocols": [p for p in form.all("protocols") if p in PROTOCOLS],
        "basic_auth": form.lines("basic_auth"),
        "ip_allow": form.lines("ip_allow"),
        "ip_deny": form.lines("ip_deny"),
    }
    if not body["protocols"]:
        raise ApiError(422, "invalid", "pick at least one protocol the token may open")
    made = await view.api(tokens.create_token, "POST", "/v1/tokens", body=body)
    return {"created": made, "commands": agent_commands(view, made["token"])}


@action("/tokens/{token_id}/revoke", back=tokens_page)
async def revoke_token(view: View, form: Form) -> web.StreamResponse:
    await view.api_for(tokens.revoke_token, "DELETE", "/v1/tokens/{token_id}")
    raise view.redirect("/tokens", "token_revoked")


# -- API keys ---------------------------------------------------------------------------------


@page("/api-keys", "api_keys.html", nav="API keys")
async def api_keys_page(view: View) -> dict[str, Any]:
    if view.role == "member":
        return {"title": "API keys", "keys": [], "allowed": False}
    listed = await view.api(api_keys.list_keys, "GET", "/v1/api-keys")
    return {"title": "API keys", "keys": listed["api_keys"], "allowed": True}


@action("/api-keys", back=api_keys_page)
async def create_key(view: View, form: Form) -> dict[str, Any]:
    made = await view.api(
        api_keys.create_key,
        "POST",
        "/v1/api-keys",
        body={"description": form.text("description"), "role": form.text("role") or "admin"},
    )
    return {"created": made}


@action("/api-keys/{key_id}/revoke", back=api_keys_page)
async def revoke_key(view: View, form: Form) -> web.StreamResponse:
    await view.api_for(api_keys.revoke_key, "DELETE", "/v1/api-keys/{key_id}")
    raise view.redirect("/api-keys", "key_revoked")


# -- reserved names ---------------------------------------------------------------------------


@page("/names", "names.html", nav="Names")
async def names_page(view: View) -> dict[str, Any]:
    listed = await view.api(names.list_names, "GET", "/v1/names")
    base = view.request.config_dict[CONFIG].base_domain
    return {"title": "Reserved names", "names": listed["names"], "base_domain": base}


@action("/names", back=names_page)
async def reserve_name(view: View, form: Form) -> web.StreamResponse:
    await view.api(names.reserve_name, "POST", "/v1/names", body={"name": form.text("name")})
    raise view.redirect("/names", "name_reserved")


@action("/names/{name_id}/release", back=names_page)
async def release_name(view: View, form: Form) -> web.StreamResponse:
    await view.api_for(names.release_name, "DELETE", "/v1/names/{name_id}")
    raise view.redirect("/names", "name_released")


# -- domains ----------------------------------------------------------------------------------


@page("/domains", "domains.html", nav="Domains")
async def domains_page(view: View) -> dict[str, Any]:
    listed = await view.api(domains.list_domains, "GET", "/v1/domains")
    return {"title": "Domains", "domains": listed["domains"]}


@action("/domains", back=domains_page)
async def add_domain(view: View, form: Form) -> web.StreamResponse:
    made = await view.api(
        domains.add_domain,
        "POST",
        "/v1/domains",
        body={
            "domain": form.text("domain"),
            "strict": form.text("mode") != "relaxed",
            "tls_mode": form.text("tls_mode") or "terminate",
        },
    )
    raise web.HTTPSeeOther(f"/domains/{made['id']}")


@page("/domains/{domain_id}", "domain.html")
async def domain_page(view: View) -> dict[str, Any]:
    domain_id = view.request.match_info["domain_id"]
    match = {"domain_id": domain_id}
    found = await view.api(domains.get_domain, "GET", f"/v1/domains/{domain_id}", match=match)
    reserved = await view.api(names.list_names, "GET", "/v1/names")
    return {
        "title": found["host"],
        "domain": found,
        "names": reserved["names"],
        "check": view.extra.get("check"),
    }


@action("/domains/{domain_id}/verify", back=domain_page)
async def verify_domain(view: View, form: Form) -> dict[str, Any]:
    checked = await view.api_for(
        domains.verify_domain,
        "POST",
        "/v1/domains/{domain_id}/verify",
    )
    view.extra = {"check": checked["check"]}
    return view.extra


@action("/domains/{domain_id}", back=domain_page)
async def update_domain(view: View, form: Form) -> web.StreamResponse:
    domain_id = view.request.match_info["domain_id"]
    await view.api_for(
        domains.update_domain,
        "PATCH",
        "/v1/domains/{domain_id}",
        body={
            "tls_mode": form.text("tls_mode") or "terminate",
            "target": form.text("target") or None,
            "strict": form.text("mode") != "relaxed",
        },
    )
    raise view.redirect(f"/domains/{domain_id}", "domain_updated")


@action("/domains/{domain_id}/remove", back=domain_page)
async def remove_domain(view: View, form: Form) -> web.StreamResponse:
    await view.api_for(domains.remove_domain, "DELETE", "/v1/domains/{domain_id}")
    raise view.redirect("/domains", "domain_removed")


# -- members ----------------------------------------------------------------------------------


@page("/members", "members.html", nav="Members")
async def members_page(view: View) -> dict[str, Any]:
    listed = await view.api(orgs.list_members, "GET", "/v1/members")
    invitations: list[dict[str, Any]] = []
    if view.role in ("admin", "owner"):
        invitations = (await view.api(orgs.list_invitations, "GET", "/v1/invitations"))[
            "invitations"
        ]
    return {
        "title": "Members",
        "members": listed["members"],
        "invitations": invitations,
        "roles": ("member", "admin", "owner"),
    }


@action("/members/invite", back=members_page)
async def invite(view: View, form: Form) -> dict[str, Any]:
    made = await view.api(
        orgs.invite_member,
        "POST",
        "/v1/members",
        body={"email": form.text("email"), "role": form.text("role") or "member"},
    )
    link = view.request.url.with_path("/invitations/accept").with_query(token=made["token"])
    return {"invited": made, "invite_link": str(link)}


@action("/members/{user_id}/role", back=members_page)
async def change_role(view: View, form: Form) -> web.StreamResponse:
    await view.api_for(
        orgs.change_role,
        "PATCH",
        "/v1/members/{user_id}",
        body={"role": form.text("role")},
    )
    raise view.redirect("/members", "role_changed")


@action("/members/{user_id}/remove", back=members_page)
async def remove_member(view: View, form: Form) -> web.StreamResponse:
    await view.api_for(orgs.remove_member, "DELETE", "/v1/members/{user_id}")
    raise view.redirect("/members", "member_removed")


@action("/invitations/{invitation_id}/revoke", back=members_page)
async def revoke_invitation(view: View, form: Form) -> web.StreamResponse:
    await view.api_for(
        orgs.revoke_invitation,
        "DELETE",
        "/v1/invitations/{invitation_id}",
    )
    raise view.redirect("/members", "invitation_revoked")


@page("/invitations/accept", "accept.html", public=True)
async def accept_page(view: View) -> dict[str, Any]:
    return {"title": "Join an organization", "token": view.request.query.get("token", "")[:200]}


@action("/invitations/accept", back=accept_page)
async def accept(view: View, form: Form) -> web.StreamResponse:
    joined = await view.api(
        orgs.accept_invitation,
        "POST",
        "/v1/invitations/accept",
        body={"token": form.text("token")},
    )
    done = view.redirect(HOME, "joined")
    done.set_cookie(ORG_COOKIE, joined["org"]["id"], httponly=True, samesite="Lax", path="/")
    raise done
