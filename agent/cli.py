"""``burrow``: expose local services through a Burrow edge.

burrow http 3000                      a random https/http URL for localhost:3000
burrow http localhost:3000 --name demo
burrow tcp 5432                       a public TCP port for localhost:5432
burrow start [NAME ...]               the tunnels from the config file (all if none named)
burrow config add-authtoken TOKEN     save the token in the config file
burrow config check                   validate the config file (exit 0 or 1)
burrow diagnose                       why the agent cannot connect, one line per check
burrow service install                run `burrow start` at boot or login (systemd, launchd)

On a terminal the agent shows a full-screen view; --log FILE or --plain give plain lines.
Its local API: http://127.0.0.1:4040/api/tunnels and /metrics (--inspect-addr, --no-inspect).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
from dataclasses import dataclass

import uvloop

from agent import config as agent_config
from agent import inspector, local_api, logs, service
from agent.client import Agent, AgentRefused, link_tls_context
from agent.diagnose import EdgeTarget, diagnose
from agent.link import AGENT_VERSION
from agent.meters import TICK_SECONDS, AgentMeters
from agent.screen import ScreenDisplay
from agent.state import FILE_NAME, TunnelMemory
from agent.status import Display, StatusPrinter
from agent.tunnels import SpecError, TunnelSpec, parse_address


class UsageError(Exception):
    pass


def output_flags(p: argparse.ArgumentParser, default: object) -> None:
    """Flags for how the agent shows itself. On the main parser and on every command that
    runs an agent (``burrow http 3000 --log agent.log`` as well as ``burrow --log …``); the
    commands' copies default to SUPPRESS so they never undo the main parser's."""

    def given(value: object) -> object:
        return argparse.SUPPRESS if default is argparse.SUPPRESS else value

    p.add_argument(
        "--log",
        default=given(""),
        metavar="DEST",
        help="write logs to FILE, stdout or stderr instead of the terminal's display "
        "(a level name here still sets the level, as --log-level does)",
    )
    p.add_argument("--log-level", choices=logs.LEVELS, default=given(""), help="default: warning")
    p.add_argument("--log-format", choices=logs.FORMATS, default=given(""), help="default: text")
    p.add_argument(
        "--plain",
        action="store_true",
        default=given(False),
        help="print plain lines instead of the full-screen view on a terminal",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="burrow",
        description="Expose local services at public URLs.",
        epilog=__doc__.split("\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="config file (default: ~/.config/burrow/burrow.toml)")
    p.add_argument("--version", action="version", version=f"burrow {AGENT_VERSION}")
    output_flags(p, None)
    sub = p.add_subparsers(dest="command", required=True)

    def edge_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--server", help="edge agent address host:port (default from config)")
        sp.add_argument("--authtoken", help="token to use instead of the configured one")
        sp.add_argument("--ca", help="CA certificate file to verify a privately signed edge")
        sp.add_argument(
            "--transport",
            choices=("auto", "tls", "wss"),
            default="",
            help="tls: the edge's agent port; wss: a WebSocket on its HTTPS port (for networks "
            "that only pass HTTPS); auto (default): tls, then wss if tls cannot connect",
        )
        sp.add_argument(
            "--wss", help="HTTPS address for WebSocket links (default: SERVER-HOST:443)"
        )
        sp.add_argument(
            "--plaintext",
            action="store_true",
            help="INSECURE: connect to the edge without TLS (only for an edge on a trusted "
            "private network that was started with --agent-plaintext)",
        )

    def tunnel_flags(sp: argparse.ArgumentParser) -> None:
        edge_flags(sp)
        output_flags(sp, argparse.SUPPRESS)
        sp.add_argument(
            "--inspect-addr",
            metavar="HOST:PORT",
            help="where the agent serves /metrics and /api/tunnels (default 127.0.0.1:4040, "
            "or the next free port up to 4049)",
        )
        sp.add_argument(
            "--no-inspect", action="store_true", help="no local /metrics and /api/tunnels"
        )
        sp.add_argument(
            "--inspect-keep",
            type=int,
            default=inspector.DEFAULT_KEEP,
            metavar="N",
            help=f"requests the local inspector keeps (default {inspector.DEFAULT_KEEP})",
        )

    http = sub.add_parser("http", help="expose a local HTTP service")
    http.add_argument("addr", help="local port, or host:port")
    http.add_argument("--name", default="", help="subdomain or hostname to ask for")
    http.add_argument("--pool", action="store_true", help="share the name with other agents")
    tunnel_flags(http)

    tls = sub.add_parser("tls", help="expose a local TLS service untouched (SNI passthrough)")
    tls.add_argument("addr", help="local port, or host:port, of a service that speaks TLS")
    tls.add_argument("--name", default="", help="subdomain or hostname to ask for")
    tunnel_flags(tls)

    tcp = sub.add_parser("tcp", help="expose a local TCP service")
    tcp.add_argument("addr", help="local port, or host:port")
    tcp.add_argument("--remote-port", type=int, default=0, help="public port to ask for")
    tunnel_flags(tcp)

    start = sub.add_parser("start", help="start tunnels from the config file")
    start.add_argument("names", nargs="*", help="tunnel names (default: all)")
    tunnel_flags(start)

    cfg = sub.add_parser("config", help="edit the config file")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    add = cfg_sub.add_parser("add-authtoken", help="save an authtoken")
    add.add_argument("token")
    cfg_sub.add_parser("path", help="print the config file's path")
    cfg_sub.add_parser("check", help="validate the config file: exit 0 if it is right, else 1")

    diag = sub.add_parser(
        "diagnose", help="check the edge's address, ports, certificate, the token and the clock"
    )
    edge_flags(diag)
    diag.add_argument("--timeout", type=float, default=5.0, help="seconds per check (5)")

    svc = sub.add_parser("service", help="run `burrow start` at boot or login")
    service_sub = svc.add_subparsers(dest="service_command", required=True)
    for verb, words in (("install", "write"), ("uninstall", "remove")):
        sp = service_sub.add_parser(verb, help=f"{words} a systemd unit (launchd on macOS)")
        sp.add_argument(
            "--system", action="store_true", help="a system unit (needs root) instead of yours"
        )
        if verb == "install":
            sp.add_argument("names", nargs="*", help="tunnels to start (default: all)")

    sub.add_parser("version", help="print the agent version")
    return p


def _specs(args: argparse.Namespace, cfg: agent_config.AgentConfig) -> list[TunnelSpec]:
    if args.command in ("http", "tcp", "tls"):
        host, port = parse_address(args.addr)
        if args.command == "http":
            return [TunnelSpec("http", host, port, name=args.name, pool=args.pool)]
        if args.command == "tls":
            return [TunnelSpec("tls", host, port, name=args.name)]
        return [TunnelSpec("tcp", host, port, remote_port=args.remote_port)]
    if not cfg.tunnels:
        raise UsageError(f"no tunnels defined in {cfg.path}; see `burrow start --help`")
    names = args.names or list(cfg.tunnels)
    missing = [n for n in names if n not in cfg.tunnels]
    if missing:
        raise UsageError(f"no tunnel named {', '.join(missing)} in {cfg.path}")
    return [cfg.tunnels[n] for n in names]


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """Where and how to reach the edge, from flags, the config file or a running dev edge."""

    host: str
    port: int
    token: str
    ca: str
    wss_host: str
    wss_port: int
    transport: str  # "auto" | "tls" | "wss"
    plaintext: bool


def _edge_settings(args: argparse.Namespace, cfg: agent_config.AgentConfig) -> EdgeSettings:
    server = args.server or cfg.server
    token = args.authtoken or cfg.authtoken
    ca = args.ca or cfg.ca
    wss = args.wss or cfg.wss
    transport = args.transport or cfg.transport or "auto"
    plaintext = args.plaintext
    if not server or not token:
        dev = agent_config.read_dev_edge()
        if dev is not None:
            if not server:
                server = dev["server"]
                ca = ca or dev.get("ca", "")
                wss = wss or dev.get("wss", "")
                plaintext = plaintext or dev.get("plaintext") == "1"
            token = token or dev.get("token", "")
    host, port = parse_address(server or agent_config.DEFAULT_SERVER)
    wss_host, wss_port = parse_address(wss) if wss else (host, 443)
    return EdgeSettings(host, port, token, ca, wss_host, wss_port, transport, plaintext)


def _agent_for(
    args: argparse.Namespace,
    cfg: agent_config.AgentConfig,
    specs: list[TunnelSpec],
    printer: Display,
) -> Agent:
    """An agent for the edge named by flags, the config file, or a running `burrowd dev`."""
    edge = _edge_settings(args, cfg)
    token = edge.token
    if not token:
        raise UsageError(
            "no authtoken: run `burrow config add-authtoken TOKEN` (or start `burrowd dev`)"
        )
    server = (edge.host, edge.port)
    memory = TunnelMemory(agent_config.state_dir() / FILE_NAME, f"{edge.host}:{edge.port}", token)
    if edge.plaintext:
        if edge.transport == "wss":
            raise UsageError("--plaintext links connect directly; drop --transport wss")
        return Agent(server, token, specs, on_change=printer.changed, memory=memory)
    try:
        tls = link_tls_context(edge.ca or None)
        wss_tls = link_tls_context(edge.ca or None, websocket=True)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot use CA file {edge.ca}: {exc}") from None
    return Agent(
        server,
        token,
        specs,
        on_change=printer.changed,
        tls=tls,
        transport={"tls": "direct"}.get(edge.transport, edge.transport),
        wss_server=(edge.wss_host, edge.wss_port),
        wss_tls=wss_tls,
        memory=memory,
    )


def _diagnose(args: argparse.Namespace, cfg: agent_config.AgentConfig) -> int:
    edge = _edge_settings(args, cfg)
    target = EdgeTarget(
        edge.host,
        edge.port,
        edge.token,
        ca=edge.ca,
        wss_host=edge.wss_host if edge.transport != "tls" else "",
        wss_port=edge.wss_port if edge.transport != "tls" else 0,
        plaintext=edge.plaintext,
    )
    if edge.ca and not os.path.isfile(edge.ca):
        print(f"burrow: no CA file at {edge.ca}", file=sys.stderr)
        return 2
    checks = uvloop.run(diagnose(target, per_check=args.timeout))
    for check in checks:
        print(check.line())
    failed = [c for c in checks if c.failed]
    print(f"{len(failed)} of {len(checks)} checks failed" if failed else "all checks passed")
    return 1 if failed else 0


def _inspect_address(
    args: argparse.Namespace, cfg: agent_config.AgentConfig
) -> tuple[str, int, bool] | None:
    """(host, port, try the next ports) for the local API, or None without one."""
    if args.no_inspect:
        return None
    given = args.inspect_addr or cfg.inspect_addr
    if not given:
        return (*local_api.DEFAULT_ADDR, True)
    if given.strip().lower() in ("false", "off", "none"):
        return None
    text = given.strip()
    host, _, port = text.rpartition(":")
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise UsageError(f"bad --inspect-addr {given!r}: write 127.0.0.1:4040 (port 0: any)")
    return (host.strip("[]") or "127.0.0.1", int(port), False)


async def _serve(
    agent: Agent,
    printer: Display,
    meters: AgentMeters,
    inspect: tuple[str, int, bool] | None,
) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, agent.stop)
    api: local_api.LocalApi | None = None
    if inspect is not None:
        host, port, next_free = inspect
        api = local_api.LocalApi(agent, meters, agent.inspector)
        try:
            await api.start(host, port, next_free=next_free)
        except OSError as exc:
            api = agent.inspector = None
            printer.say(
                f"burrow: no local API on {host}:{port} ({exc.strerror or exc}); "
                "pass --inspect-addr HOST:PORT or --no-inspect"
            )
    ticker = loop.create_task(_tick(agent, printer, meters))
    printer.start()
    if api is not None and isinstance(printer, ScreenDisplay):
        printer.web_interface = api.url
    elif api is not None:
        printer.say(f"Web Interface  {api.url}")
    try:
        await agent.run()
    except AgentRefused as exc:
        printer.say(f"burrow: {exc.sentence}")
        return 1
    finally:
        ticker.cancel()
        printer.close()  # the terminal back before the last line
        if api is not None:
            await api.close()
    printer.say("burrow: stopped")
    return 0


async def _tick(agent: Agent, printer: Display, meters: AgentMeters) -> None:
    while True:
        await asyncio.sleep(TICK_SECONDS)
        meters.tick(agent.tunnels)
        printer.tick(agent)


def _service(args: argparse.Namespace, cfg: agent_config.AgentConfig) -> int:
    target = service.plan(cfg.path.resolve(), getattr(args, "names", []), system=args.system)
    try:
        if args.service_command == "uninstall":
            for step in target.stop_steps:
                print(f"  {step}   # first, if it is running")
            if service.uninstall(target):
                print(f"Removed {target.path}")
            else:
                print(f"No service installed at {target.path}")
            return 0
        if not cfg.tunnels:
            raise UsageError(
                f"no tunnels defined in {cfg.path}: the service runs `burrow start`, "
                "add a [tunnels.NAME] table first"
            )
        _specs(args, cfg)  # the named tunnels exist
        if not (cfg.authtoken or agent_config.read_dev_edge()):
            raise UsageError(f"no authtoken in {cfg.path}: run `burrow config add-authtoken`")
        service.install(target)
    except service.ServiceError as exc:
        print(f"burrow: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote {target.path}; start it with:")
    for step in target.next_steps:
        print(f"  {step}")
    return 0


def _check_config(path: agent_config.Path | None) -> int:
    path = path or agent_config.config_path()
    if not path.exists():
        print(
            f"burrow: no config file at {path}; `burrow config add-authtoken TOKEN` creates it",
            file=sys.stderr,
        )
        return 1
    try:
        cfg = agent_config.load(path)
    except agent_config.ConfigError as exc:
        for line in exc.lines():
            print(f"burrow: {line}", file=sys.stderr)
        return 1
    tunnels = ", ".join(cfg.tunnels) or "none"
    print(f"{path}: valid (tunnels: {tunnels})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.log.lower() in logs.LEVELS:  # `--log info` from before --log-level existed
        args.log_level, args.log = args.log_level or args.log.lower(), ""
    logging.basicConfig(level=(args.log_level or "warning").upper(), format=logs.TEXT_FORMAT)
    path = agent_config.Path(args.config) if args.config else None
    try:
        if args.command == "version":
            print(f"burrow {AGENT_VERSION}")
            return 0
        if args.command == "config":
            if args.config_command == "path":
                print(path or agent_config.config_path())
                return 0
            if args.config_command == "check":
                return _check_config(path)
            saved = agent_config.save_authtoken(args.token, path)
            print(f"Authtoken saved to {saved}")
            return 0
        cfg = agent_config.load(path)
        if args.command == "service":
            return _service(args, cfg)
        if args.command == "diagnose":
            return _diagnose(args, cfg)
        specs = _specs(args, cfg)
        log_to = args.log or cfg.log_file
        inspect = _inspect_address(args, cfg)
        meters = AgentMeters()
        printer: Display
        if sys.stdout.isatty() and not log_to and not args.plain:
            printer = ScreenDisplay(meters=meters)
        else:
            printer = StatusPrinter(live=False)
        agent = _agent_for(args, cfg, specs, printer)
        if inspect is not None:
            keep = getattr(args, "inspect_keep", inspector.DEFAULT_KEEP)
            agent.inspector = inspector.Inspector(keep=max(1, keep))
        logs.configure(
            args.log_level or cfg.log_level or "warning",
            args.log_format or cfg.log_format or "text",
            log_to,
            printer.log_line,
        )
    except agent_config.ConfigError as exc:
        for line in exc.lines():
            print(f"burrow: {line}", file=sys.stderr)
        return 2
    except (UsageError, SpecError) as exc:
        print(f"burrow: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # --log FILE that cannot be opened
        print(f"burrow: cannot write the log to {args.log}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        return uvloop.run(_serve(agent, printer, meters, inspect))
    return 0


if __name__ == "__main__":
    sys.exit(main())
