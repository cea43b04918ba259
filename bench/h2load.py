"""h2load (nghttp2's load generator, C) for HTTP/2 and HTTP/1.1 over TLS, when installed.

It runs timing-based (``-D`` after ``--warm-up-time``), connects to 127.0.0.1 while the URL
names ``bench.localhost`` (``--connect-to``), so SNI, ``:authority`` and Host carry the
tunnel's name. h2load prints no percentiles, so it also writes one line per request
(``--log-file``: start µs, status, µs until the end of the response) and the latencies go
into a ``LatencyHistogram``; only the measured phase is logged, not the warm-up.

h2load does not check the server's certificate; the built-in generators do.
"""

from __future__ import annotations

import re
import resource
import shutil
from pathlib import Path

from bench.histogram import LatencyHistogram
from bench.loadgen import LoadResult
from bench.stack import Child, StackError

_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout",
    re.MULTILINE,
)
_STATUSES = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.MULTILINE)
_PROTOCOL = re.compile(r"^Application protocol: (\S+)", re.MULTILINE)


def h2load_path() -> str | None:
    return shutil.which("h2load")


def parse_h2load(
    text: str, log_lines: list[str], *, connections: int, path: str, seconds: float
) -> tuple[LoadResult, str]:
    """The result and the protocol ALPN chose, from h2load's output and its request log."""
    requests = _REQUESTS.search(text)
    if requests is None:
        raise ValueError("h2load printed no 'requests: N total' line")
    _, _, _, succeeded, failed, errored, timeout = (int(n) for n in requests.groups())
    result = LoadResult(connections=connections, path=path, seconds=seconds)
    result.requests = succeeded
    # h2load counts a 4xx or 5xx as succeeded (the exchange completed); the bench does not.
    result.errors = failed + errored + timeout
    statuses = _STATUSES.search(text)
    if statuses is not None:
        result.errors += int(statuses.group(3)) + int(statuses.group(4))
        result.statuses = {
            f"{digit}xx": int(n)
            for digit, n in zip("2345", statuses.groups(), strict=True)
            if n != "0"
        }
    histogram = LatencyHistogram()
    for line in log_lines:
        fields = line.split("\t")
        if len(fields) >= 3 and fields[1] != "-1":
            histogram.record_ns(int(fields[2]) * 1000)
    result.latency_ms = histogram.summary_ms()
    protocol = _PROTOCOL.search(text)
    return result, protocol.group(1) if protocol is not None else "?"


def run_h2load(
    h2load: str,
    port: int,
    *,
    server_name: str,
    path: str,
    connections: int,
    streams: int,
    duration: float,
    warmup: float,
    http1: bool,
    log_dir: Path,
    label: str,
) -> tuple[LoadResult, str]:
    """One h2load run: the result (``cpu_seconds`` is h2load's, warm-up included) and the
    protocol ALPN chose."""
    request_log = log_dir / f"h2load-{label}.requests.tsv"
    argv = [
        h2load,
        "-t1",  # one thread: one core, as the built-in generators have
        f"-c{connections}",
        f"-m{streams}",
        f"-D{round(duration * 1000)}ms",
        *([f"--warm-up-time={round(warmup * 1000)}ms"] if warmup > 0 else []),
        f"--connect-to=127.0.0.1:{port}",
        f"--log-file={request_log}",
        *(["--h1"] if http1 else []),
        f"https://{server_name}:{port}{path}",
    ]
    cpu_before = _children_cpu_seconds()
    child = Child("h2load", argv, log_dir / f"h2load-{label}.log")
    try:
        out = child.wait_output(timeout=warmup + duration + 30)
    finally:
        child.stop()
    cpu = _children_cpu_seconds() - cpu_before
    text = out.decode(errors="replace")
    try:
        log_lines = request_log.read_text().splitlines()
    except OSError:
        log_lines = []
    try:
        result, protocol = parse_h2load(
            text, log_lines, connections=connections, path=path, seconds=duration
        )
    except ValueError as exc:
        raise StackError(f"h2load output not understood ({exc}): {out[-800:]!r}") from None
    request_log.unlink(missing_ok=True)  # a line per request: large, and now summarised
    result.cpu_seconds = cpu
    return result, protocol


def _children_cpu_seconds() -> float:
    """CPU time of every reaped child: h2load's own once it has been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _check() -> None:
    """Parse a sample of h2load's output (run by hand: ``python -m bench.h2load``)."""
    sample = """Application protocol: h2
finished in 1.20s, 9155.00 req/s, 9.65MB/s
requests: 9160 total, 9160 started, 9158 done, 9155 succeeded, 3 failed, 0 errored, 0 timeout
status codes: 9150 2xx, 0 3xx, 5 4xx, 0 5xx
"""
    log = ["1795645854577457\t200\t1000", "1795645854577458\t200\t3000", "1\t-1\t9"]
    result, protocol = parse_h2load(sample, log, connections=10, path="/bytes/1024", seconds=1.0)
    assert protocol == "h2", protocol
    assert result.requests == 9155 and result.errors == 8, result
    assert result.statuses == {"2xx": 9150, "4xx": 5}, result.statuses
    assert result.latency_ms["p50"] == 1.0 and result.latency_ms["max"] == 3.0, result.latency_ms
    print("h2load parser ok")


if __name__ == "__main__":
    _check()
