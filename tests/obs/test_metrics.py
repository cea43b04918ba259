"""/metrics of a live edge after real traffic through real tunnels: what an operator's
Prometheus would read."""

from __future__ import annotations

import asyncio
import os
import socket

import prometheus_client.metrics
import pytest

from agent.tunnels import TunnelSpec
from edge.config import Limits
from edge.link.agent_session import AgentInstances
from proto.messages import Bound, Welcome
from tests.e2e.client import Visitor, get
from tests.e2e.conftest import TOKEN, edge_config, start_edge, wait_for
from tests.e2e.rawlink import RawLink
from tests.e2e.test_http2 import H2Client
from tests.obs.admin_client import admin_get, scrape_edge

REQUESTS = "burrow_edge_requests_total"
DURATION = "burrow_edge_request_duration_seconds"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_requests_are_counted_by_protocol_and_status_class(edge, http_tunnel):
    await http_tunnel("app")
    port = edge.config.http_port
    before = await scrape_edge(edge)
    assert before.value(REQUESTS, protocol="http1", status_class="2xx") == 0
    async with Visitor(port, "app.localhost") as v:
        for _ in range(3):
            assert (await v.request("GET", "/hello")).status == 200
        assert (await v.request("GET", "/no-such-page")).status == 404  # the service's 404
        during = await scrape_edge(edge)
        # The keep-alive visitor holds its connection and its tunnel stream.
        assert during.value("burrow_edge_visitor_connections") == 1
        assert during.value("burrow_edge_streams") == 1
    assert (await get(port, "nobody.localhost", "/")).status == 404  # the edge's own 404

    m = await scrape_edge(edge)
    assert m.value(REQUESTS, protocol="http1", status_class="2xx") == 3
    assert m.value(REQUESTS, protocol="http1", status_class="4xx") == 2
    assert m.value(REQUESTS, protocol="http1", status_class="5xx") == 0
    assert m.value(REQUESTS, protocol="h2", status_class="2xx") == 0
    assert m.value("burrow_edge_refusals_total", reason="unknown_host") == 1
    # Responses relayed from the service are timed; the edge's own 404 page is not.
    count = m.value(f"{DURATION}_count", protocol="http1")
    assert count == 4
    assert m.value(f"{DURATION}_bucket", protocol="http1", le="+Inf") == count
    assert 0 < m.value(f"{DURATION}_sum", protocol="http1") < 4 * 5.0
    buckets = sorted(
        (float(dict(key)["le"]), v)
        for key, v in m.series(f"{DURATION}_bucket").items()
        if dict(key)["protocol"] == "http1"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert m.value("burrow_edge_agents") == 1
    assert m.value("burrow_edge_tunnels", protocol="http") == 1
    assert m.value("burrow_edge_tunnels", protocol="tcp") == 0
    # Bytes: the requests went toward the agent, at least the response bodies came back.
    assert m.value("burrow_edge_bytes_total", direction="in") > 4 * len(b"GET /hello HTTP/1.1")
    assert m.value("burrow_edge_bytes_total", direction="out") > 3 * len(b"hello")
    await wait_for(lambda: not edge.visitors, what="visitors gone")
    after = await scrape_edge(edge)
    assert after.value("burrow_edge_visitor_connections") == 0
    assert after.value("burrow_edge_streams") == 0


async def test_http2_requests_are_labelled_h2(edge, http_tunnel):
    await http_tunnel("app")
    async with H2Client(edge.config.http_port, "app.localhost") as client:
        assert (await client.request("GET", "/hello")).status == 200
        assert (await client.request("GET", "/missing")).status == 404
    m = await scrape_edge(edge)
    assert m.value(REQUESTS, protocol="h2", status_class="2xx") == 1
    assert m.value(REQUESTS, protocol="h2", status_class="4xx") == 1
    assert m.value(f"{DURATION}_count", protocol="h2") == 2
    assert m.value(REQUESTS, protocol="http1", status_class="2xx") == 0


async def test_refusals_are_counted_by_reason(service, agents):
    edge = await start_edge(
        edge_config(admin_port=0, limits=Limits(response_timeout=0.3, max_streams_per_agent=2))
    )
    try:
        port = edge.config.http_port
        await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="app"))
        await agents.start(edge, TunnelSpec("http", "127.0.0.1", _free_port(), name="down"))
        for _ in range(2):
            assert (await get(port, "nobody.localhost", "/")).status == 404
        assert (await get(port, "down.localhost", "/")).status == 502
        assert (await get(port, "app.localhost", "/hang")).status == 504
        async with Visitor(port, "app.localhost") as a, Visitor(port, "app.localhost") as b:
            hung = [asyncio.ensure_future(v.request("GET", "/hang")) for v in (a, b)]
            await wait_for(lambda: sum(s.mux.stream_count for s in edge.sessions) == 2)
            assert (await get(port, "app.localhost", "/hello")).status == 429
            for task in hung:
                task.cancel()
        m = await scrape_edge(edge)
        assert m.value("burrow_edge_refusals_total", reason="unknown_host") == 2
        assert m.value("burrow_edge_refusals_total", reason="local_refused") == 1
        assert m.value("burrow_edge_refusals_total", reason="response_timeout") == 1
        assert m.value("burrow_edge_refusals_total", reason="stream_limit") == 1
        assert m.value("burrow_edge_refusals_total", reason="wrong_mode") == 0
        assert m.value(REQUESTS, protocol="http1", status_class="5xx") == 2  # 502, 504
        assert m.value(REQUESTS, protocol="http1", status_class="4xx") == 3  # 404 x2, 429
        # The counts tests and tools read in code agree with the exposition.
        assert edge.metrics.refusals["unknown_host"] == 2
        assert edge.metrics.refusals["h2_abuse"] == 0
        assert edge.metrics.responses == {"4xx": 3, "5xx": 2}
    finally:
        await edge.shutdown(drain=0.2)


async def test_agent_and_tunnel_gauges_follow_agents(edge, agents, service):
    agent = await agents.start(
        edge,
        TunnelSpec("http", "127.0.0.1", service.port, name="web"),
        TunnelSpec("tcp", "127.0.0.1", service.port),
    )
    m = await scrape_edge(edge)
    assert m.value("burrow_edge_agents") == 1
    assert m.value("burrow_edge_tunnels", protocol="http") == 1
    assert m.value("burrow_edge_tunnels", protocol="tcp") == 1
    agent.stop()
    await wait_for(lambda: not edge.sessions, what="agent gone")
    m = await scrape_edge(edge)
    assert m.value("burrow_edge_agents") == 0
    assert m.value("burrow_edge_tunnels", protocol="http") == 0
    assert m.value("burrow_edge_tunnels", protocol="tcp") == 0
    # Bytes of closed links stay counted: the counter never goes back.
    assert m.value("burrow_edge_bytes_total", direction="in") > 0


async def test_reconnects_are_counted_whether_the_old_link_is_open_or_gone(edge):
    instance = os.urandom(6).hex()
    first = await RawLink(edge.config.agent_port).connect()
    assert isinstance(await first.hello(TOKEN, instance), Welcome)
    assert isinstance(await first.bind("app"), Bound)
    m = await scrape_edge(edge)
    assert m.value("burrow_edge_agent_reconnects_total") == 0

    # Back on a new link while the edge still holds the old one (a takeover)...
    second = await RawLink(edge.config.agent_port).connect()
    assert isinstance(await second.hello(TOKEN, instance), Welcome)
    assert isinstance(await second.bind("app"), Bound)
    assert await first.closed_by_edge(timeout=2)
    # ...and after the link was closed and the edge forgot it.
    second.close()
    await wait_for(lambda: not edge.sessions, what="link closed")
    third = await RawLink(edge.config.agent_port).connect()
    assert isinstance(await third.hello(TOKEN, instance), Welcome)
    # Another agent instance is no reconnect.
    other = await RawLink(edge.config.agent_port).connect()
    assert isinstance(await other.hello(TOKEN, os.urandom(6).hex()), Welcome)

    m = await scrape_edge(edge)
    assert m.value("burrow_edge_agent_reconnects_total") == 2
    assert m.value("burrow_edge_agents") == 2
    third.close()
    other.close()


def test_agent_instances_forget_old_departures():
    instances = AgentInstances(memory=10.0, limit=2)
    assert not instances.connected("a")
    instances.disconnected("a", now=100.0)
    assert instances.connected("a")  # back within memory
    instances.disconnected("a", now=100.0)
    instances.connected("b")
    instances.disconnected("b", now=111.0)  # "a" left 11 s before: forgotten
    assert not instances.connected("a")
    for name in "cde":
        instances.connected(name)
        instances.disconnected(name, now=112.0)
    assert not instances.connected("b")  # past the limit: the oldest went first
    assert instances.connected("e")


async def test_each_edge_has_its_own_registry(service, agents):
    one = await start_edge(edge_config(admin_port=0))
    two = await start_edge(edge_config(admin_port=0))
    try:
        await agents.start(one, TunnelSpec("http", "127.0.0.1", service.port, name="app"))
        assert (await get(one.config.http_port, "app.localhost", "/hello")).status == 200
        m1, m2 = await scrape_edge(one), await scrape_edge(two)
        assert m1.value(REQUESTS, protocol="http1", status_class="2xx") == 1
        assert m2.value(REQUESTS, protocol="http1", status_class="2xx") == 0
        assert (m1.value("burrow_edge_agents"), m2.value("burrow_edge_agents")) == (1, 0)
    finally:
        await one.shutdown(drain=0.2)
        await two.shutdown(drain=0.2)


async def test_requests_resolve_no_labels_on_the_hot_path(edge, http_tunnel, monkeypatch):
    await http_tunnel("app")
    calls = []
    original = prometheus_client.metrics.MetricWrapperBase.labels

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args or kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(prometheus_client.metrics.MetricWrapperBase, "labels", counting)
    async with Visitor(edge.config.http_port, "app.localhost") as v:
        for _ in range(5):
            assert (await v.request("GET", "/hello")).status == 200
    async with H2Client(edge.config.http_port, "app.localhost") as client:
        assert (await client.request("GET", "/hello")).status == 200
    assert calls == []


async def test_openmetrics_when_the_scraper_asks_for_it(edge):
    r = await admin_get(
        edge.config.admin_port, "/metrics", [("Accept", "application/openmetrics-text")]
    )
    assert r.status == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.body.endswith(b"# EOF\n")
    assert b"burrow_edge_requests_total" in r.body


def test_settled_counts_read_as_if_each_had_been_observed():
    """The edge counts requests in plain ints and settles them into prometheus_client on
    reading: what a scrape shows must be what inc() and observe() per request would show,
    buckets at and beyond their bounds included."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from edge.admin.metrics import DURATION_BUCKETS, EdgeMetrics

    seconds = [0.0, 0.0005, 0.001, 0.0010001, 0.3, 0.3, 59.99, 60.0, 60.5, 1e6]
    statuses = [200, 204, 302, 404, 404, 500, 599, 102, 200, 200]

    edge_metrics = EdgeMetrics()
    reference = CollectorRegistry()
    requests = Counter("r", "r", ["protocol", "status_class"], registry=reference)
    duration = Histogram("d", "d", ["protocol"], buckets=DURATION_BUCKETS, registry=reference)
    for status, s in zip(statuses, seconds, strict=True):
        edge_metrics.http1.status(status)
        edge_metrics.http1.request_done(s)
        requests.labels("http1", f"{status // 100}xx").inc()
        duration.labels("http1").observe(s)
    # Counted twice, settled between: nothing is lost or settled twice.
    edge_metrics.settle()
    edge_metrics.http1.status(200)
    edge_metrics.http1.request_done(0.02)
    requests.labels("http1", "2xx").inc()
    duration.labels("http1").observe(0.02)

    def samples(registry: CollectorRegistry, name: str, kinds: tuple[str, ...]) -> dict:
        """Non-zero http1 samples of a metric: {(suffix, labels): value}."""
        names = {name + kind for kind in kinds}
        return {
            (sample.name.removeprefix(name), tuple(sorted(sample.labels.items()))): sample.value
            for metric in registry.collect()
            for sample in metric.samples
            if sample.name in names and sample.value and sample.labels["protocol"] == "http1"
        }

    edge_metrics.settle()
    got_requests = samples(edge_metrics.registry, "burrow_edge_requests", ("_total",))
    want_requests = samples(reference, "r", ("_total",))
    assert got_requests == want_requests
    assert got_requests[("_total", (("protocol", "http1"), ("status_class", "1xx")))] == 1
    kinds = ("_bucket", "_count", "_sum")
    got = samples(edge_metrics.registry, "burrow_edge_request_duration_seconds", kinds)
    want = samples(reference, "d", kinds)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    assert got[("_count", (("protocol", "http1"),))] == len(seconds) + 1
