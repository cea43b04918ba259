"""The edge's routing cache and its retries after a control outage: a revocation (or a key
change) is on disk before it is acted on, so a crash just after cannot bring the token back
on a restart from the cache; and once control answers again the edge resyncs at once
instead of sitting out a backoff of up to 30 s."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from bus.events import (
    KeysSet,
    NameClaim,
    NameSet,
    Revocation,
    RoutingSnapshot,
    TokenRevoked,
    encode,
)
from bus.memory import MemoryBus
from control.token_signing import SigningKey
from edge.sync.control_sync import HttpSnapshotSource, read_cache
from tests.e2e.conftest import AgentRunner, wait_for
from tests.e2e.origin import LocalService
from tests.e2e.test_routing_sync import (
    ACME,
    HeldSnapshot,
    Stack,
    control_state,
    http,
    refused,
    task_of,
)


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    memory = MemoryBus()
    yield memory
    await memory.close()


@pytest.fixture
async def cached(tmp_path: Path, bus: MemoryBus) -> AsyncIterator[Stack]:
    """A running edge that has written its first routing cache."""
    cache = tmp_path / "routing.msgpack"
    stack = await Stack(HeldSnapshot(control_state()), bus, cache_path=cache).start()
    try:
        await wait_for(lambda: cache.exists(), what="the first cache write")
        yield stack
    finally:
        await stack.stop()


def _on_disk(stack: Stack) -> RoutingSnapshot:
    assert stack.sync.cache_path is not None
    snapshot = read_cache(stack.sync.cache_path)
    assert snapshot is not None
    return snapshot


def _sessions_of(stack: Stack, token_id: str) -> int:
    return sum(1 for s in stack.edge.sessions if s.identity and s.identity.token_id == token_id)


async def test_a_crash_right_after_a_revocation_keeps_it_on_restart(
    tmp_path: Path, bus: MemoryBus, agents: AgentRunner, service: LocalService
) -> None:
    cache = tmp_path / "routing.msgpack"
    source = HeldSnapshot(control_state())
    stack = await Stack(source, bus, cache_path=cache).start()
    crashed = tmp_path / "after-crash.msgpack"
    try:
        agent = await agents.start(stack.edge, http(service, "shop"), token=ACME)
        await wait_for(lambda: cache.exists(), what="the first cache write")
        await stack.publish(TokenRevoked(seq=11, revocation=Revocation("t-acme", until=0)))
        await wait_for(lambda: _sessions_of(stack, "t-acme") == 0, what="the session ended")
        # The process dies here: whatever is on disk now is what a restart gets.
        shutil.copy(cache, crashed)
        assert (await refused(task_of(agents, agent))).startswith("authtoken revoked")
    finally:
        await stack.stop()
    on_disk = read_cache(crashed)
    assert on_disk is not None
    assert [r.token_id for r in on_disk.revoked] == ["t-acme"]

    source.down = True  # restarted while control is unreachable: from the cache
    again = await Stack(source, bus, cache_path=crashed).start()
    try:
        assert again.sync.loaded_from == "cache"
        retry = await agents.start(again.edge, http(service, "shop"), token=ACME, wait=False)
        assert "revoked" in await refused(task_of(agents, retry))
    finally:
        await again.stop()


async def test_a_revocation_in_a_snapshot_is_on_disk_before_it_acts(
    cached: Stack, agents: AgentRunner, service: LocalService
) -> None:
    agent = await agents.start(cached.edge, http(service, "shop"), token=ACME)
    cached.source.snapshot = control_state(seq=11, revoked=[Revocation("t-acme", until=0)])
    cached.sync.request_resync()
    await wait_for(lambda: _sessions_of(cached, "t-acme") == 0, what="the session ended")
    # Read at once: what a crash now would leave.
    assert [r.token_id for r in _on_disk(cached).revoked] == ["t-acme"]
    assert (await refused(task_of(agents, agent))).startswith("authtoken revoked")


async def test_a_key_change_is_on_disk_before_it_applies(cached: Stack) -> None:
    rotated = SigningKey.generate("k2").verify_key()
    await cached.publish(KeysSet(seq=11, keys=[rotated]))
    await wait_for(lambda: cached.edge.ownership.seq == 11, what="the key set applied")
    assert [k.kid for k in _on_disk(cached).keys] == ["k2"]


async def test_events_in_a_burst_still_reach_the_cache(cached: Stack) -> None:
    for seq in range(11, 31):
        await cached.publish(NameSet(seq=seq, claim=NameClaim(f"n{seq}.localhost", "acme")))
    await cached.publish(TokenRevoked(seq=31, revocation=Revocation("t-x", until=0)))
    await wait_for(lambda: _on_disk(cached).seq == 31, what="the cache to catch up")
    snapshot = _on_disk(cached)
    assert len(snapshot.names) == len(control_state().names) + 20
    assert [r.token_id for r in snapshot.revoked] == ["t-x"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_edge_resyncs_as_soon_as_control_listens_again(bus: MemoryBus) -> None:
    port = _free_port()
    source = HttpSnapshotSource(f"http://127.0.0.1:{port}", "edge-key", timeout=2.0)
    stack = await Stack(source, bus, start_timeout=0.5).start()  # type: ignore[arg-type]
    runner: web.AppRunner | None = None
    try:
        assert not stack.edge.ownership.loaded
        await asyncio.sleep(4.0)  # refused four times: a backoff of 4 s by now, 8 s next

        async def routing(request: web.Request) -> web.Response:
            return web.Response(body=encode(control_state(seq=12)))

        app = web.Application()
        app.router.add_get("/v1/edge/routing", routing)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        started = time.monotonic()
        await wait_for(lambda: stack.edge.ownership.loaded, timeout=10.0, what="a resync")
        assert time.monotonic() - started < 2.0
    finally:
        await stack.stop()
        if runner is not None:
            await runner.cleanup()


async def test_a_routing_event_ends_the_backoff_when_control_answered_badly(
    bus: MemoryBus,
) -> None:
    source = HeldSnapshot(control_state(seq=10))
    stack = await Stack(source, bus).start()
    try:
        source.down = True  # control answers, but with errors: back off
        stack.sync.request_resync()
        await asyncio.sleep(4.0)
        fetched = source.fetches
        source.down = False
        source.snapshot = control_state(seq=13)
        # Control's outbox publishes again: proof it is back; seq 13 after 10 is a hole.
        await stack.publish(NameSet(seq=13, claim=NameClaim("late.localhost", "acme")))
        started = time.monotonic()
        await wait_for(lambda: source.fetches > fetched, timeout=10.0, what="a fetch")
        assert time.monotonic() - started < 1.0
        await wait_for(lambda: stack.edge.ownership.seq == 13, what="the snapshot loaded")
    finally:
        await stack.stop()
