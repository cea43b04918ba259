"""The two programs as a user runs them: ``burrowd dev`` in one terminal, ``burrow http PORT``
in another, real processes talking over real sockets.

Every child is killed in a ``finally`` and every wait has a timeout, so a hung process fails
the test instead of the run.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import IO

import pytest

from tests.control.conftest import TEST_SECRET
from tests.e2e.client import Visitor, get
from tests.e2e.conftest import wait_for

START_TIMEOUT = 15.0  # interpreter start and imports on a slow CI machine
DRAIN = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """No config, state or token of the user running the tests leaks in or out."""
    env = dict(os.environ)
    # Nor the test run's services: a child is given DATABASE_URL or REDIS_URL by its test.
    for key in [k for k in env if k.startswith(("BURROW_", "XDG_"))]:
        del env[key]
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    env.update(
        BURROW_STATE_DIR=str(tmp_path / "state"),
        BURROW_CONFIG=str(tmp_path / "config" / "burrow.toml"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
        XDG_STATE_HOME=str(tmp_path / "xdg-state"),
        XDG_DATA_HOME=str(tmp_path / "xdg-data"),
        XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
    )
    return env


def log_file(path: Path) -> IO[bytes]:
    """A file for a child's stderr, read back when a test fails; closed by ``Child.kill``."""
    return path.open("w+b")


class Child:
    """A child process with stdout read line by line and stderr kept in a file."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: IO[bytes], name: str) -> None:
        self.proc = proc
        self.stderr = stderr
        self.name = name
        self.lines: list[str] = []

    @classmethod
    async def start(
        cls, tmp_path: Path, name: str, *args: str, env: dict[str, str] | None = None
    ) -> Child:
        stderr = log_file(tmp_path / f"{name}.stderr")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env={**isolated_env(tmp_path), **(env or {})},
            cwd=tmp_path,
        )
        return cls(proc, stderr, name)

    def output(self) -> str:
        self.stderr.seek(0)
        err = self.stderr.read().decode(errors="replace")
        return f"--- {self.name} stdout\n" + "\n".join(self.lines) + f"\n--- stderr\n{err}"

    async def expect(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """Read stdout until a line matches ``pattern``."""
        assert self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), max(left, 0.01))
            except TimeoutError:
                raise AssertionError(f"no line matching {pattern!r}\n{self.output()}") from None
            if not raw:
                await asyncio.wait_for(self.proc.wait(), 5)
                raise AssertionError(
                    f"{self.name} exited {self.proc.returncode} before printing {pattern!r}\n"
                    + self.output()
                )
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    async def finish(self, timeout: float) -> int:
        """Wait for the process to exit on its own; its exit status."""
        assert self.proc.stdout is not None
        try:
            rest = await asyncio.wait_for(self.proc.stdout.read(), timeout)
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.name} did not exit within {timeout}s") from None
        self.lines += rest.decode(errors="replace").splitlines()
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 5)
        self.stderr.close()


async def run_to_end(tmp_path: Path, name: str, *args: str) -> tuple[int, str]:
    child = await Child.start(tmp_path, name, *args)
    try:
        code = await child.finish(START_TIMEOUT)
        return code, child.output()
    finally:
        await child.kill()


def dev_env(database_url: str) -> dict[str, str]:
    """``burrowd dev`` on this run's database, and the in-memory bus."""
    return {"DATABASE_URL": database_url, "REDIS_URL": "", "BURROW_SECRET_KEY": TEST_SECRET}


async def test_dev_edge_demo_and_agent_without_flags(tmp_path, service, database_url):
    http_port, agent_port = free_port(), free_port()
    children: list[Child] = []
    try:
        dev = await Child.start(
            tmp_path, "burrowd", "-m", "composition.cli", "dev",
            "--http", f"127.0.0.1:{http_port}", "--agents", f"127.0.0.1:{agent_port}",
            "--https", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--control", "127.0.0.1:0",
            "--drain", str(DRAIN), env=dev_env(database_url),
        )  # fmt: skip
        children.append(dev)
        demo = await dev.expect(r"^Demo tunnel: open http://demo\.localhost:(\d+)/ in a browser$")
        assert int(demo[1]) == http_port
        page = await get(http_port, "demo.localhost", "/")
        assert page.status == 200 and "Your Burrow tunnel works" in page.text, dev.output()

        # No --server, no --authtoken: the agent finds the dev edge through dev-edge.json.
        agent = await Child.start(
            tmp_path, "burrow", "-m", "agent.cli", "http", str(service.port), "--name", "cli"
        )
        children.append(agent)
        fwd = await agent.expect(r"^Forwarding  http://cli\.localhost:(\d+) -> (\S+)$")
        assert int(fwd[1]) == http_port
        assert fwd[2].endswith(f":{service.port}")
        r = await get(http_port, "cli.localhost", "/hello")
        assert (r.status, r.body) == (200, b"hello"), agent.output()

        code, out = await run_to_end(
            tmp_path, "burrow-bad-token",
            "-m", "agent.cli", "http", str(service.port), "--authtoken", "wrong",
        )  # fmt: skip
        assert code == 1, out
        assert "refused" in out and "not a Burrow authtoken" in out, out

        agent.proc.send_signal(signal.SIGTERM)
        assert await agent.finish(5) == 0, agent.output()
        assert "burrow: stopped" in agent.lines, agent.output()

        dev.proc.send_signal(signal.SIGTERM)
        assert await dev.finish(DRAIN + 4) == 0, dev.output()
        assert any("draining" in line for line in dev.lines), dev.output()
    finally:
        for child in children:
            await child.kill()


@pytest.mark.parametrize("addr", ["notaport", "0", "70000", "http://localhost:8000"])
async def test_bad_address_is_a_usage_error(tmp_path, addr):
    code, out = await run_to_end(tmp_path, "burrow", "-m", "agent.cli", "http", addr)
    assert code == 2, out
    assert "burrow: bad " in out, out


async def test_agent_reports_reconnecting_after_the_edge_drains_and_exits(
    tmp_path, service, database_url
):
    """After a GoAway the agent must count itself offline until a new link is welcomed.

    A request in flight keeps the drain busy, so the old link outlives the GoAway: the agent
    cannot rely on that link closing to notice that the edge is gone."""
    http_port, agent_port = free_port(), free_port()
    children: list[Child] = []
    visitor = Visitor(http_port, "slow.localhost")
    try:
        dev = await Child.start(
            tmp_path, "burrowd", "-m", "composition.cli", "dev", "--no-demo",
            "--http", f"127.0.0.1:{http_port}", "--agents", f"127.0.0.1:{agent_port}",
            "--https", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--control", "127.0.0.1:0",
            "--drain", str(DRAIN), env=dev_env(database_url),
        )  # fmt: skip
        children.append(dev)
        await dev.expect(r"run\.py burrow http 3000")
        agent = await Child.start(
            tmp_path, "burrow", "-m", "agent.cli", "http", str(service.port), "--name", "slow"
        )
        children.append(agent)
        await agent.expect(r"^Forwarding  http://slow\.localhost:")
        await visitor.__aenter__()
        await visitor.send_head("GET", "/hang")
        await visitor.end_body()
        await wait_for(lambda: service.connections == 1, what="the request to reach the service")

        dev.proc.send_signal(signal.SIGTERM)
        assert await dev.finish(DRAIN + 4) == 0, dev.output()
        await agent.expect(r"^Reconnecting: cannot reach the edge", timeout=3)
    finally:
        await visitor.__aexit__()
        for child in children:
            await child.kill()
