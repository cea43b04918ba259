"""HTTP/1.1 through a tunnel: methods, bodies, keep-alive, forwarded headers, error pages."""

from __future__ import annotations

import hashlib
import json
import re

from tests.e2e.client import Visitor, get, raw_exchange
from tests.e2e.origin import pattern_bytes


async def test_get_through_tunnel(edge, http_tunnel):
    agent = await http_tunnel("app")
    assert agent.tunnels[0].url == f"http://app.localhost:{edge.config.http_port}"
    r = await get(edge.config.http_port, "app.localhost", "/hello")
    assert (r.status, r.body) == (200, b"hello")


async def test_random_name_when_none_asked(edge, http_tunnel):
    agent = await http_tunnel("")
    host = agent.tunnels[0].url.split("//", 1)[1].split(":", 1)[0]
    assert host.endswith(".localhost") and len(host.split(".")[0]) == 8
    r = await get(edge.config.http_port, host, "/hello")
    assert r.body == b"hello"


async def test_post_put_small_and_chunked_bodies(edge, http_tunnel):
    await http_tunnel("app")
    body = b"burrow" * 1000
    want = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
    async with Visitor(edge.config.http_port, "app.localhost") as v:
        for method in ("POST", "PUT"):
            r = await v.request(method, "/digest", body)
            assert r.status == 200 and json.loads(r.body) == want
            r = await v.request(method, "/digest", body, chunked=True)
            assert json.loads(r.body) == want
        r = await v.request("POST", "/digest", b"")
        assert json.loads(r.body)["size"] == 0


async def test_chunked_response_and_head(edge, http_tunnel):
    await http_tunnel("app")
    async with Visitor(edge.config.http_port, "app.localhost") as v:
        r = await v.request("GET", "/chunked?n=200000")
        assert r.body == pattern_bytes(200000)
        r = await v.request("HEAD", "/bytes?n=5000")
        assert r.status == 200 and r.body == b"" and r.headers["content-length"] == "5000"


async def test_keep_alive_reuses_one_local_connection(edge, http_tunnel, service):
    await http_tunnel("app")
    async with Visitor(edge.config.http_port, "app.localhost") as v:
        ids = {(await v.request("GET", "/conn")).text for _ in range(5)}
    assert len(ids) == 1, "five requests on one visitor connection used several local ones"
    assert service.connections == 1


async def test_pipelined_requests_answered_in_order(edge, http_tunnel):
    await http_tunnel("app")
    heads = b"".join(
        f"GET /bytes?n={n} HTTP/1.1\r\nhost: app.localhost\r\n{extra}\r\n".encode()
        for n, extra in ((10, ""), (20, ""), (30, "connection: close\r\n"))
    )
    answer = await raw_exchange(edge.config.http_port, heads)
    lengths = re.findall(rb"content-length: (\d+)", answer)
    assert answer.count(b"HTTP/1.1 200 ") == 3
    assert lengths == [b"10", b"20", b"30"]


async def test_forwarded_headers(edge, http_tunnel):
    await http_tunnel("app")
    r = await get(
        edge.config.http_port,
        "app.localhost",
        "/headers",
        headers=[("x-forwarded-for", "203.0.113.9")],
    )
    headers = dict(json.loads(r.body)["headers"])
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "app.localhost"
    assert headers["forwarded"] == "for=127.0.0.1;host=app.localhost;proto=http"


async def test_forwarded_headers_follow_the_visitors_own(edge, http_tunnel):
    """A request with no forwarded fields of its own goes on with its lines as sent and the
    edge's after them, each once, whichever way the edge builds the head."""
    await http_tunnel("app")
    r = await get(
        edge.config.http_port,
        "app.localhost",
        "/headers",
        headers=[("x-custom", "a  b"), ("accept", "*/*")],
    )
    pairs = json.loads(r.body)["headers"]
    names = [name for name, _ in pairs]
    assert names[-5:] == [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "x-request-id",
    ]
    assert sorted(names) == sorted(set(names))
    headers = dict(pairs)
    assert headers["host"] == "app.localhost"
    assert headers["x-custom"] == "a  b"
    assert headers["accept"] == "*/*"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["forwarded"] == "for=127.0.0.1;host=app.localhost;proto=http"
    assert headers["x-request-id"]


async def test_expect_100_continue(edge, http_tunnel):
    await http_tunnel("app")
    async with Visitor(edge.config.http_port, "app.localhost") as v:
        await v.send_head("POST", "/digest", [("expect", "100-continue")], length=5)
        assert v.reader is not None
        interim = await v.reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 ")
        v.conn.receive_data(interim)
        await v.send_body(b"abcde")
        await v.end_body()
        r = await v.read_response()
    assert json.loads(r.body)["size"] == 5


async def test_unknown_host_is_404_page(edge, http_tunnel):
    await http_tunnel("app")
    r = await get(edge.config.http_port, "nope.localhost", "/")
    assert r.status == 404
    assert "No tunnel is serving nope.localhost" in r.text
    assert r.headers["content-type"].startswith("text/html")


async def test_each_request_is_routed_by_its_own_host_header(edge, http_tunnel):
    """A keep-alive connection may name another host on any request: the edge remembers the
    last Host it normalised, and must not route by it when the next one differs."""
    app = await http_tunnel("app")
    other = await http_tunnel("other")
    async with Visitor(edge.config.http_port, "app.localhost") as v:
        for host in ("app.localhost", "other.localhost", "App.Localhost.:8080", "app.localhost"):
            v.host = host
            r = await v.request("GET", "/hello")
            assert (host, r.status, r.body) == (host, 200, b"hello")
    assert (app.tunnels[0].stats.requests, other.tunnels[0].stats.requests) == (3, 1)
