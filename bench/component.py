"""One benchmark component per process: the origin, the edge, or the agent.

    python -m bench.component origin [--tls-cert C --tls-key K]
    python -m bench.component edge --token T [--tls-cert C --tls-key K]
    python -m bench.component agent --edge-port P --origin-port P --token T --name bench \
        [--tcp SINK_PORT]
    python -m bench.component tcp-sink

Each binds 127.0.0.1 on ports the OS picks and prints exactly one JSON line on stdout once
it is ready to serve (``{"port": ...}``, ``{"http_port": ..., "agent_port": ...}`` or
``{"url": ...}``, plus ``"tcp_url"`` once a ``--tcp`` tunnel is bound too); the parent reads
the ports from it. Given a certificate, the origin also
serves HTTPS on a second port (``"tls_port"``, same process, same handler) and the edge
opens its HTTPS listener (``"https_port"``). Nothing else goes to stdout, so the
pipe never fills. Logs (warnings and up) go to stderr, which the parent sends to a file.
SIGTERM or SIGINT stops the component cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

import uvloop


def _ready(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def _until_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _origin(args: argparse.Namespace) -> int:
    from bench.certificates import server_context
    from bench.origin import start_origin

    servers = [await start_origin("127.0.0.1", 0)]
    ports = {"port": servers[0].sockets[0].getsockname()[1]}
    if args.tls_cert:
        # HTTP/1.1 only: the origin has no HTTP/2, so it must not let ALPN pick h2.
        tls = server_context(args.tls_cert, args.tls_key, ["http/1.1"])
        servers.append(await start_origin("127.0.0.1", 0, tls=tls))
        ports["tls_port"] = servers[1].sockets[0].getsockname()[1]
    _ready(**ports)
    await _until_signal()
    for server in servers:
        server.close()
    return 0


async def _edge(args: argparse.Namespace) -> int:
    from edge.config import EdgeConfig
    from edge.link.auth import StaticTokens
    from edge.server import Edge

    # tcp_ports (0, 0): a TCP tunnel gets any free port, so runs never collide on one.
    config = EdgeConfig(
        http_host="127.0.0.1",
        http_port=0,
        agent_host="127.0.0.1",
        agent_port=0,
        tcp_ports=(0, 0),
        edge_id="bench",
    )
    if args.tls_cert:
        config.https_port = 0
        config.tls_files = [(args.tls_cert, args.tls_key)]
    edge = Edge(config, StaticTokens({args.token: "bench"}))
    await edge.start()
    ports = {"http_port": config.http_port, "agent_port": config.agent_port}
    if config.https_port is not None:
        ports["https_port"] = config.https_port
    _ready(**ports)
    await _until_signal()
    await edge.shutdown(drain=1.0)
    return 0


async def _agent(args: argparse.Namespace) -> int:
    from agent.client import Agent, AgentRefused
    from agent.tunnels import TunnelSpec

    specs = [TunnelSpec("http", "127.0.0.1", args.origin_port, name=args.name)]
    if args.tcp:
        specs.append(TunnelSpec("tcp", "127.0.0.1", args.tcp))
    agent = Agent(("127.0.0.1", args.edge_port), args.token, specs)
    task = asyncio.get_running_loop().create_task(agent.run())
    deadline = asyncio.get_running_loop().time() + args.bind_timeout
    while not all(state.url for state in agent.tunnels):
        state = next(state for state in agent.tunnels if not state.url)
        if task.done() or asyncio.get_running_loop().time() > deadline:
            agent.stop()
            try:
                await task
            except AgentRefused as exc:
                print(f"agent: the edge refused the agent: {exc}", file=sys.stderr)
                return 1
            print(
                f"agent: the {state.spec.protocol} tunnel was not bound within "
                f"{args.bind_timeout:g}s "
                f"({state.error or agent.last_error or 'no error reported'})",
                file=sys.stderr,
            )
            return 1
        await asyncio.sleep(0.01)
    urls = {"url": agent.tunnels[0].url}
    if args.tcp:
        urls["tcp_url"] = agent.tunnels[1].url
    _ready(**urls)
    await _until_signal()
    agent.stop()
    await asyncio.wait_for(task, 5.0)
    return 0


async def _tcp_sink(args: argparse.Namespace) -> int:
    from bench.tcp_bulk import start_tcp_sink

    server = await start_tcp_sink("127.0.0.1", 0)
    _ready(port=server.sockets[0].getsockname()[1])
    await _until_signal()
    server.close()
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.component")
    sub = p.add_subparsers(dest="component", required=True)
    origin = sub.add_parser("origin", help="the HTTP origin (bench/origin.py)")
    edge = sub.add_parser("edge", help="the Burrow edge")
    edge.add_argument("--token", required=True)
    for tls_capable in (origin, edge):
        tls_capable.add_argument("--tls-cert", help="certificate chain PEM: also serve HTTPS")
        tls_capable.add_argument("--tls-key", help="its private key PEM")
    agent = sub.add_parser("agent", help="a Burrow agent with one HTTP tunnel (and one TCP)")
    agent.add_argument("--edge-port", type=int, required=True)
    agent.add_argument("--origin-port", type=int, required=True)
    agent.add_argument("--token", required=True)
    agent.add_argument("--name", default="bench")
    agent.add_argument("--bind-timeout", type=float, default=10.0)
    agent.add_argument("--tcp", type=int, metavar="PORT", help="also a TCP tunnel to this port")
    sub.add_parser("tcp-sink", help="a TCP sink that acknowledges each transfer (tcp_bulk.py)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "tls_cert", None) and not args.tls_key:
        parser.error("--tls-cert needs --tls-key")
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s {args.component} %(levelname)s %(name)s %(message)s",
    )
    runner = {"origin": _origin, "edge": _edge, "agent": _agent, "tcp-sink": _tcp_sink}[
        args.component
    ]
    try:
        return uvloop.run(runner(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
