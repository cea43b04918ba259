"""``python -m bench peers``: Burrow beside other tunnels, same origin, same load, same run.

Rows, each measured with the same load generator (``bench.loadgen``, a process of its own)
against the same origin process:

    direct       load generator -> origin
    burrow       load generator -> edge -> agent -> origin            (bench.stack)
    ssh -R       load generator -> sshd -> ssh -> origin              (bench.peer_ssh, -N)
    ssh -R -tt   the same with a pty session, so both ends set TCP_NODELAY
    pagekite     load generator -> front-end -> back-end -> origin    (bench.peer_pagekite)

Scenarios: 1 KiB keep-alive over 50 connections (req/s) and 1 MiB downloads over 10
(MB/s), as in ``bench http``, and 1 KiB due at a fixed rate (``--rate``, 2,000/s) over the
same 50 connections, its latency counted from when each request was due, as in ``bench
run``'s ``http-1k-rate``: how each tunnel answers a load it can carry, tail included.

Each peer is optional: when its programs are not installed (``--install`` runs ``bench tools
--install`` first) or it does not start within ``--start-timeout``, its rows say why and the
run goes on. A peer runs only while it is measured, then it and its temp dir are gone;
Burrow's stack (which owns the origin) runs throughout. Every child is stopped on the way
out, on errors and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench.environment import describe, headline
from bench.http_suite import HttpBenchSettings, Measurement, Scenario, busy_between, scenarios
from bench.loadgen import LoadResult
from bench.peer_pagekite import PageKiteTunnel
from bench.peer_process import PeerUnavailable
from bench.peer_ssh import SshReverseTunnel
from bench.stack import (
    BurrowStack,
    Child,
    StackError,
    SuiteLogs,
    load_trouble,
    process_troubles,
    python_module,
)

_SCENARIOS = ("small", "download")
_RATE_ROWS = ("req/s", "p50", "p99")
_NOT_TUNNEL = ("origin", "loadgen")  # busy keys left out of "tunnel CPU"


class PeerTunnel(Protocol):
    """What ``bench peers`` needs from another tunnel program."""

    name: str  # the row label
    key: str  # for log file names and JSON
    path: str  # how a request travels
    config: str  # what exactly was measured (version, options), once started
    findings: list[str]

    def missing_tools(self) -> list[str]: ...
    def start(self, origin_port: int) -> tuple[int, str]: ...  # visitor port, Host header
    def check_alive(self) -> None: ...
    def cpu_seconds(self) -> dict[str, float]: ...
    def observe(self) -> None: ...  # called once while the 1 KiB load runs
    def stop(self) -> None: ...


@dataclass(slots=True)
class PeerSettings:
    duration: float = 5.0
    warmup: float = 0.5
    connections: int = 50
    download_connections: int = 10
    rate: float = 2000.0  # the constant-rate row's requests per second; 0: no such row
    quick: bool = False
    install: bool = False
    start_timeout: float = 20.0

    def http(self) -> HttpBenchSettings:
        return HttpBenchSettings(
            duration=self.duration,
            warmup=self.warmup,
            connections=self.connections,
            download_connections=self.download_connections,
            use_wrk=False,
            quick=self.quick,
        )


@dataclass(slots=True)
class Target:
    name: str
    path: str
    config: str = ""
    available: bool = True
    reason: str = ""  # why not available
    failures: dict[str, str] = field(default_factory=dict)  # scenario key -> why no figures
    findings: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "path": self.path,
            "config": self.config,
            "available": self.available,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.failures:
            out["failures"] = self.failures
        if self.findings:
            out["findings"] = self.findings
        return {**out, **self.details}


@dataclass(slots=True)
class PeersRun:
    settings: PeerSettings
    scenarios: list[Scenario] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    wall_seconds: float = 0.0
    troubled: bool = False

    def to_json(self) -> dict[str, object]:
        s = self.settings
        return {
            "bench": "peers",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "wall_seconds": self.wall_seconds,
            "environment": describe(),
            "settings": {
                "duration": s.duration,
                "warmup": s.warmup,
                "connections": s.connections,
                "download_connections": s.download_connections,
                "rate": s.rate,
            },
            "targets": [t.to_json() for t in self.targets],
            "measurements": [m.to_json() for m in self.measurements],
            "notes": self.notes,
        }


def make_peers(log_dir: Path, start_timeout: float) -> list[PeerTunnel]:
    return [
        SshReverseTunnel(pty=False, log_dir=log_dir, start_timeout=start_timeout),
        SshReverseTunnel(pty=True, log_dir=log_dir, start_timeout=start_timeout),
        PageKiteTunnel(log_dir=log_dir, start_timeout=start_timeout),
    ]


def peer_scenarios(settings: PeerSettings) -> list[Scenario]:
    """``bench http``'s 1 KiB and 1 MiB rows, then the fixed-rate row unless ``rate`` is 0."""
    out = [s for s in scenarios(settings.http()) if s.key in _SCENARIOS]
    if settings.rate > 0:
        conns = settings.connections
        title = f"1 KiB at {settings.rate:,.0f}/s, {conns} conns"
        out.append(Scenario("rate", title, "/bytes/1024", conns, _RATE_ROWS, settings.rate))
    return out


def run_peers_bench(settings: PeerSettings, log_dir: Path) -> PeersRun:
    run = PeersRun(settings)
    run.scenarios = peer_scenarios(settings)
    t0 = time.monotonic()
    peers = make_peers(log_dir, settings.start_timeout)
    if settings.install and any(p.missing_tools() for p in peers):
        _install(run)
    stack = BurrowStack(log_dir)
    try:
        stack.start()
        origin = stack.children["origin"]

        def origin_cpu() -> dict[str, float]:
            return {"origin": origin.probe.cpu_seconds()}

        direct = Target("direct", "load generator -> origin", "bench/origin.py, one process")
        burrow = Target(
            "burrow",
            "load generator -> edge -> agent -> origin",
            f"this tree, edge and agent a process each, tunnel {stack.tunnel_url}",
        )
        run.targets += [direct, burrow]
        for target, port, host in (
            (direct, stack.origin_port, f"127.0.0.1:{stack.origin_port}"),
            (burrow, stack.edge_http_port, stack.tunnel_host),
        ):
            sample = origin_cpu if target is direct else stack.cpu_seconds
            _measure_target(run, target, port, host, log_dir, sample, None)
        for peer in peers:
            _run_peer(run, peer, stack.origin_port, log_dir, origin_cpu)
    finally:
        codes = stack.stop()
        run.wall_seconds = time.monotonic() - t0
    _check(run, stack, codes)
    return run


def _install(run: PeersRun) -> None:
    from bench.tools import format_tool_status, install_tools

    code = install_tools()
    if code != 0:
        run.notes.append(f"--install: installing the peer tools failed (status {code})")
    print(format_tool_status(), flush=True)


def _run_peer(
    run: PeersRun,
    peer: PeerTunnel,
    origin_port: int,
    log_dir: Path,
    origin_cpu: Callable[[], dict[str, float]],
) -> None:
    target = Target(peer.name, peer.path)
    run.targets.append(target)
    missing = peer.missing_tools()
    if missing:
        target.available = False
        target.reason = f"{', '.join(missing)} not installed (python -m bench tools --install)"
        return
    try:
        port, host = peer.start(origin_port)
        target.config = peer.config

        def sample() -> dict[str, float]:
            return {**origin_cpu(), **peer.cpu_seconds()}

        for scenario in run.scenarios:
            peer.check_alive()
            during = peer.observe if scenario.key == "small" else None
            _measure_target(run, target, port, host, log_dir, sample, during, [scenario])
    except (PeerUnavailable, OSError) as exc:
        if not target.config:
            target.available = False
            target.reason = str(exc)
        else:  # it started, then died: rows not measured yet say so
            for scenario in run.scenarios:
                target.failures.setdefault(scenario.key, str(exc))
    finally:
        peer.stop()
        target.findings += peer.findings
        nodelay = getattr(peer, "nodelay", None)
        if nodelay:
            target.details["tcp_nodelay"] = nodelay


def _measure_target(
    run: PeersRun,
    target: Target,
    port: int,
    host: str,
    log_dir: Path,
    sample: Callable[[], dict[str, float]],
    during: Callable[[], None] | None,
    only: list[Scenario] | None = None,
) -> None:
    for scenario in only if only is not None else run.scenarios:
        try:
            m = measure(scenario, target.name, port, host, run.settings, log_dir, sample, during)
        except StackError as exc:
            target.failures[scenario.key] = str(exc).splitlines()[0]
            continue
        run.measurements.append(m)


def measure(
    scenario: Scenario,
    target: str,
    port: int,
    host_header: str,
    settings: PeerSettings,
    log_dir: Path,
    sample: Callable[[], dict[str, float]],
    during: Callable[[], None] | None = None,
) -> Measurement:
    """One ``bench.loadgen`` process against one target, as ``http_suite.measure_load_child``
    does it, with the CPU sampler of the target's own processes and a hook that runs once
    the measurement window has opened (to look at sockets while they carry the load)."""
    argv = python_module(
        "bench.loadgen",
        "--port",
        str(port),
        "--host-header",
        host_header,
        "--path",
        scenario.path,
        "--connections",
        str(scenario.connections),
        "--duration",
        str(settings.duration),
        "--warmup",
        str(settings.warmup),
        "--mark-window",
        *(("--rate", str(scenario.rate)) if scenario.rate else ()),
    )
    slug = target.replace(" ", "").replace("-", "")
    child = Child("loadgen", argv, log_dir / f"loadgen-{scenario.key}-{slug}.log")
    try:
        child.read_ready(timeout=settings.warmup + 20)  # {"window": "start"}
        cpu_start = sample()
        if during is not None:
            during()
        child.read_ready(timeout=settings.duration + 20)  # {"window": "end"}
        cpu_end = sample()
        out = child.wait_output(timeout=20)
    finally:
        child.stop()
    lines = out.decode().strip().splitlines()
    if not lines:
        raise StackError(f"the load generator printed no result for {scenario.title} {target}")
    result = LoadResult.from_json(json.loads(lines[-1]))
    busy = busy_between(cpu_start, cpu_end, result.seconds)
    busy["loadgen"] = result.cpu_seconds / result.seconds if result.seconds else 0.0
    return Measurement(scenario, target, "loadgen", result, busy)


def _check(run: PeersRun, stack: BurrowStack, codes: dict[str, int | None]) -> None:
    problems = process_troubles(codes, stack, ("edge", "agent", "origin"))
    for m in run.measurements:
        trouble = load_trouble(f"{m.scenario.title} {m.target}", m.result)
        if trouble:
            problems.append(trouble)
    for target in run.targets:
        for key, why in target.failures.items():
            problems.append(f"{target.name} {key}: no figures: {why}")
    run.notes += problems
    run.troubled = bool(problems)


# -- the report ------------------------------------------------------------------------------


def _fmt_latency(value: float | None) -> str:
    if value is None:
        return "-"
    for limit, decimals in ((1, 3), (10, 2), (100, 1)):
        if value < limit:
            return f"{value:.{decimals}f}"
    return f"{value:,.0f}"


def _throughput(m: Measurement, unit: str) -> float:
    r = m.result
    return r.megabytes_per_second if unit == "MB/s" else r.requests_per_second


def format_peers_report(run: PeersRun) -> str:
    s = run.settings
    env = describe()
    lines = [
        f"Burrow bench peers: {s.duration:g} s per measurement after {s.warmup:g} s warm-up; "
        f"{headline(env)}",
        "Every row: the same origin process, the same load generator (bench.loadgen).",
    ]
    width = max(len(t.name) for t in run.targets) + 2
    for t in run.targets:
        what = t.config if t.available else f"not available: {t.reason}"
        lines.append(f"  {t.name:<{width}}{t.path}")
        if what:
            lines.append(f"  {'':<{width}}  {what}")
    by_key = {(m.scenario.key, m.target): m for m in run.measurements}
    for scenario in run.scenarios:
        unit = "MB/s" if "MB/s" in scenario.rows else "req/s"
        header = (
            f"{scenario.title:<18}{'':<{width - 2}}{unit:>10}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'vs direct':>11}{'tunnel CPU':>12}"
        )
        lines += ["", header, "-" * len(header)]
        direct = by_key.get((scenario.key, "direct"))
        base = _throughput(direct, unit) if direct is not None else 0.0
        for t in run.targets:
            m = by_key.get((scenario.key, t.name))
            label = f"  {t.name:<{18 + width - 4}}"
            if m is None:
                why = t.failures.get(scenario.key) or t.reason or "not measured"
                prefix = "failed" if t.available else "not available"
                lines.append(f"{label}{prefix}: {why}"[:160])
                continue
            if not m.result.requests:
                lines.append(f"{label}no response completed in the {m.result.seconds:.1f} s window")
                continue
            value = _throughput(m, unit)
            shown = f"{value:,.1f}" if unit == "MB/s" else f"{value:,.0f}"
            ratio = f"{value / base:.2f}" if base else "-"
            tunnel = [v for k, v in m.busy.items() if k not in _NOT_TUNNEL]
            cpu = f"{sum(tunnel):.2f}" if tunnel else "-"
            lines.append(
                f"{label}{shown:>10}{_fmt_latency(m.result.latency_ms.get('p50')):>9}"
                f"{_fmt_latency(m.result.latency_ms.get('p99')):>9}{ratio:>11}{cpu:>12}"
            )
    lines += [
        "",
        "vs direct: throughput over direct's. tunnel CPU: CPU seconds per wall second of the "
        "tunnel's own processes (edge+agent, sshd+ssh, front+back), 2.00 = both cores.",
    ]
    if any(scenario.rate for scenario in run.scenarios):
        lines.append(
            "At a fixed rate, requests fall due on a timetable and each latency runs from when "
            "it was due: a tunnel that falls behind is charged for the wait."
        )
    findings = [(t.name, f) for t in run.targets for f in t.findings]
    if findings:
        lines.append("findings:")
        lines += [f"  - {name}: {finding}" for name, finding in findings]
    lines.append(f"whole run {run.wall_seconds:.1f} s")
    if run.notes:
        lines.append("notes:")
        lines += [f"  - {note}" for note in run.notes]
    return "\n".join(lines)


# -- the command line --------------------------------------------------------------------------


def add_peers_arguments(p: argparse.ArgumentParser) -> None:
    """The options past the common ones (--duration, --warmup, --quick, --json, --logs)."""
    p.add_argument("--connections", type=int, default=50, help="for 1 KiB (default 50)")
    p.add_argument("--download-connections", type=int, default=10, help="for 1 MiB (default 10)")
    p.add_argument(
        "--rate",
        type=float,
        default=2000.0,
        help="requests per second of the fixed-rate 1 KiB row (default 2000; 0 leaves it out)",
    )
    p.add_argument(
        "--install",
        action="store_true",
        help="first install the missing peer programs with apt-get (root; see bench tools)",
    )
    p.add_argument(
        "--start-timeout",
        type=float,
        default=20.0,
        help="seconds a peer tunnel gets to carry its first request (default 20)",
    )


def run_peers_command(args: argparse.Namespace) -> int:
    duration = args.duration if args.duration is not None else (0.5 if args.quick else 5.0)
    warmup = args.warmup if args.warmup is not None else (0.1 if args.quick else 0.5)
    settings = PeerSettings(
        duration=duration,
        warmup=warmup,
        connections=args.connections,
        download_connections=args.download_connections,
        rate=args.rate,
        quick=args.quick,
        install=args.install,
        start_timeout=args.start_timeout,
    )
    if (
        duration <= 0
        or warmup < 0
        or min(settings.connections, settings.download_connections) < 1
        or settings.start_timeout <= 0
        or settings.rate < 0
    ):
        print(
            "bench peers: --duration and --start-timeout must be > 0, --warmup and --rate "
            ">= 0, and connection counts at least 1",
            file=sys.stderr,
        )
        return 2
    logs = SuiteLogs(args.logs, "burrow-bench-peers-")
    try:
        run = run_peers_bench(settings, logs.path)
    except StackError as exc:
        print(f"bench peers: {exc}\n(logs kept in {logs.path})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nbench peers: interrupted; every child process was stopped (logs in {logs.path})")
        return 130
    print(format_peers_report(run), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(run.to_json(), indent=2) + "\n")
        print(f"results written to {args.json}")
    logs.finish(troubled=run.troubled or any(not t.available for t in run.targets))
    return 0
