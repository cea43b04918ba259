"""``burrowd worker inspector``: captured requests from the edges' stream into PostgreSQL.

Edges append ``bus.captures.CaptureRecord`` entries to ``CAPTURES_STREAM``. Every inspector
process reads them in one consumer group (so several share the load, each entry going to
one), stores a batch in one transaction, and acknowledges the batch only once that
transaction committed. So:

- PostgreSQL down: the batch stays unacknowledged in this process and is stored again and
  again until it commits; nothing is acknowledged that is not stored.
- A batch stored whose acknowledgement was lost (Redis down, the process killed between
  commit and ack): it is delivered again, and the insert skips the ids already there
  (``ON CONFLICT DO NOTHING``), so nothing is stored twice.
- A process that dies holding a batch: after ``CLAIM_IDLE`` seconds another inspector
  claims those entries (``Bus.claim_stale``) and stores them.

Retention runs every ``RETENTION_EVERY`` seconds under an advisory lock (one process does
it at a time): per org, the newest ``capture_keep_count`` captures of at most
``capture_keep_days`` days, unless the org's ``capture_retention`` row says otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket

import msgspec
from aiohttp import web

from bus.base import Bus, BusUnavailable, StreamEntry
from bus.captures import CAPTURES_STREAM, CaptureRecord, capture_decoder
from control.config import ControlConfig
from control.db import Database, DatabaseUnavailable
from control.keys import BUS, CONFIG, DB
from control.store import captures

log = logging.getLogger("burrow.control.inspector")

GROUP = "inspector"
BATCH = 200
CLAIM_IDLE = 30.0
RETENTION_EVERY = 60.0
RETRY_FIRST = 0.2
RETRY_CAP = 5.0
# Any constant no other Burrow lock uses; "inspect" in ASCII.
_RETENTION_LOCK = 0x696E_7370_6563_74


class InspectorWorker:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        config: ControlConfig,
        *,
        consumer: str = "",
        claim_idle: float = CLAIM_IDLE,
        retention_every: float = RETENTION_EVERY,
    ) -> None:
        self.db = db
        self.bus = bus
        self.config = config
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.claim_idle = claim_idle
        self.retention_every = retention_every
        self.stored = 0  # records this process added (not those it found already stored)
        self.undecodable = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_retention = loop.time()
        next_claim = loop.time() + self.claim_idle
        while True:
            claim = loop.time() >= next_claim
            if claim:
                next_claim = loop.time() + self.claim_idle
            entries = await self._read(claim)
            if entries:
                await self._store(entries)
                await self._ack(entries)
            if loop.time() >= next_retention:
                await self._retain()
                next_retention = loop.time() + self.retention_every

    async def _read(self, claim: bool) -> list[StreamEntry]:
        delay = RETRY_FIRST
        while True:
            try:
                if claim:
                    stale = await self.bus.claim_stale(
                        CAPTURES_STREAM, GROUP, self.consumer, self.claim_idle, BATCH
                    )
                    if stale:
                        log.info("inspector: took over %d unfinished captures", len(stale))
                        return stale
                return await self.bus.read_group(
                    CAPTURES_STREAM, GROUP, self.consumer, count=BATCH, block=1.0
                )
            except BusUnavailable as exc:
                if delay == RETRY_FIRST:
                    log.warning("inspector: %s; retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP)

    def _decode(self, entries: list[StreamEntry]) -> list[CaptureRecord]:
        records: list[CaptureRecord] = []
        for entry in entries:
            try:
                records.append(capture_decoder.decode(entry.payload))
            except msgspec.DecodeError as exc:
                # A bad entry is acknowledged with its batch: kept, it would come back for
                # ever. It is logged once and counted.
                self.undecodable += 1
                log.warning("inspector: dropped stream entry %s: %s", entry.entry_id, exc)
        return records

    async def _store(self, entries: list[StreamEntry]) -> None:
        records = self._decode(entries)
        if not records:
            return
        delay = RETRY_FIRST
        while True:
            try:
                async with self.db.transaction() as q:
                    added = await captures.store(q, records)
                self.stored += added
                return
            except DatabaseUnavailable as exc:
                if delay == RETRY_FIRST:
                    log.warning(
                        "inspector: %s; holding %d captures until it is back", exc, len(records)
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP)

    async def _ack(self, entries: list[StreamEntry]) -> None:
        ids = [entry.entry_id for entry in entries]
        delay = RETRY_FIRST
        while True:
            try:
                await self.bus.ack(CAPTURES_STREAM, GROUP, ids)
                return
            except BusUnavailable:
                # Stored already: if the ack never lands, the entries come back and the
                # insert skips them.
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP)

    async def _retain(self) -> None:
        try:
            # A transaction lock: released with the transaction on whatever connection.
            async with self.db.transaction() as q:
                if not await q.value("SELECT pg_try_advisory_xact_lock(%s)", (_RETENTION_LOCK,)):
                    return  # another inspector is at it
                gone = await captures.enforce_retention(
                    q, self.config.capture_keep_count, self.config.capture_keep_days * 86400.0
                )
        except DatabaseUnavailable as exc:
            log.warning("inspector: retention skipped this round: %s", exc)
            return
        if gone:
            log.info("inspector: retention removed %d captures", gone)


def create(app: web.Application) -> InspectorWorker:
    """The factory ``control.workers.WORKERS`` names."""
    return InspectorWorker(app[DB], app[BUS], app[CONFIG])
