"""The text report of a ``python -m bench http`` run: figures, CPU, memory, notes."""

from __future__ import annotations

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


def format_report(run: HttpBenchRun) -> str:
    s = run.settings
    env = run.environment()
    lines = [
        f"Burrow bench http: {s.duration:g} s per measurement after {s.warmup:g} s warm-up; "
        f"{env['cpus']} CPUs, Python {env['python']}, uvloop {env['uvloop']}",
        f"tunnel {run.tunnel_url}  (direct = load generator -> origin; burrow = load "
        "generator -> edge -> agent -> origin)",
        "",
    ]
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
    lines += [
        "MB/s = 10^6 response-body bytes per second. On latency rows a ratio above 1 means "
        "the tunnel is slower.",
        "",
        "CPU busy while measured (CPU seconds per wall second; 1.00 = one whole core)",
    ]
    header = f"{'measurement':<30}" + "".join(f"{p:>9}" for p in _PROCESSES)
    lines += [header, "-" * len(header)]
    for m in run.measurements:
        name = f"{m.scenario.title} {m.target}"
        cells = "".join(f"{m.busy[p]:>9.2f}" if p in m.busy else f"{'-':>9}" for p in _PROCESSES)
        lines.append(f"{name:<30}{cells}")
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
    return "\n".join(lines)
