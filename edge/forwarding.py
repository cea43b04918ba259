"""What every visitor request gets on its way into a tunnel, whatever HTTP version it came in:
routing by host, and the forwarded headers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from edge.http1.events import Headers
from edge.routing import Tunnel

if TYPE_CHECKING:
    from edge.server import Edge

# Headers a visitor may not set for the local service: the edge sets them itself.
_REPLACED: Final = frozenset((b"x-forwarded-proto", b"x-forwarded-host", b"expect"))
_REPLACED_WITH_ID: Final = _REPLACED | {b"x-request-id"}
# Hop-by-hop headers of HTTP/2 requests that have no place in HTTP/1.1 (RFC 9113 8.2.2).
_H2_ONLY: Final = frozenset((b":method", b":path", b":scheme", b":authority", b":protocol"))
# What forward_headers drops or extends, of what a visitor sends.
_REWRITTEN: Final = _REPLACED_WITH_ID | _H2_ONLY | {b"x-forwarded-for", b"forwarded"}


class RouteRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def route(edge: Edge, host: str) -> Tunnel:
    # A name bound as it is, served by one tunnel, is the usual case: read here, it costs a
    # few attribute reads, where lookup_host and pick are two calls into Python (the route
    # table is not compiled). Aliases, wildcards and pools of several take those calls.
    routes = edge.routes
    pool = routes.hosts.get(host)
    if pool is None:
        pool = routes.lookup_host(host)
    tunnel: Tunnel | None = None
    if pool is not None:
        members = pool.members
        tunnel = members[0] if len(members) == 1 else pool.pick()
    if tunnel is None:
        edge.metrics.refused("unknown_host")
        # A name under the base domain is asked for by its label, any other by itself.
        label, _, parent = host.partition(".")
        name = label if parent == edge.config.base_domain else host
        raise RouteRefused(
            404,
            f"No tunnel is serving {host} right now. If it is yours, start it with "
            f"`burrow http PORT --name {name}`.",
        )
    if tunnel.protocol != "http":
        edge.metrics.refused("wrong_mode")
        raise RouteRefused(
            421,
            f"{host} is served as TLS passthrough: connect with https:// so its own "
            "service does the TLS handshake.",
        )
    return tunnel


def forward_headers(
    headers: Iterable[tuple[bytes, bytes]],
    host: bytes,
    client_ip: str,
    scheme: str,
    request_id: bytes | None = None,
) -> Headers:
    """Copy the request headers and add X-Forwarded-* and Forwarded (RFC 7239), and
    X-Request-Id (replacing the visitor's) when given a ``request_id``."""
    replaced = _REPLACED if request_id is None else _REPLACED_WITH_ID
    out: Headers = []
    xff = b""
    forwarded = b""
    for name, value in headers:
        if name == b"x-forwarded-for":
            xff = value
        elif name == b"forwarded":
            forwarded = value
        elif name not in replaced and name not in _H2_ONLY:
            out.append((name, value))
    ip, proto, this_hop = _this_hop(host, client_ip, scheme)
    out.append((b"x-forwarded-for", xff + b", " + ip if xff else ip))
    out.append((b"x-forwarded-proto", proto))
    out.append((b"x-forwarded-host", host))
    out.append((b"forwarded", forwarded + b", " + this_hop if forwarded else this_hop))
    if request_id is not None:
        out.append((b"x-request-id", request_id))
    return out


def _this_hop(host: bytes, client_ip: str, scheme: str) -> tuple[bytes, bytes, bytes]:
    """The visitor's address, the scheme, and this hop's ``Forwarded`` element."""
    ip = client_ip.encode()
    node = b'"[' + ip + b']"' if b":" in ip else ip
    proto = scheme.encode()
    # RFC 7239: a host with a port is not a token and must be quoted.
    host_value = b'"' + host + b'"' if b":" in host else host
    return ip, proto, b"for=" + node + b";host=" + host_value + b";proto=" + proto


def forwards_unchanged(headers: Headers) -> bool:
    """Whether ``forward_headers`` would keep every one of these headers, adding only its
    own (none of them is replaced or extended)."""
    # A plain loop, not all() over a generator: this runs for every request.
    for name, _ in headers:  # noqa: SIM110
        if name in _REWRITTEN:
            return False
    return True


def forwarded_prefix(host: bytes, client_ip: str, scheme: str) -> bytes:
    """The header lines ``forward_headers`` adds, for a request ``forwards_unchanged``, up
    to the request id's value: the request id and a CRLF complete them. A keep-alive
    connection asks the same of every request, so a visitor keeps it next to its host."""
    ip, proto, this_hop = _this_hop(host, client_ip, scheme)
    return b"".join(
        (
            b"x-forwarded-for: ", ip,
            b"\r\nx-forwarded-proto: ", proto,
            b"\r\nx-forwarded-host: ", host,
            b"\r\nforwarded: ", this_hop,
            b"\r\nx-request-id: ",
        )
    )  # fmt: skip
