"""The whole multi-tenant path on real sockets: the control service on PostgreSQL, a bus on
Redis, an edge that fetches its routing state over HTTP and follows the bus, and agents
with tokens control signed."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.client import AgentRefused
from agent.tunnels import TunnelSpec
from bus.redis_bus import RedisBus
from control.app import create_app
from control.keys import DB
from edge.link.token_auth import SignedTokens
from edge.server import Edge
from edge.sync.control_sync import HttpSnapshotSource, RoutingSync
from edge.sync.tunnel_reports import TunnelReporter
from tests.control.conftest import PASSWORD, control_config
from tests.e2e.client import get
from tests.e2e.conftest import AgentRunner, edge_config, wait_for
from tests.e2e.origin import LocalService
from tests.fixtures.redis import PrivateRedis

EDGE_KEY = "edge-key-1"


class ControlProcess:
    """The control app served on a real port, restartable on the same port."""

    def __init__(self, database_url: str, redis_url: str, prefix: str) -> None:
        self.config = control_config(
            database_url, redis_url=redis_url, bus_prefix=prefix, edge_stale_seconds=30.0
        )
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        self.runner = web.AppRunner(create_app(self.config))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Stack:
    control: ControlProcess
    edge: Edge
    sync: RoutingSync
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, key: str, status: int = 200, **kw: Any) -> Any:
        async with self.http.request(
            method, self.control.url + path, headers={"Authorization": f"Bearer {key}"}, **kw
        ) as resp:
            body = await resp.json()
            assert resp.status == status, (resp.status, body)
            return body

    async def _sign_up_and_in(self, email: str) -> dict[str, Any]:
        """Sign ``email`` up (202, alike for new and known emails), then in; ``/v1/me``."""
        credentials = {"email": email, "password": PASSWORD}
        async with self.http.post(self.control.url + "/v1/signup", json=credentials) as resp:
            assert resp.status == 202, await resp.text()
        async with self.http.post(self.control.url + "/v1/login", json=credentials) as resp:
            assert resp.status == 200, await resp.text()
        async with self.http.get(self.control.url + "/v1/me") as resp:
            me: dict[str, Any] = await resp.json()
        return me

    async def sign_in_operator(self, email: str) -> None:
        """Sign ``email`` up as an operator of the installation; ``http`` keeps the login
        for ``operator_call`` until its cookies are cleared."""
        user_id = (await self._sign_up_and_in(email))["user"]["id"]
        assert self.control.runner is not None
        await self.control.runner.app[DB].execute(
            "UPDATE users SET is_admin = true WHERE id = %s", (user_id,)
        )

    async def operator_call(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        async with self.http.request(
            method, self.control.url + path, headers={"X-Requested-With": "t"}, **kw
        ) as resp:
            body = await resp.json()
            assert resp.status == status, (resp.status, body)
            return body

    async def signup(self, email: str) -> dict[str, Any]:
        """A user with their own org, and an admin API key for it."""
        me = await self._sign_up_and_in(email)
        user: dict[str, Any] = {"user": me["user"], "org": me["orgs"][0]}
        async with self.http.post(
            self.control.url + "/v1/api-keys", json={}, headers={"X-Requested-With": "t"}
        ) as resp:
            assert resp.status == 201, await resp.text()
            user["key"] = (await resp.json())["key"]
        self.http.cookie_jar.clear()
        return user


async def _stack(database_url: str, redis_url: str, prefix: str) -> AsyncIterator[Stack]:
    control = ControlProcess(database_url, redis_url, prefix)
    await control.start()
    keyring = SignedTokens([])
    edge = Edge(edge_config(base_domain="tunnels.test"), keyring)
    bus = RedisBus(redis_url, prefix)
    sync = RoutingSync(
        edge, HttpSnapshotSource(control.url, EDGE_KEY), bus, keyring, outage_interval=0.5
    )
    await sync.start()
    await edge.start()
    reporter = TunnelReporter(edge, bus, interval=0.5)
    reporter.start()
    # unsafe: keep cookies for an IP-address host (the control runs on 127.0.0.1).
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        yield Stack(control, edge, sync, http)
    finally:
        await http.close()
        await reporter.close()
        await sync.close()
        await edge.shutdown(drain=0.5)
        await bus.close()
        await control.stop()


@pytest.fixture
async def stack(database_url: str, redis_url: str, redis_cleanup: str) -> AsyncIterator[Stack]:
    # redis_cleanup (the key prefix) is torn down after the stack, so nothing the control
    # service still wrote while stopping is left behind in the shared Redis.
    async for s in _stack(database_url, redis_url, redis_cleanup):
        yield s


async def test_signup_token_bind_refuse_revoke(
    stack: Stack, service: LocalService, agents: AgentRunner
) -> None:
    acme = await stack.signup("owner@acme.example")
    globex = await stack.signup("owner@globex.example")
    await stack.call("POST", "/v1/names", acme["key"], status=201, json={"name": "acmeshop"})
    acme_token = await stack.call("POST", "/v1/tokens", acme["key"], status=201, json={})
    globex_token = await stack.call("POST", "/v1/tokens", globex["key"], status=201, json={})

    spec = TunnelSpec("http", "127.0.0.1", service.port, name="acmeshop")
    agent = await agents.start(stack.edge, spec, token=acme_token["token"])
    assert agent.tunnels[0].url.startswith("http://acmeshop.tunnels.test")
    resp = await get(stack.edge.config.http_port, "acmeshop.tunnels.test", "/hello")
    assert resp.status == 200

    # Another org's agent is refused the name, with a reason its user can act on.
    other = await agents.start(stack.edge, spec, token=globex_token["token"], wait=False)
    await wait_for(lambda: bool(other.tunnels[0].error), what="bind refusal")
    assert "reserved by another account" in other.tunnels[0].error
    assert not other.tunnels[0].url

    # The live tunnel shows up in the org's list, not in the other org's.
    async def listed(key: str) -> list[dict[str, Any]]:
        return list((await stack.call("GET", "/v1/tunnels", key))["tunnels"])

    for _ in range(100):
        if await listed(acme["key"]):
            break
        await asyncio.sleep(0.05)
    rows = await listed(acme["key"])
    assert [r["hostname"] for r in rows] == ["acmeshop.tunnels.test"]
    assert rows[0]["edge_id"] == stack.edge.config.edge_id
    assert await listed(globex["key"]) == []
    async with stack.http.get(stack.control.url + "/metrics") as resp:
        exposed = await resp.text()
    applied = [
        line
        for line in exposed.splitlines()
        if line.startswith('burrow_control_edge_reports_total{kind="tunnel_up"}')
    ]
    assert applied and float(applied[0].rsplit(" ", 1)[1]) >= 1, exposed[:2000]
    assert "burrow_control_edge_report_lag_seconds" in exposed

    # Revocation: the live agent is cut off and its reconnects are refused.
    running = agents.running[0][1]
    await stack.call("DELETE", f"/v1/tokens/{acme_token['id']}", acme["key"])
    await wait_for(running.done, timeout=5, what="revoked agent to stop")
    with pytest.raises(AgentRefused, match="revoked"):
        running.result()
    resp = await get(stack.edge.config.http_port, "acmeshop.tunnels.test", "/hello")
    assert resp.status == 404
    again = await agents.start(stack.edge, spec, token=acme_token["token"], wait=False)
    task = agents.running[-1][1]
    await wait_for(task.done, timeout=5, what="refusal of a revoked token")
    with pytest.raises(AgentRefused, match="revoked"):
        task.result()
    assert again.last_error


async def test_tunnels_survive_control_and_redis_restarts(
    database_url: str,
    private_redis: PrivateRedis,
    bus_prefix: str,
    service: LocalService,
    agents: AgentRunner,
) -> None:
    async for stack in _stack(database_url, private_redis.url, bus_prefix):
        user = await stack.signup("owner@initech.example")
        await stack.call("POST", "/v1/names", user["key"], status=201, json={"name": "initech"})
        made = await stack.call("POST", "/v1/tokens", user["key"], status=201, json={})
        spec = TunnelSpec("http", "127.0.0.1", service.port, name="initech")
        agent = await agents.start(stack.edge, spec, token=made["token"])
        port = stack.edge.config.http_port
        host = agent.tunnels[0].url.split("//")[1].split(":")[0]
        assert (await get(port, host, "/hello")).status == 200

        # Control goes away: traffic flows, the established link stays.
        await stack.control.stop()
        for _ in range(5):
            assert (await get(port, host, "/hello")).status == 200
        # Redis goes away too.
        assert stack.sync.lag() == 0.0
        private_redis.stop()
        await asyncio.sleep(1.0)
        for _ in range(5):
            assert (await get(port, host, "/hello")).status == 200
        assert agent.tunnels[0].url and len(agents.running) == 1
        # The edge knows its routing state may be stale, and says so on /metrics.
        lagging = functools.partial(lambda sync: sync.lag() > 0, stack.sync)
        await wait_for(lagging, timeout=10, what="bus lag to show")
        assert not agents.running[0][1].done()

        # Both come back; a revocation made now still reaches the edge and cuts the agent.
        private_redis.start()
        await stack.control.start()
        await stack.call("DELETE", f"/v1/tokens/{made['id']}", user["key"])
        task = agents.running[0][1]
        await wait_for(task.done, timeout=10, what="revocation after the restarts")
        with pytest.raises(AgentRefused, match="revoked"):
            task.result()
        with contextlib.suppress(Exception):
            await agents.stop_all()


async def test_a_name_another_org_is_serving_cannot_be_reserved_from_under_it(
    stack: Stack, service: LocalService, agents: AgentRunner
) -> None:
    squatter = await stack.signup("early@squat.example")
    owner = await stack.signup("owner@brand.example")
    squat_token = await stack.call("POST", "/v1/tokens", squatter["key"], status=201, json={})
    # A random name the edge gave the squatter's agent is the squatter's while it serves.
    random = TunnelSpec("http", "127.0.0.1", service.port)
    squatting = await agents.start(stack.edge, random, token=squat_token["token"])
    host = squatting.tunnels[0].url.split("//")[1].split(":")[0]
    label = host.split(".")[0]
    port = stack.edge.config.http_port
    assert (await get(port, host, "/hello")).status == 200
    for _ in range(100):  # control learns of the tunnel from the edge's reports
        if (await stack.call("GET", "/v1/tunnels", squatter["key"]))["tunnels"]:
            break
        await asyncio.sleep(0.05)

    # Reserving a name another account serves right now would end its tunnel at once: it
    # is refused (an operator can reassign the name with the admin API), and the tunnel
    # keeps serving.
    err = await stack.call("POST", "/v1/names", owner["key"], status=409, json={"name": label})
    assert err["error"]["code"] == "in_use"
    assert (await get(port, host, "/hello")).status == 200

    # An operator gives the name to the owner: the squatter's tunnel loses it at once, and
    # the owner's agent can bind it straight away (no lease kept for the squatter).
    await stack.sign_in_operator("ops@brand.example")
    await stack.operator_call(
        "POST", "/v1/admin/names", 201, json={"name": label, "org_id": owner["org"]["id"]}
    )
    stack.http.cookie_jar.clear()
    for _ in range(100):
        if (await get(port, host, "/hello")).status == 404:
            break
        await asyncio.sleep(0.05)
    assert (await get(port, host, "/hello")).status == 404
    owner_token = await stack.call("POST", "/v1/tokens", owner["key"], status=201, json={})
    named = TunnelSpec("http", "127.0.0.1", service.port, name=label)
    mine = await agents.start(stack.edge, named, token=owner_token["token"])
    assert mine.tunnels[0].url.startswith(f"http://{host}")
    assert (await get(port, host, "/hello")).status == 200


async def test_an_org_binds_only_names_it_reserved_or_was_given(
    stack: Stack, service: LocalService, agents: AgentRunner
) -> None:
    user = await stack.signup("owner@umbrella.example")
    made = await stack.call("POST", "/v1/tokens", user["key"], status=201, json={})
    # A free name nobody reserved is not first-come: it must be reserved first.
    free = TunnelSpec("http", "127.0.0.1", service.port, name="umbrella")
    refused = await agents.start(stack.edge, free, token=made["token"], wait=False)
    await wait_for(lambda: bool(refused.tunnels[0].error), what="bind refusal")
    assert "umbrella.tunnels.test is not reserved by your account" in refused.tunnels[0].error
    assert (await get(stack.edge.config.http_port, "umbrella.tunnels.test", "/")).status == 404
    await agents.stop_all()

    # A random name the edge gave the org comes back to it by name after its agent left
    # (the edge's lease keeps it for the account), as a restarted agent asks for it.
    random = TunnelSpec("http", "127.0.0.1", service.port)
    first = await agents.start(stack.edge, random, token=made["token"])
    host = first.tunnels[0].url.split("//")[1].split(":")[0]
    await agents.stop_all()
    await wait_for(lambda: host not in stack.edge.routes.hosts, what="the tunnel released")
    again = TunnelSpec("http", "127.0.0.1", service.port, name=host.split(".")[0])
    second = await agents.start(stack.edge, again, token=made["token"])
    assert second.tunnels[0].url.startswith(f"http://{host}")
    assert (await get(stack.edge.config.http_port, host, "/hello")).status == 200

    # With the name reserved, it binds.
    await stack.call("POST", "/v1/names", user["key"], status=201, json={"name": "umbrella"})
    await wait_for(
        lambda: stack.edge.ownership.owner_of_name("umbrella.tunnels.test") is not None,
        what="the reservation at the edge",
    )
    reserved = await agents.start(stack.edge, free, token=made["token"])
    assert reserved.tunnels[0].url.startswith("http://umbrella.tunnels.test")
