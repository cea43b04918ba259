"""Message framing and the writer half, shared by the implementations that frame their own
output (``native`` and ``httptools``).

Framing follows RFC 9112 section 6: a request with both Transfer-Encoding and Content-Length,
several differing Content-Lengths, or a transfer coding other than a final ``chunked`` is
refused (these are the request-smuggling shapes); a response without either is read until
close. Hop-by-hop headers (RFC 9110 7.6.1: Connection, the names it lists, Keep-Alive,
Proxy-Connection) are not relayed; the writer frames what it sends itself and says
``connection: close`` when this connection will close after the message.
"""

from __future__ import annotations

from typing import Any, Final

from edge.http1.events import (
    Framing,
    Headers,
    ParseError,
    RequestHead,
    ResponseHead,
    UsageError,
)
from proto.receive import append_unread

HOP_BY_HOP: Final = frozenset((b"connection", b"keep-alive", b"proxy-connection"))

# How a message's body is delimited (``message_framing``). The values are native's reader
# states for the same bodies, so its reader can take them as they are.
BODY_LENGTH: Final = 1
BODY_CHUNKED: Final = 2
BODY_CLOSE: Final = 3
BODY_NONE: Final = 7

# Writer states.
W_IDLE: Final = 0  # no message started
W_BODY: Final = 1  # head sent, body may follow
W_DONE: Final = 2

# Writer framing.
W_NONE: Final = 0  # no body may follow (HEAD, 1xx, 204, 304, bodiless request)
W_LENGTH: Final = 1
W_CHUNKED: Final = 2
W_CLOSE: Final = 3  # body delimited by closing the connection


def connection_tokens(headers: Headers) -> set[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    return tokens


def hop_by_hop_stripped(headers: Headers, keep_upgrade: bool) -> Headers:
    """Drop hop-by-hop headers; with ``keep_upgrade`` keep ``connection: upgrade`` and
    ``upgrade`` so a protocol switch can be relayed."""
    listed = connection_tokens(headers)
    if keep_upgrade:
        listed.discard(b"upgrade")
    else:
        listed.add(b"upgrade")
    out = [(n, v) for n, v in headers if n not in HOP_BY_HOP and n not in listed]
    if keep_upgrade:
        out.append((b"connection", b"upgrade"))
    return out


def message_framing(headers: Headers, is_request: bool) -> Framing:
    """(BODY_* kind, length) for a message with these headers (RFC 9112 6.3)."""
    te: bytes | None = None
    lengths: list[bytes] = []
    for name, value in headers:
        if name == b"transfer-encoding":
            te = value if te is None else te + b"," + value
        elif name == b"content-length":
            lengths.append(value)
    return body_framing(te, lengths, is_request)


def _digits(value: bytes) -> int:
    """The number that 1 to 18 ASCII digits spell, or -1 for any other bytes."""
    n = len(value)
    if n == 0 or n > 18:
        return -1
    number = 0
    for i in range(n):
        digit = value[i] - 48
        if digit < 0 or digit > 9:
            return -1
        number = number * 10 + digit
    return number


def body_framing(te: bytes | None, lengths: list[bytes], is_request: bool) -> Framing:
    """The framing of a message from its Transfer-Encoding values joined by commas (None
    without one) and its Content-Length field values (RFC 9112 6.3)."""
    if te is not None:
        if lengths and is_request:
            raise ParseError("both Transfer-Encoding and Content-Length")
        # Only blanks are trimmed (RFC 9110 5.6.1 OWS): ``bytes.strip`` would also take VT,
        # FF and the separator controls, so ``\x0bchunked`` would pass for chunked here and
        # for something else in the local service (a request-smuggling shape).
        codings = [c.strip(b" \t").lower() for c in te.split(b",")]
        if codings[-1] == b"chunked":
            if is_request and codings != [b"chunked"]:
                raise ParseError("unsupported transfer coding", 501)
            return BODY_CHUNKED, 0
        if is_request:
            raise ParseError("the final transfer coding of a request must be chunked")
        return BODY_CLOSE, 0
    if not lengths:
        return (BODY_NONE, 0) if is_request else (BODY_CLOSE, 0)
    if len(lengths) == 1:
        # The usual one: a single plain number, read by a loop that compiles to arithmetic
        # (strip, isdigit and int() are generic calls there).
        length = _digits(lengths[0])
        if length >= 0:
            return BODY_LENGTH, length
    value = lengths[0].strip(b" \t")
    if len(lengths) > 1 or b"," in value:
        # Several fields, or a list in one: all the same value, or the message is refused.
        values = {v.strip(b" \t") for field in lengths for v in field.split(b",")}
        if len(values) > 1:
            raise ParseError("conflicting Content-Length values")
        (value,) = values
    if not value.isdigit() or len(value) > 18:
        raise ParseError(f"bad Content-Length {value[:20]!r}")
    return BODY_LENGTH, int(value)


# The headers a head is read for in ``request_facts`` and ``response_facts``; any other is
# passed over with one set lookup.
_NOTABLE: Final = frozenset(
    (b"host", b"content-length", b"transfer-encoding", b"expect", b"upgrade", *HOP_BY_HOP)
)


def _connection_tokens(tokens: set[bytes] | None, value: bytes) -> set[bytes]:
    """``tokens`` with those of one more Connection field value, lower-cased."""
    more = {t.strip().lower() for t in value.split(b",")}
    return more if tokens is None else tokens | more


def _closes(tokens: set[bytes] | None, http10: bool) -> bool:
    """Whether the connection ends after a message with these Connection tokens: ``close``,
    or HTTP/1.0 without ``keep-alive``."""
    if tokens is None:
        return http10
    return b"close" in tokens or (http10 and b"keep-alive" not in tokens)


def request_facts(headers: Headers, http10: bool) -> tuple[Framing, bool, bool, bool, bool]:
    """Read a request's headers once: its framing, whether the connection closes after it,
    whether it asks for an upgrade, whether it waits for ``100 Continue``, and whether it
    holds no hop-by-hop field (it may be forwarded as it is). Raises ``ParseError`` for
    framing and Host violations."""
    te: bytes | None = None
    lengths: list[bytes] = []
    tokens: set[bytes] | None = None  # of Connection fields, which few requests have
    hosts = 0
    upgrade_field = expects = False
    plain = True
    for name, value in headers:
        if name not in _NOTABLE:
            continue
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            te = value if te is None else te + b"," + value
        elif name == b"expect":
            expects = expects or value.lower() == b"100-continue"
        else:
            plain = False
            if name == b"connection":
                tokens = _connection_tokens(tokens, value)
            elif name == b"upgrade":
                upgrade_field = True
    framing = body_framing(te, lengths, is_request=True)
    kind = framing[0]
    if http10 and kind == BODY_CHUNKED:
        raise ParseError("chunked transfer coding in an HTTP/1.0 request")
    if hosts > 1 or (hosts == 0 and not http10):
        raise ParseError("a request needs exactly one Host header")
    close_after = _closes(tokens, http10)
    upgrade = upgrade_field and tokens is not None and b"upgrade" in tokens
    # Only a body that is still to come is worth a 100 (RFC 9110 10.1.1).
    has_body = kind == BODY_CHUNKED or (kind == BODY_LENGTH and framing[1] > 0)
    return framing, close_after, upgrade, expects and not http10 and has_body, plain


def response_facts(headers: Headers, http10: bool, bodiless: bool) -> tuple[Framing, bool, bool]:
    """Read a final response's headers once: its framing (none when ``bodiless``: the answer
    to HEAD, a 204 or a 304), whether the connection closes after it, and whether it holds
    no hop-by-hop field."""
    te: bytes | None = None
    lengths: list[bytes] = []
    tokens: set[bytes] | None = None
    plain = True
    for name, value in headers:
        if name not in _NOTABLE:
            continue
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            te = value if te is None else te + b"," + value
        elif name in HOP_BY_HOP or name == b"upgrade":
            plain = False
            if name == b"connection":
                tokens = _connection_tokens(tokens, value)
    framing = (BODY_NONE, 0) if bodiless else body_framing(te, lengths, is_request=False)
    close_after = framing[0] == BODY_CLOSE or _closes(tokens, http10)
    return framing, close_after, plain


class ReceiveBuffer:
    """The incoming bytes of one connection with a read offset (``proto.receive``: linear in
    the bytes received, one copy for what is sliced out), and whether the peer has closed."""

    __slots__ = ("_buf", "_eof", "_max_head", "_pos", "_scanned", "state")

    def __init__(self, max_head: int) -> None:
        # Where the reader is in a message: a ``READ_*`` state or a ``BODY_*`` kind.
        self.state = READ_HEAD
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._scanned = 0  # bytes after _pos already searched for the end of a head
        self._max_head = max_head
        self._eof = False

    def feed(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        if self._eof:
            return
        self._buf, self._pos = append_unread(self._buf, self._pos, data)

    def rest(self) -> bytes:
        data = bytes(self._buf[self._pos :])
        self._pos = len(self._buf)
        return data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos


class Writer:
    """Frames our outgoing messages."""

    __slots__ = ("framing", "remaining", "state")

    def __init__(self) -> None:
        self.framing = W_NONE
        self.remaining = 0
        self.state = W_IDLE

    @staticmethod
    def head_bytes(start_line: bytes, headers: Headers) -> bytes:
        parts = [start_line]
        for name, value in headers:
            parts.append(name + b": " + value)
        parts.append(b"\r\n")
        return b"\r\n".join(parts)

    def data(self, data: bytes) -> bytes:
        if self.state != W_BODY:
            raise UsageError("no message body is being sent")
        if not data:
            return b""
        framing = self.framing
        if framing == W_LENGTH:
            if len(data) > self.remaining:
                raise UsageError("more body than its Content-Length")
            self.remaining -= len(data)
            return data
        if framing == W_CHUNKED:
            return b"%x\r\n" % len(data) + data + b"\r\n"
        if framing == W_CLOSE:
            return data
        return b""  # HEAD and bodiless responses: the body is not sent

    def end(self, trailers: Headers | None) -> bytes:
        if self.state != W_BODY:
            raise UsageError("no message body is being sent")
        self.state = W_DONE
        if self.framing == W_CHUNKED:
            if trailers:
                return b"0\r\n" + self.head_bytes(b"", trailers)[2:]
            return b"0\r\n\r\n"
        if self.framing == W_LENGTH and self.remaining:
            raise UsageError("body shorter than its Content-Length")
        return b""


def frame_response(
    writer: Writer, head: ResponseHead, bodiless: bool, http10: bool
) -> tuple[Headers, bool]:
    """Set ``writer`` up for a final response. Returns the headers to send (hop-by-hop
    stripped, framing rewritten; the head's own list when nothing changes, so copy it before
    adding to it) and whether the body ends by closing the connection. ``bodiless``: the
    request was HEAD."""
    framing = head.framing
    if framing is None:
        headers = hop_by_hop_stripped(head.headers, keep_upgrade=False)
    else:
        headers = head.headers  # read by the parser already: nothing to strip
    if bodiless or head.status in (204, 304):
        writer.framing = W_NONE
        return headers, False
    kind, length = message_framing(headers, is_request=False) if framing is None else framing
    if kind == BODY_LENGTH:
        writer.framing = W_LENGTH
        writer.remaining = length
        return headers, False
    if http10:
        # An HTTP/1.0 client knows no chunked coding (RFC 9112 6.1): the body ends when the
        # connection does.
        headers = [
            (n, v)
            for n, v in headers
            if n != b"content-length"
            and not (n == b"transfer-encoding" and v.strip().lower() == b"chunked")
        ]
        writer.framing = W_CLOSE
        return headers, True
    # Chunked, or of unknown length (chunk it, so the connection can be reused).
    # Transfer-Encoding overrides Content-Length (RFC 9112 6.3), which must go.
    codings = b", ".join(v for n, v in headers if n == b"transfer-encoding")
    headers = [(n, v) for n, v in headers if n not in (b"transfer-encoding", b"content-length")]
    if kind != BODY_CHUNKED:
        codings = codings + b", chunked" if codings else b"chunked"
    headers.append((b"transfer-encoding", codings))
    writer.framing = W_CHUNKED
    return headers, False


def informational_head(head_status: int, reason: bytes, headers: Headers) -> bytes:
    """A 1xx head; a 101 keeps the upgrade headers."""
    headers = hop_by_hop_stripped(headers, keep_upgrade=head_status == 101)
    return Writer.head_bytes(b"HTTP/1.1 %d %s" % (head_status, reason), headers)


def frame_request(writer: Writer, head: RequestHead) -> tuple[bytes, bool]:
    """Set ``writer`` up for a request; returns its head bytes and whether it asks for an
    upgrade."""
    framing = head.framing
    if framing is not None and head.fields is not None:
        # The lines as read: no hop-by-hop field, so no upgrade either.
        _set_request_framing(writer, framing)
        start = head.method + b" " + head.target + b" HTTP/1.1\r\n"
        return start + head.fields + b"\r\n", False
    if framing is None:
        tokens = connection_tokens(head.headers)
        upgrade = b"upgrade" in tokens and any(n == b"upgrade" for n, _ in head.headers)
        headers = hop_by_hop_stripped(head.headers, keep_upgrade=upgrade)
        kind, length = message_framing(headers, is_request=True)
    else:
        # Read by the parser already: no hop-by-hop field, so no upgrade either.
        headers, upgrade = head.headers, False
        kind, length = framing
    _set_request_framing(writer, (kind, length))
    line = head.method + b" " + head.target + b" HTTP/1.1"
    return Writer.head_bytes(line, headers), upgrade


def _set_request_framing(writer: Writer, framing: Framing) -> None:
    kind, length = framing
    if kind == BODY_LENGTH:
        writer.framing = W_LENGTH
        writer.remaining = length
    elif kind == BODY_CHUNKED:
        writer.framing = W_CHUNKED
    else:
        writer.framing = W_NONE
    writer.state = W_BODY


# Reader states both parsing implementations use for a message's life (the values are
# shared so the writing half below can read them).
READ_HEAD: Final = 0
READ_DONE: Final = 4
READ_SWITCHED: Final = 5
READ_DONE_PENDING: Final = 7


class ResponseWriting:
    """The server role's writing half, the same whichever parser reads the requests.

    Subclasses hold the state in their slots and say how the reader starts on the next
    message (``_next_message``).
    """

    __slots__ = (
        "_close_after",
        "_continue",
        "_http10",
        "_request_method",
        "_upgrade",
        "_writer",
        "reader",
    )

    _writer: Writer
    # Each implementation's own reader class. Methods read it into a local typed as that class
    # (or as ReceiveBuffer, for its state): compiled (compiled/), attributes of a typed local
    # are read from the object's struct, those of an Any through a generic lookup. As Python,
    # the annotation costs nothing where a cast() would be a call.
    reader: Any
    _upgrade: bool
    _continue: bool
    _close_after: bool
    _http10: bool
    _request_method: bytes

    def _next_message(self) -> None:
        raise NotImplementedError

    def send_informational(self, head: ResponseHead) -> bytes:
        if self._writer.state != W_IDLE:
            raise UsageError("an informational response after the final one")
        if head.status == 101:
            if not self._upgrade:
                raise UsageError("101 without an upgrade request")
            self.reader.state = READ_SWITCHED
            self._writer.state = W_DONE
        else:
            self._continue = False
        return informational_head(head.status, head.reason or b"", head.headers)

    def close_after_response(self) -> None:
        self._close_after = True

    def send_response(self, head: ResponseHead) -> bytes:
        writer = self._writer
        if writer.state != W_IDLE:
            raise UsageError("a response is already being sent")
        self._continue = False
        self._upgrade = False
        headers, close_delimited = frame_response(
            writer, head, self._request_method == b"HEAD", self._http10
        )
        reader: ReceiveBuffer = self.reader
        if close_delimited or reader.state not in (READ_DONE, READ_DONE_PENDING):
            # Close-delimited, or answering before the request body was read: the rest of
            # it cannot be skipped reliably, so this connection ends with the response.
            self._close_after = True
        writer.state = W_BODY
        line = b"HTTP/1.1 %d %s" % (head.status, head.reason or b"")
        if self._close_after:
            headers = [*headers, (b"connection", b"close")]
        elif self._http10:
            headers = [*headers, (b"connection", b"keep-alive")]  # 1.0 clients wait for it
        elif head.fields is not None and headers is head.headers:
            # Framed as it came, nothing added: the lines as read.
            return line + b"\r\n" + head.fields + b"\r\n"
        return Writer.head_bytes(line, headers)

    def send_data(self, data: bytes) -> bytes:
        return self._writer.data(data)

    def send_end(self, trailers: Headers | None = None) -> bytes:
        return self._writer.end(trailers)

    def start_next_cycle(self) -> bool:
        reader: ReceiveBuffer = self.reader
        if self._close_after or reader.state != READ_DONE or self._writer.state != W_DONE:
            return False
        self._next_message()
        return True


class RequestWriting:
    """The client role's writing half, the same whichever parser reads the responses.

    Subclasses say how the reader gets ready for the next response (``_next_message``).
    """

    __slots__ = ("_close_after", "_method", "_upgrade", "_writer", "reader")

    _writer: Writer
    reader: Any
    _upgrade: bool
    _close_after: bool
    _method: bytes

    def _next_message(self) -> None:
        pass

    def send_request(self, head: RequestHead) -> bytes:
        writer = self._writer
        if writer.state != W_IDLE:
            raise UsageError("a request is already being sent")
        wire, self._upgrade = frame_request(writer, head)
        self._method = head.method
        self._close_after = False
        reader: ReceiveBuffer = self.reader
        reader.state = READ_HEAD
        return wire

    def send_data(self, data: bytes) -> bytes:
        if self._writer.framing == W_NONE and data:
            raise UsageError("the request has no body framing")
        return self._writer.data(data)

    def send_end(self, trailers: Headers | None = None) -> bytes:
        return self._writer.end(trailers)

    def start_next_cycle(self) -> bool:
        reader: ReceiveBuffer = self.reader
        if self._close_after or reader.state != READ_DONE or self._writer.state != W_DONE:
            return False
        self._next_message()
        self._writer.state = W_IDLE
        return True
