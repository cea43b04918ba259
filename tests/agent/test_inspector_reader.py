"""The agent inspector's passive HTTP/1.1 reader, fed bytes: however a stream is split into
chunks it sees the same requests and responses; hostile bytes never raise and never grow
its memory past its bounds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.inspector import MAX_HEAD, Inspector

REQUESTS = (
    b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n"
    b"POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello"
    b"PUT /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
    b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-trailer: 1\r\n\r\n"
    b"HEAD /d HTTP/1.1\r\nhost: x\r\n\r\n"
)
RESPONSES = (
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n"
    b"4\r\nmade\r\n0\r\n\r\n"
    b"HTTP/1.1 204 No Content\r\n\r\n"
    b"HTTP/1.1 200 OK\r\ncontent-length: 999\r\n\r\n"  # to HEAD: no body follows
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return [p for p in pieces if p]


def observed(
    request_chunks: list[bytes], response_chunks: list[bytes], limit: int = 3
) -> list[tuple]:
    inspector = Inspector(body_limit=limit)
    observer = inspector.observer("web", "localhost:3000", "203.0.113.1:1")
    for chunk in request_chunks:
        observer.request.feed(chunk)
    for chunk in response_chunks:
        observer.response.feed(chunk)
    observer.closed()
    return [
        (
            c.request.start_line,
            bytes(c.request.body),
            c.request.size,
            c.request.truncated,
            c.response.start_line if c.response else b"",
            bytes(c.response.body) if c.response else b"",
            c.response.complete if c.response else False,
        )
        for c in inspector.captures.values()
    ]


WHOLE = observed([REQUESTS], [RESPONSES])


def test_requests_and_responses_pair_with_their_framing() -> None:
    assert WHOLE == [
        (b"GET /a HTTP/1.1", b"", 0, False, b"HTTP/1.1 200 OK", b"ok", True),
        (b"POST /b HTTP/1.1", b"hel", 5, True, b"HTTP/1.1 201 Created", b"mad", True),
        (b"PUT /c HTTP/1.1", b"abc", 5, True, b"HTTP/1.1 204 No Content", b"", True),
        (b"HEAD /d HTTP/1.1", b"", 0, False, b"HTTP/1.1 200 OK", b"", True),
    ]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 10_000), max_size=30), st.lists(st.integers(0, 10_000), max_size=30))
def test_any_split_into_chunks_is_seen_the_same(
    request_cuts: list[int], response_cuts: list[int]
) -> None:
    assert observed(split(REQUESTS, request_cuts), split(RESPONSES, response_cuts)) == WHOLE


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=4096), max_size=20))
def test_hostile_bytes_never_raise_and_stay_bounded(chunks: list[bytes]) -> None:
    inspector = Inspector(keep=5, body_limit=100)
    observer = inspector.observer("web", "l", "r")
    for chunk in chunks:
        observer.request.feed(b"GET / HTTP/1.1\r\n" + chunk)
        observer.response.feed(chunk)
        assert len(observer.request._buf) <= MAX_HEAD + 4096 + 20
        assert len(observer.response._buf) <= MAX_HEAD + 4096 + 20
    observer.closed()
    assert len(inspector.captures) <= 5
    assert all(len(c.request.body) <= 100 for c in inspector.captures.values())
