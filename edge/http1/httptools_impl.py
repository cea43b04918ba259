"""The connection interface on httptools (llhttp, the C parser of Node.js).

Theory of operation
-------------------
llhttp parses bytes; this module decides where each message ends and never shows llhttp a
byte past that end. Pipelined requests, the bytes after an upgrade and the response after a
HEAD request's response stay in our buffer (a bytearray and a read offset, as in native)
until the edge asks for them:

* a head is fed whole, once its blank line is in the buffer (one search of the new bytes):
  the ``max_header_bytes`` limit is exact, llhttp sees every header in one piece, and no
  body byte goes with it;
* a Content-Length body is fed up to its length;
* a chunked body is fed up to the next CRLF CRLF at most: llhttp reads chunked framing
  with CRLFs only (its default; the bare-LF leniency is turned on for heads alone), so a
  chunked message can only end right after one.

What a message's body is, is decided by ``edge.http1.framing`` (``request_facts``,
``response_facts``) on the parsed headers, exactly as native decides it, so the two agree
on framing; llhttp checks syntax (token characters, line ends, versions, digits, chunk
sizes), and the checks native makes that llhttp does not (Host, a single-space request line,
HTTP/1.x only) are made here. Where llhttp frames differently, it is overruled: it takes an
Upgrade or CONNECT request as ending at its head (a body it skipped is fed to a fresh parser
primed with a head that frames it the same way), and it would read a body after the
response to a HEAD request (only the head was fed; the parser is replaced before the next
message). EOF is never shown to llhttp: a response read until
close ends here, and EOF mid-message is a ParseError here.

Reader states, per message (native's, less the chunked sub-states llhttp keeps)::

    HEAD --(head fed)--> BODY | BODY_CLOSE | DONE_PENDING
    BODY --(llhttp: message complete)--> DONE_PENDING --> DONE --(start_next_cycle)--> HEAD
    DONE --(101 / upgrade accepted)--> SWITCHED (everything after is ``trailing_data``)

The writer half is native's (``edge.http1.framing``). Where the parsers accept different
bytes, tests/http1/test_differences.py says so.
"""

from __future__ import annotations

import re
from typing import Final

import httptools

from edge.http1.events import (
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
    READ_DONE_PENDING,
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

# Chunk-size lines and trailers between two pieces of chunk data: llhttp buffers a trailer
# value until its line ends, so this bounds what a peer can make it hold (native's limits:
# 4 KiB a chunk line, 16 KiB of trailers).
_MAX_CHUNK_FRAMING: Final = 4096 + 16 * 1024

# Reader states.
_HEAD: Final = READ_HEAD
_BODY: Final = 1  # llhttp parses the body
_BODY_CLOSE: Final = 3  # a response read until close, by us
_DONE: Final = READ_DONE
_SWITCHED: Final = READ_SWITCHED
_CLOSED: Final = 6
_DONE_PENDING: Final = READ_DONE_PENDING  # the message ended: EndOfMessage next

_CHUNKED: Final = -1  # _Reader.remaining while a chunked body is read

_METHOD: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")  # RFC 9110 9.1: a token

# Heads that put a fresh parser in the body state llhttp skipped (see start_body).
_PRIMERS: Final = {
    (True, BODY_LENGTH): b"PUT / HTTP/1.1\r\nContent-Length: %d\r\n\r\n",
    (True, BODY_CHUNKED): b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    (False, BODY_LENGTH): b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
    (False, BODY_CHUNKED): b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
}


def _refused(exc: Exception) -> ParseError:
    reason = str(exc) or "malformed message"
    return ParseError(reason[:1].lower() + reason[1:])


class _Message:
    """What llhttp's callbacks report about the message being parsed. httptools finds the
    callbacks by name; each runs in the middle of ``feed_data``, so none may raise."""

    __slots__ = ("body", "complete", "fields", "head_fields", "reason", "target")

    def __init__(self) -> None:
        self.target = b""
        self.reason = b""
        self.fields: Headers = []
        self.head_fields: Headers = []
        self.body: list[bytes] = []
        self.complete = False

    def start(self) -> None:
        self.target = b""
        self.reason = b""
        self.fields = []
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp drops the whitespace before a value, not after it (RFC 9112 5: OWS both).
        self.fields.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        # A new list each head: the reader tells a parsed head by the change.
        self.head_fields = self.fields
        self.fields = []  # what follows is trailers

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.complete = True


class _Reader(ReceiveBuffer):
    """Our buffer, one llhttp parser and the message boundaries between them."""

    __slots__ = (
        "_chunk_framing",
        "_crlf_only",
        "_dirty",
        "_error",
        "_is_request",
        "_tail",
        "head_start",
        "method",
        "msg",
        "parser",
        "remaining",
        "trailers",
    )

    def __init__(self, max_head: int, is_request: bool) -> None:
        super().__init__(max_head)
        self._is_request = is_request
        self.msg = _Message()
        self._crlf_only = False  # the parser takes no bare LF (reading a chunked body)
        self.parser = self._new_parser()
        self._dirty = False  # llhttp is not at the start of a message: replace it first
        self.remaining = 0
        self._tail = b""  # the last bytes of a chunked body fed, for a CRLF CRLF across feeds
        self._chunk_framing = 0
        self._error: ParseError | None = None
        self.trailers: Headers = []
        self.head_start = 0
        self.method = b""

    def _new_parser(self) -> httptools.HttpRequestParser | httptools.HttpResponseParser:
        parser: httptools.HttpRequestParser | httptools.HttpResponseParser
        if self._is_request:
            parser = httptools.HttpRequestParser(self.msg)
        else:
            parser = httptools.HttpResponseParser(self.msg)
        parser.set_dangerous_leniencies(
            # RFC 9112 7.1.1: chunk-ext = *( BWS ";" ... ): whitespace may precede one.
            lenient_spaces_after_chunk_size=True,
            # RFC 9112 2.3: an HTTP/1.x message with a minor version above 1 is read as 1.1
            # (the major version is checked here).
            lenient_version=True,
            # RFC 9112 2.2: a bare LF may end a line of a head, as native and h11 take it.
            # Chunked bodies are read with CRLFs only (start_body), so that a chunked
            # message can end only after a CRLF CRLF.
            lenient_optional_cr_before_lf=True,
            # Transfer-Encoding overrides Content-Length in a response (RFC 9112 6.3), as in
            # native. A request with both is refused.
            lenient_chunked_length=not self._is_request,
        )
        self._crlf_only = False
        return parser

    @property
    def drained(self) -> bool:
        """EOF seen and every byte before it consumed."""
        return self._eof and self._pos >= len(self._buf)

    def head(self) -> bool:
        """Feed the next head to llhttp once all of it is here; False while it is not."""
        buf = self._buf
        pos = self._pos
        # Leading empty lines before a request line are tolerated (RFC 9112 2.2).
        if buf.startswith(b"\n", pos) or buf.startswith(b"\r\n", pos):
            while buf.startswith(b"\r\n", pos) or buf.startswith(b"\n", pos):
                pos += 2 if buf[pos] == 13 else 1
            self._pos = pos
            self._scanned = 0
        # Search only the new bytes (less the 3 that may start the blank line): a head that
        # trickles in a byte at a time must cost linear time, not quadratic. The blank line
        # is native's too: CRLF or a bare LF (RFC 9112 2.2), so LF CRLF or LF LF.
        start = pos + max(0, self._scanned - 3)
        end = buf.find(b"\n\r\n", start)
        stop = end + 3
        bare = buf.find(b"\n\n", start, len(buf) if end == -1 else end + 1)
        if bare != -1:
            end = bare
            stop = bare + 2
        elif end == -1:
            self._scanned = len(buf) - pos
            if self._scanned > self._max_head:
                raise ParseError("the message head is too large", 431)
            return False
        self._scanned = 0
        if buf[end - 1] == 13:  # the head ends before its last CRLF, as native measures it
            end -= 1
        if end - pos > self._max_head:
            raise ParseError("the message head is too large", 431)
        msg = self.msg
        msg.start()
        if self._dirty:
            self.parser = self._new_parser()
            self._dirty = False
        elif self._crlf_only:
            self.parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
            self._crlf_only = False
        head_fields = msg.head_fields
        method = b""
        try:
            self.parser.feed_data(buf[pos:stop])
        except httptools.HttpParserUpgrade:
            self._dirty = True  # llhttp stops at an upgrade; what follows is framed here
        except httptools.HttpParserError as exc:
            if msg.complete:
                # A 101 without ``Connection: upgrade`` pauses llhttp as an error after the
                # message.
                self._dirty = True
            elif self._is_request:
                method = self._mended_request_line(pos, stop, exc)
            else:
                raise _refused(exc) from None
        if msg.head_fields is head_fields:
            raise ParseError("malformed message head")
        if self._is_request:
            self.method = method or self.parser.get_method()  # type: ignore[union-attr]
        self.head_start = pos
        self._pos = stop
        return True

    def _mended_request_line(self, pos: int, stop: int, exc: Exception) -> bytes:
        """llhttp refused a request head. Two things it refuses are valid, and native takes
        them: a method not on llhttp's list (RFC 9110 9.1: any token) and a bare LF ending
        the request line (RFC 9112 2.2). Parse the head again with a stand-in method and a
        CRLF; returns the method. Only refused heads come here."""
        buf = self._buf
        space = buf.find(b" ", pos, stop)
        lf = buf.find(b"\n", pos, stop)
        if space == -1 or lf < space or not _METHOD.fullmatch(buf, pos, space):
            raise _refused(exc) from None
        line_end = lf - 1 if buf[lf - 1] == 13 else lf
        self.parser = self._new_parser()
        self.msg.start()
        try:
            self.parser.feed_data(b"GET" + buf[space:line_end] + b"\r" + buf[lf:stop])
        except httptools.HttpParserUpgrade:
            self._dirty = True
        except httptools.HttpParserError as again:
            raise _refused(again) from None
        return bytes(buf[pos:space])

    def start_body(self, kind: int, length: int) -> None:
        """Read a BODY_LENGTH or BODY_CHUNKED body with llhttp."""
        if self.msg.complete:
            # llhttp took the message as ending at its head (an Upgrade or CONNECT request);
            # our framing says a body follows. Read it with a parser primed to expect it.
            primer = _PRIMERS[self._is_request, kind]
            self.parser = self._new_parser()
            self.parser.feed_data(primer % length if kind == BODY_LENGTH else primer)
            self.msg.start()
            self._dirty = False
        if kind == BODY_CHUNKED:
            self.parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=False)
            self._crlf_only = True
        self.remaining = length if kind == BODY_LENGTH else _CHUNKED
        self._tail = b""
        self._chunk_framing = 0
        self.state = _BODY

    def next_message(self) -> None:
        """The exchange is over; the next head starts a message."""
        self.state = _HEAD
        if not self.msg.complete or not self.parser.should_keep_alive():
            # llhttp is mid-body (a HEAD request's response) or closed: replace it.
            self._dirty = True

    def body_event(self) -> Event:
        if self._error is not None:
            raise self._error
        buf = self._buf
        msg = self.msg
        body = msg.body
        while True:
            pos = self._pos
            available = len(buf) - pos
            if available == 0:
                if self._eof:
                    raise ParseError("the peer closed the connection mid-body")
                return NEED_DATA
            remaining = self.remaining
            if remaining == _CHUNKED:
                stop = self._chunked_stop(pos)
            elif remaining:
                stop = pos + min(available, remaining)
                self.remaining = remaining - (stop - pos)
            else:
                # Our Content-Length is fed and llhttp wants more: a local fault, and a loop
                # feeding it nothing if let through.
                raise ParseError("llhttp and Content-Length disagree on the body's end", 500)
            error = None
            try:
                # The whole buffer is fed as it is (no copy): the common case for bodies.
                self.parser.feed_data(buf if pos == 0 and stop == len(buf) else buf[pos:stop])
            except httptools.HttpParserError as exc:
                error = _refused(exc)
            self._pos = stop
            data = b""
            if body:
                data = body[0] if len(body) == 1 else b"".join(body)
                body.clear()
            if remaining == _CHUNKED:
                if data:
                    self._chunk_framing = 0
                else:
                    self._chunk_framing += stop - pos
                    if self._chunk_framing > _MAX_CHUNK_FRAMING and error is None:
                        error = ParseError("chunk size lines or trailers too large", 431)
            if error is not None:
                if data:
                    self._error = error  # the data before the fault is delivered first
                    return Data(data)
                raise error
            if msg.complete:
                if data:
                    self.trailers = msg.fields
                    self.state = _DONE_PENDING
                    return Data(data)
                self.state = _DONE
                return EndOfMessage(msg.fields)
            if data:
                return Data(data)

    def _chunked_stop(self, pos: int) -> int:
        """Where to stop feeding a chunked body: just past the next CRLF CRLF (a possible
        end of the message) or at the end of the buffer."""
        buf = self._buf
        tail = self._tail
        stop = -1
        if tail:
            i = (tail + buf[pos : pos + 3]).find(b"\r\n\r\n")
            if i != -1:
                stop = pos + i + 4 - len(tail)
        if stop == -1:
            i = buf.find(b"\r\n\r\n", pos)
            stop = len(buf) if i == -1 else i + 4
        self._tail = bytes(buf[max(pos, stop - 3) : stop])
        if stop - pos < 3:
            self._tail = (tail + self._tail)[-3:]
        return stop

    def close_delimited_event(self) -> Event:
        if len(self._buf) > self._pos:
            return Data(self.rest())
        if self._eof:
            self.state = _DONE
            return EndOfMessage()
        return NEED_DATA

    def end_pending(self) -> EndOfMessage:
        trailers, self.trailers = self.trailers, []
        self.state = _DONE
        return EndOfMessage(trailers)


class HttptoolsVisitorConnection(ResponseWriting):
    """Server role: requests in, responses out."""

    __slots__ = ()  # the state lives in ResponseWriting's slots

    def __init__(self, max_header_bytes: int) -> None:
        self.reader = _Reader(max_header_bytes, is_request=True)
        self._writer = Writer()
        self._writer.state = W_DONE
        self._close_after = False
        self._continue = False
        self._upgrade = False
        self._http10 = False
        self._request_method = b""

    def receive_data(self, data: bytes) -> None:
        self.reader.feed(data)

    @property
    def waiting_for_continue(self) -> bool:
        return self._continue

    @property
    def buffered(self) -> int:
        return self.reader.buffered

    @property
    def trailing_data(self) -> bytes:
        return self.reader.rest()

    def next_event(self) -> Event:
        reader: _Reader = self.reader
        state = reader.state
        if state == _BODY:
            event = reader.body_event()
            if type(event) is Data:
                self._continue = False
            return event
        if state == _HEAD:
            if reader.drained:
                reader.state = _CLOSED
                return ConnectionClosed()
            if not reader.head():
                if reader._eof:
                    raise ParseError("the connection closed mid-request")
                return NEED_DATA
            return self._request()
        if state == _DONE_PENDING:
            return reader.end_pending()
        if state == _CLOSED:
            return ConnectionClosed()
        return PAUSED  # DONE (waiting for our response) or SWITCHED

    def _request(self) -> RequestHead:
        reader: _Reader = self.reader
        method = reader.method
        target = reader.msg.target
        # llhttp takes several spaces between the parts of a request line (RFC 9112 3 lets
        # a server parse on whitespace); native and h11 refuse them, and so does this.
        buf = reader._buf
        line_end = buf.find(b"\n", reader.head_start)
        if buf[line_end - 1] == 13:
            line_end -= 1
        if line_end - reader.head_start != len(method) + len(target) + 10:  # 2 SP, HTTP/1.1
            raise ParseError("malformed request line")
        version = reader.parser.get_http_version()
        if version[0] != "1":
            raise ParseError("only HTTP/1.x is served on this connection", 505)
        headers = reader.msg.head_fields
        http10 = version == "1.0"
        framing, self._close_after, self._upgrade, self._continue, plain = request_facts(
            headers, http10
        )
        kind, length = framing
        self._request_method = method
        self._http10 = http10
        if kind == BODY_NONE or (kind == BODY_LENGTH and length == 0):
            reader.state = _DONE_PENDING
        else:
            reader.start_body(kind, length)
        self._writer.state = W_IDLE
        return RequestHead(
            method, target, headers, b"1.0" if http10 else b"1.1", framing if plain else None
        )

    def _next_message(self) -> None:
        self.reader.next_message()


class HttptoolsOriginConnection(RequestWriting):
    """Client role: requests out to the tunnelled service, responses in."""

    __slots__ = ()  # the state lives in RequestWriting's slots

    def __init__(self, max_header_bytes: int) -> None:
        self.reader = _Reader(max_header_bytes, is_request=False)
        self.reader.state = _DONE  # nothing to read before a request goes out
        self._writer = Writer()
        self._close_after = False
        self._method = b""
        self._upgrade = False

    def _next_message(self) -> None:
        self.reader.next_message()
        self.reader.state = _DONE  # nothing to read until the next request goes out

    def receive_data(self, data: bytes) -> None:
        self.reader.feed(data)

    @property
    def trailing_data(self) -> bytes:
        return self.reader.rest()

    def next_event(self) -> Event:
        reader: _Reader = self.reader
        state = reader.state
        if state == _BODY:
            return reader.body_event()
        if state == _HEAD:
            if not reader.head():
                if reader._eof:
                    if reader.drained:
                        reader.state = _CLOSED
                        return ConnectionClosed()
                    raise ParseError("the connection closed mid-response")
                return NEED_DATA
            return self._response()
        if state == _BODY_CLOSE:
            return reader.close_delimited_event()
        if state == _DONE_PENDING:
            return reader.end_pending()
        if state == _CLOSED:
            return ConnectionClosed()
        if state == _DONE and reader.drained:
            reader.state = _CLOSED
            return ConnectionClosed()
        return PAUSED

    def _response(self) -> ResponseHead:
        reader: _Reader = self.reader
        parser = reader.parser
        version = parser.get_http_version()
        if version[0] != "1":
            raise ParseError("not an HTTP/1.x response")
        status = parser.get_status_code()  # type: ignore[union-attr]
        if status < 100:
            raise ParseError(f"status code {status} is not in 100-999")
        msg = reader.msg
        headers = msg.head_fields
        http10 = version == "1.0"
        if status < 200:
            if status == 101:
                if not self._upgrade:
                    raise ParseError("101 to a request that asked for no upgrade")
                reader.state = _SWITCHED
            else:
                # The final response follows; stay in HEAD, with a fresh parser (llhttp
                # closes after an HTTP/1.0 1xx).
                reader._dirty = True
            return ResponseHead(status, headers, msg.reason, b"1.0" if http10 else b"1.1")
        framing, self._close_after, plain = response_facts(
            headers, http10, self._method == b"HEAD" or status in (204, 304)
        )
        kind, length = framing
        if kind == BODY_CLOSE:
            reader.state = _BODY_CLOSE
        elif kind == BODY_NONE or (kind == BODY_LENGTH and length == 0):
            reader.state = _DONE_PENDING
        else:
            reader.start_body(kind, length)
        self._upgrade = False
        return ResponseHead(
            status, headers, msg.reason, b"1.0" if http10 else b"1.1", framing if plain else None
        )
