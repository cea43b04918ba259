"""The agent's full-screen view, as a pure function of its state."""

from __future__ import annotations

import io
import re

from agent.client import Agent
from agent.meters import AgentMeters, ConnectionRate
from agent.screen import ScreenDisplay, ScreenView, render, view_of
from agent.tunnels import TunnelSpec


def a_view(**changes: object) -> ScreenView:
    view = ScreenView(
        status="online",
        account="alice",
        org="acme",
        edge="dev (127.0.0.1:4443)",
        latency_ms=0.4,
        web_interface="http://127.0.0.1:4040",
        forwarding=[("https://k3j9x0ab.localhost:8443", "localhost:3000")],
        connections=12,
        open_connections=1,
        rate1=0.25,
        rate5=0.05,
        p50=0.01,
        p90=0.5,
        requests=[("GET", "/old", 404, 0.002), ("POST", "/api/items", 201, 0.0123)],
        logs=["WARNING cannot reach localhost:3000: Connection refused"],
    )
    for key, value in changes.items():
        setattr(view, key, value)
    return view


def row(lines: list[str], label: str) -> str:
    [line] = [line for line in lines if line.startswith(label)]
    return re.sub(r"\s+", " ", line)


def test_the_session_block_shows_what_ngrok_users_look_for() -> None:
    lines = render(a_view(), 100, 30)
    assert lines[0].startswith("burrow") and lines[0].endswith("(Ctrl+C to quit)")
    assert row(lines, "Session Status") == "Session Status online"
    assert row(lines, "Account") == "Account alice (org acme)"
    assert row(lines, "Edge") == "Edge dev (127.0.0.1:4443)"
    assert row(lines, "Latency") == "Latency 0.4ms"
    assert row(lines, "Web Interface") == "Web Interface http://127.0.0.1:4040"
    assert row(lines, "Forwarding") == (
        "Forwarding https://k3j9x0ab.localhost:8443 -> localhost:3000"
    )
    assert row(lines, "Version").startswith("Version 0.")


def test_the_connections_table_has_ngroks_columns() -> None:
    lines = render(a_view(), 100, 30)
    at = next(i for i, line in enumerate(lines) if line.startswith("Connections"))
    assert lines[at].split()[1:] == ["ttl", "opn", "rt1", "rt5", "p50", "p90"]
    assert lines[at + 1].split() == ["12", "1", "0.25", "0.05", "0.01", "0.50"]


def test_requests_newest_first_with_status_and_duration() -> None:
    lines = render(a_view(), 100, 30)
    at = lines.index("HTTP Requests")
    assert re.sub(r"\s+", " ", lines[at + 2]) == "POST /api/items 201 Created 12.3ms"
    assert re.sub(r"\s+", " ", lines[at + 3]) == "GET /old 404 Not Found 2.0ms"


def test_logs_sit_below_the_view_and_every_frame_fits_the_terminal() -> None:
    lines = render(a_view(), 100, 30)
    assert len(lines) == 30 and all(len(line) <= 100 for line in lines)
    assert lines[-1] == "WARNING cannot reach localhost:3000: Connection refused"
    assert lines[-2].startswith("── logs")


def test_a_flood_of_logs_never_pushes_the_session_off_a_small_terminal() -> None:
    view = a_view(logs=[f"WARNING line {i}" for i in range(500)], requests=[])
    lines = render(view, 60, 24)
    assert len(lines) == 24 and all(len(line) <= 60 for line in lines)
    assert any(line.startswith("Session Status") for line in lines)
    assert any(line.startswith("Forwarding") for line in lines)
    assert lines[-1] == "WARNING line 499"
    assert sum(line.startswith("WARNING") for line in lines) <= 24 // 3


def test_long_paths_and_urls_are_cut_to_the_width() -> None:
    view = a_view(requests=[("GET", "/" + "x" * 300, 200, 0.001)])
    assert all(len(line) <= 80 for line in render(view, 80, 30))


def test_refused_tunnels_and_the_last_error_are_shown() -> None:
    lines = render(a_view(problems=["web refused: demo.localhost is in use"]), 100, 30)
    assert any("! web refused: demo.localhost is in use" in line for line in lines)


def test_view_of_an_agent_decodes_its_recent_requests() -> None:
    agent = Agent(("127.0.0.1", 4443), "static", [TunnelSpec("http", "localhost", 3000)])
    state = agent.tunnels[0]
    state.url = "http://abc.localhost:8080"
    stats = state.stats
    stats.connections, stats.open_connections = 3, 1
    stats.record_request(b"GET /a?b=1 HTTP/1.1", 200, 0.001, 1.0)
    stats.record_request(b"DELETE /x HTTP/1.1", 0, 0.002, 2.0)
    for seconds in (0.1, 0.2, 0.3, 0.4, 5.0):
        stats.record_duration(seconds)
    meters = AgentMeters(total=ConnectionRate(rate1=1.5, rate5=0.5))
    view = view_of(agent, meters, "http://127.0.0.1:4040")
    assert view.status == "connecting"
    assert view.forwarding == [("http://abc.localhost:8080", "localhost:3000")]
    assert view.requests == [("GET", "/a?b=1", 200, 0.001), ("DELETE", "/x", 0, 0.002)]
    assert (view.connections, view.open_connections) == (3, 1)
    assert (view.rate1, view.rate5) == (1.5, 0.5)
    assert view.p50 == 0.3 and view.p90 == 5.0


def test_connection_rates_follow_one_and_five_minute_averages() -> None:
    rate = ConnectionRate()
    rate.tick(100)  # history before the first look does not count
    assert rate.rate1 == 0.0
    for second in range(1, 61):
        rate.tick(100 + second)  # one a second for a minute
    assert 0.6 < rate.rate1 < 0.65  # 1 - e^-1 of the way to 1/s
    assert 0.15 < rate.rate5 < 0.2


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_screen_owns_the_terminal_and_gives_it_back() -> None:
    term = Terminal()
    agent = Agent(("127.0.0.1", 4443), "static", [TunnelSpec("http", "localhost", 3000)])
    screen = ScreenDisplay(term)
    screen.start()
    screen.changed(agent)
    screen.log_line("WARNING something happened")
    screen.say("burrow: the edge refused tunnel localhost:3000: taken")
    screen.close()
    out = term.getvalue()
    assert out.startswith("\x1b[?1049h")  # the alternate screen: scrollback untouched
    frames = out[len("\x1b[?1049h\x1b[?25l") : out.index("\x1b[?25h\x1b[?1049l")]
    # Everything written while the screen is up is a whole frame from the top-left corner:
    # a log record cannot land in the middle of one.
    assert all(part.startswith("\x1b[H") for part in re.split(r"(?=\x1b\[H)", frames) if part)
    assert "WARNING something happened" in frames.split("\x1b[H")[-1]
    assert out.endswith("burrow: the edge refused tunnel localhost:3000: taken\n")
