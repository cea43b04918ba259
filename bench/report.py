"""The text reports: ``bench http`` and ``bench https`` (direct and burrow side by side, with
their ratio) and ``bench h2`` (one row per measurement, each naming its target, protocol and
tool, then ratios); all end with CPU, memory and notes."""

from __future__ import annotations

from bench.environment import headline
from bench.http_suite import HttpBenchRun, Measurement

_PROCESSES = ("loadgen", "origin", "edge", "agent")


def _figure(m: Measurement, row: str) -> float | None:
    r = m.result
    if row == "req/s":
        return r.requests_per_second
    if row == "MB/s":
        return r.megabytes_per_second
    return r.latency_ms.get(row)


def _fmt(row: str, value: float | None) -> str:
    if value is None:
        return "-"
    if row == "req/s":
        return f"{value:,.0f}"
    if row == "MB/s":
        return f"{value:,.1f}"
    # Latency in ms, about three significant figures.
    for limit, decimals in ((1, 3), (10, 2), (100, 1)):
        if value < limit:
            return f"{value:.{decimals}f}"
    return f"{value:,.0f}"


def _label(row: str) -> str:
    return row if row in ("req/s", "MB/s") else f"{row} ms"


_HTTPS_PATHS = (
    "  direct = load generator -TLS-> the origin's HTTPS port (same origin process)\n"
    "  burrow = load generator -TLS-> edge HTTPS listener (TLS ends here) -> agent -> origin\n"
    "  HTTP/1.1 chosen by ALPN; SNI and Host bench.localhost; certificate from a throwaway CA"
)


def format_any_report(run: HttpBenchRun) -> str:
    if run.suite == "h2":
        return format_h2_report(run)
    return format_report(run)


def _title(run: HttpBenchRun) -> str:
    s = run.settings
    env = run.environment()
    return (
        f"Burrow bench {run.suite}: {s.duration:g} s per measurement after {s.warmup:g} s "
        f"warm-up; {headline(env)}"
    )


def format_report(run: HttpBenchRun) -> str:
    if run.suite == "https":
        paths = f"tunnel {run.tunnel_url}\n{_HTTPS_PATHS}"
    else:
        paths = (
            f"tunnel {run.tunnel_url}  (direct = load generator -> origin; burrow = load "
            "generator -> edge -> agent -> origin)"
        )
    lines = [_title(run), paths, ""]
    header = f"{'scenario':<22} {'figure':<8} {'direct':>11} {'burrow':>11} {'burrow/direct':>14}"
    lines += [header, "-" * len(header)]
    by_key: dict[tuple[str, str], Measurement] = {
        (m.scenario.key, m.target): m for m in run.measurements
    }
    seen: list[str] = []
    for m in run.measurements:
        if m.scenario.key in seen:
            continue
        seen.append(m.scenario.key)
        direct = by_key.get((m.scenario.key, "direct"))
        burrow = by_key.get((m.scenario.key, "burrow"))
        for i, row in enumerate(m.scenario.rows):
            d = _figure(direct, row) if direct else None
            b = _figure(burrow, row) if burrow else None
            ratio = f"{b / d:.2f}" if d and b is not None else "-"
            title = m.scenario.title if i == 0 else ""
            lines.append(
                f"{title:<22} {_label(row):<8} {_fmt(row, d):>11} {_fmt(row, b):>11} {ratio:>14}"
            )
    lines.append(
        "MB/s = 10^6 response-body bytes per second. On latency rows a ratio above 1 means "
        "the tunnel is slower."
    )
    return "\n".join(lines + _footer(run))


def _footer(run: HttpBenchRun) -> list[str]:
    lines = ["", "CPU busy while measured (CPU seconds per wall second; 1.00 = one whole core)"]
    names = [f"{m.scenario.title} {m.target}" for m in run.measurements]
    width = max([30, *(len(name) + 2 for name in names)])
    header = f"{'measurement':<{width}}" + "".join(f"{p:>9}" for p in _PROCESSES)
    lines += [header, "-" * len(header)]
    for name, m in zip(names, run.measurements, strict=True):
        cells = "".join(f"{m.busy[p]:>9.2f}" if p in m.busy else f"{'-':>9}" for p in _PROCESSES)
        lines.append(f"{name:<{width}}{cells}")
    lines += ["", f"{'process':<10}{'peak RSS (VmHWM)':>18}{'CPU s, whole run':>18}"]
    for name in ("edge", "agent", "origin"):
        usage = run.usage.get(name)
        if usage is None:
            continue
        lines.append(f"{name:<10}{usage.peak_rss_kib / 1024:>14.1f} MiB{usage.cpu_seconds:>18.2f}")
    lines.append(f"\nwhole run {run.wall_seconds:.1f} s")
    if run.notes:
        lines.append("notes:")
        lines += [f"  - {note}" for note in run.notes]
    return lines


_H2_TARGETS = {
    "direct": "direct TLS origin",
    "burrow": "burrow HTTPS edge",
}
_TOOLS = {
    "h2load": "h2load",
    "loadgen": "built-in (h1)",
    "loadgen-h2": "built-in (h2)",
}


def format_h2_report(run: HttpBenchRun) -> str:
    s = run.settings
    in_flight = s.h2_connections * s.h2_streams
    lines = [
        _title(run),
        f"tunnel {run.tunnel_url}; GET /bytes/1024 with {in_flight} requests in flight in "
        "every row",
        "  direct = load generator -TLS-> the origin's HTTPS port: HTTP/1.1, the origin has "
        "no HTTP/2",
        "  burrow = load generator -TLS-> edge HTTPS listener (HTTP/2 by ALPN) -> agent -> origin",
        "",
    ]
    shape = max([16, *(len(m.scenario.title) + 2 for m in run.measurements)])
    header = (
        f"{'row':<4}{'target':<19}{'protocol, shape':<{shape}}{'tool':<15}"
        f"{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
    )
    lines += [header, "-" * len(header)]
    letters = "ABCDEFGH"
    for letter, m in zip(letters, run.measurements, strict=False):
        tool = _TOOLS.get(m.tool, m.tool)
        if m.tool == "h2load" and m.scenario.title.startswith("HTTP/1.1"):
            tool = "h2load --h1"
        lines.append(
            f"{letter:<4}{_H2_TARGETS.get(m.target, m.target):<19}{m.scenario.title:<{shape}}"
            f"{tool:<15}{_fmt('req/s', _figure(m, 'req/s')):>10}"
            f"{_fmt('p50', _figure(m, 'p50')):>9}{_fmt('p99', _figure(m, 'p99')):>9}"
        )
    rows = list(zip(letters, run.measurements, strict=False))
    burrow = [(letter, m) for letter, m in rows if m.target == "burrow"]
    direct = [(letter, m) for letter, m in rows if m.target == "direct"]
    if burrow and direct:
        lines += [
            "",
            "burrow / direct (req/s below 1 and latency above 1 mean the tunnel is slower)",
        ]
        for b_letter, b in burrow:
            for d_letter, d in direct:
                cells = []
                for row in ("req/s", "p50", "p99"):
                    bv, dv = _figure(b, row), _figure(d, row)
                    ratio = f"{bv / dv:.2f}" if dv and bv is not None else "-"
                    cells.append(f"{_label(row)} {ratio}")
                lines.append(
                    f"  {b_letter}/{d_letter}  " + "   ".join(cells) + f"   ({d.scenario.title})"
                )
    if any(m.tool == "h2load" for m in run.measurements):
        lines.append(
            "h2load rows: CPU and busy figures include h2load's warm-up; h2load does not check "
            "the certificate (the built-in clients do)."
        )
    return "\n".join(lines + _footer(run))
