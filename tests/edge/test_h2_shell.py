"""The HTTP/2 shell on a fake transport: the same request stage as HTTP/1.1 (pages, filters,
special paths), each answer on its own stream while the connection goes on."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events

from edge.pipeline import ACME_CHALLENGE, EdgeAnswer, FilterRequest, RequestFilter, filters_for
from edge.server import Edge
from edge.visitors.h2_visitor import H2Visitor
from edge.visitors.visitor_policy import VisitorPolicy
from tests.edge.harness import FakeAgent, FakeTransport, visitor_on

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class Client:
    """An h2 client whose bytes go straight into an ``H2Visitor``."""

    def __init__(self, edge: Edge) -> None:
        visitor, self.transport = visitor_on(lambda: H2Visitor(edge.context))
        assert isinstance(visitor, H2Visitor)
        self.visitor = visitor
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.responses: dict[int, dict[bytes, bytes]] = {}
        self.bodies: dict[int, bytes] = {}
        self.ended: set[int] = set()
        self.exchange()

    def exchange(self) -> None:
        self.visitor.data_received(self.conn.data_to_send())
        transport: FakeTransport = self.transport
        for event in self.conn.receive_data(transport.take()):
            if isinstance(event, h2.events.ResponseReceived):
                self.responses[event.stream_id] = dict(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, h2.events.DataReceived):
                self.bodies[event.stream_id] = self.bodies.get(event.stream_id, b"") + event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if getattr(event, "stream_ended", None) is not None:
                self.ended.add(event.stream_id)
        if self.conn.data_to_send():
            self.exchange()

    def get(self, authority: str, path: str = "/", end: bool = True) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream_id,
            [(":method", "GET"), (":scheme", "http"), (":authority", authority), (":path", path)],
            end_stream=end,
        )
        self.exchange()
        return stream_id


async def test_pages_of_the_edge_go_on_their_stream_and_the_connection_goes_on(
    edge: Edge, agent: FakeAgent
) -> None:
    client = Client(edge)
    unknown = client.get("nobody.localhost")
    bad = client.get("app.localhost:8o")
    assert client.responses[unknown][b":status"] == b"404"
    assert b"No tunnel is serving nobody.localhost" in client.bodies[unknown]
    assert client.responses[bad][b":status"] == b"400"
    assert client.responses[bad][b"x-burrow-error"] == b"1"
    assert {unknown, bad} <= client.ended
    assert not client.transport.closed
    await agent.flow()
    assert not agent.requests


async def test_a_request_is_forwarded_and_its_filters_see_both_heads(
    edge: Edge, agent: FakeAgent
) -> None:
    class Tagging(RequestFilter):
        def on_head(self, request: FilterRequest) -> EdgeAnswer | None:
            request.headers = [*request.headers, (b"x-tag", b"h2")]
            return None

        def on_response(self, request: FilterRequest, head: object) -> None:
            head.headers.append((b"x-seen", b"yes"))  # type: ignore[attr-defined]

    agent.session.request_filters = (Tagging(),)
    client = Client(edge)
    stream = client.get("app.localhost", "/h")
    await agent.flow()
    (agent_stream, request), *_ = agent.requests.items()
    assert request.startswith(b"GET /h HTTP/1.1\r\n")
    assert b"x-tag: h2\r\n" in request
    await agent.respond(agent_stream, OK)
    client.exchange()
    assert client.responses[stream][b":status"] == b"200"
    assert client.responses[stream][b"x-seen"] == b"yes"
    assert client.bodies[stream] == b"ok"


async def test_a_policy_refusal_is_a_page_on_the_stream(edge: Edge, agent: FakeAgent) -> None:
    agent.session.request_filters, _ = filters_for(VisitorPolicy(ip_deny=["203.0.113.0/24"]))
    client = Client(edge)
    stream = client.get("app.localhost")
    assert client.responses[stream][b":status"] == b"403"
    assert edge.metrics.refusals["ip_denied"] == 1


async def test_special_paths_are_served_for_http2_too(edge: Edge, agent: FakeAgent) -> None:
    edge.context.special_paths.add(
        ACME_CHALLENGE, lambda request: EdgeAnswer(200, "", body=b"key-authorization", keep=True)
    )
    client = Client(edge)
    stream = client.get("elsewhere.example.com", "/.well-known/acme-challenge/abc")
    assert client.responses[stream][b":status"] == b"200"
    assert client.bodies[stream] == b"key-authorization"
    link = client.get("app.localhost", "/_burrow/link")
    await agent.flow()
    assert agent.requests  # no upgrade asked: an ordinary request to the tunnel
    assert link not in client.responses
