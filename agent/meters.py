"""Connection rates over one and five minutes, as ngrok's agent shows them (``rt1``, ``rt5``):
exponentially weighted moving averages of connections per second, ticked once a second, the
way Unix load averages are kept."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from agent.tunnels import TunnelState

TICK_SECONDS = 1.0
_ALPHA_1 = 1.0 - math.exp(-TICK_SECONDS / 60.0)
_ALPHA_5 = 1.0 - math.exp(-TICK_SECONDS / 300.0)


@dataclass(slots=True)
class ConnectionRate:
    """Per-second connection rates of one tunnel (or all of them)."""

    rate1: float = 0.0
    rate5: float = 0.0
    _last_total: int | None = None

    def tick(self, total: int) -> None:
        """Fold in the connections opened since the last tick; ``total`` only grows."""
        if self._last_total is None:
            # The first look: what came before is history, not this second's rate.
            self._last_total = total
            return
        per_second = max(0, total - self._last_total) / TICK_SECONDS
        self._last_total = total
        self.rate1 += _ALPHA_1 * (per_second - self.rate1)
        self.rate5 += _ALPHA_5 * (per_second - self.rate5)


@dataclass(slots=True)
class AgentMeters:
    """Rates for every tunnel of an agent and their sum, ticked by the display's timer."""

    total: ConnectionRate = field(default_factory=ConnectionRate)
    by_tunnel: dict[int, ConnectionRate] = field(default_factory=dict)

    def tick(self, tunnels: list[TunnelState]) -> None:
        self.total.tick(sum(t.stats.connections for t in tunnels))
        for index, state in enumerate(tunnels):
            self.by_tunnel.setdefault(index, ConnectionRate()).tick(state.stats.connections)

    def of(self, index: int) -> ConnectionRate:
        return self.by_tunnel.get(index) or ConnectionRate()
