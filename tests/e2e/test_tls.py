"""HTTPS on the edge, end to end: termination with the edge's certificate (HTTP/1.1 and
HTTP/2 by ALPN), SNI passthrough to a local service that does its own TLS, each host served
in one mode only, certificates replaced and expiring without a restart, what a non-TLS or
silent client gets on the HTTPS port, and agent links over TLS.

Three unrelated trustme CAs keep the certificates apart: the edge's (``ca``), the local TLS
service's (``service_ca``), and one for replacements (made per test). A client trusts exactly
the CA whose certificate the test expects, so a handshake that verifies proves who answered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import math
import ssl
import time
from collections.abc import AsyncIterator

import pytest
import trustme

from agent.client import link_tls_context
from agent.tunnels import TunnelSpec
from certs import CertError
from edge.config import EdgeConfig, Limits
from edge.server import Edge
from tests.e2e.client import get, raw_exchange
from tests.e2e.conftest import AgentRunner, edge_config, start_edge, wait_for
from tests.e2e.origin import pattern_bytes
from tests.e2e.tlshelp import (
    BASE,
    FirstByteTap,
    HttpsVisitor,
    LocalTlsEcho,
    chain_pem,
    client_context,
    client_hello,
    fingerprint,
    h2_requests,
    handshake,
    handshake_split_hello,
    leaf_cert,
    peer_cert,
    san_names,
    write_leaf,
)

MB = 1024 * 1024
APP = f"app.{BASE}"
SECURE = f"secure.{BASE}"


# -- certificates (made once per module: key generation is the slow part) -----------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def service_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def edge_leaf(ca: trustme.CA) -> trustme.LeafCert:
    # "localhost" too: agents dial the edge by that name in these tests.
    return ca.issue_cert(f"*.{BASE}", BASE, "localhost")


@pytest.fixture(scope="module")
def cert_files(
    edge_leaf: trustme.LeafCert, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str]:
    return write_leaf(edge_leaf, tmp_path_factory.mktemp("edge-cert"), "edge")


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def edge_fingerprint(edge_leaf: trustme.LeafCert) -> str:
    return fingerprint(leaf_cert(edge_leaf))


def tls_edge_config(cert_files: tuple[str, str], **changes: object) -> EdgeConfig:
    return edge_config(base_domain=BASE, https_port=0, tls_files=[cert_files], **changes)


@pytest.fixture
async def edge(cert_files: tuple[str, str]) -> AsyncIterator[Edge]:
    """Overrides conftest's ``edge``: this one serves HTTPS under ``tunnels.test`` with the
    trustme certificate, so conftest's ``http_tunnel`` binds ``app.tunnels.test`` on it."""
    e = await start_edge(tls_edge_config(cert_files))
    yield e
    await e.shutdown(drain=0.5)


@pytest.fixture
async def secure_echo(service_ca: trustme.CA) -> AsyncIterator[LocalTlsEcho]:
    svc = await LocalTlsEcho(service_ca.issue_cert(SECURE)).start()
    yield svc
    await svc.stop()


async def _passthrough(edge: Edge, agents: AgentRunner, secure_echo: LocalTlsEcho) -> None:
    agent = await agents.start(
        edge, TunnelSpec("tls", "127.0.0.1", secure_echo.port, name="secure")
    )
    assert agent.tunnels[0].url == f"tls://{SECURE}:{edge.config.https_port}"


# -- termination ----------------------------------------------------------------------------


async def test_https_get_post_and_keep_alive_through_termination(
    edge, http_tunnel, service, ca, edge_fingerprint
):
    agent = await http_tunnel("app")
    port = edge.config.https_port
    assert agent.tunnels[0].url == f"https://{APP}:{port}"
    body = pattern_bytes(MB)
    async with HttpsVisitor(port, APP, client_context(ca)) as v:
        # The handshake verified against the edge's CA for app.tunnels.test: this is it.
        assert fingerprint(v.cert) == edge_fingerprint
        assert san_names(v.cert) == {f"*.{BASE}", BASE, "localhost"}
        assert v.alpn == "http/1.1"
        r = await v.request("GET", "/hello")
        assert (r.status, r.body) == (200, b"hello")
        r = await v.request("POST", "/digest", body)
        assert r.status == 200
        assert json.loads(r.body) == {"sha256": hashlib.sha256(body).hexdigest(), "size": MB}
        r = await v.request("GET", f"/bytes?n={2 * MB}")
        assert r.status == 200 and r.body == pattern_bytes(2 * MB)
        r = await v.request("GET", "/headers")
        headers = dict(json.loads(r.body)["headers"])
        assert headers["x-forwarded-proto"] == "https"
        assert headers["x-forwarded-host"] == APP
        assert headers["forwarded"] == f"for=127.0.0.1;host={APP};proto=https"
        ids = {(await v.request("GET", "/conn")).text for _ in range(3)}
    assert len(ids) == 1
    assert service.connections == 1, "one TLS visitor connection used several local ones"


async def test_http2_over_tls_twenty_concurrent_streams(edge, http_tunnel, service, ca):
    await http_tunnel("app")
    sizes = [1000 * i + i for i in range(1, 21)]
    context = client_context(ca, alpn=("h2", "http/1.1"))
    ex = await h2_requests(edge.config.https_port, APP, context, [f"/bytes?n={n}" for n in sizes])
    assert ex.alpn == "h2"
    for n, r in zip(sizes, ex.results, strict=True):
        assert (r.status, r.reset) == (200, None)
        assert bytes(r.body) == pattern_bytes(n)
    assert service.connections >= 20  # the streams ran side by side, one local connection each
    ex = await h2_requests(edge.config.https_port, APP, context, ["/headers"])
    headers = dict(json.loads(ex.results[0].body)["headers"])
    assert headers["x-forwarded-proto"] == "https" and headers["host"] == APP


async def test_unknown_host_gets_edge_certificate_then_404(edge, http_tunnel, ca, edge_fingerprint):
    await http_tunnel("app")
    port = edge.config.https_port
    async with HttpsVisitor(port, f"nope.{BASE}", client_context(ca)) as v:
        assert fingerprint(v.cert) == edge_fingerprint
        r = await v.request("GET", "/")
    assert r.status == 404 and f"No tunnel is serving nope.{BASE}" in r.text
    assert r.headers["content-type"].startswith("text/html")
    # A name outside the edge's domain, or none at all: still the edge's own certificate
    # (chain verified, the name cannot match), never one made up for the stranger's name.
    chain_only = client_context(ca)
    chain_only.check_hostname = False
    for server_name in ("stranger.example", None):
        async with HttpsVisitor(port, "stranger.example", chain_only, server_name or "") as v:
            assert fingerprint(v.cert) == edge_fingerprint
            r = await v.request("GET", "/")
        assert r.status == 404 and "No tunnel is serving stranger.example" in r.text


# -- passthrough ----------------------------------------------------------------------------


async def test_passthrough_visitor_does_tls_with_the_local_service(
    edge, agents, secure_echo, service_ca, ca
):
    await _passthrough(edge, agents, secure_echo)
    port = edge.config.https_port
    # The visitor offers h2; the local service speaks only http/1.1 (the edge would pick h2).
    context = client_context(service_ca, alpn=("h2", "http/1.1"))
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=SECURE
    )
    try:
        assert san_names(peer_cert(writer)) == {SECURE}
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
        payload = pattern_bytes(300_000)
        writer.write(payload)
        echoed = await asyncio.wait_for(reader.readexactly(len(payload)), 5)
        assert echoed == payload
    finally:
        writer.close()
    # The service read the visitor's own ClientHello, SNI and all.
    assert secure_echo.server_names == [SECURE]
    # Never terminated at the edge: the edge's CA does not vouch for what answers there.
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(port, SECURE, client_context(ca))


@pytest.mark.parametrize("split", [3, 60, -1], ids=["in-record-header", "mid-hello", "last-byte"])
async def test_client_hello_split_across_reads_loses_no_byte(
    edge, agents, http_tunnel, secure_echo, service_ca, ca, edge_fingerprint, split
):
    """The listener routes on a ClientHello it has to reassemble, then hands every byte on:
    to the local service's TLS (passthrough) or its own (termination)."""
    await http_tunnel("app")
    await _passthrough(edge, agents, secure_echo)
    port = edge.config.https_port
    cert = await handshake_split_hello(port, SECURE, client_context(service_ca), split)
    assert san_names(cert) == {SECURE}
    cert = await handshake_split_hello(port, APP, client_context(ca), split)
    assert fingerprint(cert) == edge_fingerprint
    assert secure_echo.server_names == [SECURE]


async def test_each_host_is_served_in_one_mode_only(edge, agents, http_tunnel, secure_echo, ca):
    await http_tunnel("app")
    await _passthrough(edge, agents, secure_echo)
    # The passthrough host on the plain HTTP listener.
    r = await get(edge.config.http_port, SECURE, "/")
    assert r.status == 421
    assert "served as TLS passthrough" in r.text and "https://" in r.text
    # Terminated at the edge (SNI of the http tunnel), then asking for the passthrough host.
    port = edge.config.https_port
    async with HttpsVisitor(port, SECURE, client_context(ca), server_name=APP) as v:
        r = await v.request("GET", "/")
    assert r.status == 421 and "served as TLS passthrough" in r.text
    h2 = client_context(ca, alpn=("h2",))
    ex = await h2_requests(port, APP, h2, ["/"], authority=SECURE)
    assert ex.alpn == "h2" and ex.results[0].status == 421
    assert secure_echo.connections == 0, "a terminated request reached the passthrough service"
    assert edge.metrics.refusals["wrong_mode"] == 3


# -- certificates change without a restart ---------------------------------------------------


async def test_new_certificate_served_to_new_connections(edge, http_tunnel, ca, edge_fingerprint):
    await http_tunnel("app")
    port = edge.config.https_port
    renewed_ca = trustme.CA()
    renewed = renewed_ca.issue_cert(f"*.{BASE}", BASE)
    async with HttpsVisitor(port, APP, client_context(ca)) as before:
        assert (await before.request("GET", "/hello")).body == b"hello"
        names = edge.certs.put(chain_pem(renewed), renewed.private_key_pem.bytes())
        assert set(names) == {f"*.{BASE}", BASE}
        seen = await handshake(port, APP, client_context(renewed_ca))
        assert fingerprint(seen.cert) == fingerprint(leaf_cert(renewed))
        with pytest.raises(ssl.SSLCertVerificationError):
            await handshake(port, APP, client_context(ca))
        # A connection made before the change keeps going.
        assert fingerprint(before.cert) == edge_fingerprint
        assert (await before.request("GET", "/hello")).body == b"hello"
    async with HttpsVisitor(port, APP, client_context(renewed_ca)) as after:
        assert (await after.request("GET", "/hello")).body == b"hello"


async def test_expired_certificate_is_refused_by_put(edge, ca, edge_fingerprint):
    now = dt.datetime.now(dt.UTC)
    expired = ca.issue_cert(
        f"old.{BASE}", not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1)
    )
    with pytest.raises(CertError, match=r"expired .* renew it"):
        edge.certs.put(chain_pem(expired), expired.private_key_pem.bytes())
    assert f"old.{BASE}" not in edge.certs.names()
    seen = await handshake(edge.config.https_port, f"old.{BASE}", client_context(ca))
    assert fingerprint(seen.cert) == edge_fingerprint


async def test_certificate_that_expires_in_the_store_is_no_longer_served(
    edge, http_tunnel, ca, edge_fingerprint
):
    """Real time, not a fake clock: the Edge builds its CertStore with ``time.time``. The
    certificate for soon.tunnels.test lives two seconds; after that the wildcard serves."""
    await http_tunnel("soon")
    host = f"soon.{BASE}"
    short_ca = trustme.CA()
    now = dt.datetime.now(dt.UTC)
    short = short_ca.issue_cert(
        host, not_before=now - dt.timedelta(minutes=1), not_after=now + dt.timedelta(seconds=2)
    )
    edge.certs.put(chain_pem(short), short.private_key_pem.bytes())
    port = edge.config.https_port
    seen = await handshake(port, host, client_context(short_ca))
    assert fingerprint(seen.cert) == fingerprint(leaf_cert(short))
    expires = edge.certs.info(host).not_after.timestamp()
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.1)
    async with HttpsVisitor(port, host, client_context(ca)) as v:
        assert fingerprint(v.cert) == edge_fingerprint
        assert (await v.request("GET", "/hello")).body == b"hello"


# -- what is not a TLS visitor ---------------------------------------------------------------


async def test_plain_http_on_the_https_port_is_told_to_use_https(edge):
    answer = await raw_exchange(
        edge.config.https_port, f"GET / HTTP/1.1\r\nhost: {APP}\r\n\r\n".encode()
    )
    head, _, page = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close" in head.lower()
    assert b"use an https:// URL" in page


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x01\x02\x03 not a TLS record at all",
        bytes(range(255, 127, -1)),  # high bit set: SSL 2.0-style or noise
        b"\x17\x03\x03\x00\x10" + b"\x00" * 16,  # application data before any handshake
        b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",  # a handshake that is no ClientHello
    ],
    ids=["zeros", "high-bit", "app-data-first", "not-a-client-hello"],
)
async def test_garbage_on_the_https_port_is_hung_up_on(edge, http_tunnel, ca, data):
    await http_tunnel("app")
    try:
        answer = await raw_exchange(edge.config.https_port, data, timeout=3)
    except ConnectionResetError:
        answer = b""
    assert answer == b""
    async with HttpsVisitor(edge.config.https_port, APP, client_context(ca)) as v:
        assert (await v.request("GET", "/hello")).body == b"hello"


async def _closed_after(reader: asyncio.StreamReader, timeout: float) -> float:
    """Seconds until the edge hangs up (EOF or reset); infinity if it has not by ``timeout``."""
    started = time.monotonic()
    try:
        data = await asyncio.wait_for(reader.read(65536), timeout)
    except ConnectionResetError:
        data = b""
    except TimeoutError:
        return math.inf
    assert data == b""
    return time.monotonic() - started


async def test_silent_client_is_cut_off_after_the_header_timeout(cert_files):
    edge = await start_edge(tls_edge_config(cert_files, limits=Limits(header_timeout=0.5)))
    try:
        port = edge.config.https_port
        silent = await asyncio.open_connection("127.0.0.1", port)
        partial = await asyncio.open_connection("127.0.0.1", port)
        partial[1].write(client_hello(APP)[:20])  # slowloris: a ClientHello that never ends
        waits = await asyncio.gather(_closed_after(silent[0], 3), _closed_after(partial[0], 3))
        for writer in (silent[1], partial[1]):
            writer.close()
        assert all(0.4 < w < 2.0 for w in waits), waits
        assert edge.metrics.refusals["tls_hello_timeout"] == 2
    finally:
        await edge.shutdown(drain=0.2)


async def test_client_that_stalls_after_its_client_hello_is_cut_off(cert_files):
    """Past the ClientHello the listener's timer is gone; the handshake needs one of its own
    (a client that never sent its Finished was once held open for good)."""
    edge = await start_edge(tls_edge_config(cert_files, limits=Limits(header_timeout=0.5)))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.config.https_port)
        writer.write(client_hello(APP))  # then never answers the ServerHello
        first = await asyncio.wait_for(reader.read(65536), 2)
        assert first[:1] == b"\x16"  # the edge's ServerHello: the handshake is under way
        try:
            waited = await _closed_after(reader, 2.5)
        finally:
            writer.close()
        assert 0.2 < waited < 2.0, f"a half-done handshake held the connection {waited:.1f} s"
    finally:
        await edge.shutdown(drain=0.2)


# -- agent links over TLS --------------------------------------------------------------------


async def test_agent_links_over_tls_to_the_agent_port(
    cert_files, ca_file, service, agents, ca, tmp_path
):
    edge = await start_edge(tls_edge_config(cert_files, agent_tls=True, agent_hostname="localhost"))
    try:
        server = ("localhost", edge.config.agent_port)
        trusted = await agents.start_at(
            server,
            edge,
            TunnelSpec("http", "127.0.0.1", service.port, name="app"),
            tls=link_tls_context(ca_file),
        )
        assert trusted.connected
        async with HttpsVisitor(edge.config.https_port, APP, client_context(ca)) as v:
            assert (await v.request("GET", "/hello")).body == b"hello"

        other_ca = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other_ca))
        # Through a tap, to see what each of its attempts opened with.
        tap = await FirstByteTap(("127.0.0.1", edge.config.agent_port)).start()
        untrusting = await agents.start_at(
            ("localhost", tap.port),
            edge,
            TunnelSpec("http", "127.0.0.1", service.port, name="other"),
            tls=link_tls_context(str(other_ca)),
            wait=False,
            connect_timeout=3,
        )
        task = agents.running[-1][1]
        await wait_for(lambda: bool(untrusting.last_error), what="a TLS failure")
        assert "certificate this agent does not trust" in untrusting.last_error
        assert "--ca FILE" in untrusting.last_error
        # It keeps retrying, with TLS every time, and keeps failing.
        await wait_for(lambda: len(tap.first_bytes) >= 3, what="three attempts")
        await tap.stop()
        assert set(tap.first_bytes) == {0x16}, "an attempt did not open with a TLS handshake"
        assert not task.done() and not untrusting.connected
        assert untrusting.tunnels[0].url == ""
        assert edge.routes.lookup_host(f"other.{BASE}") is None
        assert len(edge.sessions) == 1, "the untrusting agent got a link"
        r = await get(edge.config.http_port, f"other.{BASE}", "/hello")
        assert r.status == 404
    finally:
        await edge.shutdown(drain=0.2)


async def test_agent_port_certificate_follows_the_store(cert_files, ca, edge_fingerprint):
    """The agent port picks the store's current certificate for the agent hostname at each
    handshake, without touching the contexts the HTTPS listener serves (an SNI callback set
    on the shared context once gave HTTPS strangers a self-signed fallback for their name)."""
    edge = await start_edge(tls_edge_config(cert_files, agent_tls=True, agent_hostname="localhost"))
    try:
        chain_only = client_context(ca)
        chain_only.check_hostname = False
        seen = await handshake(edge.config.https_port, "stranger.example", chain_only)
        assert fingerprint(seen.cert) == edge_fingerprint
        seen = await handshake(edge.config.agent_port, "localhost", client_context(ca, alpn=()))
        assert fingerprint(seen.cert) == edge_fingerprint
        renewed_ca = trustme.CA()
        renewed = renewed_ca.issue_cert("localhost")
        edge.certs.put(chain_pem(renewed), renewed.private_key_pem.bytes())
        seen = await handshake(
            edge.config.agent_port, "localhost", client_context(renewed_ca, alpn=())
        )
        assert fingerprint(seen.cert) == fingerprint(leaf_cert(renewed))
        # The HTTPS listener's certificate for the base domain did not change with it.
        seen = await handshake(edge.config.https_port, APP, client_context(ca))
        assert fingerprint(seen.cert) == edge_fingerprint
    finally:
        await edge.shutdown(drain=0.2)


async def test_agent_links_over_alpn_on_the_https_port(edge, service, agents, ca_file, ca):
    agent = await agents.start_at(
        ("localhost", edge.config.https_port),
        edge,
        TunnelSpec("http", "127.0.0.1", service.port, name="via443"),
        tls=link_tls_context(ca_file),
    )
    assert (
        agent.connected
        and agent.tunnels[0].url == f"https://via443.{BASE}:{edge.config.https_port}"
    )
    host = f"via443.{BASE}"
    async with HttpsVisitor(edge.config.https_port, host, client_context(ca)) as v:
        r = await v.request("POST", "/digest", b"x" * 100_000)
        assert json.loads(r.body)["size"] == 100_000
    r = await get(edge.config.http_port, host, "/hello")
    assert (r.status, r.body) == (200, b"hello")
