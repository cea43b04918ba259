"""Visitor side: requests parsed from bytes, on every implementation."""

from __future__ import annotations

import time

import pytest

from edge.http1 import VisitorConnection
from edge.http1.events import ResponseHead
from tests.http1.support import (
    Impl,
    merged,
    norm,
    parse_error,
    pull,
    serve,
    split_at,
)

GET = b"GET /index.html?q=1 HTTP/1.1\r\nHost: app.example\r\nAccept: */*\r\n\r\n"
POST = (
    b"POST /upload HTTP/1.1\r\nHost: app.example\r\nContent-Length: 11\r\n"
    b"Content-Type: text/plain\r\n\r\nhello world"
)
CHUNKED = (
    b"POST /stream HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n"
    b"Trailer: x-checksum\r\n\r\n"
    b"5;name=value\r\nhello\r\n"
    b"1;flag\r\n \r\n"
    b"A\r\n0123456789\r\n"
    b"0;last=yes\r\nX-Checksum: abc123\r\nX-Other:  two \r\n\r\n"
)
UPGRADE = (
    b"GET /chat HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade\r\n"
    b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
SWITCHING = ResponseHead(
    101, [(b"upgrade", b"websocket"), (b"connection", b"upgrade")], b"Switching Protocols"
)
OK = ResponseHead(200, [(b"content-length", b"2")], b"OK")


def respond(conn: VisitorConnection, head: ResponseHead = OK, data: bytes = b"ok") -> bytes:
    return conn.send_response(head) + conn.send_data(data) + conn.send_end()


def _feed(impl: Impl, pieces: list[bytes]) -> list[tuple[object, ...]]:
    """Events of one fresh visitor connection fed ``pieces``, no response sent."""
    conn = impl.visitor()
    events = []
    for piece in pieces:
        conn.receive_data(piece)
        events += pull(conn)
    return events


def test_simple_get(impl: Impl) -> None:
    conn = impl.visitor()
    conn.receive_data(GET)
    events = pull(conn)
    assert events[:2] == [
        (
            "request",
            b"GET",
            b"/index.html?q=1",
            ((b"host", b"app.example"), (b"accept", b"*/*")),
            b"1.1",
        ),
        ("end", ()),
    ]
    # Nothing is pipelined: either sentinel means "nothing to do until we respond".
    assert events[2][0] in ("need_data", "paused")
    assert not conn.waiting_for_continue


def test_head_request_has_no_body(impl: Impl) -> None:
    conn = impl.visitor()
    conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    events = merged(pull(conn))
    assert events == [("request", b"HEAD", b"/", ((b"host", b"a"),), b"1.1"), ("end", ())]


def test_post_with_content_length(impl: Impl) -> None:
    conn = impl.visitor()
    conn.receive_data(POST)
    events = merged(pull(conn))
    assert events[1:] == [("data", b"hello world"), ("end", ())]
    assert events[0][1] == b"POST"


def test_post_split_at_every_byte_boundary(impl: Impl) -> None:
    expected = merged(_feed(impl, [POST]))
    assert expected[1:] == [("data", b"hello world"), ("end", ())]
    for cut in range(1, len(POST)):
        assert merged(_feed(impl, [POST[:cut], POST[cut:]])) == expected, cut


def test_post_byte_by_byte(impl: Impl) -> None:
    pieces = [POST[i : i + 1] for i in range(len(POST))]
    assert merged(_feed(impl, pieces)) == merged(_feed(impl, [POST]))


def test_chunked_body_with_extensions_and_trailers(impl: Impl) -> None:
    events = merged(_feed(impl, [CHUNKED]))
    assert events[1:] == [
        ("data", b"hello 0123456789"),
        ("end", ((b"x-checksum", b"abc123"), (b"x-other", b"two"))),
    ]


def test_chunked_split_at_every_byte_boundary(impl: Impl) -> None:
    expected = merged(_feed(impl, [CHUNKED]))
    for cut in range(1, len(CHUNKED)):
        assert merged(_feed(impl, [CHUNKED[:cut], CHUNKED[cut:]])) == expected, cut
    pieces = [CHUNKED[i : i + 1] for i in range(len(CHUNKED))]
    assert merged(_feed(impl, pieces)) == expected


def test_pipelined_request_waits_for_next_cycle(impl: Impl) -> None:
    second = b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n"
    conn = impl.visitor()
    conn.receive_data(POST + second)
    events = pull(conn)
    assert merged(events)[1:] == [("data", b"hello world"), ("end", ())]
    assert events[-1] == ("paused",)
    assert pull(conn) == [("paused",)]  # still paused
    assert conn.buffered == len(second)
    respond(conn)
    assert conn.start_next_cycle()
    events = merged(pull(conn))
    assert events == [("request", b"GET", b"/two", ((b"host", b"a"),), b"1.1"), ("end", ())]


def test_pipelined_requests_in_any_split(impl: Impl) -> None:
    wire = GET + POST + CHUNKED
    whole = serve(impl.visitor(), [wire])
    kinds = [e[0] for e in merged(whole)]
    assert kinds == ["request", "end", "request", "data", "end", "request", "data", "end", "closed"]
    for cut in range(1, len(wire), 5):
        assert merged(serve(impl.visitor(), split_at(wire, [cut, cut + 3]))) == merged(whole)


def test_expect_100_continue_cleared_by_informational(impl: Impl) -> None:
    conn = impl.visitor()
    conn.receive_data(
        b"PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    )
    assert pull(conn)[-1] == ("need_data",)
    assert conn.waiting_for_continue
    wire = conn.send_informational(ResponseHead(100, [], b"Continue"))
    assert wire.startswith(b"HTTP/1.1 100 ")
    assert wire.endswith(b"\r\n\r\n")
    assert not conn.waiting_for_continue
    conn.receive_data(b"abc")
    assert merged(pull(conn)) == [("data", b"abc"), ("end", ())]


def test_expect_100_continue_cleared_by_body(impl: Impl) -> None:
    conn = impl.visitor()
    conn.receive_data(
        b"PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    )
    pull(conn)
    assert conn.waiting_for_continue
    conn.receive_data(b"a")  # the visitor gave up waiting and sent the body
    assert pull(conn)[0] == ("data", b"a")
    assert not conn.waiting_for_continue


def test_http10_request_closes_after_response(impl: Impl) -> None:
    conn = impl.visitor()
    conn.receive_data(b"GET /old HTTP/1.0\r\n\r\n")  # HTTP/1.0 needs no Host
    events = merged(pull(conn))
    assert events == [("request", b"GET", b"/old", (), b"1.0"), ("end", ())]
    wire = respond(conn)
    assert not conn.start_next_cycle()
    assert wire.endswith(b"\r\n\r\nok")


@pytest.mark.parametrize("value", [b"close", b"Close", b"keep-alive, close"])
def test_connection_close_is_honoured(impl: Impl, value: bytes) -> None:
    conn = impl.visitor()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: " + value + b"\r\n\r\n")
    pull(conn)
    wire = respond(conn)
    assert not conn.start_next_cycle()
    assert b"connection: close" in wire.lower()


def test_upgrade_hands_over_the_bytes_after_the_head(impl: Impl) -> None:
    frames = b"\x81\x05hello\x88\x00GET / HTTP/1.1\r\n\r\n"
    conn = impl.visitor()
    conn.receive_data(UPGRADE + frames)
    events = pull(conn)
    assert events[0][0] == "request"
    assert events[1:] == [("end", ()), ("paused",)]  # the frames are not parsed as HTTP
    wire = conn.send_informational(SWITCHING)
    assert wire.startswith(b"HTTP/1.1 101 ")
    assert b"upgrade: websocket" in wire.lower()
    assert conn.trailing_data == frames
    assert pull(conn) == [("paused",)]


@pytest.mark.parametrize("cut", [len(UPGRADE) - 1, len(UPGRADE), len(UPGRADE) + 3])
def test_upgrade_trailing_data_whatever_the_split(impl: Impl, cut: int) -> None:
    wire = UPGRADE + b"raw bytes, not HTTP"
    conn = impl.visitor()
    conn.receive_data(wire[:cut])
    pull(conn)
    conn.receive_data(wire[cut:])
    pull(conn)
    conn.send_informational(SWITCHING)
    assert conn.trailing_data == b"raw bytes, not HTTP"


def test_header_names_lowercased_values_stripped(impl: Impl) -> None:
    conn = impl.visitor()
    conn.receive_data(
        b"GET / HTTP/1.1\r\nHOST:  App.Example \r\nX-Mixed-Case:\t v a l \t\r\n"
        b"X-Empty:\r\nX-High: caf\xc3\xa9\r\n\r\n"
    )
    head = pull(conn)[0]
    assert head[3] == (
        (b"host", b"App.Example"),
        (b"x-mixed-case", b"v a l"),
        (b"x-empty", b""),
        (b"x-high", b"caf\xc3\xa9"),
    )


def test_repeated_headers_keep_their_order(impl: Impl) -> None:
    conn = impl.visitor()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\nX: 1\r\nCookie: b=2\r\n\r\n")
    assert pull(conn)[0][3] == (
        (b"host", b"a"),
        (b"cookie", b"a=1"),
        (b"x", b"1"),
        (b"cookie", b"b=2"),
    )


@pytest.mark.parametrize("cut", [0, 5, len(GET) - 1])
def test_eof_mid_head_is_a_parse_error(impl: Impl, cut: int) -> None:
    conn = impl.visitor()
    if cut:
        exc = parse_error(conn, GET[:cut], eof=True)
        assert exc.status == 400
    else:
        conn.receive_data(b"")
        assert pull(conn) == [("closed",)]


def test_eof_between_requests_is_connection_closed(impl: Impl) -> None:
    conn = impl.visitor()
    conn.receive_data(GET)
    pull(conn)
    respond(conn)
    assert conn.start_next_cycle()
    conn.receive_data(b"")
    assert pull(conn) == [("closed",)]
    assert pull(conn) == [("closed",)]  # and stays closed


def test_body_cut_short_by_eof_is_a_parse_error(impl: Impl) -> None:
    exc = parse_error(impl.visitor(), POST[:-3], eof=True)
    assert exc.status == 400


def test_head_trickled_in_tiny_pieces_costs_linear_time(impl: Impl) -> None:
    """STYLE.md: linear-time buffers. A visitor sending its head a couple of bytes per
    segment must not make the edge burn CPU quadratically in the head size. (native once
    re-searched the whole buffered head on every call: ~1 s for this head.)"""
    size = 16 * 1024
    wire = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"a" * (size - 64) + b"\r\n\r\n"
    conn = impl.visitor(size)
    started = time.perf_counter()
    for i in range(0, len(wire), 2):
        conn.receive_data(wire[i : i + 2])
        event = conn.next_event()
    elapsed = time.perf_counter() - started
    assert norm(event)[0] == "request"
    # Linear parsers take ~0.03 s here; the bound leaves a 10x margin for a slow machine.
    assert elapsed < 0.25, f"{elapsed:.2f} s to parse a {size}-byte head in 2-byte pieces"
