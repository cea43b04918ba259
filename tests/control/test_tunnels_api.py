"""Live tunnels: edges report on the bus, control's consumer applies the reports, and the API
lists what is online. The app runs on the in-memory bus, which the test appends to as an edge
would."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import msgspec
import psycopg2
from aiohttp.test_utils import TestClient

from bus.base import EDGE_REPORTS_STREAM
from bus.events import EdgeState, EdgeStopped, LiveTunnel, TunnelDown, TunnelUp, encode
from bus.memory import MemoryBus
from control.edge_reports import EdgeReportConsumer
from control.keys import BUS
from tests.control.conftest import Api


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 5.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"still {result!r} after {timeout} s"
        await asyncio.sleep(0.05)


def tunnel(org: str, name: str = "", **extra: Any) -> LiveTunnel:
    name = name or secrets.token_hex(3)
    fields: dict[str, Any] = {
        "key": f"sess_{secrets.token_hex(4)}/{name}",
        "org": org,
        "token_id": "tok_test",
        "protocol": "http",
        "url": f"https://{name}.tunnels.test",
        "hostname": f"{name}.tunnels.test",
        "session_id": "sess",
        "instance_id": "laptop-1",
        "agent_version": "0.1.0",
        "client_addr": "203.0.113.7:50000",
        "local": "localhost:3000",
        "started": time.time() - 5,
    }
    fields.update(extra)
    return LiveTunnel(**fields)


async def report(client: TestClient, message: msgspec.Struct | bytes) -> None:
    bus = client.app[BUS]  # type: ignore[index]
    payload = message if isinstance(message, bytes) else encode(message)
    await bus.append(EDGE_REPORTS_STREAM, payload)


def edge_state(edge_id: str, tunnels: list[LiveTunnel], at: float | None = None) -> EdgeState:
    now = time.time() if at is None else at
    return EdgeState(edge_id=edge_id, at=now, started=now - 60, tunnels=tunnels, version="1.2.3")


async def tunnel_keys(api: Api, key: str) -> set[str]:
    listed = await api.call("GET", "/v1/tunnels", key)
    return {t["key"] for t in listed["tunnels"]}


def new_edge() -> str:
    return f"edge-{secrets.token_hex(4)}"


async def test_an_edge_state_lists_the_orgs_tunnels(api: Api, control: TestClient) -> None:
    alice = await api.signup()
    bob = await api.signup()
    mine = tunnel(alice["org"]["id"], "shop", protocol="http")
    tcp = tunnel(
        alice["org"]["id"], "db", protocol="tcp", url="tcp://tunnels.test:20001", port=20001
    )
    theirs = tunnel(bob["org"]["id"])
    edge = new_edge()
    await report(control, edge_state(edge, [mine, tcp, theirs]))

    async def alices() -> list[dict[str, Any]]:
        return list((await api.call("GET", "/v1/tunnels", alice["key"]))["tunnels"])

    listed = {t["key"]: t for t in await eventually(alices)}
    assert set(listed) == {mine.key, tcp.key}
    shown = listed[tcp.key]
    assert shown["edge_id"] == edge
    assert (shown["protocol"], shown["url"], shown["port"]) == ("tcp", tcp.url, 20001)
    assert shown["agent_version"] == "0.1.0" and shown["instance_id"] == "laptop-1"
    assert shown["client_addr"] == "203.0.113.7:50000"
    assert shown["local_addr"] == "localhost:3000" and shown["token_id"] == "tok_test"
    assert shown["started_at"]
    assert await tunnel_keys(api, bob["key"]) == {theirs.key}

    # Keys hold a slash: it may be sent as is or escaped.
    one = await api.call("GET", f"/v1/tunnels/{mine.key}", alice["key"])
    assert one["url"] == "https://shop.tunnels.test"
    one = await api.call("GET", f"/v1/tunnels/{quote(mine.key, safe='')}", alice["key"])
    assert one["key"] == mine.key
    err = await api.call("GET", f"/v1/tunnels/{theirs.key}", alice["key"], status=404)
    assert err["error"]["code"] == "not_found"

    # The next state replaces the last one: the TCP tunnel is gone.
    await report(control, edge_state(edge, [mine, theirs]))
    await eventually(lambda: _equals(tunnel_keys(api, alice["key"]), {mine.key}))


async def _equals(got: Awaitable[Any], expected: Any) -> bool:
    return bool(await got == expected)


async def test_tunnels_come_and_go_with_up_and_down_reports(api: Api, control: TestClient) -> None:
    user = await api.signup()
    org = user["org"]["id"]
    edge = new_edge()
    first, second = tunnel(org), tunnel(org)
    await report(control, edge_state(edge, [first]))
    await report(control, TunnelUp(edge_id=edge, at=time.time(), tunnel=second))
    await eventually(lambda: _equals(tunnel_keys(api, user["key"]), {first.key, second.key}))

    await report(control, TunnelDown(edge_id=edge, at=time.time(), key=first.key))
    await eventually(lambda: _equals(tunnel_keys(api, user["key"]), {second.key}))
    await api.call("GET", f"/v1/tunnels/{first.key}", user["key"], status=404)

    # A down from an edge the tunnel has already left does not remove it.
    moved = tunnel(org)
    other = new_edge()
    await report(control, TunnelUp(edge_id=edge, at=time.time(), tunnel=moved))
    await report(control, TunnelUp(edge_id=other, at=time.time(), tunnel=moved))
    await report(control, TunnelDown(edge_id=edge, at=time.time(), key=moved.key))
    await report(control, EdgeStopped(edge_id=edge, at=time.time()))
    await eventually(lambda: _equals(tunnel_keys(api, user["key"]), {moved.key}))
    shown = await api.call("GET", f"/v1/tunnels/{moved.key}", user["key"])
    assert shown["edge_id"] == other


async def test_a_stale_edge_is_not_listed(api: Api, control: TestClient) -> None:
    user = await api.signup()
    org = user["org"]["id"]
    stale, fresh = tunnel(org), tunnel(org)
    # The control fixture keeps edge_stale_seconds at its default (45 s).
    await report(control, edge_state(new_edge(), [stale], at=time.time() - 120))
    await report(control, edge_state(new_edge(), [fresh]))
    # Reports are applied in order: once the fresh one shows, the stale one was applied too.
    await eventually(lambda: _equals(tunnel_keys(api, user["key"]), {fresh.key}))
    await api.call("GET", f"/v1/tunnels/{stale.key}", user["key"], status=404)


async def test_bad_reports_are_dropped_and_the_consumer_keeps_going(
    api: Api, control: TestClient
) -> None:
    user = await api.signup()
    good = tunnel(user["org"]["id"])
    await report(control, b"\xc1 not msgpack")
    await report(control, encode(TunnelDown(edge_id="e", at=time.time(), key="k"))[:-3])
    await report(control, msgspec.msgpack.encode({"type": "edge_state", "edge_id": 5}))
    await report(control, edge_state(new_edge(), [tunnel(user["org"]["id"], key="nul\x00key")]))
    await report(control, edge_state(new_edge(), [good]))
    await eventually(lambda: _equals(tunnel_keys(api, user["key"]), {good.key}))
    bus = control.app[BUS]  # type: ignore[index]
    assert isinstance(bus, MemoryBus)
    # Every entry, the bad ones too, was acknowledged.
    await eventually(lambda: _none_pending(bus))


async def _none_pending(bus: MemoryBus) -> bool:
    return not bus.pending(EDGE_REPORTS_STREAM, "control")


async def test_tunnels_need_a_caller_and_unknown_keys_are_not_found(
    api: Api, control: TestClient
) -> None:
    resp = await control.get("/v1/tunnels")
    assert resp.status == 401
    user = await api.signup()
    for key in ["nope", "a/b/c", "'; DROP TABLE live_tunnels; --", "x" * 3000]:
        await api.call("GET", f"/v1/tunnels/{quote(key, safe='/')}", user["key"], status=404)
    assert await tunnel_keys(api, user["key"]) == set()


class _RollbackFails:
    """A database whose transaction hangs until cancelled, then fails the way aiopg does when
    the cancellation closed the connection: the rollback raises InterfaceError."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise psycopg2.InterfaceError("connection already closed") from None
        yield


async def test_the_consumer_stops_when_cancelled_inside_a_database_call() -> None:
    bus = MemoryBus()
    db = _RollbackFails()
    consumer = EdgeReportConsumer(db, bus, block=0.1)  # type: ignore[arg-type]
    await bus.append(EDGE_REPORTS_STREAM, encode(edge_state(new_edge(), [])))
    task = asyncio.create_task(consumer.run())
    async with asyncio.timeout(5):
        await db.entered.wait()
    task.cancel()
    # Retrying as if the database were down would keep the app from ever shutting down.
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled()
    await bus.close()
