"""The ClientHello reader, driven by bytes: real hellos from OpenSSL, hand-built ones, garbage.

What the edge relies on: the route-deciding fields come out right however TCP or the TLS
record layer splits the hello, every byte fed is kept for the backend, and whatever a peer
sends, the only failure is a ``ClientHelloError`` that says what went wrong.
"""

from __future__ import annotations

import functools
import itertools
import re
import ssl
import struct
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.tls.clienthello import (
    DEFAULT_MAX_BYTES,
    Alert,
    ClientHello,
    ClientHelloError,
    ClientHelloReader,
    NotTLSError,
)

TLS12 = 0x0303
TLS13 = 0x0304
HANDSHAKE = 22


# -- real ClientHellos, made by Python's ssl (OpenSSL) in memory -----------------------------


@dataclass(frozen=True)
class RealCase:
    id: str
    server_hostname: str | None
    alpn: tuple[str, ...]
    tls12_max: bool
    expected_name: str | None

    @property
    def expected(self) -> ClientHello:
        return ClientHello(
            server_name=self.expected_name,
            alpn=self.alpn,
            legacy_version=TLS12,
            # OpenSSL leaves the extension out when TLS 1.3 is disabled.
            supported_versions=() if self.tls12_max else (TLS13, TLS12),
        )


LONG_NAME = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters, the most DNS allows
ALPN_BOTH = ("h2", "http/1.1")

REAL_CASES = [
    RealCase("sni+h2+http1", "example.com", ALPN_BOTH, False, "example.com"),
    RealCase("uppercase-sni", "WWW.Example.COM", ("http/1.1",), False, "www.example.com"),
    RealCase("trailing-dot", "example.com.", ("h2",), False, "example.com"),
    RealCase("no-sni-no-alpn", None, (), False, None),
    RealCase("ip-literal-sends-no-sni", "127.0.0.1", ("h2",), False, None),
    RealCase("longest-name", LONG_NAME, ALPN_BOTH, False, LONG_NAME),
    RealCase("idn-as-a-label", "bücher.example", (), False, "xn--bcher-kva.example"),
    RealCase("255-byte-alpn", "a.test", ("h2", "x" * 255), False, "a.test"),
    RealCase("tls12-sni+alpn", "app.burrow.test", ALPN_BOTH, True, "app.burrow.test"),
    RealCase("tls12-no-sni", None, (), True, None),
    RealCase("tls12-one-alpn", "t.burrow.test", ("http/1.1",), True, "t.burrow.test"),
]


@functools.cache
def openssl_client_hello(case: RealCase) -> bytes:
    """The first flight of an OpenSSL client: what a visitor's browser or curl would send."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if case.alpn:
        ctx.set_alpn_protocols(list(case.alpn))
    if case.tls12_max:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname=case.server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


real_cases = st.sampled_from(REAL_CASES)


# -- wire helpers ----------------------------------------------------------------------------


def u8(n: int) -> bytes:
    return bytes([n])


def u16(n: int) -> bytes:
    return struct.pack("!H", n)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


def record(fragment: bytes, version: int = 0x0301, content_type: int = HANDSHAKE) -> bytes:
    return u8(content_type) + u16(version) + u16(len(fragment)) + fragment


def records(message: bytes, sizes: list[int] = [], versions: list[int] = []) -> bytes:  # noqa: B006
    """Carry ``message`` in records of the given fragment sizes (the last takes the rest),
    as a client that fragments its handshake would."""
    out = []
    pos = 0
    for i, size in enumerate([*sizes, len(message)]):
        fragment = message[pos : pos + size]
        if not fragment:
            break
        version = versions[i % len(versions)] if versions else 0x0301
        out.append(record(fragment, version))
        pos += len(fragment)
    return b"".join(out)


def handshake_message(wire: bytes) -> bytes:
    """The handshake bytes carried by a run of records."""
    message = bytearray()
    pos = 0
    while pos < len(wire):
        (length,) = struct.unpack_from("!H", wire, pos + 3)
        message += wire[pos + 5 : pos + 5 + length]
        pos += 5 + length
    return bytes(message)


def handshake(body: bytes, msg_type: int = 1) -> bytes:
    return u8(msg_type) + len(body).to_bytes(3, "big") + body


def ext(ext_type: int, data: bytes) -> bytes:
    return u16(ext_type) + u16(len(data)) + data


def sni(*names: bytes, name_type: int = 0) -> bytes:
    entries = b"".join(u8(name_type) + u16(len(n)) + n for n in names)
    return ext(0, u16(len(entries)) + entries)


def alpn(*protocols: bytes) -> bytes:
    names = b"".join(u8(len(p)) + p for p in protocols)
    return ext(16, u16(len(names)) + names)


def versions(*vs: int) -> bytes:
    data = b"".join(u16(v) for v in vs)
    return ext(43, u8(len(data)) + data)


def padding(n: int) -> bytes:
    return ext(21, bytes(n))  # RFC 7685


def hello_body(
    extensions: bytes | None = b"",
    *,
    version: int = TLS12,
    session_id: bytes = b"",
    suites: bytes = b"\x13\x01\x00\x2f",
    compression: bytes = b"\x00",
    trailer: bytes = b"",
) -> bytes:
    body = u16(version) + bytes(32) + u8(len(session_id)) + session_id
    body += u16(len(suites)) + suites + u8(len(compression)) + compression
    if extensions is not None:
        body += u16(len(extensions)) + extensions
    return body + trailer


def wire(body: bytes) -> bytes:
    return records(handshake(body))


def outcome(reader: ClientHelloReader, chunks: list[bytes]) -> ClientHello | None:
    """Feed chunks in turn, stopping at the first result; anything raised but
    ``ClientHelloError`` fails the test."""
    for chunk in chunks:
        hello = reader.feed(chunk)
        if hello is not None:
            return hello
    return None


def assert_routable(hello: ClientHello) -> None:
    """What the router may assume about any ClientHello the reader returns."""
    if hello.server_name is not None:
        assert re.fullmatch(r"[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*", hello.server_name)
        assert len(hello.server_name) <= 253
    assert all(hello.alpn)


# -- real hellos, whole and in pieces ----------------------------------------------------------


@pytest.mark.parametrize("case", REAL_CASES, ids=lambda c: c.id)
def test_real_hello_yields_sni_and_alpn(case: RealCase) -> None:
    data = openssl_client_hello(case)
    reader = ClientHelloReader()
    assert reader.feed(data) == case.expected
    assert reader.buffered == data


@pytest.mark.parametrize("case", REAL_CASES, ids=lambda c: c.id)
def test_real_hello_byte_by_byte_waits_until_the_last_byte(case: RealCase) -> None:
    data = openssl_client_hello(case)
    reader = ClientHelloReader()
    for i in range(len(data) - 1):
        assert reader.feed(data[i : i + 1]) is None
    assert reader.feed(data[-1:]) == case.expected
    assert reader.buffered == data


@given(case=real_cases, cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_real_hello_split_anywhere_parses_the_same(case: RealCase, cuts: list[int]) -> None:
    data = openssl_client_hello(case)
    reader = ClientHelloReader()
    assert outcome(reader, split(data, cuts)) == case.expected
    assert reader.buffered == data


@given(
    case=real_cases,
    sizes=st.lists(st.integers(1, 600), min_size=1, max_size=8),
    record_versions=st.lists(st.sampled_from([0x0301, 0x0302, 0x0303, 0x0304]), min_size=1),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
)
def test_hello_fragmented_across_records_parses_the_same(
    case: RealCase, sizes: list[int], record_versions: list[int], cuts: list[int]
) -> None:
    data = records(handshake_message(openssl_client_hello(case)), sizes, record_versions)
    reader = ClientHelloReader()
    assert outcome(reader, split(data, cuts)) == case.expected
    assert reader.buffered == data


def test_one_byte_records_parse() -> None:
    case = REAL_CASES[0]
    message = handshake_message(openssl_client_hello(case))
    data = records(message, [1] * len(message))
    assert ClientHelloReader(max_bytes=len(data)).feed(data) == case.expected


@given(case=real_cases, after=st.binary(min_size=1, max_size=40_000))
def test_bytes_after_the_hello_are_kept_not_parsed(case: RealCase, after: bytes) -> None:
    # A TLS 1.3 client may follow its hello with change_cipher_spec and 0-RTT data at once;
    # those bytes belong to the backend, even beyond max_bytes.
    data = openssl_client_hello(case)
    reader = ClientHelloReader()
    assert reader.feed(data + after) == case.expected
    assert reader.feed(b"more") == case.expected
    assert reader.buffered == data + after + b"more"


# -- hand-built hellos: what real clients may send that OpenSSL does not -----------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            hello_body(None, version=0x0301),
            ClientHello(None, (), 0x0301, ()),
            id="no-extensions-block",
        ),
        pytest.param(hello_body(b""), ClientHello(None, (), TLS12, ()), id="empty-extensions"),
        pytest.param(
            hello_body(sni(b"My_Host.Example.") + ext(0x0A0A, b"") + alpn(b"\x0a\x0a", b"h2")),
            ClientHello("my_host.example", ("\n\n", "h2"), TLS12, ()),
            id="grease-and-underscore",
        ),
        pytest.param(
            hello_body(versions(0x1A1A, TLS13) + sni(b"x")),
            ClientHello("x", (), TLS12, (0x1A1A, TLS13)),
            id="grease-version",
        ),
    ],
)
def test_hand_built_hello(body: bytes, expected: ClientHello) -> None:
    assert ClientHelloReader().feed(wire(body)) == expected


def test_largest_hello_within_the_default_limit() -> None:
    # Handshake message of 2^14 bytes in four records: exactly DEFAULT_MAX_BYTES on the wire.
    base = handshake(hello_body(sni(b"big.test") + padding(0)))
    body = hello_body(sni(b"big.test") + padding(16384 - len(base)))
    message = handshake(body)
    assert len(message) == 16384
    data = records(message, [4096] * 3)
    assert len(data) == DEFAULT_MAX_BYTES
    assert ClientHelloReader().feed(data) == ClientHello("big.test", (), TLS12, ())

    one_more = records(handshake(hello_body(sni(b"big.test") + padding(16385 - len(base)))))
    with pytest.raises(ClientHelloError, match="limit"):
        ClientHelloReader().feed(one_more)


# -- errors a peer can cause -------------------------------------------------------------------

OK = hello_body(sni(b"ok.test") + alpn(b"h2"))
MSG = handshake(OK)


def body_with(*extensions: bytes) -> bytes:
    return wire(hello_body(b"".join(extensions)))


BAD_HELLOS = [
    # record layer
    pytest.param(record(b"\x02\x28", TLS12, 21), Alert.UNEXPECTED_MESSAGE, id="alert-record"),
    pytest.param(record(MSG, 0x0300), Alert.PROTOCOL_VERSION, id="ssl3-record"),
    pytest.param(record(MSG, 0x0305), Alert.PROTOCOL_VERSION, id="record-version-0305"),
    pytest.param(
        record(MSG[:10]) + record(b"\x01", TLS12, 21) + record(MSG[10:]),
        Alert.UNEXPECTED_MESSAGE,
        id="alert-between-fragments",
    ),
    pytest.param(
        record(MSG[:10]) + record(MSG[10:], 0x0203), Alert.PROTOCOL_VERSION, id="bad-2nd-record"
    ),
    pytest.param(
        b"\x16\x03\x01\x40\x01" + bytes(0x4001), Alert.RECORD_OVERFLOW, id="record-overflow"
    ),
    pytest.param(record(b"") + record(MSG), Alert.DECODE_ERROR, id="empty-record"),
    # handshake layer
    pytest.param(records(handshake(OK, 2)), Alert.UNEXPECTED_MESSAGE, id="server-hello"),
    pytest.param(record(MSG + b"\x01"), Alert.UNEXPECTED_MESSAGE, id="bytes-after-hello"),
    pytest.param(records(handshake(b"")), Alert.DECODE_ERROR, id="empty-hello"),
    pytest.param(
        records(b"\x01\xff\xff\xff" + OK), Alert.ILLEGAL_PARAMETER, id="declared-too-large"
    ),
    # ClientHello fields
    pytest.param(wire(hello_body(version=0x0300)), Alert.PROTOCOL_VERSION, id="ssl3-hello"),
    pytest.param(wire(hello_body(version=0x0203)), Alert.PROTOCOL_VERSION, id="hello-0203"),
    pytest.param(wire(hello_body(session_id=bytes(33))), Alert.DECODE_ERROR, id="session-33"),
    pytest.param(wire(hello_body(suites=b"\x13\x01\x00")), Alert.DECODE_ERROR, id="odd-suites"),
    pytest.param(wire(hello_body(suites=b"")), Alert.DECODE_ERROR, id="no-suites"),
    pytest.param(wire(hello_body(compression=b"")), Alert.DECODE_ERROR, id="no-compression"),
    pytest.param(
        wire(hello_body(compression=b"\x01")), Alert.ILLEGAL_PARAMETER, id="no-null-compression"
    ),
    pytest.param(wire(OK[:-1]), Alert.DECODE_ERROR, id="extensions-truncated"),
    pytest.param(wire(hello_body(b"", trailer=b"\x00")), Alert.DECODE_ERROR, id="stray-bytes"),
    pytest.param(body_with(b"\x00\x15\x00\x05\x00"), Alert.DECODE_ERROR, id="ext-overruns"),
    pytest.param(body_with(b"\x00"), Alert.DECODE_ERROR, id="ext-type-truncated"),
    pytest.param(body_with(sni(b"a.test"), sni(b"b.test")), Alert.ILLEGAL_PARAMETER, id="2-sni"),
    pytest.param(body_with(alpn(b"h2"), alpn(b"h2")), Alert.ILLEGAL_PARAMETER, id="2-alpn"),
    pytest.param(body_with(padding(1), padding(1)), Alert.ILLEGAL_PARAMETER, id="2-padding"),
    # server_name
    pytest.param(body_with(ext(0, b"")), Alert.DECODE_ERROR, id="sni-no-list"),
    pytest.param(body_with(ext(0, b"\x00\x00")), Alert.DECODE_ERROR, id="sni-empty-list"),
    pytest.param(body_with(sni(b"")), Alert.DECODE_ERROR, id="sni-empty-name"),
    pytest.param(body_with(sni(b"a.test", b"b.test")), Alert.DECODE_ERROR, id="sni-two-names"),
    pytest.param(body_with(sni(b"a.test", name_type=1)), Alert.DECODE_ERROR, id="sni-type-1"),
    pytest.param(
        body_with(ext(0, sni(b"a.test")[4:] + b"\x00")), Alert.DECODE_ERROR, id="sni-stray"
    ),
    pytest.param(body_with(sni("bücher.example".encode())), Alert.ILLEGAL_PARAMETER, id="sni-utf8"),
    pytest.param(body_with(sni(b"\xff\xfe")), Alert.ILLEGAL_PARAMETER, id="sni-raw-bytes"),
    pytest.param(body_with(sni(b".")), Alert.ILLEGAL_PARAMETER, id="sni-dot"),
    pytest.param(body_with(sni(b"a..test")), Alert.ILLEGAL_PARAMETER, id="sni-empty-label"),
    pytest.param(body_with(sni(b".a.test")), Alert.ILLEGAL_PARAMETER, id="sni-leading-dot"),
    pytest.param(body_with(sni(b"a.test..")), Alert.ILLEGAL_PARAMETER, id="sni-two-dots"),
    pytest.param(body_with(sni(b"a b.test")), Alert.ILLEGAL_PARAMETER, id="sni-space"),
    pytest.param(body_with(sni(b"a\x00.test")), Alert.ILLEGAL_PARAMETER, id="sni-nul"),
    pytest.param(body_with(sni(b"[::1]")), Alert.ILLEGAL_PARAMETER, id="sni-ipv6"),
    pytest.param(body_with(sni(b"x" * 64 + b".test")), Alert.ILLEGAL_PARAMETER, id="sni-label-64"),
    pytest.param(
        body_with(sni(LONG_NAME.encode() + b"b")), Alert.ILLEGAL_PARAMETER, id="sni-254-chars"
    ),
    pytest.param(body_with(sni(b"a" * 300)), Alert.ILLEGAL_PARAMETER, id="sni-300-chars"),
    # ALPN
    pytest.param(body_with(ext(16, b"")), Alert.DECODE_ERROR, id="alpn-no-list"),
    pytest.param(body_with(ext(16, b"\x00\x00")), Alert.DECODE_ERROR, id="alpn-empty-list"),
    pytest.param(body_with(alpn(b"h2", b"")), Alert.DECODE_ERROR, id="alpn-empty-name"),
    pytest.param(body_with(ext(16, b"\x00\x03\x05h2")), Alert.DECODE_ERROR, id="alpn-overrun"),
    pytest.param(
        body_with(ext(16, alpn(b"h2")[4:] + b"\x00")), Alert.DECODE_ERROR, id="alpn-stray"
    ),
    # supported_versions
    pytest.param(body_with(versions()), Alert.DECODE_ERROR, id="versions-empty"),
    pytest.param(body_with(ext(43, b"\x03\x03\x04\x03")), Alert.DECODE_ERROR, id="versions-odd"),
    pytest.param(body_with(ext(43, b"\x04\x03\x04")), Alert.DECODE_ERROR, id="versions-overrun"),
]


def test_hand_built_base_is_valid() -> None:
    # The error cases below change one thing each from this hello.
    assert ClientHelloReader().feed(wire(OK)) == ClientHello("ok.test", ("h2",), TLS12, ())


@pytest.mark.parametrize(("data", "alert"), BAD_HELLOS)
def test_bad_hello_is_refused_with_its_alert(data: bytes, alert: Alert) -> None:
    reader = ClientHelloReader()
    with pytest.raises(ClientHelloError) as whole:
        reader.feed(data)
    assert whole.value.alert is alert
    assert not isinstance(whole.value, NotTLSError)
    assert reader.buffered == data
    # The error sticks: the shell may feed again before it notices.
    with pytest.raises(ClientHelloError) as again:
        reader.feed(b"\x00")
    assert again.value is whole.value

    reader = ClientHelloReader()
    with pytest.raises(ClientHelloError) as piecemeal:
        for i in range(len(data)):
            reader.feed(data[i : i + 1])
    assert piecemeal.value.alert is alert


def test_error_reason_is_one_line_naming_the_field() -> None:
    with pytest.raises(ClientHelloError) as err:
        ClientHelloReader().feed(body_with(sni(b"a b.test")))
    assert str(err.value) == err.value.reason == "server_name 'a b.test' is not a DNS host name"
    with pytest.raises(ClientHelloError, match="ClientHello truncated in cipher_suites"):
        ClientHelloReader().feed(wire(hello_body()[:38]))


# -- not TLS at all ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: app.burrow.test\r\n\r\n",
        b"POST /api HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"G",
    ],
)
def test_plain_http_is_not_tls(data: bytes) -> None:
    reader = ClientHelloReader()
    with pytest.raises(NotTLSError) as err:
        reader.feed(data)
    assert err.value.plain_http
    assert err.value.alert is None
    assert "not TLS" in str(err.value)
    assert "https://" in str(err.value)
    assert reader.buffered == data


@pytest.mark.parametrize(
    "data",
    [b"SSH-2.0-OpenSSH_9.6\r\n", b"\x00\x00\x00\x00", b"\r\n", b"\x16\x00\x01\x00\x10"],
)
def test_other_protocols_are_not_tls(data: bytes) -> None:
    with pytest.raises(NotTLSError) as err:
        ClientHelloReader().feed(data)
    assert not err.value.plain_http
    assert err.value.alert is None
    assert "not TLS" in str(err.value)


def test_sslv2_hello_is_refused_without_an_alert() -> None:
    # RFC 5246 Appendix E.2: 2-byte length with the high bit set, msg_type 1, version 3.1.
    sslv2 = b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10" + bytes(0x25)
    with pytest.raises(ClientHelloError, match=r"SSL 2\.0") as err:
        ClientHelloReader().feed(sslv2)
    assert err.value.alert is None
    assert not isinstance(err.value, NotTLSError)


# -- limits ------------------------------------------------------------------------------------


@given(
    pad=st.integers(0, 3000),
    slack=st.integers(-60, 60),
    sizes=st.lists(st.integers(1, 1500), max_size=5),
    cuts=st.lists(st.integers(0, 5000), max_size=10),
)
def test_max_bytes_bounds_the_hello_on_the_wire(
    pad: int, slack: int, sizes: list[int], cuts: list[int]
) -> None:
    data = records(handshake(hello_body(sni(b"pad.test") + padding(pad))), sizes)
    max_bytes = max(len(data) + slack, 64)
    reader = ClientHelloReader(max_bytes=max_bytes)
    fed = 0
    try:
        for chunk in split(data, cuts):
            fed += len(chunk)
            if reader.feed(chunk) is not None:
                break
            # Never more than max_bytes held without a verdict.
            assert fed <= max_bytes
    except ClientHelloError as err:
        assert len(data) > max_bytes
        assert "limit" in err.reason
    else:
        assert len(data) <= max_bytes
        assert reader.feed(b"") == ClientHello("pad.test", (), TLS12, ())


def test_endless_fragments_are_cut_off_at_max_bytes() -> None:
    # A peer that declares a ClientHello that fits and then never finishes it.
    reader = ClientHelloReader(max_bytes=4000)
    first = record(b"\x01\x00\x0f\x00" + bytes(96))
    assert reader.feed(first) is None
    fed = len(first)
    with pytest.raises(ClientHelloError, match="limit"):
        while fed <= 4000:
            assert reader.feed(b"\x16\x03\x03\x00\x64" + bytes(100)) is None
            fed += 105


def test_verdict_comes_by_the_byte_after_max_bytes() -> None:
    # A 194-byte message fits the limit in one record (199 bytes) but is sent in two (204).
    # The first record ends 2 bytes short of the limit, so the limit falls inside the next
    # record header: the reader must not wait for that header to complete.
    message = handshake(hello_body(padding(194 - len(handshake(hello_body(padding(0)))))))
    assert len(message) == 194
    data = records(message, [193])
    reader = ClientHelloReader(max_bytes=200)
    for i in range(200):
        assert reader.feed(data[i : i + 1]) is None
    with pytest.raises(ClientHelloError, match="limit"):
        reader.feed(data[200:201])


def test_max_bytes_must_hold_a_hello() -> None:
    with pytest.raises(ValueError, match="too small"):
        ClientHelloReader(max_bytes=10)


# -- untrusted bytes: ClientHelloError or nothing -----------------------------------------------


def feed_untrusted(data: bytes, cuts: list[int]) -> None:
    """Feed every chunk, as a shell that has not yet looked at the verdict would; the only
    acceptable failure is a ClientHelloError, and every byte must be kept."""
    reader = ClientHelloReader()
    verdicts: set[ClientHello | ClientHelloError | None] = set()
    for chunk in split(data, cuts):
        try:
            verdicts.add(reader.feed(chunk))
        except ClientHelloError as err:
            assert err.reason
            assert "\n" not in err.reason
            verdicts.add(err)
    # At most one outcome besides "need more": the first hello or error, repeated.
    assert len(verdicts - {None}) <= 1
    for verdict in verdicts:
        if isinstance(verdict, ClientHello):
            assert_routable(verdict)
    assert reader.buffered == data


@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_random_bytes_never_crash(data: bytes, cuts: list[int]) -> None:
    feed_untrusted(data, cuts)


@given(
    body=st.binary(max_size=400),
    head=st.sampled_from([b"", b"\x01", b"\x01\x00", b"\x03\x03"]),
    cuts=st.lists(st.integers(0, 500), max_size=8),
)
def test_random_hello_bodies_never_crash(body: bytes, head: bytes, cuts: list[int]) -> None:
    # Correct record and handshake framing around garbage, so the body walker sees it.
    feed_untrusted(wire(head + body), cuts)


extension_type = st.sampled_from([0, 16, 43, 21, 0x0A0A])


@given(
    exts=st.lists(st.tuples(extension_type, st.binary(max_size=40)), max_size=6),
    cuts=st.lists(st.integers(0, 500), max_size=4),
)
def test_random_extension_payloads_never_crash(
    exts: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    feed_untrusted(wire(hello_body(b"".join(ext(t, d) for t, d in exts))), cuts)


@given(
    case=real_cases,
    flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 255)), min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
)
def test_real_hellos_with_flipped_bytes_never_crash(
    case: RealCase, flips: list[tuple[int, int]], cuts: list[int]
) -> None:
    data = bytearray(openssl_client_hello(case))
    for index, mask in flips:
        data[index % len(data)] ^= mask
    feed_untrusted(bytes(data), cuts)


@given(case=real_cases, keep=st.integers(0, 2000), cuts=st.lists(st.integers(0, 2000)))
def test_truncated_real_hello_only_asks_for_more(
    case: RealCase, keep: int, cuts: list[int]
) -> None:
    data = openssl_client_hello(case)
    prefix = data[: keep % len(data)]
    reader = ClientHelloReader()
    assert outcome(reader, split(prefix, cuts)) is None
    assert reader.buffered == prefix
