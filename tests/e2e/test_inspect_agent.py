"""The agent's own inspector on its local API: real requests through a real edge, agent and
local service, read back over HTTP in ngrok's shapes, replayed to the local service."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from agent.client import Agent
from agent.inspector import Inspector
from agent.local_api import LocalApi
from agent.meters import AgentMeters
from agent.tunnels import TunnelSpec
from edge.server import Edge
from tests.e2e.client import Visitor, get, raw_exchange
from tests.e2e.conftest import AgentRunner, wait_for
from tests.e2e.origin import PATTERN, LocalService

HOST = "look.localhost"
LIMIT = 256 * 1024


async def call(
    api: LocalApi, method: str, path: str, body: bytes = b"", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    port = api.address[1]
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    reply = await raw_exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body, timeout=30)
    head, _, payload = reply.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    found = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
    return int(status_line.split(" ")[1]), found, payload


async def listing(api: LocalApi) -> list[dict[str, Any]]:
    status, _, body = await call(api, "GET", "/api/requests/http")
    assert status == 200
    return list(json.loads(body)["requests"])


async def detail(api: LocalApi, capture_id: str) -> dict[str, Any]:
    status, _, body = await call(api, "GET", f"/api/requests/http/{capture_id}")
    assert status == 200, body
    return dict(json.loads(body))


async def inspected(
    edge: Edge, agents: AgentRunner, service: LocalService
) -> tuple[Agent, LocalApi]:
    agent = await agents.start(
        edge, TunnelSpec("http", "127.0.0.1", service.port, name="look", label="web")
    )
    agent.inspector = Inspector(keep=50, body_limit=LIMIT)
    api = LocalApi(agent, AgentMeters(), agent.inspector)
    await api.start("127.0.0.1", 0, next_free=False)
    return agent, api


async def test_requests_through_the_tunnel_show_up_with_headers_and_bodies(
    edge: Edge, agents: AgentRunner, service: LocalService
) -> None:
    _agent, api = await inspected(edge, agents, service)
    port = edge.config.http_port
    try:
        assert (await get(port, HOST, "/hello")).status == 200
        assert (await get(port, HOST, "/headers", headers=[("x-trace", "t1")])).status == 200
        assert (await get(port, HOST, "/bytes?n=300")).status == 200
        assert (await get(port, HOST, "/chunked?n=70000")).status == 200
        zipped = gzip.compress(b'{"zipped": true}')
        async with Visitor(port, HOST) as visitor:
            await visitor.send_head(
                "POST",
                "/echo",
                [("content-encoding", "gzip"), ("content-type", "application/json")],
                length=len(zipped),
            )
            await visitor.send_body(zipped)
            await visitor.end_body()
            assert (await visitor.read_response()).status == 200
        big = 10 * 1024 * 1024
        async with Visitor(port, HOST) as visitor:
            await visitor.send_head("POST", "/digest", length=big)
            for _ in range(0, big, 1024 * 1024):
                await visitor.send_body(b"z" * (1024 * 1024))
            await visitor.end_body()
            assert (await visitor.read_response()).status == 200

        async def all_answered() -> bool:
            rows = await listing(api)
            return len(rows) == 6 and all(r["response"] for r in rows)

        for _ in range(100):
            if await all_answered():
                break
            await wait_for(lambda: True)
        rows = await listing(api)
        assert [r["request"]["uri"] for r in rows] == [
            "/digest",
            "/echo",
            "/chunked?n=70000",
            "/bytes?n=300",
            "/headers",
            "/hello",
        ]
        assert all(r["tunnel_name"] == "web" for r in rows)
        by_uri = {r["request"]["uri"]: await detail(api, r["id"]) for r in rows}

        hello = by_uri["/hello"]
        assert hello["response"]["status_code"] == 200
        assert hello["response"]["body"]["text"] == "hello"
        assert base64.b64decode(hello["response"]["raw"]).endswith(b"\r\n\r\nhello")
        assert hello["request"]["headers"]["Host"] == [HOST]

        headers = by_uri["/headers"]
        assert headers["request"]["headers"]["X-Trace"] == ["t1"]
        assert headers["response"]["body"]["kind"] == "json"
        assert json.loads(headers["response"]["body"]["pretty"])["method"] == "GET"

        binary = by_uri["/bytes?n=300"]["response"]["body"]
        assert binary["kind"] == "binary" and binary["size"] == 300
        assert base64.b64decode(binary["base64"]) == PATTERN[:300]
        assert binary["hex"].startswith("00000000  ")

        chunked = by_uri["/chunked?n=70000"]["response"]
        assert chunked["headers"]["Transfer-Encoding"] == ["chunked"]
        assert chunked["body"]["size"] == 70000 and not chunked["body"]["truncated"]
        assert (
            chunked["body"]["base64"]
            and base64.b64decode(chunked["body"]["base64"])
            == (PATTERN * (70000 // len(PATTERN) + 1))[:70000]
        )

        echoed = by_uri["/echo"]["request"]["body"]
        assert echoed["decoded_from"] == "gzip" and echoed["kind"] == "json"
        assert json.loads(echoed["text"]) == {"zipped": True}

        digest = by_uri["/digest"]["request"]["body"]
        assert digest["size"] == big and digest["truncated"] is True
        assert digest["captured"] == LIMIT
        assert json.loads(by_uri["/digest"]["response"]["body"]["text"])["size"] == big
    finally:
        await api.close()


async def test_replay_as_captured_and_edited_reaches_the_local_service_and_clear_empties(
    edge: Edge, agents: AgentRunner, service: LocalService
) -> None:
    agent, api = await inspected(edge, agents, service)
    try:
        resp = await get(edge.config.http_port, HOST, "/headers", headers=[("x-trace", "t2")])
        assert resp.status == 200
        await wait_for(lambda: bool(agent.inspector and agent.inspector.captures), what="capture")
        original = (await listing(api))[0]["id"]

        status, headers, _ = await call(
            api,
            "POST",
            "/api/requests/http",
            json.dumps({"id": original}).encode(),
            content_type="application/json",
        )
        assert status == 204
        replayed = await detail(api, headers["location"].rsplit("/", 1)[1])
        assert replayed["replay_of"] == original
        seen = dict(json.loads(replayed["response"]["body"]["text"])["headers"])
        assert seen["x-trace"] == "t2" and seen["x-burrow-replay"] == original

        edits = {
            "id": original,
            "method": "POST",
            "path": "/echo",
            "body": "edited",
            "headers": [["content-type", "text/plain"]],
        }
        status, headers, _ = await call(
            api,
            "POST",
            "/api/requests/http",
            json.dumps(edits).encode(),
            content_type="application/json",
        )
        assert status == 204
        edited = await detail(api, headers["location"].rsplit("/", 1)[1])
        assert edited["request"]["method"] == "POST"
        assert edited["response"]["body"]["text"] == "edited"

        # Another site's page cannot make the agent replay or clear.
        status, _, _ = await call(api, "DELETE", "/api/requests/http", origin="http://evil.example")
        assert status == 403
        assert len(await listing(api)) == 3
        status, _, _body = await call(api, "POST", "/api/requests/http", b'{"id": "nope"}')
        assert status == 404
        status, _, _ = await call(api, "DELETE", "/api/requests/http")
        assert status == 204
        assert await listing(api) == []
    finally:
        await api.close()
