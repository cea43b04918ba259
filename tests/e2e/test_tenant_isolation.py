"""One account's agent against another's, at a real edge with control's routing state on a
real bus: which hosts a token may bind, held names, quotas, suspensions, key retirement."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bus.events import (
    KeysSet,
    NameClaim,
    NameRemoved,
    NameSet,
    OrgLimits,
    OrgLimitsSet,
    OrgSuspended,
)
from bus.memory import MemoryBus
from contracts.token_format import TokenClaims
from control.token_signing import SigningKey, issue_token
from edge.config import Limits
from edge.server import Edge
from proto.frames import PROTOCOL_VERSION
from proto.messages import Bind, BindFailed, Bound, Hello, Message, Refused
from proto.mux import MessageReceived
from tests.e2e.client import Visitor, get
from tests.e2e.conftest import OTHER_TOKEN, TOKEN, AgentRunner, edge_config, start_edge, wait_for
from tests.e2e.origin import LocalService
from tests.e2e.rawlink import RawLink
from tests.e2e.test_control_plane import Stack as PlatformStack
from tests.e2e.test_control_plane import _stack as platform_stack
from tests.e2e.test_routing_sync import (
    KEY,
    HeldSnapshot,
    Stack,
    control_state,
    http,
    refused,
    task_of,
)


def signed(org: str, tid: str, hosts: tuple[str, ...] = ()) -> str:
    claims = TokenClaims(org=org, tid=tid, iat=int(time.time()) - 5, hosts=list(hosts))
    return issue_token(claims, KEY)


ACME = signed("acme", "t-acme", ("*.shop.localhost",))
# A hostile token: host patterns that cover names and domains it owns none of.
GLOBEX_GREEDY = signed("globex", "t-globex", ("*.com", "*.test", "*.localhost", "*.shop.localhost"))
GLOBEX = signed("globex", "t-globex-plain")


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    bus = MemoryBus()
    running = await Stack(HeldSnapshot(control_state()), bus).start()
    yield running
    await running.stop()
    await bus.close()


async def link(port: int, token: str, instance: str = "raw") -> RawLink:
    raw = await RawLink(port).connect()
    await raw.hello(token, instance)
    return raw


async def bind(raw: RawLink, name: str, protocol: str = "http", port: int = 0) -> Message:
    raw.send(Bind(request_id=7, protocol=protocol, name=name, port=port))
    return await raw.receive()


def refused_with(reply: Message, code: str) -> str:
    assert isinstance(reply, BindFailed), reply
    assert reply.code == code, (reply.code, reply.message)
    return reply.message


# -- 1: token host claims only narrow what the org owns --------------------------------------


@pytest.mark.parametrize(
    ("name", "code", "says"),
    [
        ("x.shop.localhost", "taken", "shop.localhost is reserved by another account"),
        ("*.shop.localhost", "taken", "shop.localhost is reserved by another account"),
        ("unclaimed.example.com", "not_owned", "not a domain of your account"),
        ("*.com", "not_owned", "not a domain of your account"),
        ("www.acme.test", "taken", "custom domain of another account"),
        ("x.free.localhost", "not_owned", "reserve free first"),
        ("*.localhost", "bad_name", "not a valid name"),
        ("edge.localhost", "reserved", "this Burrow installation uses itself"),
        ("x.api.localhost", "reserved", "this Burrow installation uses itself"),
    ],
)
async def test_a_greedy_token_binds_nothing_it_does_not_own(
    stack: Stack, name: str, code: str, says: str
) -> None:
    raw = await link(stack.edge.config.agent_port, GLOBEX_GREEDY)
    assert says in refused_with(await bind(raw, name), code)
    assert stack.edge.routes.lookup_host(name.removeprefix("*.")) is None
    raw.close()


async def test_the_owner_binds_names_under_its_reserved_name(stack: Stack) -> None:
    raw = await link(stack.edge.config.agent_port, ACME)
    for name in ("shop", "x.shop.localhost", "*.shop.localhost"):
        reply = await bind(raw, name)
        assert isinstance(reply, Bound), reply
    raw.close()


async def test_the_default_token_cannot_bind_the_installations_names(stack: Stack) -> None:
    raw = await link(stack.edge.config.agent_port, GLOBEX)
    for name in ("edge", "api", "www", "console", "admin"):
        assert "uses itself" in refused_with(await bind(raw, name), "reserved")
    assert isinstance(await bind(raw, "other"), Bound)  # a name its org reserved
    # A free name is reserved first, where control opens no names to first-come.
    refused_with(await bind(raw, "free-name"), "not_reserved")
    raw.close()


async def test_without_control_the_installation_names_are_still_refused() -> None:
    edge = await start_edge(edge_config(agent_hostname="tunnel.localhost"))
    try:
        raw = await link(edge.config.agent_port, TOKEN)
        for name in ("edge", "tunnel"):
            refused_with(await bind(raw, name), "reserved")
        assert isinstance(await bind(raw, "anything"), Bound)
        raw.close()
    finally:
        await edge.shutdown(drain=0.5)


async def test_a_name_released_by_control_binds_again(stack: Stack) -> None:
    await stack.publish(NameSet(seq=11, claim=NameClaim(host="demo.localhost", org="acme")))
    await wait_for(lambda: stack.edge.ownership.seq == 11, what="the reservation")
    raw = await link(stack.edge.config.agent_port, GLOBEX)
    refused_with(await bind(raw, "demo"), "taken")
    await stack.publish(NameRemoved(seq=12, host="demo.localhost"))
    await wait_for(lambda: stack.edge.ownership.seq == 12, what="the release")
    refused_with(await bind(raw, "demo"), "not_reserved")  # free, not first-come
    await stack.publish(NameSet(seq=13, claim=NameClaim(host="demo.localhost", org="globex")))
    await wait_for(lambda: stack.edge.ownership.seq == 13, what="the new owner")
    assert isinstance(await bind(raw, "demo"), Bound)
    raw.close()


# -- 6 and 7: the lease on a released name -------------------------------------------------


async def test_a_held_name_says_whose_and_until_when(stack: Stack) -> None:
    port = stack.edge.config.agent_port
    first = await link(port, GLOBEX, "laptop")
    bound = await bind(first, "")
    assert isinstance(bound, Bound)
    label = bound.name.split(".", 1)[0]
    first.close()
    await wait_for(lambda: stack.edge.routes.lookup_host(bound.name) is None, what="release")
    other = await link(port, ACME)
    message = refused_with(await bind(other, label), "held")
    assert message.startswith(f"{bound.name} is held for the account that used it until ")
    assert " UTC" in message
    other.close()
    # The account it was given to asks for it back by name after a restart, and gets it.
    again = await link(port, GLOBEX, "laptop-restarted")
    reply = await bind(again, label)
    assert isinstance(reply, Bound) and reply.name == bound.name, reply
    again.close()


async def test_a_restarted_agent_gets_its_tcp_port_back() -> None:
    bus = MemoryBus()
    stack = Stack(HeldSnapshot(control_state()), bus)
    stack.edge.config.tcp_ports = (28100, 28110)
    await stack.start()
    try:
        port = stack.edge.config.agent_port
        first = await link(port, GLOBEX, "db")
        bound = await bind(first, "", "tcp")
        assert isinstance(bound, Bound) and bound.port, bound
        first.close()
        await wait_for(lambda: stack.edge.routes.lookup_port(bound.port) is None, what="release")
        other = await link(port, ACME)
        says = refused_with(await bind(other, "", "tcp", bound.port), "held")
        assert f"port {bound.port} is held for the account that used it until" in says
        other.close()
        again = await link(port, GLOBEX, "db-restarted")
        reply = await bind(again, "", "tcp", bound.port)
        assert isinstance(reply, Bound) and reply.port == bound.port, reply
        again.close()
    finally:
        await stack.stop()
        await bus.close()


# -- 4: retiring a signing key ends the links its tokens opened ----------------------------

OTHER_KEY = SigningKey.generate("k2")


async def test_retiring_a_key_ends_the_agents_its_tokens_let_in(
    agents: AgentRunner, service: LocalService
) -> None:
    bus = MemoryBus()
    stack = Stack(HeldSnapshot(control_state(keys=[KEY.verify_key(), OTHER_KEY.verify_key()])), bus)
    await stack.start()
    try:
        claims = TokenClaims(org="acme", tid="t-k2", iat=int(time.time()) - 5)
        old_key_token = issue_token(claims, OTHER_KEY)
        doomed = await agents.start(stack.edge, http(service, "shop"), token=old_key_token)
        kept = await agents.start(stack.edge, http(service, "other"), token=GLOBEX)
        await stack.publish(KeysSet(seq=11, keys=[KEY.verify_key()]))
        message = await refused(task_of(agents, doomed))
        assert "the key that signed this authtoken was retired" in message
        await wait_for(lambda: stack.edge.routes.lookup_host("shop.localhost") is None)
        assert kept.connected and stack.edge.routes.lookup_host("other.localhost") is not None
        # And it cannot come back.
        again = await agents.start(
            stack.edge, http(service, "shop"), token=old_key_token, wait=False
        )
        assert "retired" in await refused(task_of(agents, again))
    finally:
        await stack.stop()
        await bus.close()


# -- 3: an operator's suspension ends an org's agents and refuses them until lifted --------


async def test_a_suspended_org_is_ended_and_refused_until_lifted(
    stack: Stack, agents: AgentRunner, service: LocalService
) -> None:
    suspended = await agents.start(stack.edge, http(service, "shop"), token=ACME)
    other = await agents.start(stack.edge, http(service, "other"), token=GLOBEX)
    await stack.publish(OrgSuspended(seq=11, org="acme", suspended=True))
    assert "suspended by the operator" in await refused(task_of(agents, suspended))
    await wait_for(lambda: stack.edge.routes.lookup_host("shop.localhost") is None)
    assert other.connected
    again = await agents.start(stack.edge, http(service, "shop"), token=ACME, wait=False)
    assert "suspended" in await refused(task_of(agents, again))
    await stack.publish(OrgSuspended(seq=12, org="acme", suspended=False))
    await wait_for(lambda: stack.edge.ownership.seq == 12, what="the suspension to lift")
    back = await agents.start(stack.edge, http(service, "shop"), token=ACME)
    assert back.tunnels[0].url


async def test_a_suspension_survives_in_the_snapshot(
    agents: AgentRunner, service: LocalService
) -> None:
    bus = MemoryBus()
    stack = Stack(HeldSnapshot(control_state(suspended=["acme"])), bus)
    await stack.start()
    try:
        agent = await agents.start(stack.edge, http(service, "shop"), token=ACME, wait=False)
        assert "suspended" in await refused(task_of(agents, agent))
        assert stack.sync.current_snapshot().suspended == ["acme"]
    finally:
        await stack.stop()
        await bus.close()


# -- 5: per-org quotas at the edge -------------------------------------------------------


async def replies(raw: RawLink, count: int) -> list[Message]:
    """The next ``count`` binds' answers or refusals (several may come in one read, which
    ``RawLink.receive`` would not all return)."""
    assert raw.reader is not None
    got: list[Message] = []
    while len(got) < count:
        data = await asyncio.wait_for(raw.reader.read(65536), 5.0)
        if not data:
            break
        for event in raw.mux.receive_data(data):
            if isinstance(event, MessageReceived) and isinstance(
                event.message, Bound | BindFailed | Refused
            ):
                got.append(event.message)
    return got


async def quota_edge(**limits: int) -> Edge:
    return await start_edge(edge_config(tcp_ports=(28200, 28230), limits=Limits(**limits)))


async def test_an_org_past_its_tunnel_quota_is_refused_and_leases_count() -> None:
    edge = await quota_edge(max_tunnels_per_org=3)
    try:
        port = edge.config.agent_port
        first, second = await link(port, TOKEN, "a"), await link(port, TOKEN, "b")
        names = []
        for raw in (first, first, second):
            reply = await bind(raw, "")
            assert isinstance(reply, Bound), reply
            names.append(reply.name)
        says = refused_with(await bind(second, ""), "quota")
        assert "may hold 3 tunnels on this edge" in says
        bob = await link(port, OTHER_TOKEN)
        assert isinstance(await bind(bob, ""), Bound)  # another account is not affected
        # A link that leaves keeps its names leased to the account: they still count...
        first.close()
        await wait_for(lambda: edge.routes.lookup_host(names[0]) is None, what="release")
        refused_with(await bind(second, ""), "quota")
        # ...and the account takes them back by name.
        for name in names[:2]:
            assert isinstance(await bind(second, name.split(".")[0]), Bound)
        second.close()
        bob.close()
    finally:
        await edge.shutdown(drain=0.5)


async def test_an_org_cannot_take_every_tcp_port() -> None:
    edge = await quota_edge(max_tcp_ports_per_org=2, max_tunnels_per_agent=32)
    try:
        port = edge.config.agent_port
        greedy = await link(port, TOKEN)
        for request_id in range(10):  # a burst: all in flight at once
            greedy.send(Bind(request_id=request_id, protocol="tcp"))
        got = await replies(greedy, 10)
        assert sum(isinstance(r, Bound) for r in got) == 2
        failed = [r for r in got if isinstance(r, BindFailed)]
        assert {r.code for r in failed} == {"quota"}
        assert "may hold 2 TCP ports on this edge" in failed[0].message
        assert len(edge.tcp_listeners) == 2  # the refused binds left no port open
        other = await link(port, OTHER_TOKEN)
        assert isinstance(await bind(other, "", "tcp"), Bound)
        greedy.close()
        other.close()
    finally:
        await edge.shutdown(drain=0.5)


async def test_an_org_past_its_link_quota_is_refused() -> None:
    edge = await quota_edge(max_links_per_org=2)
    try:
        port = edge.config.agent_port
        links = [await link(port, TOKEN, f"agent-{n}") for n in range(2)]
        third = await RawLink(port).connect()
        third.send(Hello([PROTOCOL_VERSION], "raw-test", "agent-3", TOKEN))
        [refusal] = await replies(third, 1)
        assert isinstance(refusal, Refused) and refusal.code == "quota", refusal
        assert "may have 2 agents connected to this edge" in refusal.message
        bob = await link(port, OTHER_TOKEN, "bob")
        assert isinstance(await bind(bob, ""), Bound)
        # The same agent reconnecting while its old link still looks alive is let in.
        again = await link(port, TOKEN, "agent-1")
        assert isinstance(await bind(again, ""), Bound)
        for raw in (*links, third, bob, again):
            raw.close()
    finally:
        await edge.shutdown(drain=0.5)


async def test_control_sets_an_orgs_quota() -> None:
    bus = MemoryBus()
    stack = Stack(HeldSnapshot(control_state(limits=[OrgLimits(org="globex", tunnels=1)])), bus)
    await stack.start()
    try:
        raw = await link(stack.edge.config.agent_port, GLOBEX)
        assert isinstance(await bind(raw, ""), Bound)
        assert "may hold 1 tunnels" in refused_with(await bind(raw, ""), "quota")
        await stack.publish(OrgLimitsSet(seq=11, limits=OrgLimits(org="globex", tunnels=5)))
        await wait_for(lambda: stack.edge.ownership.seq == 11, what="the new limit")
        assert isinstance(await bind(raw, ""), Bound)
        raw.close()
    finally:
        await stack.stop()
        await bus.close()


async def test_an_orgs_visitor_streams_are_capped_over_all_its_agents(
    agents: AgentRunner, service: LocalService
) -> None:
    edge = await start_edge(
        edge_config(limits=Limits(max_streams_per_org=2, stream_idle_timeout=30.0))
    )
    try:
        for name in ("one", "two"):
            await agents.start(edge, http(service, name))
        await agents.start(edge, http(service, "bobs"), token=OTHER_TOKEN)
        port = edge.config.http_port
        async with (
            Visitor(port, "one.localhost") as first,
            Visitor(port, "two.localhost") as second,
        ):
            for visitor in (first, second):  # kept alive: each holds a stream of its agent
                assert (await visitor.request("GET", "/hello")).status == 200
            over = await get(port, "one.localhost", "/hello")
            assert over.status == 429
            assert "tunnels of this account already have 2 open connections" in over.text
            assert (await get(port, "bobs.localhost", "/hello")).status == 200
        await wait_for(lambda: sum(s.mux.stream_count for s in edge.sessions) <= 1)
        assert (await get(port, "two.localhost", "/hello")).status == 200
    finally:
        await edge.shutdown(drain=0.5)


async def test_an_agent_hostname_that_is_the_base_domain_reserves_only_itself() -> None:
    # As `burrowd dev` runs it: agents dial "localhost", tunnels are "<name>.localhost".
    edge = await start_edge(edge_config(agent_hostname="localhost"))
    try:
        raw = await link(edge.config.agent_port, TOKEN)
        assert isinstance(await bind(raw, "demo"), Bound)
        assert isinstance(await bind(raw, ""), Bound)
        refused_with(await bind(raw, "edge"), "reserved")
        raw.close()
    finally:
        await edge.shutdown(drain=0.5)


# -- 3, end to end: control on PostgreSQL, the bus on Redis, a real edge and agents --------


@pytest.fixture
async def platform(
    database_url: str, redis_url: str, redis_cleanup: str
) -> AsyncIterator[PlatformStack]:
    async for running in platform_stack(database_url, redis_url, redis_cleanup):
        yield running


async def test_an_operator_suspends_an_org_and_disables_a_user_at_the_edge(
    platform: PlatformStack, agents: AgentRunner, service: LocalService
) -> None:
    acme = await platform.signup("owner@acme-suspend.example")
    initech = await platform.signup("owner@initech-disable.example")
    acme_token = await platform.call("POST", "/v1/tokens", acme["key"], status=201, json={})
    initech_token = await platform.call("POST", "/v1/tokens", initech["key"], status=201, json={})
    for owner, name in ((acme, "acme-s"), (initech, "initech-d")):
        await platform.call("POST", "/v1/names", owner["key"], status=201, json={"name": name})
    acme_agent = await agents.start(
        platform.edge, http(service, "acme-s"), token=acme_token["token"]
    )
    initech_agent = await agents.start(
        platform.edge, http(service, "initech-d"), token=initech_token["token"]
    )
    await platform.sign_in_operator("ops@suspend.example")

    org_path = f"/v1/admin/orgs/{acme['org']['id']}"
    await platform.operator_call("PATCH", org_path, json={"suspended": True})
    assert "suspended by the operator" in await refused(task_of(agents, acme_agent), 10.0)
    again = await agents.start(
        platform.edge, http(service, "acme-s"), token=acme_token["token"], wait=False
    )
    assert "suspended" in await refused(task_of(agents, again), 10.0)
    await platform.operator_call("PATCH", org_path, json={"suspended": False})
    acme_org = acme["org"]["id"]
    await wait_for(
        lambda: acme_org not in platform.edge.ownership.suspended, 10.0, "the suspension to lift"
    )
    back = await agents.start(platform.edge, http(service, "acme-s"), token=acme_token["token"])
    assert back.tunnels[0].url

    # A user the operator disables loses their agents' links too, not only their logins.
    await platform.operator_call(
        "PATCH", f"/v1/admin/users/{initech['user']['id']}", json={"disabled": True}
    )
    assert "revoked" in await refused(task_of(agents, initech_agent), 10.0)
