"""Logout keeps to the CSRF rule, and credentials in a request aiohttp cannot parse never
reach the log."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.test_utils import TestClient

from tests.control.conftest import Api


async def test_logout_from_another_site_is_refused_and_the_session_survives(api: Api) -> None:
    user = await api.signup()
    cookie = {"Cookie": f"burrow_session={user['cookie']}"}
    for cross_site in ({}, {"Sec-Fetch-Site": "cross-site"}):
        resp = await api.client.post("/v1/logout", headers={**cookie, **cross_site})
        assert resp.status == 403, await resp.text()
        assert (await resp.json())["error"]["code"] == "csrf"
        api.client.session.cookie_jar.clear()
        resp = await api.client.get("/v1/me", headers=cookie)
        assert resp.status == 200  # still signed in
    resp = await api.client.post("/v1/logout", headers={**cookie, "X-Requested-With": "console"})
    assert resp.status == 200
    api.client.session.cookie_jar.clear()
    assert (await api.client.get("/v1/me", headers=cookie)).status == 401


async def _send_raw(client: TestClient, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read(4096)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "bad_line",
    [
        b"Authorization: Bearer {key}\x01",
        b"X-Broken {key}",
        b"Cookie: burrow_session=SESSIONSECRET\x00",
        b"Authorization: Basic dXNlcjpTRUNSRVRQQVNT\x7f",
    ],
)
async def test_a_malformed_request_with_a_key_logs_no_key(
    api: Api, caplog: pytest.LogCaptureFixture, bad_line: bytes
) -> None:
    user = await api.signup()
    key: str = user["key"]
    secret = key.rsplit(".", 1)[-1]
    caplog.set_level(logging.DEBUG)
    raw = (
        b"GET /v1/me HTTP/1.1\r\nHost: control\r\nAuthorization: Bearer "
        + key.encode()
        + b"\r\n"
        + bad_line.replace(b"{key}", key.encode())
        + b"\r\n\r\n"
    )
    answer = await _send_raw(api.client, raw)
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
    logged = caplog.text
    assert "400" in logged or "Bad" in logged or "Invalid" in logged  # the error is still seen
    for leaked in (secret, "SESSIONSECRET", "dXNlcjpTRUNSRVRQQVNT"):
        assert leaked not in logged, logged
    # The same key still works: nothing above revoked or disturbed it.
    assert (await api.call("GET", "/v1/me", key))["org_id"] == user["org"]["id"]
