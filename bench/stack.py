"""The processes under test: origin, edge and agent, each a child process of its own.

``BurrowStack`` starts them in order (origin, then the edge, then an agent that binds a
tunnel from the edge to the origin), reads the ports each one prints, and stops them all
on exit, whatever happened. Every child runs in a session of its own, so a Ctrl-C in the
terminal reaches only the bench, which then stops the children itself: SIGTERM to the
child's process group, SIGKILL if it has not exited a few seconds later.

With ``certificates`` the origin also serves HTTPS on a port of its own (the DIRECT TLS
baseline) and the edge opens its HTTPS listener; the agent link and the agent's connections
to the origin stay plaintext, as in a typical deployment.

With ``tcp_sink`` a TCP sink (bench/tcp_bulk.py) starts after the edge, and the agent
binds a TCP tunnel to it beside the HTTP one; the edge picks the public port.

With ``link_delay`` (``bench.delay_link`` arguments) a delaying relay starts after the edge
and the agent dials the edge through it: the agent's link is then a long one.

``ProcessProbe`` reads a child's peak RSS (VmHWM) and CPU time (utime + stime) from /proc,
and can restart the peak so a reading covers one measurement.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.certificates import BenchCertificates
    from bench.loadgen import LoadResult

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_STOP_GRACE = 5.0
TUNNEL_NAME = "bench"


class StackError(Exception):
    """A component did not start; the message says which and shows its last log lines."""


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    peak_rss_kib: int  # VmHWM: the most resident memory the process ever had
    cpu_seconds: float  # user + system, since the process started


class ProcessProbe:
    """Reads /proc/PID for one live process."""

    __slots__ = ("pid",)

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return 0.0
        # The command name (field 2) may contain spaces: count fields after its ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def peak_rss_kib(self) -> int:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def usage(self) -> ProcessUsage:
        return ProcessUsage(self.peak_rss_kib(), self.cpu_seconds())

    def reset_peak_rss(self) -> bool:
        """Start VmHWM again from the current RSS (Linux 4.0+: ``5 > clear_refs``), so the
        next reading is the peak of what ran since; False where the kernel refuses."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True


class Child:
    """A Python child process that prints one JSON line when it is ready."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self._pending = bytearray()  # stdout read past the last line handed out
        self.process = subprocess.Popen(
            argv,
            bufsize=0,  # stdout is read with os.read: no Python buffer may hide bytes
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,  # its own process group: killpg reaches it and its kids
            cwd=Path(__file__).resolve().parent.parent,
        )
        self.probe = ProcessProbe(self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_line(self, timeout: float) -> bytes:
        """Wait for the child's next stdout line (without its newline)."""
        stdout = self.process.stdout
        assert stdout is not None
        buf = self._pending
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(stdout, selectors.EVENT_READ)
            while (newline := buf.find(b"\n")) == -1:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StackError(f"{self.name} was silent for {timeout:g}s{self._tail()}")
                if not sel.select(left):
                    continue
                chunk = os.read(stdout.fileno(), 65536)
                if not chunk:
                    self.process.wait(timeout=_STOP_GRACE)
                    raise StackError(
                        f"{self.name} exited with status {self.process.returncode} before it "
                        f"said it was ready{self._tail()}"
                    )
                buf += chunk
        line = bytes(buf[:newline])
        del buf[: newline + 1]
        return line

    def read_ready(self, timeout: float) -> dict[str, object]:
        """Wait for the child's next stdout line and decode it as a JSON object."""
        line = self.read_line(timeout)
        try:
            ready = json.loads(line)
        except ValueError:
            ready = None
        if not isinstance(ready, dict):
            raise StackError(f"{self.name} printed {line[:200]!r}, not a JSON object")
        return ready

    def wait_output(self, timeout: float) -> bytes:
        """Wait for the child to exit and return all it wrote to stdout."""
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise StackError(f"{self.name} did not finish within {timeout:g}s") from None
        if self.process.returncode != 0:
            raise StackError(
                f"{self.name} failed with status {self.process.returncode}{self._tail()}"
            )
        pending = bytes(self._pending)
        self._pending.clear()
        return pending + (out or b"")

    def stop(self, grace: float = _STOP_GRACE) -> int | None:
        """SIGTERM the child's process group; SIGKILL it if it lingers past ``grace``
        seconds. Idempotent."""
        process = self.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        self._log.close()
        return process.returncode

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def _tail(self, n: int = 15) -> str:
        self._log.flush()
        lines = self.log_lines()[-n:]
        return (":\n  " + "\n  ".join(lines)) if lines else " (its log is empty)"


class SuiteLogs:
    """Where one suite's component logs go: ``--logs DIR``, kept; else a temp dir, removed
    after a clean run and named when the run had trouble."""

    def __init__(self, logs: Path | None, prefix: str) -> None:
        self.given = logs is not None
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            self.path = logs
        else:
            self.path = Path(tempfile.mkdtemp(prefix=prefix))

    def finish(self, troubled: bool) -> None:
        if self.given:
            return
        if troubled:
            print(f"component logs kept in {self.path}")
        else:
            shutil.rmtree(self.path, ignore_errors=True)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


class BurrowStack:
    """Origin, edge and agent, started in that order and stopped on exit."""

    def __init__(
        self,
        log_dir: Path,
        start_timeout: float = 20.0,
        certificates: BenchCertificates | None = None,
        tcp_sink: bool = False,
        edge_wrapper: tuple[str, ...] = (),
        link_delay: tuple[str, ...] | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.link_delay = link_delay
        self.edge_wrapper = edge_wrapper  # a command the edge runs under (valgrind …)
        self.start_timeout = start_timeout
        self.certificates = certificates
        self.tcp_sink = tcp_sink
        self.token = "bench-" + secrets.token_urlsafe(12)
        self.children: dict[str, Child] = {}
        self.origin_port = 0
        self.origin_tls_port = 0  # 0 unless started with certificates
        self.edge_http_port = 0
        self.edge_https_port = 0  # 0 unless started with certificates
        self.edge_agent_port = 0
        self.tunnel_url = ""
        self.tunnel_host = ""
        self.tcp_sink_port = 0  # 0 unless started with tcp_sink
        self.edge_tcp_port = 0  # the edge's public port of the TCP tunnel to the sink

    def start(self) -> None:
        tls: list[str] = []
        if self.certificates is not None:
            tls = ["--tls-cert", str(self.certificates.cert_file)]
            tls += ["--tls-key", str(self.certificates.key_file)]
        origin = self._start("origin", "origin", *tls)
        self.origin_port = ready_port(origin, "port")
        edge = self._start("edge", "edge", "--token", self.token, *tls)
        self.edge_http_port = ready_port(edge, "http_port")
        self.edge_agent_port = ready_port(edge, "agent_port")
        if tls:
            self.origin_tls_port = ready_port(origin, "tls_port")
            self.edge_https_port = ready_port(edge, "https_port")
        tcp: list[str] = []
        if self.tcp_sink:
            self.tcp_sink_port = ready_port(self._start("tcp-sink", "tcp-sink"), "port")
            tcp = ["--tcp", str(self.tcp_sink_port)]
        agent_dials = self.edge_agent_port
        if self.link_delay is not None:
            relay = Child(
                "link",
                python_module(
                    "bench.delay_link", "--target-port", str(agent_dials), *self.link_delay
                ),
                self.log_dir / "link.log",
            )
            self.children["link"] = relay
            agent_dials = ready_port(relay.read_ready(self.start_timeout), "port")
        agent = self._start(
            "agent",
            "agent",
            "--edge-port",
            str(agent_dials),
            "--origin-port",
            str(self.origin_port),
            "--token",
            self.token,
            "--name",
            TUNNEL_NAME,
            *tcp,
        )
        self.tunnel_url = str(agent.get("url", ""))
        # "http://bench.localhost:PORT" -> the Host header a visitor sends.
        self.tunnel_host = self.tunnel_url.split("://", 1)[-1].split(":", 1)[0]
        if tcp:
            # "tcp://localhost:PORT": the edge listens on tcp_host, 127.0.0.1 here.
            tcp_url = str(agent.get("tcp_url", ""))
            tail = tcp_url.rsplit(":", 1)[-1]
            if not (tcp_url.startswith("tcp://") and tail.isascii() and tail.isdigit()):
                raise StackError(f"the agent reported tcp_url={tcp_url!r}, not tcp://HOST:PORT")
            self.edge_tcp_port = int(tail)

    def _start(self, name: str, *args: str) -> dict[str, object]:
        argv = python_module("bench.component", *args)
        if name == "edge":
            argv = [*self.edge_wrapper, *argv]
        child = Child(name, argv, self.log_dir / f"{name}.log")
        self.children[name] = child
        return child.read_ready(self.start_timeout)

    def usage(self) -> dict[str, ProcessUsage]:
        return {name: child.probe.usage() for name, child in self.children.items()}

    def cpu_seconds(self) -> dict[str, float]:
        return {name: child.probe.cpu_seconds() for name, child in self.children.items()}

    def stop(self) -> dict[str, int | None]:
        """Stop the agent first so the edge does not see it as lost mid-request."""
        codes: dict[str, int | None] = {}
        for name in reversed(list(self.children)):
            # An edge under a wrapper exits slowly (valgrind writes its counts last).
            grace = 60.0 if name == "edge" and self.edge_wrapper else _STOP_GRACE
            codes[name] = self.children[name].stop(grace)
        return codes

    def __enter__(self) -> BurrowStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def ready_port(ready: dict[str, object], key: str) -> int:
    value = ready.get(key)
    if not isinstance(value, int) or not 0 < value < 65536:
        raise StackError(f"a component reported {key}={value!r}, not a port")
    return value


# -- signs of trouble in a run ----------------------------------------------------------------


def process_troubles(
    exit_codes: dict[str, int | None], stack: BurrowStack, names: tuple[str, ...] | None = None
) -> list[str]:
    """A line for every process that exited badly or logged anything (``names``: only
    those processes; None: every child of the stack)."""
    problems = [
        f"{name} exited with status {code} when stopped"
        for name, code in exit_codes.items()
        if code not in (0, None)
    ]
    for name in names if names is not None else tuple(stack.children):
        child = stack.children.get(name)
        lines = child.log_lines() if child is not None else []
        if lines:
            problems.append(f"{name} logged {len(lines)} line(s), first: {lines[0][:160]}")
    return problems


def load_trouble(label: str, result: LoadResult) -> str | None:
    """A line when a load run saw error responses, dropped or failed connections."""
    r = result
    if not (r.errors or r.disconnects or r.connect_failures):
        return None
    return (
        f"{label}: {r.errors} error responses, {r.disconnects} dropped connections, "
        f"{r.connect_failures} failed connects (statuses {r.statuses})"
    )
