"""The control side of ``burrowd dev``: the control service in the edge's process, on the
embedded PostgreSQL (or ``DATABASE_URL``), with a dev user, an org and a signed agent token
ready to use. The secret key and the dev login live in the data folder, so tokens keep
working across restarts."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
from aiohttp import web

from billing.settings import BillingSettings
from bus.base import Bus
from bus.events import EdgeCert, RoutingSnapshot
from certs.records import edge_certificate
from contracts.token_format import TokenClaims
from control.app import create_app
from control.config import ControlConfig
from control.db import json_param
from control.ids import new_id
from control.keys import BOX, DB, OUTBOX, PASSWORDS, SIGNING
from control.store import accounts
from control.token_signing import issue_token
from control.workers import WORKERS

DEV_EMAIL = "dev@burrow.localhost"


class OutboxSnapshots:
    """The edge's snapshot source when control runs in the same process."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def fetch(self) -> RoutingSnapshot:
        return await self.app[OUTBOX].snapshot()

    async def fetch_cert(self, host: str) -> EdgeCert:
        cert = await edge_certificate(self.app[DB], self.app[BOX], host)
        if cert is None:
            raise LookupError(f"control holds no certificate for {host}")
        return cert


@dataclass(slots=True)
class DevControl:
    runner: web.AppRunner
    app: web.Application
    url: str
    token: str
    password: str
    password_file: Path

    async def close(self) -> None:
        await self.runner.cleanup()


def _private_file(path: Path, make: str) -> str:
    """The text in ``path``, written first with ``make`` (mode 0600) when missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(make + "\n")
    return path.read_text().strip()


async def start_dev_control(
    data_dir: Path, host: str, port: int, base_domain: str, bus: Bus, agent_server: str
) -> DevControl:
    secret = os.environ.get("BURROW_SECRET_KEY") or _private_file(
        data_dir / "secret.key", secrets.token_urlsafe(32)
    )
    config = ControlConfig(
        database_url=os.environ.get("DATABASE_URL") or None,
        data_dir=str(data_dir),
        base_domain=base_domain,
        secret_key=secret,
        agent_server=agent_server,
        open_names=True,  # one developer's own machine: any free name is theirs to try
        # The dev provider's checkout page, so the whole paid flow can be tried locally.
        billing=BillingSettings(mock=True),
    )
    app = create_app(config, bus=bus, workers=tuple(WORKERS))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        password_file = data_dir / "dev-login.txt"
        password = _private_file(password_file, secrets.token_urlsafe(12))
        org_id = await _dev_org(app, password)
        token = await _dev_token(app, org_id, data_dir / "dev-token.txt")
    except BaseException:
        await runner.cleanup()
        raise
    return DevControl(runner, app, f"http://{bound[0]}:{bound[1]}", token, password, password_file)


async def _dev_org(app: web.Application, password: str) -> str:
    db = app[DB]
    user = await accounts.user_by_email(db, DEV_EMAIL)
    if user is None:
        password_hash = await app[PASSWORDS].hash(password)
        async with db.transaction() as q:
            user, org = await accounts.create_user_with_org(
                q, DEV_EMAIL, "Developer", password_hash, "dev", is_admin=True
            )
        return str(org["id"])
    orgs = await accounts.orgs_of_user(db, user["id"])
    return str(orgs[0]["id"])


async def _dev_token(app: web.Application, org_id: str, path: Path) -> str:
    """The saved dev token while it is still valid, else a new one."""
    db = app[DB]
    saved = _read_if_exists(path)
    if saved:
        token_id, _, text = saved.partition(" ")
        still_good = await db.value(
            "SELECT 1 FROM agent_tokens t JOIN signing_keys k ON k.kid = t.kid"
            " WHERE t.id = %s AND t.org_id = %s AND t.revoked_at IS NULL"
            " AND k.retired_at IS NULL",
            (token_id, org_id),
        )
        if still_good and text:
            return text
    token_id = new_id("tok")
    claims = TokenClaims(org=org_id, tid=token_id, iat=int(time.time()))
    key = await app[SIGNING].current()
    text = issue_token(claims, key)
    await db.execute(
        "INSERT INTO agent_tokens (id, org_id, description, kid, claims)"
        " VALUES (%s, %s, 'burrowd dev', %s, %s)",
        (token_id, org_id, key.kid, json_param(msgspec.to_builtins(claims))),
    )
    _replace_private_file(path, f"{token_id} {text}")
    return text


def _read_if_exists(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def _replace_private_file(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    _private_file(path, text)
