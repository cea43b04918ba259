"""How many of an agent link's streams each visitor address holds.

A tunnel's agent carries at most ``max_streams_per_agent`` streams; without a share per
address, one address that opens that many slow uploads holds all of them and every other
visitor of the tunnel gets 429 for as long as it likes. With one, only that address does.
"""

from __future__ import annotations


class AddressStreams:
    """Open streams per visitor address, up to ``limit`` each. Only addresses that hold a
    stream have an entry, so the table is bounded by the link's stream limit."""

    __slots__ = ("counts", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: dict[str, int] = {}

    def take(self, address: str) -> bool:
        """Count one more stream for ``address``; False (nothing counted) at its limit."""
        counts = self.counts
        n = counts.get(address, 0)
        if n >= self.limit:
            return False
        counts[address] = n + 1
        return True

    def give(self, address: str) -> None:
        """One of ``address``'s streams has ended."""
        counts = self.counts
        n = counts.get(address, 0) - 1
        if n > 0:
            counts[address] = n
        else:
            counts.pop(address, None)
