"""What every bus must do, run against ``MemoryBus`` and against ``RedisBus`` on a real Redis.

A Redis subscription goes live some time after ``subscribe`` returns, and pub/sub drops what
is published before that; so each test subscribes to ``PROBE`` as well and publishes on it
until a probe comes back (``until_live``). A final probe also serves as a marker: once it
arrives, nothing published before it is still on the way.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from bus.base import EDGE_REPORTS_STREAM, ROUTING_CHANNEL, Bus, BusUnavailable, Gap, Published
from bus.connect import open_bus
from bus.memory import Inbox, MemoryBus
from bus.redis_bus import RedisBus

PROBE = "test-probe"
MARK = b"mark"
WAIT = 5.0

BusFactory = Callable[..., Bus]


@pytest.fixture(params=["memory", "redis"])
def make_bus(request: pytest.FixtureRequest) -> BusFactory:
    """Builds the bus under test; extra keywords go to its constructor."""
    if request.param == "memory":
        return lambda **kw: MemoryBus(**kw)
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_cleanup")
    return lambda **kw: RedisBus(url, prefix, **kw)


@pytest.fixture
async def bus(make_bus: BusFactory) -> AsyncIterator[Bus]:
    opened = make_bus()
    try:
        yield opened
    finally:
        await opened.close()


async def next_item(sub: AsyncIterator[Published | Gap], timeout: float = WAIT) -> Published | Gap:
    """The next item that is not a probe."""
    async with asyncio.timeout(timeout):
        while True:
            item = await anext(sub)
            if isinstance(item, Gap) or item.channel != PROBE:
                return item


async def until_live(bus: Bus, sub: AsyncIterator[Published | Gap], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while True:
            await bus.publish(PROBE, b"")
            try:
                item = await asyncio.wait_for(anext(sub), 0.1)
            except TimeoutError:
                continue
            if isinstance(item, Published) and item.channel == PROBE:
                return


async def until_mark(
    bus: Bus, sub: AsyncIterator[Published | Gap], timeout: float = WAIT
) -> list[Published | Gap]:
    """Publishes a marker on PROBE; everything the subscription yields before it."""
    await bus.publish(PROBE, MARK)
    seen: list[Published | Gap] = []
    async with asyncio.timeout(timeout):
        while True:
            item = await anext(sub)
            if isinstance(item, Published) and item.channel == PROBE:
                if item.payload == MARK:
                    return seen
                continue
            seen.append(item)


def payloads(items: list[Published | Gap]) -> list[bytes]:
    return [item.payload for item in items if isinstance(item, Published)]


# -- pub/sub -------------------------------------------------------------------------------


async def test_subscriber_receives_publishes_in_order(bus: Bus) -> None:
    sub = aiter(bus.subscribe([ROUTING_CHANNEL, PROBE]))
    await until_live(bus, sub)
    sent = [f"event {n}".encode() for n in range(200)]
    for payload in sent:
        await bus.publish(ROUTING_CHANNEL, payload)
    received = await until_mark(bus, sub)
    assert received == [Published(ROUTING_CHANNEL, payload) for payload in sent]


async def test_one_subscription_on_several_channels_keeps_order_and_names(bus: Bus) -> None:
    sub = aiter(bus.subscribe(["a", "b", PROBE]))
    await until_live(bus, sub)
    sent = [("a", b"1"), ("b", b"2"), ("a", b"3"), ("b", b"4")]
    for channel, payload in sent:
        await bus.publish(channel, payload)
    assert await until_mark(bus, sub) == [Published(c, p) for c, p in sent]


async def test_subscribers_get_only_the_channels_they_asked_for(bus: Bus) -> None:
    sub_a = aiter(bus.subscribe(["a", PROBE]))
    sub_b = aiter(bus.subscribe(["b", PROBE]))
    await until_live(bus, sub_a)
    await until_live(bus, sub_b)
    await bus.publish("a", b"for a")
    await bus.publish("b", b"for b")
    await bus.publish("c", b"for nobody")
    await bus.publish("ab", b"a prefix is not a match")
    assert await until_mark(bus, sub_a) == [Published("a", b"for a")]
    assert await until_mark(bus, sub_b) == [Published("b", b"for b")]


async def test_two_subscribers_on_one_channel_both_receive(bus: Bus) -> None:
    first = aiter(bus.subscribe([ROUTING_CHANNEL, PROBE]))
    second = aiter(bus.subscribe([ROUTING_CHANNEL, PROBE]))
    await until_live(bus, first)
    await until_live(bus, second)
    await bus.publish(ROUTING_CHANNEL, b"to all")
    assert payloads(await until_mark(bus, first)) == [b"to all"]
    assert payloads(await until_mark(bus, second)) == [b"to all"]


async def test_what_was_published_before_subscribing_is_not_delivered(bus: Bus) -> None:
    await bus.publish(ROUTING_CHANNEL, b"too early")
    sub = aiter(bus.subscribe([ROUTING_CHANNEL, PROBE]))
    await until_live(bus, sub)
    await bus.publish(ROUTING_CHANNEL, b"in time")
    assert payloads(await until_mark(bus, sub)) == [b"in time"]


async def test_pubsub_payloads_are_arbitrary_bytes(bus: Bus) -> None:
    sub = aiter(bus.subscribe([ROUTING_CHANNEL, PROBE]))
    await until_live(bus, sub)
    sent = [b"", b"\x00\xff\r\n*1\r\n$4\r\nPING\r\n", os.urandom(1024 * 1024)]
    for payload in sent:
        await bus.publish(ROUTING_CHANNEL, payload)
    assert payloads(await until_mark(bus, sub, timeout=15)) == sent


async def test_closing_a_subscription_ends_its_iteration(bus: Bus) -> None:
    sub = bus.subscribe([ROUTING_CHANNEL, PROBE])
    await until_live(bus, aiter(sub))
    received: list[Published | Gap] = []

    async def consume() -> None:
        async for item in sub:
            received.append(item)

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await sub.close()
    await asyncio.wait_for(consumer, WAIT)
    await bus.publish(ROUTING_CHANNEL, b"after close")
    await asyncio.sleep(0.1)
    assert all(isinstance(i, Published) and i.payload != b"after close" for i in received)
    # A closed subscription stays ended.
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(aiter(sub)), WAIT)


async def test_a_subscriber_that_falls_behind_gets_a_gap_not_a_backlog(
    make_bus: BusFactory,
) -> None:
    bus = make_bus(inbox_messages=10)
    try:
        sub = aiter(bus.subscribe([ROUTING_CHANNEL, PROBE]))
        await until_live(bus, sub)
        for n in range(100):
            await bus.publish(ROUTING_CHANNEL, b"%d" % n)
        await asyncio.sleep(0.2)  # the subscriber is busy elsewhere
        received = [await next_item(sub)]
        while received[-1] != Published(ROUTING_CHANNEL, b"99"):
            received.append(await next_item(sub))
        assert Gap() in received
        got = payloads(received)
        assert len(got) < 100
        assert got[-1] == b"99"
        assert got == sorted(got, key=int)  # what is kept stays in order
    finally:
        await bus.close()


async def test_a_closed_bus_refuses_work_and_says_so(make_bus: BusFactory) -> None:
    bus = make_bus()
    assert await bus.ping() is True
    await bus.close()
    assert await bus.ping() is False
    with pytest.raises(BusUnavailable):
        await bus.publish(ROUTING_CHANNEL, b"x")
    with pytest.raises(BusUnavailable):
        await bus.append(EDGE_REPORTS_STREAM, b"x")


# -- streams -------------------------------------------------------------------------------


async def test_stream_entries_reach_a_group_in_order_once(bus: Bus) -> None:
    ids = [await bus.append(EDGE_REPORTS_STREAM, b"report %d" % n) for n in range(3)]
    entries = await bus.read_group(EDGE_REPORTS_STREAM, "control", "c1", block=1.0)
    assert [e.entry_id for e in entries] == ids
    assert [e.payload for e in entries] == [b"report 0", b"report 1", b"report 2"]
    await bus.ack(EDGE_REPORTS_STREAM, "control", ids)
    # The group moved past them, for this consumer and any other in the group.
    assert await bus.read_group(EDGE_REPORTS_STREAM, "control", "c1", block=0.1) == []
    assert await bus.read_group(EDGE_REPORTS_STREAM, "control", "c2", block=0) == []
    later = await bus.append(EDGE_REPORTS_STREAM, b"report 3")
    entries = await bus.read_group(EDGE_REPORTS_STREAM, "control", "c2", block=1.0)
    assert [(e.entry_id, e.payload) for e in entries] == [(later, b"report 3")]


async def test_ids_increase(bus: Bus) -> None:
    ids = [await bus.append(EDGE_REPORTS_STREAM, b"") for _ in range(50)]
    as_pairs = [tuple(int(part) for part in i.split("-")) for i in ids]
    assert as_pairs == sorted(set(as_pairs))


async def test_count_limits_one_read_and_the_rest_follows(bus: Bus) -> None:
    for n in range(7):
        await bus.append(EDGE_REPORTS_STREAM, b"%d" % n)
    first = await bus.read_group(EDGE_REPORTS_STREAM, "control", "c1", count=5, block=0)
    rest = await bus.read_group(EDGE_REPORTS_STREAM, "control", "c1", count=5, block=0)
    assert [e.payload for e in first + rest] == [b"%d" % n for n in range(7)]


async def test_a_second_group_sees_everything(bus: Bus) -> None:
    for n in range(5):
        await bus.append(EDGE_REPORTS_STREAM, b"%d" % n)
    first = await bus.read_group(EDGE_REPORTS_STREAM, "control", "c1", block=0)
    await bus.ack(EDGE_REPORTS_STREAM, "control", [e.entry_id for e in first])
    second = await bus.read_group(EDGE_REPORTS_STREAM, "audit", "a1", block=0)
    assert [e.payload for e in second] == [e.payload for e in first]
    assert len(second) == 5


async def test_read_group_waits_for_an_append(bus: Bus) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.create_task(bus.read_group(EDGE_REPORTS_STREAM, "control", "c1", block=10.0))
    await asyncio.sleep(0.2)
    assert not reader.done()
    started = loop.time()
    await bus.append(EDGE_REPORTS_STREAM, b"woke")
    entries = await asyncio.wait_for(reader, WAIT)
    assert [e.payload for e in entries] == [b"woke"]
    assert loop.time() - started < 2.0


async def test_read_group_returns_empty_after_block(bus: Bus) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await bus.read_group(EDGE_REPORTS_STREAM, "control", "c1", block=0.3) == []
    assert 0.25 <= loop.time() - started < 3.0


async def test_a_block_longer_than_socket_timeouts_still_waits(bus: Bus) -> None:
    reader = asyncio.create_task(bus.read_group(EDGE_REPORTS_STREAM, "control", "c1", block=8.0))
    await asyncio.sleep(4.5)
    assert not reader.done()
    await bus.append(EDGE_REPORTS_STREAM, b"late")
    entries = await asyncio.wait_for(reader, WAIT)
    assert [e.payload for e in entries] == [b"late"]


async def test_maxlen_trims_the_oldest(bus: Bus) -> None:
    for n in range(500):
        await bus.append(EDGE_REPORTS_STREAM, b"%d" % n, maxlen=10)
    entries = await bus.read_group(EDGE_REPORTS_STREAM, "control", "c1", count=1000, block=0)
    got = [e.payload for e in entries]
    # Redis trims whole nodes (MAXLEN ~), so a little more than maxlen may stay.
    assert 10 <= len(got) <= 110
    assert got[-1] == b"499"
    assert b"0" not in got
    assert got == [b"%d" % n for n in range(500 - len(got), 500)]


async def test_stream_payloads_are_arbitrary_bytes(bus: Bus) -> None:
    sent = [b"", b"\x00\xff\r\n", os.urandom(1024 * 1024)]
    for payload in sent:
        await bus.append(EDGE_REPORTS_STREAM, payload)
    entries = await bus.read_group(EDGE_REPORTS_STREAM, "control", "c1", block=0)
    assert [e.payload for e in entries] == sent


async def test_streams_are_separate(bus: Bus) -> None:
    await bus.append("one", b"1")
    await bus.append("two", b"2")
    one = await bus.read_group("one", "g", "c", block=0)
    two = await bus.read_group("two", "g", "c", block=0)
    assert [e.payload for e in one] == [b"1"]
    assert [e.payload for e in two] == [b"2"]


# -- without a server ----------------------------------------------------------------------


def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_unreachable_redis_is_bus_unavailable_naming_the_host_not_the_password() -> None:
    port = dead_port()
    bus = RedisBus(f"redis://user:hunter2@127.0.0.1:{port}/0", "x:")
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(BusUnavailable) as caught:
            await bus.publish(ROUTING_CHANNEL, b"x")
        message = str(caught.value)
        assert f"127.0.0.1:{port}" in message
        assert "hunter2" not in message
        assert "\n" not in message
        assert "hunter2" not in repr(bus)
        with pytest.raises(BusUnavailable):
            await bus.read_group(EDGE_REPORTS_STREAM, "g", "c", block=1.0)
        assert await bus.ping() is False
        assert loop.time() - started < 5.0
    finally:
        await bus.close()


async def test_open_bus_picks_the_implementation() -> None:
    for url in (None, "", "memory://"):
        assert isinstance(open_bus(url, "p:"), MemoryBus)
    for url in ("redis://127.0.0.1:1/0", "rediss://example.invalid:6380/0"):
        bus = open_bus(url, "p:")
        assert isinstance(bus, RedisBus)
        await bus.close()
    with pytest.raises(ValueError, match="unsupported bus URL") as caught:
        open_bus("postgres://user:hunter2@db/burrow", "p:")
    assert "hunter2" not in str(caught.value)


async def test_inbox_bounds_bytes_as_well_as_messages() -> None:
    inbox = Inbox(max_items=100, max_bytes=1000)
    for payload in (b"a" * 400, b"b" * 400, b"c" * 400):
        inbox.put(Published("x", payload))
    assert await inbox.get() == Gap()
    assert await inbox.get() == Published("x", b"c" * 400)
    # One message larger than the bound still gets through an empty inbox.
    inbox.put(Published("x", b"d" * 5000))
    assert await inbox.get() == Published("x", b"d" * 5000)
    inbox.close()
    assert await inbox.get() is None


async def test_entries_a_consumer_left_unacked_are_claimed_by_another(bus: Bus) -> None:
    ids = [await bus.append("work", b"job %d" % n) for n in range(3)]
    taken = await bus.read_group("work", "workers", "dies", block=0)
    assert [e.entry_id for e in taken] == ids
    await bus.ack("work", "workers", [ids[0]])  # the one job it finished before dying
    # Not yet idle long enough: nobody takes them from a consumer that may still be at it.
    assert await bus.claim_stale("work", "workers", "heir", min_idle=30.0) == []
    await asyncio.sleep(0.2)
    claimed = await bus.claim_stale("work", "workers", "heir", min_idle=0.1)
    assert [(e.entry_id, e.payload) for e in claimed] == [(ids[1], b"job 1"), (ids[2], b"job 2")]
    await bus.ack("work", "workers", [e.entry_id for e in claimed])
    await asyncio.sleep(0.2)
    assert await bus.claim_stale("work", "workers", "third", min_idle=0.1) == []
    # New entries still go to the group as before, and a group never read claims nothing.
    assert await bus.claim_stale("work", "nobody", "c", min_idle=0.0) == []
