"""``python -m bench instructions``: what one request costs the edge, in CPU instructions.

Throughput on a shared 2-core machine swings by a tenth from one run to the next, more than
most changes to the data path are worth. The number of instructions the edge executes per
request hardly moves: valgrind (callgrind) counts them in the edge process while a fixed
number of requests goes through the tunnel, and a run with no requests, subtracted, takes
out the edge's start-up and shutdown. The count covers the edge's own code, Python and the
libraries it calls, not the kernel's side of its syscalls; under valgrind the edge runs some
fifty times slower, so only the count means anything, not the time.

Rows: HTTP/1.1 GET of 1 KiB over 50 keep-alive connections and over one (the built-in
client), and HTTP/2 over cleartext (h2c, prior knowledge) with h2load when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import uvloop

from bench.stack import BurrowStack, StackError

_COLLECTED = re.compile(rb"==\d+== Collected : (\d+)")
_WRAPPER = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
# Under valgrind the edge takes a while to import and to answer.
_START_TIMEOUT = 180.0
_REQUEST_TIMEOUT = 600.0
# HTTP/1.1 loads: keep-alive connections sharing the requests. Fifty share the edge's
# per-read and per-write work between requests; one pays all of it for each request.
_HTTP1_CONNECTIONS = {"http1": 50, "http1-1": 1}
_SHAPES = {
    "http1": "HTTP/1.1 GET 1 KiB, 50 keep-alive connections",
    "http1-1": "HTTP/1.1 GET 1 KiB, 1 keep-alive connection",
    "h2c": "HTTP/2 (h2c) GET 1 KiB, 10 connections x 10 streams (h2load)",
}


def add_instructions_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "instructions",
        help="CPU instructions the edge executes per request (valgrind)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--requests", type=int, default=2000, help="requests per measured run (2,000)")
    p.add_argument("--no-h2", action="store_true", help="leave out the HTTP/2 row")
    p.add_argument(
        "--logs", type=Path, metavar="DIR", help="keep component logs here (default: a temp dir)"
    )


async def _http1_requests(port: int, host: str, total: int, connections: int) -> int:
    """``total`` keep-alive GETs of /bytes/1024 over ``connections``; how many got a 200."""
    request = f"GET /bytes/1024 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    async def one_connection(count: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ok = 0
        try:
            for _ in range(count):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                ok += head.startswith(b"HTTP/1.1 200 ")
        finally:
            writer.close()
        return ok

    shares = [total // connections + (i < total % connections) for i in range(connections)]
    return sum(await asyncio.gather(*(one_connection(n) for n in shares if n)))


def _h2c_requests(port: int, host: str, total: int) -> int:
    out = subprocess.run(
        [
            "h2load", "-n", str(total), "-c", "10", "-m", "10",
            "-H", f":authority: {host}", f"http://127.0.0.1:{port}/bytes/1024",
        ],
        capture_output=True,
        timeout=_REQUEST_TIMEOUT,
        check=False,
    ).stdout  # fmt: skip
    found = re.search(rb"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    return int(found[1]) if found else 0


def _edge_instructions(log_dir: Path, load: str, requests: int) -> int:
    """Instructions the edge executed from start to exit with ``requests`` of ``load``."""
    run_dir = log_dir / f"{load}-{requests}"
    run_dir.mkdir(parents=True, exist_ok=True)
    stack = BurrowStack(run_dir, start_timeout=_START_TIMEOUT, edge_wrapper=_WRAPPER)
    with stack:
        port, host = stack.edge_http_port, stack.tunnel_host
        if requests and load in _HTTP1_CONNECTIONS:
            visitors = _http1_requests(port, host, requests, _HTTP1_CONNECTIONS[load])
            ok = uvloop.run(asyncio.wait_for(visitors, _REQUEST_TIMEOUT))
        elif requests:
            ok = _h2c_requests(port, host, requests)
        else:
            ok = 0
    if ok != requests:
        raise StackError(f"{load}: {ok} of {requests} requests got a 200")
    found = _COLLECTED.search((run_dir / "edge.log").read_bytes())
    if found is None:
        raise StackError(f"valgrind reported no count for the edge (see {run_dir / 'edge.log'})")
    return int(found[1])


def run_instructions(args: argparse.Namespace) -> int:
    if shutil.which("valgrind") is None:
        print(
            "bench instructions: needs valgrind (apt-get install valgrind, or "
            "python -m bench tools --install)",
            file=sys.stderr,
        )
        return 2
    if args.requests < 1:
        print("bench instructions: --requests must be at least 1", file=sys.stderr)
        return 2
    loads = ["http1", "http1-1"]
    if not args.no_h2 and shutil.which("h2load") is not None:
        loads.append("h2c")
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="burrow-bench-instructions-"))
    n = args.requests
    print(
        f"Burrow bench instructions: instructions the edge executes per request, counted by "
        f"valgrind (callgrind); {n:,} requests per run, less a run with none"
    )
    try:
        baseline = _edge_instructions(log_dir, "http1", 0)
        print(f"  edge start-up and shutdown, no requests: {baseline:,} instructions")
        for load in loads:
            total = _edge_instructions(log_dir, load, n)
            print(f"  {_SHAPES[load]}: {(total - baseline) // n:,} per request")
    except StackError as exc:
        print(f"bench instructions: {exc}", file=sys.stderr)
        return 1
    if "h2c" not in loads and not args.no_h2:
        print("  HTTP/2 row left out: h2load is not installed (python -m bench tools)")
    if args.logs is None:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0
