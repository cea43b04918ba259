"""Replay through a real stack: control on PostgreSQL, Redis, an edge following control,
an agent with a token control signed, and a local service. Captures reach PostgreSQL
through the stream and the inspector worker, as the edge's capture filter's will."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.tunnels import TunnelSpec
from bus.captures import CAPTURES_STREAM, encode
from bus.redis_bus import RedisBus
from control.inspector import InspectorWorker
from control.keys import DB
from edge.sync.replay import EdgeReplay
from tests.e2e.conftest import AgentRunner, wait_for
from tests.e2e.origin import LocalService
from tests.e2e.test_control_plane import Stack, _stack
from tests.inspect.support import capture, eventually


@pytest.fixture
async def replay_stack(
    database_url: str, redis_url: str, redis_cleanup: str
) -> AsyncIterator[tuple[Stack, RedisBus]]:
    async for stack in _stack(database_url, redis_url, redis_cleanup):
        bus = RedisBus(redis_url, redis_cleanup)
        replays = EdgeReplay(stack.edge, bus)
        replays.start()
        assert stack.control.runner is not None
        db = stack.control.runner.app[DB]
        inspector = InspectorWorker(db, bus, stack.control.config, consumer="t")
        task = asyncio.create_task(inspector.run())
        try:
            yield stack, bus
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await replays.close()
            await bus.close()


async def online(stack: Stack, key: str, name: str) -> dict[str, Any]:
    async def listed() -> dict[str, Any] | None:
        rows = (await stack.call("GET", "/v1/tunnels", key))["tunnels"]
        return next((r for r in rows if r["hostname"].startswith(name + ".")), None)

    found: dict[str, Any] = await eventually(listed)
    return found


async def captured(stack: Stack, bus: RedisBus, key: str, org: str, **fields: Any) -> str:
    record = capture(org, **fields)
    await bus.append(CAPTURES_STREAM, encode(record))

    async def stored() -> bool:
        async with stack.http.get(
            stack.control.url + f"/v1/requests/{record.id}",
            headers={"Authorization": f"Bearer {key}"},
        ) as resp:
            return resp.status == 200

    await eventually(stored)
    return record.id


async def test_replay_goes_through_the_captures_own_tunnel_as_captured_and_edited(
    replay_stack: tuple[Stack, RedisBus], service: LocalService, agents: AgentRunner
) -> None:
    stack, bus = replay_stack
    acme = await stack.signup("owner@replay-acme.example")
    globex = await stack.signup("owner@replay-globex.example")
    await stack.call("POST", "/v1/names", acme["key"], status=201, json={"name": "shop"})
    token = await stack.call("POST", "/v1/tokens", acme["key"], status=201, json={})
    spec = TunnelSpec("http", "127.0.0.1", service.port, name="shop")
    await agents.start(stack.edge, spec, token=token["token"])
    live = await online(stack, acme["key"], "shop")
    capture_id = await captured(
        stack,
        bus,
        acme["key"],
        acme["org"]["id"],
        hostname="shop.tunnels.test",
        tunnel_id=live["key"],
        target=b"/headers?from=capture",
        request_headers=[
            (b"host", b"evil.example"),
            (b"authorization", b"Bearer s3cret"),
            (b"x-custom", b"kept"),
        ],
    )

    # As captured: the local service sees the tunnel's Host, the replay mark, the captured
    # headers, and not the masked credential.
    replayed = await stack.call("POST", f"/v1/requests/{capture_id}/replay", acme["key"], json={})
    assert replayed["status"] == 200
    assert replayed["replay_of"] == capture_id
    seen = json.loads(replayed["response"]["body"]["text"])
    headers = {k: v for k, v in seen["headers"]}
    assert headers["host"] == "shop.tunnels.test"
    assert headers["x-burrow-replay"] == capture_id
    assert headers["x-custom"] == "kept"
    assert "authorization" not in headers
    # The replay is a capture of its own, listed newest first and marked.
    listed = (await stack.call("GET", "/v1/requests?host=shop.tunnels.test", acme["key"]))[
        "requests"
    ]
    assert [r["id"] for r in listed] == [replayed["id"], capture_id]
    assert listed[0]["replay_of"] == capture_id

    # Edited: method, path, headers and body.
    edited = await stack.call(
        "POST",
        f"/v1/requests/{capture_id}/replay",
        acme["key"],
        json={"method": "POST", "path": "/echo", "body": "edited body", "headers": []},
    )
    assert edited["status"] == 200
    assert edited["response"]["body"]["text"] == "edited body"
    assert edited["method"] == "POST" and edited["url"] == "/echo"

    # Never another host: an absolute URL or a scheme-relative one is refused.
    for path in ("http://169.254.169.254/latest", "//internal.example/x"):
        refused = await stack.call(
            "POST",
            f"/v1/requests/{capture_id}/replay",
            acme["key"],
            status=422,
            json={"path": path},
        )
        assert "own tunnel" in refused["error"]["message"]
    # Another org's capture does not exist for it.
    await stack.call(
        "POST", f"/v1/requests/{capture_id}/replay", globex["key"], status=404, json={}
    )
    await stack.call("GET", f"/v1/requests/{capture_id}", globex["key"], status=404)

    # The agent goes offline: a clear 502, quickly.
    await agents.stop_all()
    started = time.monotonic()
    gone = await stack.call(
        "POST", f"/v1/requests/{capture_id}/replay", acme["key"], status=502, json={}
    )
    assert time.monotonic() - started < 10
    assert "shop.tunnels.test" in gone["error"]["message"]


async def test_the_live_tail_streams_new_captures_of_the_tunnel(
    replay_stack: tuple[Stack, RedisBus],
) -> None:
    stack, bus = replay_stack
    acme = await stack.signup("owner@tail-acme.example")
    org = acme["org"]["id"]
    events: list[dict[str, Any]] = []
    url = stack.control.url + "/v1/requests/stream?host=tail.tunnels.test"
    async with stack.http.get(url, headers={"Authorization": f"Bearer {acme['key']}"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        await resp.content.readline()  # the opening comment
        await bus.append(CAPTURES_STREAM, encode(capture(org, 1, hostname="other.tunnels.test")))
        await bus.append(CAPTURES_STREAM, encode(capture(org, 2, hostname="tail.tunnels.test")))
        async with asyncio.timeout(10):
            while not events:
                line = (await resp.content.readline()).decode()
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
    assert [e["request_id"] for e in events] == ["rq2"]
    await wait_for(lambda: True)
