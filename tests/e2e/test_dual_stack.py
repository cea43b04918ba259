"""One edge serving IPv4 and IPv6 visitors on every listener: HTTP, HTTPS, the agent port and
TCP tunnel ports, each on 127.0.0.1 and ::1 at one port. And the agent port's TLS handshake
has a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import trustme

from agent.client import link_tls_context
from agent.tunnels import TunnelSpec
from edge.config import Limits
from edge.listen import can_bind_ipv6, expand_hosts
from edge.server import Edge
from tests.e2e.client import Visitor
from tests.e2e.conftest import AgentRunner, edge_config, start_edge
from tests.e2e.test_tcp_tunnels import EchoServer
from tests.e2e.test_tls import _closed_after
from tests.e2e.tlshelp import BASE, HttpsVisitor, client_context, write_leaf

pytestmark = pytest.mark.skipif(not can_bind_ipv6("::1"), reason="no IPv6 loopback (::1) here")

BOTH = ("127.0.0.1", "::1")
APP = f"app.{BASE}"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("dual-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    # ::1 too: the agent dials the edge by that address and checks it against the certificate.
    leaf = ca.issue_cert(f"*.{BASE}", BASE, "localhost", "::1")
    return write_leaf(leaf, tmp_path_factory.mktemp("dual-cert"), "edge")


@pytest.fixture
async def dual_edge(cert_files: tuple[str, str]) -> AsyncIterator[Edge]:
    edge = await start_edge(
        edge_config(
            base_domain=BASE,
            http_host=BOTH,
            https_host=BOTH,
            https_port=0,
            agent_host=BOTH,
            agent_tls=True,
            agent_hostname="localhost",
            tcp_host=BOTH,
            tls_files=[cert_files],
            limits=Limits(handshake_timeout=0.5),
        )
    )
    yield edge
    await edge.shutdown(drain=0.2)


async def _echo_over(address: str, port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 5)
    try:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_every_listener_serves_ipv4_and_ipv6_on_one_port(
    dual_edge: Edge, agents: AgentRunner, service, ca: trustme.CA, ca_file: str
) -> None:
    echo = await EchoServer().start()
    try:
        # The agent dials the edge over IPv6, with TLS verified against the address.
        agent = await agents.start_at(
            ("::1", dual_edge.config.agent_port),
            dual_edge,
            TunnelSpec("http", "127.0.0.1", service.port, name="app"),
            TunnelSpec("tcp", "127.0.0.1", echo.port),
            tls=link_tls_context(ca_file),
        )
        assert agent.connected
        tcp_port = agent.tunnels[1].claimed_port
        assert tcp_port
        for address in BOTH:
            async with Visitor(dual_edge.config.http_port, APP, address=address) as v:
                r = await v.request("GET", "/hello")
            assert (r.status, r.body) == (200, b"hello"), f"HTTP over {address}"
            async with HttpsVisitor(
                dual_edge.config.https_port, APP, client_context(ca), address=address
            ) as v:
                r = await v.request("GET", "/hello")
            assert (r.status, r.body) == (200, b"hello"), f"HTTPS over {address}"
            payload = f"bytes over {address}".encode()
            assert await _echo_over(address, tcp_port, payload) == payload
    finally:
        await echo.stop()


async def test_a_silent_client_on_the_tls_agent_port_is_closed_within_the_handshake_bound(
    dual_edge: Edge,
) -> None:
    """Before a TLS handshake asyncio waits 60 s by default; a port scanner or a stalled
    client must not hold a connection that long."""
    for address in BOTH:
        reader, writer = await asyncio.open_connection(address, dual_edge.config.agent_port)
        try:
            waited = await _closed_after(reader, 5)
        finally:
            writer.close()
        assert waited < 2.0, f"a silent client over {address} was held {waited:.1f} s"


def test_the_any_address_is_both_families_where_the_host_has_ipv6() -> None:
    expected = ["0.0.0.0", "::"] if can_bind_ipv6() else ["0.0.0.0"]
    assert expand_hosts("*") == expected
    assert expand_hosts(("*", "0.0.0.0")) == expected  # no address bound twice
    assert expand_hosts("0.0.0.0") == ["0.0.0.0"]  # an explicit family stays that family
