"""Control messages carried in CONTROL frames.

Each message is a msgspec Struct in one tagged union. The integer tags are the wire format:
they are pinned by ``tests/proto/test_messages.py`` and must never be renumbered; add new
messages with new tags and retire old ones by leaving their tag unused.

The conversation, in order:

1. agent -> edge ``Hello``: versions it speaks, its build, an instance id that survives
   reconnects (so the edge can tell a reconnect from a second agent) and its authtoken.
2. edge -> agent ``Welcome`` (session accepted) or ``Refused`` (then the edge closes).
3. agent -> edge ``Bind`` per tunnel; edge -> agent ``Bound`` or ``BindFailed``.
4. edge -> agent ``StreamOpen`` (in the header: the new stream id) for every visitor
   connection; the agent connects to its local service and relays, or resets the stream
   with ``ResetCode.REFUSED`` and the reason.
5. either side ``Unbind``; edge -> agent ``GoAway`` before it shuts down or drains.
"""

from __future__ import annotations

from typing import Final

import msgspec


class Hello(msgspec.Struct, tag=1, array_like=True, forbid_unknown_fields=False):
    """agent -> edge, first message on a link."""

    versions: list[int]
    agent_version: str
    instance_id: str
    token: str
    os: str = ""


class Welcome(msgspec.Struct, tag=2, array_like=True):
    """edge -> agent, the session is authenticated and open."""

    version: int
    session_id: str
    edge_id: str
    account: str
    heartbeat_ms: int
    max_streams: int


class Refused(msgspec.Struct, tag=3, array_like=True):
    """edge -> agent, the session is refused (bad token, unsupported version); link closes."""

    code: str
    message: str


class Bind(msgspec.Struct, tag=4, array_like=True):
    """agent -> edge, ask for a tunnel. ``name`` is a subdomain label or a full hostname for
    HTTP; ``port`` is a wanted public port for TCP (0: any)."""

    request_id: int
    protocol: str  # "http" | "tcp" | "tls" (TLS passthrough by SNI)
    name: str = ""
    port: int = 0
    local: str = ""  # for display on the edge (tunnel listings), never dialled by the edge
    pool: bool = False


class Bound(msgspec.Struct, tag=5, array_like=True):
    """edge -> agent, a tunnel is live at ``url``."""

    request_id: int
    tunnel_id: int
    url: str
    name: str
    port: int = 0
    urls: list[str] = []  # every public URL of the tunnel (https and http), ``url`` first


class BindFailed(msgspec.Struct, tag=6, array_like=True):
    """edge -> agent, a Bind was refused; ``message`` says why and what to do."""

    request_id: int
    code: str
    message: str


class Unbind(msgspec.Struct, tag=7, array_like=True):
    """either side, a tunnel is closed; open streams of it run to their end."""

    tunnel_id: int
    reason: str = ""


class StreamOpen(msgspec.Struct, tag=8, array_like=True):
    """edge -> agent, a visitor connection on ``tunnel_id`` (stream id in the frame header)."""

    tunnel_id: int
    kind: str  # "http" | "tcp" | "tls"
    visitor_addr: str
    visitor_port: int


class GoAway(msgspec.Struct, tag=9, array_like=True):
    """edge -> agent, no new streams will come; reconnect now, existing streams drain
    for up to ``drain_ms``."""

    reason: str
    drain_ms: int


class Notice(msgspec.Struct, tag=10, array_like=True):
    """either side, a human-readable message to log (warnings, limits hit)."""

    level: str
    message: str


Message = (
    Hello | Welcome | Refused | Bind | Bound | BindFailed | Unbind | StreamOpen | GoAway | Notice
)

MESSAGE_TAGS: Final[dict[type, int]] = {
    Hello: 1,
    Welcome: 2,
    Refused: 3,
    Bind: 4,
    Bound: 5,
    BindFailed: 6,
    Unbind: 7,
    StreamOpen: 8,
    GoAway: 9,
    Notice: 10,
}

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode_message(message: Message) -> bytes:
    return _encoder.encode(message)


def decode_message(body: bytes) -> Message:
    """Decode a CONTROL body; raises ``msgspec.DecodeError`` (incl. ValidationError)."""
    return _decoder.decode(body)
