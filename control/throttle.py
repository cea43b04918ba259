"""Throttles on the routes that guess secrets or make accounts (login, signup, API key and
agent token creation): per client address and per account, shared through Redis when it is
configured so every control process counts together, and counted in this process when Redis
is down or not configured: the API keeps answering either way.

A refusal is a 429 with Retry-After (RFC 6585 §4: the seconds until the window frees up)."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import redis.asyncio
from aiohttp import web
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from control.config import ControlConfig
from control.errors import ApiError

log = logging.getLogger("burrow.control.throttle")

# A Redis that stops answering must not hold a login for longer than this.
REDIS_TIMEOUT = 0.5
# After Redis failed, count locally this long before trying it again.
REDIS_RETRY_SECONDS = 5.0


class Throttle:
    """Named limits ("login.address", "login.account", ...) over one shared storage."""

    def __init__(self, config: ControlConfig) -> None:
        self.limits: dict[str, RateLimitItem] = {}
        for name, setting in (
            ("login.address", "login_rate_per_address"),
            ("login.account", "login_rate_per_account"),
            ("signup.address", "signup_rate_per_address"),
            ("credentials.org", "credential_rate_per_org"),
        ):
            text = getattr(config, setting)
            try:
                self.limits[name] = parse(text)
            except ValueError:
                raise ValueError(
                    f"{setting} = {text!r} is not a rate; write it as N/second, N/minute, "
                    "N/hour or N/day"
                ) from None
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        self._storage: Storage | None = None
        self._shared_down_until = 0.0
        self._pool: redis.asyncio.ConnectionPool | None = None
        if config.redis_url and config.redis_url.startswith(("redis://", "rediss://")):
            # Our own pool, so shutdown can close its connections.
            self._pool = redis.asyncio.ConnectionPool.from_url(
                config.redis_url,
                socket_timeout=REDIS_TIMEOUT,
                socket_connect_timeout=REDIS_TIMEOUT,
            )
            self._storage = RedisStorage(
                "async+" + config.redis_url,
                implementation="redispy",
                key_prefix=config.bus_prefix + "throttle",
                wrap_exceptions=True,
                connection_pool=self._pool,  # type: ignore[arg-type]  # passed through to redis-py
            )
            self._shared = MovingWindowRateLimiter(self._storage)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.disconnect()

    async def _call(self, action: str, item: RateLimitItem, key: str) -> tuple[bool, float]:
        """(allowed, seconds until the window frees a slot) from Redis, else from memory."""
        shared = self._shared
        if shared is not None and time.monotonic() >= self._shared_down_until:
            try:
                async with asyncio.timeout(REDIS_TIMEOUT * 2):
                    return await self._ask(shared, action, item, key)
            except Exception as exc:  # any storage failure: count here instead
                self._shared_down_until = time.monotonic() + REDIS_RETRY_SECONDS
                log.warning("throttle: Redis unavailable (%r); counting in this process", exc)
        return await self._ask(self._memory, action, item, key)

    @staticmethod
    async def _ask(
        limiter: MovingWindowRateLimiter, action: str, item: RateLimitItem, key: str
    ) -> tuple[bool, float]:
        if action == "hit":
            allowed = await limiter.hit(item, key)
        else:
            allowed = await limiter.test(item, key)
        if allowed:
            return True, 0.0
        stats = await limiter.get_window_stats(item, key)
        return False, max(stats.reset_time - time.time(), 1.0)

    async def hit(self, name: str, key: str) -> None:
        """Count one attempt under ``name`` for ``key``; 429 once past the limit."""
        allowed, retry_after = await self._call("hit", self.limits[name], f"{name}:{key}")
        if not allowed:
            raise _too_many(name, retry_after)

    async def check(self, name: str, key: str) -> None:
        """429 if ``key`` is already past the limit, without counting this attempt."""
        allowed, retry_after = await self._call("test", self.limits[name], f"{name}:{key}")
        if not allowed:
            raise _too_many(name, retry_after)


def _too_many(name: str, retry_after: float) -> ApiError:
    seconds = math.ceil(retry_after)
    what = {
        "login.address": "sign-in attempts from this address",
        "login.account": "failed sign-ins for this account",
        "signup.address": "sign-ups from this address",
        "credentials.org": "new API keys and agent tokens for this organization",
    }[name]
    return ApiError(
        429, "rate_limited", f"too many {what}; retry in {seconds} s", retry_after=seconds
    )


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


THROTTLE = web.AppKey("throttle", Throttle)
