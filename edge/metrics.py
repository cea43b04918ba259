"""Counters the edge keeps about its traffic (exported as Prometheus metrics later)."""

from __future__ import annotations

from collections import Counter


class EdgeMetrics:
    __slots__ = ("latency_count", "latency_sum", "refusals", "responses")

    def __init__(self) -> None:
        self.responses: Counter[str] = Counter()  # by status class: "2xx", "5xx"
        self.refusals: Counter[str] = Counter()  # by reason: "unknown_host", "agent_gone"
        self.latency_sum = 0.0
        self.latency_count = 0

    def status(self, status: int) -> None:
        self.responses[f"{status // 100}xx"] += 1

    def refused(self, reason: str) -> None:
        self.refusals[reason] += 1

    def request_done(self, phase: int, seconds: float) -> None:
        self.latency_sum += seconds
        self.latency_count += 1
