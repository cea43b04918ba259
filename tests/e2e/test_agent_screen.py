"""The agent's screen with real traffic: what it records per request, and the whole view
drawn on a real pseudo-terminal by a real ``burrow`` process."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import sys
import termios

from agent.tunnels import TunnelSpec
from tests.agent.processes import TREE_ENV
from tests.e2e.client import get
from tests.e2e.conftest import TOKEN, wait_for
from tests.e2e.test_cli_processes import START_TIMEOUT, isolated_env


async def test_each_request_is_recorded_with_its_line_status_and_time(
    edge, agents, service
) -> None:
    agent = await agents.start(edge, TunnelSpec("http", "127.0.0.1", service.port, name="rec"))
    port = edge.config.http_port
    assert (await get(port, "rec.localhost", "/hello?x=1")).status == 200
    assert (await get(port, "rec.localhost", "/missing")).status == 404
    stats = agent.tunnels[0].stats
    await wait_for(lambda: len(stats.recent_requests()) == 2, what="both requests")
    [(line1, status1, took1, _), (line2, status2, _, _)] = stats.recent_requests()
    assert (line1, status1) == (b"GET /hello?x=1 HTTP/1.1", 200)
    assert (line2, status2) == (b"GET /missing HTTP/1.1", 404)
    assert 0 < took1 < 5
    await wait_for(lambda: len(stats.duration_samples()) == 2, what="both connections closed")


class PtyChild:
    """``burrow`` on a pseudo-terminal of 100x30, everything it draws kept."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int) -> None:
        self.proc = proc
        self.master = master
        self.screen = b""

    @classmethod
    async def start(cls, tmp_path, *args: str) -> PtyChild:  # type: ignore[no-untyped-def]
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        env = {**isolated_env(tmp_path), **TREE_ENV}
        env.pop("COLUMNS", None)
        env.pop("LINES", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", *args,
            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=tmp_path,
        )  # fmt: skip
        os.close(slave)
        os.set_blocking(master, False)
        return cls(proc, master)

    async def expect(self, needle: bytes, timeout: float = START_TIMEOUT) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while needle not in self.screen:
            if loop.time() > deadline:
                raise AssertionError(f"never drew {needle!r}:\n{self.screen[-3000:]!r}")
            try:
                self.screen += os.read(self.master, 65536)
            except BlockingIOError:
                await asyncio.sleep(0.05)
            except OSError:  # EIO: the child closed the terminal
                raise AssertionError(
                    f"exited before {needle!r}:\n{self.screen[-3000:]!r}"
                ) from None

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 5)
        with contextlib.suppress(OSError):
            os.close(self.master)


async def test_burrow_draws_the_screen_on_a_terminal_and_gives_it_back(
    tmp_path, edge, service
) -> None:
    child = await PtyChild.start(
        tmp_path, "http", str(service.port), "--name", "screen", "--inspect-addr", "127.0.0.1:0",
        "--server", f"127.0.0.1:{edge.config.agent_port}", "--plaintext", "--authtoken", TOKEN,
    )  # fmt: skip
    try:
        await child.expect(b"\x1b[?1049h")
        await child.expect(b"Session Status                online")
        await child.expect(b"http://screen.localhost:")
        await child.expect(b"Web Interface                 http://127.0.0.1:")
        assert (await get(edge.config.http_port, "screen.localhost", "/hello")).status == 200
        await child.expect(b"GET /hello")
        await child.expect(b"200 OK")
        child.proc.send_signal(signal.SIGTERM)
        await child.expect(b"burrow: stopped")
        assert await asyncio.wait_for(child.proc.wait(), 5) == 0
        after = child.screen[child.screen.rindex(b"\x1b[?1049l") :]
        # Back on the normal screen: the URL stays in the scrollback, then the last line.
        assert b"Forwarding  http://screen.localhost:" in after
        assert after.rstrip().endswith(b"burrow: stopped")
    finally:
        await child.kill()


async def test_with_log_a_terminal_gets_plain_lines(tmp_path, edge, service) -> None:
    log = tmp_path / "agent.log"
    child = await PtyChild.start(
        tmp_path, "http", str(service.port), "--name", "plain", "--log", str(log),
        "--log-level", "info", "--log-format", "json",
        "--server", f"127.0.0.1:{edge.config.agent_port}", "--plaintext", "--authtoken", TOKEN,
    )  # fmt: skip
    try:
        await child.expect(b"Forwarding  http://plain.localhost:")
        child.proc.send_signal(signal.SIGTERM)
        await child.expect(b"burrow: stopped")
        assert b"\x1b[" not in child.screen
        assert b'"level": "info"' in log.read_bytes()
    finally:
        await child.kill()
