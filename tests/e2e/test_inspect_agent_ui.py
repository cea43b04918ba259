"""The agent inspector's web UI in real Chromium: requests appear live, the detail shows
the body, Replay adds the replay, Clear empties the list, and the page runs under its CSP
without a violation. Skipped with one line when Chromium cannot be had."""

from __future__ import annotations

from pathlib import Path

from agent.inspector import Inspector
from agent.local_api import LocalApi
from agent.meters import AgentMeters
from agent.tunnels import TunnelSpec
from edge.server import Edge
from tests.console.browser import Browser
from tests.e2e.client import get
from tests.e2e.conftest import AgentRunner
from tests.e2e.origin import LocalService

ROWS = "return document.querySelectorAll('#list tbody tr').length"


async def test_the_ui_lists_shows_replays_and_clears(
    tmp_path: Path, edge: Edge, agents: AgentRunner, service: LocalService
) -> None:
    agent = await agents.start(
        edge, TunnelSpec("http", "127.0.0.1", service.port, name="ui", label="web")
    )
    agent.inspector = Inspector()
    api = LocalApi(agent, AgentMeters(), agent.inspector)
    await api.start("127.0.0.1", 0, next_free=False)
    browser = Browser(api.url, tmp_path / "profile", tmp_path / "shots")
    driver = browser.driver
    try:
        await browser.open("/")
        assert (await get(edge.config.http_port, "ui.localhost", "/hello")).status == 200

        first = await browser.find("#list tbody tr")
        await browser.wait(lambda: "/hello" in first.text and "200" in first.text)
        await browser.run(first.click)
        await browser.wait(lambda: driver.find_element("id", "response-body").text == "hello")
        assert "GET /hello" in await browser.text("#detail-title")

        await browser.run((await browser.find("#replay")).click)
        await browser.wait(lambda: driver.execute_script(ROWS) == 2)
        await browser.wait_text("replay of", "#detail-title")
        assert await browser.text("#replay-status") == "replayed"

        await browser.run((await browser.find("#clear")).click)
        await browser.wait(lambda: driver.execute_script(ROWS) == 0)
        assert agent.inspector is not None and not agent.inspector.captures

        problems = [
            entry["message"]
            for entry in await browser.run(driver.get_log, "browser")
            if entry["level"] == "SEVERE" or "Content Security Policy" in entry["message"]
        ]
        assert problems == []
    finally:
        browser.close()
        await api.close()
