"""What the control service counts, as Prometheus metrics at ``/metrics``.

Requests by route template (never the raw path: ids would make a series per row), method
and status class, with a latency histogram; how far the bus is behind in both directions
(routing events not yet published, and the age of the last edge report applied). Each app
has its own registry (tests run several apps in one process).

Multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before start) aggregates the files of
every worker process, as on the edge.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import choose_encoder

from bus.events import EdgeReport
from contracts.prometheus import multiprocess_dir

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "burrow_control_requests",
            "API requests answered, by route template, method and status class.",
            ["route", "method", "status_class"],
            registry=registry,
        )
        self.latency = Histogram(
            "burrow_control_request_seconds",
            "Time to answer an API request, by route template.",
            ["route"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.routing_pending = Gauge(
            "burrow_control_routing_events_pending",
            "Routing events committed but not yet published on the bus (edges poll meanwhile).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.report_lag = Gauge(
            "burrow_control_edge_report_lag_seconds",
            "Age of the last edge report applied when it was applied: how far the bus is behind.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.reports = Counter(
            "burrow_control_edge_reports",
            "Edge reports applied, by kind.",
            ["kind"],
            registry=registry,
        )
        directory = multiprocess_dir()
        if directory is None:
            ProcessCollector(registry=registry)
            self._exposed = registry
        else:
            from prometheus_client.multiprocess import MultiProcessCollector

            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, directory)

    def report_applied(self, report: EdgeReport) -> None:
        self.reports.labels(type(report).__struct_config__.tag).inc()
        self.report_lag.set(max(0.0, time.time() - report.at))

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        encode, content_type = choose_encoder(accept)
        return encode(self._exposed), content_type

    def middleware(self) -> Middleware:
        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                info = request.match_info.route.resource
                route = info.canonical if info is not None else "unmatched"
                self.requests.labels(route, request.method, f"{status // 100}xx").inc()
                self.latency.labels(route).observe(time.perf_counter() - started)

        return count
