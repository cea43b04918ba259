"""Choosing the bus from configuration: ``REDIS_URL`` unset means one process and the
in-memory bus; a Redis URL means processes that scale out."""

from __future__ import annotations

from bus.base import Bus
from bus.memory import MemoryBus
from bus.redis_bus import RedisBus, redact_url


def open_bus(url: str | None, prefix: str) -> Bus:
    """The bus ``url`` names: empty or ``memory://`` for ``MemoryBus`` (``prefix`` is not
    needed there: nothing else shares it), ``redis://`` or ``rediss://`` for ``RedisBus``."""
    if not url or url == "memory://":
        return MemoryBus()
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss"):
        return RedisBus(url, prefix)
    raise ValueError(
        f"unsupported bus URL {redact_url(url)!r}: use redis://host:port/db, "
        "rediss:// for TLS, or memory:// (or leave it unset) for one process"
    )
