"""Captured requests and replays, as they travel on the bus.

``CaptureRecord`` is one HTTP request that reached a tunnel and the answer it got. The
edge's capture filter (a response filter in the request pipeline) produces one per request
of a tunnel with capture on, with ``build_capture`` from the heads and body prefixes it
already parsed, and appends it, encoded with ``encode``, to ``CAPTURES_STREAM``; it never
waits on the bus (a full queue drops and counts). The inspector worker
(``burrowd worker inspector``, ``control.inspector``) reads that stream in a consumer group
and stores the records in PostgreSQL, idempotently on ``CaptureRecord.id``.

Replay: control publishes ``ReplayRequest`` on ``replay_channel(edge_id)`` of the edge that
holds the tunnel; that edge (``edge.sync.replay``) sends the request through the same tunnel and
publishes ``ReplayResult`` on the ``reply_channel`` the request names, with the same
``correlation_id``. Control stores the result as a new capture with ``replay_of`` set.

Field names are wire format between processes of different versions: never rename them;
add fields with defaults.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Sequence

import msgspec

CAPTURES_STREAM = "captures"  # edges -> inspector worker: CaptureRecord
CAPTURES_MAXLEN = 200_000  # the stream's cap while the worker is away (oldest go first)
REPLAY_CHANNEL = "replay"  # control -> one edge: ReplayRequest ("replay:<edge id>")
REPLY_CHANNEL = "replay-reply"  # an edge -> one control process: ReplayResult

BODY_PREFIX_LIMIT = 64 * 1024
"""How much of each body a capture keeps by default (the tunnel may choose less)."""

REPLAY_HEADER = b"x-burrow-replay"
"""Marks a replayed request for the local service; its value is the replayed capture id."""

NOT_REPLAYED = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
        "x-burrow-replay",
    }
)
"""Headers a replay never takes from a capture or from edits: the sender sets Host and
the replay mark, and frames the body itself (hop-by-hop fields belong to one connection)."""

SENSITIVE_HEADERS = frozenset({b"authorization", b"cookie", b"set-cookie", b"proxy-authorization"})
MASK = "[masked]"

PROTOCOLS = ("http/1.1", "h2", "websocket")


class CapturedBody(msgspec.Struct, frozen=True):
    """The first bytes of a body: ``size`` is the whole body's length as it crossed the
    edge, ``truncated`` whether ``data`` is less than that. ``content_encoding`` and
    ``transfer_encoding`` are as the headers said (``data`` is never decoded here)."""

    data: bytes = b""
    size: int = 0
    truncated: bool = False
    content_encoding: str = ""
    transfer_encoding: str = ""


class CaptureRecord(msgspec.Struct, frozen=True):
    id: str
    org: str
    tunnel_id: str  # the tunnel's key, "<session id>/<tunnel id>"
    hostname: str
    edge_id: str
    request_id: str
    method: str
    url: str  # path and query as the visitor sent them
    protocol: str  # one of PROTOCOLS
    request_headers: list[tuple[str, str]]
    response_headers: list[tuple[str, str]]
    status: int  # 0: no response (the exchange failed)
    visitor: str  # the visitor's address
    started: float  # unix seconds: the request head was received
    first_byte: float  # seconds after ``started`` to the response's first byte; -1: none
    duration: float  # seconds after ``started`` to the response's end
    request_body: CapturedBody = CapturedBody()
    response_body: CapturedBody = CapturedBody()
    replay_of: str = ""  # the capture this one replayed, if it is a replay
    error: str = ""  # why there is no (complete) response


def new_capture_id() -> str:
    """Sortable by time (milliseconds first), unique without coordination."""
    return f"req_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def _header_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str:
    return ",".join(_text(v).strip().lower() for k, v in headers if k.lower() == name)


def shown_headers(
    headers: Iterable[tuple[bytes, bytes]], reveal_sensitive: bool
) -> list[tuple[str, str]]:
    """Headers as text, credentials masked unless the tunnel opted in to keeping them."""
    if reveal_sensitive:
        return [(_text(k), _text(v)) for k, v in headers]
    return [(_text(k), MASK if k.lower() in SENSITIVE_HEADERS else _text(v)) for k, v in headers]


def captured_body(
    headers: Sequence[tuple[bytes, bytes]], prefix: bytes, size: int, limit: int
) -> CapturedBody:
    data = bytes(prefix[:limit])
    return CapturedBody(
        data=data,
        size=size,
        truncated=size > len(data),
        content_encoding=_header_value(headers, b"content-encoding"),
        transfer_encoding=_header_value(headers, b"transfer-encoding"),
    )


def build_capture(
    *,
    org: str,
    tunnel_id: str,
    hostname: str,
    edge_id: str,
    request_id: str,
    method: bytes,
    target: bytes,
    protocol: str,
    request_headers: Sequence[tuple[bytes, bytes]],
    response_headers: Sequence[tuple[bytes, bytes]],
    status: int,
    visitor: str,
    started: float,
    first_byte: float | None,
    ended: float,
    request_prefix: bytes = b"",
    request_size: int = 0,
    response_prefix: bytes = b"",
    response_size: int = 0,
    body_limit: int = BODY_PREFIX_LIMIT,
    reveal_sensitive: bool = False,
    replay_of: str = "",
    error: str = "",
    capture_id: str = "",
) -> CaptureRecord:
    """A record from what the edge parsed: the heads (names lowercased, as the edge's parser
    gives them), the first ``body_limit`` bytes of each body and their full sizes, and
    the times (unix seconds) the head came in, the first response byte went out (None: no
    response) and the exchange ended."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown capture protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
    return CaptureRecord(
        id=capture_id or new_capture_id(),
        org=org,
        tunnel_id=tunnel_id,
        hostname=hostname,
        edge_id=edge_id,
        request_id=request_id,
        method=_text(method),
        url=_text(target),
        protocol=protocol,
        request_headers=shown_headers(request_headers, reveal_sensitive),
        response_headers=shown_headers(response_headers, reveal_sensitive),
        status=status,
        visitor=visitor,
        started=started,
        first_byte=-1.0 if first_byte is None else max(0.0, first_byte - started),
        duration=max(0.0, ended - started),
        request_body=captured_body(request_headers, request_prefix, request_size, body_limit),
        response_body=captured_body(response_headers, response_prefix, response_size, body_limit),
        replay_of=replay_of,
        error=error,
    )


# -- replay (control <-> the edge holding the tunnel) ---------------------------------------


class ReplayRequest(msgspec.Struct, frozen=True):
    """Control asks ``edge_id`` to send one request through the tunnel serving ``hostname``
    for ``org``. ``headers`` carry no Host (the edge sets the tunnel's) and no framing
    headers (the edge frames ``body`` itself)."""

    correlation_id: str
    reply_channel: str
    org: str
    hostname: str
    tunnel_id: str
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    replay_of: str
    body_limit: int = BODY_PREFIX_LIMIT
    timeout: float = 30.0


class ReplayResult(msgspec.Struct, frozen=True):
    """The edge's answer: ``status`` 0 with ``error`` when the request could not be sent
    or got no complete answer; the record is the replay's own capture."""

    correlation_id: str
    status: int
    error: str = ""
    record: CaptureRecord | None = None


def replay_channel(edge_id: str) -> str:
    return f"{REPLAY_CHANNEL}:{edge_id}"


_encoder = msgspec.msgpack.Encoder()
capture_decoder = msgspec.msgpack.Decoder(CaptureRecord)
replay_request_decoder = msgspec.msgpack.Decoder(ReplayRequest)
replay_result_decoder = msgspec.msgpack.Decoder(ReplayResult)


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)
