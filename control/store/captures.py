"""Captured requests in PostgreSQL: storing batches (idempotent on the record id),
retention, and the queries behind ``/v1/requests``."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bus.captures import CaptureRecord, capture_decoder, encode
from control.db import Database, Queries, Row

# The list's columns: what a row of GET /v1/requests shows without the record itself.
LIST_COLUMNS = (
    "id, tunnel_id, hostname, edge_id, request_id, method, url, protocol, status, visitor,"
    " started_at, duration_s, replay_of"
)


def _row(record: CaptureRecord) -> dict[str, Any]:
    path = record.url.partition("?")[0]
    return {
        "id": record.id,
        "org": record.org,
        "tunnel": record.tunnel_id,
        "host": record.hostname.lower(),
        "edge": record.edge_id,
        "request_id": record.request_id,
        "method": record.method,
        "url": record.url,
        "path": path,
        "protocol": record.protocol,
        "status": record.status,
        "visitor": record.visitor,
        "started": datetime.datetime.fromtimestamp(record.started, datetime.UTC),
        "duration": record.duration,
        "replay_of": record.replay_of,
        "record": encode(record),
    }


_INSERT = (
    "INSERT INTO captured_requests (id, org_id, tunnel_id, hostname, edge_id, request_id,"
    " method, url, protocol, status, visitor, started_at, duration_s, replay_of, record)"
    " VALUES (%(id)s, %(org)s, %(tunnel)s, %(host)s, %(edge)s, %(request_id)s, %(method)s,"
    " %(url)s, %(protocol)s, %(status)s, %(visitor)s, %(started)s, %(duration)s,"
    " %(replay_of)s, %(record)s)"
    " ON CONFLICT (id) DO NOTHING"
)


async def store(q: Queries, records: Sequence[CaptureRecord]) -> int:
    """Insert ``records`` in the caller's transaction; those already stored (a batch
    delivered again after a crash) are skipped. How many were new."""
    added = 0
    for record in records:
        added += await q.execute(_INSERT, _row(record))
    return added


async def enforce_retention(q: Queries, default_count: int, default_age: float) -> int:
    """Delete, per org, captures older than its age limit and past its newest N, in the
    caller's transaction. How many rows went."""
    limits = (
        "SELECT o.org_id, COALESCE(r.max_count, %(count)s) AS max_count,"
        " COALESCE(r.max_age_s, %(age)s) AS max_age_s"
        " FROM (SELECT DISTINCT org_id FROM captured_requests) o"
        " LEFT JOIN capture_retention r ON r.org_id = o.org_id"
    )
    params = {"count": default_count, "age": default_age}
    gone = await q.execute(
        f"DELETE FROM captured_requests c USING ({limits}) l WHERE c.org_id = l.org_id"
        " AND c.started_at < now() - make_interval(secs => l.max_age_s)",
        params,
    )
    gone += await q.execute(
        "DELETE FROM captured_requests c USING ("
        "  SELECT id FROM ("
        "    SELECT c.id, row_number() OVER"
        "      (PARTITION BY c.org_id ORDER BY c.started_at DESC, c.id DESC) AS n, l.max_count"
        f"    FROM captured_requests c JOIN ({limits}) l ON l.org_id = c.org_id"
        "  ) ranked WHERE n > max_count"
        ") old WHERE c.id = old.id",
        params,
    )
    return gone


@dataclass(frozen=True, slots=True)
class CaptureFilter:
    """What ``GET /v1/requests`` narrows to; None or empty: no condition."""

    org: str
    tunnel: str = ""
    host: str = ""
    method: str = ""
    status: int | None = None
    status_class: int | None = None  # 5 for 5xx
    path_prefix: str = ""
    search: str = ""
    since: datetime.datetime | None = None
    until: datetime.datetime | None = None
    # Paging: rows strictly older than this (started_at, id), newest first.
    before: tuple[datetime.datetime, str] | None = None


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(f: CaptureFilter) -> tuple[str, dict[str, Any]]:
    clauses = ["org_id = %(org)s"]
    params: dict[str, Any] = {"org": f.org}
    if f.tunnel:
        clauses.append("tunnel_id = %(tunnel)s")
        params["tunnel"] = f.tunnel
    if f.host:
        clauses.append("hostname = %(host)s")
        params["host"] = f.host.lower()
    if f.method:
        clauses.append("method = %(method)s")
        params["method"] = f.method.upper()
    if f.status is not None:
        clauses.append("status = %(status)s")
        params["status"] = f.status
    if f.status_class is not None:
        clauses.append("status >= %(lo)s AND status < %(hi)s")
        params["lo"], params["hi"] = f.status_class * 100, f.status_class * 100 + 100
    if f.path_prefix:
        clauses.append("url LIKE %(prefix)s")
        params["prefix"] = _like(f.path_prefix) + "%"
    if f.search:
        clauses.append("split_part(url, '?', 1) ILIKE %(search)s")
        params["search"] = "%" + _like(f.search) + "%"
    if f.since is not None:
        clauses.append("started_at >= %(since)s")
        params["since"] = f.since
    if f.until is not None:
        clauses.append("started_at < %(until)s")
        params["until"] = f.until
    if f.before is not None:
        clauses.append("(started_at, id) < (%(b_time)s, %(b_id)s)")
        params["b_time"], params["b_id"] = f.before
    return " AND ".join(clauses), params


async def page(db: Database, f: CaptureFilter, limit: int) -> list[Row]:
    where, params = _where(f)
    params["limit"] = limit
    return await db.all(
        f"SELECT {LIST_COLUMNS} FROM captured_requests WHERE {where}"
        " ORDER BY started_at DESC, id DESC LIMIT %(limit)s",
        params,
    )


async def newer(db: Database, f: CaptureFilter, after: datetime.datetime, limit: int) -> list[Row]:
    """Rows stored after ``after`` (for the live tail), oldest first."""
    where, params = _where(f)
    params["after"], params["limit"] = after, limit
    return await db.all(
        f"SELECT {LIST_COLUMNS}, stored_at FROM captured_requests WHERE {where}"
        " AND stored_at > %(after)s ORDER BY stored_at, id LIMIT %(limit)s",
        params,
    )


async def one(db: Database, org: str, capture_id: str) -> CaptureRecord | None:
    value = await db.value(
        "SELECT record FROM captured_requests WHERE org_id = %(org)s AND id = %(id)s",
        {"org": org, "id": capture_id},
    )
    return None if value is None else capture_decoder.decode(bytes(value))


async def clear(db: Database, org: str, tunnel: str = "", host: str = "") -> int:
    where, params = _where(CaptureFilter(org=org, tunnel=tunnel, host=host))
    return await db.execute(f"DELETE FROM captured_requests WHERE {where}", params)
