"""The control service: ``create_app(config)`` builds the aiohttp application with its
database, bus and background workers tied to the app's lifetime through ``cleanup_ctx``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path

from aiohttp import web

from billing.service import BILLING, Billing, build_providers
from bus.base import Bus
from control import __version__, redaction
from control.api import (
    accounts,
    admin,
    api_keys,
    billing,
    domains,
    edge,
    names,
    orgs,
    tokens,
    tunnels,
)
from control.bodies import to_json
from control.config import ControlConfig
from control.db import Database
from control.dns_check import DomainVerifier
from control.edge_reports import EdgeReportConsumer
from control.embedded_db import start_embedded
from control.errors import json_errors, refuse_control_characters
from control.keys import BOX, BUS, CONFIG, DB, METRICS, OUTBOX, PASSWORDS, SIGNING, VERIFIER
from control.metrics import ControlMetrics
from control.migrate import migrate
from control.openapi import build_document, describe
from control.passwords import Passwords
from control.routing_outbox import RoutingOutbox
from control.secret_box import SecretBox
from control.signing_keys import SigningKeys
from control.throttle import THROTTLE, Throttle
from control.workers import running

log = logging.getLogger("burrow.control")

# How long one migration statement may take at start.
MIGRATE_SECONDS = 3600.0
# How long shutdown waits for one resource to close before it goes on without it.
CLOSE_TIMEOUT = 10.0


async def _close_within(what: str, closing: Awaitable[object]) -> None:
    """Wait for ``closing`` at most CLOSE_TIMEOUT: a pool or a bus client stuck on a dead
    connection must not keep the process (or a test's teardown) from ever finishing.
    ``asyncio.wait`` leaves a late task alone; ``wait_for`` would wait for it to cancel."""
    task = asyncio.ensure_future(closing)
    done, _ = await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)
    if not done:
        log.warning("shutdown: %s did not finish within %gs; going on", what, CLOSE_TIMEOUT)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("shutdown: %s failed: %r", what, task.exception())


async def database_dsn(config: ControlConfig) -> str:
    if config.database_url:
        return config.database_url
    data_dir = Path(config.data_dir or Path.home() / ".local/share/burrow") / "postgres"
    return await start_embedded(data_dir)


async def _database(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    dsn = await database_dsn(config)
    # Migrations get their own connection without the API's short statement limit (an
    # index on a large table may rightly take minutes); connecting is bounded as ever.
    migrating = await Database.connect(
        dsn,
        maxsize=1,
        limit_seconds=config.database_timeout,
        statement_seconds=MIGRATE_SECONDS,
    )
    try:
        applied = await migrate(migrating)
    finally:
        await migrating.close()
    if applied:
        log.info("database migrated: %s", ", ".join(applied))
    db = await Database.connect(dsn, limit_seconds=config.database_timeout)
    app[DB] = db
    yield
    await _close_within("closing the database pool", db.close())


async def _bus(app: web.Application) -> AsyncIterator[None]:
    if BUS not in app:  # burrowd dev hands in the bus its edge uses
        from bus.connect import open_bus

        app[BUS] = open_bus(app[CONFIG].redis_url, app[CONFIG].bus_prefix)
    yield
    await _close_within("closing the bus", app[BUS].close())


async def _routing(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    if not config.secret_key:
        raise RuntimeError(
            "set BURROW_SECRET_KEY (any long random string, kept safe): agent-token signing "
            "keys are encrypted with it"
        )
    outbox = RoutingOutbox(app[DB], app[BUS], open_names=config.open_names)
    outbox.report_pending = app[METRICS].routing_pending.set
    app[OUTBOX] = outbox
    app[BOX] = box = SecretBox.from_secret(config.secret_key)
    app[SIGNING] = SigningKeys(app[DB], box, outbox)
    await app[SIGNING].ensure()
    task = asyncio.get_running_loop().create_task(outbox.run(), name="routing-outbox")
    yield
    task.cancel()
    await _close_within("stopping the routing outbox", task)


async def _billing(app: web.Application) -> AsyncIterator[None]:
    """The payment providers that are on (SDK clients are built, not connected)."""
    settings = app[CONFIG].billing
    problems = settings.problems()
    if problems:
        raise RuntimeError("; ".join(problems))
    app[BILLING] = Billing(app[DB], app[OUTBOX], settings, build_providers(settings, app[DB]))
    if settings.mock:
        log.warning("billing: the mock payment provider is on (dev and tests only)")
    yield


async def _throttle(app: web.Application) -> AsyncIterator[None]:
    app[THROTTLE] = Throttle(app[CONFIG])
    yield
    await _close_within("closing the throttle's Redis connections", app[THROTTLE].close())


async def _edge_reports(app: web.Application) -> AsyncIterator[None]:
    consumer = EdgeReportConsumer(app[DB], app[BUS])
    consumer.on_applied = app[METRICS].report_applied
    task = asyncio.get_running_loop().create_task(consumer.run(), name="edge-reports")
    yield
    task.cancel()
    await _close_within("stopping the edge-report consumer", task)


routes = web.RouteTableDef()


@routes.get("/v1/openapi.json")
@describe("This document.", auth="none")
async def openapi(request: web.Request) -> web.Response:
    return to_json(build_document(request.app, __version__))


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].exposition(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[DB].value("SELECT 1")
    except Exception as exc:  # any failure means not ready; say which
        return web.Response(status=503, text=f"database: {exc}\n")
    return web.Response(text="ready\n")


def create_app(
    config: ControlConfig,
    *,
    bus: Bus | None = None,
    verifier: DomainVerifier | None = None,
    workers: Sequence[str] = (),
    api: bool = True,
    console: bool = True,
) -> web.Application:
    """The control app; ``workers``: names of ``control.workers.WORKERS`` to run beside it,
    on its database and bus; ``api``: serve /v1 (a worker's process serves only /healthz,
    /readyz and /metrics); ``console``: serve the web console at "/" (with the API)."""
    redaction.install()
    counted = ControlMetrics()
    app = web.Application(
        middlewares=[counted.middleware(), json_errors, refuse_control_characters],
        client_max_size=config.max_body_bytes,
    )
    app[METRICS] = counted
    app[CONFIG] = config
    app[PASSWORDS] = Passwords(config.passwords)
    # Tests hand in a verifier that asks their own DNS server.
    app[VERIFIER] = verifier or DomainVerifier(
        config.dns_nameservers or None,
        config.dns_port,
        config.dns_timeout,
        edge_target=config.cname_target,
    )
    if bus is not None:
        app[BUS] = bus
    app.cleanup_ctx.append(_throttle)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_bus)
    app.cleanup_ctx.append(_routing)
    app.cleanup_ctx.append(_billing)
    app.cleanup_ctx.append(_edge_reports)
    app.cleanup_ctx.append(running(workers))
    app.add_routes(routes)
    if not api:
        return app
    for table in (
        accounts.routes,
        orgs.routes,
        api_keys.routes,
        tokens.routes,
        names.routes,
        edge.routes,
        domains.routes,
        tunnels.routes,
        billing.routes,
        admin.routes,
    ):
        app.add_routes(table)
    if console:
        from console.app import mount

        mount(app)  # the web console at "/", beside /v1
    return app
