"""``burrow``: expose local services through a Burrow edge.

burrow http 8000                      a random https/http URL for localhost:8000
burrow http localhost:8000 --name demo
burrow tcp 5432                       a public TCP port for localhost:5432
burrow start [NAME ...]               the tunnels from the config file (all if none named)
burrow config add-authtoken TOKEN     save the token in the config file
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

import uvloop

from agent import config as agent_config
from agent.client import Agent, AgentRefused
from agent.status import StatusPrinter
from agent.tunnels import SpecError, TunnelSpec, parse_address


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="burrow", description="Expose local services at public URLs.")
    p.add_argument("--config", help="config file (default: ~/.config/burrow/burrow.toml)")
    p.add_argument("--log", default="warning", help="log level: debug, info, warning")
    sub = p.add_subparsers(dest="command", required=True)

    def tunnel_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--server", help="edge agent address host:port (default from config)")
        sp.add_argument("--authtoken", help="token to use instead of the configured one")

    http = sub.add_parser("http", help="expose a local HTTP service")
    http.add_argument("addr", help="local port, or host:port")
    http.add_argument("--name", default="", help="subdomain or hostname to ask for")
    http.add_argument("--pool", action="store_true", help="share the name with other agents")
    tunnel_flags(http)

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

    sub.add_parser("version", help="print the agent version")
    return p


def _specs(args: argparse.Namespace, cfg: agent_config.AgentConfig) -> list[TunnelSpec]:
    if args.command in ("http", "tcp"):
        host, port = parse_address(args.addr)
        if args.command == "http":
            return [TunnelSpec("http", host, port, name=args.name, pool=args.pool)]
        return [TunnelSpec("tcp", host, port, remote_port=args.remote_port)]
    if not cfg.tunnels:
        raise UsageError(f"no tunnels defined in {cfg.path}; see `burrow start --help`")
    names = args.names or list(cfg.tunnels)
    missing = [n for n in names if n not in cfg.tunnels]
    if missing:
        raise UsageError(f"no tunnel named {', '.join(missing)} in {cfg.path}")
    return [cfg.tunnels[n] for n in names]


def _server_and_token(args: argparse.Namespace, cfg: agent_config.AgentConfig) -> tuple[str, str]:
    server = args.server or cfg.server
    token = args.authtoken or cfg.authtoken
    if not server or not token:
        dev = agent_config.read_dev_edge()
        if dev is not None:
            server = server or dev["server"]
            token = token or dev.get("token", "")
    if not token:
        raise UsageError(
            "no authtoken: run `burrow config add-authtoken TOKEN` (or start `burrowd dev`)"
        )
    return server or agent_config.DEFAULT_SERVER, token


async def _serve(agent: Agent, printer: StatusPrinter) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, agent.stop)
    ticker = loop.create_task(_tick(agent, printer))
    try:
        await agent.run()
    except AgentRefused as exc:
        printer.say(f"burrow: the edge refused this agent: {exc}")
        return 1
    finally:
        ticker.cancel()
    printer.say("burrow: stopped")
    return 0


async def _tick(agent: Agent, printer: StatusPrinter) -> None:
    while True:
        await asyncio.sleep(1.0)
        printer.tick(agent)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log.upper(), format="%(asctime)s %(levelname)s %(message)s")
    path = agent_config.Path(args.config) if args.config else None
    try:
        if args.command == "version":
            from agent.link import AGENT_VERSION

            print(f"burrow {AGENT_VERSION}")
            return 0
        if args.command == "config":
            if args.config_command == "path":
                print(path or agent_config.config_path())
                return 0
            saved = agent_config.save_authtoken(args.token, path)
            print(f"Authtoken saved to {saved}")
            return 0
        cfg = agent_config.load(path)
        specs = _specs(args, cfg)
        server, token = _server_and_token(args, cfg)
        host, port = parse_address(server)
    except (UsageError, SpecError, agent_config.ConfigError) as exc:
        print(f"burrow: {exc}", file=sys.stderr)
        return 2
    printer = StatusPrinter()
    agent = Agent((host, port), token, specs, on_change=printer.changed)
    with contextlib.suppress(KeyboardInterrupt):
        return uvloop.run(_serve(agent, printer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
