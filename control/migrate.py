"""Plain-SQL migrations: ``control/migrations/NNNN_name.sql``, applied in order, each in its
own transaction, recorded in ``schema_migrations``. An advisory lock keeps two processes
that start together from applying the same file twice."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

from control.db import Database

log = logging.getLogger("burrow.control.migrate")

# Any constant shared by every Burrow process; "burrow" in ASCII.
_LOCK_ID = 0x62757272_6F77


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    sql: str


def bundled_migrations() -> list[Migration]:
    folder = resources.files("control") / "migrations"
    found = [
        Migration(entry.name.removesuffix(".sql"), entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found, key=lambda m: m.version)


async def migrate(db: Database, migrations: list[Migration] | None = None) -> list[str]:
    """Apply what is missing; the versions applied now (empty when up to date)."""
    pending = migrations if migrations is not None else bundled_migrations()
    applied_now: list[str] = []
    async with db.transaction() as q:
        await q.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        await q.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await q.all("SELECT version FROM schema_migrations")}
        for migration in pending:
            if migration.version in done:
                continue
            log.info("applying migration %s", migration.version)
            await q.execute(migration.sql)
            await q.execute(
                "INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,)
            )
            applied_now.append(migration.version)
    return applied_now
