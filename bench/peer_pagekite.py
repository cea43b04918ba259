"""PageKite as a peer tunnel: a front-end and a back-end, both on 127.0.0.1.

    pagekite --clean --isfrontend --host=127.0.0.1 --ports=PORT --protos=http \
        --domain=http:bench.localhost:SECRET
    pagekite --clean --frontend=127.0.0.1:PORT \
        --service_on=http:bench.localhost:127.0.0.1:ORIGIN:SECRET

Visitors (the load generator) connect to the front-end's port with Host bench.localhost;
bytes go load generator -> front-end -> (one tunnel connection) -> back-end -> origin.

``--nozchunks`` on both ends: PageKite compresses tunnel chunks with zlib by default, and the
bench origin's bodies are runs of one letter, which compress about a thousandfold. With
compression on, the figures would measure zlib on an artificial corpus, not the tunnel; real
responses (images, archives, TLS bytes) barely compress. ``--nullui`` and
``--nocrashreport`` keep it from prompting or phoning home; ``--clean`` skips ~/.pagekite.rc.
Everything else is left at its defaults, which are what a user gets.

Expect PageKite to be bound by waiting, not by CPU (look at its tunnel CPU column): its
main loop sleeps on purpose (the front-end's 5 ms minimum loop time, SELECT_LOOP_MIN_MS, and
0.1 s pauses once more than ``--buffers`` KiB, default 1024, are queued), and on this
machine some requests also wait out its 1.1 s poll timeout.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from bench.peer_process import PeerProcess, PeerUnavailable, free_port, wait_http_ok, wait_listening
from bench.tools import find_tool

KITE = "bench.localhost"
_COMMON = ["--clean", "--nullui", "--nocrashreport", "--nozchunks", "--logfile=stdio"]


class PageKiteTunnel:
    def __init__(self, *, log_dir: Path, start_timeout: float) -> None:
        self.name = "pagekite"
        self.key = "pagekite"
        self.path = "load generator -> front-end -> back-end -> origin"
        self.log_dir = log_dir
        self.start_timeout = start_timeout
        self.config = ""
        self.findings: list[str] = []
        self._front: PeerProcess | None = None
        self._back: PeerProcess | None = None

    @staticmethod
    def missing_tools() -> list[str]:
        return [] if find_tool("pagekite") is not None else ["pagekite"]

    def start(self, origin_port: int) -> tuple[int, str]:
        pagekite = find_tool("pagekite")
        if pagekite is None:
            raise PeerUnavailable("not installed: pagekite (python -m bench tools --install)")
        secret = secrets.token_hex(12)
        port = free_port()
        self._front = PeerProcess(
            "pagekite front-end",
            [
                pagekite,
                *_COMMON,
                "--isfrontend",
                "--host=127.0.0.1",
                f"--ports={port}",
                "--protos=http",
                f"--domain=http:{KITE}:{secret}",
            ],
            self.log_dir / "pagekite-frontend.log",
        )
        wait_listening(port, self.start_timeout, [self._front])
        self._back = PeerProcess(
            "pagekite back-end",
            [
                pagekite,
                *_COMMON,
                f"--frontend=127.0.0.1:{port}",
                f"--service_on=http:{KITE}:127.0.0.1:{origin_port}:{secret}",
            ],
            self.log_dir / "pagekite-backend.log",
        )
        wait_http_ok(port, KITE, self.start_timeout, [self._front, self._back])
        match = re.search(r"version=([\w.]+)", self._front.log_text())
        version = match.group(1) if match else "version not logged"
        self.config = f"pagekite {version}, plain HTTP tunnel, --nozchunks (no zlib)"
        return port, KITE

    def check_alive(self) -> None:
        for process in (self._front, self._back):
            if process is not None:
                process.check_alive()

    def cpu_seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self._front is not None:
            out["pk-front"] = self._front.cpu_seconds()
        if self._back is not None:
            out["pk-back"] = self._back.cpu_seconds()
        return out

    def observe(self) -> None:
        """Nothing to read under load: PageKite's sockets are not the question here."""

    def stop(self) -> None:
        for process in (self._back, self._front):
            if process is not None:
                process.stop()
