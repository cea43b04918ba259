"""Hypothesis properties of both parsers, over generated messages and hostile bytes.

* Splitting never changes meaning: a stream of valid requests (or responses) fed in random
  pieces yields the same events as fed whole, and those events are the ones the generator
  meant.
* Hostile bytes (random, HTTP-flavoured, or valid messages with flipped, dropped or added
  bytes) fed in random pieces raise nothing but ParseError.
* native and h11 agree on method, target, headers, body and trailers of every valid request.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from edge.http1.events import ParseError
from tests.http1.support import IMPLS, Impl, Norm, fetch, merged, serve, split_at

TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VCHAR = bytes(range(0x21, 0x7F))
FIELD_VCHAR = VCHAR + bytes(range(0x80, 0x100))


def chars(alphabet: bytes, min_size: int, max_size: int) -> st.SearchStrategy[bytes]:
    text = st.text(alphabet.decode("latin-1"), min_size=min_size, max_size=max_size)
    return text.map(lambda s: s.encode("latin-1"))


methods = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD"]) | (
    chars(TOKEN, 1, 8).filter(lambda m: m != b"CONNECT")  # CONNECT switches protocols in h11
)
targets = st.one_of(chars(VCHAR, 0, 30).map(lambda t: b"/" + t), st.just(b"*"))
ows = st.sampled_from([b"", b" ", b"\t", b"  ", b" \t"])


@st.composite
def field_values(draw: st.DrawFn) -> bytes:
    words = draw(st.lists(chars(FIELD_VCHAR, 1, 8), max_size=4))
    value = b""
    for i, word in enumerate(words):
        value += (draw(st.sampled_from([b" ", b"\t", b"  "])) if i else b"") + word
    return value


@st.composite
def fields(draw: st.DrawFn, max_size: int = 5) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """(name as sent, value, leading OWS, trailing OWS); names never touch framing."""
    out = []
    for _ in range(draw(st.integers(0, max_size))):
        name = b"X-" + draw(chars(TOKEN, 1, 10))
        out.append((name, draw(field_values()), draw(ows), draw(ows)))
    return out


def field_lines(items: list[tuple[bytes, bytes, bytes, bytes]]) -> bytes:
    return b"".join(n + b":" + lead + v + trail + b"\r\n" for n, v, lead, trail in items)


def parsed(items: list[tuple[bytes, bytes, bytes, bytes]]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((n.lower(), v) for n, v, _, _ in items)


@dataclass(frozen=True)
class Body:
    """chunks is None for a Content-Length body, else the chunks with their extensions."""

    data: bytes
    chunks: tuple[tuple[bytes, bytes], ...] | None
    last_ext: bytes = b""
    trailers: tuple[tuple[bytes, bytes, bytes, bytes], ...] = ()

    def framing(self) -> list[tuple[bytes, bytes]]:
        if self.chunks is None:
            return [(b"content-length", b"%d" % len(self.data))]
        return [(b"transfer-encoding", b"chunked")]

    def wire(self) -> bytes:
        if self.chunks is None:
            return self.data
        out = b"".join(b"%x%s\r\n%s\r\n" % (len(c), ext, c) for c, ext in self.chunks)
        return out + b"0" + self.last_ext + b"\r\n" + field_lines(list(self.trailers)) + b"\r\n"

    def events(self) -> list[Norm]:
        data: list[Norm] = [("data", self.data)] if self.data else []
        return [*data, ("end", parsed(list(self.trailers)))]


chunk_exts = st.sampled_from([b"", b";a=b", b";flag", b';q="quoted;str"', b";a=1;b=2"])


@st.composite
def bodies(draw: st.DrawFn, chunked: bool) -> Body:
    if not chunked:
        return Body(draw(st.binary(max_size=200)), None)
    chunks = draw(st.lists(st.tuples(st.binary(min_size=1, max_size=40), chunk_exts), max_size=5))
    return Body(
        b"".join(c for c, _ in chunks),
        tuple(chunks),
        draw(chunk_exts),
        tuple(draw(fields(max_size=2))),
    )


@dataclass(frozen=True)
class Request:
    method: bytes
    target: bytes
    version: bytes
    host: bytes | None
    fields: tuple[tuple[bytes, bytes, bytes, bytes], ...]
    body: Body | None

    def wire(self) -> bytes:
        framing = self.body.framing() if self.body else []
        head = b"%s %s HTTP/%s\r\n" % (self.method, self.target, self.version)
        if self.host is not None:
            head += b"Host: " + self.host + b"\r\n"
        head += field_lines(list(self.fields))
        head += b"".join(n + b": " + v + b"\r\n" for n, v in framing)
        return head + b"\r\n" + (self.body.wire() if self.body else b"")

    def events(self) -> list[Norm]:
        headers: tuple[tuple[bytes, bytes], ...] = ()
        if self.host is not None:
            headers += ((b"host", self.host),)
        headers += parsed(list(self.fields))
        headers += tuple(self.body.framing()) if self.body else ()
        head: Norm = ("request", self.method, self.target, headers, self.version)
        return [head, *(self.body.events() if self.body else [("end", ())])]


@st.composite
def requests(draw: st.DrawFn) -> Request:
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    host: bytes | None = draw(chars(TOKEN, 1, 20))
    if version == b"1.0" and draw(st.booleans()):
        host = None  # HTTP/1.0 needs no Host
    kind = draw(
        st.sampled_from(["none", "length", "chunked"] if version == b"1.1" else ["none", "length"])
    )
    body = None if kind == "none" else draw(bodies(chunked=kind == "chunked"))
    return Request(draw(methods), draw(targets), version, host, tuple(draw(fields())), body)


def expected_stream(reqs: list[Request]) -> list[Norm]:
    """Events of a pipelined stream served to the end: HTTP/1.0 ends the connection."""
    out: list[Norm] = []
    for req in reqs:
        out += req.events()
        if req.version == b"1.0":
            return merged(out)
    return merged([*out, ("closed",)])


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    return split_at(data, [c % (len(data) + 1) for c in cuts])


cut_lists = st.lists(st.integers(0, 10_000), max_size=12)


@given(reqs=st.lists(requests(), min_size=1, max_size=3), cuts=cut_lists)
def test_requests_in_any_split_read_as_whole(
    impl: Impl, reqs: list[Request], cuts: list[int]
) -> None:
    wire = b"".join(r.wire() for r in reqs)
    whole = merged(serve(impl.visitor(), [wire]))
    assert whole == expected_stream(reqs)
    assert merged(serve(impl.visitor(), pieces(wire, cuts))) == whole


@given(req=requests())
def test_native_and_h11_agree(req: Request) -> None:
    wire = req.wire()
    native = merged(serve(IMPLS["native"].visitor(), [wire]))
    reference = merged(serve(IMPLS["h11"].visitor(), [wire]))
    assert native == reference == expected_stream([req])


# -- responses ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    fields: tuple[tuple[bytes, bytes, bytes, bytes], ...]
    body: Body | None  # None for 204/304
    informational: bool  # a 100 Continue comes first

    def statuses(self) -> list[int]:
        return [100, self.status] if self.informational else [self.status]

    def wire(self) -> bytes:
        framing = self.body.framing() if self.body else []
        head = b"HTTP/1.1 100 Continue\r\n\r\n" if self.informational else b""
        head += b"HTTP/1.1 %d Reason Phrase\r\n" % self.status + field_lines(list(self.fields))
        head += b"".join(n + b": " + v + b"\r\n" for n, v in framing)
        return head + b"\r\n" + (self.body.wire() if self.body else b"")


@st.composite
def responses(draw: st.DrawFn) -> Response:
    status = draw(st.sampled_from([200, 201, 204, 301, 304, 404, 500, 503]))
    body = None
    if status not in (204, 304):
        body = draw(bodies(chunked=draw(st.booleans())))
    return Response(status, tuple(draw(fields())), body, draw(st.booleans()))


@given(
    resps=st.lists(responses(), min_size=1, max_size=3), tail=st.binary(max_size=20), cuts=cut_lists
)
def test_responses_in_any_split_read_as_whole(
    impl: Impl, resps: list[Response], tail: bytes, cuts: list[int]
) -> None:
    # The tail is read until close by a final length-less response.
    wire = b"".join(r.wire() for r in resps) + b"HTTP/1.1 200 OK\r\n\r\n" + tail
    count = len(resps) + 1
    whole = merged(fetch(impl.origin(), [wire], requests=count))
    statuses = [s for r in resps for s in r.statuses()]
    assert [e[1] for e in whole if e[0] == "response"] == [*statuses, 200]
    assert whole[-1] == ("end", ())
    assert merged(fetch(impl.origin(), pieces(wire, cuts), requests=count)) == whole


# -- hostile bytes -----------------------------------------------------------------------

HTTPISH = [
    b"\r\n",
    b"\n",
    b"\r",
    b":",
    b" ",
    b"\t",
    b";",
    b",",
    b"0",
    b"1",
    b"f",
    b"a",
    b"\x00",
    b"\xff",
    b"GET / HTTP/1.1\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 101 x\r\n",
    b"HTTP/1.1 100 x\r\n\r\n",
    b"Host: a\r\n",
    b"Content-Length: ",
    b"Transfer-Encoding: ",
    b"chunked",
    b"Connection: ",
    b"close",
    b"keep-alive",
    b"upgrade",
    b"Upgrade: x\r\n",
    b"Expect: 100-continue\r\n",
    b"HTTP/1.0",
    b"\r\n\r\n",
    b"0\r\n\r\n",
    b"ffffffffffffffff",
]
hostile = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(HTTPISH), max_size=40).map(b"".join),
    st.tuples(
        st.sampled_from([b"GET / HTTP/1.1\r\nHost: a\r\n", b"POST / HTTP/1.1\r\nHost: a\r\n"]),
        st.lists(st.sampled_from(HTTPISH), max_size=30).map(b"".join),
    ).map(b"".join),
)


@st.composite
def mutated(draw: st.DrawFn, wire: bytes) -> bytes:
    """``wire`` with a few bytes flipped, dropped or inserted."""
    data = bytearray(wire)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["flip", "drop", "insert"]))
        byte = draw(st.sampled_from(b"\r\n \t:;,0a\x00\xff") | st.integers(0, 255))
        if op == "insert" or not data:
            data[pos:pos] = bytes([byte])
        elif op == "drop":
            del data[pos]
        else:
            data[pos] = byte
    return bytes(data)


def only_parse_errors(run: object) -> None:
    try:
        run()  # type: ignore[operator]
    except ParseError as exc:
        assert 400 <= exc.status < 600


@given(data=hostile, cuts=cut_lists)
def test_hostile_bytes_to_visitor(impl: Impl, data: bytes, cuts: list[int]) -> None:
    only_parse_errors(lambda: serve(impl.visitor(512), pieces(data, cuts)))


@given(data=st.data(), reqs=st.lists(requests(), min_size=1, max_size=2), cuts=cut_lists)
def test_mutated_requests_to_visitor(
    impl: Impl, data: st.DataObject, reqs: list[Request], cuts: list[int]
) -> None:
    wire = data.draw(mutated(b"".join(r.wire() for r in reqs)))
    only_parse_errors(lambda: serve(impl.visitor(512), pieces(wire, cuts)))


@given(data=hostile, cuts=cut_lists)
def test_hostile_bytes_to_origin(impl: Impl, data: bytes, cuts: list[int]) -> None:
    only_parse_errors(lambda: fetch(impl.origin(512), pieces(data, cuts)))


@given(data=st.data(), resps=st.lists(responses(), min_size=1, max_size=2), cuts=cut_lists)
def test_mutated_responses_to_origin(
    impl: Impl, data: st.DataObject, resps: list[Response], cuts: list[int]
) -> None:
    wire = data.draw(mutated(b"".join(r.wire() for r in resps)))
    only_parse_errors(lambda: fetch(impl.origin(512), pieces(wire, cuts)))
