"""The request inspection pages in real headless Chromium, against a real edge and agent:
a capture arrives in the list over the live tail, its detail opens from the list, and a
replay through the tunnel shows the new capture."""

from __future__ import annotations

import html

from selenium.webdriver.common.by import By

from bus.captures import CAPTURES_STREAM, encode
from bus.redis_bus import RedisBus
from tests.console.test_browser import BrowserFor, sign_in
from tests.console.test_browser import browser_for as browser_for  # the fixture
from tests.console.test_request_pages import XSS_HEADER, serving
from tests.e2e.conftest import AgentRunner
from tests.e2e.conftest import agents as agents  # the fixture
from tests.e2e.conftest import service as service  # the fixture
from tests.e2e.origin import LocalService
from tests.e2e.test_control_plane import Stack
from tests.inspect.support import capture
from tests.inspect.test_replay import replay_stack as replay_stack  # the fixture


async def test_the_list_tails_live_a_detail_opens_and_a_replay_shows_the_new_capture(
    replay_stack: tuple[Stack, RedisBus],
    browser_for: BrowserFor,
    agents: AgentRunner,
    service: LocalService,
) -> None:
    stack, bus = replay_stack
    email = "owner@browser-replay.example"
    acme, live = await serving(stack, agents, service, email, "bshop")

    browser = browser_for(stack.control.url)
    await browser.open("/login")
    await sign_in(browser, email)
    await browser.open("/requests")
    await browser.wait_text("No captured requests")
    await browser.wait_text("New requests appear at the top", "#tail-state")

    # No reload: the capture arrives over the live tail, its markup as text.
    record = capture(
        acme["org"]["id"],
        1,
        hostname="bshop.tunnels.test",
        tunnel_id=live["key"],
        target=b"/headers?from=browser",
        request_headers=[(b"x-evil", XSS_HEADER.encode())],
    )
    await bus.append(CAPTURES_STREAM, encode(record))
    row = await browser.wait_text("/headers?from=browser", "#requests tbody")
    assert "bshop.tunnels.test" in row and "GET" in row
    assert await browser.no_alert()
    await browser.shot("requests-live")

    await browser.resize(390, 844)
    assert await browser.fits_width(), "/requests scrolls sideways at phone width"
    await browser.resize(1200, 860)

    link = await browser.find("#requests tbody a")
    await browser.run(link.click)
    await browser.wait_text("Replay as captured")
    assert XSS_HEADER in await browser.text(".headers")
    assert await browser.no_alert()
    await browser.shot("request-detail")

    await browser.resize(390, 844)
    assert await browser.fits_width(), "a request's page scrolls sideways at phone width"
    await browser.resize(1200, 860)
    await browser.press("Replay as captured")
    await browser.wait_text("this is the new capture")
    body = await browser.text("pre.body.json")
    assert f'"{record.id}"' in body and "x-burrow-replay" in body
    assert "a replay of" in await browser.text()
    await browser.shot("request-replayed")

    # The edit form: a new path and body, and the new capture's page shows the echo.
    await browser.fill({"path": "/echo", "body": "typed in Chromium"})
    await browser.fill({"method": "POST"})
    keep = await browser.find("main [name='keep_body']")
    if await browser.run(keep.is_selected):
        await browser.run(keep.click)
    await browser.press("Edit and replay")
    await browser.wait_text("POST /echo", "h1")
    assert "typed in Chromium" in await browser.text("pre.body")
    sources = await browser.run(
        lambda: [
            s.get_attribute("src") for s in browser.driver.find_elements(By.TAG_NAME, "script")
        ]
    )
    assert [html.unescape(s or "") for s in sources] == [stack.control.url + "/static/console.js"]
