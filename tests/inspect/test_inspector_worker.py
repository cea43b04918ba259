"""The inspector worker: captures from the bus stream into PostgreSQL, shared by several
workers, across PostgreSQL and Redis outages, with retention. Real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from bus.base import Bus
from bus.captures import CAPTURES_STREAM, encode
from bus.memory import MemoryBus
from bus.redis_bus import RedisBus
from control.db import Database
from control.inspector import GROUP, InspectorWorker
from tests.control.conftest import control_config
from tests.control.test_database_outage import PostgresProxy, _through
from tests.fixtures.redis import PrivateRedis
from tests.inspect.support import capture, eventually, new_org


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    opened = await Database.connect(database_url)
    yield opened
    await opened.close()


async def stored(db: Database, org: str) -> int:
    return int(await db.value("SELECT count(*) FROM captured_requests WHERE org_id = %s", (org,)))


@contextlib.asynccontextmanager
async def running(worker: InspectorWorker) -> AsyncIterator[InspectorWorker]:
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def worker(db: Database, bus: Bus, name: str, **kw: object) -> InspectorWorker:
    return InspectorWorker(db, bus, control_config(""), consumer=name, **kw)  # type: ignore[arg-type]


async def append_all(bus: Bus, org: str, numbers: range) -> None:
    for n in numbers:
        await bus.append(CAPTURES_STREAM, encode(capture(org, n)))


async def test_two_workers_share_one_stream_and_store_every_record_once(
    db: Database, redis_url: str, redis_cleanup: str
) -> None:
    org = new_org()
    buses = [RedisBus(redis_url, redis_cleanup) for _ in range(3)]
    try:
        async with (
            running(worker(db, buses[0], "w1")) as w1,
            running(worker(db, buses[1], "w2")) as w2,
        ):
            await append_all(buses[2], org, range(600))
            await eventually(lambda: _equals(stored(db, org), 600))
            assert w1.stored > 0 and w2.stored > 0, (w1.stored, w2.stored)
            assert w1.stored + w2.stored == 600
        distinct = await db.value(
            "SELECT count(DISTINCT request_id) FROM captured_requests WHERE org_id = %s", (org,)
        )
        assert distinct == 600
    finally:
        for bus in buses:
            await bus.close()


async def _equals(value: asyncio.Future[int] | object, expected: int) -> bool:
    return await value == expected  # type: ignore[misc]


async def test_a_postgres_outage_keeps_captures_unacknowledged_until_they_are_stored(
    database_url: str, db: Database
) -> None:
    org = new_org()
    parts = urlsplit(database_url)
    proxy = PostgresProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    bus = MemoryBus()
    through = await Database.connect(_through(database_url, proxy.port), limit_seconds=1.0)
    try:
        async with running(worker(through, bus, "w1")):
            await append_all(bus, org, range(50))
            await eventually(lambda: _equals(stored(db, org), 50))
            proxy.cut()  # PostgreSQL goes away
            await append_all(bus, org, range(50, 100))
            await asyncio.sleep(1.5)
            assert await stored(db, org) == 50
            # Read but not stored: not acknowledged either, so nothing is lost if we die now.
            assert len(bus.pending(CAPTURES_STREAM, GROUP)) == 50
            proxy.mode = "open"  # and it is back
            await eventually(lambda: _equals(stored(db, org), 100), timeout=20)
            await eventually(lambda: _is_empty(bus.pending(CAPTURES_STREAM, GROUP)))
    finally:
        await through.close()
        await proxy.close()
        await bus.close()


async def _is_empty(items: list[str]) -> bool:
    return not items


async def test_a_redis_restart_loses_no_stored_capture_and_the_worker_goes_on(
    db: Database, private_redis: PrivateRedis
) -> None:
    org = new_org()
    bus, feeder = RedisBus(private_redis.url, "t:"), RedisBus(private_redis.url, "t:")
    try:
        async with running(worker(db, bus, "w1")):
            await append_all(feeder, org, range(40))
            await eventually(lambda: _equals(stored(db, org), 40))
            private_redis.stop()  # without persistence: the stream and its group are gone
            await asyncio.sleep(1.0)
            private_redis.start()
            await eventually(lambda: _ping(feeder))
            await append_all(feeder, org, range(40, 80))
            await eventually(lambda: _equals(stored(db, org), 80), timeout=20)
    finally:
        await bus.close()
        await feeder.close()
    assert await stored(db, org) == 80


async def _ping(bus: Bus) -> bool:
    return await bus.ping()


async def test_a_batch_a_dead_worker_stored_but_never_acked_is_not_stored_twice(
    db: Database,
) -> None:
    org = new_org()
    bus = MemoryBus()
    try:
        await append_all(bus, org, range(30))
        # The first worker reads a batch, commits it, and dies before its ack.
        dying = worker(db, bus, "dies")
        entries = await bus.read_group(CAPTURES_STREAM, GROUP, "dies", count=100, block=0)
        await dying._store(entries)
        assert await stored(db, org) == 30
        heir = worker(db, bus, "heir", claim_idle=0.2)
        async with running(heir):
            await eventually(lambda: _is_empty(bus.pending(CAPTURES_STREAM, GROUP)), timeout=5)
        assert heir.stored == 0  # it took the batch over and found it already stored
        assert await stored(db, org) == 30
    finally:
        await bus.close()


async def test_retention_keeps_each_orgs_newest_and_drops_the_old(db: Database) -> None:
    default_org, plan_org = new_org(), new_org()
    await db.execute("INSERT INTO orgs (id, name) VALUES (%s, 'plan')", (plan_org,))
    await db.execute(
        "INSERT INTO capture_retention (org_id, max_count, max_age_s) VALUES (%s, 3, 86400)",
        (plan_org,),
    )
    bus = MemoryBus()
    now = time.time()
    try:
        for org in (default_org, plan_org):
            for n in range(8):
                await bus.append(CAPTURES_STREAM, encode(capture(org, n, started=now - 60 + n)))
            # Two from before the age limit.
            for n in (100, 101):
                started = now - 9 * 86400
                await bus.append(CAPTURES_STREAM, encode(capture(org, n, started=started)))
        config = control_config("", capture_keep_count=5, capture_keep_days=7.0)
        keeper = InspectorWorker(db, bus, config, consumer="w", retention_every=0.2)
        async with running(keeper):
            await eventually(lambda: _equals(stored(db, default_org), 5))
            await eventually(lambda: _equals(stored(db, plan_org), 3))
        kept = await db.all(
            "SELECT request_id FROM captured_requests WHERE org_id = %s ORDER BY started_at",
            (default_org,),
        )
        assert [r["request_id"] for r in kept] == [f"rq{n}" for n in range(3, 8)]
    finally:
        await bus.close()
