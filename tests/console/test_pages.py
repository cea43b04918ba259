"""Every console page and form over HTTP, without a browser: the real control app on a real
port and PostgreSQL, sessions that send forms as a browser does."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from typing import Any

import aiohttp
import msgspec
import trustme
from aiohttp.test_utils import TestServer
from yarl import URL

from bus.events import EdgeState, LiveTunnel
from control.app import create_app
from control.edge_reports import apply_report
from tests.console.conftest import ConsoleSession, ConsoleSite, fresh_email
from tests.control.conftest import PASSWORD, control_config
from tests.fixtures.dns_server import DnsServer

USER_PAGES = [
    "/start",
    "/tunnels",
    "/tokens",
    "/api-keys",
    "/names",
    "/domains",
    "/members",
    "/billing",
    "/requests",
]
ADMIN_PAGES = [
    "/admin/users",
    "/admin/orgs",
    "/admin/domains",
    "/admin/edges",
    "/admin/tunnels",
    "/admin/signing-keys",
    "/admin/audit",
    "/admin/plans",
    "/admin/billing",
]


async def me(session: ConsoleSession) -> dict[str, Any]:
    async with session.http.get(session.base + "/v1/me") as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def report_tunnel(site: ConsoleSite, org_id: str, token_id: str, name: str) -> str:
    """A tunnel the way an edge reports it, applied by the code edge reports go through."""
    key = f"sess-{name}/t1"
    report = EdgeState(
        edge_id=f"edge-{name}",
        at=time.time(),
        started=time.time() - 60,
        version="0.1.0",
        tunnels=[
            LiveTunnel(
                key=key,
                org=org_id,
                token_id=token_id,
                protocol="http",
                url=f"https://{name}.tunnels.test",
                hostname=f"{name}.tunnels.test",
                session_id=f"sess-{name}",
                agent_version="burrow/0.1.0",
                client_addr="198.51.100.7:50000",
                local="127.0.0.1:3000",
                started=time.time() - 30,
            )
        ],
    )
    async with site.db.transaction() as q:
        await apply_report(q, report)
    return key


async def test_every_page_renders_with_its_security_headers(site: ConsoleSite) -> None:
    operator = await site.operator()
    for path in USER_PAGES + ADMIN_PAGES:
        page = await operator.get(path)
        assert page.status == 200, (path, page.text[:500])
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Referrer-Policy"] == "same-origin"
        assert page.headers["Cache-Control"] == "no-store"
        # No inline script or style for the policy to block.
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), path
        assert "<style" not in page.text and " style=" not in page.text, path
    css = await operator.get("/static/console.css")
    assert css.status == 200 and "max-width" in css.text


async def test_signed_out_visitors_are_sent_to_sign_in(site: ConsoleSite) -> None:
    visitor = site.browser()
    for path in USER_PAGES + ADMIN_PAGES:
        page = await visitor.get(path)
        assert page.url.endswith("/login"), path
    assert (await visitor.get("/signup")).status == 200


async def test_the_api_and_probes_stay_where_they_were(site: ConsoleSite) -> None:
    visitor = site.browser()
    async with visitor.http.get(site.base + "/v1/me") as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"
    async with visitor.http.get(site.base + "/v1/nothing") as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    async with visitor.http.get(site.base + "/healthz") as resp:
        assert await resp.text() == "ok\n"
    async with visitor.http.get(site.base + "/metrics") as resp:
        assert resp.status == 200


async def test_sign_up_is_the_same_for_a_known_email_then_sign_in_and_out(
    site: ConsoleSite,
) -> None:
    first = await site.user()
    again = site.browser()
    page = await again.submit(
        "/signup", "/signup", {"email": first.email, "password": "another password 1"}
    )
    assert page.url.endswith("/login?done=signup") and "Sign in below" in page.notice
    wrong = await again.submit(
        "/login", "/login", {"email": first.email, "password": "another password 1"}
    )
    assert wrong.status == 401 and "wrong email or password" in wrong.error

    cookie = first.http.cookie_jar.filter_cookies(URL(site.base))["burrow_session"]
    assert cookie.value
    out = await first.submit("/start", "/logout")
    assert out.url.endswith("/login?done=signed_out")
    assert (await first.get("/tokens")).url.endswith("/login")


async def test_the_session_cookie_is_httponly_and_lax(site: ConsoleSite) -> None:
    session = site.browser()
    session.email = fresh_email()
    await session.submit("/signup", "/signup", {"email": session.email, "password": "pw-" * 4})
    page = await session.get("/login")
    async with session.http.post(
        site.base + "/login",
        data={"email": session.email, "password": "pw-" * 4, "csrf_token": page.csrf},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303
        header = next(h for h in resp.headers.getall("Set-Cookie") if "burrow_session" in h)
    assert "HttpOnly" in header and "SameSite=Lax" in header


async def test_getting_started_shows_the_commands_with_the_users_own_token(
    site: ConsoleSite,
) -> None:
    user = await site.user()
    page = await user.submit("/start", "/start")
    codes = page.codes()
    assert "pipx install burrow-tunnel" in codes
    add = next(c for c in codes if c.startswith("burrow config add-authtoken "))
    token = add.removeprefix("burrow config add-authtoken ")
    assert "burrow http 3000 --server agents.tunnels.test" in codes
    tokens = await user.get("/tokens")
    assert "getting started" in tokens.text
    # The token shown is one the API lists for this org, and it is never shown again.
    assert token not in tokens.text and token not in (await user.get("/start")).text


async def test_a_token_with_claims_is_created_listed_and_revoked(site: ConsoleSite) -> None:
    user = await site.user()
    await user.submit("/names", "/names", {"name": f"shop{int(time.time() * 1000) % 10**8}"})
    host = re.search(r"<td>(shop\d+\.tunnels\.test)</td>", (await user.get("/names")).text)
    assert host
    page = await user.submit(
        "/tokens",
        "/tokens",
        {
            "description": "ci runner",
            "hosts": host.group(1),
            "protocols": ["http"],
            "expires_in_days": "30",
            "basic_auth": "alice:longpassword",
            "ip_allow": "203.0.113.0/24",
            "ip_deny": "",
        },
    )
    assert page.status == 200, page.error
    assert any(c.startswith("burrow config add-authtoken ") for c in page.codes())
    listed = await user.get("/tokens")
    row = re.search(r"<tr>\s*<td>ci runner</td>(.*?)</tr>", listed.text, re.S)
    assert row, listed.text
    assert host.group(1) in row.group(1) and "alice" in row.group(1)
    assert "203.0.113.0/24" in row.group(1) and "live" in row.group(1)
    assert "longpassword" not in listed.text

    refused = await user.submit(
        "/tokens", "/tokens", {"hosts": "elsewhere.example.org", "protocols": ["http"]}
    )
    assert refused.status == 422 and "elsewhere.example.org" in refused.error

    token_id = re.search(r'action="/tokens/(tok_[a-z0-9]+)/revoke"', listed.text)
    assert token_id
    done = await user.submit("/tokens", f"/tokens/{token_id.group(1)}/revoke")
    assert "revoked" in done.notice
    assert f"/tokens/{token_id.group(1)}/revoke" not in done.text


async def test_an_api_key_is_shown_once_and_works_until_revoked(site: ConsoleSite) -> None:
    user = await site.user()
    page = await user.submit("/api-keys", "/api-keys", {"description": "deploy", "role": "member"})
    key = next(c for c in page.codes() if c.startswith("bk."))
    async with aiohttp.ClientSession() as api:
        headers = {"Authorization": f"Bearer {key}"}
        async with api.get(site.base + "/v1/tokens", headers=headers) as resp:
            assert resp.status == 200
        listed = await user.get("/api-keys")
        assert key not in listed.text and "deploy" in listed.text
        key_id = re.search(r'action="/api-keys/(key_[a-z0-9]+)/revoke"', listed.text)
        assert key_id
        await user.submit("/api-keys", f"/api-keys/{key_id.group(1)}/revoke")
        async with api.get(site.base + "/v1/tokens", headers=headers) as resp:
            assert resp.status == 401


async def test_a_domain_is_added_verified_explained_and_routed(
    site: ConsoleSite, dns_server: DnsServer
) -> None:
    user = await site.user()
    host = f"app-{int(time.time() * 1000) % 10**9}.example.com"
    page = await user.submit("/domains", "/domains", {"domain": host, "mode": "strict"})
    assert page.url.rsplit("/", 1)[-1].startswith("dom_"), page.error
    codes = page.codes()
    assert (
        f"_burrow-challenge.{host}" in codes
        and host in codes
        and "edge.burrow-edge.example" in codes
    )
    txt_value = next(c for c in codes if c.startswith("burrow-verify="))
    path = page.url.removeprefix(site.base)

    failed = await user.submit(path, path + "/verify")
    assert "Not verified yet." in failed.text
    assert re.search(r"no TXT|not found|does not exist|NXDOMAIN", failed.text, re.I), failed.text

    dns_server.set_txt(f"_burrow-challenge.{host}", txt_value)
    verified = await user.submit(path, path + "/verify")
    assert "<strong>Verified</strong> by its TXT record" in verified.text

    name = f"web{int(time.time() * 1000) % 10**8}"
    await user.submit("/names", "/names", {"name": name})
    routed = await user.submit(
        path, path, {"target": f"{name}.tunnels.test", "tls_mode": "passthrough", "mode": "strict"}
    )
    assert "updated" in routed.notice
    assert f"<dd>{name}.tunnels.test</dd>" in routed.text and "<dd>passthrough</dd>" in routed.text
    listed = await user.get("/domains")
    assert host in listed.text and "yes, by txt" in listed.text


async def test_members_join_by_invitation_and_roles_are_checked_by_the_api(
    site: ConsoleSite,
) -> None:
    owner = await site.user(org_name="Acme")
    member_email = fresh_email("m")
    invited = await owner.submit(
        "/members", "/members/invite", {"email": member_email, "role": "member"}
    )
    link = next(c for c in invited.codes() if "/invitations/accept?token=" in c)

    member = site.browser()
    await member.sign_up(member_email)
    accept_path = link.removeprefix(site.base)
    joined = await member.submit(accept_path, "/invitations/accept", {
        "token": link.rsplit("=", 1)[1]
    })  # fmt: skip
    assert "You joined" in joined.notice
    assert (await me(member))["orgs"][1]["name"] == "Acme"
    members = await member.get("/members")
    assert owner.email in members.text and member_email in members.text

    # A member is refused an owner's action with the API's own reason, and nothing changes.
    owner_id = (await me(owner))["user"]["id"]
    refused = await member.submit("/members", f"/members/{owner_id}/remove")
    assert refused.status == 403 and "needs the admin role" in refused.error
    refused = await member.submit(
        "/members", "/members/invite", {"email": fresh_email(), "role": "owner"}
    )
    assert refused.status == 403
    assert "managed by the organization's admins" in (await member.get("/api-keys")).text
    assert (await member.get("/admin/users")).status == 403

    member_id = (await me(member))["user"]["id"]
    changed = await owner.submit("/members", f"/members/{member_id}/role", {"role": "admin"})
    assert "role is changed" in changed.notice
    removed = await owner.submit("/members", f"/members/{member_id}/remove")
    assert "removed" in removed.notice and member_email not in removed.text


async def test_an_operator_disables_a_user_and_that_user_is_signed_out(
    site: ConsoleSite,
) -> None:
    operator = await site.operator()
    user = await site.user()
    user_id = (await me(user))["user"]["id"]
    done = await operator.submit("/admin/users?after=" + user_id[:-1], f"/admin/users/{user_id}", {
        "change": "disable"
    })  # fmt: skip
    assert "updated" in done.notice
    assert (await user.get("/tokens")).url.endswith("/login")
    again = await user.submit("/login", "/login", {"email": user.email, "password": "x" * 12})
    assert again.status == 401
    audit = await operator.get("/admin/audit")
    assert "user.disable" in audit.text and user_id in audit.text


async def test_operators_suspend_orgs_set_quotas_and_rotate_keys(site: ConsoleSite) -> None:
    operator = await site.operator()
    user = await site.user(org_name="Quota Test")
    org_id = (await me(user))["org_id"]
    page = "/admin/orgs?after=" + org_id[:-1]
    await operator.submit(
        page,
        f"/admin/orgs/{org_id}",
        {"tunnels": "3", "links": "0", "tcp_ports": "2", "streams": "0"},
    )
    suspended = await operator.submit(page, f"/admin/orgs/{org_id}", {"change": "suspend"})
    assert "updated" in suspended.notice
    listed = await operator.get(page)
    row = re.search(rf"{org_id}</span>.*?</tr>", listed.text, re.S)
    assert row and "suspended" in row.group(0) and 'value="3"' in row.group(0)

    before = await operator.get("/admin/signing-keys")
    rotated = await operator.submit("/admin/signing-keys", "/admin/signing-keys/rotate")
    assert "new signing key" in rotated.notice
    assert rotated.text.count("<code>") == before.text.count("<code>") + 1


async def test_forms_without_a_valid_csrf_token_change_nothing(site: ConsoleSite) -> None:
    user = await site.user()
    other = await site.user()
    fields: dict[str, str | list[str]] = {"name": "csrf-target"}
    missing = await user.post("/names", fields, csrf=None)
    assert missing.status == 403 and "nothing was changed" in missing.error
    # A token from another user's page is no good either.
    foreign = await user.post("/names", fields, csrf=(await other.get("/names")).csrf)
    assert foreign.status == 403
    # A browser says when a form came from another site (tunnels are sibling subdomains).
    good = (await user.get("/names")).csrf
    for site_kind in ("cross-site", "same-site"):
        cross = await user.post("/names", fields, csrf=good, headers={"Sec-Fetch-Site": site_kind})
        assert cross.status == 403 and "another site" in cross.error
    assert "csrf-target" not in (await user.get("/names")).text
    signed_out = site.browser()
    refused = await signed_out.post("/login", {"email": user.email, "password": "x"}, csrf="0" * 64)
    assert refused.status == 403


XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&"


async def test_what_users_type_is_shown_as_text(site: ConsoleSite) -> None:
    owner = await site.user(name=XSS, org_name=XSS)
    await owner.submit("/tokens", "/tokens", {"description": XSS, "protocols": ["http"]})
    await owner.submit("/api-keys", "/api-keys", {"description": XSS})
    await owner.submit("/members", "/members/invite", {"email": fresh_email(), "role": "member"})
    bad_name = await owner.submit("/names", "/names", {"name": XSS})
    bad_domain = await owner.submit("/domains", "/domains", {"domain": XSS})
    assert bad_name.status == 422 and bad_domain.status == 422
    operator = await site.operator()
    pages = [await owner.get(p) for p in USER_PAGES]
    pages += [bad_name, bad_domain]
    pages += [
        await operator.get(p) for p in ("/admin/users?limit=1000", "/admin/orgs", "/admin/audit")
    ]
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"
    for page in pages:
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, page.url
    tokens = await owner.get("/tokens")
    assert escaped in tokens.text
    assert escaped in (await owner.get("/api-keys")).text
    assert escaped in (await owner.get("/members")).text


async def test_control_characters_in_a_form_are_refused_by_name(site: ConsoleSite) -> None:
    user = await site.user()
    page = await user.submit("/tokens", "/tokens", {"description": "a\x1bb", "protocols": ["http"]})
    assert page.status == 422 and "description" in page.error and "U+001B" in page.error


async def test_the_tunnel_list_and_its_stream_show_the_orgs_tunnels(site: ConsoleSite) -> None:
    user = await site.user()
    org_id = (await me(user))["org_id"]
    made = await user.submit("/start", "/start")
    assert made.status == 200
    token_id = re.search(
        r'action="/tokens/(tok_[a-z0-9]+)/revoke"', (await user.get("/tokens")).text
    )
    assert token_id
    name = f"live{int(time.time() * 1000) % 10**8}"

    async with user.http.get(site.base + "/v1/tunnels/stream") as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        first = await _event(stream)
        assert first == {"tunnels": []}
        await report_tunnel(site, org_id, token_id.group(1), name)
        second = await _event(stream)
    assert [t["hostname"] for t in second["tunnels"]] == [f"{name}.tunnels.test"]
    assert second["tunnels"][0]["client_addr"] == "198.51.100.7:50000"

    page = await user.get("/tunnels")
    assert f"https://{name}.tunnels.test" in page.text and "burrow/0.1.0" in page.text
    other = await site.user()
    assert name not in (await other.get("/tunnels")).text

    stopped = await user.submit("/tunnels", "/tunnels/stop", {"token_id": token_id.group(1)})
    assert "revoked" in stopped.notice
    assert "revoked" in (await user.get("/tokens")).text


async def _event(stream: aiohttp.ClientResponse) -> Any:
    async def read() -> Any:
        kind = ""
        while True:
            line = (await stream.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind == "tunnels":
                return msgspec.json.decode(line.removeprefix("data: "))

    return await asyncio.wait_for(read(), 10)


async def test_the_domain_inventory_filters_expiring_and_failed_certificates(
    site: ConsoleSite,
) -> None:
    operator = await site.operator()
    user = await site.user()
    stamp = int(time.time() * 1000) % 10**9
    expiring, failing, fine = (f"{kind}-{stamp}.example.net" for kind in ("exp", "fail", "ok"))
    for host in (expiring, failing, fine):
        added = await user.submit("/domains", "/domains", {"domain": host})
        assert added.status == 200, added.error
    # What the certificate worker records about each.
    await site.db.execute(
        "UPDATE domains SET tls_status = 'issued', tls_not_after = now() + interval '5 days'"
        " WHERE host = %s",
        (expiring,),
    )
    await site.db.execute(
        "UPDATE domains SET tls_status = 'failed', tls_last_error = 'acme: order refused'"
        " WHERE host = %s",
        (failing,),
    )
    await site.db.execute(
        "UPDATE domains SET tls_status = 'issued', tls_not_after = now() + interval '80 days'"
        " WHERE host = %s",
        (fine,),
    )
    everything = await operator.get("/admin/domains")
    assert all(h in everything.text for h in (expiring, failing, fine))
    soon = await operator.get("/admin/domains?filter=expiring")
    assert expiring in soon.text and failing not in soon.text and fine not in soon.text
    failed = await operator.get("/admin/domains?filter=failed")
    assert failing in failed.text and "acme: order refused" in failed.text
    assert expiring not in failed.text and fine not in failed.text


async def test_cookies_are_secure_when_control_is_served_over_https(
    database_url: str,
) -> None:
    """Over HTTPS the session and pre-session cookies are Secure even where the operator
    left ``secure_cookies`` off."""
    authority = trustme.CA()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(served)
    trusted = ssl.create_default_context()
    authority.configure_trust(trusted)
    server = TestServer(create_app(control_config(database_url)))
    await server.start_server(ssl=served)
    try:
        base = str(server.make_url("")).rstrip("/")
        assert base.startswith("https://")
        session = ConsoleSession(base)
        session.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), connector=aiohttp.TCPConnector(ssl=trusted)
        )
        try:
            login = await session.get("/login")
            session.email = fresh_email("tls")
            form: dict[str, str | list[str]] = {"email": session.email, "password": PASSWORD}
            await session.post("/signup", form, csrf=login.csrf)
            async with session.http.post(
                base + "/login",
                data={**form, "csrf_token": login.csrf},
                headers={"Sec-Fetch-Site": "same-origin"},
                allow_redirects=False,
            ) as resp:
                assert resp.status == 303, await resp.text()
                cookies = resp.headers.getall("Set-Cookie")
        finally:
            await session.close()
        sent = next(h for h in cookies if h.startswith("burrow_session="))
        assert "Secure" in sent and "HttpOnly" in sent and "SameSite=Lax" in sent
    finally:
        await server.close()


async def test_a_member_of_two_orgs_switches_between_them(site: ConsoleSite) -> None:
    owner = await site.user(org_name="Hooli")
    email = fresh_email("two")
    invited = await owner.submit("/members", "/members/invite", {"email": email})
    link = next(c for c in invited.codes() if "/invitations/accept?token=" in c)
    member = site.browser()
    await member.sign_up(email)
    own_org = (await me(member))["org_id"]
    await member.submit(link.removeprefix(site.base), "/invitations/accept", {
        "token": link.rsplit("=", 1)[1]
    })  # fmt: skip
    assert owner.email in (await member.get("/members")).text
    switched = await member.submit("/start", "/org", {"org": own_org})
    assert "Switched" in switched.notice
    assert owner.email not in (await member.get("/members")).text
    refused = await member.submit("/start", "/org", {"org": "org_not_mine"})
    assert refused.status == 404
