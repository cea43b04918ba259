"""``python -m bench run [scenario ...]``: each scenario measured DIRECT and THROUGH BURROW in
one run, reported in one shape (a table, ``--json``, ``--chart``).

    http-1k         GET /bytes/1024, 50 keep-alive connections, closed loop        req/s
    http-1k-1conn   GET /bytes/1024 on one connection: latency                     req/s
    download-1m     GET /bytes/1048576, 10 connections                             MB/s
    upload-10m      POST /upload with 10 MiB bodies, 4 connections                 MB/s
    websocket-echo  /ws, 50 connections, each sends 64 bytes and waits the echo    msg/s
    tcp-bulk        200 MB one way through a TCP tunnel into a sink, 1 connection  MB/s
    http-1k-rate    GET /bytes/1024 due at 2,000/s on a fixed timetable over 50
                    connections; latency runs from when each request was due       req/s

One stack serves the whole run: the origin, a TCP sink, the edge, and an agent with an HTTP
tunnel to the origin and a TCP tunnel to the sink. DIRECT is load generator -> origin (or
sink); BURROW is load generator -> edge -> agent link -> agent -> origin (or sink).

Every measurement is a fresh load generator process that prints a line as its window opens
and closes: the CPU time of every process is read at those two moments, and the edge's and
the agent's peak RSS (VmHWM) is restarted as the window opens, so the peak reported is that
measurement's. A measurement that fails is reported as failed; the run goes on.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from bench.environment import describe, headline
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

_MIB = 1024 * 1024
LATENCIES = ("p50", "p99", "p99.9")
_STARTUP_SLACK = 20.0  # seconds a load generator may take to start and connect


@dataclass(slots=True)
class RunSettings:
    duration: float = 10.0  # measured seconds per timed measurement
    warmup: float = 1.0
    quick: bool = False
    connections: int = 50  # http-1k, http-1k-rate
    download_connections: int = 10
    upload_connections: int = 4
    upload_bytes: int = 10 * _MIB
    websocket_connections: int = 50
    websocket_message_bytes: int = 64
    tcp_bytes: int = 200_000_000
    rate: float = 2000.0  # http-1k-rate: requests due per second

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunSettings:
        quick = bool(args.quick)
        settings = cls(
            duration=args.duration if args.duration is not None else (1.5 if quick else 10.0),
            warmup=args.warmup if args.warmup is not None else (0.3 if quick else 1.0),
            quick=quick,
            rate=args.rate,
        )
        if args.tcp_megabytes is not None:
            settings.tcp_bytes = int(args.tcp_megabytes * 1e6)
        elif quick:
            settings.tcp_bytes = 50_000_000
        if settings.duration <= 0 or settings.warmup < 0:
            raise ValueError("--duration must be > 0 and --warmup >= 0")
        if settings.rate <= 0 or settings.tcp_bytes < 1:
            raise ValueError("--rate and --tcp-megabytes must be > 0")
        return settings

    def to_json(self) -> dict[str, object]:
        return {
            "duration": self.duration,
            "warmup": self.warmup,
            "quick": self.quick,
            "connections": self.connections,
            "download_connections": self.download_connections,
            "upload_connections": self.upload_connections,
            "upload_bytes": self.upload_bytes,
            "websocket_connections": self.websocket_connections,
            "websocket_message_bytes": self.websocket_message_bytes,
            "tcp_bytes": self.tcp_bytes,
            "rate": self.rate,
        }


@dataclass(frozen=True, slots=True)
class RunScenario:
    name: str
    title: str
    unit: str  # "req/s" | "MB/s" | "msg/s"
    figure: str  # the throughput: "requests", "download" (response bodies), "upload"
    module: str  # the load generator
    args: tuple[str, ...]  # its arguments besides the target and the window
    service: str = "http"  # "http": the origin and the HTTP tunnel; "tcp": the sink
    timed: bool = True  # False: a fixed size (tcp-bulk), not --duration/--warmup

    def throughput(self, result: LoadResult) -> float:
        if self.figure == "download":
            return result.megabytes_per_second
        if self.figure == "upload":
            return result.upload_megabytes_per_second
        return result.requests_per_second


def run_scenarios(settings: RunSettings) -> dict[str, RunScenario]:
    s = settings
    loadgen, bytes_1k = "bench.loadgen", ("--path", "/bytes/1024")
    return {
        scenario.name: scenario
        for scenario in (
            RunScenario(
                "http-1k",
                f"HTTP/1.1 GET 1 KiB, {s.connections} keep-alive conns",
                "req/s",
                "requests",
                loadgen,
                (*bytes_1k, "--connections", str(s.connections)),
            ),
            RunScenario(
                "http-1k-1conn",
                "HTTP/1.1 GET 1 KiB, 1 conn",
                "req/s",
                "requests",
                loadgen,
                (*bytes_1k, "--connections", "1"),
            ),
            RunScenario(
                "download-1m",
                f"GET 1 MiB, {s.download_connections} conns",
                "MB/s",
                "download",
                loadgen,
                ("--path", "/bytes/1048576", "--connections", str(s.download_connections)),
            ),
            RunScenario(
                "upload-10m",
                f"POST {s.upload_bytes // _MIB} MiB, {s.upload_connections} conns",
                "MB/s",
                "upload",
                loadgen,
                (
                    "--path",
                    "/upload",
                    "--method",
                    "POST",
                    "--body-bytes",
                    str(s.upload_bytes),
                    "--expect-body",  # the origin answers the size it read
                    str(s.upload_bytes),
                    "--connections",
                    str(s.upload_connections),
                ),
            ),
            RunScenario(
                "websocket-echo",
                f"WebSocket echo {s.websocket_message_bytes} B, {s.websocket_connections} conns",
                "msg/s",
                "requests",
                "bench.loadgen_ws",
                (
                    "--path",
                    "/ws",
                    "--connections",
                    str(s.websocket_connections),
                    "--message-bytes",
                    str(s.websocket_message_bytes),
                ),
            ),
            RunScenario(
                "tcp-bulk",
                f"TCP {s.tcp_bytes / 1e6:g} MB one way, 1 conn",
                "MB/s",
                "upload",
                "bench.tcp_bulk",
                ("--bytes", str(s.tcp_bytes)),
                service="tcp",
                timed=False,
            ),
            RunScenario(
                "http-1k-rate",
                f"GET 1 KiB at {s.rate:,.0f}/s, {s.connections} conns",
                "req/s",
                "requests",
                loadgen,
                (*bytes_1k, "--connections", str(s.connections), "--rate", f"{s.rate:g}"),
            ),
        )
    }


SCENARIO_NAMES = tuple(run_scenarios(RunSettings()))


@dataclass(slots=True)
class TargetRun:
    """One side of a scenario: DIRECT or BURROW."""

    target: str  # "direct" | "burrow"
    result: LoadResult | None = None  # None when the measurement failed
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # process -> CPU s in window
    peak_rss_kib: dict[str, int] = field(default_factory=dict)  # process -> peak in window
    error: str = ""  # why it failed

    def latency_ms(self, name: str) -> float | None:
        return self.result.latency_ms.get(name) if self.result is not None else None

    def to_json(self, scenario: RunScenario) -> dict[str, object]:
        out: dict[str, object] = {"target": self.target}
        r = self.result
        if r is None:
            return {**out, "error": self.error}
        return {
            **out,
            "throughput": scenario.throughput(r),
            "unit": scenario.unit,
            "latency_ms": {name: r.latency_ms[name] for name in LATENCIES if name in r.latency_ms},
            "seconds": r.seconds,
            "count": r.requests,
            "errors": r.errors + r.disconnects + r.connect_failures,
            "cpu_seconds": self.cpu_seconds,
            "peak_rss_kib": self.peak_rss_kib,
            "load": r.to_json(),
        }


@dataclass(slots=True)
class ScenarioRun:
    scenario: RunScenario
    direct: TargetRun
    burrow: TargetRun

    def ratios(self) -> dict[str, float]:
        """burrow / direct: throughput (below 1: the tunnel is slower) and each latency
        (above 1: the tunnel is slower)."""
        d, b = self.direct.result, self.burrow.result
        if d is None or b is None:
            return {}
        out: dict[str, float] = {}
        dt, bt = self.scenario.throughput(d), self.scenario.throughput(b)
        if dt:
            out["throughput"] = bt / dt
        for name in LATENCIES:
            dl, bl = d.latency_ms.get(name), b.latency_ms.get(name)
            if dl and bl is not None:
                out[name] = bl / dl
        return out

    def to_json(self) -> dict[str, object]:
        s = self.scenario
        return {
            "name": s.name,
            "title": s.title,
            "unit": s.unit,
            "direct": self.direct.to_json(s),
            "burrow": self.burrow.to_json(s),
            "ratio": self.ratios(),
        }


@dataclass(slots=True)
class RunReport:
    settings: RunSettings
    scenarios: list[ScenarioRun] = field(default_factory=list)
    usage: dict[str, ProcessUsage] = field(default_factory=dict)  # at the end of the run
    # The whole run's peak RSS: VmHWM is restarted for every measurement, so what it said
    # before each restart is folded in here.
    peak_rss_kib: dict[str, int] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    wall_seconds: float = 0.0
    tunnel_urls: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    troubled: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "bench": "run",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "wall_seconds": self.wall_seconds,
            "environment": describe(),
            "settings": self.settings.to_json(),
            "tunnel_urls": self.tunnel_urls,
            "scenarios": [s.to_json() for s in self.scenarios],
            "processes": {
                name: {
                    "peak_rss_kib": self.peak_rss_kib.get(name, u.peak_rss_kib),
                    "cpu_seconds": u.cpu_seconds,
                    "exit_code": self.exit_codes.get(name),
                }
                for name, u in self.usage.items()
            },
            "notes": self.notes,
        }


def run_bench(names: list[str], settings: RunSettings, log_dir: Path) -> RunReport:
    table = run_scenarios(settings)
    chosen = [table[name] for name in names]
    report = RunReport(settings)
    t0 = time.monotonic()
    stack = BurrowStack(log_dir, tcp_sink=any(s.service == "tcp" for s in chosen))
    try:
        stack.start()
        report.tunnel_urls = [stack.tunnel_url]
        if stack.edge_tcp_port:
            report.tunnel_urls.append(f"tcp://127.0.0.1:{stack.edge_tcp_port}")
        for scenario in chosen:
            direct = _measure(stack, scenario, "direct", settings, report.peak_rss_kib)
            burrow = _measure(stack, scenario, "burrow", settings, report.peak_rss_kib)
            report.scenarios.append(ScenarioRun(scenario, direct, burrow))
        report.usage = stack.usage()
        _fold_peaks(report.peak_rss_kib, {n: u.peak_rss_kib for n, u in report.usage.items()})
    finally:
        report.exit_codes = stack.stop()
        report.wall_seconds = time.monotonic() - t0
    _check(report, stack)
    return report


def _target_argv(
    stack: BurrowStack, scenario: RunScenario, target: str, settings: RunSettings
) -> list[str]:
    if scenario.service == "tcp":
        port = stack.tcp_sink_port if target == "direct" else stack.edge_tcp_port
        where = ["--port", str(port)]
    elif target == "direct":
        where = [
            "--port",
            str(stack.origin_port),
            "--host-header",
            f"127.0.0.1:{stack.origin_port}",
        ]
    else:
        where = ["--port", str(stack.edge_http_port), "--host-header", stack.tunnel_host]
    timing = ["--duration", str(settings.duration), "--warmup", str(settings.warmup)]
    return python_module(
        scenario.module,
        *where,
        *(timing if scenario.timed else []),
        "--mark-window",
        *scenario.args,
    )


def _fold_peaks(peaks: dict[str, int], readings: dict[str, int]) -> None:
    for name, kib in readings.items():
        peaks[name] = max(peaks.get(name, 0), kib)


def _measure(
    stack: BurrowStack,
    scenario: RunScenario,
    target: str,
    settings: RunSettings,
    run_peaks: dict[str, int],
) -> TargetRun:
    run = TargetRun(target)
    argv = _target_argv(stack, scenario, target, settings)
    log = stack.log_dir / f"run-{scenario.name}-{target}.log"
    child = Child("load generator", argv, log)
    # A fixed-size transfer has no set duration: allow it minutes, not seconds.
    window = settings.duration + _STARTUP_SLACK if scenario.timed else 300.0
    warmup = settings.warmup + _STARTUP_SLACK if scenario.timed else 120.0
    try:
        child.read_ready(timeout=warmup)  # {"window": "start"}
        _fold_peaks(run_peaks, {n: c.probe.peak_rss_kib() for n, c in stack.children.items()})
        for process in stack.children.values():
            process.probe.reset_peak_rss()
        cpu_start = stack.cpu_seconds()
        child.read_ready(timeout=window)  # {"window": "end"}
        cpu_end = stack.cpu_seconds()
        run.peak_rss_kib = {name: c.probe.peak_rss_kib() for name, c in stack.children.items()}
        out = child.wait_output(timeout=20)
        lines = out.decode().strip().splitlines()
        if not lines:
            raise StackError("the load generator printed no result")
        result = LoadResult.from_json(json.loads(lines[-1]))
    except StackError as exc:
        run.error = str(exc)
        return run
    finally:
        child.stop()
    run.result = result
    run.cpu_seconds = {name: end - cpu_start.get(name, 0.0) for name, end in cpu_end.items()}
    run.cpu_seconds["loadgen"] = result.cpu_seconds
    return run


def _check(report: RunReport, stack: BurrowStack) -> None:
    """A note for every sign of trouble; ``report.troubled`` if there was any."""
    problems = process_troubles(report.exit_codes, stack)
    for s in report.scenarios:
        for side in (s.direct, s.burrow):
            label = f"{s.scenario.name} {side.target}"
            if side.result is None:
                problems.append(f"{label} failed: {side.error.splitlines()[0][:300]}")
            elif trouble := load_trouble(label, side.result):
                problems.append(trouble)
    report.notes += problems
    report.troubled = bool(problems)
    for s in report.scenarios:
        for side in (s.direct, s.burrow):
            r = side.result
            if r is None or not r.rate:
                continue
            lag = r.schedule_lag_ms
            report.notes.append(
                f"{s.scenario.name} {side.target}: {r.requests_per_second:,.0f} of "
                f"{r.rate:,.0f} req/s served, {r.unsent} due but unsent at the end; the "
                f"generator sent them {lag.get('p50', 0):.2f} ms late at p50, "
                f"{lag.get('p99', 0):.2f} ms at p99 (counted in the latencies)"
            )


# -- the text report ------------------------------------------------------------------------


def _throughput_text(unit: str, value: float) -> str:
    return f"{value:,.1f} {unit}" if unit == "MB/s" else f"{value:,.0f} {unit}"


def format_ms(value: float | None) -> str:
    """A latency in ms to about three significant figures; "-" when there is none."""
    if value is None:
        return "-"
    for limit, decimals in ((1, 3), (10, 2), (100, 1)):
        if value < limit:
            return f"{value:.{decimals}f}"
    return f"{value:,.0f}"


def format_run_report(report: RunReport) -> str:
    s = report.settings
    env = describe()
    lines = [
        f"Burrow bench run: {s.duration:g} s per measurement after {s.warmup:g} s warm-up "
        f"(tcp-bulk: a fixed size); {headline(env)}",
        f"tunnels {', '.join(report.tunnel_urls)}",
        "  direct = load generator -> origin (tcp-bulk: -> sink)",
        "  burrow = load generator -> edge -> agent link -> agent -> origin (or sink)",
        "",
    ]
    header = (
        f"{'scenario':<16}{'target':<8}{'throughput':>16}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'p99.9 ms':>10}{'edge CPU s':>12}{'agent CPU s':>13}{'edge MiB':>10}"
        f"{'agent MiB':>11}{'x thru':>8}{'x p99':>7}"
    )
    lines += [header, "-" * len(header)]
    for run in report.scenarios:
        ratios = run.ratios()
        for side in (run.direct, run.burrow):
            name = run.scenario.name if side is run.direct else ""
            r = side.result
            if r is None:
                lines.append(f"{name:<16}{side.target:<8}{'failed (see notes)':>16}")
                continue
            cells = "".join(
                f"{format_ms(side.latency_ms(q)):>{width}}"
                for q, width in zip(LATENCIES, (9, 9, 10), strict=True)
            )
            cpu = side.cpu_seconds
            rss = side.peak_rss_kib
            ratio = ""
            if side is run.burrow:
                thru, p99 = ratios.get("throughput"), ratios.get("p99")
                ratio = f"{thru:>8.2f}" if thru is not None else f"{'-':>8}"
                ratio += f"{p99:>7.2f}" if p99 is not None else f"{'-':>7}"
            lines.append(
                f"{name:<16}{side.target:<8}"
                f"{_throughput_text(run.scenario.unit, run.scenario.throughput(r)):>16}{cells}"
                f"{cpu.get('edge', 0.0):>12.2f}{cpu.get('agent', 0.0):>13.2f}"
                f"{rss.get('edge', 0) / 1024:>10.1f}{rss.get('agent', 0) / 1024:>11.1f}{ratio}"
            )
    lines += [
        "x thru = burrow/direct throughput (below 1: the tunnel is slower); x p99 = burrow/direct "
        "p99 latency (above 1: slower).",
        "CPU s = CPU seconds in the measurement window; MiB = peak RSS in it. MB = 10^6 bytes.",
        "",
        "scenarios:",
    ]
    lines += [f"  {run.scenario.name:<16}{run.scenario.title}" for run in report.scenarios]
    lines += ["", f"{'process':<10}{'peak RSS (VmHWM)':>18}{'CPU s, whole run':>18}"]
    for name, usage in report.usage.items():
        peak = report.peak_rss_kib.get(name, usage.peak_rss_kib)
        lines.append(f"{name:<10}{peak / 1024:>14.1f} MiB{usage.cpu_seconds:>18.2f}")
    lines.append(f"\nwhole run {report.wall_seconds:.1f} s")
    if report.notes:
        lines.append("notes:")
        lines += [f"  - {note}" for note in report.notes]
    return "\n".join(lines)


# -- the command ----------------------------------------------------------------------------


def add_run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run",
        help="scenarios (HTTP, uploads, WebSocket, TCP, constant rate), direct against burrow",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "scenario", nargs="*", help=f"any of {', '.join(SCENARIO_NAMES)} (default: all)"
    )
    run.add_argument(
        "--duration", type=float, help="measured seconds per measurement (default 10; quick 1.5)"
    )
    run.add_argument(
        "--warmup", type=float, help="unmeasured seconds before each (default 1; quick 0.3)"
    )
    run.add_argument("--quick", action="store_true", help="short smoke run (under a minute)")
    run.add_argument(
        "--rate", type=float, default=2000.0, help="http-1k-rate: requests per second (2000)"
    )
    run.add_argument(
        "--tcp-megabytes", type=float, help="tcp-bulk: MB to stream (default 200; quick 50)"
    )
    run.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    run.add_argument(
        "--chart", type=Path, metavar="PATH.png", help="draw latency and throughput (matplotlib)"
    )
    run.add_argument(
        "--logs", type=Path, metavar="DIR", help="keep component logs here (default: a temp dir)"
    )


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwind through the try/finally blocks that stop the child processes.
    raise KeyboardInterrupt


def run_command(args: argparse.Namespace) -> int:
    unknown = [name for name in args.scenario if name not in SCENARIO_NAMES]
    if unknown:
        print(
            f"bench run: unknown scenario {unknown[0]!r}; pick from {', '.join(SCENARIO_NAMES)}",
            file=sys.stderr,
        )
        return 2
    try:
        settings = RunSettings.from_args(args)
    except ValueError as exc:
        print(f"bench run: {exc}", file=sys.stderr)
        return 2
    if args.chart is not None:
        from bench.chart import ChartError, check_chart_support

        try:
            check_chart_support()  # before minutes of measuring, not after
        except ChartError as exc:
            print(f"bench run: {exc}", file=sys.stderr)
            return 2
    names = list(dict.fromkeys(args.scenario)) or list(SCENARIO_NAMES)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
        log_dir, keep_logs = args.logs, True
    else:
        log_dir, keep_logs = Path(tempfile.mkdtemp(prefix="burrow-run-")), False
    try:
        report = run_bench(names, settings, log_dir)
    except StackError as exc:
        print(f"bench run: {exc}\n(logs kept in {log_dir})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nbench run: interrupted; every child process was stopped (logs in {log_dir})")
        return 130
    print(format_run_report(report), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
        print(f"results written to {args.json}")
    if args.chart is not None:
        from bench.chart import write_chart

        write_chart(report, args.chart)
        print(f"chart written to {args.chart}")
    if report.troubled:
        keep_logs = True
        if args.logs is None:
            print(f"component logs kept in {log_dir}")
    if not keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0
