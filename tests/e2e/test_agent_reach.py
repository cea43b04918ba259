"""What the agent says when it cannot reach the edge."""

from __future__ import annotations

import asyncio
import socket

from agent.client import Agent, link_tls_context
from agent.tunnels import TunnelSpec
from tests.e2e.conftest import wait_for


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unreachable_edge_names_the_agent_port_and_the_websocket_fallback():
    direct, wss = closed_port(), closed_port()
    agent = Agent(
        ("127.0.0.1", direct),
        "t",
        [TunnelSpec("http", "localhost", 3000)],
        tls=link_tls_context(),
        transport="auto",
        wss_server=("127.0.0.1", wss),
        wss_tls=link_tls_context(websocket=True),
    )
    task = asyncio.get_running_loop().create_task(agent.run())
    try:
        await wait_for(lambda: "wss://" in agent.last_error, what="both attempts to fail")
        assert f"127.0.0.1:{direct}" in agent.last_error
        assert f"wss://127.0.0.1:{wss}" in agent.last_error
    finally:
        agent.stop()
        await asyncio.wait_for(task, 5)
