"""The certificates control issued, on this edge: ``EdgeCerts``.

Theory of operation. Control holds each certificate and its sealed key; the routing
snapshot lists ``(host, version)`` for every one, and a ``CertChanged`` event names a new
version. Neither carries a key: when the edge sees a version it does not hold, it fetches
chain and key from control over its authenticated channel (``GET /v1/edge/certs/<host>``)
and puts them into the ``CertStore``, which serves them from the next handshake.

Every certificate fetched is also written to the state directory (one file per host, chain
then key, mode 0600, replaced atomically), and loaded from there when the edge starts, so an
edge restarted while control is down still serves the certificates it had. A fetch that
fails is retried with backoff; the certificate already served stays until a new one loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from bus.events import CertRef, EdgeCert
from certs import CertError
from certs.store import CertStore

log = logging.getLogger("burrow.edge.certs")

RETRY_START = 1.0
RETRY_MAX = 60.0
FETCH_CONCURRENCY = 4
_VERSION_LINE = re.compile(rb"^# burrow-cert host=(\S+) version=(\d+)\n")


class CertSource(Protocol):
    async def fetch_cert(self, host: str) -> EdgeCert: ...


def _file_name(host: str) -> str:
    # "*" is legal in a file name but awkward in a shell: "*.example.com" -> "_.example.com".
    return host.replace("*", "_") + ".pem"


class EdgeCerts:
    """Keeps ``store`` serving the certificate versions control lists."""

    def __init__(self, store: CertStore, source: CertSource, state_dir: Path | None) -> None:
        self.store = store
        self.source = source
        self.state_dir = state_dir
        self.versions: dict[str, int] = {}  # host -> version served
        self._wanted: dict[str, int] = {}  # host -> version to fetch
        self._fetching: dict[str, asyncio.Task[None]] = {}
        self._limit = asyncio.Semaphore(FETCH_CONCURRENCY)

    # -- the state directory --------------------------------------------------------------

    def load_saved(self) -> int:
        """Serve what the state directory holds; how many certificates loaded."""
        folder = self.state_dir
        if folder is None or not folder.is_dir():
            return 0
        loaded = 0
        for path in sorted(folder.glob("*.pem")):
            try:
                data = path.read_bytes()
                match = _VERSION_LINE.match(data)
                if match is None:
                    raise CertError("no burrow-cert header line")
                host, version = match.group(1).decode(), int(match.group(2))
                body = data[match.end() :]
                split = body.index(b"-----BEGIN PRIVATE KEY-----")
                self.store.put(body[:split], body[split:], source="acme")
            except (OSError, ValueError, CertError) as exc:
                log.warning("ignoring the saved certificate %s: %s", path, exc)
                continue
            self.versions[host] = version
            loaded += 1
        if loaded:
            log.info("serving %d saved certificates until control is reached", loaded)
        return loaded

    def _save(self, cert: EdgeCert) -> None:
        folder = self.state_dir
        if folder is None:
            return
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        header = b"# burrow-cert host=%s version=%d\n" % (cert.host.encode(), cert.version)
        fd, tmp = tempfile.mkstemp(prefix=".cert-", dir=folder)  # born 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(header + cert.chain_pem + cert.key_pem)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, folder / _file_name(cert.host))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _forget(self, host: str) -> None:
        self.versions.pop(host, None)
        self.store.remove(host)
        if self.state_dir is not None:
            with contextlib.suppress(OSError):
                (self.state_dir / _file_name(host)).unlink()

    # -- what control says ----------------------------------------------------------------

    def load(self, refs: list[CertRef]) -> None:
        """A snapshot's list: fetch new versions, stop serving certificates no longer in it."""
        listed = {ref.host: ref.version for ref in refs}
        for host in [h for h in self._wanted if h not in listed]:
            del self._wanted[host]  # its fetch ends
        for host in [h for h in self.versions if h not in listed]:
            log.info("certificate for %s withdrawn by control", host)
            self._forget(host)
        for host, version in listed.items():
            self.changed(host, version)

    def changed(self, host: str, version: int) -> None:
        """Control has ``version`` of ``host``'s certificate (0: it has none any more)."""
        if version <= 0:
            self._wanted.pop(host, None)
            if host in self.versions:
                self._forget(host)
            return
        # Versions never repeat (one sequence in control), so any other version is newer
        # than what this edge holds, even one lower than a certificate it kept on disk from
        # before the host was removed and added again.
        if self.versions.get(host) == version:
            self._wanted.pop(host, None)
            return
        self._wanted[host] = version
        if host not in self._fetching:
            task = asyncio.get_running_loop().create_task(self._fetch(host))
            self._fetching[host] = task

    async def _fetch(self, host: str) -> None:
        delay = RETRY_START
        try:
            while host in self._wanted and self._wanted[host] != self.versions.get(host):
                try:
                    async with self._limit:
                        cert = await self.source.fetch_cert(host)
                    self.store.put(cert.chain_pem, cert.key_pem, source="acme")
                except Exception as exc:  # control down, a bad answer: retry, keep serving
                    log.warning(
                        "cannot load the certificate for %s from control (retrying in %gs): %s",
                        host,
                        delay,
                        exc,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
                    continue
                self.versions[host] = cert.version
                log.info("certificate for %s version %d loaded", host, cert.version)
                try:
                    await asyncio.to_thread(self._save, cert)
                except OSError as exc:
                    log.warning("cannot save the certificate for %s: %s", host, exc)
                if self._wanted.get(host) == cert.version:
                    self._wanted.pop(host, None)
                elif host in self._wanted:  # control answered from before the event: wait
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
        finally:
            self._fetching.pop(host, None)

    async def close(self) -> None:
        tasks = list(self._fetching.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
