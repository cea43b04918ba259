"""What every visitor request gets on its way into a tunnel, whatever HTTP version it came in:
routing by host, and the forwarded headers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from edge.http1.events import Headers
from edge.routing.table import Tunnel, normalize_host

if TYPE_CHECKING:
    from edge.context import EdgeContext

# Headers a visitor may not set for the local service: the edge sets them itself.
_REPLACED: Final = frozenset((b"x-forwarded-proto", b"x-forwarded-host", b"expect"))
_REPLACED_WITH_ID: Final = _REPLACED | {b"x-request-id"}
# Hop-by-hop headers of HTTP/2 requests that have no place in HTTP/1.1 (RFC 9113 8.2.2).
_H2_ONLY: Final = frozenset((b":method", b":path", b":scheme", b":authority", b":protocol"))
# What forward_headers drops or extends, of what a visitor sends.
_REWRITTEN: Final = _REPLACED_WITH_ID | _H2_ONLY | {b"x-forwarded-for", b"forwarded"}
# Connection options that name no other field: a Connection header listing only these removes
# nothing but the option fields themselves (RFC 9110 7.6.1).
_CONNECTION_OPTIONS: Final = frozenset((b"close", b"keep-alive", b"upgrade"))
# Fields a visitor's Connection header may not take out: the request's routing and framing,
# and the ones the edge adds itself (listed, they would be stripped after the edge added them,
# and the local service would see no client address and no Host).
_NOT_HOP_BY_HOP: Final = frozenset(
    (b"host", b"content-length", b"transfer-encoding", b"connection", *_REWRITTEN)
)
# Fields a trailer section may not carry (RFC 9110 6.5.1): framing, routing, connection
# management and the edge's own; a local service that merged them into the head would be
# misled about the message it read.
_NOT_IN_TRAILERS: Final = (
    _NOT_HOP_BY_HOP
    | _CONNECTION_OPTIONS
    | {
        b"proxy-connection",
        b"te",
        b"trailer",
        b"expect",
        b"authorization",
        b"proxy-authorization",
        b"cookie",
        b"content-type",
        b"content-encoding",
        b"content-range",
    }
)


class RouteRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def route(edge: EdgeContext, host: str) -> Tunnel:
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


def misdirected(edge: EdgeContext, server_name: str, host: str) -> str:
    """Why a request for ``host`` on a TLS connection made for ``server_name`` (its SNI,
    normalised; "" without one) is answered 421 (RFC 9110 15.5.20), or "" if it may be served:
    the same name, or one the same tunnel serves (HTTP/2 connection reuse, RFC 9113 9.1.1)."""
    if not server_name or server_name == host:
        return ""
    routes = edge.routes
    pool = routes.lookup_host(server_name)
    if pool is not None and pool is routes.lookup_host(host):
        return ""
    return f"This connection was made for {server_name}: open a new one for {host}."


def forward_headers(
    headers: Iterable[tuple[bytes, bytes]],
    host: bytes,
    client_ip: str,
    scheme: str,
    request_id: bytes | None = None,
) -> Headers:
    """Copy the request headers and add X-Forwarded-* and Forwarded (RFC 7239), and
    X-Request-Id (replacing the visitor's) when given a ``request_id``. ``host``: the
    request's authority in normal form (``forwarded_authority``), which replaces its Host.

    The fields a Connection header lists are taken out here, before the edge's own are added,
    and the Connection header keeps only its options (``close``, ``keep-alive``,
    ``upgrade``): the HTTP/1.1 writer strips what it lists again, and must find nothing of
    the edge's there."""
    replaced = _REPLACED if request_id is None else _REPLACED_WITH_ID
    out: Headers = []
    xff = b""
    forwarded = b""
    listed: set[bytes] | None = None
    for name, value in headers:
        if name == b"x-forwarded-for":
            xff = value
        elif name == b"forwarded":
            forwarded = value
        elif name == b"host":
            out.append((name, host))
        elif name not in replaced and name not in _H2_ONLY:
            out.append((name, value))
            if name == b"connection":
                tokens = {t.strip(b" \t").lower() for t in value.split(b",")}
                listed = tokens if listed is None else listed | tokens
    if listed is not None and not listed <= _CONNECTION_OPTIONS:
        out = _without_listed(out, listed)
        if b"x-forwarded-for" in listed:
            xff = b""
        if b"forwarded" in listed:
            forwarded = b""
    ip, proto, this_hop = _this_hop(host, client_ip, scheme)
    out.append((b"x-forwarded-for", xff + b", " + ip if xff else ip))
    out.append((b"x-forwarded-proto", proto))
    out.append((b"x-forwarded-host", host))
    out.append((b"forwarded", forwarded + b", " + this_hop if forwarded else this_hop))
    if request_id is not None:
        out.append((b"x-request-id", request_id))
    return out


def _without_listed(headers: Headers, listed: set[bytes]) -> Headers:
    """``headers`` less the hop-by-hop fields a Connection header lists, with one Connection
    header that keeps only its options."""
    options = b", ".join(sorted(listed & _CONNECTION_OPTIONS))
    out: Headers = []
    for name, value in headers:
        if name == b"connection":
            if options:
                out.append((name, options))
                options = b""
        elif name in _NOT_HOP_BY_HOP or name not in listed:
            out.append((name, value))
    return out


def forwarded_authority(host: str, host_header: bytes) -> bytes:
    """The authority to forward for a Host header (or ``:authority``) whose host
    ``normalize_host`` read as ``host``: that host, and the port if one was given (the port
    is digits: ``normalize_host`` refuses any other)."""
    if host_header.startswith(b"["):
        port = host_header.partition(b"]")[2][1:]
    elif host_header.count(b":") == 1:
        port = host_header.partition(b":")[2].strip(b" \t")
    else:
        port = b""
    name = host.encode("latin-1")
    return name + b":" + port if port else name


def absolute_target(target: bytes, host: str) -> bytes | None:
    """The origin form of an absolute-form request target (RFC 9112 3.2.2) that names
    ``host`` (normalised), or None for one that names another host, or is no URI at all: the
    local service would route by the target, the edge has routed by Host."""
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return None
    end = len(rest)
    for delimiter in (b"/", b"?", b"#"):
        at = rest.find(delimiter)
        if 0 <= at < end:
            end = at
    authority = rest[:end]
    if b"@" in authority or normalize_host(authority.decode("latin-1")) != host:
        return None
    path = rest[end:]
    return path if path.startswith(b"/") else b"/" + path


def trailer_fields(trailers: Headers) -> Headers:
    """The trailer fields a visitor (or a local service) sent, less those no trailer section
    may carry: framing, routing, connection management and the edge's own fields."""
    return [(name, value) for name, value in trailers if name.lower() not in _NOT_IN_TRAILERS]


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
