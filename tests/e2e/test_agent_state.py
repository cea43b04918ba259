"""A random name (or port) survives an agent restart while the edge still holds it for the
account, and falls back to a fresh one, saying so, when it does not."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from agent.state import TunnelMemory
from agent.tunnels import TunnelSpec
from tests.agent.processes import TREE_ENV
from tests.e2e.conftest import OTHER_TOKEN, TOKEN, wait_for
from tests.e2e.test_cli_processes import Child


def memory(tmp_path: Path, edge) -> TunnelMemory:  # type: ignore[no-untyped-def]
    return TunnelMemory(tmp_path / "tunnels.json", f"127.0.0.1:{edge.config.agent_port}", TOKEN)


async def test_a_restarted_agent_gets_its_random_name_back(tmp_path, edge, agents, service):
    spec = TunnelSpec("http", "127.0.0.1", service.port)
    first = await agents.start(edge, spec, memory=memory(tmp_path, edge))
    url = first.tunnels[0].url
    first.stop()
    await wait_for(lambda: not edge.routes.hosts, what="the name to be released")

    again = await agents.start(edge, spec, memory=memory(tmp_path, edge))
    assert again.tunnels[0].url == url
    assert not again.notices


async def test_a_name_someone_else_took_falls_back_to_a_new_one_with_one_line(
    tmp_path, edge, agents, service
):
    await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="gone"),
                       token=OTHER_TOKEN)  # fmt: skip
    spec = TunnelSpec("http", "127.0.0.1", service.port)
    mine = memory(tmp_path, edge)
    mine.remember(spec, "gone.localhost", 0)

    agent = await agents.start(edge, spec, memory=memory(tmp_path, edge))
    assert agent.tunnels[0].url and "gone." not in agent.tunnels[0].url
    [notice] = agent.notices
    assert "did not give back gone.localhost" in notice and "new random" in notice
    saved = json.loads((tmp_path / "tunnels.json").read_text())
    assert [e["name"] for e in saved["tunnels"].values()] == [
        agent.tunnels[0].url.split("//")[1].split(":")[0]
    ]


async def test_a_port_the_edge_will_not_give_falls_back_to_a_new_one(
    tmp_path, edge, agents, service
):
    """This edge assigns TCP ports itself (bad_port for any asked-for port)."""
    spec = TunnelSpec("tcp", "127.0.0.1", service.port)
    memory(tmp_path, edge).remember(spec, "", 1)
    agent = await agents.start(edge, spec, memory=memory(tmp_path, edge))
    assert agent.tunnels[0].url.startswith("tcp://")
    assert not agent.tunnels[0].dropped
    [notice] = agent.notices
    assert "did not give back 1 " in notice


async def test_burrow_http_gets_the_same_url_after_a_restart(tmp_path, edge, service):
    argv = [
        "-m", "agent.cli", "http", str(service.port),
        "--server", f"127.0.0.1:{edge.config.agent_port}", "--plaintext", "--authtoken", TOKEN,
    ]  # fmt: skip
    urls = []
    for run in range(2):
        agent = await Child.start(tmp_path, f"burrow-{run}", *argv, env=TREE_ENV)
        try:
            forwarding = await agent.expect(r"^Forwarding  (\S+) -> ")
            urls.append(forwarding[1])
            agent.proc.send_signal(signal.SIGTERM)
            assert await agent.finish(5) == 0, agent.output()
            assert not any("did not give back" in line for line in agent.lines), agent.output()
        finally:
            await agent.kill()
        await wait_for(lambda: not edge.routes.hosts, what="the name to be released")
    assert urls[0] == urls[1]
