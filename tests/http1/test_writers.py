"""Writers: what each side puts on the wire, read back by the other side's parser of the
same implementation (visitor writer -> origin parser, origin writer -> visitor parser)."""

from __future__ import annotations

import pytest

from edge.http1 import OriginConnection, VisitorConnection
from edge.http1.events import Headers, RequestHead, ResponseHead
from tests.http1.support import (
    Impl,
    head_fields,
    header,
    merged,
    pull,
    split_head_body,
)


def visitor_with(impl: Impl, request: bytes) -> VisitorConnection:
    conn = impl.visitor()
    conn.receive_data(request)
    events = pull(conn)
    assert events[-2] == ("end", ()), events
    return conn


def read_back(impl: Impl, wire: bytes, method: bytes = b"GET") -> tuple[list, OriginConnection]:
    """Parse a visitor's response bytes with the same implementation's origin parser."""
    origin = impl.origin()
    origin.send_request(RequestHead(method, b"/", [(b"host", b"a")]))
    origin.send_end()
    origin.receive_data(wire)
    return merged(pull(origin)), origin


GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def test_response_with_content_length(impl: Impl) -> None:
    conn = visitor_with(impl, GET)
    wire = conn.send_response(ResponseHead(200, [(b"content-length", b"11")], b"OK"))
    assert wire.startswith(b"HTTP/1.1 200 OK\r\n")
    wire += conn.send_data(b"hello ") + conn.send_data(b"world") + conn.send_end()
    assert split_head_body(wire)[1] == b"hello world"
    events, origin = read_back(impl, wire)
    assert events == [
        ("response", 200, ((b"content-length", b"11"),), b"OK"),
        ("data", b"hello world"),
        ("end", ()),
    ]
    assert conn.start_next_cycle()
    assert origin.start_next_cycle()


def test_chunked_response_with_trailers(impl: Impl) -> None:
    conn = visitor_with(impl, GET)
    wire = conn.send_response(ResponseHead(200, [(b"transfer-encoding", b"chunked")]))
    wire += conn.send_data(b"abc") + conn.send_data(b"") + conn.send_data(b"defgh")
    wire += conn.send_end([(b"x-digest", b"sha-256=xyz")])
    assert wire.endswith(b"0\r\nx-digest: sha-256=xyz\r\n\r\n")
    events, _ = read_back(impl, wire)
    assert events[1:] == [("data", b"abcdefgh"), ("end", ((b"x-digest", b"sha-256=xyz"),))]
    assert conn.start_next_cycle()


def test_unknown_length_is_chunked_for_http11_visitor(impl: Impl) -> None:
    conn = visitor_with(impl, GET)
    wire = conn.send_response(ResponseHead(200, [(b"content-type", b"text/event-stream")]))
    assert header(head_fields(wire), b"transfer-encoding") == [b"chunked"]
    wire += conn.send_data(b"data: 1\n\n") + conn.send_data(b"data: 2\n\n") + conn.send_end()
    events, origin = read_back(impl, wire)
    assert events[1:] == [("data", b"data: 1\n\ndata: 2\n\n"), ("end", ())]
    # Chunking, not closing, delimits the body: the connection stays usable.
    assert conn.start_next_cycle()
    assert origin.start_next_cycle()


def test_unknown_length_is_close_delimited_for_http10_visitor(impl: Impl) -> None:
    conn = visitor_with(impl, b"GET / HTTP/1.0\r\n\r\n")
    wire = conn.send_response(ResponseHead(200, [(b"content-type", b"text/plain")]))
    wire += conn.send_data(b"hello") + conn.send_end()
    assert header(head_fields(wire), b"transfer-encoding") == []
    assert split_head_body(wire)[1] == b"hello"
    assert not conn.start_next_cycle()


def test_chunked_response_drops_content_length(impl: Impl) -> None:
    """An origin may send both (the origin parser lets TE win); relaying both to the visitor
    is the response-splitting shape RFC 9112 6.3 tells an intermediary to remove."""
    conn = visitor_with(impl, GET)
    head = ResponseHead(200, [(b"content-length", b"3"), (b"transfer-encoding", b"chunked")])
    wire = conn.send_response(head) + conn.send_data(b"abcdef") + conn.send_end()
    assert header(head_fields(wire), b"content-length") == []
    assert split_head_body(wire)[1] == b"6\r\nabcdef\r\n0\r\n\r\n"


def test_head_response_writes_no_body(impl: Impl) -> None:
    conn = visitor_with(impl, b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    wire = conn.send_response(ResponseHead(200, [(b"content-length", b"5")]))
    assert wire.endswith(b"\r\n\r\n")
    assert header(head_fields(wire), b"content-length") == [b"5"]
    assert conn.send_end() == b""
    events, origin = read_back(impl, wire, method=b"HEAD")
    assert events == [("response", 200, ((b"content-length", b"5"),), b""), ("end", ())]
    assert conn.start_next_cycle()
    assert origin.start_next_cycle()


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_writes_no_body(impl: Impl, status: int) -> None:
    conn = visitor_with(impl, GET)
    wire = conn.send_response(ResponseHead(status, [(b"etag", b'"v1"')])) + conn.send_end()
    assert wire.endswith(b"\r\n\r\n")
    assert header(head_fields(wire), b"transfer-encoding") == []
    events, _ = read_back(impl, wire)
    assert events == [("response", status, ((b"etag", b'"v1"'),), b""), ("end", ())]
    assert conn.start_next_cycle()


def test_informational_then_final_round_trip(impl: Impl) -> None:
    conn = visitor_with(impl, GET)
    wire = conn.send_informational(ResponseHead(103, [(b"link", b"</a.css>; rel=preload")]))
    wire += conn.send_response(ResponseHead(200, [(b"content-length", b"0")]))
    wire += conn.send_end()
    events, _ = read_back(impl, wire)
    assert [e[:2] for e in events] == [("response", 103), ("response", 200), ("end", ())]


def test_switching_protocols_round_trip(impl: Impl) -> None:
    """Origin writer -> visitor parser for an upgrade, then visitor writer -> origin parser
    for the 101: both sides hand over the bytes that follow."""
    origin = impl.origin()
    request = RequestHead(
        b"GET",
        b"/ws",
        [(b"host", b"a"), (b"connection", b"Upgrade"), (b"upgrade", b"websocket")],
    )
    wire = origin.send_request(request) + origin.send_end()
    visitor = impl.visitor()
    visitor.receive_data(wire + b"client-frames")
    events = pull(visitor)
    assert events[1:] == [("end", ()), ("paused",)]
    assert header(events[0][3], b"upgrade") == [b"websocket"]  # type: ignore[arg-type]
    back = visitor.send_informational(
        ResponseHead(101, [(b"upgrade", b"websocket"), (b"connection", b"upgrade")])
    )
    assert visitor.trailing_data == b"client-frames"
    origin.receive_data(back + b"server-frames")
    assert [e[:2] for e in pull(origin)] == [("response", 101), ("paused",)]
    assert origin.trailing_data == b"server-frames"


REQUESTS: dict[str, tuple[RequestHead, list[bytes], Headers]] = {
    "no-body": (RequestHead(b"DELETE", b"/item/7", [(b"host", b"a")]), [], []),
    "content-length": (
        RequestHead(b"POST", b"/f", [(b"host", b"a"), (b"content-length", b"9")]),
        [b"abc", b"def", b"ghi"],
        [],
    ),
    "chunked-trailers": (
        RequestHead(b"PUT", b"/f?x=1", [(b"host", b"a"), (b"transfer-encoding", b"chunked")]),
        [b"abc", b"", b"defghijklmnopq"],
        [(b"x-sum", b"42")],
    ),
}


@pytest.mark.parametrize("request_", REQUESTS.values(), ids=REQUESTS.keys())
def test_request_round_trip(impl: Impl, request_: tuple[RequestHead, list[bytes], Headers]) -> None:
    head, chunks, trailers = request_
    origin = impl.origin()
    wire = origin.send_request(head)
    assert wire.startswith(head.method + b" " + head.target + b" HTTP/1.1\r\n")
    for chunk in chunks:
        wire += origin.send_data(chunk)
    wire += origin.send_end(trailers or None)
    visitor = impl.visitor()
    visitor.receive_data(wire)
    events = merged(pull(visitor))
    assert events[0] == ("request", head.method, head.target, tuple(head.headers), b"1.1")
    if chunks:
        assert events[1] == ("data", b"".join(chunks))
    assert events[-1] == ("end", tuple(trailers))


def test_hop_by_hop_headers(impl: Impl) -> None:
    """RFC 9110 7.6.1: Connection, the fields it names and Keep-Alive belong to one hop.
    native drops them from what it writes (each side frames its own connection), and so does
    httptools, which writes with native's code (edge.http1.framing); h11 writes what it is
    given, and honours a ``connection: close`` it was given."""
    strips = impl.name in ("native", "httptools")
    headers = [
        (b"connection", b"keep-alive, x-hop"),
        (b"keep-alive", b"timeout=5"),
        (b"x-hop", b"1"),
        (b"proxy-connection", b"keep-alive"),
        (b"x-end-to-end", b"2"),
        (b"content-length", b"0"),
    ]
    conn = visitor_with(impl, GET)
    fields = head_fields(conn.send_response(ResponseHead(200, headers)) + conn.send_end())
    origin = impl.origin()
    request_fields = head_fields(
        origin.send_request(RequestHead(b"GET", b"/", [(b"host", b"a"), *headers]))
    )
    if strips:
        assert fields == [(b"x-end-to-end", b"2"), (b"content-length", b"0")]
        assert request_fields == [
            (b"host", b"a"),
            (b"x-end-to-end", b"2"),
            (b"content-length", b"0"),
        ]
    else:
        assert fields == headers
        assert request_fields == [(b"host", b"a"), *headers]
    assert conn.start_next_cycle()

    conn = visitor_with(impl, GET)
    wire = conn.send_response(
        ResponseHead(200, [(b"connection", b"close"), (b"content-length", b"0")])
    )
    conn.send_end()
    if strips:
        # The relayed head is the origin's: its "close" is about the origin connection.
        assert header(head_fields(wire), b"connection") == []
        assert conn.start_next_cycle()
    else:
        assert header(head_fields(wire), b"connection") == [b"close"]
        assert not conn.start_next_cycle()


def test_early_response_closes_when_body_unread(impl: Impl) -> None:
    """Answering before the request body is read (an early 413): the unread body makes the
    connection unusable for another request."""
    conn = impl.visitor()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
    pull(conn)
    wire = conn.send_response(ResponseHead(413, [(b"content-length", b"0")])) + conn.send_end()
    assert not conn.start_next_cycle()
    events, _ = read_back(impl, wire)
    assert [e[:2] for e in events] == [("response", 413), ("end", ())]


_RELAYED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Trace:  a b \r\nContent-Length: 2\r\n\r\n"
)


def _relayed_head(impl: Impl, request: bytes, response: bytes) -> bytes:
    """A response head read by the origin parser and written by the visitor writer, as the
    edge relays one."""
    visitor = visitor_with(impl, request)
    origin = impl.origin()
    origin.send_request(RequestHead(b"GET", b"/", [(b"host", b"a")]))
    origin.send_end()
    origin.receive_data(response)
    head = origin.next_event()
    assert isinstance(head, ResponseHead)
    return visitor.send_response(head)


def test_a_plain_response_head_is_relayed_as_read(impl: Impl) -> None:
    wire = _relayed_head(impl, GET, _RELAYED + b"hi")
    expected = [(b"content-type", b"text/plain"), (b"x-trace", b"a b"), (b"content-length", b"2")]
    assert head_fields(wire) == expected
    if impl.native:
        # The lines as they came, names in their own case: nothing to strip or add.
        assert wire == _RELAYED


@pytest.mark.parametrize(
    ("request_bytes", "response", "connection", "h11_connection"),
    [
        # A hop-by-hop field is not relayed (h11 sends its own keep-alive back).
        (
            GET,
            _RELAYED.replace(b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n"),
            [],
            [b"keep-alive"],
        ),
        # The visitor asked to close: the writer says so.
        (
            GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"),
            _RELAYED,
            [b"close"],
            [b"close"],
        ),
        # An HTTP/1.0 visitor that keeps the connection is told it stays open (h11 closes).
        (
            b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
            _RELAYED,
            [b"keep-alive"],
            [b"close"],
        ),
    ],
)
def test_a_relayed_head_is_rewritten_when_its_connection_fields_change(
    impl: Impl,
    request_bytes: bytes,
    response: bytes,
    connection: list[bytes],
    h11_connection: list[bytes],
) -> None:
    wire = _relayed_head(impl, request_bytes, response + b"hi")
    expected = h11_connection if impl.name == "h11" else connection
    assert header(head_fields(wire), b"connection") == expected
    assert header(head_fields(wire), b"content-length") == [b"2"]
    assert header(head_fields(wire), b"x-trace") == [b"a b"]


@pytest.mark.parametrize("fields", [[], [(b"connection", b"keep-alive")]])
def test_close_after_response_says_so_and_ends_the_connection(impl: Impl, fields: Headers) -> None:
    """A draining edge answers the request in flight, then closes: the response must say
    ``connection: close``, or the visitor sends its next request into a closing socket."""
    conn = visitor_with(impl, GET)
    conn.close_after_response()
    wire = conn.send_response(ResponseHead(200, [*fields, (b"content-length", b"2")]))
    wire += conn.send_data(b"ok") + conn.send_end()
    assert header(head_fields(wire), b"connection") == [b"close"]
    assert not conn.start_next_cycle()
