"""``burrowd``: the Burrow server.

burrowd dev      edge and control in one process on this machine (embedded PostgreSQL,
                 in-memory bus), with a signed token, a demo tunnel, and the address left
                 for `burrow http PORT` in another terminal
burrowd edge     the edge alone, agents authenticated by tokens from flags or a file, or
                 by tokens control signs (--control-url), with routing state from control
burrowd control  the control service: REST API /v1 on PostgreSQL
burrowd migrate  apply database migrations and exit
burrowd check    check the config file and reach its database, Redis and control

Every flag can also be set in a TOML config file (--config FILE, else $BURROWD_CONFIG, else
/etc/burrow/burrowd.toml if it exists; see edge.settings); flags override it.

Both serve /metrics, /healthz and /readyz on the admin address (--admin), and log to stderr
as text or, with --log-format json, one JSON object per line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop

from agent.tunnels import parse_address
from control import cli as control_cli
from edge import settings
from edge.admin.log_format import FORMATS, configure_logging
from edge.config import EdgeConfig

if TYPE_CHECKING:
    from edge.server import Edge

# Each role imports what it runs inside its runner: the edge loads no agent, bench or
# control service code (its idle RSS is a third less for it); dev loads everything.

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


def _listen_addresses(text: str) -> tuple[tuple[str, ...], int]:
    """``ADDR[,ADDR...]`` on one port: ``*:80`` (IPv4 and IPv6), ``0.0.0.0:80``,
    ``[::]:80``, ``127.0.0.1:8080,[::1]:8080``, or ``PORT`` (loopback)."""
    hosts: list[str] = []
    ports: set[int] = set()
    for part in text.split(","):
        host, port = _hostport(part.strip())
        hosts.append(host)
        ports.add(port)
    if len(ports) > 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: one listener serves one port; give every address the same port"
        )
    return tuple(hosts), ports.pop()


class _ListenAction(argparse._AppendAction):
    """``action="append"`` whose first use on the command line replaces the default
    addresses instead of adding to them (argparse's append keeps the default's items)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        given = getattr(namespace, self.dest, None)
        items = [] if given is None or given is self.default else list(given)
        items.append(values)
        setattr(namespace, self.dest, items)


def _merge_listen(
    values: list[tuple[tuple[str, ...], int]], flag: str
) -> tuple[tuple[str, ...], int]:
    """Repeated listener flags add addresses to one listener."""
    hosts = tuple(h for value in values for h in value[0])
    ports = {port for _, port in values}
    if len(ports) > 1:
        raise SystemExit(
            f"burrowd: every {flag} address must use the same port, not {sorted(ports)}"
        )
    return hosts, ports.pop()


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
    p.add_argument(
        "--config",
        metavar="FILE",
        help=f"TOML config file (default ${settings.PATH_VARIABLE}, else "
        f"{settings.DEFAULT_PATH} if it exists); flags override it",
    )
    p.add_argument("--log", default="info", help="log level: debug, info, warning")
    p.add_argument(
        "--log-format", choices=FORMATS, default="text", help="text (default) or json lines"
    )
    p.add_argument("--access-log", action="store_true", help="log every visitor request (at info)")
    sub = p.add_subparsers(dest="command", required=True)

    def edge_flags(
        sp: argparse.ArgumentParser, http: str, https: str, agents: str, admin: str
    ) -> None:
        for flag, default, what in (
            ("--http", http, "visitor HTTP"),
            ("--https", https, "visitor HTTPS"),
            ("--agents", agents, "agent links"),
        ):
            sp.add_argument(
                flag,
                type=_listen_addresses,
                action=_ListenAction,
                default=[_listen_addresses(default)],
                metavar="ADDR[,ADDR]",
                help=f"{what} (default {default}; repeat or comma-separate addresses on one port)",
            )
        sp.add_argument("--no-https", action="store_true", help="do not serve HTTPS")
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
    dev.add_argument(
        "--control",
        type=_hostport,
        default="127.0.0.1:8000",
        help="the control API (default 127.0.0.1:8000; port 0: any)",
    )

    control_cli.add_commands(sub)

    edge = sub.add_parser("edge", help="run the edge")
    edge_flags(edge, "*:80", "*:443", "*:4443", "127.0.0.1:9090")
    edge.add_argument(
        "--token",
        action="append",
        default=[],
        help="static shared-secret token, TOKEN or TOKEN=ACCOUNT (repeat); for development "
        "and single-operator edges without control: no expiry, revocation or reserved names",
    )
    edge.add_argument("--tokens-file", help="file with one TOKEN or TOKEN=ACCOUNT per line")
    edge.add_argument("--edge-id", default="edge-1")
    edge.add_argument("--local-ca", metavar="DIR", help="issue fallback certificates from this CA")
    edge.add_argument("--agent-hostname", default="", help="name agents dial (default: domain)")
    edge.add_argument(
        "--control-url",
        help="control service URL: accept the tokens it signs and enforce its reserved names "
        "and custom domains",
    )
    edge.add_argument(
        "--edge-key", help="this edge's key for the control service (default: $BURROW_EDGE_KEY)"
    )
    edge.add_argument(
        "--redis-url",
        help="Redis for routing events and tunnel reports (default: $REDIS_URL; "
        "without it the edge polls control)",
    )
    edge.add_argument("--bus-prefix", default="burrow:", help="key prefix on Redis")
    edge.add_argument(
        "--state-dir",
        metavar="DIR",
        help="keep the last routing state here, so a restart during a control outage still "
        "enforces it",
    )
    sub.add_parser(
        "check",
        help="check the config file and reach its database, Redis and control; exit 0 or 1",
    )
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
    http = _merge_listen(args.http, "--http")
    https = _merge_listen(args.https, "--https")
    agents = _merge_listen(args.agents, "--agents")
    return EdgeConfig(
        base_domain=args.base_domain,
        http_host=http[0],
        http_port=http[1],
        https_host=https[0],
        https_port=None if args.no_https else https[1],
        agent_host=agents[0],
        agent_port=agents[1],
        agent_tls=not args.agent_plaintext,
        agent_hostname=getattr(args, "agent_hostname", ""),
        tls_files=_cert_pairs(args.cert),
        local_ca_dir=getattr(args, "local_ca", None),
        tcp_host=http[0],
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


def _dev_data_dir() -> Path:
    """Where ``burrowd dev`` keeps its database, secret key and dev login."""
    env = os.environ.get("BURROW_DATA_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0 and not os.environ.get("XDG_DATA_HOME"):
        # The embedded PostgreSQL runs as an unprivileged user when we are root; it cannot
        # reach a folder under /root without loosening /root itself.
        return Path("/var/lib/burrow-dev")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "burrow"


async def _dev(args: argparse.Namespace) -> int:
    from agent import config as agent_config
    from bus.connect import open_bus
    from control.db import DatabaseUnavailable
    from control.dev_stack import DEV_EMAIL, OutboxSnapshots, start_dev_control
    from control.embedded_db import EmbeddedPostgresError
    from control.keys import CONFIG as CONTROL_CONFIG
    from control.signing_keys import SigningKeyError
    from edge.link.token_auth import SignedTokens
    from edge.server import Edge
    from edge.sync.control_sync import RoutingSync
    from edge.sync.tunnel_reports import TunnelReporter

    config = _config(args)
    ca_dir = agent_config.state_dir() / "ca"
    config.local_ca_dir = str(ca_dir)
    config.agent_hostname = "localhost"
    # One process: the in-memory bus, unless REDIS_URL asks for Redis.
    bus = open_bus(os.environ.get("REDIS_URL") or None, "burrow:")
    try:
        control = await start_dev_control(
            _dev_data_dir(), args.control[0], args.control[1], config.base_domain, bus, ""
        )
    except (DatabaseUnavailable, EmbeddedPostgresError, SigningKeyError, OSError) as exc:
        print(f"burrowd: the control service did not start: {exc}", file=sys.stderr)
        await bus.close()
        return 1
    token = control.token
    keyring = SignedTokens([])
    edge = Edge(config, keyring)
    sync = RoutingSync(edge, OutboxSnapshots(control.app), bus, keyring)
    await sync.start()
    reporter = TunnelReporter(edge, bus, interval=5.0)
    from edge.sync.replay import EdgeReplay

    replays = EdgeReplay(edge, bus)  # replays control asks for, through this edge's tunnels
    tasks: list[asyncio.Task[None]] = []
    try:
        try:
            await edge.start()
        except OSError as exc:
            print(
                f"burrowd: cannot listen ({exc.strerror}); is another burrowd running? "
                "Pick other ports with --http, --https, --agents, --admin and --control.",
                file=sys.stderr,
            )
            return 1
        reporter.start()
        replays.start()
        # Agents dial "localhost" so the link's certificate, from the dev CA, verifies.
        server = f"localhost:{config.agent_port}"
        control.app[CONTROL_CONFIG].agent_server = server
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
        print(f"Web console: {control.url}/")
        print(f"Control API: {control.url}/v1 (OpenAPI: {control.url}/v1/openapi.json)")
        print(f"  sign in as {DEV_EMAIL}, password in {control.password_file}")
        print(f"Agent token (also saved to {path}):\n  {token}")
        if config.admin_port is not None:
            admin = f"http://{config.admin_host}:{config.admin_port}"
            print(f"Metrics and health: {admin}/metrics, {admin}/healthz, {admin}/readyz")
        if config.https_port is not None:
            print(f"HTTPS certificates come from a local CA. To trust it: {ca_file}")
            print(f"  curl --cacert {ca_file} https://demo.localhost:{config.https_port}/")
        if not args.no_demo:
            tasks.append(await _demo_tunnel(config, token, ca_file))
        print(
            "Expose your own service from another terminal with:\n"
            "  python3 run.py burrow http 3000",
            flush=True,
        )
        await _run_until_signal(edge)
    finally:
        for task in tasks:
            task.cancel()
        await replays.close()
        await reporter.close()
        await sync.close()
        await control.close()
        await bus.close()
    return 0


async def _demo_tunnel(config: EdgeConfig, token: str, ca_file: str) -> asyncio.Task[None]:
    from agent.client import Agent, link_tls_context
    from agent.tunnels import TunnelSpec
    from bench.origin import start_origin

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
    return asyncio.get_running_loop().create_task(demo.run())


async def _edge(args: argparse.Namespace) -> int:
    from bus.base import Bus
    from bus.connect import open_bus
    from edge.link.auth import Authenticator, StaticTokens
    from edge.link.token_auth import ChainedAuthenticator, SignedTokens
    from edge.server import Edge

    if TYPE_CHECKING:
        from edge.sync.control_sync import RoutingSync
        from edge.sync.tunnel_reports import TunnelReporter

    tokens = _tokens(args)
    control_url = args.control_url or ""
    edge_key = args.edge_key or os.environ.get("BURROW_EDGE_KEY", "")
    redis_url = args.redis_url or os.environ.get("REDIS_URL", "")
    if not tokens and not control_url:
        print(
            "burrowd edge: give agent tokens with --token or --tokens-file, or --control-url "
            "to accept the tokens control signs",
            file=sys.stderr,
        )
        return 2
    if control_url and not edge_key:
        print(
            "burrowd edge: --control-url needs this edge's key: --edge-key or BURROW_EDGE_KEY",
            file=sys.stderr,
        )
        return 2
    keyring: SignedTokens | None = None
    authenticator: Authenticator
    if control_url:
        # Keys and revocations arrive from control; static tokens only if asked for too.
        keyring = SignedTokens([])
        authenticator = ChainedAuthenticator(keyring, StaticTokens(tokens)) if tokens else keyring
    else:
        log.warning(
            "agents are checked against static shared-secret tokens (development or a "
            "single-operator edge): no expiry, no revocation, no reserved names; use "
            "--control-url for signed tokens"
        )
        authenticator = StaticTokens(tokens)
    try:
        bus: Bus | None = open_bus(redis_url, args.bus_prefix) if redis_url else None
    except ValueError as exc:
        print(f"burrowd edge: {exc}", file=sys.stderr)
        return 2
    edge = Edge(_config(args), authenticator)
    sync: RoutingSync | None = None
    if control_url:
        from edge.sync.control_sync import HttpSnapshotSource, RoutingSync

        cache = Path(args.state_dir) / "routing.msgpack" if args.state_dir else None
        sync = RoutingSync(
            edge, HttpSnapshotSource(control_url, edge_key), bus, keyring, cache_path=cache
        )
        # Before the listeners open, so the first agents are checked against real state.
        await sync.start()
    reporter: TunnelReporter | None = None
    from edge.sync.replay import EdgeReplay

    replays = EdgeReplay(edge, bus) if bus is not None else None
    try:
        try:
            await edge.start()
        except OSError as exc:
            print(
                f"burrowd edge: cannot listen ({exc.strerror}); pick other addresses with "
                "--http, --https, --agents and --admin.",
                file=sys.stderr,
            )
            return 1
        if bus is not None:
            from edge.sync.tunnel_reports import TunnelReporter

            reporter = TunnelReporter(edge, bus)
            reporter.start()
        if replays is not None:
            replays.start()
        await _run_until_signal(edge)
    finally:
        if replays is not None:
            await replays.close()
        if reporter is not None:
            await reporter.close()
        if sync is not None:
            await sync.close()
        if bus is not None:
            await bus.close()
    return 0


def _command(argv: list[str]) -> str:
    """The subcommand named in ``argv`` (a flag's value never is one), or ""."""
    commands = ("dev", "edge", "control", "worker", "migrate", "check")
    return next((a for a in argv if a in commands), "")


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, settings.Settings]:
    """Flags over the config file over the environment."""
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    given, rest = pre.parse_known_args(argv)
    try:
        loaded = settings.load(settings.config_path(given.config), parser)
    except settings.SettingsError as exc:
        if _command(rest) == "check":
            parser.exit(1, f"config: FAILED: {exc}\n")
        parser.exit(2, f"burrowd: {exc}\n")
    command = _command(rest)
    lists = settings.apply(loaded, parser, command)
    args = parser.parse_args(rest)
    settings.fill_lists(args, lists)
    return args, loaded


async def _check(loaded: settings.Settings) -> int:
    from composition.check import run_check

    lines = await run_check(loaded)
    for line in lines:
        print(line, flush=True)
    return 0 if all(line.ok for line in lines) else 1


def main(argv: list[str] | None = None) -> int:
    args, loaded = _parse(argv)
    configure_logging(args.log, args.log_format, access_log=args.access_log)
    runners = {
        "dev": _dev,
        "edge": _edge,
        "control": control_cli.run_control,
        "worker": control_cli.run_worker,
        "migrate": control_cli.run_migrate,
        "check": lambda _: _check(loaded),
    }
    runner = runners[args.command]
    try:
        return uvloop.run(runner(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
