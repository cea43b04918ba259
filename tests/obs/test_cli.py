"""``burrowd edge`` as an operator runs it behind Prometheus: JSON logs on stderr, the admin
port chosen by the OS and logged, and PROMETHEUS_MULTIPROC_DIR honoured."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from agent.client import Agent
from agent.tunnels import TunnelSpec
from composition.cli import _parser
from tests.e2e.client import get
from tests.e2e.conftest import wait_for
from tests.obs.admin_client import admin_get, scrape

TOKEN = "obs-token"
START_TIMEOUT = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JsonStderr:
    """Collects a child's stderr, every line parsed as JSON (or kept as a failure)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.lines: list[dict[str, object]] = []
        self.not_json: list[str] = []
        assert proc.stderr is not None
        self.task = asyncio.get_running_loop().create_task(self._read(proc.stderr))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip("\n")
            try:
                self.lines.append(json.loads(text))
            except ValueError:
                self.not_json.append(text)

    def find(self, pattern: str) -> re.Match[str] | None:
        for line in self.lines:
            match = re.search(pattern, str(line.get("msg", "")))
            if match:
                return match
        return None


async def test_burrowd_edge_json_logs_and_multiprocess_metrics(tmp_path: Path, service):
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    # No REDIS_URL: this edge runs without a bus, so it leaves no reports on the test Redis.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BURROW_") and k != "REDIS_URL"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(prom_dir)
    http_port, agent_port = _free_port(), _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "composition.cli", "--log-format", "json", "--access-log",
        "edge", "--token", TOKEN, "--agent-plaintext", "--no-https",
        "--http", f"127.0.0.1:{http_port}", "--agents", f"127.0.0.1:{agent_port}",
        "--admin", "127.0.0.1:0", "--drain", "1",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=Path(__file__).parents[2],
    )  # fmt: skip
    log = JsonStderr(proc)
    agent: Agent | None = None
    task: asyncio.Task[None] | None = None
    try:
        await wait_for(
            lambda: log.find(r"admin on 127\.0\.0\.1:(\d+)") is not None or log.task.done(),
            timeout=START_TIMEOUT,
            what="the startup line",
        )
        started = log.find(r"admin on 127\.0\.0\.1:(\d+)")
        assert started is not None, (log.lines, log.not_json)
        admin_port = int(started[1])
        assert admin_port not in (0, http_port, agent_port)

        agent = Agent(
            ("127.0.0.1", agent_port),
            TOKEN,
            [TunnelSpec("http", "127.0.0.1", service.port, name="app")],
            heartbeat=0.5,
        )
        task = asyncio.get_running_loop().create_task(agent.run())
        await wait_for(lambda: bool(agent.tunnels[0].url), what="bind")
        r = await get(http_port, "app.localhost", "/headers")
        assert r.status == 200
        (rid,) = [v for k, v in json.loads(r.body)["headers"] if k == "x-request-id"]

        m = await scrape(admin_port)
        assert m.value("burrow_edge_requests_total", protocol="http1", status_class="2xx") == 1
        assert m.value("burrow_edge_request_duration_seconds_count", protocol="http1") == 1
        # Computed per process at scrape time: labelled with the process.
        assert m.series("burrow_edge_agents") == {frozenset({("pid", str(proc.pid))}): 1.0}
        assert m.value("burrow_edge_bus_lag_seconds") == 0
        assert list(prom_dir.glob("counter_*.db")), "no multiprocess files were written"
        assert (await admin_get(admin_port, "/readyz")).status == 200

        await wait_for(
            lambda: any(x.get("request_id") == rid for x in log.lines), what="the access line"
        )
        (access,) = [x for x in log.lines if x.get("request_id") == rid]
        assert access["logger"] == "burrow.edge.access" and access["status"] == 200

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        await asyncio.wait_for(log.task, 5)
        assert log.not_json == [], log.not_json
        assert log.find("draining") is not None
        # The process's live gauges left the aggregate with it.
        assert not list(prom_dir.glob(f"gauge_live*_{proc.pid}.db"))
    finally:
        if agent is not None:
            agent.stop()
        if task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 5)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    ("command", "admin"), [("dev", ("127.0.0.1", 9091)), ("edge", ("127.0.0.1", 9090))]
)
def test_admin_defaults_to_loopback(command, admin):
    args = _parser().parse_args([command])
    assert args.admin == admin and not args.no_admin
    assert args.log_format == "text" and not args.access_log


@pytest.mark.parametrize(
    ("flag", "admin"),
    [("0", ("127.0.0.1", 0)), ("0.0.0.0:0", ("0.0.0.0", 0)), ("[::1]:9100", ("::1", 9100))],
)
def test_admin_flag_takes_port_zero(flag, admin):
    assert _parser().parse_args(["edge", "--admin", flag]).admin == admin
