"""Where native and h11 legitimately differ. Each test runs on both implementations and
says what each one does: native's strictness is the edge's default and is asserted as such;
h11's behaviour is pinned so that a change in either is noticed, not silently absorbed."""

from __future__ import annotations

import pytest

from edge.http1 import OriginConnection
from edge.http1.events import RequestHead, ResponseHead
from tests.http1.support import Impl, head_fields, header, merged, parse_error, pull

HOST = b"Host: a\r\n"

# native refuses (with this status); h11 parses the request.
NATIVE_REFUSES: dict[str, tuple[bytes, int]] = {
    # RFC 9112 6.1: MAY reject; if processed by TE alone the server MUST close afterwards,
    # which h11 does not do (start_next_cycle stays True), so with BURROW_HTTP1=h11 this
    # smuggling shape is served on a persistent connection.
    "content-length-with-transfer-encoding": (
        b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        400,
    ),
    # RFC 9112 6.1: chunked is HTTP/1.1; a 1.0 request claiming it is faulty framing.
    "http10-chunked": (
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "http20-request-line": (b"GET / HTTP/2.0\r\n" + HOST + b"\r\n", 505),
    # 19 digits: native caps a length at 18 digits, h11 at 20.
    "content-length-19-digits": (
        b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 1000000000000000000\r\n\r\n",
        400,
    ),
    # RFC 9112 5.2: reject with 400 or replace with SP; h11 replaces.
    "obsolete-line-folding": (b"GET / HTTP/1.1\r\n" + HOST + b"X-F: one\r\n two\r\n\r\n", 400),
}


@pytest.mark.parametrize(("wire", "status"), NATIVE_REFUSES.values(), ids=NATIVE_REFUSES.keys())
def test_native_refuses_what_h11_accepts(impl: Impl, wire: bytes, status: int) -> None:
    conn = impl.visitor()
    if impl.native:
        assert parse_error(conn, wire).status == status
    else:
        conn.receive_data(wire)
        assert pull(conn)[0][0] == "request"


def test_content_length_with_transfer_encoding_h11_keeps_connection(impl: Impl) -> None:
    wire, _ = NATIVE_REFUSES["content-length-with-transfer-encoding"]
    conn = impl.visitor()
    if impl.native:
        parse_error(conn, wire)
        return
    conn.receive_data(wire)
    assert merged(pull(conn))[1:] == [("end", ())]  # framed by Transfer-Encoding alone
    conn.send_response(ResponseHead(200, [(b"content-length", b"0")]))
    conn.send_end()
    assert conn.start_next_cycle()  # RFC 9112 6.1 says MUST close


def test_oversized_head_in_one_piece(impl: Impl) -> None:
    """h11 bounds only incomplete heads, so a whole oversized head in one read is accepted
    (edge/http_visitor.py measures the parsed head for that reason); native refuses it."""
    wire = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n"
    conn = impl.visitor(1024)
    if impl.native:
        assert parse_error(conn, wire).status == 431
    else:
        conn.receive_data(wire)
        assert pull(conn)[0][0] == "request"


# native accepts; h11 refuses.
NATIVE_ACCEPTS: dict[str, bytes] = {
    # RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request line.
    "empty-line-before-request": b"\r\nGET / HTTP/1.1\r\n" + HOST + b"\r\n",
    # RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS ext-name ... ).
    "whitespace-before-chunk-ext": b"POST / HTTP/1.1\r\n"
    + HOST
    + b"Transfer-Encoding: chunked\r\n\r\n1 ;a=b\r\nx\r\n0\r\n\r\n",
    # Raw UTF-8 in the target is not URI syntax, but common; native passes it on.
    "non-ascii-target": b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + HOST + b"\r\n",
}


@pytest.mark.parametrize("wire", NATIVE_ACCEPTS.values(), ids=NATIVE_ACCEPTS.keys())
def test_native_accepts_what_h11_refuses(impl: Impl, wire: bytes) -> None:
    conn = impl.visitor()
    if impl.native:
        conn.receive_data(wire)
        assert merged(pull(conn))[0][0] == "request"
    else:
        assert parse_error(conn, wire).status == 400


def test_bare_lf_in_chunked_framing(impl: Impl) -> None:
    """RFC 9112 7.1 frames chunks with CRLF. native also takes a bare LF; h11 (0.16) insists
    on CRLF and waits. Harmless for the edge: bodies are re-framed, never passed through."""
    wire = b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n"
    conn = impl.visitor()
    conn.receive_data(wire)
    events = merged(pull(conn))
    if impl.native:
        assert events[1:] == [("data", b"abc"), ("end", ())]
    else:
        assert events[1:] == []


def test_trailing_data_is_handed_over_once_by_native(impl: Impl) -> None:
    """native's ``trailing_data`` takes the bytes out of the parser (the edge reads it once,
    at the switch); h11's is a view and returns the same bytes every time."""
    conn = impl.visitor()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nraw")
    pull(conn)
    conn.send_informational(ResponseHead(101, [(b"upgrade", b"x")]))
    assert conn.trailing_data == b"raw"
    assert conn.trailing_data == (b"" if impl.native else b"raw")


def test_complete_request_with_nothing_pipelined(impl: Impl) -> None:
    """After EndOfMessage with nothing buffered native says PAUSED, h11 NEED_DATA; both
    mean "respond, then start_next_cycle" to the edge."""
    conn = impl.visitor()
    conn.receive_data(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
    assert pull(conn)[-1] == (("paused",) if impl.native else ("need_data",))


def test_http10_keep_alive(impl: Impl) -> None:
    """An HTTP/1.0 request asking for keep-alive: native keeps the connection, h11 never
    keeps an HTTP/1.0 connection."""
    conn = impl.visitor()
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    pull(conn)
    conn.send_response(ResponseHead(200, [(b"content-length", b"0")]))
    conn.send_end()
    assert conn.start_next_cycle() is impl.native


def test_http10_keep_alive_is_confirmed_in_the_response(impl: Impl) -> None:
    conn = impl.visitor()
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    pull(conn)
    wire = conn.send_response(ResponseHead(200, [(b"content-length", b"2")]))
    wire += conn.send_data(b"ok") + conn.send_end()
    kept = conn.start_next_cycle()
    confirmed = b"keep-alive" in b",".join(header(head_fields(wire), b"connection")).lower()
    assert kept == confirmed


def test_early_response_announces_close(impl: Impl) -> None:
    """Answering before the request body is read: native adds ``connection: close`` (it will
    not skip the unread body); h11 does not, and could reuse the connection once the client
    has sent the rest."""
    conn = impl.visitor()
    conn.receive_data(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\nabc")
    pull(conn)
    wire = conn.send_response(ResponseHead(413, [(b"content-length", b"0")])) + conn.send_end()
    expected = [b"close"] if impl.native else []
    assert header(head_fields(wire), b"connection") == expected


# Origin side.


def _origin(impl: Impl) -> OriginConnection:
    conn = impl.origin()
    conn.send_request(RequestHead(b"GET", b"/", [(b"host", b"svc")]))
    conn.send_end()
    return conn


def test_response_status_line_http20(impl: Impl) -> None:
    wire = b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"
    conn = _origin(impl)
    if impl.native:
        parse_error(conn, wire)
    else:
        conn.receive_data(wire)
        assert pull(conn)[0][:2] == ("response", 200)


def test_empty_line_before_status_line(impl: Impl) -> None:
    wire = b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    conn = _origin(impl)
    if impl.native:
        conn.receive_data(wire)
        assert pull(conn)[0][:2] == ("response", 200)
    else:
        parse_error(conn, wire)


def test_origin_closes_without_responding(impl: Impl) -> None:
    """EOF before any response: native reports ConnectionClosed, h11 a ParseError. The edge
    answers 502 either way (OriginExchange.stream_end checks response_started)."""
    conn = _origin(impl)
    if impl.native:
        conn.receive_data(b"")
        assert pull(conn) == [("closed",)]
    else:
        parse_error(conn, b"", eof=True)
