"""``MemoryBus``: the bus inside one process, for ``burrowd dev`` and tests.

It keeps the semantics of ``bus.base.Bus`` so code written against it behaves the same on
Redis: publish reaches only current subscribers, a subscriber that falls behind loses
messages and is told so with a ``Gap``, streams are capped, and each consumer group has its
own read position. Everything runs on one event loop; nothing here is thread-safe.

``Inbox`` is also the queue behind every ``bus.redis_bus`` subscription.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence

from bus.base import BusUnavailable, Gap, Published, StreamEntry

# A subscriber may lag this far behind before its backlog is dropped and it gets a Gap.
# Both bounds hold: many small messages, or a few large ones.
INBOX_MESSAGES = 10_000
INBOX_BYTES = 64 * 1024 * 1024

_GAP = Gap()


def check_channels(channels: Sequence[str]) -> tuple[str, ...]:
    """The distinct channels of a subscribe call, in order; at least one."""
    if isinstance(channels, str):
        raise TypeError("subscribe takes a sequence of channel names, not one string")
    unique = tuple(dict.fromkeys(channels))
    if not unique:
        raise ValueError("subscribe needs at least one channel")
    return unique


def check_maxlen(maxlen: int) -> None:
    if maxlen < 1:
        raise ValueError(f"a stream keeps at least one entry; maxlen={maxlen}")


class Inbox:
    """The bounded queue between whoever delivers a subscription's messages and the one
    task iterating it.

    ``put`` never blocks: delivery must not wait on a slow subscriber (on Redis, the server
    would drop the connection instead). When the backlog passes either bound it is dropped
    whole and replaced by one ``Gap``, because a subscriber that far behind resyncs from a
    snapshot anyway, and the few newest messages are kept no better than the rest.
    """

    __slots__ = ("_bytes", "_closed", "_items", "_max_bytes", "_max_items", "_ready")

    def __init__(self, max_items: int = INBOX_MESSAGES, max_bytes: int = INBOX_BYTES) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError("an inbox holds at least one message and one byte")
        self._items: deque[Published | Gap] = deque()
        self._bytes = 0
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._ready = asyncio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Published | Gap) -> None:
        if self._closed:
            return
        if isinstance(item, Gap):
            if self._items and isinstance(self._items[-1], Gap):
                return
            self._items.append(item)
            self._ready.set()
            return
        size = len(item.payload)
        # An empty inbox takes any one message, so a payload above max_bytes still arrives.
        if self._items and (
            len(self._items) >= self._max_items or self._bytes + size > self._max_bytes
        ):
            self._items.clear()
            self._bytes = 0
            self._items.append(_GAP)
        self._items.append(item)
        self._bytes += size
        self._ready.set()

    async def get(self) -> Published | Gap | None:
        """The next item, waiting for one; None once the inbox is closed."""
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        if self._closed:
            return None
        item = self._items.popleft()
        if isinstance(item, Published):
            self._bytes -= len(item.payload)
        return item

    def close(self) -> None:
        """Ends iteration now; what is still queued is dropped."""
        self._closed = True
        self._items.clear()
        self._bytes = 0
        self._ready.set()


class InboxIteration:
    """Iterating a subscription: what its inbox holds, until the inbox is closed."""

    __slots__ = ()
    _inbox: Inbox

    def __aiter__(self) -> AsyncIterator[Published | Gap]:
        return self

    async def __anext__(self) -> Published | Gap:
        item = await self._inbox.get()
        if item is None:
            raise StopAsyncIteration
        return item


class MemorySubscription(InboxIteration):
    """A ``bus.base.Subscription`` on a ``MemoryBus``. It is live as soon as it exists."""

    __slots__ = ("_bus", "_inbox", "channels")

    def __init__(self, bus: MemoryBus, channels: tuple[str, ...], inbox: Inbox) -> None:
        self._bus = bus
        self._inbox = inbox
        self.channels = channels

    def deliver(self, item: Published | Gap) -> None:
        self._inbox.put(item)

    async def close(self) -> None:
        self._bus.forget(self)
        self._inbox.close()


class _Group:
    __slots__ = ("next", "pending")

    def __init__(self, start: int) -> None:
        self.next = start  # absolute position of the first entry not yet delivered
        # entry id -> (consumer, when delivered, the entry): kept whole, since the stream may
        # trim an entry before it is acked and a claim must still hand it on.
        self.pending: OrderedDict[str, tuple[str, float, StreamEntry]] = OrderedDict()


class _Stream:
    """Entries in a list read from ``_head``; positions are absolute (``_base`` + index), so
    trimming the front is a counter bump and a group's read position stays valid."""

    __slots__ = ("_base", "_entries", "_head", "_last_ms", "_last_seq", "changed", "groups")

    def __init__(self) -> None:
        self._entries: list[StreamEntry] = []
        self._base = 0
        self._head = 0
        self._last_ms = 0
        self._last_seq = -1
        self.groups: dict[str, _Group] = {}
        self.changed = asyncio.Event()

    @property
    def first(self) -> int:
        return self._base + self._head

    @property
    def end(self) -> int:
        return self._base + len(self._entries)

    def __len__(self) -> int:
        return len(self._entries) - self._head

    def next_id(self) -> str:
        # The Redis id format, "<ms>-<seq>", increasing even when the clock steps back.
        now_ms = time.time_ns() // 1_000_000
        if now_ms > self._last_ms:
            self._last_ms, self._last_seq = now_ms, 0
        else:
            self._last_seq += 1
        return f"{self._last_ms}-{self._last_seq}"

    def append(self, payload: bytes, maxlen: int) -> str:
        entry_id = self.next_id()
        self._entries.append(StreamEntry(entry_id, payload))
        excess = len(self) - maxlen
        if excess > 0:
            self._head += excess
            # Compact once the dead front outweighs the live part: amortized O(1) per entry.
            if self._head > 1024 and self._head * 2 > len(self._entries):
                del self._entries[: self._head]
                self._base += self._head
                self._head = 0
        self.changed.set()
        self.changed = asyncio.Event()
        return entry_id

    def take(self, start: int, count: int) -> tuple[int, list[StreamEntry]]:
        """Up to ``count`` entries from absolute position ``start`` (or the oldest kept,
        if those were trimmed), and the position after the last one."""
        index = max(start, self.first) - self._base
        entries = self._entries[index : index + count]
        return self._base + index + len(entries), entries


class MemoryBus:
    """A ``bus.base.Bus`` for one process.

    ``inbox_messages`` and ``inbox_bytes`` bound each subscription's backlog.
    """

    def __init__(
        self, *, inbox_messages: int = INBOX_MESSAGES, inbox_bytes: int = INBOX_BYTES
    ) -> None:
        self._inbox_messages = inbox_messages
        self._inbox_bytes = inbox_bytes
        self._subscribers: dict[str, set[MemorySubscription]] = {}
        self._streams: dict[str, _Stream] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise BusUnavailable("the in-process bus is closed")

    async def publish(self, channel: str, payload: bytes) -> None:
        self._check_open()
        subscribers = self._subscribers.get(channel)
        if subscribers:
            message = Published(channel, bytes(payload))
            for subscription in subscribers:
                subscription.deliver(message)

    def subscribe(self, channels: Sequence[str]) -> MemorySubscription:
        self._check_open()
        names = check_channels(channels)
        subscription = MemorySubscription(
            self, names, Inbox(self._inbox_messages, self._inbox_bytes)
        )
        for name in names:
            self._subscribers.setdefault(name, set()).add(subscription)
        return subscription

    def forget(self, subscription: MemorySubscription) -> None:
        for name in subscription.channels:
            subscribers = self._subscribers.get(name)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[name]

    def _stream(self, name: str) -> _Stream:
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = _Stream()
        return stream

    async def append(self, stream: str, payload: bytes, maxlen: int = 100_000) -> str:
        self._check_open()
        check_maxlen(maxlen)
        return self._stream(stream).append(bytes(payload), maxlen)

    async def read_group(
        self, stream: str, group: str, consumer: str, count: int = 100, block: float = 1.0
    ) -> list[StreamEntry]:
        self._check_open()
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        state = self._stream(stream)
        reader = state.groups.get(group)
        if reader is None:
            reader = state.groups[group] = _Group(state.first)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(block, 0.0)
        while True:
            after, entries = state.take(reader.next, count)
            if entries:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            try:
                async with asyncio.timeout(remaining):
                    await state.changed.wait()
            except TimeoutError:
                return []
            self._check_open()
        reader.next = after
        now = loop.time()
        for entry in entries:
            reader.pending[entry.entry_id] = (consumer, now, entry)
        # Pending entries nobody acks must not grow without bound; Redis caps them with the
        # stream in practice, so keep no more than the stream holds.
        while len(reader.pending) > max(len(state), count):
            reader.pending.popitem(last=False)
        return entries

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> None:
        self._check_open()
        state = self._streams.get(stream)
        reader = state.groups.get(group) if state is not None else None
        if reader is not None:
            for entry_id in entry_ids:
                reader.pending.pop(entry_id, None)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle: float, count: int = 100
    ) -> list[StreamEntry]:
        self._check_open()
        state = self._streams.get(stream)
        reader = state.groups.get(group) if state is not None else None
        if reader is None:
            return []
        now = asyncio.get_running_loop().time()
        claimed: list[StreamEntry] = []
        for entry_id, (_, delivered, entry) in list(reader.pending.items()):
            if len(claimed) >= count:
                break
            if now - delivered >= min_idle:
                reader.pending[entry_id] = (consumer, now, entry)
                claimed.append(entry)
        return claimed

    def pending(self, stream: str, group: str) -> list[str]:
        """Ids delivered to ``group`` and not acked yet, oldest first."""
        state = self._streams.get(stream)
        reader = state.groups.get(group) if state is not None else None
        return list(reader.pending) if reader is not None else []

    async def ping(self) -> bool:
        return not self._closed

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in {s for subs in self._subscribers.values() for s in subs}:
            await subscription.close()
        for state in self._streams.values():
            state.changed.set()
