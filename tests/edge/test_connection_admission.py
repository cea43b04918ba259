"""TCP tunnels admit their visitors through the one connection stage: connect filters (the
visitor policy's address rules first), then a tunnel stream; a refusal just ends the
connection, as a raw visitor has no page to read."""

from __future__ import annotations

import asyncio

from edge.pipeline import AddressFilter, ConnectFilter
from edge.routing.table import Tunnel
from edge.server import Edge
from edge.visitors.tcp_visitor import TcpVisitor
from edge.visitors.visitor_policy import VisitorPolicy
from proto.messages import Bind, Bound
from tests.edge.harness import FakeAgent, FakeTransport


async def tcp_agent(edge: Edge) -> tuple[FakeAgent, int]:
    agent = FakeAgent(edge)
    agent.hello_and_bind("app")
    agent.mux.send_message(Bind(request_id=2, protocol="tcp"))
    agent.pump()
    for _ in range(200):  # the edge opens the port's listener first: up to 2 s
        await asyncio.sleep(0.01)
        await agent.flow()
        ports = [m.port for m in agent.messages if isinstance(m, Bound) and m.port]
        if ports:
            return agent, ports[0]
    raise AssertionError(f"no TCP port bound: {agent.messages}")


def connect(edge: Edge, port: int, peer: str) -> FakeTransport:
    visitor = TcpVisitor(edge.context)
    transport = FakeTransport((peer, 41000), ("0.0.0.0", port))
    visitor.connection_made(transport)
    return transport


async def test_a_connection_with_no_filters_gets_a_stream(edge: Edge) -> None:
    agent, port = await tcp_agent(edge)
    transport = connect(edge, port, "198.51.100.9")
    await agent.flow()
    assert not transport.closed
    assert len(agent.requests) == 1


async def test_the_address_rules_refuse_before_any_stream_opens(edge: Edge) -> None:
    agent, port = await tcp_agent(edge)
    agent.session.connect_filters = (AddressFilter(VisitorPolicy(ip_allow=["10.0.0.0/8"])),)
    refused = connect(edge, port, "198.51.100.9")
    allowed = connect(edge, port, "10.1.2.3")
    await agent.flow()
    assert refused.closed and not allowed.closed
    assert len(agent.requests) == 1
    assert edge.metrics.refusals["ip_denied"] == 1


async def test_a_connect_filter_of_its_own_refuses_with_its_reason(edge: Edge) -> None:
    class OnePerAddress(ConnectFilter):
        def __init__(self) -> None:
            self.seen: set[str] = set()

        def on_connect(self, tunnel: Tunnel, address: str) -> str | None:
            if address in self.seen:
                return "one_per_address"
            self.seen.add(address)
            return None

    agent, port = await tcp_agent(edge)
    agent.session.connect_filters = (OnePerAddress(),)
    first = connect(edge, port, "198.51.100.9")
    second = connect(edge, port, "198.51.100.9")
    await agent.flow()
    assert not first.closed and second.closed
    assert edge.metrics.refusals["one_per_address"] == 1
