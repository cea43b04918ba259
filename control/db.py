"""PostgreSQL access through aiopg: one pool per process, dict rows, explicit transactions.

Every query is parameterized (``%(name)s`` or ``%s``); SQL text never contains user input.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import aiopg
import psycopg2
import psycopg2.extras

Params = Sequence[Any] | Mapping[str, Any] | None
Row = dict[str, Any]


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached or refused the connection."""


# How long one pool acquire, connect or statement may take before the caller gets
# DatabaseUnavailable: a frozen server must cost an API call seconds, not a hang.
DEFAULT_TIMEOUT = 3.0

# What a lost, refused or frozen server looks like from aiopg: psycopg2's OperationalError
# (connection lost or refused), InterfaceError (the connection was already closed) and
# TimeoutError (aiopg closes the connection when a statement, connect or acquire overruns).
_OUTAGE = (psycopg2.OperationalError, psycopg2.InterfaceError, TimeoutError, OSError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def _outage_is_unavailable() -> Iterator[None]:
    """Turn an outage into DatabaseUnavailable (a 503 for the API) without a traceback.
    aiopg drops a connection that failed, so the next call connects afresh: the service
    recovers by itself when the server is back."""
    try:
        yield
    except _OUTAGE as exc:
        if cancel_requested():
            raise
        raise DatabaseUnavailable(f"PostgreSQL is unavailable: {_first_line(exc)}") from exc


class Queries:
    """Query helpers over one cursor (a transaction, or a single autocommit statement)."""

    def __init__(self, cursor: Any) -> None:
        self._cur = cursor

    async def execute(self, sql: str, params: Params = None) -> int:
        await self._cur.execute(sql, params)
        return int(self._cur.rowcount)

    async def one(self, sql: str, params: Params = None) -> Row | None:
        await self._cur.execute(sql, params)
        row = await self._cur.fetchone()
        return dict(row) if row is not None else None

    async def all(self, sql: str, params: Params = None) -> list[Row]:
        await self._cur.execute(sql, params)
        return [dict(r) for r in await self._cur.fetchall()]

    async def value(self, sql: str, params: Params = None) -> Any:
        row = await self.one(sql, params)
        return None if row is None else next(iter(row.values()))


class Database:
    def __init__(self, pool: aiopg.Pool, statement_seconds: float | None = None) -> None:
        self.pool = pool
        # None: the pool's limit, the same as for connecting and acquiring.
        self.statement_seconds = statement_seconds

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        minsize: int = 1,
        maxsize: int = 10,
        limit_seconds: float = DEFAULT_TIMEOUT,
        statement_seconds: float | None = None,
    ) -> Database:
        # aiopg applies its ``timeout`` (our ``limit_seconds``) to connecting, to acquiring
        # from the pool and to every statement (closing the connection that overran). The
        # server gets a limit past ours, so it ends a query nobody waits for any more; not
        # the same one, because aiopg turns a server-side cancel into CancelledError.
        server_limit_ms = int((statement_seconds or limit_seconds) * 2000) + 1000

        async def limit_statements(conn: aiopg.Connection) -> None:
            async with conn.cursor() as cur:
                await cur.execute("SET statement_timeout = %s", (server_limit_ms,))

        try:
            pool = await aiopg.create_pool(
                dsn,
                minsize=minsize,
                maxsize=maxsize,
                timeout=limit_seconds,
                on_connect=limit_statements,
            )
        except _OUTAGE as exc:
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {_first_line(exc)}") from exc
        return cls(pool, statement_seconds)

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()

    @contextlib.asynccontextmanager
    async def _cursor(self) -> AsyncIterator[Any]:
        with _outage_is_unavailable():
            async with (
                self.pool.acquire() as conn,
                conn.cursor(
                    cursor_factory=psycopg2.extras.RealDictCursor, timeout=self.statement_seconds
                ) as cur,
            ):
                yield cur

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        async with self._cursor() as cur:
            await cur.execute("BEGIN")
            try:
                yield Queries(cur)
            except BaseException:
                # The original error (a cancellation, often) is what the caller must see,
                # not a failed ROLLBACK on a connection the cancellation broke.
                try:
                    await cur.execute("ROLLBACK")
                except Exception:
                    cur.connection.close()  # the pool drops a closed connection
                raise
            await cur.execute("COMMIT")

    async def execute(self, sql: str, params: Params = None) -> int:
        async with self._cursor() as cur:
            return await Queries(cur).execute(sql, params)

    async def one(self, sql: str, params: Params = None) -> Row | None:
        async with self._cursor() as cur:
            return await Queries(cur).one(sql, params)

    async def all(self, sql: str, params: Params = None) -> list[Row]:
        async with self._cursor() as cur:
            return await Queries(cur).all(sql, params)

    async def value(self, sql: str, params: Params = None) -> Any:
        async with self._cursor() as cur:
            return await Queries(cur).value(sql, params)


def cancel_requested() -> bool:
    """Whether the current task was asked to stop. A cancellation that lands in a database
    or bus call can come out as another error (a ROLLBACK on the connection aiopg closed
    raises InterfaceError; a client library may retry), so a retry loop asks first rather
    than carrying on forever."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def json_param(value: Any) -> psycopg2.extras.Json:
    return psycopg2.extras.Json(value)
