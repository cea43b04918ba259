"""``burrowd``: the Burrow server.

burrowd dev      edge on this machine with a ready token, a demo tunnel, and the
                 address left for `burrow http PORT` in another terminal
burrowd edge     the edge alone, agents authenticated by tokens from flags or a file

Both serve /metrics, /healthz and /readyz on the admin address (--admin), and log to stderr
as text or, with --log-format json, one JSON object per line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
import sys

import uvloop

from agent import config as agent_config
from agent.client import Agent, link_tls_context
from agent.tunnels import TunnelSpec, parse_address
from bench.origin import start_origin
from edge.auth import StaticTokens
from edge.config import EdgeConfig
from edge.log_format import FORMATS, configure_logging
from edge.server import Edge

log = logging.getLogger("burrow.edge")


def _hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``PORT`` to listen on; port 0 means any free port (printed)."""
    text = text if ":" in text else f"127.0.0.1:{text}"
    if text.endswith(":0"):
        host, _ = parse_address(text[:-1] + "1")  # validate the host part the same way
        return host, 0
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _admin_address(text: str) -> tuple[str, int]:
    """Like ``_hostport``, and port 0 (any free port; the one chosen is logged) is allowed."""
    host, _, port = text.rpartition(":")
    if port == "0":
        return host.strip("[]") or "127.0.0.1", 0
    return _hostport(text)


def _port_range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(p) for p in text.split("-", 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write a range like 20000-20999") from None
    if not 0 < low <= high < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: ports must be 1-65535, low to high")
    return low, high


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="burrowd", description="The Burrow tunnel server.")
    p.add_argument("--log", default="info", help="log level: debug, info, warning")
    p.add_argument(
        "--log-format", choices=FORMATS, default="text", help="text (default) or json lines"
    )
    p.add_argument("--access-log", action="store_true", help="log every visitor request (at info)")
    sub = p.add_subparsers(dest="command", required=True)

    def edge_flags(
        sp: argparse.ArgumentParser, http: str, https: str, agents: str, admin: str
    ) -> None:
        sp.add_argument(
            "--http", type=_hostport, default=http, help=f"visitor HTTP (default {http})"
        )
        sp.add_argument(
            "--https", type=_hostport, default=https, help=f"visitor HTTPS (default {https})"
        )
        sp.add_argument("--no-https", action="store_true", help="do not serve HTTPS")
        sp.add_argument(
            "--agents", type=_hostport, default=agents, help=f"agent links (default {agents})"
        )
        sp.add_argument(
            "--tcp-ports", type=_port_range, default=(20000, 20999), help="TCP tunnel ports"
        )
        sp.add_argument(
            "--admin",
            type=_admin_address,
            default=admin,
            help=f"/metrics, /healthz and /readyz (default {admin}; port 0: any)",
        )
        sp.add_argument("--no-admin", action="store_true", help="no admin listener")
        sp.add_argument("--base-domain", default="localhost", help="tunnels get NAME.BASE-DOMAIN")
        sp.add_argument("--public-port", type=int, help="HTTP port shown in URLs (behind a proxy)")
        sp.add_argument("--drain", type=float, default=10.0, help="seconds to drain on shutdown")
        sp.add_argument(
            "--cert",
            action="append",
            default=[],
            metavar="CERT:KEY",
            help="PEM certificate chain and key files (repeat), e.g. a wildcard for the domain",
        )
        sp.add_argument(
            "--agent-plaintext",
            action="store_true",
            help="INSECURE: take agent links without TLS (trusted private networks only)",
        )

    dev = sub.add_parser("dev", help="run Burrow on this machine for development")
    edge_flags(dev, "127.0.0.1:8080", "127.0.0.1:8443", "127.0.0.1:4443", "127.0.0.1:9091")
    dev.add_argument("--no-demo", action="store_true", help="do not start the demo tunnel")

    edge = sub.add_parser("edge", help="run the edge")
    edge_flags(edge, "0.0.0.0:80", "0.0.0.0:443", "0.0.0.0:4443", "127.0.0.1:9090")
    edge.add_argument(
        "--token", action="append", default=[], help="TOKEN or TOKEN=ACCOUNT (repeat)"
    )
    edge.add_argument("--tokens-file", help="file with one TOKEN or TOKEN=ACCOUNT per line")
    edge.add_argument("--edge-id", default="edge-1")
    edge.add_argument("--local-ca", metavar="DIR", help="issue fallback certificates from this CA")
    edge.add_argument("--agent-hostname", default="", help="name agents dial (default: domain)")
    return p


def _cert_pairs(values: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        cert, sep, key = value.partition(":")
        if not sep or not cert or not key:
            raise SystemExit(f"burrowd: --cert takes CERT:KEY file paths, not {value!r}")
        pairs.append((cert, key))
    return pairs


def _config(args: argparse.Namespace) -> EdgeConfig:
    return EdgeConfig(
        base_domain=args.base_domain,
        http_host=args.http[0],
        http_port=args.http[1],
        https_host=args.https[0],
        https_port=None if args.no_https else args.https[1],
        agent_host=args.agents[0],
        agent_port=args.agents[1],
        agent_tls=not args.agent_plaintext,
        agent_hostname=getattr(args, "agent_hostname", ""),
        tls_files=_cert_pairs(args.cert),
        local_ca_dir=getattr(args, "local_ca", None),
        tcp_host=args.http[0],
        tcp_ports=args.tcp_ports,
        public_http_port=args.public_port,
        drain_seconds=args.drain,
        edge_id=getattr(args, "edge_id", "dev"),
        admin_host=args.admin[0],
        admin_port=None if args.no_admin else args.admin[1],
    )


def _tokens(args: argparse.Namespace) -> dict[str, str]:
    lines = list(args.token)
    if args.tokens_file:
        with open(args.tokens_file) as fh:
            lines += [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
    tokens: dict[str, str] = {}
    for i, line in enumerate(lines, start=1):
        token, _, account = line.partition("=")
        tokens[token] = account or f"account-{i}"
    return tokens


async def _run_until_signal(edge: Edge) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("\nburrowd: draining (Ctrl-C again to stop now)", flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    await edge.shutdown()


async def _dev(args: argparse.Namespace) -> int:
    config = _config(args)
    ca_dir = agent_config.state_dir() / "ca"
    config.local_ca_dir = str(ca_dir)
    config.agent_hostname = "localhost"
    token = "dev-" + secrets.token_urlsafe(18)
    edge = Edge(config, StaticTokens({token: "dev"}))
    try:
        await edge.start()
    except OSError as exc:
        print(
            f"burrowd: cannot listen ({exc.strerror}); is another burrowd running? "
            "Pick other ports with --http, --https, --agents and --admin.",
            file=sys.stderr,
        )
        return 1
    # Agents dial "localhost" so the link's certificate, from the dev CA, verifies.
    server = f"localhost:{config.agent_port}"
    ca_file = str(ca_dir / "ca.pem")
    path = agent_config.write_dev_edge(
        server,
        token,
        config.url_for(config.base_domain),
        ca=ca_file if config.agent_tls else "",
        plaintext=not config.agent_tls,
        wss=f"localhost:{config.https_port}" if config.https_port is not None else "",
    )
    https = ""
    if config.https_port is not None:
        https = f", https://*.{config.base_domain}:{config.https_port}"
    print(
        f"Burrow dev edge: visitors on http://*.{config.base_domain}:{config.http_port}"
        f"{https}, agents on {server}"
    )
    print(f"Agent token (also saved to {path}):\n  {token}")
    if config.admin_port is not None:
        admin = f"http://{config.admin_host}:{config.admin_port}"
        print(f"Metrics and health: {admin}/metrics, {admin}/healthz, {admin}/readyz")
    if config.https_port is not None:
        print(f"HTTPS certificates come from a local CA. To trust it: {ca_file}")
        print(f"  curl --cacert {ca_file} https://demo.localhost:{config.https_port}/")
    tasks: list[asyncio.Task[None]] = []
    if not args.no_demo:
        origin = await start_origin()
        origin_port = origin.sockets[0].getsockname()[1]
        demo = Agent(
            ("localhost", config.agent_port),
            token,
            [TunnelSpec("http", "127.0.0.1", origin_port, name="demo", label="demo")],
            tls=link_tls_context(ca_file) if config.agent_tls else None,
        )
        shown: set[str] = set()

        def announce(agent: Agent) -> None:
            for state in agent.tunnels:
                for url in state.urls:
                    if url not in shown:
                        shown.add(url)
                        print(f"Demo tunnel: open {url}/ in a browser", flush=True)

        demo.on_change = announce
        tasks.append(asyncio.get_running_loop().create_task(demo.run()))
    print("Expose your own service from another terminal with:\n  burrow http 8000", flush=True)
    await _run_until_signal(edge)
    for task in tasks:
        task.cancel()
    return 0


async def _edge(args: argparse.Namespace) -> int:
    tokens = _tokens(args)
    if not tokens:
        print("burrowd edge: give agent tokens with --token or --tokens-file", file=sys.stderr)
        return 2
    edge = Edge(_config(args), StaticTokens(tokens))
    try:
        await edge.start()
    except OSError as exc:
        print(
            f"burrowd edge: cannot listen ({exc.strerror}); pick other addresses with "
            "--http, --https, --agents and --admin.",
            file=sys.stderr,
        )
        return 1
    await _run_until_signal(edge)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log, args.log_format, access_log=args.access_log)
    runner = _dev if args.command == "dev" else _edge
    try:
        return uvloop.run(runner(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
