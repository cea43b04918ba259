"""``edge.visitors.h2_fields.field_problem`` refuses exactly the header blocks h2's own inbound
validation refuses, for requests and for trailers, and besides those the requests whose
``:method`` or ``:path`` would not make a well-formed HTTP/1.1 request line (h2 lets them by)."""

from __future__ import annotations

import re

import pytest
from h2.exceptions import ProtocolError
from h2.utilities import HeaderValidationFlags, validate_headers
from hypothesis import given
from hypothesis import strategies as st

from edge.visitors.h2_fields import field_problem

Fields = list[tuple[bytes, bytes]]

_BASE: Fields = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":path", b"/"),
    (b":authority", b"app.example"),
]

names = st.sampled_from(
    [
        b":method", b":scheme", b":path", b":authority", b":protocol", b":status", b":other",
        b":Method", b":me:thod", b"host", b"te", b"connection", b"keep-alive", b"upgrade",
        b"proxy-connection", b"transfer-encoding", b"cookie", b"content-length", b"x-a",
        b"X-Upper", b"bad name", b"a:b", b"", b"x\x7f", b"x\xff", b"accept",
    ]
) | st.binary(max_size=6)  # fmt: skip
values = st.sampled_from(
    [
        b"", b"GET", b"CONNECT", b"/", b"app.example", b"other.example", b"trailers",
        b"Trailers", b"gzip", b" lead", b"trail\t", b"a\x00b", b"a\rb", b"a\nb", b"\x01\x7f\xff",
        b"websocket", b"https",
    ]
) | st.binary(max_size=6)  # fmt: skip


def _h2_refuses(fields: Fields, trailers: bool) -> bool:
    flags = HeaderValidationFlags(
        is_client=False, is_trailer=trailers, is_response_header=False, is_push_promise=False
    )
    try:
        list(validate_headers(fields, flags))
    except ProtocolError:
        return True
    return False


_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ORIGIN_FORM = re.compile(rb"/[^\x00-\x20\x7f]*")


def _bad_request_line(fields: Fields, trailers: bool) -> bool:
    """Whether ``:method`` or ``:path`` could not go into an HTTP/1.1 request line."""
    if trailers:
        return False
    pseudo = dict(f for f in fields if f[0] in (b":method", b":path"))
    method, path = pseudo.get(b":method"), pseudo.get(b":path")
    if method is not None and not _TOKEN.fullmatch(method):
        return True
    if not path or _ORIGIN_FORM.fullmatch(path):
        return False
    return not (path == b"*" and method == b"OPTIONS")


@st.composite
def blocks(draw: st.DrawFn) -> Fields:
    """Mostly a good request with a few fields changed, added or dropped."""
    fields = list(_BASE) if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["add", "replace", "drop"]))
        if op == "add" or not fields:
            at = draw(st.integers(0, len(fields)))
            fields.insert(at, (draw(names), draw(values)))
        elif op == "replace":
            at = draw(st.integers(0, len(fields) - 1))
            name, value = fields[at]
            fields[at] = (name, draw(values)) if draw(st.booleans()) else (draw(names), value)
        else:
            del fields[draw(st.integers(0, len(fields) - 1))]
    return fields


@given(blocks(), st.booleans())
def test_refuses_what_h2_refuses(fields: Fields, trailers: bool) -> None:
    problem = field_problem(fields, trailers)
    refused = _h2_refuses(fields, trailers) or _bad_request_line(fields, trailers)
    assert (problem is not None) == refused, problem


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (_BASE, None),
        ([*_BASE, (b"host", b"app.example"), (b"te", b"trailers")], None),
        ([*_BASE, (b"X-Up", b"1")], "the field name b'X-Up', with a byte HTTP/2 forbids"),
        ([*_BASE, (b"connection", b"close")], "the connection-specific field b'connection'"),
        ([*_BASE, (b"x", b"a\r\nInjected: 1")], "NUL, CR, LF"),
        ([*_BASE, (b"host", b"other.example")], ":authority and Host that differ"),
        ([*_BASE[:2], (b":path", b""), _BASE[3]], "an empty :path"),
        ([(b"x", b"1"), *_BASE], "after a regular field"),
        ([(b":method", b"CONNECT"), (b":authority", b"a:1")], None),
        ([(b":method", b"CONNECT"), (b":authority", b"a:1"), (b":path", b"/")], "CONNECT with"),
        (_BASE[:3], "neither :authority nor Host"),
    ],
)
def test_named_problems(fields: Fields, problem: str | None) -> None:
    found = field_problem(fields)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
    assert (found is not None) == _h2_refuses(fields, trailers=False)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        (b"GET", b"/a HTTP/1.1\tX: /b"),
        (b"GET", b"/a b"),
        (b"GET", b"a"),
        (b"GET", b"*"),
        (b"G T", b"/"),
        (b"", b"/"),
    ],
)
def test_method_and_path_must_make_a_request_line(method: bytes, path: bytes) -> None:
    fields = [(b":method", method), (b":scheme", b"https"), (b":path", path), _BASE[3]]
    assert field_problem(fields) is not None
    options = [(b":method", b"OPTIONS"), fields[1], (b":path", b"*"), _BASE[3]]
    assert field_problem(options) is None


def test_trailers_take_no_pseudo_headers() -> None:
    assert field_problem([(b"x-checksum", b"abc")], trailers=True) is None
    assert field_problem([(b":path", b"/")], trailers=True) is not None
