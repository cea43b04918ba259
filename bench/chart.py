"""``bench run --chart PATH.png``: one row per scenario, direct and burrow side by side.

Left, the latency percentiles (p50, p99, p99.9) as paired bars on a log scale, so a p50 of
0.2 ms and a p99.9 of 40 ms are both readable; right, the throughput in the scenario's unit
with the burrow/direct ratio in the title. Drawn with matplotlib's Agg canvas (no display
needed); matplotlib is the ``bench`` extra: ``pip install 'burrow-tunnel[bench]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bench.run_suite import LATENCIES, format_ms

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from bench.run_suite import RunReport, ScenarioRun

_COLORS = {"direct": "#4C72B0", "burrow": "#DD8452"}


class ChartError(Exception):
    """The chart cannot be drawn here; the message says what to install."""


def check_chart_support() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ChartError(
            "--chart needs matplotlib: pip install 'burrow-tunnel[bench]' (or pip install "
            "matplotlib), or leave --chart out"
        ) from None


def write_chart(report: RunReport, path: Path) -> None:
    check_chart_support()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = max(1, len(report.scenarios))
    fig = Figure(figsize=(13, 2.5 * rows + 1.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 2, squeeze=False, width_ratios=(3, 2))
    for (latency_ax, throughput_ax), run in zip(axes, report.scenarios, strict=False):
        _latency(latency_ax, run)
        _throughput(throughput_ax, run)
    s = report.settings
    fig.suptitle(
        f"Burrow bench run: direct vs through Burrow ({s.duration:g} s per measurement, "
        f"{s.warmup:g} s warm-up)",
        fontsize=13,
    )
    fig.savefig(path, dpi=100)


def _latency(ax: Axes, run: ScenarioRun) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_title(f"{run.scenario.name}: latency ({run.scenario.title})", fontsize=10, loc="left")
    sides = (run.direct, run.burrow)
    if not any(side.latency_ms(q) for side in sides for q in LATENCIES):
        ax.set_axis_off()
        why = "failed" if any(side.result is None for side in sides) else "not measured"
        if run.scenario.service == "tcp" and why == "not measured":
            why = "no per-request latency: one fixed-size transfer"
        ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="gray")
        return
    width = 0.38
    for i, side in enumerate(sides):
        xs = [j + (i - 0.5) * width for j in range(len(LATENCIES))]
        values = [side.latency_ms(q) or 0.0 for q in LATENCIES]
        bars = ax.bar(xs, values, width, label=side.target, color=_COLORS[side.target])
        labels = [format_ms(v) if v else "failed" for v in values]
        ax.bar_label(bars, labels=labels, fontsize=8, padding=2)
    ax.set_yscale("log")
    # Plain millisecond ticks at 1-2-5 steps ("0.5", "20"), not 5x10^-1, so a panel that
    # spans less than a decade still has a few.
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_ms(v)))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(range(len(LATENCIES)), list(LATENCIES))
    ax.set_ylabel("ms (log)")
    ax.margins(y=0.25)
    ax.legend(fontsize=8, loc="upper left")


def _throughput(ax: Axes, run: ScenarioRun) -> None:
    scenario = run.scenario
    sides = (run.direct, run.burrow)
    values = [
        scenario.throughput(side.result) if side.result is not None else 0.0 for side in sides
    ]
    ratio = run.ratios().get("throughput")
    suffix = f", burrow/direct {ratio:.2f}" if ratio is not None else ""
    ax.set_title(f"throughput, {scenario.unit}{suffix}", fontsize=10, loc="left")
    bars = ax.barh(
        [side.target for side in sides], values, color=[_COLORS[side.target] for side in sides]
    )
    fmt = "{:,.1f}" if scenario.unit == "MB/s" else "{:,.0f}"
    labels = [
        fmt.format(v) if side.result is not None else "failed"
        for v, side in zip(values, sides, strict=True)
    ]
    ax.bar_label(bars, labels=labels, fontsize=9, padding=3)
    ax.invert_yaxis()  # direct on top, as in the table
    ax.set_xlim(0, max([*values, 1.0]) * 1.25)
    ax.set_xlabel(scenario.unit)
