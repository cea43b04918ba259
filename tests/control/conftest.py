from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control.app import create_app
from control.config import ControlConfig, PasswordCost

PASSWORD = "correct horse battery"
# One per run: every app instance in the run shares the database and its signing keys.
TEST_SECRET = "test-secret-" + secrets.token_hex(8)


def control_config(database_url: str, **changes: Any) -> ControlConfig:
    config = ControlConfig(
        database_url=database_url,
        base_domain="tunnels.test",
        secret_key=TEST_SECRET,
        edge_keys=("edge-key-1",),
        # Cheap hashes: tests sign many users up; production keeps the defaults.
        passwords=PasswordCost(time_cost=1, memory_kib=8 * 1024, parallelism=1),
    )
    for key, value in changes.items():
        setattr(config, key, value)
    return config


class Api:
    """A test client with helpers to make users and act as them."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    async def signup(self, email: str | None = None, **extra: Any) -> dict[str, Any]:
        """A new user with their own org; returns the signup response plus an admin API key
        for that org under "key"."""
        email = email or f"u{secrets.token_hex(5)}@example.com"
        resp = await self.client.post(
            "/v1/signup", json={"email": email, "password": PASSWORD, **extra}
        )
        assert resp.status == 202, await resp.text()
        resp = await self.client.post("/v1/login", json={"email": email, "password": PASSWORD})
        assert resp.status == 200, await resp.text()
        cookie = resp.cookies["burrow_session"].value
        me = await (await self.client.get("/v1/me")).json()
        data: dict[str, Any] = {"user": me["user"], "org": me["orgs"][0], "cookie": cookie}
        resp = await self.client.post(
            "/v1/api-keys",
            json={"description": "tests"},
            headers={"X-Requested-With": "test", "Cookie": f"burrow_session={cookie}"},
        )
        assert resp.status == 201, await resp.text()
        data["key"] = (await resp.json())["key"]
        self.client.session.cookie_jar.clear()
        return data

    @staticmethod
    def bearer(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def call(self, method: str, path: str, key: str, status: int = 200, **kw: Any) -> Any:
        resp = await self.client.request(method, path, headers=self.bearer(key), **kw)
        body = await resp.json()
        assert resp.status == status, (resp.status, body)
        return body


@pytest.fixture
async def control(database_url: str) -> AsyncIterator[TestClient]:
    app = create_app(control_config(database_url))
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
async def api(control: TestClient) -> Api:
    return Api(control)
