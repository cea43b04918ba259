"""How an agent reaches the edge: TLS to the agent port, TLS + ALPN on the HTTPS port, and
a WebSocket on the HTTPS port for networks that only pass HTTPS; never a silent downgrade."""

from __future__ import annotations

import socket

import pytest

from agent.client import link_tls_context
from agent.tunnels import TunnelSpec
from tests.e2e.client import get, raw_exchange
from tests.e2e.conftest import edge_config, start_edge, wait_for


@pytest.fixture
async def tls_edge(tmp_path):
    edge = await start_edge(
        edge_config(
            https_port=0,
            agent_tls=True,
            agent_hostname="localhost",
            local_ca_dir=str(tmp_path / "ca"),
        )
    )
    yield edge
    await edge.shutdown(drain=0.2)


@pytest.fixture
def ca_file(tls_edge, tmp_path) -> str:
    return str(tmp_path / "ca" / "ca.pem")


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _link_kinds(edge) -> list[str]:
    return [
        s.transport.get_extra_info("link_transport") or "direct"
        for s in edge.sessions
        if s.transport is not None
    ]


async def test_agent_over_tls_to_the_agent_port(tls_edge, agents, service, ca_file):
    spec = TunnelSpec("http", "127.0.0.1", service.port, name="direct")
    agent = await agents.start_at(
        ("localhost", tls_edge.config.agent_port), tls_edge, spec, tls=link_tls_context(ca_file)
    )
    assert agent.tunnels[0].url.startswith("https://direct.localhost:")
    assert (await get(tls_edge.config.http_port, "direct.localhost", "/hello")).body == b"hello"
    assert _link_kinds(tls_edge) == ["direct"]


async def test_agent_over_websocket_on_the_https_port(tls_edge, agents, service, ca_file):
    spec = TunnelSpec("http", "127.0.0.1", service.port, name="ws")
    await agents.start_at(
        ("localhost", tls_edge.config.agent_port),
        tls_edge,
        spec,
        tls=link_tls_context(ca_file),
        transport="wss",
        wss_server=("localhost", tls_edge.config.https_port),
        wss_tls=link_tls_context(ca_file, websocket=True),
    )
    assert _link_kinds(tls_edge) == ["wss"]
    # Bulk data both ways over the WebSocket-carried link.
    r = await get(tls_edge.config.http_port, "ws.localhost", "/bytes?n=3000000")
    assert len(r.body) == 3_000_000


async def test_auto_falls_back_to_websocket_when_the_agent_port_is_blocked(
    tls_edge, agents, service, ca_file
):
    spec = TunnelSpec("http", "127.0.0.1", service.port, name="auto")
    await agents.start_at(
        ("localhost", _dead_port()),  # a firewall that drops the agent port
        tls_edge,
        spec,
        tls=link_tls_context(ca_file),
        transport="auto",
        wss_server=("localhost", tls_edge.config.https_port),
        wss_tls=link_tls_context(ca_file, websocket=True),
    )
    assert _link_kinds(tls_edge) == ["wss"]
    assert (await get(tls_edge.config.http_port, "auto.localhost", "/hello")).body == b"hello"


async def test_untrusted_edge_is_never_used_and_never_downgraded(tls_edge, agents, service):
    spec = TunnelSpec("http", "127.0.0.1", service.port, name="nope")
    agent = await agents.start_at(
        ("localhost", tls_edge.config.agent_port),
        tls_edge,
        spec,
        wait=False,
        tls=link_tls_context(None),  # system CAs only: the dev CA is not among them
        transport="auto",
        wss_server=("localhost", tls_edge.config.https_port),
        wss_tls=link_tls_context(None, websocket=True),
    )
    await wait_for(lambda: "does not trust" in agent.last_error, what="certificate refusal")
    assert not tls_edge.sessions
    assert not agent.tunnels[0].url


async def test_link_path_on_plain_http_is_not_an_agent_link(tls_edge):
    answer = await raw_exchange(
        tls_edge.config.http_port,
        b"GET /_burrow/link HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\n"
        b"upgrade: websocket\r\nsec-websocket-version: 13\r\n"
        b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    assert not answer.startswith(b"HTTP/1.1 101")
    assert not tls_edge.sessions
