"""The audit log, read back: newest first, paged by id."""

from __future__ import annotations

from control.db import Database, Row


async def entries(db: Database, *, before: int, limit: int, org_id: str = "") -> list[Row]:
    """Up to ``limit`` entries with ids below ``before`` (0: from the newest), of one org
    when ``org_id`` is given, each with the org's name."""
    return await db.all(
        "SELECT a.id, a.org_id, o.name AS org_name, a.actor, a.action, a.target, a.at"
        " FROM audit_log a LEFT JOIN orgs o ON o.id = a.org_id"
        " WHERE (%(before)s = 0 OR a.id < %(before)s)"
        " AND (%(org)s = '' OR a.org_id = %(org)s)"
        " ORDER BY a.id DESC LIMIT %(limit)s",
        {"before": before, "limit": limit, "org": org_id},
    )
