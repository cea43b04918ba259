"""Sans-IO TLS ClientHello reader: the SNI and ALPN of a connection, read from its first bytes.

Theory of operation
-------------------
The edge picks a route for a TLS connection before it handles the connection: a passthrough
route relays the visitor's bytes raw to a backend that terminates TLS itself, any other route
terminates TLS at the edge. Both need the ClientHello's server_name, and neither may lose a
byte of it. So ``ClientHelloReader`` only looks: it keeps every byte it is fed
(``buffered``), and once ``feed`` returns a ``ClientHello`` the shell hands all of those
bytes on, untouched, to the backend or to its own TLS stack.

A client's first flight is one handshake message carried in one or more records::

    record     | type:8 = 22 | legacy_record_version:16 | length:16 | fragment ...
    handshake  | msg_type:8 = 1 | length:24 | ClientHello body ...

The reader takes records only when they are complete, appends their fragments to a
reassembly buffer, and parses the ClientHello once the handshake header's length is met. A
record holds at most 2^14 bytes and the whole hello is capped by ``max_bytes``, so the work
is linear in the bytes fed however TCP splits them, and memory is bounded before the hello
completes.

States (``_State``)::

    READING --feed completes the hello--> DONE     feed returns the same ClientHello and
                                                   only keeps later bytes
    READING --peer breaks the rules-----> FAILED   feed re-raises the same error

Every error caused by the peer is a ``ClientHelloError`` carrying the alert a TLS server
would send. ``NotTLSError`` is the case where the bytes are not TLS at all and no alert
makes sense; most often it is a plain-HTTP request sent to the TLS port, which deserves an
HTTP answer. Wrong use of the reader itself raises ``ValueError``.

This module parses and checks the encoding; it does not judge what the client offers
(cipher suites, versions, groups). The TLS stack behind it does that.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Alert",
    "ClientHello",
    "ClientHelloError",
    "ClientHelloReader",
    "NotTLSError",
]


class Alert(enum.IntEnum):
    """The TLS alert (RFC 8446 §6.2) a server would answer each kind of bad ClientHello with."""

    UNEXPECTED_MESSAGE = 10
    RECORD_OVERFLOW = 22
    ILLEGAL_PARAMETER = 47
    DECODE_ERROR = 50
    PROTOCOL_VERSION = 70


class ClientHelloError(Exception):
    """The peer's first bytes are not a (supported) TLS ClientHello.

    ``reason`` is one line for logs. ``alert`` is the TLS alert a server would send, or None
    when the peer does not speak TLS records and an alert would mean nothing to it.
    """

    def __init__(self, reason: str, alert: Alert | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.alert = alert


class NotTLSError(ClientHelloError):
    """The first bytes are not TLS at all. ``plain_http`` is set when they look like an HTTP
    request line, so that the edge can answer with a plain-HTTP "use https://" response."""

    def __init__(self, reason: str, plain_http: bool) -> None:
        super().__init__(reason, None)
        self.plain_http = plain_http


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What the edge needs from a ClientHello to route the connection."""

    server_name: str | None
    """RFC 6066 host_name, lowercased, without a trailing dot; None when the client sent no
    SNI (an IP-literal URL, or an old client)."""
    alpn: tuple[str, ...]
    """RFC 7301 protocol names in the client's order of preference; empty without ALPN.
    Names are opaque bytes on the wire, so they are decoded as Latin-1: one str per byte
    string and back, never an error (GREASE names, RFC 8701, are not ASCII)."""
    legacy_version: int
    """ClientHello.legacy_version: 0x0303 from TLS 1.3 clients, the highest version
    otherwise."""
    supported_versions: tuple[int, ...]
    """RFC 8446 §4.2.1 versions as sent, GREASE included; empty when the extension is absent,
    in which case ``legacy_version`` is the client's highest version."""


# -- record layer --------------------------------------------------------------------------

# RFC 8446 §5.1:
#   struct {
#       ContentType type;
#       ProtocolVersion legacy_record_version;
#       uint16 length;
#       opaque fragment[TLSPlaintext.length];
#   } TLSPlaintext;
_RECORD_HEADER: Final = struct.Struct("!BBBH")
_RECORD_HEADER_SIZE: Final = _RECORD_HEADER.size

_CONTENT_HANDSHAKE: Final = 22
_CONTENT_TYPE_NAMES: Final = {
    20: "change_cipher_spec",
    21: "alert",
    22: "handshake",
    23: "application_data",
}

# RFC 8446 §5.1: "The length MUST NOT exceed 2^14 bytes. An endpoint that receives a record
# that exceeds this length MUST terminate the connection with a "record_overflow" alert."
_MAX_RECORD_PAYLOAD: Final = 1 << 14

# RFC 8446 §5.1 says legacy_record_version "MUST be ignored for all purposes", but this
# reader is also how the edge tells TLS from everything else arriving on the port, and
# 0x0301..0x0304 is what every TLS 1.0+ client sends in its first record.
_MIN_RECORD_MINOR: Final = 1
_MAX_RECORD_MINOR: Final = 4

# -- handshake layer -----------------------------------------------------------------------

# RFC 8446 §4:
#   struct {
#       HandshakeType msg_type;    /* handshake type */
#       uint24 length;             /* remaining bytes in message */
#       ...
#   } Handshake;
_HANDSHAKE_HEADER_SIZE: Final = 4
_HANDSHAKE_CLIENT_HELLO: Final = 1

DEFAULT_MAX_BYTES: Final = 16384 + 5 * 4
"""Default cap on the bytes a ClientHello may occupy on the wire, record headers included:
2^14 bytes of handshake data and four record headers. OpenSSL's own hellos are 517 bytes;
post-quantum key shares bring browsers to about 1.8 KiB."""

_EXT_SERVER_NAME: Final = 0
_EXT_ALPN: Final = 16
_EXT_SUPPORTED_VERSIONS: Final = 43

_SNI_HOST_NAME: Final = 0

# RFC 1035 §2.3.4: a name is at most 255 octets on the wire, which is 253 characters in
# dotted text without the trailing dot; a label is at most 63 octets. Underscores are not
# LDH but appear in real host names, so they pass; anything else outside [A-Za-z0-9-.] does
# not, so that routing keys and log lines only ever hold host-name characters.
_MAX_HOST_NAME: Final = 253
_HOST_NAME: Final = re.compile(rb"[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*")


class _State(enum.Enum):
    READING = enum.auto()
    DONE = enum.auto()
    FAILED = enum.auto()


class ClientHelloReader:
    """Feed it the first bytes of a connection; it returns the ClientHello once complete.

    ``feed`` returns None while more bytes are needed and raises ``ClientHelloError`` when
    the bytes cannot be the start of a valid ClientHello. Nothing fed is consumed:
    ``buffered`` is every byte fed so far, to be handed on whole.
    """

    __slots__ = ("_buf", "_error", "_handshake", "_hello", "_pos", "_state", "max_bytes")

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        # The smallest ClientHello is one record header, one handshake header and a 41-byte
        # body (version, random, empty session id, one suite, one compression method).
        if max_bytes < _RECORD_HEADER_SIZE + _HANDSHAKE_HEADER_SIZE + 41:
            raise ValueError(f"max_bytes={max_bytes} is too small to hold any ClientHello")
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._pos = 0  # start of the first record not yet taken
        self._handshake = bytearray()  # fragments of the records taken so far
        self._state = _State.READING
        self._hello: ClientHello | None = None
        self._error: ClientHelloError | None = None

    @property
    def buffered(self) -> bytes:
        """Every byte fed so far, in order, whatever the outcome."""
        return bytes(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> ClientHello | None:
        """Add bytes from the peer. Returns the ClientHello once it is complete (and again on
        every later call), None while more bytes are needed; raises ``ClientHelloError``
        (again on every later call) when the peer is not sending a valid ClientHello."""
        self._buf += data
        if self._state is _State.DONE:
            return self._hello
        if self._state is _State.FAILED:
            assert self._error is not None
            raise self._error
        try:
            hello = self._advance()
        except ClientHelloError as exc:
            self._state = _State.FAILED
            self._error = exc
            raise
        if hello is not None:
            self._state = _State.DONE
            self._hello = hello
        return hello

    def _advance(self) -> ClientHello | None:
        buf = self._buf
        end = len(buf)
        max_bytes = self.max_bytes
        handshake = self._handshake
        while True:
            pos = self._pos
            if pos == 0 and end > 0:
                _sniff(buf)
            if end - pos < _RECORD_HEADER_SIZE:
                break
            ctype, major, minor, length = _RECORD_HEADER.unpack_from(buf, pos)
            if ctype != _CONTENT_HANDSHAKE:
                # RFC 8446 §5.1: "Handshake messages MUST NOT be interleaved with other
                # record types."
                name = _CONTENT_TYPE_NAMES.get(ctype, "unknown")
                raise ClientHelloError(
                    f"{name} record (type {ctype}) inside a fragmented ClientHello",
                    Alert.UNEXPECTED_MESSAGE,
                )
            if major != 3:
                if pos == 0:
                    raise NotTLSError(f"not TLS: record version {major}.{minor}", False)
                raise ClientHelloError(
                    f"record version {major}.{minor} is not TLS", Alert.PROTOCOL_VERSION
                )
            if not _MIN_RECORD_MINOR <= minor <= _MAX_RECORD_MINOR:
                raise ClientHelloError(
                    f"record version 0x03{minor:02x} is not TLS 1.0..1.3",
                    Alert.PROTOCOL_VERSION,
                )
            if length > _MAX_RECORD_PAYLOAD:
                raise ClientHelloError(
                    f"record of {length} bytes exceeds the 2^14 limit", Alert.RECORD_OVERFLOW
                )
            if length == 0:
                # RFC 5246 §6.2.1: "Implementations MUST NOT send zero-length fragments of
                # Handshake, Alert, or ChangeCipherSpec content types."
                raise ClientHelloError("empty handshake record", Alert.DECODE_ERROR)
            record_end = pos + _RECORD_HEADER_SIZE + length
            if record_end > max_bytes:
                raise _too_large(max_bytes)
            if record_end > end:
                break
            handshake += buf[pos + _RECORD_HEADER_SIZE : record_end]
            self._pos = record_end
            if handshake[0] != _HANDSHAKE_CLIENT_HELLO:
                raise ClientHelloError(
                    f"handshake message type {handshake[0]} where a ClientHello was expected",
                    Alert.UNEXPECTED_MESSAGE,
                )
            if len(handshake) < _HANDSHAKE_HEADER_SIZE:
                continue
            message_end = _HANDSHAKE_HEADER_SIZE + int.from_bytes(handshake[1:4], "big")
            # Cheapest early refusal: the message alone, in one record, cannot fit.
            if message_end + _RECORD_HEADER_SIZE > max_bytes:
                raise _too_large(max_bytes)
            if len(handshake) < message_end:
                continue
            if len(handshake) > message_end:
                # Nothing may follow a ClientHello in its flight until the server answers,
                # and RFC 8446 §5.1 requires a message before a key change (0-RTT) to end
                # at a record boundary.
                raise ClientHelloError(
                    "ClientHello does not end at a record boundary", Alert.UNEXPECTED_MESSAGE
                )
            return _parse_client_hello(bytes(handshake[_HANDSHAKE_HEADER_SIZE:]))
        if end > max_bytes:
            raise _too_large(max_bytes)
        return None


def _too_large(max_bytes: int) -> ClientHelloError:
    return ClientHelloError(
        f"ClientHello larger than the {max_bytes}-byte limit", Alert.ILLEGAL_PARAMETER
    )


# Every HTTP method (RFC 9110 §9, RFC 5789) and the HTTP/2 preface "PRI * HTTP/2.0" (RFC
# 9113 §3.4) starts with an uppercase token and a space. The first byte alone already rules
# TLS out, so the reader decides on what has arrived and never waits for more.
_HTTP_REQUEST_START: Final = re.compile(rb"[A-Z]+(?: |\Z)")
_SNIFF_BYTES: Final = 16


def _sniff(buf: bytearray) -> None:
    """Fail fast on a first byte that cannot start a TLS handshake record."""
    first = buf[0]
    if first == _CONTENT_HANDSHAKE:
        return
    if first in _CONTENT_TYPE_NAMES:
        raise ClientHelloError(
            f"first record is {_CONTENT_TYPE_NAMES[first]}, not a handshake",
            Alert.UNEXPECTED_MESSAGE,
        )
    if first & 0x80:
        # RFC 5246 Appendix E.2: an SSL 2.0 CLIENT-HELLO starts with a two-byte length
        # whose high bit is set. RFC 6176 prohibits SSL 2.0.
        raise ClientHelloError(
            "SSL 2.0-style ClientHello or not TLS: the client must send TLS records",
            None,
        )
    head = bytes(buf[:_SNIFF_BYTES])
    if _HTTP_REQUEST_START.match(head):
        raise NotTLSError(
            f"not TLS: plain HTTP ({head!r}) sent to a TLS port; use an https:// URL",
            plain_http=True,
        )
    raise NotTLSError(f"not TLS: first bytes {head!r} cannot start a TLS record", False)


# -- ClientHello body ----------------------------------------------------------------------


class _Cursor:
    """Bounds-checked reads over ``data[pos:end]``; every overrun is a decode_error."""

    __slots__ = ("_data", "_end", "_pos", "_what")

    def __init__(self, data: bytes, what: str, pos: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = pos
        self._end = len(data) if end is None else end
        self._what = what

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def _need(self, n: int, field: str) -> int:
        pos = self._pos
        if self._end - pos < n:
            raise ClientHelloError(f"{self._what} truncated in {field}", Alert.DECODE_ERROR)
        self._pos = pos + n
        return pos

    def u8(self, field: str) -> int:
        return self._data[self._need(1, field)]

    def u16(self, field: str) -> int:
        pos = self._need(2, field)
        return (self._data[pos] << 8) | self._data[pos + 1]

    def skip(self, n: int, field: str) -> None:
        self._need(n, field)

    def vector(self, length_size: int, field: str) -> _Cursor:
        """A length-prefixed vector (RFC 8446 §3.4) as a cursor of its own."""
        length = self.u8(field) if length_size == 1 else self.u16(field)
        start = self._need(length, field)
        return _Cursor(self._data, field, start, start + length)

    def rest(self) -> bytes:
        data = self._data[self._pos : self._end]
        self._pos = self._end
        return data

    def expect_end(self) -> None:
        if self._pos != self._end:
            raise ClientHelloError(
                f"{self._end - self._pos} stray bytes after {self._what}", Alert.DECODE_ERROR
            )


def _parse_client_hello(body: bytes) -> ClientHello:
    # RFC 8446 §4.1.2:
    #   struct {
    #       ProtocolVersion legacy_version = 0x0303;    /* TLS v1.2 */
    #       Random random;
    #       opaque legacy_session_id<0..32>;
    #       CipherSuite cipher_suites<2..2^16-2>;
    #       opaque legacy_compression_methods<1..2^8-1>;
    #       Extension extensions<8..2^16-1>;
    #   } ClientHello;
    # RFC 5246 §7.4.1.2: "The presence of extensions can be detected by determining whether
    # there are bytes following the compression_methods at the end of the ClientHello."
    hello = _Cursor(body, "ClientHello")
    legacy_version = hello.u16("legacy_version")
    # RFC 8446 Appendix D.5: "Any endpoint receiving a Hello message with
    # ClientHello.legacy_version or ServerHello.legacy_version set to 0x0300 MUST abort the
    # handshake with a "protocol_version" alert."
    if legacy_version >> 8 != 3 or legacy_version & 0xFF == 0:
        raise ClientHelloError(
            f"ClientHello version {legacy_version:#06x} is not TLS 1.0 or later",
            Alert.PROTOCOL_VERSION,
        )
    hello.skip(32, "random")
    session_id = hello.vector(1, "legacy_session_id")
    if session_id.remaining > 32:
        raise ClientHelloError(
            f"legacy_session_id of {session_id.remaining} bytes exceeds 32", Alert.DECODE_ERROR
        )
    suites = hello.vector(2, "cipher_suites")
    if suites.remaining < 2 or suites.remaining % 2:
        raise ClientHelloError(
            f"cipher_suites of {suites.remaining} bytes is not a list of 2-byte suites",
            Alert.DECODE_ERROR,
        )
    compression = hello.vector(1, "legacy_compression_methods").rest()
    if not compression:
        raise ClientHelloError("empty legacy_compression_methods", Alert.DECODE_ERROR)
    # RFC 5246 §7.4.1.2: "this vector MUST contain, and all implementations MUST support,
    # CompressionMethod.null."
    if 0 not in compression:
        raise ClientHelloError(
            "legacy_compression_methods lacks the null method", Alert.ILLEGAL_PARAMETER
        )
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    supported_versions: tuple[int, ...] = ()
    if hello.remaining:
        extensions = hello.vector(2, "extensions")
        hello.expect_end()
        seen: set[int] = set()
        while extensions.remaining:
            # RFC 8446 §4.2:
            #   struct {
            #       ExtensionType extension_type;
            #       opaque extension_data<0..2^16-1>;
            #   } Extension;
            # "There MUST NOT be more than one extension of the same type in a given
            # extension block."
            ext_type = extensions.u16("extension_type")
            if ext_type in seen:
                raise ClientHelloError(
                    f"extension {ext_type} appears twice", Alert.ILLEGAL_PARAMETER
                )
            seen.add(ext_type)
            if ext_type == _EXT_SERVER_NAME:
                server_name = _parse_server_name(extensions.vector(2, "server_name"))
            elif ext_type == _EXT_ALPN:
                alpn = _parse_alpn(extensions.vector(2, "application_layer_protocol_negotiation"))
            elif ext_type == _EXT_SUPPORTED_VERSIONS:
                supported_versions = _parse_supported_versions(
                    extensions.vector(2, "supported_versions")
                )
            else:
                extensions.vector(2, f"extension {ext_type}")
    return ClientHello(
        server_name=server_name,
        alpn=alpn,
        legacy_version=legacy_version,
        supported_versions=supported_versions,
    )


def _parse_server_name(data: _Cursor) -> str:
    # RFC 6066 §3:
    #   struct {
    #       NameType name_type;
    #       select (name_type) {
    #           case host_name: HostName;
    #       } name;
    #   } ServerName;
    #   enum { host_name(0), (255) } NameType;
    #   opaque HostName<1..2^16-1>;
    #   struct {
    #       ServerName server_name_list<1..2^16-1>
    #   } ServerNameList;
    # "The ServerNameList MUST NOT contain more than one name of the same name_type."
    # No other name_type was ever defined, and one could not be skipped anyway: its
    # encoding would be unknown. So, as OpenSSL does, accept exactly one host_name.
    names = data.vector(2, "server_name_list")
    data.expect_end()
    name_type = names.u8("server_name name_type")
    if name_type != _SNI_HOST_NAME:
        raise ClientHelloError(f"server_name of unknown name_type {name_type}", Alert.DECODE_ERROR)
    raw = names.vector(2, "server_name host_name").rest()
    if names.remaining:
        raise ClientHelloError("server_name_list holds more than one name", Alert.DECODE_ERROR)
    if not raw:
        raise ClientHelloError("empty server_name", Alert.DECODE_ERROR)
    # "The hostname is represented as a byte string using ASCII encoding without a trailing
    # dot. This allows the support of internationalized domain names through the use of
    # A-labels defined in [RFC5890]."
    if not raw.isascii():
        raise ClientHelloError(
            "server_name is not ASCII: an internationalised name must be sent as its "
            "A-label (xn--...)",
            Alert.ILLEGAL_PARAMETER,
        )
    # Some clients send the absolute form anyway; it names the same host.
    if raw.endswith(b"."):
        raw = raw[:-1]
    if len(raw) > _MAX_HOST_NAME:
        raise ClientHelloError(
            f"server_name of {len(raw)} characters exceeds the {_MAX_HOST_NAME} DNS allows",
            Alert.ILLEGAL_PARAMETER,
        )
    if _HOST_NAME.fullmatch(raw) is None:
        raise ClientHelloError(
            f"server_name {raw.decode('ascii')!r} is not a DNS host name",
            Alert.ILLEGAL_PARAMETER,
        )
    # DNS names compare case-insensitively (RFC 4343); routes are keyed in lowercase.
    return raw.decode("ascii").lower()


def _parse_alpn(data: _Cursor) -> tuple[str, ...]:
    # RFC 7301 §3.1:
    #   opaque ProtocolName<1..2^8-1>;
    #   struct {
    #       ProtocolName protocol_name_list<2..2^16-1>
    #   } ProtocolNameList;
    # "Empty strings MUST NOT be included and byte strings MUST NOT be truncated."
    names = data.vector(2, "protocol_name_list")
    data.expect_end()
    if not names.remaining:
        raise ClientHelloError("empty ALPN protocol_name_list", Alert.DECODE_ERROR)
    protocols: list[str] = []
    while names.remaining:
        name = names.vector(1, "ALPN protocol name").rest()
        if not name:
            raise ClientHelloError("empty ALPN protocol name", Alert.DECODE_ERROR)
        protocols.append(name.decode("latin-1"))
    return tuple(protocols)


def _parse_supported_versions(data: _Cursor) -> tuple[int, ...]:
    # RFC 8446 §4.2.1:
    #   struct {
    #       select (Handshake.msg_type) {
    #           case client_hello:
    #                ProtocolVersion versions<2..254>;
    #           ...
    #       };
    #   } SupportedVersions;
    versions = data.vector(1, "supported_versions")
    data.expect_end()
    if versions.remaining < 2 or versions.remaining % 2:
        raise ClientHelloError(
            f"supported_versions of {versions.remaining} bytes is not a list of versions",
            Alert.DECODE_ERROR,
        )
    return tuple(versions.u16("supported_versions") for _ in range(versions.remaining // 2))
