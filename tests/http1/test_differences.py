"""Where native, h11 and httptools legitimately differ. Each test runs on every
implementation and says what each one does: native's strictness is asserted as such; h11's
and httptools' behaviour is pinned so that a change in any is noticed, not silently absorbed.

httptools frames messages with native's code (``edge.http1.framing``) and makes the checks
native makes that llhttp does not, so it sides with native (``LIKE_NATIVE``) unless a test
says otherwise; where llhttp itself is stricter or laxer, the tests at the end say so."""

from __future__ import annotations

from typing import Final

import pytest

from edge.http1 import OriginConnection
from edge.http1.events import RequestHead, ResponseHead
from tests.http1.support import Impl, head_fields, header, merged, parse_error, pull

HOST = b"Host: a\r\n"

LIKE_NATIVE: Final = frozenset({"native", "httptools"})


def like_native(impl: Impl) -> bool:
    return impl.name in LIKE_NATIVE


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
    # native caps a chunk size at 16 hex digits, leading zeros included; h11 and llhttp
    # only refuse a size that overflows.
    "chunk-size-17-hex-digits": (
        b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
        b"00000000000000001\r\nx\r\n0\r\n\r\n",
        400,
    ),
}
# Of those, what httptools accepts like h11.
HTTPTOOLS_ACCEPTS: Final = frozenset({"chunk-size-17-hex-digits"})


@pytest.mark.parametrize(
    ("case", "wire", "status"),
    [(case, wire, status) for case, (wire, status) in NATIVE_REFUSES.items()],
    ids=NATIVE_REFUSES.keys(),
)
def test_native_refuses_what_h11_accepts(impl: Impl, case: str, wire: bytes, status: int) -> None:
    conn = impl.visitor()
    if impl.native or (impl.name == "httptools" and case not in HTTPTOOLS_ACCEPTS):
        assert parse_error(conn, wire).status == status
    else:
        conn.receive_data(wire)
        assert pull(conn)[0][0] == "request"


def test_content_length_with_transfer_encoding_h11_keeps_connection(impl: Impl) -> None:
    wire, _ = NATIVE_REFUSES["content-length-with-transfer-encoding"]
    conn = impl.visitor()
    if like_native(impl):
        parse_error(conn, wire)
        return
    conn.receive_data(wire)
    assert merged(pull(conn))[1:] == [("end", ())]  # framed by Transfer-Encoding alone
    conn.send_response(ResponseHead(200, [(b"content-length", b"0")]))
    conn.send_end()
    assert conn.start_next_cycle()  # RFC 9112 6.1 says MUST close


def test_oversized_head_in_one_piece(impl: Impl) -> None:
    """h11 bounds only incomplete heads; its wrapper measures a whole one read at once, so
    every implementation refuses an oversized head however it arrives."""
    wire = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n"
    assert parse_error(impl.visitor(1024), wire).status == 431


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
# Of those, what httptools refuses like h11: llhttp takes no byte above 0x7f in a target,
# and has no leniency for it.
HTTPTOOLS_REFUSES: Final = frozenset({"non-ascii-target"})


@pytest.mark.parametrize(("case", "wire"), NATIVE_ACCEPTS.items(), ids=NATIVE_ACCEPTS.keys())
def test_native_accepts_what_h11_refuses(impl: Impl, case: str, wire: bytes) -> None:
    conn = impl.visitor()
    if impl.native or (impl.name == "httptools" and case not in HTTPTOOLS_REFUSES):
        conn.receive_data(wire)
        assert merged(pull(conn))[0][0] == "request"
    else:
        assert parse_error(conn, wire).status == 400


def test_bare_lf_in_chunked_framing(impl: Impl) -> None:
    """RFC 9112 7.1 frames chunks with CRLF. native also takes a bare LF; h11 (0.16) insists
    on CRLF and waits; httptools refuses it (llhttp reads chunked framing with CRLFs only,
    which is how httptools_impl knows where a chunked message can end). Harmless for the
    edge: bodies are re-framed, never passed through."""
    wire = b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n"
    conn = impl.visitor()
    if impl.name == "httptools":
        assert parse_error(conn, wire).status == 400
        return
    conn.receive_data(wire)
    events = merged(pull(conn))
    if impl.native:
        assert events[1:] == [("data", b"abc"), ("end", ())]
    else:
        assert events[1:] == []


def test_trailing_data_is_handed_over_once_by_native(impl: Impl) -> None:
    """native's and httptools' ``trailing_data`` takes the bytes out of the parser (the edge
    reads it once, at the switch); h11's is a view and returns the same bytes every time."""
    conn = impl.visitor()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nraw")
    pull(conn)
    conn.send_informational(ResponseHead(101, [(b"upgrade", b"x")]))
    assert conn.trailing_data == b"raw"
    assert conn.trailing_data == (b"" if like_native(impl) else b"raw")


def test_complete_request_with_nothing_pipelined(impl: Impl) -> None:
    """After EndOfMessage with nothing buffered native (and httptools) says PAUSED, h11
    NEED_DATA; both mean "respond, then start_next_cycle" to the edge."""
    conn = impl.visitor()
    conn.receive_data(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
    assert pull(conn)[-1] == (("paused",) if like_native(impl) else ("need_data",))


def test_http10_keep_alive(impl: Impl) -> None:
    """An HTTP/1.0 request asking for keep-alive: native (and httptools) keeps the
    connection, h11 never keeps an HTTP/1.0 connection."""
    conn = impl.visitor()
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    pull(conn)
    conn.send_response(ResponseHead(200, [(b"content-length", b"0")]))
    conn.send_end()
    assert conn.start_next_cycle() is like_native(impl)


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
    """Answering before the request body is read: native (and httptools) adds
    ``connection: close`` (it will not skip the unread body); h11 does not, and could reuse
    the connection once the client has sent the rest."""
    conn = impl.visitor()
    conn.receive_data(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\nabc")
    pull(conn)
    wire = conn.send_response(ResponseHead(413, [(b"content-length", b"0")])) + conn.send_end()
    expected = [b"close"] if like_native(impl) else []
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
    if like_native(impl):
        parse_error(conn, wire)
    else:
        conn.receive_data(wire)
        assert pull(conn)[0][:2] == ("response", 200)


def test_empty_line_before_status_line(impl: Impl) -> None:
    wire = b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    conn = _origin(impl)
    if like_native(impl):
        conn.receive_data(wire)
        assert pull(conn)[0][:2] == ("response", 200)
    else:
        parse_error(conn, wire)


def test_origin_closes_without_responding(impl: Impl) -> None:
    """EOF before any response: native (and httptools) reports ConnectionClosed, h11 a
    ParseError. The edge answers 502 either way (OriginExchange.stream_end checks
    response_started)."""
    conn = _origin(impl)
    if like_native(impl):
        conn.receive_data(b"")
        assert pull(conn) == [("closed",)]
    else:
        parse_error(conn, b"", eof=True)


# Where llhttp is stricter than native and h11: httptools refuses (400), they accept.
HTTPTOOLS_REFUSES_REQUEST: dict[str, bytes] = {
    # RFC 9110 8.6 lets a recipient take identical values as one; llhttp refuses any
    # second Content-Length (the request-smuggling shape it guards against).
    "content-length-list-identical": b"POST / HTTP/1.1\r\n"
    + HOST
    + b"Content-Length: 3, 3\r\n\r\nabc",
    "content-length-repeated-identical": b"POST / HTTP/1.1\r\n"
    + HOST
    + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    # RFC 9110 5.5: control characters are not field-vchar; llhttp refuses them.
    "control-character-in-value": b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\x01b\r\n\r\n",
    "delete-in-value": b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\x7fb\r\n\r\n",
    "control-character-in-chunk-ext": b"POST / HTTP/1.1\r\n"
    + HOST
    + b"Transfer-Encoding: chunked\r\n\r\n1;\x01\r\nx\r\n0\r\n\r\n",
    # RFC 9112 3.2.3: authority-form is for CONNECT only.
    "authority-form-not-connect": b"OPTIONS a:80 HTTP/1.1\r\n" + HOST + b"\r\n",
}


@pytest.mark.parametrize(
    "wire", HTTPTOOLS_REFUSES_REQUEST.values(), ids=HTTPTOOLS_REFUSES_REQUEST.keys()
)
def test_httptools_refuses_what_native_and_h11_accept(impl: Impl, wire: bytes) -> None:
    conn = impl.visitor()
    if impl.name == "httptools":
        assert parse_error(conn, wire).status == 400
    else:
        conn.receive_data(wire)
        assert merged(pull(conn))[0][0] == "request"


@pytest.mark.parametrize(
    "value", [b"Content-Length: 1, 1\r\n", b"Content-Length: 1\r\nContent-Length: 1\r\n"]
)
def test_identical_content_lengths_in_a_response(impl: Impl, value: bytes) -> None:
    """The same rule on the origin side: native takes identical values as one, httptools
    refuses them (the edge answers 502), h11 takes them too."""
    conn = _origin(impl)
    wire = b"HTTP/1.1 200 OK\r\n" + value + b"\r\na"
    if impl.name == "httptools":
        parse_error(conn, wire)
    else:
        conn.receive_data(wire)
        assert merged(pull(conn))[1:] == [("data", b"a"), ("end", ())]


def test_unknown_method_and_bare_lf_request_line(impl: Impl) -> None:
    """llhttp knows a fixed list of methods and wants CRLF after the request line; httptools
    parses such a head again with a stand-in method and a CRLF, so every implementation
    takes a method that is any token (RFC 9110 9.1) and a bare LF (RFC 9112 2.2)."""
    conn = impl.visitor()
    conn.receive_data(b"BREW /pot HTTP/1.1\nHost: a\nContent-Length: 2\n\nhi")
    assert merged(pull(conn)) == [
        ("request", b"BREW", b"/pot", ((b"host", b"a"), (b"content-length", b"2")), b"1.1"),
        ("data", b"hi"),
        ("end", ()),
    ]
    # A method that is not a token is still refused.
    assert parse_error(impl.visitor(), b"BR(W /pot HTTP/1.1\r\nHost: a\r\n\r\n").status == 400
