"""ops/grafana/burrow-edge.json: a dashboard that imports as it is and queries only metrics a
live edge exposes, so a renamed metric cannot leave a panel silently empty."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.e2e.client import get
from tests.obs.admin_client import scrape_edge

DASHBOARD = Path(__file__).parents[2] / "ops" / "grafana" / "burrow-edge.json"
METRIC = re.compile(r"\b(burrow_edge_[a-z0-9_]+)\b")


def _load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            queries.append(query["query"])
        elif var["type"] == "query":
            queries.append(query)
    return queries


def test_the_dashboard_is_a_grafana_model_with_a_datasource_variable():
    dashboard = _load()
    assert dashboard["uid"] == "burrow-edge" and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
        if panel["type"] == "row":
            continue
        # No data source is baked in: the variable picks one at import.
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


async def test_the_dashboard_covers_the_edge_and_queries_only_exposed_metrics(edge, http_tunnel):
    dashboard = _load()
    queried = {m for q in _queries(dashboard) for m in METRIC.findall(q)}
    assert {
        "burrow_edge_requests_total",
        "burrow_edge_request_duration_seconds_bucket",
        "burrow_edge_bytes_total",
        "burrow_edge_agents",
        "burrow_edge_tunnels",
        "burrow_edge_streams",
        "burrow_edge_visitor_connections",
        "burrow_edge_refusals_total",
        "burrow_edge_agent_reconnects_total",
        "burrow_edge_bus_lag_seconds",
    } <= queried
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("status class", "latency", "bytes", "refusals", "reconnects"):
        assert topic in titles
    quantiles = re.findall(r"histogram_quantile\(([\d.]+),", " ".join(_queries(dashboard)))
    assert sorted(quantiles) == ["0.5", "0.9", "0.99"]

    await http_tunnel("app")
    assert (await get(edge.config.http_port, "app.localhost", "/hello")).status == 200
    exposed = (await scrape_edge(edge)).names
    missing = sorted(queried - exposed)
    assert not missing, f"the dashboard queries metrics the edge does not expose: {missing}"
