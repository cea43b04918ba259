"""What the edge counts about its traffic, as Prometheus metrics (prometheus_client).

Theory of operation
-------------------
Two kinds of numbers, kept in two ways:

- Events, counted where they happen: requests by visitor protocol and status class, their
  duration, refusals by reason, agent reconnects. These are prometheus_client Counters and a
  Histogram whose label children are resolved once, here: the visitor hot path makes one
  bound-method call per event and never calls ``labels()`` (a lock and a tuple key per call).
- State the edge holds anyway: agents, tunnels, streams, visitor connections, bytes carried
  on agent links. ``EdgeState`` reads it at scrape time, so it costs nothing per request.

Each ``Edge`` has a ``CollectorRegistry`` of its own (tests run several edges in one process).

Multiprocess mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set before the process starts,
prometheus_client keeps counter, histogram and gauge values in per-process files in that
directory and ``exposition`` serves the aggregate of every process's files
(``MultiProcessCollector``). ``EdgeState`` still sees only its own process, so its series
carry a ``pid`` label (sum them in PromQL); process_* metrics are left out in that mode, as
prometheus_client cannot aggregate them. Several edges in one process would share files: one
edge per process in that mode.
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from contracts.prometheus import multiprocess_dir

if TYPE_CHECKING:
    from edge.server import Edge

STATUS_CLASSES: Final = ("2xx", "3xx", "4xx", "5xx")
TUNNEL_PROTOCOLS: Final = ("http", "tls", "tcp")
# Every reason the edge refuses for, so each series exists (at 0) from the first scrape and
# rate() sees its first increase. Another reason still counts; its series starts when it does.
REFUSAL_REASONS: Final = (
    "unknown_host",  # no tunnel serves the Host (404)
    "wrong_mode",  # a TLS-passthrough host asked for over HTTP or through termination (421)
    "stream_limit",  # the agent has max_streams_per_agent open streams (429)
    "local_refused",  # the agent could not reach its local service (502)
    "agent_gone",  # the agent reset the stream or its link went away (502)
    "header_timeout",  # the request head did not arrive in time (408)
    "response_timeout",  # no response head from the local service in time (504)
    "h2_abuse",  # an HTTP/2 visitor was cut off with ENHANCE_YOUR_CALM
    "tls_hello_timeout",  # no TLS ClientHello in time
    "ip_denied",  # the tunnel's token does not admit the visitor's address (403, or closed)
    "auth_required",  # the tunnel asks for basic auth, missing or wrong (401)
    "auth_rate",  # too many fresh basic-auth passwords for one tunnel's checks (429)
    "send_timeout",  # a visitor took no response bytes for send_timeout (aborted)
    "body_too_slow",  # a request body came slower than body_min_rate (408)
    "address_share",  # one visitor address holds its share of a tunnel's streams (429)
)
# Seconds. Requests through a tunnel take from well under a millisecond (local service on
# the agent's machine, agent near the edge) to the 60 s response timeout.
DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class RequestMetrics:
    """The per-request counts of one visitor protocol.

    The hot path adds to plain ints: a prometheus_client ``inc`` or ``observe`` takes a lock
    and four Python calls, which came to 7% of the edge's instructions for a 1 KiB request.
    ``settle`` moves the counts into the prometheus_client children; every reading settles
    first, and a multiprocess edge also settles each second so its files stay current.
    """

    __slots__ = (
        "_by_class",
        "_classes",
        "_duration",
        "_durations",
        "_requests",
        "_sum",
        "protocol",
    )

    def __init__(self, requests: Counter, duration: Histogram, protocol: str) -> None:
        self.protocol = protocol
        self._requests = requests
        # Indexed by status // 100. HTTP status codes are three digits, so 0-9 cover them all;
        # the four usual classes have their series from the start, the others on first use.
        self._classes = [0] * 10
        self._by_class: list[Callable[[float], None] | None] = [None] * 10
        for name in STATUS_CLASSES:
            self._by_class[int(name[0])] = requests.labels(protocol, name).inc
        # Observations per bucket, not cumulative, as prometheus_client keeps them: the last
        # is +Inf.
        self._duration = duration.labels(protocol)
        self._durations = [0] * (len(DURATION_BUCKETS) + 1)
        self._sum = 0.0

    def status(self, status: int) -> None:
        """A final response head went to the visitor: relayed, or the edge's own page."""
        self._classes[status // 100] += 1

    def request_done(self, seconds: float) -> None:
        """A response relayed whole, head to end, took ``seconds``."""
        # The first bucket whose bound is >= seconds, as Histogram.observe picks it. A loop:
        # most requests stop at the first bound, and compiled it compares unboxed floats
        # where bisect_left is a generic call.
        bucket = 0
        for bound in DURATION_BUCKETS:
            if seconds <= bound:
                break
            bucket += 1
        self._durations[bucket] += 1
        self._sum += seconds

    def settle(self) -> None:
        classes = self._classes
        for status_class, n in enumerate(classes):
            if n:
                classes[status_class] = 0
                inc = self._by_class[status_class]
                if inc is None:
                    inc = self._requests.labels(self.protocol, f"{status_class}xx").inc
                    self._by_class[status_class] = inc
                inc(n)
        durations = self._durations
        if not any(durations):
            return
        # Histogram children keep a value per bucket and one for the sum (prometheus_client's
        # own layout, the same since 0.4); adding to them is what ``observe`` does, n at once.
        child = self._duration
        for bucket, n in enumerate(durations):
            if n:
                durations[bucket] = 0
                child._buckets[bucket].inc(n)
        total, self._sum = self._sum, 0.0
        child._sum.inc(total)


class EdgeMetrics:
    """The edge's counters and the registry they are exposed from."""

    def __init__(self, state: Callable[[str | None], EdgeState] | None = None) -> None:
        self.registry = registry = CollectorRegistry()
        requests = Counter(
            "burrow_edge_requests",
            "Visitor requests answered, by visitor protocol and response status class.",
            ["protocol", "status_class"],
            registry=registry,
        )
        duration = Histogram(
            "burrow_edge_request_duration_seconds",
            "Seconds from a visitor's request head to the end of the response relayed from "
            "the local service (the edge's own error pages are not timed).",
            ["protocol"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.http1 = RequestMetrics(requests, duration, "http1")
        self.h2 = RequestMetrics(requests, duration, "h2")
        self._requests = requests
        self._refusals = Counter(
            "burrow_edge_refusals",
            "Visitor connections or requests the edge refused or cut off, by reason.",
            ["reason"],
            registry=registry,
        )
        self._refused = {reason: self._refusals.labels(reason).inc for reason in REFUSAL_REASONS}
        reconnects = Counter(
            "burrow_edge_agent_reconnects",
            "Agents that connected again (same agent instance) while their previous link was "
            "still open or had closed within the name lease period.",
            registry=registry,
        )
        self.agent_reconnected: Callable[[], None] = reconnects.inc
        self.bus_lag = Gauge(
            "burrow_edge_bus_lag_seconds",
            "How far this edge's view of routing state lags the bus; 0 while the edge runs "
            "without a bus.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        # Bytes of agent links that have closed; the open ones are read at scrape time.
        self.closed_link_bytes_in = 0
        self.closed_link_bytes_out = 0
        self.multiprocess_dir = multiprocess_dir()
        if self.multiprocess_dir is None:
            ProcessCollector(registry=registry)
            if state is not None:
                registry.register(state(None))
            self._exposed = registry
        else:
            from prometheus_client.multiprocess import MultiProcessCollector

            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, self.multiprocess_dir)
            if state is not None:
                self._exposed.register(state(str(os.getpid())))

    # -- events ---------------------------------------------------------------------------

    def refused(self, reason: str) -> None:
        inc = self._refused.get(reason)
        if inc is None:
            inc = self._refused[reason] = self._refusals.labels(reason).inc
        inc()

    def link_closed(self, bytes_in: int, bytes_out: int) -> None:
        self.closed_link_bytes_in += bytes_in
        self.closed_link_bytes_out += bytes_out

    # -- reading --------------------------------------------------------------------------

    @property
    def refusals(self) -> Tally[str]:
        """Refusals so far by reason (a missing reason reads 0)."""
        return Tally({labels["reason"]: int(v) for labels, v in self._values(self._refusals) if v})

    def settle(self) -> None:
        """Move the request counts gathered since the last reading into the metrics."""
        self.http1.settle()
        self.h2.settle()

    @property
    def responses(self) -> Tally[str]:
        """Requests answered so far by status class, both protocols together."""
        self.settle()
        tally: Tally[str] = Tally()
        for labels, value in self._values(self._requests):
            tally[labels["status_class"]] += int(value)
        return +tally

    @staticmethod
    def _values(counter: Counter) -> Iterator[tuple[dict[str, str], float]]:
        for metric in counter.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    yield sample.labels, sample.value

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The metrics in the format the scraper asked for: (body, content type)."""
        self.settle()
        encode, content_type = choose_encoder(accept)
        return encode(self._exposed), content_type

    def close(self) -> None:
        """The process is done serving: its last counts are settled and its live gauges
        leave the multiprocess aggregate."""
        self.settle()
        if self.multiprocess_dir is not None:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(os.getpid(), self.multiprocess_dir)


class EdgeState:
    """Gauges and link byte counters read from the edge at scrape time."""

    def __init__(self, edge: Edge, pid: str | None) -> None:
        self.edge = edge
        self.pid = pid

    def describe(self) -> Iterable[Metric]:
        return self._families().values()

    def collect(self) -> Iterable[Metric]:
        edge = self.edge
        agents = streams = 0
        link_in = link_out = 0
        tunnels = dict.fromkeys(TUNNEL_PROTOCOLS, 0)
        for session in edge.sessions:
            if session.identity is None:
                continue  # not an agent until it has said who it is
            agents += 1
            streams += session.mux.stream_count
            link_in += session.bytes_in
            link_out += session.bytes_out
            for tunnel in session.tunnels.values():
                tunnels[tunnel.protocol] = tunnels.get(tunnel.protocol, 0) + 1
        m = edge.metrics
        families = self._families()
        pid = [self.pid] if self.pid is not None else []
        # Visitors' bytes go out to agents ("in": from visitors); agents' come in ("out").
        families["bytes"].add_metric(["in", *pid], link_out + m.closed_link_bytes_out)
        families["bytes"].add_metric(["out", *pid], link_in + m.closed_link_bytes_in)
        families["agents"].add_metric(pid, agents)
        for protocol, count in tunnels.items():
            families["tunnels"].add_metric([protocol, *pid], count)
        families["streams"].add_metric(pid, streams)
        families["visitors"].add_metric(pid, len(edge.visitors))
        return families.values()

    def _families(self) -> dict[str, CounterMetricFamily | GaugeMetricFamily]:
        pid = ["pid"] if self.pid is not None else []
        return {
            "bytes": CounterMetricFamily(
                "burrow_edge_bytes",
                "Bytes carried for visitors over agent links, all tunnel kinds, tunnel framing "
                "included: in = from visitors toward agents, out = from agents to visitors.",
                labels=["direction", *pid],
            ),
            "agents": GaugeMetricFamily(
                "burrow_edge_agents", "Agent links that are authenticated.", labels=pid
            ),
            "tunnels": GaugeMetricFamily(
                "burrow_edge_tunnels", "Bound tunnels by protocol.", labels=["protocol", *pid]
            ),
            "streams": GaugeMetricFamily(
                "burrow_edge_streams", "Open streams over all agent links.", labels=pid
            ),
            "visitors": GaugeMetricFamily(
                "burrow_edge_visitor_connections",
                "Open visitor connections (HTTP, HTTPS, TLS passthrough, TCP).",
                labels=pid,
            ),
        }
