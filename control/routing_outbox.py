"""Routing changes, from the database to the edges.

A handler that changes what edges enforce (a reserved name, a domain, a revocation, the
signing keys) records a ``RoutingEvent`` in ``routing_events`` inside its own transaction.
Writers take one advisory lock, so sequence numbers follow commit order and an edge that sees
a jump knows it missed an event. The publisher sends unpublished rows to the bus in order
after they commit, and retries while the bus is down; edges poll the snapshot meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bus.base import ROUTING_CHANNEL, Bus, BusUnavailable
from bus.events import (
    DomainRoute,
    NameClaim,
    OrgLimits,
    Revocation,
    RoutingEvent,
    RoutingSnapshot,
    VerifyKey,
    encode,
)
from certs.records import cert_refs, live_challenges
from control.db import Database, Queries, cancel_requested

log = logging.getLogger("burrow.control.routing")

_ROUTING_LOCK = 0x62757272_0001
# A revocation of a token that never expires is kept this long (edges drop it after).
FOREVER = 100 * 365 * 24 * 3600


class RoutingOutbox:
    def __init__(self, db: Database, bus: Bus, *, open_names: bool = False) -> None:
        self.db = db
        self.bus = bus
        self.open_names = open_names  # ControlConfig.open_names, told to edges in snapshots
        self._wake = asyncio.Event()
        # Told how many committed events wait for the bus (a metrics gauge's ``set``).
        self.report_pending: Callable[[int], None] = lambda n: None

    async def record(self, q: Queries, make: Callable[[int], RoutingEvent]) -> int:
        """Record the event ``make(seq)`` in the caller's transaction; its seq."""
        await q.execute("SELECT pg_advisory_xact_lock(%s)", (_ROUTING_LOCK,))
        seq = int(await q.value("SELECT coalesce(max(seq), 0) + 1 FROM routing_events"))
        await q.execute(
            "INSERT INTO routing_events (seq, payload) VALUES (%s, %s)", (seq, encode(make(seq)))
        )
        return seq

    def changed(self) -> None:
        """Call after the transaction that recorded events has committed."""
        self._wake.set()

    async def publish_pending(self) -> int:
        """Send what is committed and unsent, in order; how many were sent."""
        rows = await self.db.all(
            "SELECT seq, payload FROM routing_events WHERE published_at IS NULL"
            " ORDER BY seq LIMIT 500"
        )
        self.report_pending(len(rows))
        for left, row in enumerate(rows, 1):
            await self.bus.publish(ROUTING_CHANNEL, bytes(row["payload"]))
            self.report_pending(len(rows) - left)
            await self.db.execute(
                "UPDATE routing_events SET published_at = now() WHERE seq = %s", (row["seq"],)
            )
        return len(rows)

    async def run(self) -> None:
        delay = 0.2
        last_prune = 0.0
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that arrives as the wait finishes, and then shutdown hangs.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            self._wake.clear()
            try:
                while await self.publish_pending() == 500:
                    pass
                delay = 0.2
                if time.monotonic() - last_prune > 3600:
                    last_prune = time.monotonic()
                    await self.db.execute(
                        "DELETE FROM routing_events WHERE published_at < now() - interval '1 day'"
                    )
            except BusUnavailable as exc:
                if cancel_requested():
                    raise asyncio.CancelledError from exc
                log.warning("routing events wait for the bus: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as exc:
                if cancel_requested():
                    raise asyncio.CancelledError from exc
                log.exception("publishing routing events failed; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def snapshot(self) -> RoutingSnapshot:
        """Everything edges enforce, consistent with ``seq`` (taken under the writers' lock)."""
        async with self.db.transaction() as q:
            await q.execute("SELECT pg_advisory_xact_lock(%s)", (_ROUTING_LOCK,))
            seq = int(await q.value("SELECT coalesce(max(seq), 0) FROM routing_events"))
            names = [
                NameClaim(r["host"], r["org_id"])
                for r in await q.all("SELECT host, org_id FROM reserved_names ORDER BY host")
            ]
            domains = [
                domain_route(r)
                for r in await q.all(
                    "SELECT d.host, d.org_id, d.verified_at, d.tls_mode, d.target_name"
                    " FROM domains d ORDER BY d.host"
                )
            ]
            revoked = [
                revocation(r["id"], r["expires_at"])
                for r in await q.all(
                    "SELECT id, expires_at FROM agent_tokens WHERE revoked_at IS NOT NULL"
                    " AND (expires_at IS NULL OR expires_at > now())"
                )
            ]
            keys = [
                VerifyKey(r["kid"], bytes(r["public_key"]))
                for r in await q.all(
                    "SELECT kid, public_key FROM signing_keys WHERE retired_at IS NULL"
                    " ORDER BY created_at"
                )
            ]
            suspended = [
                r["id"]
                for r in await q.all(
                    "SELECT id FROM orgs WHERE suspended_at IS NOT NULL ORDER BY id"
                )
            ]
            # An operator's override, else the org's plan (migration 0005's view).
            limits = [
                org_limits(r["id"], r["limits"], plan=r["plan_id"])
                for r in await q.all(
                    "SELECT id, limits, plan_id FROM org_edge_limits WHERE limits <> '{}'"
                    " ORDER BY id"
                )
            ]
            certs = await cert_refs(q)
            challenges = await live_challenges(q)
        return RoutingSnapshot(
            seq=seq,
            names=names,
            domains=domains,
            revoked=revoked,
            keys=keys,
            suspended=suspended,
            limits=limits,
            certs=certs,
            challenges=challenges,
            open_names=self.open_names,
        )


def domain_route(row: dict[str, object]) -> DomainRoute:
    return DomainRoute(
        host=str(row["host"]),
        org=str(row["org_id"]),
        verified=row["verified_at"] is not None,
        tls_mode=str(row["tls_mode"]),
        target=str(row["target_name"] or ""),
    )


LIMIT_NAMES = ("tunnels", "links", "tcp_ports", "streams")


def org_limits(org_id: str, limits: object, plan: str = "") -> OrgLimits:
    """An org's effective limits as the edges get it; ``plan``: the plan they come from,
    named in the edge's refusals."""
    given = limits if isinstance(limits, dict) else {}
    return OrgLimits(org_id, **{k: int(given.get(k) or 0) for k in LIMIT_NAMES}, plan=plan)


def revocation(token_id: str, expires_at: object) -> Revocation:
    until = expires_at.timestamp() if expires_at is not None else time.time() + FOREVER  # type: ignore[attr-defined]
    return Revocation(token_id, until)
