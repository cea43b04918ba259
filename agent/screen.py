"""The agent's full-screen view on a terminal, like ngrok's: session, forwarding lines, a
connections table and the last requests, redrawn in place; log records in their own area
below it, never through it.

``render`` is a pure function of a ``ScreenView`` (a snapshot of the agent taken once per
redraw) and the terminal's size, so what a user sees is tested without a terminal.
``ScreenDisplay`` is the shell: it owns the terminal (alternate screen, cursor), takes
snapshots, and writes frames.
"""

from __future__ import annotations

import collections
import shutil
import sys
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TextIO

from agent.client import Agent
from agent.link import AGENT_VERSION
from agent.meters import AgentMeters
from agent.token_view import UnreadableToken, read_token

LABEL_WIDTH = 30
MAX_LOG_LINES = 200
QUIT_HINT = "(Ctrl+C to quit)"


@dataclass(slots=True)
class ScreenView:
    status: str  # "online", "reconnecting", "connecting"
    account: str = ""
    org: str = ""
    version: str = AGENT_VERSION
    edge: str = ""
    region: str = ""
    latency_ms: float | None = None
    web_interface: str = ""
    forwarding: list[tuple[str, str]] = field(default_factory=list)  # (public URL, local)
    problems: list[str] = field(default_factory=list)  # refused or waiting tunnels, last error
    connections: int = 0
    open_connections: int = 0
    rate1: float = 0.0
    rate5: float = 0.0
    p50: float | None = None  # seconds a connection stayed open
    p90: float | None = None
    requests: list[tuple[str, str, int, float]] = field(default_factory=list)  # newest last
    logs: list[str] = field(default_factory=list)  # newest last


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _row(label: str, value: str) -> str:
    return f"{label:<{LABEL_WIDTH}}{value}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _status_text(code: int) -> str:
    if not code:
        return "-"
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms" if seconds < 10 else f"{seconds:.1f}s"


def render(view: ScreenView, width: int, height: int) -> list[str]:
    """The lines of one frame, each at most ``width`` characters, at most ``height`` lines.

    The top (session, forwarding, connections) always shows; the requests list and the log
    area share what is left, logs getting at most a third, so a burst of log records cannot
    push the session off the screen."""
    width = max(width, 20)
    height = max(height, 5)
    top = [f"{'burrow':<{max(0, width - len(QUIT_HINT))}}{QUIT_HINT}", ""]
    top.append(_row("Session Status", view.status))
    if view.account or view.org:
        org = f" (org {view.org})" if view.org and view.org != view.account else ""
        top.append(_row("Account", f"{view.account or view.org}{org}"))
    top.append(_row("Version", view.version))
    if view.edge:
        region = f" (region {view.region})" if view.region else ""
        top.append(_row("Edge", f"{view.edge}{region}"))
    latency = "-" if view.latency_ms is None else f"{view.latency_ms:.1f}ms"
    top.append(_row("Latency", latency))
    if view.web_interface:
        top.append(_row("Web Interface", view.web_interface))
    if view.forwarding:
        for i, (url, local) in enumerate(view.forwarding):
            top.append(_row("Forwarding" if i == 0 else "", f"{url} -> {local}"))
    else:
        top.append(_row("Forwarding", "-"))
    top.extend(_row("", f"! {problem}") for problem in view.problems)
    top.append("")
    columns = ("ttl", "opn", "rt1", "rt5", "p50", "p90")
    values = (
        str(view.connections),
        str(view.open_connections),
        f"{view.rate1:.2f}",
        f"{view.rate5:.2f}",
        _seconds(view.p50),
        _seconds(view.p90),
    )
    top.append(_row("Connections", "".join(f"{c:<8}" for c in columns).rstrip()))
    top.append(_row("", "".join(f"{v:<8}" for v in values).rstrip()))
    top.append("")

    room = height - len(top)
    log_room = min(len(view.logs) + 1, room // 3) if view.logs else 0
    request_room = room - log_room
    middle: list[str] = []
    if request_room >= 3:
        middle = ["HTTP Requests", "-------------"]
        shown = view.requests[-(request_room - 2) :] if request_room > 2 else []
        for method, path, status, seconds in reversed(shown):  # newest first, as ngrok
            head = _fit(f"{method} {path}", max(LABEL_WIDTH - 1, width - 30))
            middle.append(f"{head:<{LABEL_WIDTH}}{_status_text(status):<22}{_duration(seconds)}")
    bottom: list[str] = []
    if log_room >= 2:
        bottom = ["── logs " + "─" * max(0, width - 8)]
        bottom.extend(view.logs[-(log_room - 1) :])
    # Pad the middle so the log area sits at the bottom of the screen.
    gap = height - len(top) - len(middle) - len(bottom)
    lines = top + middle + [""] * max(0, gap) + bottom
    return [_fit(line, width) for line in lines[:height]]


def view_of(
    agent: Agent,
    meters: AgentMeters,
    web_interface: str = "",
    logs: list[str] | None = None,
) -> ScreenView:
    """A snapshot of the agent for one frame."""
    link = agent.link
    welcome = link.welcome if link is not None and agent.connected else None
    if agent.connected:
        status = "online"
    elif agent.reconnects or agent.last_error:
        status = "reconnecting"
    else:
        status = "connecting"
    try:
        org = read_token(agent.token).org
    except UnreadableToken:
        org = ""
    view = ScreenView(
        status=status,
        account=welcome.account if welcome is not None else "",
        org=org,
        edge=(
            f"{welcome.edge_id} ({agent.server[0]}:{agent.server[1]})"
            if welcome is not None
            else f"{agent.server[0]}:{agent.server[1]}"
        ),
        latency_ms=None if agent.rtt is None else agent.rtt * 1000,
        web_interface=web_interface,
        logs=list(logs or []),
    )
    durations: list[float] = []
    requests: list[tuple[float, tuple[str, str, int, float]]] = []  # (start, row)
    for state in agent.tunnels:
        if state.url:
            for url in state.urls or [state.url]:
                view.forwarding.append((url, state.spec.local))
        label = state.spec.label or state.spec.local
        if state.dropped:
            view.problems.append(f"{label} refused: {state.error}")
        elif state.error and not state.url:
            view.problems.append(f"{label} waiting: {state.error}")
        stats = state.stats
        view.connections += stats.connections
        view.open_connections += stats.open_connections
        durations.extend(stats.duration_samples())
        for line, code, seconds, started in stats.recent_requests():
            method, _, rest = line.decode("latin-1").partition(" ")
            path = rest.rsplit(" ", 1)[0] if " " in rest else rest
            requests.append((started, (method, path, code, seconds)))
    if not agent.connected and agent.last_error:
        view.problems.append(agent.last_error)
    view.rate1, view.rate5 = meters.total.rate1, meters.total.rate5
    if durations:
        durations.sort()
        view.p50 = durations[min(len(durations) - 1, int(0.5 * len(durations)))]
        view.p90 = durations[min(len(durations) - 1, int(0.9 * len(durations)))]
    requests.sort(key=lambda item: item[0])  # several tunnels: one timeline
    view.requests = [r for _, r in requests][-50:]
    return view


# Alternate screen buffer (the user's scrollback comes back on exit), cursor hidden.
_ENTER = "\x1b[?1049h\x1b[?25l"
_LEAVE = "\x1b[?25h\x1b[?1049l"
_HOME = "\x1b[H"
_CLEAR_LINE = "\x1b[K"
_CLEAR_BELOW = "\x1b[J"


class ScreenDisplay:
    """The full-screen view: redrawn on every change and once a second."""

    def __init__(
        self, out: TextIO = sys.stdout, web_interface: str = "", meters: AgentMeters | None = None
    ) -> None:
        """``meters``: ticked by whoever owns the timer (the CLI), read here."""
        self.out = out
        self.meters = meters or AgentMeters()
        self.web_interface = web_interface
        self.logs: collections.deque[str] = collections.deque(maxlen=MAX_LOG_LINES)
        self.agent: Agent | None = None
        self._open = False
        self._after: list[str] = []  # said while the screen is up: printed again on exit

    def start(self) -> None:
        self.out.write(_ENTER)
        self.out.flush()
        self._open = True

    def close(self) -> None:
        """Give the terminal back, with the lines worth keeping printed plainly."""
        if not self._open:
            return
        self._open = False
        self.out.write(_LEAVE)
        agent = self.agent
        if agent is not None:
            for state in agent.tunnels:
                for url in state.urls or ([state.url] if state.url else []):
                    self.out.write(f"Forwarding  {url} -> {state.spec.local}\n")
        for line in self._after:
            self.out.write(line + "\n")
        self.out.flush()

    def changed(self, agent: Agent) -> None:
        self.agent = agent
        while agent.notices:
            self.logs.append(agent.notices.pop(0))
        self.draw()

    def tick(self, agent: Agent) -> None:
        self.agent = agent
        self.draw()

    def say(self, text: str) -> None:
        if not self._open:
            self.out.write(text + "\n")
            self.out.flush()
            return
        self._after.append(text)
        self.logs.append(text)
        self.draw()

    def log_line(self, text: str) -> None:
        self.logs.append(text)
        if self._open:
            self.draw()

    def draw(self) -> None:
        if not self._open or self.agent is None:
            return
        size = shutil.get_terminal_size((100, 30))
        view = view_of(self.agent, self.meters, self.web_interface, list(self.logs))
        lines = render(view, size.columns, size.lines)
        self.out.write(_HOME + "".join(line + _CLEAR_LINE + "\r\n" for line in lines[:-1]))
        self.out.write(lines[-1] + _CLEAR_LINE + _CLEAR_BELOW if lines else _CLEAR_BELOW)
        self.out.flush()
