"""Captured requests: list, detail, clear, live tail, and replay through the edge holding
the tunnel.

Replay: control looks up which edge serves the capture's hostname for the capture's org now
(``live_tunnels``), publishes a ``bus.captures.ReplayRequest`` on that edge's replay
channel and waits, up to ``replay_timeout``, for the ``ReplayResult`` on this process's own
reply channel (``replies`` subscribes it for the app's lifetime; answers are matched by
correlation id). The edge sends the request through the tunnel only: the Host header is the
tunnel's and the target must be a path, so a replay can never reach another host.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
import secrets
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import brotli
import msgspec
from aiohttp import web

from bus.base import BusUnavailable, Gap
from bus.captures import (
    MASK,
    NOT_REPLAYED,
    REPLY_CHANNEL,
    CapturedBody,
    CaptureRecord,
    ReplayRequest,
    encode,
    replay_channel,
    replay_result_decoder,
)
from control import principals
from control.bodies import read_json, to_json
from control.errors import ApiError, not_found
from control.keys import BUS, CONFIG, DB
from control.openapi import describe
from control.principals import Principal
from control.store import captures

log = logging.getLogger("burrow.control.requests")

routes = web.RouteTableDef()

PAGE_DEFAULT = 50
PAGE_MAX = 500
DECODED_MAX = 1024 * 1024  # a decoded body shown is cut here: a small gzip can inflate far
REPLAY_BODY_MAX = 1024 * 1024
TAIL_POLL = 0.5
TAIL_HEARTBEAT = 15.0


# -- the detail document -------------------------------------------------------------------


def _inflate(body: CapturedBody) -> tuple[bytes, str] | None:
    """The body decoded as its Content-Encoding says, at most DECODED_MAX bytes (a prefix
    of a compressed body decodes as far as it goes); None when it is not encoded, or not
    in an encoding we decode. The second item is a note when decoding stopped short."""
    coding = body.content_encoding.split(",")[-1].strip()
    note = ""
    try:
        if coding in ("gzip", "x-gzip", "deflate"):
            if coding == "deflate" and body.data[:1] != b"\x78":
                inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some send
            else:
                inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header
            out = inflater.decompress(body.data, DECODED_MAX)
            if inflater.unconsumed_tail:
                note = f"decoded body cut at {DECODED_MAX} bytes"
            return out, note
        if coding == "br":
            decoder = brotli.Decompressor()
            out = decoder.process(body.data, output_buffer_limit=DECODED_MAX)
            if not decoder.can_accept_more_data():
                note = f"decoded body cut at {DECODED_MAX} bytes"
            return out, note
    except (zlib.error, brotli.error) as exc:
        return b"", f"cannot decode the {coding} body: {exc}"
    return None


def _body_document(body: CapturedBody, decoded: bool) -> dict[str, Any]:
    document: dict[str, Any] = {
        "size": body.size,
        "captured": len(body.data),
        "truncated": body.truncated,
        "content_encoding": body.content_encoding,
        "transfer_encoding": body.transfer_encoding,
    }
    data = body.data
    if decoded:
        inflated = _inflate(body)
        if inflated is not None:
            data, note = inflated
            document["decoded"] = True
            if note:
                document["decode_note"] = note
    try:
        document["text"] = data.decode("utf-8")
    except UnicodeDecodeError:
        document["base64"] = base64.b64encode(data).decode()
    return document


def summary(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out.pop("stored_at", None)
    started = out.pop("started_at")
    out["started"] = started.isoformat()
    out["duration"] = out.pop("duration_s")
    return out


def detail(record: CaptureRecord, decoded: bool = False) -> dict[str, Any]:
    return {
        "id": record.id,
        "tunnel_id": record.tunnel_id,
        "hostname": record.hostname,
        "edge_id": record.edge_id,
        "request_id": record.request_id,
        "method": record.method,
        "url": record.url,
        "protocol": record.protocol,
        "status": record.status,
        "visitor": record.visitor,
        "started": datetime.datetime.fromtimestamp(record.started, datetime.UTC).isoformat(),
        "first_byte": None if record.first_byte < 0 else record.first_byte,
        "duration": record.duration,
        "replay_of": record.replay_of,
        "error": record.error,
        "request": {
            "headers": [list(h) for h in record.request_headers],
            "body": _body_document(record.request_body, decoded),
        },
        "response": {
            "headers": [list(h) for h in record.response_headers],
            "body": _body_document(record.response_body, decoded),
        },
    }


# -- filters -------------------------------------------------------------------------------


def _time(name: str, text: str) -> datetime.datetime:
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        try:
            return datetime.datetime.fromtimestamp(float(text), datetime.UTC)
        except (ValueError, OverflowError):
            raise ApiError(
                422, "invalid", f"{name}: give an ISO 8601 time or unix seconds, not {text!r}"
            ) from None
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def _cursor(text: str) -> tuple[datetime.datetime, str]:
    try:
        micros, _, capture_id = base64.urlsafe_b64decode(text.encode()).decode().partition("|")
        return datetime.datetime.fromtimestamp(int(micros) / 1e6, datetime.UTC), capture_id
    except (ValueError, UnicodeDecodeError, OverflowError):
        raise ApiError(422, "invalid", "cursor: pass back the next_cursor of a page") from None


def _next_cursor(row: dict[str, Any]) -> str:
    micros = int(row["started_at"].timestamp() * 1e6)
    return base64.urlsafe_b64encode(f"{micros}|{row['id']}".encode()).decode()


def _filter(q: Mapping[str, str], org: str) -> captures.CaptureFilter:
    status_text = q.get("status", "").strip().lower()
    status: int | None = None
    status_class: int | None = None
    if status_text:
        if len(status_text) == 3 and status_text[0] in "12345" and status_text[1:] == "xx":
            status_class = int(status_text[0])
        elif status_text.isdigit() and len(status_text) == 3:
            status = int(status_text)
        else:
            raise ApiError(
                422,
                "invalid",
                f"status: give a code such as 404 or a class such as 5xx, not {status_text!r}",
            )
    for name in ("tunnel", "host", "method", "path", "q"):
        if len(q.get(name, "")) > 2000:
            raise ApiError(422, "invalid", f"{name}: at most 2000 characters")
    return captures.CaptureFilter(
        org=org,
        tunnel=q.get("tunnel", ""),
        host=q.get("host", ""),
        method=q.get("method", ""),
        status=status,
        status_class=status_class,
        path_prefix=q.get("path", ""),
        search=q.get("q", ""),
        since=_time("since", q["since"]) if q.get("since") else None,
        until=_time("until", q["until"]) if q.get("until") else None,
        before=_cursor(q["cursor"]) if q.get("cursor") else None,
    )


def _limit(query: Mapping[str, str]) -> int:
    text = query.get("limit", "")
    if not text:
        return PAGE_DEFAULT
    if not text.isdigit() or not 1 <= int(text) <= PAGE_MAX:
        raise ApiError(422, "invalid", f"limit: a number from 1 to {PAGE_MAX}")
    return int(text)


# -- routes --------------------------------------------------------------------------------


@routes.get("/v1/requests")
@describe(
    "Captured requests, newest first. Filters: tunnel, host, method, status (404 or 5xx), "
    "path (prefix), q (text in the path), since, until; paging: limit, cursor."
)
async def list_requests(request: web.Request) -> web.Response:
    return to_json(await listing(request.app, await principals.principal(request), request.query))


async def listing(app: web.Application, who: Principal, query: Mapping[str, str]) -> dict[str, Any]:
    """A page of the org's captured requests, newest first, as ``GET /v1/requests`` answers
    for ``query`` (its filters, limit and cursor)."""
    limit = _limit(query)
    rows = await captures.page(app[DB], _filter(query, who.org_id), limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "requests": [summary(row) for row in rows],
        "next_cursor": _next_cursor(rows[-1]) if more else None,
    }


@routes.delete("/v1/requests")
@describe("Clear captured requests: one tunnel's (tunnel=KEY or host=NAME), or the org's all.")
async def clear_requests(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    query = request.query
    return to_json(await clear(request.app, who, query.get("tunnel", ""), query.get("host", "")))


async def clear(app: web.Application, who: Principal, tunnel: str, host: str) -> dict[str, Any]:
    """Clear one tunnel's captures (by its key or hostname), or with neither the org's all."""
    if not (tunnel or host):
        who.require("admin")  # every tunnel's captures at once
    return {"deleted": await captures.clear(app[DB], who.org_id, tunnel, host)}


@routes.get("/v1/requests/stream")
@describe("Server-Sent Events: each newly captured request (same filters as the list).")
async def stream_requests(request: web.Request) -> web.StreamResponse:
    who = await principals.principal(request)
    wanted = _filter(request.query, who.org_id)
    db = request.app[DB]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(b": tailing captured requests\n\n")
    # Rows of a transaction that began a little before now may commit after it: look back
    # a moment and skip what was already sent.
    after = await db.value("SELECT now() - interval '2 seconds'")
    sent: dict[str, None] = {}
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while True:
        rows = await captures.newer(db, wanted, after, 100)
        for row in rows:
            after = max(after, row["stored_at"])
            if row["id"] in sent:
                continue
            sent[row["id"]] = None
            if len(sent) > 1000:
                sent.pop(next(iter(sent)))
            data = json.dumps(summary(row), separators=(",", ":"))
            await response.write(f"event: request\nid: {row['id']}\ndata: {data}\n\n".encode())
            quiet_since = loop.time()
        if loop.time() - quiet_since > TAIL_HEARTBEAT:
            await response.write(b": still here\n\n")
            quiet_since = loop.time()
        if len(rows) < 100:
            await asyncio.sleep(TAIL_POLL)


@routes.get("/v1/requests/{id}")
@describe("One captured request with headers and bodies; ?decoded=1 decodes gzip, br, deflate.")
async def get_request(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    decoded = request.query.get("decoded", "") in ("1", "true", "yes")
    return to_json(await one(request.app, who, request.match_info["id"], decoded))


async def one(
    app: web.Application, who: Principal, capture_id: str, decoded: bool = False
) -> dict[str, Any]:
    """One of the org's captured requests with headers and bodies (``detail``)."""
    record = await captures.one(app[DB], who.org_id, capture_id[:100])
    if record is None:
        raise not_found("captured request")
    return detail(record, decoded)


class ReplayEdits(msgspec.Struct, forbid_unknown_fields=True):
    """What to change before replaying; each left out is as captured. ``headers`` replace
    the captured ones whole; ``body`` is text, ``body_base64`` bytes."""

    method: str | None = None
    path: str | None = None
    headers: list[tuple[str, str]] | None = None
    body: str | None = None
    body_base64: str | None = None


def _check_token(name: str, value: str) -> None:
    if not value or any(c in value for c in ' \t\r\n\x00:()<>@,;\\"/[]?={}') or not value.isascii():
        raise ApiError(422, "invalid", f"{name}: {value!r} is not an HTTP token")


def replay_request(
    record: CaptureRecord, edits: ReplayEdits
) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """Method, path, headers and body to send, or ApiError saying what cannot be sent."""
    method = (edits.method or record.method).upper()
    _check_token("method", method)
    path = edits.path if edits.path is not None else record.url
    # Only a path: an absolute URL (or "//host") would name another host than the tunnel.
    if not path.startswith("/") or path.startswith("//"):
        raise ApiError(
            422,
            "invalid",
            "path: give a path starting with / (a replay only goes to its own tunnel)",
        )
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in path) or len(path) > 8000:
        raise ApiError(422, "invalid", "path: no spaces or control characters, at most 8000")
    source = edits.headers if edits.headers is not None else record.request_headers
    headers: list[tuple[str, str]] = []
    for name, value in source:
        _check_token("header name", name)
        if any(c in value for c in "\r\n\x00"):
            raise ApiError(422, "invalid", f"header {name}: no CR, LF or NUL in a value")
        if name.lower() in NOT_REPLAYED:
            continue
        if value == MASK and edits.headers is None:
            continue  # a masked credential is not known; the caller may send it as an edit
        headers.append((name, value))
    if edits.body is not None and edits.body_base64 is not None:
        raise ApiError(422, "invalid", "give body or body_base64, not both")
    if edits.body is not None:
        body = edits.body.encode()
    elif edits.body_base64 is not None:
        try:
            body = base64.b64decode(edits.body_base64, validate=True)
        except ValueError:
            raise ApiError(422, "invalid", "body_base64: not valid base64") from None
    else:
        if record.request_body.truncated:
            raise ApiError(
                409,
                "body_truncated",
                f"only {len(record.request_body.data)} of the {record.request_body.size} "
                "body bytes were captured; send the body to replay with (body or body_base64)",
            )
        body = record.request_body.data
    if len(body) > REPLAY_BODY_MAX:
        raise ApiError(413, "body_too_large", f"a replayed body is at most {REPLAY_BODY_MAX} bytes")
    return method, path, headers, body


@routes.post("/v1/requests/{id}/replay")
@describe(
    "Send a captured request again through its own tunnel, as captured or with edited "
    "method, path, headers and body; the answer is stored as a new capture and returned.",
    body=ReplayEdits,
)
async def replay(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    edits = await read_json(request, ReplayEdits)
    return to_json(await replay_capture(request.app, who, request.match_info["id"], edits))


async def replay_capture(
    app: web.Application, who: Principal, capture_id: str, edits: ReplayEdits
) -> dict[str, Any]:
    """Replay one of the org's captures through its tunnel with ``edits``; the new capture."""
    db = app[DB]
    record = await captures.one(db, who.org_id, capture_id[:100])
    if record is None:
        raise not_found("captured request")
    method, path, headers, body = replay_request(record, edits)
    config = app[CONFIG]
    where = await db.one(
        "SELECT t.edge_id, t.key FROM live_tunnels t JOIN edges e ON e.id = t.edge_id"
        " WHERE e.stopped_at IS NULL"
        " AND e.last_seen_at >= now() - make_interval(secs => %(stale)s)"
        " AND t.org_id = %(org)s AND lower(t.hostname) = lower(%(host)s)"
        " ORDER BY (t.key = %(key)s) DESC, t.started_at DESC LIMIT 1",
        {
            "stale": config.edge_stale_seconds,
            "org": who.org_id,
            "host": record.hostname,
            "key": record.tunnel_id,
        },
    )
    if where is None:
        raise ApiError(
            502,
            "tunnel_offline",
            f"no agent serves {record.hostname} now; start it again, then replay",
        )
    replies = app[REPLIES]
    correlation = secrets.token_hex(12)
    ask = ReplayRequest(
        correlation_id=correlation,
        reply_channel=replies.channel,
        org=who.org_id,
        hostname=record.hostname,
        tunnel_id=where["key"],
        method=method,
        path=path,
        headers=headers,
        body=body,
        replay_of=record.id,
        timeout=config.replay_timeout,
    )
    result = await replies.ask(where["edge_id"], ask, config.replay_timeout + 2.0)
    if result.record is None or result.status == 0:
        raise ApiError(502, "replay_failed", result.error or "the tunnel gave no answer")
    async with db.transaction() as q:
        await captures.store(q, [result.record])
    return detail(result.record)


# -- replies -------------------------------------------------------------------------------


class ReplayReplies:
    """This process's reply channel and the replays waiting on it."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.channel = f"{REPLY_CHANNEL}:{secrets.token_hex(8)}"
        self.waiting: dict[str, asyncio.Future[Any]] = {}

    async def ask(self, edge_id: str, ask: ReplayRequest, wait: float) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[ask.correlation_id] = future
        try:
            try:
                await self.app[BUS].publish(replay_channel(edge_id), encode(ask))
            except BusUnavailable as exc:
                raise ApiError(503, "unavailable", f"cannot reach the edges: {exc}") from exc
            try:
                return await asyncio.wait_for(future, wait)
            except TimeoutError:
                raise ApiError(
                    504,
                    "replay_timeout",
                    f"edge {edge_id} did not answer the replay within {wait:g}s; retry",
                ) from None
        finally:
            self.waiting.pop(ask.correlation_id, None)

    async def run(self) -> None:
        subscription = self.app[BUS].subscribe([self.channel])
        try:
            async for item in subscription:
                if isinstance(item, Gap):
                    continue  # a reply lost in the gap ends in its caller's timeout
                try:
                    result = replay_result_decoder.decode(item.payload)
                except msgspec.DecodeError:
                    log.warning("a reply on %s is not a ReplayResult; ignored", self.channel)
                    continue
                future = self.waiting.get(result.correlation_id)
                if future is not None and not future.done():
                    future.set_result(result)
        finally:
            await subscription.close()


REPLIES = web.AppKey("replay_replies", ReplayReplies)


async def replies(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the reply channel, subscribed while the app runs."""
    app[REPLIES] = waiting = ReplayReplies(app)
    task = asyncio.get_running_loop().create_task(waiting.run(), name="replay-replies")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
