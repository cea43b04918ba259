"""native's two readings of a head line agree.

A clean head (no NUL, CR or LF but its line ends) has its lines checked with bytes methods;
any other head goes through strict patterns (``edge.http1.native``). For every line a clean
head can hold, both readings must accept the same lines, read the same fields, and refuse the
rest with the same error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from edge.http1.events import Data, ParseError, RequestHead
from edge.http1.native import NativeOriginConnection, NativeVisitorConnection, _Reader

# Bytes a clean line may hold: everything but NUL, CR and LF, weighted toward the ones that
# matter to the grammar.
_GRAMMAR = b" \t:/.HTP0123456789-aA\x01\x7f\x80\xff(),;\"'"
_ANY = bytes(b for b in range(256) if b not in b"\x00\r\n")
clean_lines = st.lists(st.sampled_from(list(_GRAMMAR)) | st.sampled_from(list(_ANY))).map(bytes)


def _outcome(read: Callable[[], object]) -> object:
    try:
        return read()
    except ParseError as exc:
        return ("ParseError", str(exc), exc.status)


def _request(line: bytes, clean: bool) -> object:
    """The head (a Struct: compared field by field) or the error, for this request line."""
    conn = NativeVisitorConnection(8192)
    conn.reader.clean = clean
    return _outcome(lambda: conn._request([line, b"Host: x"]))


def _response(line: bytes, clean: bool) -> object:
    conn = NativeOriginConnection(8192)
    conn.send_request(RequestHead(b"GET", b"/", [(b"host", b"x")]))
    conn.reader.clean = clean
    return _outcome(lambda: conn._response([line, b"Content-Length: 0"]))


@given(clean_lines)
@example(b"X-A: b c \t")
@example(b"X-A:")
@example(b"X-A :b")
@example(b" X-A: folded")
@example(b"\tX-A: folded")
@example(b":b")
@example(b"X(A): b")
@example(b"X-A: \x01\x7f\xff")
@example(b"X-A: b")
@example(b"X-A: b\t")
@example(b"X-A: b ")
@example(b"X-A:  b")
@example(b"X-A: \tb")
@example(b"X-A: ")
@example(b"X-A:b")
def test_header_lines_read_alike(line: bytes) -> None:
    assert _outcome(lambda: _Reader._headers([line], clean=True)) == _outcome(
        lambda: _Reader._headers([line], clean=False)
    )


@given(clean_lines)
@example(b"GET / HTTP/1.1")
@example(b"GET / HTTP/1.0")
@example(b"GET / HTTP/2.0")
@example(b"GET  / HTTP/1.1")
@example(b"GET / HTTP/1.1 ")
@example(b"GET /\x7f HTTP/1.1")
@example(b"GET /\x01 HTTP/1.1")
@example(b"G(T / HTTP/1.1")
@example(b" / HTTP/1.1")
@example(b"GET /\xff HTTP/1.1")
def test_request_lines_read_alike(line: bytes) -> None:
    assert _request(line, clean=True) == _request(line, clean=False)


@given(clean_lines)
@example(b"HTTP/1.1 200 OK")
@example(b"HTTP/1.1 200")
@example(b"HTTP/1.1 200 ")
@example(b"HTTP/1.0 404 Not \x01 Found")
@example(b"HTTP/1.1 2000")
@example(b"HTTP/1.1 20")
@example(b"HTTP/1.1 099 Low")
@example(b"HTTP/2.0 200 OK")
@example(b"HTTP/1.1 20x OK")
def test_status_lines_read_alike(line: bytes) -> None:
    assert _response(line, clean=True) == _response(line, clean=False)


@pytest.mark.parametrize(
    ("wire", "clean"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: x\x00\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: x\rz\r\n\r\n", False),
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", False),
    ],
)
def test_which_heads_are_clean(wire: bytes, clean: bool) -> None:
    conn = NativeVisitorConnection(8192)
    conn.receive_data(wire)
    with contextlib.suppress(ParseError):
        conn.next_event()
    assert conn.reader.clean is clean


def test_a_head_ended_by_a_bare_lf_is_not_measured_to_a_later_crlf_crlf() -> None:
    """The CR LF CR LF search may land past the real end of a head that a bare LF ends: that
    is no oversized head, and the body after it is read as a body."""
    body = b"x" * 200 + b"\r\n\r\n" + b"y" * 100
    wire = b"POST / HTTP/1.1\nHost: x\nContent-Length: %d\n\n" % len(body) + body
    conn = NativeVisitorConnection(64)
    conn.receive_data(wire)
    head = conn.next_event()
    assert isinstance(head, RequestHead) and head.method == b"POST"
    assert conn.reader.clean is False
    received = b""
    while isinstance(event := conn.next_event(), Data):
        received += event.data
    assert received == body


def test_a_clean_head_past_the_limit_is_refused_431() -> None:
    conn = NativeVisitorConnection(64)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100 + b"\r\n\r\n")
    with pytest.raises(ParseError) as caught:
        conn.next_event()
    assert caught.value.status == 431
