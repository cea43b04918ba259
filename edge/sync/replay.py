"""Replays control asks for: ``EdgeReplay`` subscribes to this edge's replay channel, sends
each ``bus.captures.ReplayRequest`` through the tunnel serving its hostname for its org,
and publishes the ``ReplayResult`` (with the replay's own capture) on the reply channel the
request names.

A replay is one ``OriginExchange`` on the tunnel, driven by ``ReplayFront`` (an
``ExchangeFront`` of its own, no visitor connection behind it): the local service sees an
ordinary request with the tunnel's Host and ``X-Burrow-Replay: <capture id>``. It only
ever reaches the tunnel of the capture's org: another org's host, a TCP or TLS tunnel, or
a target that is not a path is refused. The response body is kept up to the request's
``body_limit``; the rest is counted, not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import msgspec

from bus.base import Bus, BusUnavailable, Gap
from bus.captures import (
    NOT_REPLAYED,
    REPLAY_HEADER,
    ReplayRequest,
    ReplayResult,
    build_capture,
    encode,
    replay_channel,
    replay_request_decoder,
)
from edge.http1.events import Headers, RequestHead, ResponseHead
from edge.link.agent_session import StreamUnavailable
from edge.visitors.exchange import OriginExchange
from proto.frames import ResetCode

if TYPE_CHECKING:
    from edge.routing.table import Tunnel
    from edge.server import Edge

log = logging.getLogger("burrow.edge.replay")

REPLAY_ADDRESS = ("replay", 0)  # the "visitor" a replay's stream names
MAX_AT_ONCE = 32  # replays in flight on this edge; more are refused at once


class ReplayFront:
    """Collects one response for a replay; ``done`` resolves once it ends or fails."""

    def __init__(self, body_limit: int) -> None:
        self.body_limit = body_limit
        self.head: ResponseHead | None = None
        self.body = bytearray()
        self.size = 0
        self.first_byte: float | None = None
        self.error = ""
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def backlogged(self) -> bool:
        return False

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def exchange_head(self, head: ResponseHead) -> None:
        if head.status >= 200:
            self.head = head
            self.first_byte = time.time()

    def exchange_data(self, data: bytes) -> None:
        self.size += len(data)
        room = self.body_limit - len(self.body)
        if room > 0:
            self.body += data[:room]

    def exchange_end(self, trailers: Headers) -> None:
        self._finish()

    def exchange_switched(self, head: ResponseHead, leftover: bytes) -> None:
        self.head = head
        self.first_byte = time.time()
        self._finish()

    def exchange_raw(self, data: bytes) -> None:
        pass

    def exchange_raw_end(self) -> None:
        pass

    def exchange_failed(self, status: int, detail: str) -> None:
        self.error = detail
        self._finish()

    def exchange_blocked(self) -> None:
        pass  # the whole body is written at once (control bounds it); the mux holds it

    def exchange_writable(self) -> None:
        pass

    def exchange_flush(self) -> None:
        pass


def request_head(ask: ReplayRequest) -> RequestHead:
    """The head the local service gets; ValueError if the target is not a path."""
    if not ask.path.startswith("/") or ask.path.startswith("//"):
        raise ValueError("a replay's target must be a path on the tunnel's host")
    headers: Headers = [(b"host", ask.hostname.encode("idna"))]
    for name, value in ask.headers:
        if name.lower() not in NOT_REPLAYED:
            headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    if ask.body or ask.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        headers.append((b"content-length", str(len(ask.body)).encode()))
    headers.append((REPLAY_HEADER, ask.replay_of.encode("latin-1")))
    return RequestHead(ask.method.encode("latin-1"), ask.path.encode("latin-1"), headers)


class EdgeReplay:
    def __init__(self, edge: Edge, bus: Bus) -> None:
        self.edge = edge
        self.bus = bus
        self.channel = replay_channel(edge.config.edge_id)
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="edge-replay")

    async def close(self) -> None:
        for task in [self._task, *self._running]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _listen(self) -> None:
        subscription = self.bus.subscribe([self.channel])
        try:
            async for item in subscription:
                if isinstance(item, Gap):
                    continue  # a request lost in the gap times out at control
                try:
                    ask = replay_request_decoder.decode(item.payload)
                except msgspec.DecodeError:
                    log.warning("a message on %s is not a ReplayRequest; ignored", self.channel)
                    continue
                if len(self._running) >= MAX_AT_ONCE:
                    self._spawn(self._answer(ask, ReplayResult(ask.correlation_id, 0, "busy")))
                    continue
                self._spawn(self._serve(ask))
        finally:
            await subscription.close()

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def _tunnel(self, ask: ReplayRequest) -> Tunnel | None:
        pool = self.edge.routes.lookup_host(ask.hostname.lower())
        if pool is None or pool.account != ask.org:
            return None
        members = [t for t in pool.members if t.account == ask.org and t.protocol == "http"]
        for tunnel in members:
            if f"{tunnel.session.session_id}/{tunnel.tunnel_id}" == ask.tunnel_id:
                return tunnel
        return members[0] if members else None

    async def _serve(self, ask: ReplayRequest) -> None:
        try:
            result = await self._replay(ask)
        except Exception as exc:  # a bug here must still answer control, once
            log.exception("replay %s failed", ask.correlation_id)
            result = ReplayResult(ask.correlation_id, 0, f"the edge failed the replay: {exc}")
        await self._answer(ask, result)

    async def _answer(self, ask: ReplayRequest, result: ReplayResult) -> None:
        try:
            await self.bus.publish(ask.reply_channel, encode(result))
        except BusUnavailable as exc:
            log.warning("cannot answer replay %s: %s", ask.correlation_id, exc)

    async def _replay(self, ask: ReplayRequest) -> ReplayResult:
        fail = ask.correlation_id
        tunnel = self._tunnel(ask)
        if tunnel is None:
            return ReplayResult(fail, 0, f"no agent serves {ask.hostname} on this edge now")
        try:
            head = request_head(ask)
        except (ValueError, UnicodeError) as exc:
            return ReplayResult(fail, 0, str(exc))
        front = ReplayFront(ask.body_limit)
        started = time.time()
        try:
            exchange = OriginExchange(front, tunnel, REPLAY_ADDRESS)
        except StreamUnavailable as exc:
            return ReplayResult(fail, 0, exc.detail)
        exchange.send_request(head)
        if ask.body:
            exchange.send_data(ask.body)
        exchange.send_end()
        try:
            await asyncio.wait_for(asyncio.shield(front.done), ask.timeout)
        except TimeoutError:
            front.error = f"the local service did not answer within {ask.timeout:g}s"
        if exchange.complete:
            exchange.release()
        else:
            exchange.cancel(ResetCode.CANCEL, "replay ended")
        response = front.head
        record = build_capture(
            org=ask.org,
            tunnel_id=f"{tunnel.session.session_id}/{tunnel.tunnel_id}",
            hostname=tunnel.hostname or ask.hostname,
            edge_id=self.edge.config.edge_id,
            request_id=f"replay-{ask.correlation_id}",
            method=head.method,
            target=head.target,
            protocol="http/1.1",
            request_headers=head.headers,
            response_headers=response.headers if response is not None else [],
            status=response.status if response is not None and not front.error else 0,
            visitor="replay",
            started=started,
            first_byte=front.first_byte,
            ended=time.time(),
            request_prefix=ask.body,
            request_size=len(ask.body),
            response_prefix=bytes(front.body),
            response_size=front.size,
            body_limit=ask.body_limit,
            replay_of=ask.replay_of,
            error=front.error,
        )
        return ReplayResult(fail, record.status, front.error, record)
