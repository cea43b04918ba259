"""The console in real headless Chromium: from sign-up to a live tunnel of a real agent on a
real edge, a domain verified against a real DNS server, an operator disabling a user, a
member refused an owner's action, typed markup kept inert, and a cross-site form refused.

Screenshots of every page visited go to ``<pytest tmp>/console-screenshots``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from selenium.webdriver.common.by import By

from agent.tunnels import TunnelSpec
from tests.console.browser import Browser
from tests.console.conftest import PASSWORD, ConsoleSite, fresh_email
from tests.console.test_pages import XSS, me
from tests.e2e.conftest import AgentRunner
from tests.e2e.conftest import agents as agents  # the fixture
from tests.e2e.conftest import service as service  # the fixture
from tests.e2e.origin import LocalService
from tests.e2e.test_control_plane import Stack, _stack
from tests.fixtures.dns_server import DnsServer

BrowserFor = Callable[[str], Browser]


@pytest.fixture
def browser_for(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserFor]:
    shots = tmp_path_factory.getbasetemp() / "console-screenshots"
    opened: list[Browser] = []

    def make(base: str) -> Browser:
        browser = Browser(base, tmp_path / f"profile-{len(opened)}", shots)
        opened.append(browser)
        return browser

    yield make
    for browser in opened:
        browser.close()


@pytest.fixture
async def stack(database_url: str, redis_url: str, redis_cleanup: str) -> AsyncIterator[Stack]:
    async for s in _stack(database_url, redis_url, redis_cleanup):
        yield s


async def sign_up(browser: Browser, email: str, **extra: str) -> None:
    await browser.open("/signup")
    await browser.shot("signup")
    await browser.fill({"email": email, "password": PASSWORD, **extra})
    await browser.press("Sign up")
    assert "Sign in below" in await browser.wait_text("Sign in below")
    await sign_in(browser, email)


async def sign_in(browser: Browser, email: str) -> None:
    await browser.fill({"email": email, "password": PASSWORD})
    await browser.shot("login")
    await browser.press("Sign in")
    await browser.wait_text("Getting started", "h1")


async def test_sign_up_token_agent_and_the_tunnel_appears_live(
    stack: Stack, browser_for: BrowserFor, agents: AgentRunner, service: LocalService
) -> None:
    browser = browser_for(stack.control.url)
    await sign_up(browser, fresh_email("live"))
    await browser.shot("start")
    await browser.press("Create my agent token")
    command = await browser.text("#cmd-token")
    assert command.startswith("burrow config add-authtoken ")
    assert (await browser.text("#cmd-install")) == "pipx install burrow-tunnel"
    await browser.shot("start-with-token")
    token = command.removeprefix("burrow config add-authtoken ")

    await browser.open("/tunnels")
    await browser.wait_text("No tunnels are online")
    spec = TunnelSpec("http", "127.0.0.1", service.port)
    agent = await agents.start(stack.edge, spec, token=token)
    host = agent.tunnels[0].url.split("://", 1)[1].split(":")[0]
    # No reload: the row arrives over the event stream.
    row = await browser.wait_text(host, "#tunnels tbody")
    assert "http" in row and stack.edge.config.edge_id in row
    assert await browser.text("#live-state") == "Live."
    await browser.shot("tunnels-live")

    await browser.resize(390, 844)
    for path in ("/start", "/tunnels", "/tokens", "/api-keys", "/names", "/domains", "/members"):
        await browser.open(path)
        assert await browser.fits_width(), f"{path} scrolls sideways at phone width"
    await browser.open("/tunnels")
    await browser.wait_text(host, "#tunnels tbody")
    await browser.shot("tunnels-phone")
    await browser.resize(1200, 860)

    # Stop: confirmed, the token is revoked, the agent is cut off, the row goes away live.
    await browser.open("/tunnels")
    await browser.wait_text(host, "#tunnels tbody")
    await browser.press("Stop", "#tunnels")
    assert "revokes this tunnel's agent token" in await browser.accept_confirm()
    await browser.wait_text("token is revoked")
    running = agents.running[0][1]
    await browser.wait(running.done, timeout=10)


async def test_a_domain_is_added_and_verified_from_the_browser(
    site: ConsoleSite, dns_server: DnsServer, browser_for: BrowserFor
) -> None:
    browser = browser_for(site.base)
    await sign_up(browser, fresh_email("dom"))
    host = f"shop-{int(time.time() * 1000) % 10**9}.example.com"
    await browser.open("/domains")
    await browser.fill({"domain": host})
    await browser.press("Add domain")
    records = await browser.wait_text("_burrow-challenge", "#dns-records")
    assert f"_burrow-challenge.{host}" in records
    txt = await browser.text("#rec-value-1")
    assert txt.startswith("burrow-verify=")
    await browser.shot("domain-records")

    await browser.press("Verify now")
    assert "Not verified yet." in await browser.wait_text("Not verified", "#check-result")
    dns_server.set_txt(f"_burrow-challenge.{host}", txt)
    await browser.press("Verify now")
    assert "Verified by its TXT record" in await browser.wait_text("Verified", "#check-result")
    assert "verified by txt" in await browser.text("#domain-state")
    await browser.shot("domain-verified")
    await browser.open("/domains")
    await browser.shot("domains")


async def test_an_operator_disables_a_user_from_the_browser(
    site: ConsoleSite, browser_for: BrowserFor
) -> None:
    user = await site.user()
    operator_email = fresh_email("op")
    browser = browser_for(site.base)
    await sign_up(browser, operator_email)
    await site.db.execute(
        "UPDATE users SET is_admin = true WHERE lower(email) = lower(%s)", (operator_email,)
    )
    user_id = (await me(user))["user"]["id"]
    await browser.open("/admin/users?after=" + user_id[:-1])
    row = await browser.wait_text(user.email, "#users")
    assert "active" in row
    await browser.shot("admin-users")
    first_row = await browser.text("#users tbody tr:first-child")
    assert user.email in first_row, first_row
    await browser.press("Disable", "#users tbody tr:first-child")
    assert "signed out everywhere" in await browser.accept_confirm()
    await browser.wait_text("The user is updated.")
    await browser.open("/admin/users?after=" + user_id[:-1])
    first_row = await browser.text("#users tbody tr:first-child")
    assert user.email in first_row and "disabled" in first_row, first_row
    signed_out = await user.get("/tokens")
    assert signed_out.url.endswith("/login"), signed_out.url
    for path in ("/admin/orgs", "/admin/domains", "/admin/edges", "/admin/tunnels"):
        await browser.open(path)
        await browser.shot(path.strip("/"))
    for path in ("/admin/signing-keys", "/admin/audit"):
        await browser.open(path)
        await browser.shot(path.strip("/"))
    assert "user.disable" in await browser.text()


async def test_a_member_is_refused_an_owners_action(
    site: ConsoleSite, browser_for: BrowserFor
) -> None:
    owner = await site.user(org_name="Initech")
    member_email = fresh_email("mem")
    invited = await owner.submit(
        "/members", "/members/invite", {"email": member_email, "role": "member"}
    )
    link = next(c for c in invited.codes() if "/invitations/accept?token=" in c)
    browser = browser_for(site.base)
    await sign_up(browser, member_email)
    await browser.open(link.removeprefix(site.base))
    await browser.press("Accept the invitation")
    await browser.wait_text("You joined the organization.")
    await browser.open("/members")
    await browser.shot("members")
    table = await browser.text("#members")
    assert owner.email in table and member_email in table
    # A member sees no remove button for others; a forged one is refused by the API.
    assert "Remove" not in table
    owner_id = (await me(owner))["user"]["id"]
    await browser.run(
        browser.driver.execute_script,
        "const f = document.querySelector('form[action$=\"/remove\"]');"
        " f.action = '/members/' + arguments[0] + '/remove'; f.removeAttribute('data-confirm');"
        " f.submit();",
        owner_id,
    )
    refused = await browser.wait_text("needs the admin role", ".error")
    assert "you are member" in refused
    assert owner.email in (await owner.get("/members")).text


async def test_markup_typed_anywhere_stays_text_in_the_browser(
    site: ConsoleSite, browser_for: BrowserFor
) -> None:
    browser = browser_for(site.base)
    await sign_up(browser, fresh_email("xss"), name=XSS, org_name=XSS)
    for path, fields, button in (
        ("/tokens", {"description": XSS}, "Create token"),
        ("/api-keys", {"description": XSS}, "Create API key"),
        ("/names", {"name": XSS}, "Reserve"),
        ("/domains", {"domain": XSS}, "Add domain"),
    ):
        await browser.open(path)
        await browser.fill(fields)
        await browser.press(button)
        await browser.wait(lambda: browser.driver.find_element(By.CSS_SELECTOR, "h1").text)
        assert await browser.no_alert(), path
    await browser.open("/tokens")
    assert "<script>alert(1)</script>" in await browser.text("table")
    await browser.shot("tokens")
    for path in ("/start", "/api-keys", "/members", "/names", "/domains"):
        await browser.open(path)
        assert await browser.no_alert(), path
        await browser.shot(path.strip("/"))
    await browser.open("/members")
    assert "<script>alert(1)</script>" in await browser.text("#members")
    assert "<script>alert(1)</script>" in await browser.text("header")  # the org's name


async def test_a_form_on_another_site_is_refused(
    site: ConsoleSite, browser_for: BrowserFor
) -> None:
    browser = browser_for(site.base)
    await sign_up(browser, fresh_email("csrf"))
    # Another origin (another port), with a form aimed at the console.
    page = (
        "<!doctype html><form id=f method=post action='" + site.base + "/names'>"
        "<input name=name value=forged-by-another-site><button>Win a prize</button></form>"
    )

    async def lure(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    attacker = web.Application()
    attacker.router.add_get("/", lure)
    runner = web.AppRunner(attacker)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        await browser.run(browser.driver.get, f"http://127.0.0.1:{port}/")
        await browser.run(lambda: browser.driver.find_element(By.TAG_NAME, "button").click())
        refused = await browser.wait_text("nothing was changed", "body")
        assert "another site" in refused
    finally:
        await runner.cleanup()
    await browser.open("/names")
    assert "forged-by-another-site" not in await browser.text()
