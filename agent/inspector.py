"""The agent's own request inspector: the last requests its HTTP tunnels carried, kept in
memory for the local API on ``127.0.0.1:4040`` (``agent.local_api``), without any control
plane.

Theory of operation
-------------------
The edge writes each visitor request into a tunnel stream as HTTP/1.1 and parses the local
service's answer; the agent only pipes bytes (``agent.link.LocalRelay``). While inspection
is on, each relay has an ``ExchangeObserver``: two passive, sans-IO ``MessageReader``\\ s, one
on the bytes going to the local service, one on those coming back. They never change or
hold up a byte: they copy the head (at most ``MAX_HEAD`` bytes; a longer one ends
observation of that stream) and the first ``body_limit`` bytes of each body, and follow the
framing (Content-Length by counting, chunked by its size lines, read-until-close) only to
know where one message ends and the next begins. Past the limit a Content-Length body costs
one subtraction per chunk. A request and its response make one ``Capture`` in the
``Inspector``'s ring of the last ``keep`` captures.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_HEAD = 64 * 1024
DEFAULT_KEEP = 200
DEFAULT_BODY_LIMIT = 1024 * 1024
_MAX_SIZE_LINE = 1024

# Reader states.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _CLOSE, _OFF = range(8)


@dataclass(slots=True)
class Message:
    """One HTTP/1.1 head and the first bytes of its body."""

    start_line: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    size: int = 0  # the whole (dechunked) body's length so far
    truncated: bool = False
    complete: bool = False

    def header(self, name: str) -> str:
        return ",".join(v for k, v in self.headers if k.lower() == name)


@dataclass(slots=True)
class Capture:
    id: str
    tunnel: str
    local: str
    remote_addr: str
    started: float
    request: Message
    response: Message | None = None
    duration: float = 0.0
    replay_of: str = ""


class MessageReader:
    """A passive HTTP/1.1 message parser for one direction of a stream.

    ``feed`` takes every byte that went by; ``on_head`` hears of each head, ``on_end`` of
    each message's end. ``body_for`` says, for a head, whether a body follows framed by its
    headers (responses to HEAD, 1xx, 204 and 304 have none; a request without length has
    none; a response without length is read until close).
    """

    __slots__ = (
        "_buf",
        "_limit",
        "_remaining",
        "_state",
        "body_for",
        "message",
        "on_end",
        "on_head",
    )

    def __init__(
        self,
        body_limit: int,
        on_head: Callable[[Message], None],
        on_end: Callable[[Message], None],
        body_for: Callable[[Message], str],
    ) -> None:
        self._limit = body_limit
        self._state = _HEAD
        self._buf = bytearray()
        self._remaining = 0
        self.message = Message()
        self.on_head = on_head
        self.on_end = on_end
        self.body_for = body_for

    @property
    def off(self) -> bool:
        return self._state == _OFF

    def stop(self) -> None:
        self._state = _OFF
        self._buf = bytearray()

    def close(self) -> None:
        """The stream ended: a body read until close is complete now."""
        if self._state == _CLOSE:
            self._end()
        self.stop()

    def feed(self, data: bytes) -> None:
        state = self._state
        if state == _LENGTH and len(data) < self._remaining:
            # The common case past the head: all of this chunk is body.
            self._remaining -= len(data)
            self._body(data)
            return
        if state == _OFF:
            return
        if state == _CLOSE:
            self._body(data)
            return
        self._buf += data
        self._run()

    def _body(self, data: bytes | bytearray | memoryview) -> None:
        message = self.message
        message.size += len(data)
        room = self._limit - len(message.body)
        if room > 0:
            message.body += data[:room]
        if message.size > self._limit:
            message.truncated = True

    def _end(self) -> None:
        message = self.message
        message.complete = True
        self.message = Message()
        self._state = _HEAD
        self.on_end(message)

    def _run(self) -> None:
        buf = self._buf
        at = 0
        while at < len(buf) and self._state != _OFF:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n", at)
                if end < 0:
                    if len(buf) - at > MAX_HEAD:
                        self.stop()
                        return
                    break
                self._head(bytes(buf[at:end]))
                at = end + 4
            elif state == _LENGTH:
                take = min(self._remaining, len(buf) - at)
                self._body(memoryview(buf)[at : at + take])
                self._remaining -= take
                at += take
                if self._remaining == 0:
                    self._end()
            elif state == _CLOSE:
                self._body(memoryview(buf)[at:])
                at = len(buf)
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n", at, at + _MAX_SIZE_LINE)
                if end < 0:
                    if len(buf) - at > _MAX_SIZE_LINE:
                        self.stop()
                        return
                    break
                text = bytes(buf[at:end]).split(b";", 1)[0].strip()
                try:
                    size = int(text, 16)
                except ValueError:
                    self.stop()
                    return
                at = end + 2
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                take = min(self._remaining, len(buf) - at)
                self._body(memoryview(buf)[at : at + take])
                self._remaining -= take
                at += take
                if self._remaining == 0:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(buf) - at < 2:
                    break
                at += 2
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                if buf.startswith(b"\r\n", at):
                    at += 2
                    self._end()
                    continue
                end = buf.find(b"\r\n\r\n", at)
                if end < 0:
                    break
                at = end + 4
                self._end()
        if self._state != _OFF:
            del buf[:at]

    def _head(self, raw: bytes) -> None:
        lines = raw.split(b"\r\n")
        message = self.message
        message.start_line = lines[0]
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if sep:
                message.headers.append(
                    (name.decode("latin-1").strip(), value.decode("latin-1").strip())
                )
        self.on_head(message)
        framing = self.body_for(message)
        if framing == "upgrade":
            self.stop()
            return
        if message.header("transfer-encoding").lower().endswith("chunked") and framing != "none":
            self._state = _CHUNK_SIZE
            return
        length = message.header("content-length")
        if framing != "none" and length.isdigit():
            self._remaining = int(length)
            if self._remaining:
                self._state = _LENGTH
                return
        elif framing == "close":
            self._state = _CLOSE
            return
        self._end()


class ExchangeObserver:
    """Both directions of one tunnel stream, paired into captures."""

    __slots__ = ("_inspector", "_methods", "_pending", "_remote", "_tunnel", "request", "response")

    def __init__(self, inspector: Inspector, tunnel: str, local: str, remote: str) -> None:
        self._inspector = inspector
        self._tunnel = (tunnel, local)
        self._remote = remote
        self._pending: list[Capture] = []  # requests sent, their responses not yet done
        self._methods: list[bytes] = []
        limit = inspector.body_limit
        self.request = MessageReader(limit, self._request_head, self._request_end, _request_body)
        self.response = MessageReader(
            limit, self._response_head, self._response_end, self._response_body
        )

    def _request_head(self, message: Message) -> None:
        capture = self._inspector.new_capture(self._tunnel, self._remote, message)
        self._pending.append(capture)
        self._methods.append(message.start_line.split(b" ", 1)[0])

    def _request_end(self, message: Message) -> None:
        pass

    def _response_head(self, message: Message) -> None:
        status = _status(message)
        if 100 <= status < 200 and status != 101:
            return
        if self._pending:
            self._pending[0].response = message

    def _response_body(self, message: Message) -> str:
        status = _status(message)
        if status == 101:
            self._finish(message)
            return "upgrade"
        method = self._methods[0] if self._methods else b""
        if 100 <= status < 200 or status in (204, 304) or method == b"HEAD":
            return "none"
        return "close"

    def _response_end(self, message: Message) -> None:
        if 100 <= _status(message) < 200:
            return
        self._finish(message)

    def _finish(self, message: Message) -> None:
        if self._pending:
            capture = self._pending.pop(0)
            self._methods.pop(0)
            capture.response = message
            capture.duration = time.time() - capture.started
            self._inspector.finished(capture)

    def closed(self) -> None:
        self.response.close()
        self.request.stop()


def _request_body(message: Message) -> str:
    return "length"  # a request without Content-Length or chunked has no body (RFC 9112 6.3)


def _status(message: Message) -> int:
    parts = message.start_line.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


class Inspector:
    """The last ``keep`` captures, newest last; bodies kept up to ``body_limit`` each."""

    def __init__(self, keep: int = DEFAULT_KEEP, body_limit: int = DEFAULT_BODY_LIMIT) -> None:
        if keep < 1 or body_limit < 0:
            raise ValueError("the inspector keeps at least one request")
        self.keep = keep
        self.body_limit = body_limit
        self.captures: OrderedDict[str, Capture] = OrderedDict()
        self._ids = itertools.count(1)
        self._prefix = f"{int(time.time()):x}"
        self.version = 0  # bumped on every change, for the UI's polling

    def observer(self, tunnel: str, local: str, remote: str) -> ExchangeObserver:
        return ExchangeObserver(self, tunnel, local, remote)

    def new_capture(self, tunnel: tuple[str, str], remote: str, request: Message) -> Capture:
        capture = Capture(
            id=f"req_{self._prefix}{next(self._ids):06d}",
            tunnel=tunnel[0],
            local=tunnel[1],
            remote_addr=remote,
            started=time.time(),
            request=request,
        )
        self.captures[capture.id] = capture
        while len(self.captures) > self.keep:
            self.captures.popitem(last=False)
        self.version += 1
        return capture

    def finished(self, capture: Capture) -> None:
        self.version += 1

    def clear(self) -> None:
        self.captures.clear()
        self.version += 1
