"""Revoking agent tokens in bulk: every token of a member who left, of a user an operator
disabled, or of an org. Each revocation goes through the routing outbox, exactly as one
``DELETE /v1/tokens/{id}`` does, so every edge ends the sessions and refuses the token."""

from __future__ import annotations

import functools

from bus.events import Revocation, TokenRevoked
from control.db import Queries
from control.routing_outbox import RoutingOutbox, revocation


async def revoke_tokens(
    q: Queries,
    outbox: RoutingOutbox,
    *,
    org_id: str | None = None,
    created_by: str | None = None,
) -> list[str]:
    """Revoke the live tokens of ``org_id`` and/or made by ``created_by`` (at least one is
    given), in the caller's transaction; their ids. Call ``outbox.changed()`` after commit."""
    if org_id is None and created_by is None:
        raise ValueError("revoke_tokens needs an org, a user, or both")
    rows = await q.all(
        "UPDATE agent_tokens SET revoked_at = now() WHERE revoked_at IS NULL"
        " AND (%(org)s::text IS NULL OR org_id = %(org)s)"
        " AND (%(user)s::text IS NULL OR created_by = %(user)s)"
        " RETURNING id, expires_at",
        {"org": org_id, "user": created_by},
    )
    for row in rows:
        entry = revocation(row["id"], row["expires_at"])
        await outbox.record(q, functools.partial(_revoked, entry))
    return [row["id"] for row in rows]


def _revoked(entry: Revocation, seq: int) -> TokenRevoked:
    return TokenRevoked(seq=seq, revocation=entry)
