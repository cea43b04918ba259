"""What the agent prints: tunnel URLs when they change, and a live status line on a terminal."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from agent.client import Agent


class Display(Protocol):
    """What the agent's output is, to the CLI: plain lines (``StatusPrinter``) or the
    full-screen view (``agent.screen.ScreenDisplay``)."""

    def start(self) -> None: ...
    def close(self) -> None: ...
    def changed(self, agent: Agent) -> None: ...
    def tick(self, agent: Agent) -> None: ...
    def say(self, text: str) -> None: ...
    def log_line(self, text: str) -> None: ...


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


def status_line(agent: Agent) -> str:
    states = [s for s in agent.tunnels if not s.dropped]
    online = sum(1 for s in states if s.url)
    conns = sum(s.stats.open_connections for s in states)
    total = sum(s.stats.connections for s in states)
    reqs = sum(s.stats.requests for s in states)
    p50 = max((s.stats.percentile(0.5) or 0.0 for s in states), default=0.0) or None
    p99 = max((s.stats.percentile(0.99) or 0.0 for s in states), default=0.0) or None
    link = "online" if agent.connected else "reconnecting"
    return (
        f"{link} | tunnels {online}/{len(states)} | conns {conns} open, {total} total"
        f" | requests {reqs} | p50 {_ms(p50)} p99 {_ms(p99)} | rtt {_ms(agent.rtt)}"
    )


class StatusPrinter:
    """Plain lines: each tunnel's URL once it is live, refusals, reconnects; optionally a
    status line redrawn in place. For output that is not a terminal, or with ``--log``."""

    def __init__(
        self, out: TextIO = sys.stdout, err: TextIO | None = None, live: bool | None = None
    ) -> None:
        """``live``: redraw a status line (default: when ``out`` is a terminal)."""
        self.out = out
        self.err = err or sys.stderr
        self.tty = out.isatty() if live is None else live
        self._shown: dict[int, str] = {}
        self._error_shown: dict[int, str] = {}
        self._line_drawn = False
        self._last_error = ""

    def changed(self, agent: Agent) -> None:
        for i, state in enumerate(agent.tunnels):
            if state.url and self._shown.get(i) != state.url:
                self._shown[i] = state.url
                for url in state.urls or [state.url]:
                    self.say(f"Forwarding  {url} -> {state.spec.local}")
            if state.error and self._error_shown.get(i) != state.error:
                self._error_shown[i] = state.error
                label = state.spec.label or state.spec.local
                if not state.dropped:
                    self.say(f"Tunnel {label} waiting: {state.error} (retrying)")
                elif any(not s.dropped for s in agent.tunnels):
                    self.say(f"Tunnel {label} refused: {state.error}; going on without it")
                # the last refusal ends the agent, which prints it once
        while agent.notices:
            self.say(agent.notices.pop(0))
        if agent.connected:
            self._last_error = ""
        elif agent.last_error and agent.last_error != self._last_error:
            self._last_error = agent.last_error  # once per distinct reason, not per retry
            self.say(f"Reconnecting: {agent.last_error}")

    def tick(self, agent: Agent) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K" + status_line(agent))
            self.out.flush()
            self._line_drawn = True

    def log_line(self, text: str) -> None:
        """A log record for the terminal: on a line of its own, never inside the status line
        (which the next tick draws again below it)."""
        if self._line_drawn:
            self.out.write("\r\x1b[2K")
            self.out.flush()
            self._line_drawn = False
        self.err.write(text + "\n")
        self.err.flush()

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def say(self, text: str) -> None:
        if self._line_drawn:
            self.out.write("\r\x1b[2K")
            self._line_drawn = False
        self.out.write(text + "\n")
        self.out.flush()
