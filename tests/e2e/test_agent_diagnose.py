"""``burrow diagnose`` against real edges and servers: one line per check, a hint for each
failure, exit 1 when any failed, and never the token's secret part."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import trustme

from agent.diagnose import Check, EdgeTarget, diagnose
from tests.agent.processes import run_burrow
from tests.e2e.test_agent_transports import ca_file, tls_edge  # noqa: F401 (fixtures)

SIGNATURE = "c2lnbmF0dXJlLXRoYXQtbXVzdC1uZXZlci1iZS1wcmludGVk"


def signed_looking_token(**claims: object) -> str:
    body = {"org": "acme", "tid": "tok-7", "iat": int(time.time()) - 60, **claims}
    payload = base64.urlsafe_b64encode(msgspec.msgpack.encode(body)).rstrip(b"=").decode()
    return f"bt1.k1.{payload}.{SIGNATURE}"


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_healthy_edge_passes_every_check(tls_edge, ca_file):  # noqa: F811
    target = EdgeTarget(
        "localhost", tls_edge.config.agent_port, signed_looking_token(hosts=["*.acme.dev"]),
        ca=ca_file, wss_host="localhost", wss_port=tls_edge.config.https_port,
    )  # fmt: skip
    checks = by_name(await diagnose(target, per_check=3))
    assert checks["dns"].status == "ok" and "127.0.0.1" in checks["dns"].detail
    assert checks["agent port"].status == "ok" and "TLS" in checks["agent port"].detail
    assert checks["wss"].status == "ok"
    assert checks["certificate"].status == "ok" and "more days" in checks["certificate"].detail
    token = checks["token"]
    assert token.status == "ok"
    assert "org acme" in token.detail and "never expires" in token.detail
    assert "*.acme.dev" in token.detail
    # The edge's own pages carry a Date, so the clock is compared with a real edge's.
    assert checks["clock"].status == "ok", checks["clock"]
    assert not any(c.failed for c in checks.values())


async def test_an_untrusted_certificate_fails_with_the_ca_hint(tls_edge):  # noqa: F811
    target = EdgeTarget("localhost", tls_edge.config.agent_port, signed_looking_token())
    checks = by_name(await diagnose(target, per_check=3))
    cert = checks["certificate"]
    assert cert.failed and "system trust store" in cert.detail
    assert "--ca" in cert.line()


async def test_unreachable_ports_and_names_fail_with_hints():
    target = EdgeTarget(
        "127.0.0.1", closed_port(), signed_looking_token(),
        wss_host="127.0.0.1", wss_port=closed_port(),
    )  # fmt: skip
    checks = by_name(await diagnose(target, per_check=3))
    assert checks["agent port"].failed and "nothing listens" in checks["agent port"].line()
    assert checks["wss"].failed
    missing = by_name(await diagnose(EdgeTarget("edge.invalid", 4443, "t"), per_check=3))
    assert missing["dns"].failed and "does not resolve" in missing["dns"].detail


async def test_an_expired_token_fails_and_its_secret_part_is_never_shown():
    target = EdgeTarget("127.0.0.1", closed_port(), signed_looking_token(exp=1_000_000))
    checks = await diagnose(target, per_check=1)
    token = by_name(checks)["token"]
    assert token.failed and "expired" in token.detail and "new token" in token.hint
    assert not any(SIGNATURE in c.line() for c in checks)


@pytest.fixture
async def dated_https(tmp_path: Path) -> AsyncIterator[tuple[int, str]]:
    """An HTTPS server whose every response carries a Date header, and its CA file."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    ca_path = tmp_path / "dated-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        date = email.utils.formatdate(usegmt=True)
        writer.write(f"HTTP/1.1 404 Not Found\r\nDate: {date}\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    yield server.sockets[0].getsockname()[1], str(ca_path)
    server.close()


async def test_clock_skew_against_the_edge_is_measured(dated_https):
    port, ca = dated_https
    target = EdgeTarget("localhost", closed_port(), "", ca=ca, wss_host="localhost", wss_port=port)
    fine = by_name(await diagnose(target, per_check=3))["clock"]
    assert fine.status == "ok" and "the edge's clock" in fine.detail
    skewed = by_name(await diagnose(target, per_check=3, clock=lambda: time.time() + 600))
    assert skewed["clock"].failed and "600 s ahead" in skewed["clock"].detail


async def test_burrow_diagnose_exit_status(tmp_path, tls_edge, ca_file):  # noqa: F811
    """0 when every check passes, 1 when any failed."""
    argv = [
        "diagnose", "--server", f"localhost:{tls_edge.config.agent_port}",
        "--wss", f"localhost:{tls_edge.config.https_port}",
        "--authtoken", signed_looking_token(),
    ]  # fmt: skip
    code, out = await run_burrow(tmp_path, "diagnose-ok", *argv, "--ca", ca_file)
    assert code == 0, out
    assert "ok    agent port" in out and "all checks passed" in out, out
    code, out = await run_burrow(tmp_path, "diagnose-bad", *argv)
    assert code == 1, out
    assert "FAIL  certificate" in out and "checks failed" in out, out
