"""``python -m bench https`` and ``python -m bench h2``: Burrow's HTTPS listener against a TLS
origin measured direct in the same run.

Each run makes a throwaway CA and a certificate for ``bench.localhost`` (bench.certificates),
starts an origin that serves HTTP on one port and HTTPS on another (same process, same
handler), an edge with its HTTPS listener on that certificate, and an agent whose tunnel is
``bench.localhost`` -> the origin's plain port. So:

    DIRECT TLS  load generator -TLS-> origin HTTPS port
    BURROW      load generator -TLS-> edge HTTPS (terminated there) -> agent link -> agent
                -> origin HTTP port

https (HTTP/1.1 by ALPN, built-in load generator; h2load --h1 as a second opinion)
    small     GET /bytes/1024, 50 keep-alive connections: req/s, p50/p99
    latency   GET /bytes/1024, 1 connection: p50/p99

h2 (the same number of requests in flight in every row: connections x streams)
    the origin speaks only HTTP/1.1, so the direct baselines are HTTP/1.1 over TLS:
    A  direct  HTTP/1.1, C*S connections, one request each      h2load --h1, else loadgen
    B  direct  HTTP/1.1, C connections x S pipelined            h2load --h1 only
    C  burrow  HTTP/2, C connections x S concurrent streams     h2load, else loadgen_h2
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.certificates import BenchCertificates
from bench.h2load import h2load_path, run_h2load
from bench.http_suite import (
    HttpBenchRun,
    HttpBenchSettings,
    Measurement,
    Scenario,
    busy_between,
    check_run,
    measure_load_child,
)
from bench.stack import BurrowStack, StackError

_PATH = "/bytes/1024"


def _start(stack: BurrowStack, certs: BenchCertificates, run: HttpBenchRun) -> None:
    stack.start()
    run.tunnel_url = stack.tunnel_url
    if stack.tunnel_host != certs.server_name:
        raise StackError(
            f"the tunnel is {stack.tunnel_host!r} but the bench certificate names "
            f"{certs.server_name!r}: the edge gave the tunnel a different host name"
        )


def run_https_bench(settings: HttpBenchSettings, log_dir: Path) -> HttpBenchRun:
    run = HttpBenchRun(settings, suite="https")
    t0 = time.monotonic()
    with BenchCertificates.create() as certs:
        stack = BurrowStack(log_dir, certificates=certs)
        try:
            _start(stack, certs, run)
            name = certs.server_name
            # (port, Host header): SNI is bench.localhost on both paths.
            targets = {
                "direct": (stack.origin_tls_port, name),
                "burrow": (stack.edge_https_port, stack.tunnel_host),
            }
            tls = ["--tls", "--ca-file", str(certs.ca_file), "--server-name", name]
            for scenario in (
                Scenario(
                    "small",
                    f"1 KiB, {settings.connections} conns",
                    _PATH,
                    settings.connections,
                    ("req/s", "p50", "p99"),
                ),
                Scenario("latency", "1 KiB, 1 conn", _PATH, 1, ("p50", "p99", "req/s")),
            ):
                for target, (port, host_header) in targets.items():
                    m = measure_load_child(
                        stack, "bench.loadgen", scenario, target, port, host_header, settings, tls
                    )
                    m.protocol = "http/1.1"  # the only protocol the load generator offers
                    run.measurements.append(m)
            h2load = h2load_path() if settings.use_h2load and not settings.quick else None
            if h2load is not None:
                second = Scenario(
                    "small-h2load",
                    f"h2load 1 KiB, {settings.connections} conns",
                    _PATH,
                    settings.connections,
                    ("req/s", "p50", "p99"),
                )
                for target, (port, _) in targets.items():
                    run.measurements.append(
                        _measure_h2load(stack, h2load, second, target, port, 1, True, settings)
                    )
            elif settings.use_h2load and not settings.quick:
                run.notes.append("h2load is not installed: only the built-in load generator ran")
            run.usage = stack.usage()
        finally:
            run.exit_codes = stack.stop()
            run.wall_seconds = time.monotonic() - t0
    check_run(run, stack)
    _check_protocols(run)
    return run


def h2_scenarios(settings: HttpBenchSettings) -> dict[str, Scenario]:
    c, s = settings.h2_connections, settings.h2_streams
    rows = ("req/s", "p50", "p99")
    return {
        "h1-conns": Scenario("h1-conns", f"HTTP/1.1, {c * s} conns x 1", _PATH, c * s, rows),
        "h1-pipelined": Scenario(
            "h1-pipelined", f"HTTP/1.1, {c} conns x {s} pipelined", _PATH, c, rows
        ),
        "h2-streams": Scenario("h2-streams", f"HTTP/2, {c} conns x {s} streams", _PATH, c, rows),
    }


def run_h2_bench(settings: HttpBenchSettings, log_dir: Path) -> HttpBenchRun:
    run = HttpBenchRun(settings, suite="h2")
    t0 = time.monotonic()
    scenarios = h2_scenarios(settings)
    streams = settings.h2_streams
    with BenchCertificates.create() as certs:
        stack = BurrowStack(log_dir, certificates=certs)
        try:
            _start(stack, certs, run)
            name = certs.server_name
            direct, burrow = stack.origin_tls_port, stack.edge_https_port
            h2load = h2load_path() if settings.use_h2load else None
            if h2load is not None:
                for key, target, port, depth, http1 in (
                    ("h1-conns", "direct", direct, 1, True),
                    ("h1-pipelined", "direct", direct, streams, True),
                    ("h2-streams", "burrow", burrow, streams, False),
                ):
                    run.measurements.append(
                        _measure_h2load(
                            stack, h2load, scenarios[key], target, port, depth, http1, settings
                        )
                    )
            else:
                if settings.use_h2load:
                    run.notes.append(
                        "h2load is not installed (python -m bench tools --install): the "
                        "built-in clients measured every row, and the pipelined row is skipped"
                    )
                ca = ["--ca-file", str(certs.ca_file), "--server-name", name]
                m = measure_load_child(
                    stack,
                    "bench.loadgen",
                    scenarios["h1-conns"],
                    "direct",
                    direct,
                    name,
                    settings,
                    ["--tls", *ca],
                )
                m.protocol = "http/1.1"
                run.measurements.append(m)
                m = measure_load_child(
                    stack,
                    "bench.loadgen_h2",
                    scenarios["h2-streams"],
                    "burrow",
                    burrow,
                    stack.tunnel_host,
                    settings,
                    ["--streams", str(streams), *ca],
                )
                m.protocol = "h2"  # loadgen_h2 stops the run if ALPN chose anything else
                run.measurements.append(m)
            run.usage = stack.usage()
        finally:
            run.exit_codes = stack.stop()
            run.wall_seconds = time.monotonic() - t0
    check_run(run, stack)
    _check_protocols(run)
    return run


def _measure_h2load(
    stack: BurrowStack,
    h2load: str,
    scenario: Scenario,
    target: str,
    port: int,
    streams: int,
    http1: bool,
    settings: HttpBenchSettings,
) -> Measurement:
    cpu_start = stack.cpu_seconds()
    t0 = time.monotonic()
    result, protocol = run_h2load(
        h2load,
        port,
        server_name=stack.tunnel_host,
        path=scenario.path,
        connections=scenario.connections,
        streams=streams,
        duration=settings.duration,
        warmup=settings.warmup,
        http1=http1,
        log_dir=stack.log_dir,
        label=f"{scenario.key}-{target}",
    )
    wall = time.monotonic() - t0
    # Busy over the whole h2load run (connects and warm-up too): it marks no window.
    busy = busy_between(cpu_start, stack.cpu_seconds(), wall)
    busy["loadgen"] = result.cpu_seconds / wall if wall else 0.0
    return Measurement(scenario, target, "h2load", result, busy, protocol)


def _check_protocols(run: HttpBenchRun) -> None:
    """A row measured over another protocol than its title says would mislead: flag it."""
    for m in run.measurements:
        expected = "h2" if m.scenario.title.startswith("HTTP/2") else "http/1.1"
        if m.protocol and m.protocol != expected:
            run.notes.append(
                f"{m.scenario.title} {m.target}: ALPN chose {m.protocol}, not {expected}"
            )
            run.troubled = True
