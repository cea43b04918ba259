"""The console served by the real control app on a real port, and browser-like sessions that
read each page's CSRF token and submit its forms the way a browser does."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from control.app import create_app
from control.dns_check import DomainVerifier
from control.keys import DB
from tests.control.conftest import PASSWORD, control_config
from tests.fixtures.dns_server import DnsServer
from tests.fixtures.dns_server import dns_server as dns_server_fixture  # noqa: F401

EDGE = "edge.burrow-edge.example"
_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def fresh_email(tag: str = "u") -> str:
    return f"{tag}{secrets.token_hex(5)}@example.com"


class Page:
    def __init__(self, status: int, text: str, url: str, headers: Any) -> None:
        self.status = status
        self.text = text
        self.url = url
        self.headers = headers

    @property
    def csrf(self) -> str:
        found = _CSRF.search(self.text)
        assert found, f"no CSRF token on {self.url}"
        return html.unescape(found.group(1))

    @property
    def notice(self) -> str:
        found = re.search(r'<p class="notice" role="status">(.*?)</p>', self.text, re.S)
        return html.unescape(found.group(1)) if found else ""

    @property
    def error(self) -> str:
        found = re.search(r'class="error" role="alert">(.*?)</p>', self.text, re.S)
        return html.unescape(found.group(1)) if found else ""

    def codes(self) -> list[str]:
        """The text of every <code> on the page (commands, tokens, DNS records)."""
        return [html.unescape(c) for c in re.findall(r"<code[^>]*>(.*?)</code>", self.text, re.S)]


class ConsoleSession:
    """One browser: its own cookies, following redirects, sending what browsers send."""

    def __init__(self, base: str) -> None:
        self.base = base
        # unsafe: keep cookies for an IP-address host (the server runs on 127.0.0.1).
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.email = ""

    async def get(self, path: str) -> Page:
        async with self.http.get(self.base + path) as resp:
            return Page(resp.status, await resp.text(), str(resp.url), resp.headers)

    async def post(
        self, path: str, fields: dict[str, str | list[str]], *, csrf: str | None, **kw: Any
    ) -> Page:
        data = aiohttp.FormData()
        for name, value in fields.items():
            for item in [value] if isinstance(value, str) else value:
                data.add_field(name, item)
        if csrf is not None:
            data.add_field("csrf_token", csrf)
        headers = {"Sec-Fetch-Site": "same-origin", **kw.pop("headers", {})}
        async with self.http.post(self.base + path, data=data, headers=headers, **kw) as resp:
            return Page(resp.status, await resp.text(), str(resp.url), resp.headers)

    async def submit(
        self, page_path: str, action: str, fields: dict[str, str | list[str]] | None = None
    ) -> Page:
        """Open ``page_path`` and send its form to ``action`` with ``fields``."""
        page = await self.get(page_path)
        assert page.status == 200, (page_path, page.status, page.text[:500])
        return await self.post(action, fields or {}, csrf=page.csrf)

    async def sign_up(self, email: str | None = None, **extra: str) -> Page:
        self.email = email or fresh_email()
        done = await self.submit(
            "/signup", "/signup", {"email": self.email, "password": PASSWORD, **extra}
        )
        assert done.url.endswith("/login?done=signup"), (done.url, done.error)
        return await self.sign_in()

    async def sign_in(self) -> Page:
        page = await self.submit("/login", "/login", {"email": self.email, "password": PASSWORD})
        assert page.url.endswith("/start"), (page.url, page.error)
        return page

    async def close(self) -> None:
        await self.http.close()


class ConsoleSite:
    def __init__(self, server: TestServer) -> None:
        self.server = server
        self.base = str(server.make_url("")).rstrip("/")
        self.sessions: list[ConsoleSession] = []

    @property
    def db(self) -> Any:
        assert self.server.app is not None
        return self.server.app[DB]

    def browser(self) -> ConsoleSession:
        session = ConsoleSession(self.base)
        self.sessions.append(session)
        return session

    async def user(self, **extra: str) -> ConsoleSession:
        session = self.browser()
        await session.sign_up(**extra)
        return session

    async def operator(self) -> ConsoleSession:
        session = await self.user()
        await self.db.execute(
            "UPDATE users SET is_admin = true WHERE lower(email) = lower(%s)", (session.email,)
        )
        return session


@pytest.fixture
async def site(database_url: str, dns_server: DnsServer) -> AsyncIterator[ConsoleSite]:
    verifier = DomainVerifier(dns_server.nameservers, dns_server.port, 2.0, edge_target=EDGE)
    config = control_config(database_url, edge_target=EDGE, agent_server="agents.tunnels.test")
    server = TestServer(create_app(config, verifier=verifier))
    await server.start_server()
    found = ConsoleSite(server)
    try:
        yield found
    finally:
        for session in found.sessions:
            await session.close()
        await server.close()
