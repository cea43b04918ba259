"""Running other tunnel programs (sshd, ssh, pagekite) as children of ``bench peers``.

``PeerProcess`` is ``bench.stack.Child`` for programs that print no JSON line: it starts one
in a session of its own with stdout and stderr in a log file and stops its process group
(SIGTERM, then SIGKILL) when asked, whatever happened. sshd forks a child per connection and
that child calls setsid(), leaving the group, so ``stop`` also sends the signals to every
descendant found under /proc before the parent goes.

``tcp_sockets`` reads TCP_NODELAY off another process's live sockets: pidfd_getfd(2) copies
the descriptor into this process, and a socket option belongs to the socket, not to the
descriptor, so getsockopt on the copy answers for the original. That tells whether Nagle's
algorithm is on for a tunnel's sockets while it carries the load, without strace slowing
it down. It needs Linux 5.6 and ptrace rights over the target (root, or the same user).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import http.client
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.stack import ProcessProbe

_STOP_GRACE = 5.0
_SYS_PIDFD_GETFD = 438  # the same number on every architecture (new syscalls share a table)


class PeerUnavailable(Exception):
    """A peer tunnel cannot be measured: not installed, would not start, or died."""


class PeerProcess:
    """A non-Python child program with its output in a log file."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, *, stdin_pipe: bool = False
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = log_path.open("wb")
        # A pipe nobody writes to keeps a stdin open (ssh -tt ends its session on EOF).
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.probe = ProcessProbe(self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tree(self) -> list[int]:
        """This process and all its live descendants (sshd's session children setsid())."""
        return [self.pid, *descendants(self.pid)]

    def cpu_seconds(self) -> float:
        """User + system CPU of the whole tree, live processes only."""
        return sum(ProcessProbe(pid).cpu_seconds() for pid in self.tree())

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise PeerUnavailable(f"{self.name} exited with status {code}{self.tail()}")

    def stop(self) -> int | None:
        """SIGTERM the group and every descendant; SIGKILL what lingers. Idempotent."""
        process = self.process
        if process.poll() is None:
            strays = descendants(process.pid)
            _signal_all(process.pid, strays, signal.SIGTERM)
            try:
                process.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                _signal_all(process.pid, strays, signal.SIGKILL)
                process.wait()
            _reap_strays(strays)
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        self._log.close()
        return process.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, n: int = 8) -> str:
        self._log.flush()
        lines = [line for line in self.log_text().splitlines() if line.strip()][-n:]
        return (": " + " | ".join(lines)) if lines else " (its log is empty)"


def _signal_all(pid: int, strays: list[int], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    for stray in strays:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(stray, sig)


def _reap_strays(strays: list[int]) -> None:
    """Descendants are not our children: wait for them to vanish, SIGKILL the stubborn."""
    deadline = time.monotonic() + _STOP_GRACE
    while (left := [pid for pid in strays if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, found by parent links in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def free_port() -> int:
    """A port nothing listens on now. Racy by nature; the peers' own checks catch a loss."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, timeout: float, processes: list[PeerProcess]) -> None:
    """Until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            process.check_alive()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise PeerUnavailable(f"nothing listened on 127.0.0.1:{port} within {timeout:g}s")
        time.sleep(0.05)


def wait_http_ok(port: int, host: str, timeout: float, processes: list[PeerProcess]) -> None:
    """Until GET /bytes/16 through the tunnel answers 200 with the origin's 16 bytes."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        for process in processes:
            process.check_alive()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
        try:
            conn.request("GET", "/bytes/16", headers={"Host": host})
            response = conn.getresponse()
            body = response.read()
            if response.status == 200 and body == b"x" * 16:
                return
            last = f"status {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            last = str(exc) or type(exc).__name__
        finally:
            conn.close()
        if time.monotonic() > deadline:
            raise PeerUnavailable(
                f"no 200 through 127.0.0.1:{port} within {timeout:g}s (last: {last})"
            )
        time.sleep(0.1)


@dataclass(frozen=True, slots=True)
class SocketState:
    pid: int
    local: tuple[str, int]
    peer: tuple[str, int] | None  # None for a listening socket
    nodelay: bool


_libc = ctypes.CDLL(None, use_errno=True)


def _copy_fd(pid: int, fd: int) -> int:
    pidfd = os.pidfd_open(pid)
    try:
        copied: int = _libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
        if copied < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return copied
    finally:
        os.close(pidfd)


def tcp_sockets(pids: list[int]) -> list[SocketState]:
    """The IPv4 TCP sockets the processes hold, with TCP_NODELAY as it is now.

    Raises OSError when the kernel or our rights do not allow it (ENOSYS, EPERM)."""
    states: list[SocketState] = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for name in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if not target.startswith("socket:"):
                continue
            try:
                fd = _copy_fd(pid, int(name))
            except OSError as exc:
                if exc.errno in (errno.EBADF, errno.ESRCH):
                    continue  # closed, or the process exited, since we listed it
                raise
            sock = socket.socket(fileno=fd)
            try:
                if sock.family != socket.AF_INET or sock.type != socket.SOCK_STREAM:
                    continue
                try:
                    peer: tuple[str, int] | None = sock.getpeername()
                except OSError:
                    peer = None
                nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
                states.append(SocketState(pid, sock.getsockname(), peer, nodelay))
            finally:
                sock.close()
    return states
