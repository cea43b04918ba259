"""Requests every implementation must refuse with ParseError, and nothing else.

Each case is also fed one byte at a time: a parser must reach the same verdict however the
bytes arrive. Cases where the implementations legitimately disagree are in
``test_differences.py``.
"""

from __future__ import annotations

import time

import pytest

from edge.http1.events import ParseError
from tests.http1.support import Impl, parse_error, pull

HOST = b"Host: a\r\n"

REFUSED: dict[str, bytes] = {
    "missing-host-http11": b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
    "two-host-headers": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "two-identical-host-headers": b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
    "two-content-lengths": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\n"
    b"Content-Length: 4\r\n\r\nabcd",
    "content-length-list-differs": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 3, 4\r\n\r\n",
    "content-length-non-numeric": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 1x\r\n\r\n",
    "content-length-negative": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: -1\r\n\r\n",
    "content-length-plus": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: +1\r\n\r\nx",
    "content-length-hex": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 0x1\r\n\r\nx",
    "content-length-empty": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length:\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    "tab-before-colon": b"GET / HTTP/1.1\r\n" + HOST + b"X-A\t: 1\r\n\r\n",
    "no-colon": b"GET / HTTP/1.1\r\n" + HOST + b"X-A 1\r\n\r\n",
    "empty-header-name": b"GET / HTTP/1.1\r\n" + HOST + b": 1\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\x00b\r\n\r\n",
    "cr-in-value": b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\rb\r\n\r\n",
    "bad-chunk-size": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nhello\r\n0\r\n\r\n",
    "negative-chunk-size": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
    b"-5\r\nhello\r\n0\r\n\r\n",
    "chunk-data-overruns": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
    b"3\r\nhello\r\n0\r\n\r\n",
    "unknown-transfer-coding": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip\r\n\r\n",
    "chunked-not-last": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
    "request-line-no-version": b"GET /\r\n" + HOST + b"\r\n",
    "request-line-two-spaces": b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n",
    "request-line-space-in-target": b"GET /a b HTTP/1.1\r\n" + HOST + b"\r\n",
    "request-line-bad-version": b"GET / HTTP/x.y\r\n" + HOST + b"\r\n",
    "request-line-lowercase-http": b"GET / http/1.1\r\n" + HOST + b"\r\n",
    "request-line-bad-method": b"G(T / HTTP/1.1\r\n" + HOST + b"\r\n",
    "request-line-garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    # Transfer-Encoding obfuscated with control bytes that bytes.strip() takes for blanks: a
    # front end that reads it as chunked and a back end that does not disagree on the body.
    "transfer-encoding-vt-before": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: \x0bchunked"
    b"\r\n\r\n0\r\n\r\n",
    "transfer-encoding-ff-after": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\x0c"
    b"\r\n\r\n0\r\n\r\n",
    "transfer-encoding-fs-in-list": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: x,\x1c"
    b"chunked\r\n\r\n0\r\n\r\n",
    "content-length-vt-before": b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: \x0b1\r\n\r\nx",
}


@pytest.mark.parametrize("wire", REFUSED.values(), ids=REFUSED.keys())
def test_refused_whole(impl: Impl, wire: bytes) -> None:
    exc = parse_error(impl.visitor(), wire)
    assert 400 <= exc.status < 600


@pytest.mark.parametrize("wire", REFUSED.values(), ids=REFUSED.keys())
def test_refused_byte_by_byte(impl: Impl, wire: bytes) -> None:
    conn = impl.visitor()
    with pytest.raises(ParseError):
        for i in range(len(wire)):
            conn.receive_data(wire[i : i + 1])
            pull(conn)
        conn.receive_data(b"")
        pull(conn)


@pytest.mark.parametrize("piece", [1, 7, 64])
def test_oversized_head_in_pieces_is_431(impl: Impl, piece: int) -> None:
    limit = 1024
    wire = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * (limit * 3) + b"\r\n\r\n"
    conn = impl.visitor(limit)
    fed = 0
    with pytest.raises(ParseError) as info:
        while fed < len(wire):
            conn.receive_data(wire[fed : fed + piece])
            fed += piece
            pull(conn)
    assert info.value.status == 431
    # Refused once the limit is passed, not after buffering the whole head.
    assert fed <= limit + 64 + piece


def test_head_within_limit_in_pieces_is_accepted(impl: Impl) -> None:
    limit = 1024
    wire = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * (limit - 64) + b"\r\n\r\n"
    conn = impl.visitor(limit)
    events = []
    for i in range(0, len(wire), 16):
        conn.receive_data(wire[i : i + 16])
        events += pull(conn)
    assert [e[0] for e in events if e[0] not in ("need_data", "paused")] == ["request", "end"]


def test_header_of_blanks_ending_in_nul_is_refused_at_once(impl: Impl) -> None:
    # A value pattern that backtracks took minutes on this line, holding the edge's loop.
    wire = b"GET / HTTP/1.1\r\n" + HOST + b"X-A:" + b" " * 15_000 + b"\x00\r\n\r\n"
    started = time.monotonic()
    exc = parse_error(impl.visitor(), wire)
    assert 400 <= exc.status < 600
    assert time.monotonic() - started < 1.0


def test_trailer_of_blanks_ending_in_nul_is_refused_at_once(impl: Impl) -> None:
    wire = (
        b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-A:" + b" " * 15_000 + b"\x00\r\n\r\n"
    )
    started = time.monotonic()
    exc = parse_error(impl.visitor(), wire)
    assert 400 <= exc.status < 600
    assert time.monotonic() - started < 1.0
