"""``RedisBus`` across a Redis crash, restart or hang, on a private ``redis-server``.

What a user relies on: a subscriber is told (with a ``Gap``) that it may have missed
messages and then keeps receiving; callers get ``BusUnavailable`` promptly while Redis is
gone and plain success once it is back; nothing waits on a dead Redis for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import pytest

from bus import redis_bus
from bus.base import EDGE_REPORTS_STREAM, ROUTING_CHANNEL, BusUnavailable, Gap, Published
from bus.redis_bus import RedisBus
from tests.bus.test_bus_contract import PROBE, next_item, until_live, until_mark
from tests.fixtures.redis import PrivateRedis

# Reconnect backoff tops out at 5 s (with jitter), plus a connect: a Gap comes within this.
RECOVERY = 15.0
# The most a call may take while Redis is down or hung.
PROMPT = redis_bus.CALL_DEADLINE + 1.0


@pytest.fixture
async def bus(private_redis: PrivateRedis) -> AsyncIterator[RedisBus]:
    opened = RedisBus(private_redis.url, "restart:")
    try:
        yield opened
    finally:
        await opened.close()


async def timed(call: Awaitable[object]) -> tuple[float, object]:
    """How long ``call`` took, and its result or the exception it raised."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        outcome: object = await asyncio.wait_for(call, PROMPT + 5.0)
    except Exception as exc:
        outcome = exc
    return loop.time() - started, outcome


async def test_subscription_gaps_after_a_restart_then_receives_again(
    bus: RedisBus, private_redis: PrivateRedis
) -> None:
    sub = aiter(bus.subscribe([ROUTING_CHANNEL, PROBE]))
    await until_live(bus, sub)
    await bus.publish(ROUTING_CHANNEL, b"before")
    assert await next_item(sub) == Published(ROUTING_CHANNEL, b"before")

    private_redis.stop()
    private_redis.start()

    # The Gap comes only once the subscription is back, so a publish right after it
    # must arrive.
    assert await next_item(sub, timeout=RECOVERY) == Gap()
    await bus.publish(ROUTING_CHANNEL, b"after")
    assert payloads_until_mark(await until_mark(bus, sub)) == [b"after"]


def payloads_until_mark(items: list[Published | Gap]) -> list[bytes | None]:
    return [item.payload if isinstance(item, Published) else None for item in items]


async def test_calls_fail_fast_while_down_and_work_again_after(
    bus: RedisBus, private_redis: PrivateRedis
) -> None:
    await bus.append(EDGE_REPORTS_STREAM, b"first")
    first = await bus.read_group(EDGE_REPORTS_STREAM, "control", "c1", block=0)
    assert [e.payload for e in first] == [b"first"]

    private_redis.stop()
    calls: list[Awaitable[object]] = [
        bus.publish(ROUTING_CHANNEL, b"lost"),
        bus.append(EDGE_REPORTS_STREAM, b"lost"),
        bus.read_group(EDGE_REPORTS_STREAM, "control", "c1", block=5.0),
        bus.ack(EDGE_REPORTS_STREAM, "control", [first[0].entry_id]),
    ]
    for elapsed, outcome in [await timed(call) for call in calls]:
        assert isinstance(outcome, BusUnavailable), outcome
        assert elapsed < PROMPT
    assert await bus.ping() is False

    private_redis.start()
    # The restarted Redis kept nothing (no persistence): the group is made again.
    await bus.publish(ROUTING_CHANNEL, b"back")
    entry_id = await bus.append(EDGE_REPORTS_STREAM, b"second")
    again = await bus.read_group(EDGE_REPORTS_STREAM, "control", "c1", block=1.0)
    assert [(e.entry_id, e.payload) for e in again] == [(entry_id, b"second")]
    await bus.ack(EDGE_REPORTS_STREAM, "control", [entry_id])
    assert await bus.ping() is True


async def test_a_hung_redis_never_holds_a_caller_for_long(
    bus: RedisBus, private_redis: PrivateRedis
) -> None:
    await bus.append(EDGE_REPORTS_STREAM, b"warm")  # a pooled connection exists
    private_redis.freeze()
    try:
        results = await asyncio.gather(
            timed(bus.publish(ROUTING_CHANNEL, b"x")),
            timed(bus.append(EDGE_REPORTS_STREAM, b"x")),
            timed(bus.read_group(EDGE_REPORTS_STREAM, "control", "c1", block=30.0)),
            timed(bus.ping()),
        )
    finally:
        private_redis.thaw()
    for elapsed, outcome in results[:3]:
        assert isinstance(outcome, BusUnavailable), outcome
        assert elapsed < PROMPT
    assert results[3][1] is False
    assert results[3][0] < PROMPT
    await bus.publish(ROUTING_CHANNEL, b"thawed")
    assert await bus.ping() is True


async def test_a_silent_pubsub_link_is_noticed_and_replaced(
    bus: RedisBus, private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_bus, "PUBSUB_IDLE_PING", 0.3)
    monkeypatch.setattr(redis_bus, "PUBSUB_PONG_WAIT", 0.3)
    sub = aiter(bus.subscribe([ROUTING_CHANNEL, PROBE]))
    await until_live(bus, sub)
    private_redis.freeze()
    try:
        # No FIN, no RST: only the unanswered ping tells the link is gone.
        await asyncio.sleep(3.0)
    finally:
        private_redis.thaw()
    assert await next_item(sub, timeout=RECOVERY) == Gap()
    await bus.publish(ROUTING_CHANNEL, b"after")
    assert payloads_until_mark(await until_mark(bus, sub)) == [b"after"]


async def test_subscribing_while_down_waits_then_gaps(
    bus: RedisBus, private_redis: PrivateRedis
) -> None:
    private_redis.stop()
    sub = aiter(bus.subscribe([ROUTING_CHANNEL, PROBE]))
    # Iteration neither ends nor raises while Redis is away.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(sub), 1.0)
    private_redis.start()
    assert await next_item(sub, timeout=RECOVERY) == Gap()
    await bus.publish(ROUTING_CHANNEL, b"first")
    assert payloads_until_mark(await until_mark(bus, sub)) == [b"first"]


async def test_closing_a_reconnecting_subscription_ends_it(
    bus: RedisBus, private_redis: PrivateRedis
) -> None:
    sub = bus.subscribe([ROUTING_CHANNEL])
    private_redis.stop()

    async def drain() -> list[Published | Gap]:
        return [item async for item in sub]

    consumer = asyncio.create_task(drain())
    await asyncio.sleep(0.5)
    await asyncio.wait_for(sub.close(), 2.0)
    assert await asyncio.wait_for(consumer, 2.0) == []
