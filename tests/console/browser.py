"""Headless Chromium driven by selenium, from async tests.

selenium blocks, and the servers under test run on the test's event loop, so every browser
call runs in a worker thread (``asyncio.to_thread``) while the loop goes on serving. Each
page the tests visit can be saved as a screenshot under the pytest tmp dir.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.fixtures.system_tools import require

T = TypeVar("T")
WAIT_SECONDS = 15.0


class Browser:
    def __init__(self, base: str, profile: Path, shots: Path) -> None:
        chromium = require("chromium", "chromium")
        driver_path = require("chromedriver", "chromium-driver")
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--window-size=1200,860",
        ):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(options=options, service=Service(driver_path))
        self.driver.set_page_load_timeout(WAIT_SECONDS)
        # A form's page may still be on its way when the next element is looked up.
        self.driver.implicitly_wait(5)
        self.base = base
        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(call, *args)

    async def open(self, path: str) -> None:
        await self.run(self.driver.get, self.base + path)

    @property
    def path(self) -> str:
        url: str = self.driver.current_url
        return url.removeprefix(self.base)

    async def find(self, css: str) -> WebElement:
        return await self.run(self.driver.find_element, By.CSS_SELECTOR, css)

    async def fill(self, fields: dict[str, str]) -> None:
        for name, value in fields.items():
            element = await self.find(f"main [name='{name}']")
            await self.run(element.clear)
            await self.run(element.send_keys, value)

    async def press(self, label: str, within: str = "main") -> None:
        """Click the first button labelled ``label`` inside ``within``."""
        buttons = await self.run(self.driver.find_elements, By.CSS_SELECTOR, f"{within} button")
        for button in buttons:
            if (await self.run(lambda b=button: b.text)).strip() == label:
                await self.run(button.click)
                return
        raise AssertionError(f"no button {label!r} in {within} on {self.path}")

    async def accept_confirm(self) -> str:
        alert = await self.wait(lambda: self._alert())
        text: str = alert.text
        await self.run(alert.accept)
        return text

    def _alert(self) -> Any:
        try:
            return self.driver.switch_to.alert
        except NoAlertPresentException:
            return None

    async def no_alert(self) -> bool:
        return await self.run(self._alert) is None

    async def text(self, css: str = "main") -> str:
        """The text of ``css``, found and read in one step (a page that live updates or is
        still loading may replace the element between a find and a read)."""
        return str(
            (await self.wait(lambda: [self.driver.find_element(By.CSS_SELECTOR, css).text]))[0]
        )

    async def wait(self, probe: Callable[[], T], timeout: float = WAIT_SECONDS) -> T:
        """Until ``probe`` (run in a thread) returns something true."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                found = await self.run(probe)
            except (NoSuchElementException, StaleElementReferenceException):
                found = None  # the page is still being replaced
            except WebDriverException as exc:
                # Chromium's word for an element of a page just replaced.
                if "does not belong to the document" not in str(exc):
                    raise
                found = None
            if found:
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out on {self.path}: {probe}")
            await asyncio.sleep(0.1)

    async def wait_text(self, needle: str, css: str = "main") -> str:
        def probe() -> str:
            text: str = self.driver.find_element(By.CSS_SELECTOR, css).text
            return text if needle in text else ""

        return await self.wait(probe)

    async def shot(self, name: str) -> Path:
        target = self.shots / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"
        await self.run(self.driver.save_screenshot, str(target))
        return target

    async def fits_width(self) -> bool:
        """Nothing on the page is wider than the window (no sideways scrolling)."""
        script = "return document.documentElement.scrollWidth <= window.innerWidth + 1"
        return bool(await self.run(self.driver.execute_script, script))

    async def resize(self, width: int, height: int) -> None:
        await self.run(self.driver.set_window_size, width, height)

    def close(self) -> None:
        self.driver.quit()
