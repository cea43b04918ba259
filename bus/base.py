"""The bus interface, implemented by ``bus.redis_bus.RedisBus`` (production, several
processes) and ``bus.memory.MemoryBus`` (``burrowd dev`` and tests, one process).

Pub/sub is fire-and-forget: a subscriber that was disconnected misses what was published in
between, so a subscription yields ``Gap`` after it reconnects and the subscriber resyncs from
a snapshot. Streams keep entries (capped) and are read by consumer groups, so a control
process that restarts picks up what edges reported while it was away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

# Channel and stream names (the implementation adds its key prefix).
ROUTING_CHANNEL = "routing"  # control -> edges: bus.events.RoutingEvent
EDGE_REPORTS_STREAM = "edge-reports"  # edges -> control: bus.events.EdgeReport


class BusUnavailable(Exception):
    """The bus cannot be reached right now; the caller retries later."""


@dataclass(frozen=True, slots=True)
class Published:
    channel: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Gap:
    """The subscription was interrupted (and is back): messages may have been missed."""


@dataclass(frozen=True, slots=True)
class StreamEntry:
    entry_id: str
    payload: bytes


class Subscription(Protocol):
    """An open subscription; iterate it for ``Published`` and ``Gap`` items. It reconnects
    by itself with backoff and never ends until closed."""

    def __aiter__(self) -> AsyncIterator[Published | Gap]: ...

    async def close(self) -> None: ...


class Bus(Protocol):
    async def publish(self, channel: str, payload: bytes) -> None:
        """Send to every current subscriber; raises BusUnavailable when the bus is down."""

    def subscribe(self, channels: Sequence[str]) -> Subscription: ...

    async def append(self, stream: str, payload: bytes, maxlen: int = 100_000) -> str:
        """Add an entry (the oldest go past ``maxlen``); its id. BusUnavailable when down."""

    async def read_group(
        self, stream: str, group: str, consumer: str, count: int = 100, block: float = 1.0
    ) -> list[StreamEntry]:
        """New entries for ``group`` (created on first use, from the stream's start), waiting
        up to ``block`` seconds for one. BusUnavailable when down."""

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> None: ...

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle: float, count: int = 100
    ) -> list[StreamEntry]:
        """Entries delivered to any consumer of ``group`` and not acked for ``min_idle``
        seconds, now delivered to ``consumer`` (a consumer that died mid-batch leaves its
        entries to the others this way), oldest first. BusUnavailable when down."""

    async def ping(self) -> bool:
        """Whether the bus answers now."""

    async def close(self) -> None: ...
