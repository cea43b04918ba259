"""A real ACME CA for the tests: Debian's ``pebble``, with ``pebble-challtestsrv`` as the DNS
server that points every name at 127.0.0.1 (and serves the TXT records tests set).

Both run on loopback ports chosen here, with an HTTPS certificate for pebble's API made at
test time (trustme). Pebble validates http-01 on ``http_port`` and tls-alpn-01 on
``tls_port``: the edge's HTTP and HTTPS listeners. ``stop()`` and ``start()`` again on the
same ports make a CA outage.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import urllib.request
from pathlib import Path

import trustme

from tests.fixtures.system_tools import require

STARTUP_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _listening(port: int, process: asyncio.subprocess.Process, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + STARTUP_SECONDS
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} at start")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"{what} did not listen on {port} in time") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


class Pebble:
    def __init__(
        self, workdir: Path, http_port: int, tls_port: int, *, validity_seconds: int = 0
    ) -> None:
        self.pebble = require("pebble", "pebble")
        self.challtestsrv = require("pebble-challtestsrv", "pebble")
        self.workdir = workdir
        self.http_port = http_port
        self.tls_port = tls_port
        self.validity_seconds = validity_seconds
        self.acme_port = free_port()
        self.management_port = free_port()
        self.dns_port = free_port()
        self.dns_management_port = free_port()
        self.ca = trustme.CA()
        self.ca_bundle = workdir / "pebble-api-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_bundle))
        self._pebble: asyncio.subprocess.Process | None = None
        self._dns: asyncio.subprocess.Process | None = None
        self._log = (workdir / "pebble.log").open("ab")

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    def _config(self) -> Path:
        leaf = self.ca.issue_cert("127.0.0.1", "localhost")
        cert, key = self.workdir / "pebble-api.pem", self.workdir / "pebble-api-key.pem"
        cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        settings: dict[str, object] = {
            "listenAddress": f"127.0.0.1:{self.acme_port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": self.http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        if self.validity_seconds:
            settings["certificateValidityPeriod"] = self.validity_seconds
        path = self.workdir / "pebble-config.json"
        path.write_text(json.dumps({"pebble": settings}))
        return path

    async def start(self) -> Pebble:
        if self._dns is None:
            self._dns = await asyncio.create_subprocess_exec(
                    self.challtestsrv,
                    "-dns01", f"127.0.0.1:{self.dns_port}",
                    "-http01", "", "-https01", "", "-tlsalpn01", "",
                    "-management", f"127.0.0.1:{self.dns_management_port}",
                    "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            await _listening(self.dns_management_port, self._dns, "pebble-challtestsrv")
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            # Every order validates afresh, so each test sees the challenge it placed.
            "PEBBLE_AUTHZREUSE": "0",
        }
        self._pebble = await asyncio.create_subprocess_exec(
            self.pebble,
            "-config",
            str(self._config()),
            "-dnsserver",
            f"127.0.0.1:{self.dns_port}",
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        await _listening(self.acme_port, self._pebble, "pebble")
        return self

    async def stop_ca(self) -> None:
        """Stop the CA only (its DNS stays): an outage."""
        process, self._pebble = self._pebble, None
        if process is not None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 10)

    async def stop(self) -> None:
        await self.stop_ca()
        process, self._dns = self._dns, None
        if process is not None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 10)
        self._log.close()

    def _management(self, path: str) -> bytes:
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        url = f"https://127.0.0.1:{self.management_port}{path}"
        with urllib.request.urlopen(url, context=context, timeout=5) as answer:
            return bytes(answer.read())

    async def root_pem(self) -> bytes:
        """The root pebble made at start, which its certificates chain to."""
        return await asyncio.to_thread(self._management, "/roots/0")

    async def set_txt(self, name: str, value: str) -> None:
        await self._dns_call("/set-txt", {"host": name.rstrip(".") + ".", "value": value})

    async def add_a(self, name: str, address: str) -> None:
        """Point ``name`` somewhere other than the default 127.0.0.1."""
        await self._dns_call("/add-a", {"host": name.rstrip(".") + ".", "addresses": [address]})

    async def clear_a(self, name: str) -> None:
        """Back to the default address (127.0.0.1) for ``name``."""
        await self._dns_call("/clear-a", {"host": name.rstrip(".") + "."})

    async def _dns_call(self, path: str, payload: dict[str, object]) -> None:
        body = json.dumps(payload).encode()
        url = f"http://127.0.0.1:{self.dns_management_port}{path}"

        def post() -> None:
            request = urllib.request.Request(url, data=body, method="POST")
            with urllib.request.urlopen(request, timeout=5):
                pass

        await asyncio.to_thread(post)

    @property
    def log_text(self) -> str:
        path = self.workdir / "pebble.log"
        return path.read_text(errors="replace") if path.exists() else ""
