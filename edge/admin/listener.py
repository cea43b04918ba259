"""The edge's admin listener: ``GET /metrics`` (Prometheus text, or OpenMetrics when asked
for), ``GET /healthz`` and ``GET /readyz``.

It serves operators and their scrapers and probes, not visitors, and belongs on a private
address (127.0.0.1 by default). Still, it reads at most ``MAX_HEAD`` bytes of request head
within ``HEAD_TIMEOUT`` seconds, answers one request per connection with ``Connection:
close``, and never reads a body.

- ``/healthz``: 200 while the process runs and its event loop answers (a liveness probe).
- ``/readyz``: 200 once every listener is up and while the edge is not draining; 503 with
  the reason ("starting", "draining") otherwise, so a load balancer stops sending visitors
  before a shutdown cuts them off.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.server import Edge

log = logging.getLogger("burrow.edge.admin")

MAX_HEAD = 8192
HEAD_TIMEOUT = 10.0
# After refusing a request that may have more bytes coming, read (and drop) them this long
# before closing, so the client reads the answer instead of a reset.
LINGER = 2.0
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_TEXT = "text/plain; charset=utf-8"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class AdminConnection(asyncio.Protocol):
    __slots__ = ("_buffer", "_done", "_timer", "edge", "transport")

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._done = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._timer = self.edge.loop.call_later(HEAD_TIMEOUT, self._expired)

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        buffer = self._buffer
        buffer += data
        end = _HEAD_END.search(buffer)
        if end is None or end.start() > MAX_HEAD:
            if len(buffer) > MAX_HEAD:
                self._respond(431, f"The request head is over {MAX_HEAD} bytes.\n", linger=True)
            return
        self._answer(bytes(buffer[: end.start()]))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if not self._done:
            self._respond(408, "The request head did not arrive in time.\n")

    def _answer(self, head: bytes) -> None:
        request_line, *lines = head.split(b"\n")
        parts = request_line.rstrip(b"\r").split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._respond(
                400, "Send an HTTP/1.1 request, e.g. GET /metrics HTTP/1.1.\n", linger=True
            )
            return
        method, target, _ = parts
        if method not in (b"GET", b"HEAD"):
            self._respond(405, "Only GET and HEAD are served here.\n", allow=True, linger=True)
            return
        head_only = method == b"HEAD"
        path = target.split(b"?", 1)[0]
        edge = self.edge
        if path == b"/metrics":
            accept = ""
            for line in lines:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"accept":
                    accept = value.strip().decode("latin-1")
            try:
                body, content_type = edge.metrics.exposition(accept)
            except Exception:
                log.exception("the metrics could not be rendered")
                self._respond(500, "The metrics could not be rendered; see the edge's log.\n")
                return
            self._respond(200, body, content_type, head_only=head_only)
        elif path == b"/healthz":
            self._respond(200, "ok\n", head_only=head_only)
        elif path == b"/readyz":
            reason = edge.not_ready()
            if reason:
                self._respond(503, f"not ready: {reason}\n", head_only=head_only)
            else:
                self._respond(200, "ready\n", head_only=head_only)
        else:
            self._respond(404, "Not found: this listener serves /metrics, /healthz, /readyz.\n")

    def _respond(
        self,
        status: int,
        body: str | bytes,
        content_type: str = _TEXT,
        *,
        head_only: bool = False,
        allow: bool = False,
        linger: bool = False,
    ) -> None:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        payload = body.encode() if isinstance(body, str) else body
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            f"content-type: {content_type}\r\n"
            f"content-length: {len(payload)}\r\n"
            "cache-control: no-store\r\n"
            + ("allow: GET, HEAD\r\n" if allow else "")
            + "connection: close\r\n\r\n"
        ).encode()
        transport.writelines([head] if head_only else [head, payload])
        if linger and transport.can_write_eof():
            transport.write_eof()
            self._timer = self.edge.loop.call_later(LINGER, transport.close)
        else:
            transport.close()
