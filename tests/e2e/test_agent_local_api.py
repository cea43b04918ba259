"""The agent's local API: /api/tunnels in ngrok's shape and /metrics, on real sockets."""

from __future__ import annotations

import asyncio
import json
import signal
import socket

from agent.local_api import LocalApi
from agent.meters import AgentMeters
from agent.tunnels import TunnelSpec
from tests.agent.processes import TREE_ENV
from tests.e2e.client import get, raw_exchange
from tests.e2e.conftest import TOKEN
from tests.e2e.test_cli_processes import Child


async def local_get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    reply = await raw_exchange(
        port, f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    )
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def started(agent) -> LocalApi:  # type: ignore[no-untyped-def]
    api = LocalApi(agent, AgentMeters())
    await api.start("127.0.0.1", 0, next_free=False)
    return api


async def test_api_tunnels_lists_each_public_url_as_ngrok_does(edge, agents, service):
    agent = await agents.start(
        edge, TunnelSpec("http", "127.0.0.1", service.port, name="myapi", label="web")
    )
    api = await started(agent)
    try:
        assert (await get(edge.config.http_port, "myapi.localhost", "/hello")).status == 200
        status, body = await local_get(api.address[1], "/api/tunnels")
        assert status == 200
        doc = json.loads(body)
        assert doc["uri"] == "/api/tunnels"
        [tunnel] = doc["tunnels"]
        assert tunnel["name"] == "web"
        assert tunnel["public_url"] == agent.tunnels[0].url
        assert tunnel["proto"] == "http"
        assert tunnel["config"]["addr"] == f"http://127.0.0.1:{service.port}"
        assert tunnel["metrics"]["conns"]["count"] == 1
        assert tunnel["metrics"]["http"]["count"] == 1
        status, one = await local_get(api.address[1], "/api/tunnels/web")
        assert status == 200 and json.loads(one)["public_url"] == tunnel["public_url"]
        assert (await local_get(api.address[1], "/api/tunnels/nope"))[0] == 404
    finally:
        await api.close()


async def test_metrics_count_what_went_through(edge, agents, service):
    agent = await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="m"))
    api = await started(agent)
    try:
        for _ in range(3):
            assert (await get(edge.config.http_port, "m.localhost", "/hello")).status == 200
        status, body = await local_get(api.address[1], "/metrics")
        text = body.decode()
        assert status == 200
        assert "burrow_agent_connected 1" in text
        assert f'burrow_agent_requests_total{{tunnel="http-{service.port}"' in text
        line = next(x for x in text.splitlines() if x.startswith("burrow_agent_requests_total{"))
        assert line.endswith(" 3")
    finally:
        await api.close()


async def test_bad_requests_get_an_error_and_the_server_goes_on(edge, agents, service):
    agent = await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="b"))
    api = await started(agent)
    port = api.address[1]
    try:
        assert (await local_get(port, "/api/tunnels", host="evil.example"))[0] == 403
        reply = await raw_exchange(port, b"NONSENSE\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400")
        huge = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n"
        reply = await raw_exchange(port, huge)
        assert reply.startswith(b"HTTP/1.1 431") or reply.startswith(b"HTTP/1.1 400")
        post = (
            f"POST /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        assert (await raw_exchange(port, post.encode())).startswith(b"HTTP/1.1 405")
        assert (await local_get(port, "/metrics"))[0] == 200
    finally:
        await api.close()


async def test_a_taken_port_moves_to_the_next_free_one(edge, agents, service):
    agent = await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="n"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        api = LocalApi(agent, AgentMeters())
        await api.start("127.0.0.1", port, next_free=True)
        try:
            assert port < api.address[1] <= port + 9
        finally:
            await api.close()


async def test_burrow_serves_its_local_api_and_says_where(tmp_path, edge, service):
    agent = await Child.start(
        tmp_path, "burrow", "-m", "agent.cli", "http", str(service.port), "--name", "la",
        "--inspect-addr", "127.0.0.1:0",
        "--server", f"127.0.0.1:{edge.config.agent_port}", "--plaintext", "--authtoken", TOKEN,
        env=TREE_ENV,
    )  # fmt: skip
    try:
        web = await agent.expect(r"^Web Interface  http://127\.0\.0\.1:(\d+)$")
        await agent.expect(r"^Forwarding  http://la\.localhost:")
        status, body = await local_get(int(web[1]), "/api/tunnels")
        assert status == 200
        assert json.loads(body)["tunnels"][0]["public_url"].startswith("http://la.localhost:")
        agent.proc.send_signal(signal.SIGTERM)
        assert await agent.finish(5) == 0, agent.output()
    finally:
        await agent.kill()


async def test_no_inspect_serves_nothing(tmp_path, edge, service):
    agent = await Child.start(
        tmp_path, "burrow", "-m", "agent.cli", "http", str(service.port), "--name", "ni",
        "--no-inspect",
        "--server", f"127.0.0.1:{edge.config.agent_port}", "--plaintext", "--authtoken", TOKEN,
        env=TREE_ENV,
    )  # fmt: skip
    try:
        await agent.expect(r"^Forwarding  http://ni\.localhost:")
        agent.proc.send_signal(signal.SIGTERM)
        assert await agent.finish(5) == 0
        assert not any(line.startswith("Web Interface") for line in agent.lines)
    finally:
        await agent.kill()
    await asyncio.sleep(0)
