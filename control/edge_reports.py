"""What edges report, applied to the ``edges`` and ``live_tunnels`` tables.

Edges append ``bus.events.EdgeReport`` entries to ``EDGE_REPORTS_STREAM``; one consumer group
("control") shares them among control processes. An ``EdgeState`` carries an edge's whole
tunnel list and arrives every few seconds, so the tables heal after anything is lost: a report
that cannot be decoded or applied is logged and acknowledged rather than retried forever.
A database outage is different: the entry is kept and applied once PostgreSQL is back, since
a group hands each entry out only once.

Times are the edge's own (``at``), capped at control's clock, so a backlog read after a
restart shows edges as stale as they really were, and a fast edge clock cannot keep a dead
edge looking alive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Sequence

import msgspec
import psycopg2

from bus.base import EDGE_REPORTS_STREAM, Bus, BusUnavailable, StreamEntry
from bus.events import (
    EdgeReport,
    EdgeState,
    EdgeStopped,
    LiveTunnel,
    TunnelDown,
    TunnelUp,
    report_decoder,
)
from control.db import Database, DatabaseUnavailable, Queries, cancel_requested, json_param

log = logging.getLogger("burrow.control.edge_reports")

# Errors that mean "the database is away", not "this report is bad": wait and apply again.
_TRANSIENT = (
    DatabaseUnavailable,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    OSError,
    TimeoutError,
)
MAX_BACKOFF = 5.0


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


_EDGE_SEEN = (
    "INSERT INTO edges (id, last_seen_at) VALUES (%(edge)s, least(to_timestamp(%(at)s), now()))"
    " ON CONFLICT (id) DO UPDATE SET"
    " last_seen_at = greatest(edges.last_seen_at, excluded.last_seen_at), stopped_at = NULL"
)

# One statement for any number of tunnels; the rows travel as one JSON array.
_UPSERT_TUNNELS = """
INSERT INTO live_tunnels (key, edge_id, org_id, token_id, protocol, url, hostname, port,
    session_id, instance_id, agent_version, client_addr, local_addr, started_at, seen_at)
SELECT t.key, %(edge)s, t.org, t.token_id, t.protocol, t.url, t.hostname, t.port,
    t.session_id, t.instance_id, t.agent_version, t.client_addr, t.local,
    least(to_timestamp(t.started), now()), least(to_timestamp(%(at)s), now())
FROM jsonb_to_recordset(%(rows)s) AS t(key text, org text, token_id text, protocol text,
    url text, hostname text, port integer, session_id text, instance_id text,
    agent_version text, client_addr text, local text, started float8)
ON CONFLICT (key) DO UPDATE SET
    edge_id = excluded.edge_id, org_id = excluded.org_id, token_id = excluded.token_id,
    protocol = excluded.protocol, url = excluded.url, hostname = excluded.hostname,
    port = excluded.port, session_id = excluded.session_id,
    instance_id = excluded.instance_id, agent_version = excluded.agent_version,
    client_addr = excluded.client_addr, local_addr = excluded.local_addr,
    started_at = excluded.started_at, seen_at = excluded.seen_at
"""


# Usage adds to the org's current billing period: its paid period while it pays, else the
# calendar month (UTC). Orgs control does not know (deleted since) are skipped.
_ADD_USAGE = """
INSERT INTO usage_periods (org_id, period_start, bytes, connections)
SELECT u.org,
    coalesce(CASE WHEN s.status IN ('active', 'past_due') THEN s.current_period_start END,
             date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
    sum(u.bytes), sum(u.connections)
FROM jsonb_to_recordset(%(usage)s) AS u(org text, bytes bigint, connections bigint)
JOIN orgs o ON o.id = u.org
LEFT JOIN subscriptions s ON s.org_id = u.org
GROUP BY 1, 2
ON CONFLICT (org_id, period_start) DO UPDATE SET
    bytes = usage_periods.bytes + excluded.bytes,
    connections = usage_periods.connections + excluded.connections,
    updated_at = now()
"""


def _rows(tunnels: Sequence[LiveTunnel], at: float) -> list[dict[str, object]]:
    # A key listed twice would make the upsert touch one row twice, which PostgreSQL refuses.
    unique = {t.key: t for t in tunnels}
    return [{**msgspec.to_builtins(t), "started": t.started or at} for t in unique.values()]


async def apply_report(q: Queries, report: EdgeReport) -> None:
    """Apply one report inside the caller's transaction."""
    params: dict[str, object] = {"edge": report.edge_id, "at": report.at}
    if isinstance(report, EdgeState):
        await q.execute(
            "INSERT INTO edges (id, version, started_at, last_seen_at, draining)"
            " VALUES (%(edge)s, %(version)s, least(to_timestamp(%(started)s), now()),"
            "   least(to_timestamp(%(at)s), now()), %(draining)s)"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version,"
            " started_at = excluded.started_at, draining = excluded.draining,"
            " last_seen_at = greatest(edges.last_seen_at, excluded.last_seen_at),"
            " stopped_at = NULL",
            {
                **params,
                "version": report.version,
                "started": report.started or report.at,
                "draining": report.draining,
            },
        )
        rows = _rows(report.tunnels, report.at)
        await q.execute(
            "DELETE FROM live_tunnels WHERE edge_id = %(edge)s AND NOT (key = ANY(%(keys)s))",
            {**params, "keys": [r["key"] for r in rows]},
        )
        if rows:
            await q.execute(_UPSERT_TUNNELS, {**params, "rows": json_param(rows)})
        usage = [
            msgspec.to_builtins(u) for u in report.usage if u.bytes >= 0 and u.connections >= 0
        ]
        if usage:
            await q.execute(_ADD_USAGE, {"usage": json_param(usage)})
    elif isinstance(report, TunnelUp):
        await q.execute(_EDGE_SEEN, params)
        rows = _rows([report.tunnel], report.at)
        await q.execute(_UPSERT_TUNNELS, {**params, "rows": json_param(rows)})
    elif isinstance(report, TunnelDown):
        await q.execute(_EDGE_SEEN, params)
        # Only this edge's claim: the agent may already be up again on another edge.
        await q.execute(
            "DELETE FROM live_tunnels WHERE key = %(key)s AND edge_id = %(edge)s",
            {**params, "key": report.key},
        )
    elif isinstance(report, EdgeStopped):
        await q.execute(
            "INSERT INTO edges (id, last_seen_at, stopped_at)"
            " VALUES (%(edge)s, least(to_timestamp(%(at)s), now()),"
            "   least(to_timestamp(%(at)s), now()))"
            " ON CONFLICT (id) DO UPDATE SET stopped_at = excluded.stopped_at,"
            " draining = false,"
            " last_seen_at = greatest(edges.last_seen_at, excluded.last_seen_at)",
            params,
        )
        await q.execute("DELETE FROM live_tunnels WHERE edge_id = %(edge)s", params)


class EdgeReportConsumer:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        group: str = "control",
        consumer: str | None = None,
        *,
        block: float = 1.0,
    ) -> None:
        self.db = db
        self.bus = bus
        self.group = group
        self.consumer = consumer or consumer_name()
        self.block = block
        # Told of every report applied (the metrics count them and the bus lag).
        self.on_applied: Callable[[EdgeReport], None] = lambda report: None

    async def run(self) -> None:
        """Read, apply and acknowledge reports until cancelled."""
        delay = 0.2
        while True:
            if cancel_requested():  # a cancellation some library call swallowed
                raise asyncio.CancelledError
            try:
                entries = await self.bus.read_group(
                    EDGE_REPORTS_STREAM, self.group, self.consumer, count=100, block=self.block
                )
                if entries:
                    await self._apply_all(entries)
                    await self.bus.ack(
                        EDGE_REPORTS_STREAM, self.group, [e.entry_id for e in entries]
                    )
                delay = 0.2
            except BusUnavailable as exc:
                if cancel_requested():
                    raise asyncio.CancelledError from exc
                log.warning("edge reports wait for the bus: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
            except Exception as exc:
                if cancel_requested():
                    raise asyncio.CancelledError from exc
                log.exception("reading edge reports failed; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    async def _apply_all(self, entries: Sequence[StreamEntry]) -> None:
        for entry in entries:
            try:
                report = report_decoder.decode(entry.payload)
            except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
                log.warning("dropping edge report %s: %s", entry.entry_id, exc)
                continue
            await self._apply(entry.entry_id, report)

    async def _apply(self, entry_id: str, report: EdgeReport) -> None:
        delay = 0.2
        while True:
            try:
                async with self.db.transaction() as q:
                    await apply_report(q, report)
            except _TRANSIENT as exc:
                if cancel_requested():
                    raise asyncio.CancelledError from exc
                log.warning("edge report %s waits for the database: %s", entry_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            except Exception as exc:
                if cancel_requested():
                    raise asyncio.CancelledError from exc
                log.exception("dropping edge report %s from %s", entry_id, report.edge_id)
                return
            self.on_applied(report)
            return
