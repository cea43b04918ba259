"""The request stage both HTTP shells share: every page the edge writes itself, every filter
outcome, the special paths, on HTTP/1.1 (fake transports, real edge and agent session)."""

from __future__ import annotations

import pytest

from edge.http1.events import ResponseHead
from edge.pipeline import (
    ACME_CHALLENGE,
    EdgeAnswer,
    FilterRequest,
    RequestFilter,
    filters_for,
)
from edge.server import Edge
from edge.visitors.http_visitor import HttpVisitor
from edge.visitors.visitor_policy import VisitorPolicy
from tests.edge.harness import (
    FakeAgent,
    FakeTransport,
    header,
    read_response,
    visitor_on,
)

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


def visit(edge: Edge, request: bytes, scheme: str = "http") -> tuple[HttpVisitor, FakeTransport]:
    visitor, transport = visitor_on(lambda: HttpVisitor(edge.context, scheme))
    assert isinstance(visitor, HttpVisitor)
    visitor.data_received(request)
    return visitor, transport


def get(host: str, path: str = "/", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


# -- the edge's own pages -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "words"),
    [
        (b"CONNECT app.localhost:443 HTTP/1.1\r\nHost: app.localhost:443\r\n\r\n", 405, b"CONNECT"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, b"Host header"),
        (b"GET / HTTP/1.1\r\nHost: app.localhost:8o\r\n\r\n", 400, b"not a host name"),
        (get("nobody.localhost"), 404, b"No tunnel is serving nobody.localhost"),
        (
            b"GET / HTTP/1.1\r\nHost: app.localhost\r\n" + b"x-a: 1\r\n" * 101 + b"\r\n",
            431,
            b"more than 100 headers",
        ),
        (
            b"GET http://other.localhost/ HTTP/1.1\r\nHost: app.localhost\r\n\r\n",
            400,
            b"another host",
        ),
    ],
)
async def test_requests_the_edge_cannot_forward_get_its_page_and_the_connection_closes(
    edge: Edge, agent: FakeAgent, request_bytes: bytes, status: int, words: bytes
) -> None:
    _, transport = visit(edge, request_bytes)
    response, body = read_response(transport.written)
    assert response.status_code == status
    assert words in body
    assert header(response, b"x-burrow-error") == b"1"
    assert header(response, b"x-request-id")
    assert header(response, b"connection") == b"close"
    assert transport.closed
    assert not agent.requests  # nothing reached the agent


async def test_a_tls_connection_for_another_name_is_misdirected(
    edge: Edge, agent: FakeAgent
) -> None:
    visitor, transport = visitor_on(lambda: HttpVisitor(edge.context, "https"))
    assert isinstance(visitor, HttpVisitor)
    # The SNI the handshake named, read at connection_made in real life.
    visitor.stage.server_name = "other.localhost"
    visitor.data_received(get("app.localhost"))
    response, body = read_response(transport.written)
    assert response.status_code == 421
    assert b"made for other.localhost" in body


async def test_a_request_the_stage_admits_reaches_the_agent_with_forwarded_headers(
    edge: Edge, agent: FakeAgent
) -> None:
    _, transport = visit(edge, get("app.localhost", "/x"))
    await agent.flow()
    (stream_id, request), *_ = agent.requests.items()
    assert request.startswith(b"GET /x HTTP/1.1\r\n")
    assert b"x-forwarded-for: 203.0.113.7" in request.lower()
    assert b"x-request-id: " in request.lower()
    await agent.respond(stream_id, OK)
    response, body = read_response(transport.written)
    assert (response.status_code, body) == (200, b"ok")
    assert not transport.closed


# -- filters ---------------------------------------------------------------------------------


class Answering(RequestFilter):
    def on_head(self, request: FilterRequest) -> EdgeAnswer | None:
        if request.target == b"/teapot":
            return EdgeAnswer(418, "", body=b"short and stout", keep=True, reason="teapot")
        return None


class Rewriting(RequestFilter):
    def on_head(self, request: FilterRequest) -> EdgeAnswer | None:
        request.headers = [*request.headers, (b"x-filtered", request.host.encode())]
        return None

    def on_response(self, request: FilterRequest, head: ResponseHead) -> None:
        head.headers.append((b"x-seen-by", b"rewriting"))


class AppendingInPlace(RequestFilter):
    def on_head(self, request: FilterRequest) -> EdgeAnswer | None:
        request.headers.append((b"x-checked", b"1"))
        return None


class BodyLimit(RequestFilter):
    def on_body(self, request: FilterRequest, data: bytes, end: bool) -> EdgeAnswer | None:
        if b"forbidden" in data:
            return EdgeAnswer(413, "The body carries a forbidden word.", reason="body_word")
        return None


async def test_a_filter_may_answer_and_the_connection_goes_on(edge: Edge, agent: FakeAgent) -> None:
    agent.session.request_filters = (Answering(),)
    visitor, transport = visit(edge, get("app.localhost", "/teapot"))
    response, body = read_response(transport.take())
    assert (response.status_code, body) == (418, b"short and stout")
    assert not transport.closed
    assert not agent.requests
    assert edge.metrics.refusals["teapot"] == 1
    # The next request on the same connection passes the filter and is forwarded.
    visitor.data_received(get("app.localhost", "/coffee"))
    await agent.flow()
    assert [bytes(r).split(b"\r\n")[0] for r in agent.requests.values()] == [
        b"GET /coffee HTTP/1.1"
    ]


async def test_a_filter_may_rewrite_the_request_head_and_the_response_head(
    edge: Edge, agent: FakeAgent
) -> None:
    agent.session.request_filters = (Rewriting(),)
    _, transport = visit(edge, get("app.localhost"))
    await agent.flow()
    (stream_id, request), *_ = agent.requests.items()
    assert b"x-filtered: app.localhost\r\n" in request
    await agent.respond(stream_id, OK)
    response, _ = read_response(transport.written)
    assert header(response, b"x-seen-by") == b"rewriting"


async def test_a_header_a_filter_appends_in_place_is_forwarded(
    edge: Edge, agent: FakeAgent
) -> None:
    agent.session.request_filters = (AppendingInPlace(),)
    visit(edge, get("app.localhost"))
    await agent.flow()
    (_, request), *_ = agent.requests.items()
    assert b"x-checked: 1\r\n" in request


async def test_a_filter_may_refuse_a_body_as_it_streams(edge: Edge, agent: FakeAgent) -> None:
    agent.session.request_filters = (BodyLimit(),)
    head = b"POST / HTTP/1.1\r\nHost: app.localhost\r\ncontent-length: 20\r\n\r\n"
    visitor, transport = visit(edge, head + b"fine ")
    visitor.data_received(b"forbidden words")
    response, body = read_response(transport.written)
    assert response.status_code == 413
    assert b"forbidden word" in body
    assert transport.closed
    await agent.flow()
    assert all(b"forbidden" not in bytes(r) for r in agent.requests.values())


async def test_the_visitor_policy_is_the_first_filter(edge: Edge, agent: FakeAgent) -> None:
    policy = VisitorPolicy(ip_deny=["203.0.113.0/24"])
    agent.session.request_filters, agent.session.connect_filters = filters_for(policy)
    _, transport = visit(edge, get("app.localhost"))
    response, body = read_response(transport.written)
    assert response.status_code == 403
    assert b"not allowed" in body
    assert not transport.closed  # a refusal by policy keeps the connection
    assert edge.metrics.refusals["ip_denied"] == 1


async def test_basic_auth_refusal_carries_the_challenge(edge: Edge, agent: FakeAgent) -> None:
    from contracts.basic_auth import hash_basic_password

    policy = VisitorPolicy(basic_auth=[hash_basic_password("ann", "pw", b"salt")])
    agent.session.request_filters, agent.session.connect_filters = filters_for(policy)
    _, transport = visit(edge, get("app.localhost"))
    response, _ = read_response(transport.written)
    assert response.status_code == 401
    assert header(response, b"www-authenticate") == b'Basic realm="app.localhost", charset="UTF-8"'


async def test_a_tunnel_without_filters_has_an_empty_tuple() -> None:
    # What keeps the fast path one truth test: no policy, no filter objects at all.
    from edge.visitors.visitor_policy import OPEN

    assert filters_for(OPEN) == ((), ())


# -- special paths ---------------------------------------------------------------------------


async def test_an_acme_responder_answers_before_routing_and_policy(
    edge: Edge, agent: FakeAgent
) -> None:
    def responder(request: FilterRequest) -> EdgeAnswer | None:
        token = request.target[len(ACME_CHALLENGE) :]
        return EdgeAnswer(200, "", body=token + b".thumbprint", keep=True)

    edge.context.special_paths.add(ACME_CHALLENGE, responder)
    policy = VisitorPolicy(ip_deny=["0.0.0.0/0"])
    agent.session.request_filters, _ = filters_for(policy)
    for host in ("app.localhost", "not-bound-yet.example.com"):
        _, transport = visit(edge, get(host, "/.well-known/acme-challenge/tok1"))
        response, body = read_response(transport.written)
        assert (response.status_code, body) == (200, b"tok1.thumbprint")
    edge.context.special_paths.remove(ACME_CHALLENGE)
    _, transport = visit(edge, get("app.localhost", "/.well-known/acme-challenge/tok1"))
    assert read_response(transport.written)[0].status_code == 403


async def test_every_edge_answers_the_http01_challenges_control_sent_it(
    edge: Edge, agent: FakeAgent
) -> None:
    agent.session.request_filters, _ = filters_for(VisitorPolicy(ip_deny=["0.0.0.0/0"]))
    edge.acme_http01["tok2"] = "tok2.thumb"
    _, transport = visit(edge, get("app.localhost", "/.well-known/acme-challenge/tok2"))
    response, body = read_response(transport.written)
    assert (response.status_code, body) == (200, b"tok2.thumb")
    assert header(response, b"content-type") == b"text/plain"
    # A token the edge was not given is routed, and the tunnel's policy applies.
    _, transport = visit(edge, get("app.localhost", "/.well-known/acme-challenge/other"))
    assert read_response(transport.written)[0].status_code == 403


async def test_the_link_path_without_a_websocket_upgrade_is_an_ordinary_request(
    edge: Edge, agent: FakeAgent
) -> None:
    _, transport = visit(edge, get("app.localhost", "/_burrow/link"))
    await agent.flow()
    assert [bytes(r).split(b"\r\n")[0] for r in agent.requests.values()] == [
        b"GET /_burrow/link HTTP/1.1"
    ]
    assert not transport.written
