"""Burrow's own HTTP/1.1 implementation of the connection interface: the fast path.

Theory of operation
-------------------
Each connection is two half-machines: a *reader* for the peer's messages and a *writer* for
ours. The reader keeps the bytes received and a read offset (``ReceiveBuffer``: linear in
the bytes received however they are split, one copy for what is sliced out), finds a head
with one search for the blank line, splits it in C (``bytes.split``) and checks every line;
bodies are sliced, never scanned byte by byte.

A *clean* head, the usual one, has no NUL and no CR or LF but its line ends. Its lines are
checked with bytes methods (``partition``, ``translate``, ``strip``), a few C calls a line;
a line those checks refuse, and every line of any other head, goes through strict patterns
that say exactly what is wrong. Both accept the same lines and read the same fields.

Reader states, per message::

    HEAD --(head parsed)--> BODY_LENGTH | BODY_CHUNKED | BODY_CLOSE | DONE
    BODY_* --(body complete)--> DONE --(start_next_cycle)--> HEAD
    DONE --(101 / upgrade accepted)--> SWITCHED (everything after is ``trailing_data``)

Framing and the writer half are shared with the httptools implementation
(``edge.http1.framing``), which states the RFC 9112 rules they follow.

Written to pass the same tests as the h11 reference implementation (tests/edge/http1).
"""

from __future__ import annotations

import re
import string
from typing import Final

from edge.http1.events import (
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    Headers,
    ParseError,
    RequestHead,
    ResponseHead,
)
from edge.http1.framing import (
    BODY_CHUNKED,
    BODY_CLOSE,
    BODY_LENGTH,
    BODY_NONE,
    READ_DONE,
    READ_HEAD,
    READ_SWITCHED,
    W_DONE,
    W_IDLE,
    ReceiveBuffer,
    RequestWriting,
    ResponseWriting,
    Writer,
    request_facts,
    response_facts,
)

_HEAD_END: Final = re.compile(rb"\r?\n\r?\n")
# tchar (RFC 9110 5.6.2), for the patterns and the byte tables below alike.
_TOKEN_BYTES: Final = b"-!#$%&'*+.^_`|~" + (string.digits + string.ascii_letters).encode()
_TOKEN: Final = b"[" + re.escape(_TOKEN_BYTES) + b"]+"
# The value is runs of non-blank bytes with the blanks between them, trimmed at both ends,
# matched possessively (``*+``, ``++``: Python 3.11) so the engine never backtracks. The lazy
# ``[^\x00\r\n]*?`` before ``[ \t]*`` that says the same tries the end of the line after
# every byte of the value (twice the time on a 60-byte User-Agent, on every header of every
# request), and on a line of blanks ending in a NUL it backtracks for minutes.
_FIELD_VALUE: Final = rb"(?:[^\x00\r\n \t]++(?:[ \t]++[^\x00\r\n \t]++)*+)?"
_HEADER_LINE: Final = re.compile(rb"(" + _TOKEN + rb"):[ \t]*+(" + _FIELD_VALUE + rb")[ \t]*+")
_REQUEST_LINE: Final = re.compile(rb"(" + _TOKEN + rb") ([^\x00-\x20\x7f]+) HTTP/(\d)\.(\d)")
_STATUS_LINE: Final = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: ([^\x00\r\n]*))?")
_CHUNK_SIZE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")
# The bytes-method checks of a clean head's lines (see the module docstring).
# ``translate`` tables: a table (unlike a set of bytes to delete) costs no set-up per call.
# A token byte stays itself (lower-cased, for field names); any other byte becomes 0x80, so
# a token is one whose translation holds no 0x80.
_TOKEN_CHECK: Final = bytes(b if b in _TOKEN_BYTES else 0x80 for b in range(256))
_NAME_CHECK: Final = _TOKEN_CHECK.lower()
# A byte a request target may not hold becomes a space, which a target never holds (the
# request line is split at spaces): a target is good if its translation is itself.
_TARGET_CHECK: Final = bytes(0x20 if b <= 0x20 or b == 0x7F else b for b in range(256))
_MAX_CHUNK_LINE: Final = 4096
_MAX_TRAILERS: Final = 16 * 1024

# Reader states.
_HEAD: Final = READ_HEAD
_BODY_LENGTH: Final = BODY_LENGTH
_BODY_CHUNKED: Final = BODY_CHUNKED
_BODY_CLOSE: Final = BODY_CLOSE
_DONE: Final = READ_DONE
_SWITCHED: Final = READ_SWITCHED
_CLOSED: Final = 6

# Chunked sub-states.
_CHUNK_SIZE_LINE: Final = 0
_CHUNK_DATA: Final = 1
_CHUNK_CRLF: Final = 2
_CHUNK_TRAILERS: Final = 3


def _clean(lines: list[bytes]) -> bool:
    """Whether the lines of a head split at CRLF hold no NUL, CR or LF (``in`` with an int is
    a ``memchr``)."""
    joined = b"".join(lines)
    return not (0 in joined or 13 in joined or 10 in joined)


class _Reader(ReceiveBuffer):
    """Parses one role's incoming messages; subclasses parse the start line."""

    __slots__ = ("_chunk_state", "_remaining", "_trailers", "clean")

    def __init__(self, max_head: int) -> None:
        super().__init__(max_head)
        self._remaining = 0
        self._chunk_state = _CHUNK_SIZE_LINE
        self._trailers: Headers = []
        self.clean = False  # whether the last head's lines hold no NUL, CR or LF

    def _head_lines(self) -> list[bytes] | None:
        buf = self._buf
        pos = self._pos
        # The usual read: a whole head at the start of a buffer that is one read, before its
        # body if it has one. One C call (``partition``, compiled a third cheaper than
        # ``find`` with a start and a slice) cuts the head out and leaves the body as the
        # buffer, which ``_body_events`` hands on without slicing it again. Any other case,
        # and a head that is not clean, takes the general path below.
        if pos == 0 and self._scanned == 0 and isinstance(buf, bytes) and buf:
            first = buf[0]
            if first != 10 and first != 13:
                whole, found, rest = buf.partition(b"\r\n\r\n")
                if found and len(whole) <= self._max_head:
                    lines = whole.split(b"\r\n")
                    if _clean(lines):
                        self._buf = rest
                        self.clean = True
                        return lines
        # Leading empty lines before a request line are tolerated (RFC 9112 2.2).
        if pos < len(buf) and (buf[pos] == 10 or buf[pos] == 13):
            while buf.startswith(b"\r\n", pos) or buf.startswith(b"\n", pos):
                pos += 2 if buf[pos] == 13 else 1
            self._pos = pos
            self._scanned = 0
        # Search only the new bytes (less the 3 that may start the blank line): a head that
        # trickles in a byte at a time must cost linear time, not quadratic.
        scanned = self._scanned
        start = pos + scanned - 3 if scanned > 3 else pos
        # The usual head is clean: a C search for CRLF CRLF, a split at CRLF, and a check
        # that no NUL, CR or LF is left in the lines cost a third of the pattern search that
        # allows for a bare LF. A head past the limit is left to the pattern search, which
        # finds where it really ends (a bare LF may end it sooner) before refusing it.
        end = buf.find(b"\r\n\r\n", start)
        if 0 <= end <= pos + self._max_head:
            head = buf[pos:end]  # bytes already, unless bytes were gathered
            lines = (head if type(head) is bytes else bytes(head)).split(b"\r\n")
            if _clean(lines):
                self._scanned = 0
                self._pos = end + 4
                self.clean = True
                return lines
        self.clean = False
        match = _HEAD_END.search(buf, start)
        if match is None:
            self._scanned = len(buf) - pos
            if self._scanned > self._max_head:
                raise ParseError("the message head is too large", 431)
            return None
        self._scanned = 0
        end = match.start()
        if end - pos > self._max_head:
            raise ParseError("the message head is too large", 431)
        head = bytes(buf[pos:end])
        self._pos = match.end()
        return head.replace(b"\r\n", b"\n").split(b"\n")

    @staticmethod
    def _headers(lines: list[bytes], clean: bool = False) -> Headers:
        headers: Headers = []
        for line in lines:
            if clean:
                name, colon, value = line.partition(b":")
                name = name.translate(_NAME_CHECK)
                if colon and name and 0x80 not in name:
                    # The usual value follows one space and ends in neither blank: slicing
                    # it costs a third of ``strip``, a generic method call when compiled.
                    n = len(value)
                    if n > 1 and value[0] == 32 and value[1] != 32 and value[1] != 9:
                        last = value[n - 1]
                        value = value[1:] if last != 32 and last != 9 else value.strip(b" \t")
                    else:
                        value = value.strip(b" \t")
                    headers.append((name, value))
                    continue
            m = _HEADER_LINE.fullmatch(line)
            if m is None:
                if line[:1] in (b" ", b"\t"):
                    raise ParseError("obsolete line folding in a header")
                raise ParseError(f"malformed header line {line[:40]!r}")
            headers.append((m.group(1).lower(), m.group(2)))
        return headers

    def _body_events(self) -> Event:
        """The next body event in states BODY_*; DONE transitions included."""
        state = self.state
        buf = self._buf
        if state == _BODY_LENGTH:
            available = len(buf) - self._pos
            if available == 0:
                if self._eof:
                    raise ParseError("the peer closed the connection mid-body")
                return NEED_DATA
            remaining = self._remaining
            take = available if available < remaining else remaining
            data: bytes
            if take == len(buf) and isinstance(buf, bytes):
                data = buf  # the whole read is body: it is handed on as it came
            else:
                piece = buf[self._pos : self._pos + take]
                data = piece if isinstance(piece, bytes) else bytes(piece)
            self._pos += take
            self._remaining -= take
            if self._remaining == 0:
                self.state = _DONE_PENDING
            return Data(data)
        if state == _BODY_CLOSE:
            if len(buf) > self._pos:
                return Data(self.rest())
            if self._eof:
                self.state = _DONE
                return END_OF_MESSAGE
            return NEED_DATA
        return self._chunked_event()

    def _chunked_event(self) -> Event:
        buf = self._buf
        while True:
            cs = self._chunk_state
            pos = self._pos
            if cs == _CHUNK_DATA:
                available = len(buf) - pos
                if available == 0:
                    break
                take = min(available, self._remaining)
                data = bytes(buf[pos : pos + take])
                self._pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._chunk_state = _CHUNK_CRLF
                return Data(data)
            if cs == _CHUNK_SIZE_LINE:
                end = buf.find(b"\n", pos)
                if end == -1:
                    if len(buf) - pos > _MAX_CHUNK_LINE:
                        raise ParseError("chunk size line too long")
                    break
                line = bytes(buf[pos:end]).rstrip(b"\r")
                m = _CHUNK_SIZE.fullmatch(line)
                if m is None:
                    raise ParseError(f"bad chunk size line {line[:40]!r}")
                self._pos = end + 1
                size = int(m.group(1), 16)
                if size == 0:
                    self._chunk_state = _CHUNK_TRAILERS
                else:
                    self._remaining = size
                    self._chunk_state = _CHUNK_DATA
                continue
            if cs == _CHUNK_CRLF:
                if buf.startswith(b"\r\n", pos):
                    self._pos = pos + 2
                elif buf.startswith(b"\n", pos):
                    self._pos = pos + 1
                elif len(buf) - pos >= 2 or (len(buf) - pos == 1 and buf[pos] != 13):
                    raise ParseError("chunk data not followed by CRLF")
                else:
                    break
                self._chunk_state = _CHUNK_SIZE_LINE
                continue
            # Trailers: header lines up to an empty line.
            end = buf.find(b"\n", pos)
            if end == -1:
                if len(buf) - pos > _MAX_TRAILERS:
                    raise ParseError("trailers too large", 431)
                break
            line = bytes(buf[pos:end]).rstrip(b"\r")
            self._pos = end + 1
            if not line:
                trailers, self._trailers = self._trailers, []
                self._chunk_state = _CHUNK_SIZE_LINE
                self.state = _DONE
                return EndOfMessage(trailers)
            self._trailers.extend(self._headers([line]))
            if len(self._trailers) > 100:
                raise ParseError("too many trailers", 431)
        if self._eof:
            raise ParseError("the peer closed the connection mid-body")
        return NEED_DATA


# A body that ended exactly: emit EndOfMessage next.
_DONE_PENDING: Final = BODY_NONE


class NativeVisitorConnection(ResponseWriting):
    """Server role: requests in, responses out."""

    __slots__ = ()  # the state lives in ResponseWriting's slots

    def __init__(self, max_header_bytes: int) -> None:
        self.reader = _Reader(max_header_bytes)
        self._writer = Writer()
        self._writer.state = W_DONE
        self._close_after = False
        self._continue = False
        self._upgrade = False
        self._http10 = False
        self._request_method = b""

    def receive_data(self, data: bytes) -> None:
        reader: _Reader = self.reader
        reader.feed(data)

    @property
    def waiting_for_continue(self) -> bool:
        return self._continue

    @property
    def buffered(self) -> int:
        reader: _Reader = self.reader
        return len(reader._buf) - reader._pos

    @property
    def trailing_data(self) -> bytes:
        return self.reader.rest()

    def next_event(self) -> Event:
        reader: _Reader = self.reader
        state = reader.state
        if state == _HEAD:
            if reader._pos >= len(reader._buf):
                # Nothing buffered: the usual case after a response, asked once per request.
                if reader._eof:
                    reader.state = _CLOSED
                    return ConnectionClosed()
                return NEED_DATA
            lines = reader._head_lines()
            if lines is None:
                if reader._eof:
                    raise ParseError("the connection closed mid-request")
                return NEED_DATA
            return self._request(lines)
        if state in (_BODY_LENGTH, _BODY_CHUNKED, _BODY_CLOSE):
            event = reader._body_events()
            if type(event) is Data:
                self._continue = False
            return event
        if state == _DONE_PENDING:
            reader.state = _DONE
            return END_OF_MESSAGE
        if state == _CLOSED:
            return ConnectionClosed()
        return PAUSED  # DONE (waiting for our response) or SWITCHED

    def _request(self, lines: list[bytes]) -> RequestHead:
        reader: _Reader = self.reader
        first = lines[0]
        method, _, rest = first.partition(b" ")
        target, _, version = rest.partition(b" ")
        # The minor version, compared rather than looked up: a fresh bytes object is hashed
        # before a dict can find it.
        minor: bytes | None = None
        if version == b"HTTP/1.1":
            minor = b"1"
        elif version == b"HTTP/1.0":
            minor = b"0"
        if (
            minor is None
            or not reader.clean
            or not method
            or 0x80 in method.translate(_TOKEN_CHECK)
            or not target
            or target.translate(_TARGET_CHECK) != target
        ):
            m = _REQUEST_LINE.fullmatch(first)
            if m is None:
                raise ParseError(f"malformed request line {first[:60]!r}")
            method, target, major, minor = m.groups()
            if major != b"1":
                raise ParseError("only HTTP/1.x is served on this connection", 505)
        headers = reader._headers(lines[1:], reader.clean)
        http10 = minor == b"0"
        framing, self._close_after, self._upgrade, self._continue, plain = request_facts(
            headers, http10
        )
        self._request_method = method
        self._http10 = http10
        state, length = framing
        if state == _BODY_LENGTH and length == 0:
            state = _DONE_PENDING
        reader.state = state
        reader._remaining = length
        self._writer.state = W_IDLE
        if not plain:
            return RequestHead(method, target, headers, b"1.0" if http10 else b"1.1")
        fields = b"\r\n".join(lines[1:]) + b"\r\n" if len(lines) > 1 else b""
        return RequestHead(method, target, headers, b"1.0" if http10 else b"1.1", framing, fields)

    def _next_message(self) -> None:
        reader: _Reader = self.reader
        reader.state = _HEAD


class NativeOriginConnection(RequestWriting):
    """Client role: requests out to the tunnelled service, responses in."""

    __slots__ = ()  # the state lives in RequestWriting's slots

    def __init__(self, max_header_bytes: int) -> None:
        self.reader = _Reader(max_header_bytes)
        self.reader.state = _DONE  # nothing to read before a request goes out
        self._writer = Writer()
        self._close_after = False
        self._method = b""
        self._upgrade = False

    def receive_data(self, data: bytes) -> None:
        reader: _Reader = self.reader
        reader.feed(data)

    @property
    def trailing_data(self) -> bytes:
        return self.reader.rest()

    def next_event(self) -> Event:
        reader: _Reader = self.reader
        state = reader.state
        if state == _HEAD:
            lines = reader._head_lines()
            if lines is None:
                if reader._eof:
                    if reader._pos >= len(reader._buf):
                        reader.state = _CLOSED
                        return ConnectionClosed()
                    raise ParseError("the connection closed mid-response")
                return NEED_DATA
            return self._response(lines)
        if state in (_BODY_LENGTH, _BODY_CHUNKED, _BODY_CLOSE):
            return reader._body_events()
        if state == _DONE_PENDING:
            reader.state = _DONE
            return END_OF_MESSAGE
        if state == _CLOSED:
            return ConnectionClosed()
        if state == _DONE and reader._eof and reader._pos >= len(reader._buf):
            reader.state = _CLOSED
            return ConnectionClosed()
        return PAUSED

    def _response(self, lines: list[bytes]) -> ResponseHead:
        reader: _Reader = self.reader
        first = lines[0]
        minor: bytes | None = None
        if first.startswith(b"HTTP/1.1 "):
            minor = b"1"
        elif first.startswith(b"HTTP/1.0 "):
            minor = b"0"
        if (
            minor is not None
            and reader.clean
            and len(first) >= 12
            and 48 <= first[9] <= 57
            and 48 <= first[10] <= 57
            and 48 <= first[11] <= 57
            and (len(first) == 12 or first[12] == 32)
        ):
            reason: bytes | None = first[13:]
            # Three digits, checked: read as ints they are ASCII codes (48 is "0", 5328 is
            # 48 * 111). Compiled, this is arithmetic; int() of bytes is a generic call.
            status = first[9] * 100 + first[10] * 10 + first[11] - 5328
        else:
            m = _STATUS_LINE.fullmatch(first)
            if m is None:
                raise ParseError(f"malformed status line {first[:60]!r}")
            major, minor, status_b, reason = m.groups()
            if major != b"1":
                raise ParseError("not an HTTP/1.x response")
            status = int(status_b)
        if status < 100:
            raise ParseError(f"status code {status} is not in 100-999")
        headers = reader._headers(lines[1:], reader.clean)
        http10 = minor == b"0"
        if status < 200:
            if status == 101:
                if not self._upgrade:
                    raise ParseError("101 to a request that asked for no upgrade")
                reader.state = _SWITCHED
            # Other 1xx: the final response follows; stay in HEAD.
            return ResponseHead(status, headers, reason or b"", b"1.0" if http10 else b"1.1")
        framing, self._close_after, plain = response_facts(
            headers, http10, self._method == b"HEAD" or status in (204, 304)
        )
        state, length = framing  # BODY_NONE is _DONE_PENDING
        if state == _BODY_LENGTH and length == 0:
            state = _DONE_PENDING
        reader.state = state
        reader._remaining = length
        self._upgrade = False
        if not plain:
            return ResponseHead(status, headers, reason or b"", b"1.0" if http10 else b"1.1")
        fields = b"\r\n".join(lines[1:]) + b"\r\n" if len(lines) > 1 else b""
        return ResponseHead(
            status, headers, reason or b"", b"1.0" if http10 else b"1.1", framing, fields
        )
