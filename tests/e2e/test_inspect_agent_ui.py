"""The agent inspector's web UI in real Chromium: requests appear live, the detail shows
the body, Replay adds the replay, Clear empties the list, and the page runs under its CSP
without a violation. Skipped with one line when Chromium cannot be had."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.inspector import Inspector
from agent.local_api import LocalApi
from agent.meters import AgentMeters
from agent.tunnels import TunnelSpec
from edge.server import Edge
from tests.e2e.client import get
from tests.e2e.conftest import AgentRunner
from tests.e2e.origin import LocalService
from tests.fixtures.system_tools import require

webdriver = pytest.importorskip("selenium.webdriver")
By = pytest.importorskip("selenium.webdriver.common.by").By


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = require("chromium", "chromium")
    driver_path = require("chromedriver", "chromium-driver")
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory() as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()


async def until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        assert time.monotonic() < deadline, "the page did not get there in time"
        await asyncio.sleep(0.1)


async def test_the_ui_lists_shows_replays_and_clears(
    browser: Any, edge: Edge, agents: AgentRunner, service: LocalService
) -> None:
    agent = await agents.start(
        edge, TunnelSpec("http", "127.0.0.1", service.port, name="ui", label="web")
    )
    agent.inspector = Inspector()
    api = LocalApi(agent, AgentMeters(), agent.inspector)
    await api.start("127.0.0.1", 0, next_free=False)
    try:
        await asyncio.to_thread(browser.get, api.url + "/")
        assert (await get(edge.config.http_port, "ui.localhost", "/hello")).status == 200

        def rows() -> list[Any]:
            return list(browser.find_elements(By.CSS_SELECTOR, "#list tbody tr"))

        first = (await until(rows))[0]
        assert "/hello" in first.text and "200" in first.text
        await asyncio.to_thread(first.click)
        await until(lambda: browser.find_element(By.ID, "response-body").text == "hello")
        assert "GET /hello" in browser.find_element(By.ID, "detail-title").text

        await asyncio.to_thread(browser.find_element(By.ID, "replay").click)
        await until(lambda: len(rows()) == 2)
        await until(lambda: "replay of" in browser.find_element(By.ID, "detail-title").text)
        assert browser.find_element(By.ID, "replay-status").text == "replayed"

        await asyncio.to_thread(browser.find_element(By.ID, "clear").click)
        await until(lambda: not rows())
        assert agent.inspector is not None and not agent.inspector.captures

        problems = [
            entry["message"]
            for entry in browser.get_log("browser")
            if entry["level"] == "SEVERE" or "Content Security Policy" in entry["message"]
        ]
        assert problems == []
    finally:
        await api.close()
