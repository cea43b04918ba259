"""``burrowd check``: is this config usable, and can its database, Redis and control be
reached? One line for each, so an operator reads the answer before starting a role."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bus.redis_bus import redact_url
from edge.settings import Settings

# Each probe gets this long: a firewall that drops packets must not make check hang.
PROBE_SECONDS = 5.0


@dataclass(slots=True)
class Line:
    what: str
    ok: bool
    detail: str
    skipped: bool = False  # nothing configured to reach: not a failure

    def __str__(self) -> str:
        status = "skipped" if self.skipped else "ok" if self.ok else "FAILED"
        return f"{self.what}: {status}: {self.detail}"


async def _database(url: str) -> str:
    from control.db import Database
    from control.migrate import bundled_migrations

    db = await Database.connect(url, maxsize=1)
    try:
        exists = await db.value("SELECT to_regclass('schema_migrations') IS NOT NULL")
        done = set()
        if exists:
            done = {r["version"] for r in await db.all("SELECT version FROM schema_migrations")}
    finally:
        await db.close()
    pending = [m.version for m in bundled_migrations() if m.version not in done]
    if pending:
        raise RuntimeError(
            f"reached, but {len(pending)} migration(s) are not applied: run burrowd migrate"
        )
    return f"{redact_url(url)}, migrations up to date"


async def _redis(url: str) -> str:
    import redis.asyncio as redis

    client = redis.from_url(url, socket_connect_timeout=PROBE_SECONDS)
    try:
        await client.ping()
    finally:
        await client.aclose()
    return redact_url(url)


async def _control(url: str, edge_key: str) -> str:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=PROBE_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        if not edge_key:
            async with session.get(f"{url.rstrip('/')}/readyz") as resp:
                if resp.status != 200:
                    raise RuntimeError(f"/readyz answered {resp.status}")
            return f"{url} is ready (no edge key set, so the routing snapshot was not tried)"
        headers = {"Authorization": f"Bearer {edge_key}"}
        async with session.get(f"{url.rstrip('/')}/v1/edge/routing", headers=headers) as resp:
            if resp.status == 401:
                raise RuntimeError("refused this edge's key: check edge-key or BURROW_EDGE_KEY")
            if resp.status != 200:
                raise RuntimeError(f"answered {resp.status} for the routing snapshot")
    return f"{url}, routing snapshot fetched with this edge's key"


async def _probe(what: str, url: str, probe: Callable[[], Awaitable[str]]) -> Line:
    try:
        return Line(what, True, await asyncio.wait_for(probe(), PROBE_SECONDS * 2))
    except TimeoutError:
        return Line(what, False, f"{redact_url(url)}: no answer within {PROBE_SECONDS * 2:g}s")
    except Exception as exc:  # every failure is a line of the report, never a traceback
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Line(what, False, f"{redact_url(url)}: {text}")


async def run_check(settings: Settings) -> list[Line]:
    """The lines of the report, in order: config, database, Redis, control."""
    control = settings.table("control")
    edge = settings.table("edge")
    where = str(settings.path) if settings.path else "no config file; flags' defaults"
    lines = [Line("config", True, where)]
    database_url = control.get("database_url") or os.environ.get("DATABASE_URL", "")
    if database_url:
        lines.append(await _probe("database", database_url, lambda: _database(database_url)))
    else:
        lines.append(
            Line(
                "database", True, "not set: control would run the embedded PostgreSQL", skipped=True
            )
        )
    redis_url = control.get("redis_url") or edge.get("redis_url") or os.environ.get("REDIS_URL", "")
    if redis_url:
        lines.append(await _probe("redis", redis_url, lambda: _redis(redis_url)))
    else:
        lines.append(
            Line("redis", True, "not set: one process only (the in-memory bus)", skipped=True)
        )
    control_url = edge.get("control_url", "")
    edge_key = edge.get("edge_key") or os.environ.get("BURROW_EDGE_KEY", "")
    if control_url:
        lines.append(await _probe("control", control_url, lambda: _control(control_url, edge_key)))
    else:
        lines.append(
            Line("control", True, "not set: the edge takes static tokens only", skipped=True)
        )
    return lines
