"""Migrations and the embedded PostgreSQL that ``burrowd dev`` falls back to."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from control.db import Database, DatabaseUnavailable
from control.embedded_db import dsn_with_database, start_embedded, stop_embedded
from control.migrate import Migration, bundled_migrations, migrate


async def test_migrations_are_recorded_and_not_applied_twice(database_url: str) -> None:
    db = await Database.connect(database_url, maxsize=2)
    try:
        assert await migrate(db) == []  # the fixture applied them all
        versions = [r["version"] for r in await db.all("SELECT version FROM schema_migrations")]
        assert versions == sorted(m.version for m in bundled_migrations())
        extra = Migration("9999_test", "CREATE TABLE migration_probe (x int)")
        assert await migrate(db, [*bundled_migrations(), extra]) == ["9999_test"]
        assert await migrate(db, [*bundled_migrations(), extra]) == []
        await db.execute("DROP TABLE migration_probe")
        await db.execute("DELETE FROM schema_migrations WHERE version = '9999_test'")
    finally:
        await db.close()


async def test_a_failing_migration_changes_nothing(database_url: str) -> None:
    db = await Database.connect(database_url, maxsize=1)
    try:
        good = Migration("9998_good", "CREATE TABLE half_applied (x int)")
        bad = Migration("9999_bad", "CREATE TABLE broken (")
        with pytest.raises(Exception, match="syntax"):
            await migrate(db, [*bundled_migrations(), good, bad])
        assert await db.value("SELECT to_regclass('half_applied')") is None
        assert await db.value("SELECT count(*) FROM schema_migrations WHERE version > '9000'") == 0
    finally:
        await db.close()


async def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(DatabaseUnavailable, match="cannot connect to PostgreSQL"):
        await Database.connect("postgresql://postgres@127.0.0.1:1/none", maxsize=1)


def _shared_folder() -> Path:
    """Not under pytest's private temporary folder: the embedded server runs as its own
    unprivileged user when the tests run as root."""
    folder = Path(tempfile.mkdtemp(prefix="burrow-embedded-"))
    folder.chmod(0o755)
    return folder


async def test_embedded_postgres_starts_and_migrates() -> None:
    folder = _shared_folder()
    dsn = await start_embedded(folder / "data", "burrow")
    db = await Database.connect(dsn, maxsize=1)
    try:
        applied = await migrate(db)
        assert applied == [m.version for m in bundled_migrations()]
        assert await db.value("SELECT count(*) FROM users") == 0
    finally:
        await db.close()
    try:
        # Started again on the same folder: the same server and data, nothing to apply.
        assert await start_embedded(folder / "data", "burrow") == dsn
        await stop_embedded(folder / "data")
        with pytest.raises(DatabaseUnavailable):
            await Database.connect(dsn, maxsize=1)
        # Stopped, then started on the same folder (the next `burrowd dev`): the data is back.
        dsn = await start_embedded(folder / "data", "burrow")
        db = await Database.connect(dsn, maxsize=1)
        try:
            assert await migrate(db) == []
            assert await db.value("SELECT count(*) FROM users") == 0
        finally:
            await db.close()
    finally:
        await stop_embedded(folder / "data")
        await asyncio.to_thread(shutil.rmtree, folder, True)
    with pytest.raises(DatabaseUnavailable):
        await Database.connect(dsn, maxsize=1)


def test_dsn_with_database() -> None:
    assert (
        dsn_with_database("postgresql://u:p@h:5432/postgres?sslmode=disable", "x")
        == "postgresql://u:p@h:5432/x?sslmode=disable"
    )
    assert dsn_with_database("host=h user=u dbname=postgres", "x") == "host=h user=u dbname=x"
