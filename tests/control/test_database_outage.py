"""PostgreSQL goes away under a running control service: through a TCP proxy the test cuts
(connections dropped, new ones refused) and freezes (bytes no longer forwarded). The API
answers 503 ``unavailable`` within the configured timeout, logs no traceback, and serves
again by itself once the proxy passes bytes again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control.app import create_app
from control.db import Database, DatabaseUnavailable
from tests.control.conftest import Api, control_config

TIMEOUT = 1.0


class PostgresProxy:
    """Forwards 127.0.0.1:<port> to the real server (on TCP, or on the Unix socket of the
    embedded PostgreSQL); ``mode`` is "open", "cut" or "frozen"."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._mode = "open"
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        self._mode = mode
        if mode == "frozen":
            self._flowing.clear()
        else:
            self._flowing.set()

    def cut(self) -> None:
        self.mode = "cut"
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            writer.transport.abort()
            return
        try:
            host, port = self.target
            if host.startswith("/"):  # a socket folder, as libpq names it
                socket_path = f"{host}/.s.PGSQL.{port}"
                up_reader, up_writer = await asyncio.open_unix_connection(socket_path)
            else:
                up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self._flowing.wait()  # frozen: hold the bytes, a server that stopped answering
            if self.mode == "cut":
                return
            writer.write(data)
            await writer.drain()


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[PostgresProxy]:
    parts = urlsplit(database_url)
    query = parse_qs(parts.query)
    # libpq's host and port in the query (the embedded server's socket) win over the URL's.
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    port = int(query.get("port", [parts.port or 5432])[0])
    proxy = PostgresProxy(host, port)
    await proxy.start()
    yield proxy
    await proxy.close()


def _through(database_url: str, port: int) -> str:
    parts = urlsplit(database_url)
    netloc = (parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else "") + (
        f"127.0.0.1:{port}"
    )
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


async def _timed_get(api: Api, key: str) -> tuple[int, dict[str, object], float]:
    started = time.monotonic()
    resp = await api.client.get("/v1/me", headers=api.bearer(key))
    body = await resp.json()
    return resp.status, body, time.monotonic() - started


async def test_database_outage_is_a_quick_503_and_recovers(
    database_url: str, proxy: PostgresProxy, caplog: pytest.LogCaptureFixture
) -> None:
    config = control_config(_through(database_url, proxy.port), database_timeout=TIMEOUT)
    async with TestClient(TestServer(create_app(config))) as client:
        api = Api(client)
        user = await api.signup()
        assert (await _timed_get(api, user["key"]))[0] == 200
        caplog.set_level(logging.WARNING)

        for outage in (proxy.cut, lambda: setattr(proxy, "mode", "frozen")):
            outage()
            for _ in range(3):
                status, body, took = await _timed_get(api, user["key"])
                assert status == 503, body
                assert body["error"]["code"] == "unavailable"  # type: ignore[index]
                assert took < TIMEOUT * 2 + 1.0, took
            proxy.mode = "open"
            deadline = time.monotonic() + 10
            while (status := (await _timed_get(api, user["key"]))[0]) != 200:
                assert status == 503
                assert time.monotonic() < deadline, "control did not recover"
                await asyncio.sleep(0.1)

        # Signing up and writing work again too, not only reads.
        await api.signup()
        # What API calls log (the background outbox has its own retry logging).
        api_loggers = ("burrow.control", "aiohttp.server", "aiohttp.web")
        tracebacks = [r for r in caplog.records if r.exc_info and r.name in api_loggers]
        assert not tracebacks, [r.getMessage() for r in tracebacks]


async def test_a_statement_past_the_limit_is_unavailable_and_the_server_ends_it(
    database_url: str,
) -> None:
    db = await Database.connect(database_url, maxsize=1, limit_seconds=0.5)
    try:
        assert await db.value("SHOW statement_timeout") == "2s"
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="unavailable"):
            await db.value("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 1.5
        assert await db.value("SELECT 1") == 1  # a fresh connection, at once
    finally:
        await db.close()
