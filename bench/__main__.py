"""``python -m bench``: Burrow's load-test harness.

python -m bench http                    the full HTTP run (about 45 s)
python -m bench http --quick            a smoke run (a few seconds)
python -m bench http --json out.json    also write the figures as JSON
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from bench.http_suite import HttpBenchSettings, run_http_bench
from bench.report import format_report
from bench.stack import StackError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="Burrow load tests.")
    sub = p.add_subparsers(dest="suite", required=True)
    http = sub.add_parser(
        "http",
        help="HTTP/1.1 through a tunnel against the origin direct",
        description="Start an origin, an edge and an agent (a process each) on 127.0.0.1 and "
        "measure small requests, large downloads and single-connection latency, direct and "
        "through the tunnel.",
    )
    http.add_argument(
        "--duration", type=float, help="measured seconds per measurement (default 5; quick 0.5)"
    )
    http.add_argument(
        "--warmup", type=float, help="unmeasured seconds before each (default 0.5; quick 0.1)"
    )
    http.add_argument("--connections", type=int, default=50, help="for 1 KiB (default 50)")
    http.add_argument("--download-connections", type=int, default=10, help="for 1 MiB (default 10)")
    http.add_argument("--quick", action="store_true", help="short smoke run; skips wrk")
    http.add_argument("--no-wrk", action="store_true", help="do not run wrk even if installed")
    http.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    http.add_argument(
        "--logs", type=Path, metavar="DIR", help="keep component logs here (default: a temp dir)"
    )
    return p


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwind through the try/finally blocks that stop the child processes.
    raise KeyboardInterrupt


def _settings(args: argparse.Namespace) -> HttpBenchSettings:
    duration = args.duration if args.duration is not None else (0.5 if args.quick else 5.0)
    warmup = args.warmup if args.warmup is not None else (0.1 if args.quick else 0.5)
    if duration <= 0 or warmup < 0 or args.connections < 1 or args.download_connections < 1:
        raise ValueError("--duration must be > 0, --warmup >= 0 and connection counts at least 1")
    return HttpBenchSettings(
        duration=duration,
        warmup=warmup,
        connections=args.connections,
        download_connections=args.download_connections,
        use_wrk=not (args.quick or args.no_wrk),
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
        log_dir, keep_logs = args.logs, True
    else:
        log_dir, keep_logs = Path(tempfile.mkdtemp(prefix="burrow-bench-")), False
    try:
        run = run_http_bench(settings, log_dir)
    except StackError as exc:
        print(f"bench: {exc}\n(logs kept in {log_dir})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nbench: interrupted; every child process was stopped (logs in {log_dir})")
        return 130
    print(format_report(run))
    if args.json is not None:
        run.write_json(args.json)
        print(f"results written to {args.json}")
    if run.troubled and not keep_logs:
        keep_logs = True
        print(f"component logs kept in {log_dir}")
    if not keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
