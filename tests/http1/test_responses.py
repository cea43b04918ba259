"""Origin side: requests framed, responses from the tunnelled service parsed from bytes."""

from __future__ import annotations

import pytest

from edge.http1 import OriginConnection
from edge.http1.events import RequestHead
from tests.http1.support import Impl, fetch, merged, parse_error, pull, split_at

GET = RequestHead(b"GET", b"/", [(b"host", b"svc.local")])


def start(impl: Impl, request: RequestHead = GET) -> OriginConnection:
    conn = impl.origin()
    conn.send_request(request)
    conn.send_end()
    return conn


def events_for(conn: OriginConnection, wire: bytes, eof: bool = False) -> list[tuple[object, ...]]:
    conn.receive_data(wire)
    events = pull(conn)
    if eof:
        conn.receive_data(b"")
        events += pull(conn)
    return events


def test_content_length_response(impl: Impl) -> None:
    conn = start(impl)
    events = events_for(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhello")
    assert merged(events) == [
        ("response", 200, ((b"content-length", b"5"), (b"x-a", b"b")), b"OK"),
        ("data", b"hello"),
        ("end", ()),
    ]
    assert conn.start_next_cycle()


def test_chunked_response_with_trailers(impl: Impl) -> None:
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nServer-Timing: db;dur=53\r\n\r\n"
    )
    expected = [
        ("response", 200, ((b"transfer-encoding", b"chunked"),), b"OK"),
        ("data", b"wikipedia"),
        ("end", ((b"server-timing", b"db;dur=53"),)),
    ]
    assert merged(events_for(start(impl), wire)) == expected
    for cut in range(1, len(wire)):
        conn = start(impl)
        got = events_for(conn, wire[:cut]) + events_for(conn, wire[cut:])
        assert merged(got) == expected, cut
        assert conn.start_next_cycle()


def test_response_without_length_reads_until_close(impl: Impl) -> None:
    conn = start(impl)
    events = events_for(conn, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
    assert events[-1] == ("need_data",)
    events += events_for(conn, b"part two", eof=True)
    assert merged(events) == [
        ("response", 200, ((b"content-type", b"text/plain"),), b"OK"),
        ("data", b"part one, part two"),
        ("end", ()),
        ("closed",),
    ]
    assert not conn.start_next_cycle()


def test_head_response_has_no_body(impl: Impl) -> None:
    conn = start(impl, RequestHead(b"HEAD", b"/", [(b"host", b"svc.local")]))
    events = events_for(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
    assert merged(events) == [
        ("response", 200, ((b"content-length", b"1234"),), b"OK"),
        ("end", ()),
    ]
    assert conn.start_next_cycle()


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_has_no_body(impl: Impl, status: int) -> None:
    wire = b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\n" % status
    second = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    events = fetch(impl.origin(), [wire + second], requests=2)
    # The bytes after the head are the next response, not a body.
    assert [e[:2] for e in merged(events)] == [
        ("response", status),
        ("end", ()),
        ("response", 200),
        ("data", b"ok"),
        ("end", ()),
    ]


def test_informational_then_final(impl: Impl) -> None:
    conn = start(impl)
    wire = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nid"
    )
    assert merged(events_for(conn, wire)) == [
        ("response", 100, (), b"Continue"),
        ("response", 103, ((b"link", b"</s.css>; rel=preload"),), b"Early Hints"),
        ("response", 201, ((b"content-length", b"2"),), b"Created"),
        ("data", b"id"),
        ("end", ()),
    ]


def test_switching_protocols_hands_over_raw_bytes(impl: Impl) -> None:
    request = RequestHead(
        b"GET",
        b"/ws",
        [(b"host", b"svc.local"), (b"connection", b"upgrade"), (b"upgrade", b"websocket")],
    )
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    raw = b"\x81\x02hi\x81\x00HTTP/1.1 200 OK\r\n\r\n"
    for cut in (len(head) - 2, len(head), len(head) + 4):
        conn = impl.origin()
        wire = conn.send_request(request) + conn.send_end()
        assert b"upgrade: websocket" in wire.lower()
        events = events_for(conn, (head + raw)[:cut]) + events_for(conn, (head + raw)[cut:])
        assert [e[:2] for e in merged(events)] == [("response", 101)]
        assert events[-1] == ("paused",)
        assert conn.trailing_data == raw
        assert not conn.start_next_cycle()


def test_keep_alive_reuse(impl: Impl) -> None:
    conn = start(impl)
    assert merged(events_for(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"))[1:] == [
        ("data", b"a"),
        ("end", ()),
    ]
    assert conn.start_next_cycle()
    wire = conn.send_request(RequestHead(b"GET", b"/2", [(b"host", b"svc.local")]))
    assert wire.startswith(b"GET /2 HTTP/1.1\r\n")
    conn.send_end()
    assert merged(events_for(conn, b"HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nb")) == [
        ("response", 404, ((b"content-length", b"1"),), b"Not Found"),
        ("data", b"b"),
        ("end", ()),
    ]
    assert conn.start_next_cycle()


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
        b"HTTP/1.1 200 OK\r\nconnection: Keep-Alive, Close\r\nContent-Length: 1\r\n\r\na",
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na",
    ],
    ids=["close", "close-in-list", "http10"],
)
def test_closing_response_is_not_reused(impl: Impl, wire: bytes) -> None:
    conn = start(impl)
    assert merged(events_for(conn, wire))[1:] == [("data", b"a"), ("end", ())]
    assert not conn.start_next_cycle()


def test_early_response_before_request_body_is_sent(impl: Impl) -> None:
    conn = impl.origin()
    conn.send_request(
        RequestHead(b"POST", b"/upload", [(b"host", b"svc.local"), (b"content-length", b"10")])
    )
    assert conn.send_data(b"abc") == b"abc"
    wire = b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbig!"
    events = events_for(conn, wire)
    assert merged(events) == [
        (
            "response",
            413,
            ((b"connection", b"close"), (b"content-length", b"4")),
            b"Content Too Large",
        ),
        ("data", b"big!"),
        ("end", ()),
    ]
    assert not conn.start_next_cycle()


def test_response_split_anywhere_same_events(impl: Impl) -> None:
    wire = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ndef\r\n0\r\n\r\n"
        b"HTTP/1.1 500 Oops\r\n\r\nrest of the stream"
    )
    whole = fetch(impl.origin(), [wire], requests=3)
    assert [e[:2] for e in merged(whole)] == [
        ("response", 200),
        ("data", b"abc"),
        ("end", ()),
        ("response", 200),
        ("data", b"def"),
        ("end", ()),
        ("response", 500),
        ("data", b"rest of the stream"),
        ("end", ()),
    ]
    for cut in range(1, len(wire), 3):
        pieces = split_at(wire, [cut, cut + 2])
        assert merged(fetch(impl.origin(), pieces, requests=3)) == merged(whole)


RESPONSE_REFUSED: dict[str, bytes] = {
    "two-content-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "bad-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    "bad-status-line": b"HTTP/1.1 OK\r\n\r\n",
    "four-digit-status": b"HTTP/1.1 2000 OK\r\n\r\n",
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
    "space-before-colon": b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\na",
    "101-without-upgrade": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
    "eof-mid-body": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
    "eof-mid-head": b"HTTP/1.1 200 OK\r\nContent-Le",
    "eof-mid-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
}


@pytest.mark.parametrize("wire", RESPONSE_REFUSED.values(), ids=RESPONSE_REFUSED.keys())
def test_bad_response_is_a_parse_error(impl: Impl, wire: bytes) -> None:
    parse_error(start(impl), wire, eof=True)


@pytest.mark.parametrize("status", [b"000", b"099"])
def test_status_below_100_is_a_parse_error(impl: Impl, status: bytes) -> None:
    """RFC 9110 15: status codes are 100-599 by class; 0xx has no class a client can
    understand. Relayed, it reaches the visitor as ``HTTP/1.1 0 ...``."""
    wire = b"HTTP/1.1 " + status + b" Nope\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    parse_error(start(impl), wire, eof=True)
