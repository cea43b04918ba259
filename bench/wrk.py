"""Optional second opinion from ``wrk`` (C, many connections per thread), when installed.

Its figures are read from the text it prints with ``--latency`` into a ``LoadResult``, so
the report puts them beside the built-in generator's.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from bench.loadgen import LoadResult
from bench.stack import Child, StackError

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_LATENCY_MAX = re.compile(r"^\s*Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m|h)", re.MULTILINE)


def wrk_path() -> str | None:
    return shutil.which("wrk")


def parse_wrk(text: str, connections: int, path: str) -> LoadResult:
    total = _TOTAL.search(text)
    if total is None:
        raise ValueError("wrk printed no 'N requests in T' line")
    seconds = float(total.group(2)) * _UNITS[total.group(3)] / 1000
    result = LoadResult(connections=connections, path=path, seconds=seconds)
    result.requests = int(total.group(1))
    for q, value, unit in _PERCENTILE.findall(text):
        result.latency_ms[f"p{q}"] = float(value) * _UNITS[unit]
    top = _LATENCY_MAX.search(text)
    if top is not None:
        result.latency_ms["max"] = float(top.group(1)) * _UNITS[top.group(2)]
    non_2xx = _NON_2XX.search(text)
    if non_2xx is not None:
        result.errors += int(non_2xx.group(1))
    socket_errors = _SOCKET_ERRORS.search(text)
    if socket_errors is not None:
        result.connect_failures = int(socket_errors.group(1))
        result.errors += sum(int(n) for n in socket_errors.groups()[1:])
    return result


def run_wrk(
    wrk: str,
    port: int,
    *,
    host_header: str,
    path: str,
    connections: int,
    duration: float,
    log_path: Path,
) -> LoadResult:
    """Run wrk with one thread (one core, as the built-in generator has) and parse it."""
    seconds = max(1, round(duration))  # wrk takes whole seconds
    argv = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-H",
        f"Host: {host_header}",
        f"http://127.0.0.1:{port}{path}",
    ]
    child = Child("wrk", argv, log_path)
    try:
        out = child.wait_output(timeout=seconds + 30)
    finally:
        child.stop()
    try:
        return parse_wrk(out.decode(errors="replace"), connections, path)
    except ValueError as exc:
        raise StackError(f"wrk output not understood ({exc}): {out[:500]!r}") from None


def _check() -> None:
    """Parse a sample of wrk's output (run by hand: ``python -m bench.wrk``)."""
    sample = """Running 5s test @ http://127.0.0.1:8080/bytes/1024
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  345.00us  10.50ms   90.00%
    Req/Sec    40.12k     1.23k   42.00k    80.00%
  Latency Distribution
     50%    1.20ms
     75%    1.40ms
     90%  850.00us
     99%    2.50ms
  200000 requests in 5.00s, 220.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 10
Requests/sec:  40000.00
Transfer/sec:     44.00MB
"""
    result = parse_wrk(sample, 50, "/bytes/1024")
    assert result.requests == 200000 and result.seconds == 5.0, result
    assert result.latency_ms == {"p50": 1.2, "p75": 1.4, "p90": 0.85, "p99": 2.5, "max": 10.5}
    assert result.errors == 13, result
    print("wrk parser ok")


if __name__ == "__main__":
    _check()
