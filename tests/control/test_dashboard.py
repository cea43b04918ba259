"""ops/grafana/burrow-control.json imports as it is and queries only metrics a live control
service exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from aiohttp.test_utils import TestClient

DASHBOARD = Path(__file__).parents[2] / "ops" / "grafana" / "burrow-control.json"
METRIC = re.compile(r"\b(burrow_control_[a-z0-9_]+)\b")


async def test_the_dashboard_queries_only_metrics_control_exposes(control: TestClient) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "burrow-control"
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [
        v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"
    ]
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    queried = {m for q in queries for m in METRIC.findall(q)}
    assert {
        "burrow_control_requests_total",
        "burrow_control_request_seconds_bucket",
        "burrow_control_routing_events_pending",
        "burrow_control_edge_report_lag_seconds",
        "burrow_control_edge_reports_total",
    } <= queried

    await control.get("/v1/me")
    text = await (await control.get("/metrics")).text()
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    exposed = set(families)
    for name, kind in families.items():
        if kind == "histogram":
            exposed |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    missing = sorted(queried - exposed)
    assert not missing, f"the dashboard queries metrics control does not expose: {missing}"
