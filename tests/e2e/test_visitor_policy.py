"""Per-tunnel visitor policy from the agent's token, end to end: basic auth over HTTP/1.1,
h2c and HTTPS (401, then through on the same connection, the tunnel password kept from the
local service), IP allow and deny lists (403 on HTTP, a closed connection on TCP and TLS
passthrough), and the password check paid once per credential.

The edge gets an ``Authenticator`` of its own that maps test tokens to identities carrying
the policy, which is what it sees of any token."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

import edge.visitors.visitor_policy as visitor_policy
from agent.client import Agent
from agent.tunnels import TunnelSpec
from contracts.basic_auth import hash_basic_password
from edge.config import EdgeConfig
from edge.link.auth import AuthError, Identity
from edge.server import Edge
from tests.e2e.client import Visitor
from tests.e2e.conftest import AgentRunner, edge_config, wait_for
from tests.e2e.origin import LocalService
from tests.e2e.test_http2 import H2Client
from tests.e2e.tlshelp import BASE, HttpsVisitor, LocalTlsEcho, client_context, write_leaf

USER, PASSWORD = "ann", "open sesame"
ENTRY = hash_basic_password(USER, PASSWORD)
NOT_ALLOWED = "Your address is not allowed to reach this tunnel."

IDENTITIES = {
    "open": Identity(account="alice", token_id="open"),
    "auth": Identity(account="alice", token_id="auth", basic_auth=(ENTRY,)),
    # Visitors in these tests come from 127.0.0.1.
    "elsewhere": Identity(
        account="alice", token_id="elsewhere", ip_allow=("10.0.0.0/8", "2001:db8::/32")
    ),
    "local": Identity(account="alice", token_id="local", ip_allow=("127.0.0.0/8", "::1/128")),
    "deny-wins": Identity(
        account="alice", token_id="deny-wins", ip_allow=("127.0.0.0/8",), ip_deny=("127.0.0.1",)
    ),
}


class PolicyTokens:
    """Test tokens, each standing for an identity with its visitor policy."""

    def authenticate(self, token: str) -> Identity:
        identity = IDENTITIES.get(token)
        if identity is None:
            raise AuthError("unknown test token")
        return identity


def basic(user: str, password: str) -> tuple[str, str]:
    return ("authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


async def start_policy_edge(config: EdgeConfig | None = None) -> Edge:
    e = Edge(config or edge_config(), PolicyTokens())
    await e.start()
    return e


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    e = await start_policy_edge()
    yield e
    await e.shutdown(drain=0.5)


async def http_tunnel(
    edge: Edge, agents: AgentRunner, service: LocalService, token: str, name: str
) -> Agent:
    return await agents.start(
        edge, TunnelSpec("http", "127.0.0.1", service.port, name=name), token=token
    )


def seen_headers(body: bytes) -> dict[str, str]:
    return dict(json.loads(body)["headers"])


# -- basic auth -----------------------------------------------------------------------------


async def test_http1_asks_for_a_password_then_lets_it_through_on_one_connection(
    edge, agents, service
):
    await http_tunnel(edge, agents, service, "auth", "secret")
    async with Visitor(edge.config.http_port, "secret.localhost") as v:
        r = await v.request("GET", "/hello")
        assert r.status == 401
        assert r.headers["www-authenticate"] == 'Basic realm="secret.localhost", charset="UTF-8"'
        assert "sign in" in r.text and r.headers.get("connection") != "close"
        r = await v.request("GET", "/hello", headers=[basic(USER, "wrong")])
        assert r.status == 401 and "www-authenticate" in r.headers
        assert service.connections == 0, "a refused request reached the local service"
        # The browser asks again on the same connection, with the credentials.
        r = await v.request("GET", "/hello", headers=[basic(USER, PASSWORD)])
        assert (r.status, r.body) == (200, b"hello")
        r = await v.request("GET", "/headers", headers=[basic(USER, PASSWORD)])
        assert r.status == 200
        assert "authorization" not in seen_headers(r.body), "the tunnel password was forwarded"
    assert edge.metrics.refusals["auth_required"] == 2


async def test_http1_refusal_of_a_request_with_a_body_closes_the_connection(edge, agents, service):
    await http_tunnel(edge, agents, service, "auth", "secret")
    async with Visitor(edge.config.http_port, "secret.localhost") as v:
        r = await v.request("POST", "/digest", body=b"x" * 5000)
        assert r.status == 401 and r.headers["connection"] == "close"
        assert "www-authenticate" in r.headers
        assert v.reader is not None
        assert await asyncio.wait_for(v.reader.read(), 5) == b""
    async with Visitor(edge.config.http_port, "secret.localhost") as v:
        r = await v.request("POST", "/digest", body=b"x" * 5000, headers=[basic(USER, PASSWORD)])
        assert r.status == 200 and json.loads(r.body)["size"] == 5000


async def test_h2c_asks_for_a_password_then_lets_it_through(edge, agents, service):
    await http_tunnel(edge, agents, service, "auth", "secret")
    async with H2Client(edge.config.http_port, "secret.localhost") as c:
        r = await c.request("GET", "/hello")
        assert r.status == 401
        assert r.headers[b"www-authenticate"] == b'Basic realm="secret.localhost", charset="UTF-8"'
        assert "sign in" in r.text
        r = await c.request("GET", "/hello", headers=[basic("mallory", PASSWORD)])
        assert r.status == 401
        r = await c.request("GET", "/hello", headers=[basic(USER, PASSWORD)])
        assert (r.status, bytes(r.body)) == (200, b"hello")
        r = await c.request("POST", "/headers", body=b"abc", headers=[basic(USER, PASSWORD)])
        assert r.status == 200 and "authorization" not in seen_headers(r.body)
        assert not c.closed.is_set()
    assert edge.metrics.refusals["auth_required"] == 2


async def test_the_password_is_checked_once_for_many_requests(edge, agents, service, monkeypatch):
    calls: list[str] = []
    real = visitor_policy.check_basic_password

    def counting(entry: str, user: str, password: str) -> bool:
        calls.append(user)
        return real(entry, user, password)

    monkeypatch.setattr(visitor_policy, "check_basic_password", counting)
    await http_tunnel(edge, agents, service, "auth", "secret")
    credentials = [basic(USER, PASSWORD)]
    async with Visitor(edge.config.http_port, "secret.localhost") as v:
        for _ in range(50):
            r = await v.request("GET", "/hello", headers=credentials)
            assert r.status == 200
    for _ in range(5):  # new connections, same credential
        async with Visitor(edge.config.http_port, "secret.localhost") as v:
            assert (await v.request("GET", "/hello", headers=credentials)).status == 200
    async with H2Client(edge.config.http_port, "secret.localhost") as c:
        results = await asyncio.gather(
            *(c.request("GET", "/hello", headers=credentials) for _ in range(20))
        )
        assert {r.status for r in results} == {200}
    assert calls == [USER]


# -- address rules --------------------------------------------------------------------------


async def test_an_allow_list_without_the_visitor_gets_403(edge, agents, service):
    await http_tunnel(edge, agents, service, "elsewhere", "far")
    async with Visitor(edge.config.http_port, "far.localhost") as v:
        for _ in range(2):  # and the connection stays usable
            r = await v.request("GET", "/hello", headers=[basic(USER, PASSWORD)])
            assert r.status == 403 and NOT_ALLOWED in r.text
            assert "www-authenticate" not in r.headers
    async with H2Client(edge.config.http_port, "far.localhost") as c:
        r = await c.request("GET", "/hello")
        assert r.status == 403 and NOT_ALLOWED in r.text
    assert service.connections == 0
    assert edge.metrics.refusals["ip_denied"] == 3


async def test_deny_wins_over_allow(edge, agents, service):
    await http_tunnel(edge, agents, service, "deny-wins", "both")
    async with Visitor(edge.config.http_port, "both.localhost") as v:
        r = await v.request("GET", "/hello")
    assert r.status == 403 and NOT_ALLOWED in r.text


async def test_an_allow_list_with_the_visitor_lets_its_own_authorization_through(
    edge, agents, service
):
    await http_tunnel(edge, agents, service, "local", "near")
    async with Visitor(edge.config.http_port, "near.localhost") as v:
        r = await v.request("GET", "/headers", headers=[("authorization", "Bearer app-token")])
    assert r.status == 200
    assert seen_headers(r.body)["authorization"] == "Bearer app-token"


async def test_a_tunnel_without_policy_is_open_to_all(edge, agents, service):
    await http_tunnel(edge, agents, service, "auth", "secret")
    await http_tunnel(edge, agents, service, "open", "public")
    auth = basic(USER, "its-own-app-password")
    async with Visitor(edge.config.http_port, "public.localhost") as v:
        assert (await v.request("GET", "/hello")).status == 200
        r = await v.request("GET", "/headers", headers=[auth])
    assert r.status == 200 and seen_headers(r.body)["authorization"] == auth[1]
    async with H2Client(edge.config.http_port, "public.localhost") as c:
        assert (await c.request("GET", "/hello")).status == 200
    assert not edge.metrics.refusals


# -- TCP tunnels ----------------------------------------------------------------------------


class Echo:
    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Echo:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def closed_promptly(port: int) -> bool:
    """True if a visitor on ``port`` sees its connection end (EOF or reset) within 2 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"anyone there?")
        return await asyncio.wait_for(reader.read(), 2) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        writer.close()


async def tcp_tunnel(edge: Edge, agents: AgentRunner, port: int, token: str) -> int:
    agent = await agents.start(edge, TunnelSpec("tcp", "127.0.0.1", port), token=token)
    return agent.tunnels[0].claimed_port


async def test_tcp_tunnel_closes_on_a_visitor_its_token_does_not_allow(edge, agents):
    async with Echo() as echo:
        denied = await tcp_tunnel(edge, agents, echo.port, "elsewhere")
        allowed = await tcp_tunnel(edge, agents, echo.port, "local")
        assert await closed_promptly(denied)
        reader, writer = await asyncio.open_connection("127.0.0.1", allowed)
        try:
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
        finally:
            writer.close()
        assert echo.connections == 1, "the refused visitor reached the local service"
    assert edge.metrics.refusals["ip_denied"] == 1


# -- HTTPS: terminated at the edge, and passthrough -----------------------------------------


@pytest.fixture(scope="module")
def service_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def edge_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_edge(edge_ca: trustme.CA, tmp_path: Path) -> AsyncIterator[Edge]:
    files = write_leaf(edge_ca.issue_cert(f"*.{BASE}", BASE), tmp_path, "edge")
    e = await start_policy_edge(edge_config(base_domain=BASE, https_port=0, tls_files=[files]))
    yield e
    await e.shutdown(drain=0.5)


async def test_https_terminated_at_the_edge_asks_for_a_password(tls_edge, agents, service, edge_ca):
    await http_tunnel(tls_edge, agents, service, "auth", "secret")
    host = f"secret.{BASE}"
    async with HttpsVisitor(tls_edge.config.https_port, host, client_context(edge_ca)) as v:
        r = await v.request("GET", "/hello")
        assert r.status == 401
        assert r.headers["www-authenticate"] == f'Basic realm="{host}", charset="UTF-8"'
        r = await v.request("GET", "/headers", headers=[basic(USER, PASSWORD)])
        assert r.status == 200 and "authorization" not in seen_headers(r.body)


async def test_tls_passthrough_closes_on_a_visitor_its_token_does_not_allow(
    tls_edge, agents, service_ca
):
    secure = f"secure.{BASE}"
    echo = await LocalTlsEcho(service_ca.issue_cert(secure)).start()
    try:
        await agents.start(
            tls_edge,
            TunnelSpec("tls", "127.0.0.1", echo.port, name="secure"),
            token="elsewhere",
        )
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.wait_for(
                asyncio.open_connection(
                    "127.0.0.1",
                    tls_edge.config.https_port,
                    ssl=client_context(service_ca),
                    server_hostname=secure,
                ),
                5,
            )
        await wait_for(lambda: tls_edge.metrics.refusals["ip_denied"] == 1, what="refusal")
        assert echo.connections == 0, "the refused visitor reached the local service"
    finally:
        await echo.stop()
