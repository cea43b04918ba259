"""``python -m bench scale``: how the edge holds up under many connections and many agents.

Scenarios (each on 127.0.0.1, every component a process of its own):

    idle-visitors    10,000 connections to the edge's HTTP port that send nothing: edge
                     memory per connection (VmRSS delta / connections; target <= 4 KiB),
                     and the latency of 100 requests through a tunnel while they are open.
                     Then, on a fresh edge, 10,000 keep-alive visitors that each completed
                     one request and now idle: an HTTP/1.1 visitor keeps its tunnel stream
                     across keep-alive, so each holds a stream (the per-agent stream limit is
                     raised for this, on the edge and on the agent).
    agents           1,000 agents, one HTTP tunnel each (names scale-0 .. scale-999), in one
                     swarm process: time until all are bound, edge memory per tunnel (target
                     <= 64 KiB), then one request through each of 50 random tunnels.
    reconnect-storm  with those 1,000 agents connected, SIGTERM the edge and start a new one
                     on the same agent and HTTP ports: time until every tunnel serves a 200
                     again (target <= 15 s), per-tunnel recovery p50/p90/max, and whether each
                     tunnel got its name back. Needs the agents scenario, which runs first.

Memory is VmRSS from /proc: what the kernel says the process holds, not tracemalloc's
count. ``--profile`` runs the edge under tracemalloc and lists the allocation sites that grew
(RSS is then inflated by tracemalloc itself, so the targets are not judged).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import uvloop

from bench.environment import describe, headline
from bench.scale_client import (
    keepalive_visitors,
    open_many,
    percentile,
    poll_until_serving,
    raise_fd_limit,
    rss_kib,
    sequential_latency,
)
from bench.stack import Child, StackError, python_module

SCENARIOS = ("idle-visitors", "agents", "reconnect-storm")
IDLE_TARGET_BYTES = 4 * 1024
TUNNEL_TARGET_BYTES = 64 * 1024
RECOVERY_TARGET_SECONDS = 15.0
_START_TIMEOUT = 20.0
_STATUS_TIMEOUT = 20.0


@dataclass(slots=True)
class ScaleSettings:
    idle_connections: int = 10_000
    keepalive_visitors: int = 10_000
    agents: int = 1_000
    sample_tunnels: int = 50
    latency_requests: int = 100
    recovery_deadline: float = 60.0  # give up polling this long after the SIGTERM
    profile: bool = False


@dataclass(slots=True)
class ScenarioResult:
    key: str
    title: str
    figures: dict[str, object] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)  # target -> met


@dataclass(slots=True)
class ScaleRun:
    settings: ScaleSettings
    results: list[ScenarioResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    wall_seconds: float = 0.0
    troubled: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "bench": "scale",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "wall_seconds": self.wall_seconds,
            "environment": describe(),
            "settings": {
                "idle_connections": self.settings.idle_connections,
                "keepalive_visitors": self.settings.keepalive_visitors,
                "agents": self.settings.agents,
                "profile": self.settings.profile,
            },
            "targets": {
                "idle_bytes_per_connection": IDLE_TARGET_BYTES,
                "edge_bytes_per_tunnel": TUNNEL_TARGET_BYTES,
                "recovery_seconds": RECOVERY_TARGET_SECONDS,
            },
            "scenarios": {r.key: {**r.figures, "targets_met": r.checks} for r in self.results},
            "notes": self.notes,
        }


# -- processes ------------------------------------------------------------------------------


class ScaleStack:
    """The child processes of one scale run; every one is stopped at the end, whatever
    happened. Blocking child I/O goes through ``asyncio.to_thread`` so that client sockets
    (a recovery poll, say) keep being served meanwhile."""

    def __init__(self, log_dir: Path, profile: bool) -> None:
        self.log_dir = log_dir
        self.profile = profile
        self.token = "scale-" + secrets.token_urlsafe(12)
        self.children: list[Child] = []
        self.origin_port = 0

    def _spawn(self, name: str, module: str, *args: str) -> Child:
        child = Child(name, python_module(module, *args), self.log_dir / f"{name}.log")
        self.children.append(child)
        return child

    async def start_origin(self) -> None:
        child = self._spawn("origin", "bench.component", "origin")
        ready = await asyncio.to_thread(child.read_ready, _START_TIMEOUT)
        self.origin_port = _int(ready, "port")

    async def start_edge(
        self, name: str, *, http_port: int = 0, agent_port: int = 0, max_streams: int = 0
    ) -> tuple[Child, dict[str, object]]:
        args = ["--token", self.token, "--http-port", str(http_port)]
        args += ["--agent-port", str(agent_port), "--max-streams", str(max_streams)]
        if self.profile:
            args.append("--tracemalloc")
        child = self._spawn(name, "bench.scale_edge", *args)
        return child, await asyncio.to_thread(child.read_ready, _START_TIMEOUT)

    async def start_swarm(
        self,
        name: str,
        edge: dict[str, object],
        count: int,
        prefix: str,
        max_streams: int = 0,
        bind_within: float = 20.0,
    ) -> tuple[Child, dict[str, object]]:
        """Start the agents and return at once with the swarm's "starting" line."""
        child = self._spawn(
            name,
            "bench.scale_swarm",
            "--edge-port",
            str(_int(edge, "agent_port")),
            "--origin-port",
            str(self.origin_port),
            "--token",
            self.token,
            "--count",
            str(count),
            "--prefix",
            prefix,
            "--max-streams",
            str(max_streams),
            "--bind-timeout",
            str(bind_within),
        )
        return child, await asyncio.to_thread(child.read_ready, _START_TIMEOUT)

    @staticmethod
    async def read(child: Child, wait: float) -> dict[str, object]:
        return await asyncio.to_thread(child.read_ready, wait)

    @staticmethod
    async def status(child: Child) -> dict[str, object]:
        """Ask an edge or a swarm for its status line (SIGUSR1)."""
        os.kill(child.pid, signal.SIGUSR1)
        return await asyncio.to_thread(child.read_ready, _STATUS_TIMEOUT)

    @staticmethod
    async def stop(child: Child) -> int | None:
        return await asyncio.to_thread(child.stop)

    def stop_all(self) -> list[str]:
        """Stop every child still running; a note for each that exited badly or logged."""
        problems: list[str] = []
        for child in reversed(self.children):
            code = child.stop()
            if code not in (0, None):
                problems.append(f"{child.name} exited with status {code}")
        for child in self.children:
            lines = child.log_lines()
            if lines:
                problems.append(
                    f"{child.name} logged {len(lines)} line(s), first: {lines[0][:200]}"
                )
        return problems


async def _bound(stack: ScaleStack, swarm: Child, at_least: int, wait: float) -> dict[str, object]:
    """The swarm's "bound" line; StackError if fewer than ``at_least`` tunnels were bound."""
    bound = await stack.read(swarm, wait)
    if _num(bound, "bound") < at_least:
        raise StackError(
            f"{swarm.name}: {bound.get('bound')} of {bound.get('count')} tunnels bound "
            f"({bound.get('errors')}); see {swarm.log_path}"
        )
    return bound


async def _warm(port: int, host: str, edge: Child) -> None:
    """A few requests through the tunnel before any baseline; fail fast if it does not
    serve (rather than wait out a timeout per request)."""
    _, statuses = await sequential_latency(port, host, 1)
    if statuses.get(200) != 1:
        raise StackError(
            f"the tunnel {host} does not serve through {edge.name} (status {statuses}); "
            f"see {edge.log_path}"
        )
    await sequential_latency(port, host, 20)


def _int(fields: dict[str, object], key: str) -> int:
    value = fields.get(key)
    if not isinstance(value, int):
        raise StackError(f"a component reported {key}={value!r}, not a number")
    return value


def _num(fields: dict[str, object], key: str) -> float:
    value = fields.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


async def _await_edge(
    stack: ScaleStack, edge: Child, key: str, at_least: int, within: float = 15.0
) -> dict[str, object]:
    """Poll the edge's status until ``key`` reaches ``at_least`` (or time runs out)."""
    deadline = time.monotonic() + within
    status = await stack.status(edge)
    while _num(status, key) < at_least and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        status = await stack.status(edge)
    return status


# -- formatting -----------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def _verdict(ok: bool, profile: bool) -> str:
    if profile:
        return "(not judged under --profile)"
    return "MET" if ok else "MISSED"


def _latency_figures(latencies: list[float], statuses: dict[int, int]) -> dict[str, object]:
    return {
        "requests": len(latencies),
        "p50_ms": _round_ms(percentile(latencies, 0.50)),
        "p90_ms": _round_ms(percentile(latencies, 0.90)),
        "p99_ms": _round_ms(percentile(latencies, 0.99)),
        "max_ms": _round_ms(max(latencies, default=None)),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def _round_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _round_s(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _latency_line(latencies: list[float], statuses: dict[int, int]) -> str:
    codes = ", ".join(f"{n} x {code or 'no response'}" for code, n in sorted(statuses.items()))
    return (
        f"p50 {_ms(percentile(latencies, 0.5))}, p99 {_ms(percentile(latencies, 0.99))}, "
        f"max {_ms(max(latencies, default=None))} ({codes})"
    )


def _growth_lines(status: dict[str, object]) -> list[str]:
    growth = status.get("growth")
    if not isinstance(growth, list):
        return []
    out = [f"    tracemalloc: {status.get('growth_kib')} KiB more traced; sites that grew most:"]
    for site in growth[:8]:
        if isinstance(site, dict):
            where = str(site.get("where", "?"))
            out.append(f"      {site.get('kib'):>9} KiB {site.get('blocks'):>8} blocks  {where}")
    return out


# -- scenario: idle visitors ----------------------------------------------------------------


async def run_idle_visitors(stack: ScaleStack, s: ScaleSettings) -> ScenarioResult:
    result = ScenarioResult("idle-visitors", "idle visitor connections")
    profile = s.profile
    n = s.idle_connections

    # (a) connections that never send a byte: no request, no tunnel stream.
    edge, ready = await stack.start_edge("edge-idle")
    port = _int(ready, "http_port")
    swarm, _ = await stack.start_swarm("agent-idle", ready, 1, "idle-")
    await _bound(stack, swarm, 1, 30.0)
    host = "idle-0.localhost"
    await _warm(port, host, edge)  # warm the path before the baseline
    await asyncio.sleep(0.3)
    before = await stack.status(edge)
    conns, failed = await open_many(port, n)
    held = await _await_edge(stack, edge, "visitors", len(conns))
    await asyncio.sleep(0.5)
    after = await stack.status(edge)
    latencies, statuses = await sequential_latency(port, host, s.latency_requests)
    still_open = sum(not c.closed for c in conns)
    for c in conns:
        c.close()
    delta_kib = _num(after, "rss_kib") - _num(before, "rss_kib")
    per_conn = delta_kib * 1024 / len(conns) if conns else 0.0
    ok = per_conn <= IDLE_TARGET_BYTES and len(conns) == n
    result.checks["idle_bytes_per_connection"] = ok
    result.figures["idle"] = {
        "connections": n,
        "opened": len(conns),
        "failed_connects": failed,
        "edge_visitor_connections": held.get("visitors"),
        "edge_rss_before_kib": before.get("rss_kib"),
        "edge_rss_after_kib": after.get("rss_kib"),
        "edge_bytes_per_connection": round(per_conn),
        "still_open_after_latency_check": still_open,
        "latency_while_open": _latency_figures(latencies, statuses),
        **({"tracemalloc": after.get("growth")} if profile else {}),
    }
    result.lines += [
        f"(a) {n:,} connections to the edge's HTTP port that sent nothing",
        f"    opened {len(conns):,} ({failed} failed); the edge counted "
        f"{_num(held, 'visitors'):,.0f} open visitor connections",
        f"    edge RSS {_mib(_num(before, 'rss_kib'))} -> {_mib(_num(after, 'rss_kib'))}: "
        f"{per_conn:,.0f} bytes per idle connection (target <= {IDLE_TARGET_BYTES:,}) "
        f"{_verdict(ok, profile)}",
        f"    {s.latency_requests} requests through a tunnel meanwhile (one keep-alive "
        f"connection): {_latency_line(latencies, statuses)}",
        f"    {still_open:,} of the {len(conns):,} were still open afterwards (the edge closes "
        "idle ones after 75 s)",
        *(_growth_lines(after) if profile else []),
    ]
    await stack.stop(swarm)
    await stack.stop(edge)

    # (b) visitors that completed one request and idle on keep-alive: each keeps its stream.
    k = s.keepalive_visitors
    limit = k + 64
    edge, ready = await stack.start_edge("edge-keepalive", max_streams=limit)
    port = _int(ready, "http_port")
    swarm, _ = await stack.start_swarm("agent-keepalive", ready, 1, "keepalive-", limit)
    await _bound(stack, swarm, 1, 30.0)
    host = "keepalive-0.localhost"
    await _warm(port, host, edge)
    await asyncio.sleep(0.3)
    before = await stack.status(edge)
    agent_before = await stack.status(swarm)
    origin_pid = stack.children[0].pid
    origin_before = rss_kib(origin_pid)
    t0 = time.monotonic()
    kept, statuses = await keepalive_visitors(port, host, k)
    opened_in = time.monotonic() - t0
    await asyncio.sleep(0.5)
    after = await stack.status(edge)
    agent_after = await stack.status(swarm)
    origin_after = rss_kib(origin_pid)
    latencies, lat_statuses = await sequential_latency(port, host, s.latency_requests)
    still_open = sum(not c.closed for c in kept)
    for c in kept:
        c.close()
    streams = _num(after, "streams")
    delta_kib = _num(after, "rss_kib") - _num(before, "rss_kib")
    per_visitor = delta_kib * 1024 / len(kept) if kept else 0.0
    agent_delta = _num(agent_after, "rss_kib") - _num(agent_before, "rss_kib")
    per_stream_agent = agent_delta * 1024 / len(kept) if kept else 0.0
    result.figures["keepalive"] = {
        "visitors": k,
        "stream_limit": limit,
        "kept_open": len(kept),
        "seconds_to_open": round(opened_in, 3),
        "statuses": {str(c): v for c, v in sorted(statuses.items())},
        "edge_open_streams": after.get("streams"),
        "edge_rss_before_kib": before.get("rss_kib"),
        "edge_rss_after_kib": after.get("rss_kib"),
        "edge_bytes_per_keepalive_visitor": round(per_visitor),
        "agent_bytes_per_stream": round(per_stream_agent),
        "origin_rss_delta_kib": origin_after - origin_before,
        "still_open_after_latency_check": still_open,
        "latency_while_open": _latency_figures(latencies, lat_statuses),
        **({"tracemalloc": after.get("growth")} if profile else {}),
    }
    codes = ", ".join(f"{v:,} x {c or 'no response'}" for c, v in sorted(statuses.items()))
    result.lines += [
        f"(b) {k:,} keep-alive visitors, one request each then idle (stream limit raised "
        f"to {limit:,} on the edge and the agent; the defaults are 1,000 and 1,024)",
        f"    {len(kept):,} kept open in {opened_in:.1f} s ({codes}); the edge held "
        f"{streams:,.0f} tunnel streams",
        f"    edge RSS {_mib(_num(before, 'rss_kib'))} -> {_mib(_num(after, 'rss_kib'))}: "
        f"{per_visitor:,.0f} bytes per keep-alive visitor (connection + stream + parser); "
        f"agent {per_stream_agent:,.0f} bytes per stream (+ its origin socket)",
        f"    {s.latency_requests} requests through the tunnel meanwhile: "
        f"{_latency_line(latencies, lat_statuses)}",
        *(_growth_lines(after) if profile else []),
    ]
    await stack.stop(swarm)
    await stack.stop(edge)
    return result


# -- scenarios: agents, reconnect storm -----------------------------------------------------


async def run_agents(stack: ScaleStack, s: ScaleSettings, storm: bool) -> list[ScenarioResult]:
    result = ScenarioResult("agents", f"{s.agents:,} agents, one HTTP tunnel each")
    profile = s.profile
    edge, ready = await stack.start_edge("edge-agents")
    http_port, agent_port = _int(ready, "http_port"), _int(ready, "agent_port")
    await asyncio.sleep(0.3)
    before = await stack.status(edge)
    t_spawn = time.monotonic()
    swarm, starting = await stack.start_swarm("swarm", ready, s.agents, "scale-", bind_within=90.0)
    bound = await _bound(stack, swarm, 1, 120.0)
    spawn_to_bound = time.monotonic() - t_spawn
    after = await _await_edge(stack, edge, "hosts", s.agents, within=5.0)
    await asyncio.sleep(1.0)  # let the handshake garbage go before measuring
    after = await stack.status(edge)
    n_bound = _int(bound, "bound")
    delta_kib = _num(after, "rss_kib") - _num(before, "rss_kib")
    per_tunnel = delta_kib * 1024 / n_bound if n_bound else 0.0
    swarm_per_agent = (
        (_num(bound, "rss_kib") - _num(starting, "rss_kib")) * 1024 / s.agents if s.agents else 0.0
    )
    sample = random.Random(7).sample(range(s.agents), min(s.sample_tunnels, s.agents))
    sample_lat, sample_status = await _sample_requests(http_port, sample)
    ok = per_tunnel <= TUNNEL_TARGET_BYTES and n_bound == s.agents
    result.checks["edge_bytes_per_tunnel"] = ok
    result.checks["sample_requests_ok"] = sample_status.get(200, 0) == len(sample)
    result.figures = {
        "agents": s.agents,
        "bound": n_bound,
        "seconds_to_bind_all": _round_s(_num(bound, "seconds")),
        "seconds_to_first_bind": _round_s(_num(bound, "first")),
        "seconds_to_median_bind": _round_s(_num(bound, "median")),
        "seconds_spawn_to_all_bound": round(spawn_to_bound, 3),
        "edge_sessions": after.get("sessions"),
        "edge_hosts": after.get("hosts"),
        "edge_rss_before_kib": before.get("rss_kib"),
        "edge_rss_after_kib": after.get("rss_kib"),
        "edge_bytes_per_tunnel": round(per_tunnel),
        "swarm_bytes_per_agent": round(swarm_per_agent),
        "bind_errors": bound.get("errors"),
        "sample": _latency_figures(sample_lat, sample_status),
        **({"tracemalloc": after.get("growth")} if profile else {}),
    }
    result.lines += [
        f"{n_bound:,} of {s.agents:,} tunnels bound {_s(_num(bound, 'seconds'))} after the "
        f"agents started (first {_s(_num(bound, 'first'))}, median "
        f"{_s(_num(bound, 'median'))}; {spawn_to_bound:.2f} s including the swarm's start-up)",
        f"edge: {_num(after, 'sessions'):,.0f} agent links, {_num(after, 'hosts'):,.0f} "
        "hostnames routed",
        f"edge RSS {_mib(_num(before, 'rss_kib'))} -> {_mib(_num(after, 'rss_kib'))}: "
        f"{per_tunnel / 1024:,.1f} KiB per idle tunnel (link + session + route; target <= "
        f"{TUNNEL_TARGET_BYTES // 1024} KiB) {_verdict(ok, profile)}",
        f"swarm: {swarm_per_agent / 1024:,.1f} KiB per agent (all in one process)",
        f"one request through each of {len(sample)} random tunnels (fresh connection each): "
        f"{_latency_line(sample_lat, sample_status)}",
        *(_growth_lines(after) if profile else []),
    ]
    if bound.get("errors"):
        result.lines.append(f"bind errors: {bound.get('errors')}")
    results = [result]
    if storm:
        results.append(await _reconnect_storm(stack, s, edge, swarm, http_port, agent_port))
    await stack.stop(swarm)
    return results


async def _sample_requests(port: int, indexes: list[int]) -> tuple[list[float], dict[int, int]]:
    from bench.scale_client import fetch

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    for i in indexes:
        t0 = time.perf_counter()
        status = await fetch(port, f"scale-{i}.localhost")
        latencies.append(time.perf_counter() - t0)
        statuses[status] = statuses.get(status, 0) + 1
    return latencies, statuses


async def _reconnect_storm(
    stack: ScaleStack,
    s: ScaleSettings,
    edge: Child,
    swarm: Child,
    http_port: int,
    agent_port: int,
) -> ScenarioResult:
    result = ScenarioResult("reconnect-storm", "edge restart with every agent connected")
    hosts = [f"scale-{i}.localhost" for i in range(s.agents)]
    t_term = time.monotonic()
    await stack.stop(edge)  # SIGTERM: the edge sends GoAway, drains (1 s at most), exits
    t_exit = time.monotonic() - t_term
    # Poll only from here: the old edge answered until it closed its listeners.
    poll = asyncio.ensure_future(
        poll_until_serving(http_port, hosts, t_term, t_term + s.recovery_deadline)
    )
    try:
        new_edge, ready = await stack.start_edge(
            "edge-restarted", http_port=http_port, agent_port=agent_port
        )
    except BaseException:
        poll.cancel()
        raise
    t_listen = _num(ready, "listening_at") - t_term
    served = await poll
    status = await stack.status(swarm)
    edge_status = await stack.status(new_edge)
    recovery = sorted(served.values())
    all_back = len(served) == len(hosts)
    total = recovery[-1] if all_back else None
    bound_at = status.get("bound_at")
    rebinds = sorted(
        t - t_term
        for t in (bound_at if isinstance(bound_at, list) else [])
        if isinstance(t, int | float) and t > t_term
    )
    url_changes = _int(status, "url_changes")
    ok = total is not None and total <= RECOVERY_TARGET_SECONDS
    result.checks["recovery_seconds"] = ok
    result.checks["same_names"] = url_changes == 0 and all_back
    result.figures = {
        "tunnels": len(hosts),
        "serving_again": len(served),
        "seconds_to_all_serving": None if total is None else round(total, 3),
        "old_edge_exited_after": round(t_exit, 3),
        "new_edge_listening_after": round(t_listen, 3),
        "recovery_p50_s": _round_s(percentile(recovery, 0.5)),
        "recovery_p90_s": _round_s(percentile(recovery, 0.9)),
        "recovery_max_s": _round_s(recovery[-1] if recovery else None),
        "rebound_p50_s": _round_s(percentile(rebinds, 0.5)),
        "rebound_p90_s": _round_s(percentile(rebinds, 0.9)),
        "rebound_max_s": _round_s(rebinds[-1] if rebinds else None),
        "rebound": len(rebinds),
        "url_changes": url_changes,
        "agent_reconnects": status.get("reconnects"),
        "agents_serving": status.get("serving"),
        "agent_links_open": status.get("links"),
        "edge_sessions": edge_status.get("sessions"),
        "edge_hosts": edge_status.get("hosts"),
        "agent_errors": status.get("errors"),
    }
    result.lines += [
        f"SIGTERM at 0; old edge exited at {t_exit:.2f} s; new edge listening on the same "
        f"ports at {t_listen:.2f} s",
        f"{len(served):,} of {len(hosts):,} tunnels answered 200 again; all of them after "
        f"{_s(total)} (target <= {RECOVERY_TARGET_SECONDS:g} s) {_verdict(ok, False)}",
        f"per tunnel, first 200 seen by the poller: p50 {_s(percentile(recovery, 0.5))}, "
        f"p90 {_s(percentile(recovery, 0.9))}, max {_s(recovery[-1] if recovery else None)}",
        f"per tunnel, Bound received by the agent: p50 {_s(percentile(rebinds, 0.5))}, "
        f"p90 {_s(percentile(rebinds, 0.9))}, max {_s(rebinds[-1] if rebinds else None)}",
        f"same name back: {'every tunnel' if url_changes == 0 else f'{url_changes} changed'} "
        f"({status.get('reconnects')} agent reconnects; new edge has "
        f"{edge_status.get('sessions')} links, {edge_status.get('hosts')} hostnames)",
        "the poller sends a request per tunnel not yet back, in rounds (0.1 s apart at the "
        "least), so its times are as coarse as a round; the agent's Bound times are exact",
    ]
    await stack.stop(new_edge)
    return result


# -- report and command ---------------------------------------------------------------------


def format_scale_report(run: ScaleRun) -> str:
    lines = [
        f"Burrow bench scale: {headline(describe())}; "
        "edge, agents, origin and clients in separate processes",
    ]
    if run.settings.profile:
        lines.append("--profile: the edge ran under tracemalloc, so its RSS is inflated")
    for r in run.results:
        lines += ["", f"{r.key}: {r.title}"]
        lines += [f"  {line}" for line in r.lines]
    lines.append(f"\nwhole run {run.wall_seconds:.1f} s")
    if run.notes:
        lines.append("notes:")
        lines += [f"  - {note}" for note in run.notes]
    return "\n".join(lines)


async def _run_async(stack: ScaleStack, run: ScaleRun, chosen: list[str]) -> None:
    await stack.start_origin()
    if "idle-visitors" in chosen:
        run.results.append(await run_idle_visitors(stack, run.settings))
    if "agents" in chosen or "reconnect-storm" in chosen:
        run.results += await run_agents(stack, run.settings, "reconnect-storm" in chosen)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def add_scale_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scale = sub.add_parser(
        "scale",
        help="10,000 idle visitors, 1,000 agents, an edge restart under them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scale.add_argument("scenario", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    scale.add_argument("--idle", type=int, default=10_000, help="idle connections (10,000)")
    scale.add_argument("--keepalive", type=int, default=10_000, help="keep-alive visitors (10,000)")
    scale.add_argument("--agents", type=int, default=1_000, help="agents in the swarm (1,000)")
    scale.add_argument(
        "--profile", action="store_true", help="trace the edge's allocations (tracemalloc)"
    )
    scale.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    scale.add_argument(
        "--logs", type=Path, metavar="DIR", help="keep component logs here (default: a temp dir)"
    )


def run_scale(args: argparse.Namespace) -> int:
    unknown = [name for name in args.scenario if name not in SCENARIOS]
    if unknown:
        print(
            f"bench scale: unknown scenario {unknown[0]!r}; pick from {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 2
    if min(args.idle, args.keepalive, args.agents) < 1:
        print("bench scale: --idle, --keepalive and --agents must be at least 1", file=sys.stderr)
        return 2
    chosen = list(args.scenario) or list(SCENARIOS)
    settings = ScaleSettings(
        idle_connections=args.idle,
        keepalive_visitors=args.keepalive,
        agents=args.agents,
        profile=args.profile,
    )
    # Children inherit the raised limit (the origin, started as bench.component, too).
    raise_fd_limit()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
        log_dir, keep_logs = args.logs, True
    else:
        log_dir, keep_logs = Path(tempfile.mkdtemp(prefix="burrow-scale-")), False
    run = ScaleRun(settings)
    stack = ScaleStack(log_dir, settings.profile)
    t0 = time.monotonic()
    try:
        uvloop.run(_run_async(stack, run, chosen))
    except StackError as exc:
        print(f"bench scale: {exc}\n(logs kept in {log_dir})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nbench scale: interrupted; every child process was stopped (logs in {log_dir})")
        return 130
    finally:
        run.notes += stack.stop_all()
        run.wall_seconds = time.monotonic() - t0
    run.troubled = bool(run.notes) or not all(ok for r in run.results for ok in r.checks.values())
    print(format_scale_report(run), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(run.to_json(), indent=2) + "\n")
        print(f"results written to {args.json}")
    if run.notes:
        keep_logs = True
    if keep_logs and args.logs is None:
        print(f"component logs kept in {log_dir}")
    if not keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0
