"""``burrowd control`` and ``burrowd migrate``: flags and environment to ControlConfig."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import TYPE_CHECKING

from billing.settings import BillingSettings
from certs.config import AcmeSettings, CertsConfig, Dns01Settings, directory_url
from control.config import ControlConfig
from control.workers import WORKERS

if TYPE_CHECKING:
    from aiohttp import web

# The runners import aiohttp and the database layer when they run: ``burrowd edge`` builds
# this module's flags too, and should not load what only control uses.

log = logging.getLogger("burrow.control")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    control = sub.add_parser("control", help="run the control service (REST API /v1)")
    control.add_argument("--listen", default="127.0.0.1:8000", help="HOST:PORT (port 0: any)")
    _control_flags(control)
    worker = sub.add_parser(
        "worker",
        help="run a background worker (several may run: they share the work)",
        description="Run one background worker on control's database and bus. It reads "
        "the [control] table of the config file.",
    )
    worker.add_argument("name", choices=sorted(WORKERS), help="which worker")
    worker.add_argument(
        "--listen", default="", help="HOST:PORT for /healthz and /metrics (default: none)"
    )
    _control_flags(worker)
    migrate_cmd = sub.add_parser("migrate", help="apply database migrations and exit")
    _store_flags(migrate_cmd)


def _control_flags(sp: argparse.ArgumentParser) -> None:
    _store_flags(sp)
    sp.add_argument("--base-domain", default=os.environ.get("BURROW_BASE_DOMAIN", "localhost"))
    sp.add_argument(
        "--edge-target",
        default=os.environ.get("BURROW_EDGE_TARGET", ""),
        help="hostname custom domains may CNAME to (default edge.BASE-DOMAIN)",
    )
    sp.add_argument(
        "--agent-server",
        default=os.environ.get("BURROW_AGENT_SERVER", ""),
        help="the edge address agents dial, printed with new tokens",
    )
    sp.add_argument("--closed-signup", action="store_true", help="only admins add users")
    sp.add_argument(
        "--open-names",
        action="store_true",
        help="any free name binds first-come; default: only reserved and random names",
    )
    sp.add_argument("--secure-cookies", action="store_true", help="control is behind HTTPS")
    sp.add_argument(
        "--dns", action="append", default=[], help="DNS server for domain checks (repeat)"
    )
    _cert_flags(sp)


def _cert_flags(sp: argparse.ArgumentParser) -> None:
    """``burrowd worker certs``'s settings. On ``control`` too, because both read the
    config file's [control] table."""
    env = os.environ.get
    group = sp.add_argument_group("certificates (burrowd worker certs)")
    group.add_argument(
        "--acme-directory",
        default=env("BURROW_ACME_DIRECTORY", ""),
        help="ACME directory URL, or letsencrypt / letsencrypt-staging (default: none, "
        "edges keep their local CA or self-signed certificates)",
    )
    group.add_argument("--acme-email", default=env("BURROW_ACME_EMAIL", ""), help="contact")
    group.add_argument(
        "--acme-ca-bundle", default="", help="PEM file to check the ACME server's HTTPS with"
    )
    group.add_argument("--acme-eab-kid", default="", help="external account binding key id")
    group.add_argument(
        "--acme-eab-hmac-key",
        default=env("BURROW_ACME_EAB_HMAC_KEY", ""),
        help="external account binding HMAC key (base64url; or $BURROW_ACME_EAB_HMAC_KEY)",
    )
    group.add_argument(
        "--acme-challenge",
        action="append",
        choices=("http-01", "tls-alpn-01"),
        default=["http-01", "tls-alpn-01"],
        help="challenge kinds for custom domains, preferred first (repeat)",
    )
    group.add_argument(
        "--acme-wildcard",
        action="store_true",
        help="also keep a certificate for *.BASE-DOMAIN and BASE-DOMAIN, over dns-01",
    )
    group.add_argument("--dns01-hook", default="", help="command: HOOK present|cleanup NAME VALUE")
    group.add_argument("--dns01-rfc2136", default="", help="HOST[:PORT] for RFC 2136 updates")
    group.add_argument("--dns01-zone", default="", help="zone to update (default BASE-DOMAIN)")
    group.add_argument("--dns01-tsig-name", default="", help="TSIG key name for RFC 2136")
    group.add_argument(
        "--cert-probe",
        action="append",
        default=[],
        help="HOST:PORT of an edge's HTTPS listener to check served certificates (repeat)",
    )
    group.add_argument("--cert-concurrency", type=int, default=8, help="orders at once")
    group.add_argument(
        "--cert-max-failures", type=int, default=5, help="failures before a domain is failed"
    )
    group.add_argument(
        "--cert-alert-webhook",
        default=env("BURROW_CERT_ALERT_WEBHOOK", ""),
        help="URL alerts are POSTed to, signed with $BURROW_CERT_WEBHOOK_SECRET",
    )


def _store_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="PostgreSQL URL (default $DATABASE_URL; unset: the embedded PostgreSQL)",
    )
    sp.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="default $REDIS_URL")
    sp.add_argument("--bus-prefix", default="burrow:")
    sp.add_argument(
        "--data-dir",
        default=os.environ.get("BURROW_DATA_DIR", ""),
        help="where the embedded PostgreSQL keeps its data",
    )


def config_from_args(args: argparse.Namespace) -> ControlConfig:
    edge_keys = tuple(k for k in os.environ.get("BURROW_EDGE_KEYS", "").split(",") if k.strip())
    return ControlConfig(
        database_url=args.database_url,
        redis_url=args.redis_url,
        bus_prefix=args.bus_prefix,
        data_dir=args.data_dir,
        base_domain=getattr(args, "base_domain", "localhost"),
        edge_target=getattr(args, "edge_target", ""),
        secret_key=os.environ.get("BURROW_SECRET_KEY", ""),
        edge_keys=edge_keys,
        signup_open=not getattr(args, "closed_signup", False),
        open_names=getattr(args, "open_names", False),
        secure_cookies=getattr(args, "secure_cookies", False),
        dns_nameservers=getattr(args, "dns", []),
        agent_server=getattr(args, "agent_server", ""),
        certs=certs_config_from_args(args),
        billing=BillingSettings.from_environ(),
    )


def certs_config_from_args(args: argparse.Namespace) -> CertsConfig:
    directory = getattr(args, "acme_directory", "")
    acme = None
    if directory:
        acme = AcmeSettings(
            directory_url=directory_url(directory),
            email=args.acme_email,
            ca_bundle=args.acme_ca_bundle,
            eab_kid=args.acme_eab_kid,
            eab_hmac_key=args.acme_eab_hmac_key,
        )
    if acme is None and not hasattr(args, "cert_probe"):
        return CertsConfig()
    # burrowd's parser gives a repeated flag's list in place of its default (settings.apply).
    given = list(dict.fromkeys(args.acme_challenge or ("http-01", "tls-alpn-01")))
    return CertsConfig(
        acme=acme,
        challenges=tuple(given),
        wildcard=args.acme_wildcard,
        dns01=Dns01Settings(
            hook=args.dns01_hook,
            rfc2136_server=args.dns01_rfc2136,
            zone=args.dns01_zone,
            tsig_name=args.dns01_tsig_name,
            tsig_secret=os.environ.get("BURROW_DNS01_TSIG_SECRET", ""),
        ),
        concurrency=max(1, args.cert_concurrency),
        max_failures=max(1, args.cert_max_failures),
        probe_addresses=list(args.cert_probe),
        webhook_url=args.cert_alert_webhook,
        webhook_secret=os.environ.get("BURROW_CERT_WEBHOOK_SECRET", ""),
    )


async def run_migrate(args: argparse.Namespace) -> int:
    from control.app import database_dsn
    from control.db import Database, DatabaseUnavailable
    from control.embedded_db import EmbeddedPostgresError
    from control.migrate import migrate

    config = config_from_args(args)
    try:
        db = await Database.connect(await database_dsn(config), maxsize=1)
    except (DatabaseUnavailable, EmbeddedPostgresError) as exc:
        print(f"burrowd: {exc}")
        return 1
    try:
        applied = await migrate(db)
    finally:
        await db.close()
    print(f"applied: {', '.join(applied)}" if applied else "the database is up to date")
    return 0


async def run_control(args: argparse.Namespace) -> int:
    from control.app import create_app

    config = config_from_args(args)
    if not config.edge_keys:
        log.warning("BURROW_EDGE_KEYS is unset: no edge can fetch routing state")
    return await _serve(
        create_app(config), args.listen, "control API on http://{}/v1 (OpenAPI: /v1/openapi.json)"
    )


async def run_worker(args: argparse.Namespace) -> int:
    """``burrowd worker NAME``: the control app's resources and one worker, no API."""
    from control.app import create_app

    app = create_app(config_from_args(args), workers=[args.name], api=False)
    return await _serve(
        app, args.listen, f"worker {args.name}: /healthz and /metrics on http://{{}}"
    )


async def _serve(app: web.Application, listen: str, banner: str) -> int:
    """Set ``app`` up, listen on ``listen`` (HOST:PORT; empty: no listener), and run until
    SIGINT or SIGTERM. ``banner``: printed with the bound address once listening."""
    from aiohttp import web

    from control.db import DatabaseUnavailable
    from control.embedded_db import EmbeddedPostgresError

    runner = web.AppRunner(app, access_log=None)
    try:
        await runner.setup()
    except (DatabaseUnavailable, EmbeddedPostgresError, RuntimeError) as exc:
        print(f"burrowd: {exc}")
        return 1
    if listen:
        host, _, port = listen.rpartition(":")
        site = web.TCPSite(runner, host or "127.0.0.1", int(port))
        await site.start()
        bound = runner.addresses[0]
        print(banner.format(f"{bound[0]}:{bound[1]}"), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0
