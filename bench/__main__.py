"""``python -m bench``: Burrow's load-test harness.

python -m bench http                    the full HTTP run (about 45 s)
python -m bench http --quick            a smoke run (a few seconds)
python -m bench http --json out.json    also write the figures as JSON
python -m bench https                   HTTP/1.1 over TLS: direct TLS origin vs the HTTPS edge
python -m bench h2                      HTTP/2 through the HTTPS edge vs HTTP/1.1 direct TLS
python -m bench all                     http, https and h2, one after the other
python -m bench tools [--install]       the optional load generators (wrk, h2load) and peers
python -m bench peers [--install]       Burrow beside ssh -R and PageKite, direct as the baseline
python -m bench scale [scenario ...]    10,000 idle visitors, 1,000 agents, an edge restart
python -m bench longlink [--rtt-ms MS ...] one 200 MB download (and 10 streams) through an agent
                                        link with a long round trip, Burrow vs ssh -R
python -m bench run [scenario ...]      HTTP, uploads, WebSocket, TCP, constant rate: direct vs
                                        burrow in one table [--json PATH] [--chart PATH.png]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from bench.http_suite import HttpBenchRun, HttpBenchSettings, run_http_bench
from bench.instructions import add_instructions_parser, run_instructions
from bench.longlink import add_longlink_parser, run_longlink_command
from bench.peers import add_peers_arguments, run_peers_command
from bench.report import format_any_report
from bench.run_suite import add_run_parser, run_command
from bench.scale_suite import add_scale_parser, run_scale
from bench.stack import StackError

_SUITES = ("http", "https", "h2")


def _common(p: argparse.ArgumentParser, *, quick_skips: str) -> None:
    p.add_argument(
        "--duration", type=float, help="measured seconds per measurement (default 5; quick 0.5)"
    )
    p.add_argument(
        "--warmup", type=float, help="unmeasured seconds before each (default 0.5; quick 0.1)"
    )
    p.add_argument("--quick", action="store_true", help=f"short smoke run{quick_skips}")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    p.add_argument(
        "--logs", type=Path, metavar="DIR", help="keep component logs here (default: a temp dir)"
    )


def _http_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--download-connections", type=int, default=10, help="for 1 MiB (default 10)")
    p.add_argument("--no-wrk", action="store_true", help="do not run wrk even if installed")


def _h2_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--h2-connections", type=int, default=10, help="HTTP/2 connections (default 10)")
    p.add_argument(
        "--streams", type=int, default=10, help="concurrent streams per HTTP/2 connection (10)"
    )
    p.add_argument(
        "--no-h2load",
        action="store_true",
        help="use the built-in HTTP/2 client even if h2load is installed",
    )


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
    _common(http, quick_skips="; skips wrk")
    http.add_argument("--connections", type=int, default=50, help="for 1 KiB (default 50)")
    _http_args(http)

    https = sub.add_parser(
        "https",
        help="HTTP/1.1 over TLS: the edge's HTTPS listener against a TLS origin direct",
        description="Make a throwaway CA and a certificate for bench.localhost, start a TLS "
        "origin and an edge with HTTPS, and measure 1 KiB keep-alive requests and "
        "single-connection latency over TLS, direct and through the tunnel.",
    )
    _common(https, quick_skips="; skips the h2load second opinion")
    https.add_argument("--connections", type=int, default=50, help="for 1 KiB (default 50)")
    https.add_argument(
        "--no-h2load", action="store_true", help="do not run h2load --h1 even if installed"
    )

    h2 = sub.add_parser(
        "h2",
        help="HTTP/2 through the edge's HTTPS listener against HTTP/1.1 direct TLS",
        description="Multiplexed HTTP/2 (h2load when installed, else a built-in client) "
        "through the edge, against the TLS origin over HTTP/1.1 with as many requests in "
        "flight.",
    )
    _common(h2, quick_skips="")
    _h2_args(h2)

    every = sub.add_parser(
        "all",
        help="http, https and h2 in sequence",
        description="Run the http, https and h2 suites one after the other, each on a fresh "
        "stack, and print each report.",
    )
    _common(every, quick_skips="; skips wrk and h2load in https (h2 still uses h2load)")
    every.add_argument("--connections", type=int, default=50, help="for 1 KiB (default 50)")
    _http_args(every)
    _h2_args(every)

    tools = sub.add_parser(
        "tools",
        help="which optional load generators are installed, and how to install them",
        description="Show whether wrk and h2load are on PATH and the apt-get command that "
        "installs them; --install runs it (apt-get update once, then install; root only).",
    )
    tools.add_argument("--install", action="store_true", help="install the missing ones (root)")

    peers = sub.add_parser(
        "peers",
        help="Burrow beside other tunnels (ssh -R, PageKite) and direct, in one run",
        description="1 KiB keep-alive and 1 MiB downloads through direct, Burrow, OpenSSH "
        "ssh -R (plain -N and with a pty session) and PageKite, with the same origin and load "
        "generator; a peer that is not installed or does not start gets a row saying why.",
    )
    _common(peers, quick_skips="")
    add_peers_arguments(peers)
    add_scale_parser(sub)
    add_run_parser(sub)
    add_instructions_parser(sub)
    add_longlink_parser(sub)
    return p


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwind through the try/finally blocks that stop the child processes.
    raise KeyboardInterrupt


def _settings(args: argparse.Namespace) -> HttpBenchSettings:
    duration = args.duration if args.duration is not None else (0.5 if args.quick else 5.0)
    warmup = args.warmup if args.warmup is not None else (0.1 if args.quick else 0.5)
    settings = HttpBenchSettings(duration=duration, warmup=warmup, quick=args.quick)
    if hasattr(args, "connections"):
        settings.connections = args.connections
    if hasattr(args, "download_connections"):
        settings.download_connections = args.download_connections
        settings.use_wrk = not (args.quick or args.no_wrk)
    if hasattr(args, "no_h2load"):
        settings.use_h2load = not args.no_h2load
    if hasattr(args, "streams"):
        settings.h2_connections = args.h2_connections
        settings.h2_streams = args.streams
    counts = (
        settings.connections,
        settings.download_connections,
        settings.h2_connections,
        settings.h2_streams,
    )
    if duration <= 0 or warmup < 0 or min(counts) < 1:
        raise ValueError(
            "--duration must be > 0, --warmup >= 0, and connection and stream counts at least 1"
        )
    return settings


def _runner(suite: str) -> Callable[[HttpBenchSettings, Path], HttpBenchRun]:
    if suite == "http":
        return run_http_bench
    from bench.tls_suite import run_h2_bench, run_https_bench

    return run_https_bench if suite == "https" else run_h2_bench


def _tools(args: argparse.Namespace) -> int:
    from bench.tools import format_tool_status, install_tools

    print(format_tool_status())
    if not args.install:
        return 0
    code = install_tools()
    if code == 0:
        print(format_tool_status())
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.suite == "tools":
        return _tools(args)
    if args.suite == "peers":
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        return run_peers_command(args)
    if args.suite == "scale":
        return run_scale(args)
    if args.suite == "run":
        return run_command(args)
    if args.suite == "instructions":
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        return run_instructions(args)
    if args.suite == "longlink":
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        return run_longlink_command(args)
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
    suites = _SUITES if args.suite == "all" else (args.suite,)
    runs: list[HttpBenchRun] = []
    for suite in suites:
        # One stack per suite; under "all" each keeps its logs in a directory of its own.
        suite_logs = log_dir / suite if args.suite == "all" else log_dir
        suite_logs.mkdir(exist_ok=True)
        try:
            run = _runner(suite)(settings, suite_logs)
        except StackError as exc:
            print(f"bench {suite}: {exc}\n(logs kept in {log_dir})", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"\nbench: interrupted; every child process was stopped (logs in {log_dir})")
            return 130
        if runs:
            print()
        print(format_any_report(run), flush=True)
        runs.append(run)
        if run.troubled:
            keep_logs = True
    if args.json is not None:
        if args.suite == "all":
            document: dict[str, object] = {"bench": "all", "runs": [r.to_json() for r in runs]}
        else:
            document = runs[0].to_json()
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"results written to {args.json}")
    if keep_logs and args.logs is None:
        print(f"component logs kept in {log_dir}")
    if not keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
