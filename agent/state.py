"""What the agent remembers between runs: the random name or port the edge gave each tunnel
definition, so ``burrow http 3000`` gets its URL back after a restart.

The edge keeps a released random name for its account for a while (ten minutes by default);
an agent that asks for it by name in its Bind within that time gets it back, and later too
as long as nobody else took it. Entries are keyed by the edge address, a digest of the token
(never the token) and the tunnel definition, so a different edge, account or tunnel starts
fresh. The file is small and bounded: the newest ``MAX_ENTRIES`` are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from agent.tunnels import TunnelSpec

log = logging.getLogger("burrow.agent")

MAX_ENTRIES = 256
FILE_NAME = "tunnels.json"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


class TunnelMemory:
    """The random names and ports one agent (edge and token) was given, by tunnel."""

    def __init__(self, path: Path, server: str, token: str) -> None:
        self.path = path
        self._agent = _digest(server, token)
        self._entries: dict[str, dict[str, object]] = self._read()

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # missing or damaged: start afresh, as a first run would
        entries = data.get("tunnels") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            return {}
        return {k: v for k, v in entries.items() if isinstance(v, dict)}

    def _key(self, spec: TunnelSpec) -> str:
        return _digest(self._agent, spec.protocol, spec.local, spec.label, str(spec.pool))

    @staticmethod
    def wants_random(spec: TunnelSpec) -> bool:
        return not (spec.name if spec.protocol in ("http", "tls") else spec.remote_port)

    def recall(self, spec: TunnelSpec) -> tuple[str, int]:
        """The (name, port) this tunnel had last time; ("", 0) if none."""
        if not self.wants_random(spec):
            return "", 0
        entry = self._entries.get(self._key(spec), {})
        holder = entry.get("pid")
        if isinstance(holder, int) and holder != os.getpid() and _alive(holder):
            return "", 0  # another running agent serves it (a second terminal): not ours
        name, port = entry.get("name", ""), entry.get("port", 0)
        return (name if isinstance(name, str) else ""), (port if isinstance(port, int) else 0)

    def remember(self, spec: TunnelSpec, name: str, port: int) -> None:
        if not self.wants_random(spec):
            return
        key = self._key(spec)
        entry = self._entries.get(key, {})
        pid = os.getpid()
        if (entry.get("name"), entry.get("port"), entry.get("pid")) == (name, port, pid):
            return
        self._entries[key] = {"name": name, "port": port, "pid": pid, "at": int(time.time())}
        if len(self._entries) > MAX_ENTRIES:
            newest = sorted(self._entries.items(), key=lambda kv: int(str(kv[1].get("at", 0))))
            self._entries = dict(newest[-MAX_ENTRIES:])
        self._write()

    def _write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": 1, "tunnels": self._entries}))
            tmp.replace(self.path)
        except OSError as exc:
            # Only the next restart's URL depends on it: say so and serve on.
            log.warning(
                "cannot save tunnel names to %s (%s): a restart gets new ones", self.path, exc
            )
