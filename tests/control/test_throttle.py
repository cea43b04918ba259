"""Guessing passwords, signing up in bulk and minting credentials are throttled: 429 with
Retry-After, per client address and per account, shared by every control process through
Redis, and still enforced (in the process) when Redis is frozen or gone."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bus.memory import MemoryBus
from control.app import create_app
from control.throttle import Throttle
from tests.control.conftest import PASSWORD, Api, control_config
from tests.fixtures.redis import PrivateRedis


@asynccontextmanager
async def _api(database_url: str, **changes: Any) -> AsyncIterator[Api]:
    # The bus stays in memory: these tests are about the throttle's own use of Redis.
    app = create_app(control_config(database_url, **changes), bus=MemoryBus())
    async with TestClient(TestServer(app)) as client:
        yield Api(client)


async def _login(api: Api, email: str, password: str) -> tuple[int, Any, str | None]:
    resp = await api.client.post("/v1/login", json={"email": email, "password": password})
    return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def test_wrong_passwords_for_one_account_are_refused_with_retry_after(
    database_url: str,
) -> None:
    async with _api(database_url, login_rate_per_account="5/minute") as api:
        user = await api.signup()
        email = user["user"]["email"]
        started = time.monotonic()
        statuses = [(await _login(api, email, "wrong password"))[0] for _ in range(8)]
        assert statuses == [401] * 5 + [429] * 3
        status, body, retry_after = await _login(api, email, PASSWORD)
        assert status == 429, body  # the right password waits too: no oracle past the limit
        assert body["error"]["code"] == "rate_limited"
        assert retry_after is not None and 1 <= int(retry_after) <= 60
        assert body["error"]["retry_after"] == int(retry_after)
        assert time.monotonic() - started < 10
        # Another account from the same address is not locked out by it.
        other = await api.signup()
        assert (await _login(api, other["user"]["email"], PASSWORD))[0] == 200


async def test_attempts_from_one_address_are_capped_whatever_the_email(
    database_url: str,
) -> None:
    async with _api(database_url, login_rate_per_address="6/minute") as api:
        statuses = [
            (await _login(api, f"nobody{i}@example.com", "wrong password"))[0] for i in range(9)
        ]
        assert statuses == [401] * 6 + [429] * 3


async def test_signups_and_new_credentials_are_capped(database_url: str) -> None:
    async with _api(
        database_url, signup_rate_per_address="2/hour", credential_rate_per_org="3/minute"
    ) as api:
        user = await api.signup()  # makes one API key too
        await api.call("POST", "/v1/tokens", user["key"], status=201, json={})
        await api.call("POST", "/v1/api-keys", user["key"], status=201, json={})
        err = await api.call("POST", "/v1/tokens", user["key"], status=429, json={})
        assert err["error"]["code"] == "rate_limited"
        await api.signup()
        resp = await api.client.post(
            "/v1/signup", json={"email": "third@example.com", "password": PASSWORD}
        )
        assert resp.status == 429
        assert int(resp.headers["Retry-After"]) > 60


async def test_control_processes_share_the_count_through_redis(
    database_url: str, redis_url: str, redis_cleanup: str
) -> None:
    changes = {"redis_url": redis_url, "bus_prefix": redis_cleanup}
    async with (
        _api(database_url, login_rate_per_account="4/minute", **changes) as one,
        _api(database_url, login_rate_per_account="4/minute", **changes) as two,
    ):
        user = await one.signup()
        email = user["user"]["email"]
        assert [(await _login(one, email, "wrong"))[0] for _ in range(2)] == [401, 401]
        assert [(await _login(two, email, "wrong"))[0] for _ in range(3)] == [401, 401, 429]
        assert (await _login(one, email, PASSWORD))[0] == 429


async def test_a_frozen_or_dead_redis_falls_back_to_counting_here(
    database_url: str, private_redis: PrivateRedis
) -> None:
    async with _api(
        database_url, redis_url=private_redis.url, login_rate_per_account="3/minute"
    ) as api:
        user = await api.signup()
        email = user["user"]["email"]
        assert (await _login(api, email, PASSWORD))[0] == 200
        for n, outage in enumerate((private_redis.freeze, private_redis.stop)):
            outage()
            started = time.monotonic()
            status = [(await _login(api, f"x{n}{email}", "wrong"))[0] for _ in range(4)]
            assert status == [401, 401, 401, 429]
            assert time.monotonic() - started < 5  # no hang on the frozen server
            assert (await _login(api, email, PASSWORD))[0] == 200
            private_redis.thaw()


def test_a_mistyped_rate_names_its_setting() -> None:
    with pytest.raises(ValueError, match="login_rate_per_account = 'lots' is not a rate"):
        Throttle(control_config("postgresql://unused", login_rate_per_account="lots"))
