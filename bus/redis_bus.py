"""``RedisBus``: the bus on Redis, for control, edges and workers in separate processes.

Pub/sub channels and stream keys are ``prefix + name``. Payloads are bytes both ways
(``decode_responses`` stays off); a stream entry keeps its payload in one field, ``p``.

Failure model. Every call either finishes or raises ``BusUnavailable`` within a few
seconds: connects give up after ``CONNECT_TIMEOUT``, replies after ``REPLY_TIMEOUT``, and a
whole call after ``CALL_DEADLINE`` whatever redis-py does inside. redis-py's own retries are
off (on a pub/sub connection they would resubscribe behind our back and hide the Gap);
instead a call that fails with a broken connection is sent once more on a new one, because
after a Redis restart every pooled connection is dead and only the first use finds out.
That retry can repeat a command whose reply was lost; publishes carry a ``seq`` and reports
are states, so a repeat is harmless. Blocking stream reads are issued in slices shorter
than the reply timeout, so a long ``block`` never looks like a dead server.

A subscription owns one pub/sub connection, run by its own task. When the connection
breaks (or a silent one stops answering pings) the task reconnects with capped
exponential backoff and jitter, and once it is subscribed again it hands the subscriber a
``Gap``: whatever was published while it was away is gone, and the subscriber resyncs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bus.base import BusUnavailable, Gap, Published, StreamEntry
from bus.memory import (
    INBOX_BYTES,
    INBOX_MESSAGES,
    Inbox,
    InboxIteration,
    check_channels,
    check_maxlen,
)

log = logging.getLogger("burrow.bus")

T = TypeVar("T")

CONNECT_TIMEOUT = 2.0
REPLY_TIMEOUT = 3.0
CALL_DEADLINE = 5.0
# XREADGROUP BLOCK is sent in slices this long, each well inside REPLY_TIMEOUT.
BLOCK_SLICE = 2.0

RECONNECT_FIRST = 0.1
RECONNECT_CAP = 5.0
# A quiet pub/sub connection is pinged after this long; no answer in as long again and it
# is treated as lost (a dead peer behind a NAT or a partition sends no FIN).
PUBSUB_IDLE_PING = 5.0
PUBSUB_PONG_WAIT = 5.0

PAYLOAD_FIELD = b"p"

# Errors that mean "Redis cannot be reached or cannot serve now", as opposed to a bug in
# the request. ReadOnlyError is a replica answering while a failover completes; LOADING
# (BusyLoadingError) is a ConnectionError already. Builtin TimeoutError is an OSError.
_UNAVAILABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    OSError,
)


def redact_url(url: str) -> str:
    """``url`` fit for logs and errors: the password masked, the query (which may carry
    one too) dropped."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        if parts.password is not None:
            host = f"{parts.username or ''}:***@{host}"
        elif parts.username:
            host = f"{parts.username}@{host}"
        return f"{parts.scheme}://{host}{parts.path}"
    except ValueError:
        return "<unparsable Redis URL>"


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _backoff(delay: float) -> tuple[float, float]:
    """How long to sleep now (the delay with jitter, so many edges do not reconnect in
    step after an outage), and the next delay."""
    return delay * random.uniform(0.5, 1.0), min(delay * 2, RECONNECT_CAP)


class RedisSubscription(InboxIteration):
    """A ``bus.base.Subscription`` on Redis; it starts connecting when created."""

    def __init__(self, bus: RedisBus, channels: tuple[str, ...], inbox: Inbox, prefix: str) -> None:
        self._bus = bus
        self._inbox = inbox
        self.channels = channels
        self._by_key = {(prefix + name).encode(): name for name in channels}
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"bus subscription {','.join(channels)}"
        )

    async def close(self) -> None:
        if self._inbox.closed:
            return
        self._inbox.close()
        self._bus.forget(self)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        delay = RECONNECT_FIRST
        # Set by any failure, including failing to subscribe the first time: the subscriber
        # may have loaded a snapshot that publishes in the meantime have overtaken.
        missed = False
        while True:
            pubsub = self._bus.client.pubsub()
            try:
                await self._subscribe(pubsub)
                if missed:
                    log.info("bus subscription to %s is back", self._bus.safe_url)
                    self._inbox.put(Gap())
                    missed = False
                delay = RECONNECT_FIRST
                await self._pump(pubsub)
            except Exception as exc:
                if not missed:
                    log.warning(
                        "bus subscription to %s lost (%s); reconnecting",
                        self._bus.safe_url,
                        _reason(exc),
                    )
                missed = True
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            pause, delay = _backoff(delay)
            await asyncio.sleep(pause)

    async def _subscribe(self, pubsub: PubSub) -> None:
        """Subscribes and waits for the server to confirm every channel, so that a Gap
        handed out afterwards means "from here on nothing is missed"."""
        async with asyncio.timeout(CALL_DEADLINE):
            await pubsub.subscribe(*self._by_key)
            waiting = set(self._by_key)
            while waiting:
                message = await pubsub.get_message(timeout=REPLY_TIMEOUT)
                if message is None:
                    raise redis_errors.TimeoutError("no reply to SUBSCRIBE")
                if message["type"] == "subscribe":
                    waiting.discard(message["channel"])
                else:
                    self._take(message)

    async def _pump(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged: float | None = None
        while True:
            message = await pubsub.get_message(timeout=1.0)
            now = loop.time()
            if message is not None:
                heard, pinged = now, None
                self._take(message)
            elif pinged is not None:
                if now - pinged > PUBSUB_PONG_WAIT:
                    raise redis_errors.TimeoutError("no answer to PING on the pub/sub link")
            elif now - heard > PUBSUB_IDLE_PING:
                await pubsub.ping()
                pinged = now

    def _take(self, message: dict[str, Any]) -> None:
        if message["type"] != "message":
            return  # pong, or a subscribe confirmation after a resubscribe
        name = self._by_key.get(message["channel"])
        if name is not None:
            self._inbox.put(Published(name, message["data"]))


class RedisBus:
    """A ``bus.base.Bus`` on Redis (``redis://`` or ``rediss://``).

    ``inbox_messages`` and ``inbox_bytes`` bound each subscription's backlog, as on
    ``bus.memory.MemoryBus``.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "burrow:",
        *,
        inbox_messages: int = INBOX_MESSAGES,
        inbox_bytes: int = INBOX_BYTES,
    ) -> None:
        self.safe_url = redact_url(url)
        self._prefix = prefix
        self._inbox_messages = inbox_messages
        self._inbox_bytes = inbox_bytes
        self.client: Redis = Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=REPLY_TIMEOUT,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            decode_responses=False,
        )
        self._groups: set[tuple[bytes, str]] = set()
        self._subscriptions: set[RedisSubscription] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisBus({self.safe_url!r}, prefix={self._prefix!r})"

    def _key(self, name: str) -> bytes:
        return (self._prefix + name).encode()

    async def _call(self, op: Callable[[], Awaitable[T]], deadline: float = CALL_DEADLINE) -> T:
        if self._closed:
            raise BusUnavailable(f"the bus on {self.safe_url} is closed")
        try:
            async with asyncio.timeout(deadline):
                try:
                    return await op()
                except redis_errors.ConnectionError:
                    # redis-py dropped the broken connection; the pool connects afresh.
                    return await op()
        except _UNAVAILABLE as exc:
            raise BusUnavailable(
                f"Redis at {self.safe_url} is unavailable ({_reason(exc)}); "
                "check that it is running and reachable"
            ) from exc

    async def publish(self, channel: str, payload: bytes) -> None:
        key = self._key(channel)
        await self._call(lambda: self.client.publish(key, payload))

    def subscribe(self, channels: Sequence[str]) -> RedisSubscription:
        if self._closed:
            raise BusUnavailable(f"the bus on {self.safe_url} is closed")
        inbox = Inbox(self._inbox_messages, self._inbox_bytes)
        subscription = RedisSubscription(self, check_channels(channels), inbox, self._prefix)
        self._subscriptions.add(subscription)
        return subscription

    def forget(self, subscription: RedisSubscription) -> None:
        self._subscriptions.discard(subscription)

    async def append(self, stream: str, payload: bytes, maxlen: int = 100_000) -> str:
        check_maxlen(maxlen)
        key = self._key(stream)
        entry_id = await self._call(
            lambda: self.client.xadd(key, {PAYLOAD_FIELD: payload}, maxlen=maxlen, approximate=True)
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def _create_group(self, key: bytes, group: str) -> None:
        try:
            # From "0": a group sees what the stream already holds, not only what comes next.
            await self._call(lambda: self.client.xgroup_create(key, group, id="0", mkstream=True))
        except redis_errors.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise
        self._groups.add((key, group))

    async def read_group(
        self, stream: str, group: str, consumer: str, count: int = 100, block: float = 1.0
    ) -> list[StreamEntry]:
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        key = self._key(stream)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(block, 0.0)
        recreated = False
        while True:
            if (key, group) not in self._groups:
                await self._create_group(key, group)
            remaining = deadline - loop.time()
            # BLOCK 0 would wait forever, so a read that may not wait sends no BLOCK at all.
            block_ms = max(1, int(min(remaining, BLOCK_SLICE) * 1000)) if remaining > 0 else None
            slice_deadline = CALL_DEADLINE + (block_ms or 0) / 1000

            async def read(block_ms: int | None = block_ms) -> Any:
                return await self.client.xreadgroup(
                    group, consumer, {key: ">"}, count=count, block=block_ms
                )

            try:
                reply = await self._call(read, slice_deadline)
            except redis_errors.ResponseError as exc:
                # The stream or the group is gone: deleted, or Redis restarted without
                # persistence. Recreate it and read again.
                if recreated or not str(exc).startswith("NOGROUP"):
                    raise
                self._groups.discard((key, group))
                recreated = True
                continue
            entries = _entries(reply)
            if entries or remaining <= BLOCK_SLICE:
                return entries

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        key = self._key(stream)
        try:
            await self._call(lambda: self.client.xack(key, group, *entry_ids))
        except redis_errors.ResponseError as exc:
            # Nothing is pending in a group that no longer exists.
            if not str(exc).startswith("NOGROUP"):
                raise

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle: float, count: int = 100
    ) -> list[StreamEntry]:
        key = self._key(stream)
        idle_ms = max(0, int(min_idle * 1000))
        try:
            reply = await self._call(
                lambda: self.client.xautoclaim(key, group, consumer, idle_ms, "0-0", count=count)
            )
        except redis_errors.ResponseError as exc:
            if str(exc).startswith("NOGROUP"):
                return []  # no group yet (or Redis lost it): nothing is pending
            raise
        # [next start id, [[id, fields], ...], deleted ids (Redis 7)]
        return _entries({key: reply[1]}) if reply else []

    async def ping(self) -> bool:
        try:
            return bool(await self._call(self.client.ping))
        except (BusUnavailable, redis_errors.RedisError):
            return False

    async def close(self) -> None:
        if self._closed:
            return
        for subscription in list(self._subscriptions):
            await subscription.close()
        self._closed = True
        with contextlib.suppress(Exception):
            await self.client.aclose()


def _entries(reply: Any) -> list[StreamEntry]:
    """XREADGROUP's reply for one stream, as RESP2 (a list of [key, entries]) or RESP3 (a
    map of key to entries) parses it."""
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else (item[1] for item in reply)
    entries: list[StreamEntry] = []
    for stream_entries in streams:
        for entry_id, fields in stream_entries:
            if fields is None:
                continue  # deleted after delivery; only seen when re-reading pending entries
            payload = fields.get(PAYLOAD_FIELD, b"")
            entries.append(StreamEntry(entry_id.decode(), payload))
    return entries
