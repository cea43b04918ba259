"""``python -m bench http``: HTTP through a Burrow tunnel against the same origin direct.

Scenarios, each measured DIRECT (load generator -> origin) and THROUGH BURROW (load
generator -> edge -> agent link -> agent -> origin) in the same run, one after the other:

    small     GET /bytes/1024, 50 keep-alive connections: req/s, p50/p99
    download  GET /bytes/1048576, 10 connections: MB/s
    latency   GET /bytes/1024, 1 connection: p50/p99

Every measurement starts a fresh load generator process, which marks the start and end of
its measurement window on stdout; the CPU time of the origin, edge and agent is sampled at
those two moments, so each row says how busy each process was while it was measured.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.environment import describe
from bench.loadgen import LoadResult
from bench.stack import (
    BurrowStack,
    Child,
    ProcessUsage,
    StackError,
    load_trouble,
    process_troubles,
    python_module,
)
from bench.wrk import run_wrk, wrk_path


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    title: str
    path: str
    connections: int
    rows: tuple[str, ...]  # figures the report shows: "req/s", "MB/s", "p50", "p99"
    rate: float = 0.0  # requests due per second on a fixed timetable; 0: a closed loop


@dataclass(slots=True)
class Measurement:
    scenario: Scenario
    target: str  # "direct" | "burrow"
    tool: str  # "loadgen" | "wrk" | "h2load" | "loadgen-h2"
    result: LoadResult
    busy: dict[str, float] = field(default_factory=dict)  # process -> CPU s per wall s
    protocol: str = ""  # as the TLS handshake chose it ("h2", "http/1.1"); "" for plain HTTP

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "scenario": self.scenario.key,
            "target": self.target,
            "tool": self.tool,
        }
        if self.protocol:
            out["protocol"] = self.protocol
        return {**out, "busy": self.busy, **self.result.to_json()}


@dataclass(slots=True)
class HttpBenchSettings:
    duration: float = 5.0
    warmup: float = 0.5
    connections: int = 50
    download_connections: int = 10
    use_wrk: bool = True
    h2_connections: int = 10  # bench h2
    h2_streams: int = 10  # concurrent streams per HTTP/2 connection
    use_h2load: bool = True
    quick: bool = False  # a smoke run: second opinions (wrk, h2load in bench https) skipped


@dataclass(slots=True)
class HttpBenchRun:
    settings: HttpBenchSettings
    suite: str = "http"  # "http" | "https" | "h2"
    measurements: list[Measurement] = field(default_factory=list)
    usage: dict[str, ProcessUsage] = field(default_factory=dict)  # at the end of the run
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    wall_seconds: float = 0.0
    tunnel_url: str = ""
    notes: list[str] = field(default_factory=list)
    troubled: bool = False  # a component logged, failed a request or exited badly

    def environment(self) -> dict[str, object]:
        return describe()

    def settings_json(self) -> dict[str, object]:
        s = self.settings
        out: dict[str, object] = {"duration": s.duration, "warmup": s.warmup}
        if self.suite == "http":
            out["connections"] = s.connections
            out["download_connections"] = s.download_connections
            out["wrk"] = s.use_wrk
        elif self.suite == "https":
            out["connections"] = s.connections
        else:
            out["h2_connections"] = s.h2_connections
            out["h2_streams"] = s.h2_streams
            out["h2load"] = s.use_h2load
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "bench": self.suite,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "wall_seconds": self.wall_seconds,
            "environment": self.environment(),
            "settings": self.settings_json(),
            "tunnel_url": self.tunnel_url,
            "measurements": [m.to_json() for m in self.measurements],
            "processes": {
                name: {
                    "peak_rss_kib": u.peak_rss_kib,
                    "cpu_seconds": u.cpu_seconds,
                    "exit_code": self.exit_codes.get(name),
                }
                for name, u in self.usage.items()
            },
            "notes": self.notes,
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


def scenarios(settings: HttpBenchSettings) -> list[Scenario]:
    return [
        Scenario(
            "small",
            f"1 KiB, {settings.connections} conns",
            "/bytes/1024",
            settings.connections,
            ("req/s", "p50", "p99"),
        ),
        Scenario(
            "download",
            f"1 MiB, {settings.download_connections} conns",
            "/bytes/1048576",
            settings.download_connections,
            ("MB/s", "req/s", "p50", "p99"),
        ),
        Scenario("latency", "1 KiB, 1 conn", "/bytes/1024", 1, ("p50", "p99", "req/s")),
    ]


def run_http_bench(settings: HttpBenchSettings, log_dir: Path) -> HttpBenchRun:
    run = HttpBenchRun(settings)
    t0 = time.monotonic()
    stack = BurrowStack(log_dir)
    try:
        stack.start()
        run.tunnel_url = stack.tunnel_url
        targets = {
            "direct": (stack.origin_port, f"127.0.0.1:{stack.origin_port}"),
            "burrow": (stack.edge_http_port, stack.tunnel_host),
        }
        for scenario in scenarios(settings):
            for target, (port, host_header) in targets.items():
                run.measurements.append(
                    _measure_loadgen(stack, scenario, target, port, host_header, settings)
                )
        wrk = wrk_path() if settings.use_wrk else None
        if wrk is not None:
            small = Scenario(
                "small-wrk",
                f"wrk 1 KiB, {settings.connections} conns",
                "/bytes/1024",
                settings.connections,
                ("req/s", "p50", "p99"),
            )
            for target, (port, host_header) in targets.items():
                run.measurements.append(
                    _measure_wrk(stack, wrk, small, target, port, host_header, settings)
                )
        elif settings.use_wrk:
            run.notes.append("wrk is not installed: only the built-in load generator ran")
        run.usage = stack.usage()
    finally:
        run.exit_codes = stack.stop()
        run.wall_seconds = time.monotonic() - t0
    check_run(run, stack)
    return run


def check_run(run: HttpBenchRun, stack: BurrowStack) -> None:
    """Add a note for every sign of trouble and set ``run.troubled``."""
    problems = process_troubles(run.exit_codes, stack, ("edge", "agent", "origin"))
    for m in run.measurements:
        trouble = load_trouble(f"{m.scenario.title} {m.target}", m.result)
        if trouble:
            problems.append(trouble)
    run.notes += problems
    run.troubled = bool(problems)


def _measure_loadgen(
    stack: BurrowStack,
    scenario: Scenario,
    target: str,
    port: int,
    host_header: str,
    settings: HttpBenchSettings,
) -> Measurement:
    return measure_load_child(
        stack, "bench.loadgen", scenario, target, port, host_header, settings, []
    )


def measure_load_child(
    stack: BurrowStack,
    module: str,
    scenario: Scenario,
    target: str,
    port: int,
    host_header: str,
    settings: HttpBenchSettings,
    extra: list[str],
) -> Measurement:
    """Run a Python load generator (``bench.loadgen`` or ``bench.loadgen_h2``) in a process
    of its own, sampling the stack's CPU as it opens and closes its measurement window."""
    argv = python_module(
        module,
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
        *extra,
    )
    child = Child("loadgen", argv, stack.log_dir / f"loadgen-{scenario.key}-{target}.log")
    try:
        child.read_ready(timeout=settings.warmup + 20)  # {"window": "start"}
        cpu_start = stack.cpu_seconds()
        child.read_ready(timeout=settings.duration + 20)  # {"window": "end"}
        cpu_end = stack.cpu_seconds()
        out = child.wait_output(timeout=20)
    finally:
        child.stop()
    lines = out.decode().strip().splitlines()
    if not lines:
        raise StackError(f"the load generator printed no result for {scenario.title} {target}")
    result = LoadResult.from_json(json.loads(lines[-1]))
    busy = busy_between(cpu_start, cpu_end, result.seconds)
    busy["loadgen"] = result.cpu_seconds / result.seconds if result.seconds else 0.0
    tool = "loadgen-h2" if module.endswith("_h2") else "loadgen"
    return Measurement(scenario, target, tool, result, busy)


def _measure_wrk(
    stack: BurrowStack,
    wrk: str,
    scenario: Scenario,
    target: str,
    port: int,
    host_header: str,
    settings: HttpBenchSettings,
) -> Measurement:
    cpu_start = stack.cpu_seconds()
    t0 = time.monotonic()
    result = run_wrk(
        wrk,
        port,
        host_header=host_header,
        path=scenario.path,
        connections=scenario.connections,
        duration=settings.duration,
        log_path=stack.log_dir / f"wrk-{target}.log",
    )
    wall = time.monotonic() - t0
    return Measurement(
        scenario, target, "wrk", result, busy_between(cpu_start, stack.cpu_seconds(), wall)
    )


def busy_between(
    start: dict[str, float], end: dict[str, float], seconds: float
) -> dict[str, float]:
    if seconds <= 0:
        return {}
    return {name: (end[name] - start.get(name, 0.0)) / seconds for name in end}
