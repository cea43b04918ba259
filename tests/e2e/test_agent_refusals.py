"""A tunnel the edge refuses: permanent refusals end the agent (or drop that one tunnel),
transient ones are retried with backoff."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.client import AgentRefused
from agent.tunnels import PERMANENT_BIND_CODES, TRANSIENT_BIND_CODES, TunnelSpec
from tests.agent.processes import TREE_ENV
from tests.e2e.conftest import OTHER_TOKEN, TOKEN, edge_config, start_edge, wait_for
from tests.e2e.test_cli_processes import START_TIMEOUT, Child


def test_every_code_the_edge_sends_is_classified() -> None:
    """The edge's BindError codes (edge/) against the agent's one list of them."""
    import re

    root = Path(__file__).resolve().parents[2] / "edge"
    sent = set()
    for path in root.glob("*.py"):
        sent |= set(re.findall(r'BindError\(\s*"([a-z_]+)"', path.read_text()))
    assert sent, "no BindError codes found in edge/"
    assert sent <= PERMANENT_BIND_CODES | TRANSIENT_BIND_CODES, sent
    assert not PERMANENT_BIND_CODES & TRANSIENT_BIND_CODES


async def test_a_name_taken_by_another_account_ends_the_agent(edge, agents, service):
    await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="demo"),
                       token=OTHER_TOKEN)  # fmt: skip
    alice = await agents.start(
        edge, TunnelSpec("http", "127.0.0.1", service.port, name="demo"), wait=False
    )
    task = agents.running[-1][1]
    with pytest.raises(AgentRefused) as caught:
        await asyncio.wait_for(task, 3)
    assert "demo" in str(caught.value) and "another account" in str(caught.value)
    assert alice.tunnels[0].dropped


async def test_one_refused_tunnel_is_dropped_and_the_others_go_on(edge, agents, service):
    await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="demo"),
                       token=OTHER_TOKEN)  # fmt: skip
    alice = await agents.start(
        edge,
        TunnelSpec("http", "127.0.0.1", service.port, name="demo"),
        TunnelSpec("http", "127.0.0.1", service.port, name="mine"),
        wait=False,
    )
    await wait_for(lambda: alice.tunnels[0].dropped and bool(alice.tunnels[1].url), what="bind")
    await asyncio.sleep(1.5)  # no retry of the refused one, and the agent stays up
    assert not agents.running[-1][1].done()
    assert alice.tunnels[1].url and not alice.tunnels[0].url
    assert alice.tunnels[0].bind_retries == 0


async def test_exhausted_ports_are_retried_until_one_frees_up(agents, service, unused_tcp_port):
    edge = await start_edge(edge_config(tcp_ports=(unused_tcp_port, unused_tcp_port)))
    edge.routes.lease_seconds = 0.0  # a released port is free for anyone at once
    try:
        bob = await agents.start(edge, TunnelSpec("tcp", "127.0.0.1", service.port),
                                 token=OTHER_TOKEN)  # fmt: skip
        alice = await agents.start(edge, TunnelSpec("tcp", "127.0.0.1", service.port), wait=False)
        await wait_for(lambda: bool(alice.tunnels[0].error), what="the first refusal")
        assert not alice.tunnels[0].dropped
        bob.stop()
        await wait_for(lambda: bool(alice.tunnels[0].url), timeout=8, what="the retried bind")
        assert alice.tunnels[0].url.endswith(f":{unused_tcp_port}")
    finally:
        await agents.stop_all()
        await edge.shutdown(drain=0.5)


async def test_burrow_exits_1_with_the_reason_when_its_tunnel_is_refused(
    tmp_path, edge, agents, service
):
    await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="demo"),
                       token=OTHER_TOKEN)  # fmt: skip
    agent = await Child.start(
        tmp_path, "burrow", "-m", "agent.cli", "http", str(service.port), "--name", "demo",
        "--server", f"127.0.0.1:{edge.config.agent_port}", "--plaintext", "--authtoken", TOKEN,
        env=TREE_ENV,
    )  # fmt: skip
    try:
        try:
            code = await agent.finish(START_TIMEOUT)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{agent.output()}") from None
        out = agent.output()
        assert code == 1, out
        assert "burrow: the edge refused tunnel" in out and "another account" in out, out
        assert "WARNING" not in out, out
    finally:
        await agent.kill()
