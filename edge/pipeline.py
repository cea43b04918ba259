"""What happens to every visitor request and connection, whatever protocol it came in on.

Theory of operation
-------------------
The protocol shells (``edge.visitors.http_visitor`` for HTTP/1.1, ``edge.visitors.h2_visitor``
for HTTP/2) only translate the wire into requests: a head (method, target, authority, header
fields), body data, an end with trailers, a reset. Each connection has one ``RequestStage``;
the shell hands it every request head and the stage decides, in this order, the same way for
both versions:

1. **limits**: more header fields than ``max_header_count`` (431);
2. **CONNECT**: not served by tunnels (405);
3. **host**: the Host header (HTTP/1.1) or ``:authority`` (HTTP/2), normalised
   (``edge.routing.table.normalize_host``; 400 when missing or not a host name). A connection names
   one host as a rule, so the last one is remembered and the next request with the same
   header value costs one comparison;
4. **special paths** (``SpecialPaths``): request paths the edge answers itself, before any
   tunnel is chosen and before any visitor policy: the WebSocket agent link
   (``proto.constants.LINK_PATH``) and, in the ``ACME_CHALLENGE`` slot, ACME http-01
   challenges (RFC 8555 8.3), which a CA fetches over plain HTTP for a host whose tunnel may
   be protected or not yet bound;
5. **routing**: the tunnel serving the host (404 unknown host, 421 TLS passthrough host),
   and on TLS the SNI must name the same tunnel (421, RFC 9110 15.5.20);
6. **request filters**, the tunnel's, in order (``RequestFilter``); the visitor policy (IP
   rules, basic auth) is the first of them.

The stage answers with the ``Tunnel`` to forward to, or an ``EdgeAnswer``: a response the edge
gives itself (an error page rendered by ``edge.visitors.pages``, or a filter's own response).
The shell writes it in its version's framing; ``EdgeAnswer.keep`` says whether the connection
may go on (a refusal by policy keeps it, so a browser can ask again with credentials; a
request the edge cannot read does not). The shell then adds the request id and forwarded
headers (``edge.visitors.forwarding``), runs the exchange with the agent
(``edge.visitors.exchange``), and counts and logs the request (``edge.admin.metrics``,
``edge.admin.access_log``).

Filters
-------
A ``RequestFilter`` is a small object with three hooks; each hook may pass (return None),
rewrite (change ``request.headers`` or the response head in place), answer or refuse (return
an ``EdgeAnswer``):

- ``on_head(request)``: the request head, before it goes upstream; rewrite its fields or
  answer it (rate limits, header rewrites, JWT checks);
- ``on_body(request, data, end)``: each piece of the request body as it streams upstream,
  and its end (a copy of the first bytes for request capture, a size limit);
- ``on_response(request, head)``: the response head from the local service, before the
  visitor sees it (header rewrites, capture of the response's head).

Filters come per agent session (``AgentSession.request_filters``, a tuple built once when its
Hello is accepted: the token's claims decide them). A tunnel with none costs its requests one
truth test of the empty tuple: no ``FilterRequest`` is made and no hook called. With filters,
the stage makes one ``FilterRequest`` per request, which the shell keeps until the response
head so ``on_response`` sees the same object (a filter may keep its per-request state on it,
in ``request.notes``).

A filter that must read the body before deciding (webhook signature verification) declares
``body_limit``, the bytes it needs. The shells do not honour it yet: ``on_body`` sees the body
as it streams, after the head went upstream. The plan for it, so such filters fit: when any
filter of the tunnel has a ``body_limit``, the shell holds the head at the edge and reads the
body into ``FilterRequest.body`` up to the largest limit (reading pauses there, as it does for
a full tunnel window, so memory stays bounded by the limit, never by the body); ``on_body`` is
called once with the buffered bytes and ``end`` true when the body was shorter, false when
longer (the filter refuses with 413 or passes); then the head goes upstream, the buffered
bytes, and the rest as it comes.

Connections
-----------
TCP tunnels and TLS passthrough have no request to read: ``admit_connection`` is their one
admission stage (connect phase): the tunnel's ``ConnectFilter``s (the visitor policy's address
rules first) decide from the visitor's address; then a tunnel stream is opened, or the
connection is refused and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from mypy_extensions import mypyc_attr

from edge.http1.events import Headers, ResponseHead
from edge.link.agent_session import StreamUnavailable
from edge.routing.table import normalize_host
from edge.visitors.forwarding import (
    RouteRefused,
    forwarded_authority,
    forwarded_prefix,
    misdirected,
    route,
)
from edge.visitors.pages import TITLES, error_page, http_date
from edge.visitors.visitor_policy import OPEN, Refusal, VisitorPolicy, challenge
from proto.constants import LINK_PATH_BYTES

if TYPE_CHECKING:
    from edge.context import EdgeContext
    from edge.routing.table import Tunnel
    from relay.stream import SocketRelay

log = logging.getLogger("burrow.edge.pipeline")

# The path ACME http-01 challenges are fetched on (RFC 8555 8.3): an http-01 responder is
# registered for it with ``SpecialPaths.add(ACME_CHALLENGE, responder)``.
ACME_CHALLENGE: Final = b"/.well-known/acme-challenge/"


class EdgeAnswer:
    """A response the edge gives itself instead of forwarding the request.

    ``body`` None: the edge's error page for ``status`` and ``detail`` (``edge.visitors.pages``).
    ``reason``: the refusal's metrics label ("" counts none). ``keep``: the connection may
    carry the next request (for HTTP/1.1, only when the request has no body to skip)."""

    __slots__ = ("body", "detail", "headers", "keep", "reason", "status")

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        reason: str = "",
        headers: Headers | None = None,
        body: bytes | None = None,
        keep: bool = False,
    ) -> None:
        self.status = status
        self.detail = detail
        self.reason = reason
        self.headers: Headers = headers if headers is not None else []
        self.body = body
        self.keep = keep

    def __repr__(self) -> str:
        return f"EdgeAnswer({self.status}, {self.detail!r})"

    def fields(self, request_id: bytes) -> tuple[Headers, bytes]:
        """The response's header fields (no status line, no Connection) and its body."""
        body = self.body
        if body is None:
            body = error_page(self.status, self.detail, request_id)
            fields = error_fields(len(body), request_id)
        else:
            fields = [(b"content-length", b"%d" % len(body)), (b"date", http_date())]
        if self.headers:
            fields.extend(self.headers)
        return fields, body


def error_fields(length: int, request_id: bytes) -> Headers:
    """The header fields of every error page the edge writes, whatever the HTTP version."""
    return [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", b"%d" % length),
        (b"cache-control", b"no-store"),
        (b"x-burrow-error", b"1"),
        (b"x-request-id", request_id),
        (b"date", http_date()),
    ]


def status_line(status: int) -> bytes:
    """An HTTP/1.1 status line for the edge's own answers, CRLF included."""
    return b"HTTP/1.1 %d %s\r\n" % (status, TITLES.get(status, "Error").encode())


# The stage hands a connection over instead of answering: an agent link upgrade.
AGENT_LINK: Final = EdgeAnswer(101, "an agent link over WebSocket")


class FilterRequest:
    """A request as its filters see it. ``headers`` may be replaced by ``on_head``; ``notes``
    is for a filter's own per-request state (created on first use)."""

    __slots__ = (
        "body",
        "client_ip",
        "headers",
        "host",
        "method",
        "notes",
        "request_id",
        "scheme",
        "target",
        "tunnel",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        host: str,
        headers: Headers,
        client_ip: str,
        scheme: str,
        request_id: bytes,
        tunnel: Tunnel | None,
    ) -> None:
        self.method = method
        self.target = target
        self.host = host
        self.headers = headers
        self.client_ip = client_ip
        self.scheme = scheme
        self.request_id = request_id
        self.tunnel = tunnel
        self.body = b""
        self.notes: dict[str, object] | None = None


@mypyc_attr(allow_interpreted_subclasses=True)
class RequestFilter:
    """One feature that applies to a tunnel's requests. Every hook passes by default."""

    __slots__ = ()

    # Bytes of the request body this filter must see before the head goes upstream (see the
    # module's theory of operation); 0: it looks at the body as it streams, if at all.
    body_limit = 0

    def on_head(self, request: FilterRequest) -> EdgeAnswer | None:
        return None

    def on_body(self, request: FilterRequest, data: bytes, end: bool) -> EdgeAnswer | None:
        return None

    def on_response(self, request: FilterRequest, head: ResponseHead) -> None:
        return None


@mypyc_attr(allow_interpreted_subclasses=True)
class ConnectFilter:
    """One feature that applies to a TCP or TLS-passthrough tunnel's connections."""

    __slots__ = ()

    def on_connect(self, tunnel: Tunnel, address: str) -> str | None:
        """A metrics reason to refuse the connection with, or None to let it through."""
        return None


class PolicyFilter(RequestFilter):
    """The token's visitor policy (address rules, basic auth) as the first request filter."""

    __slots__ = ("policy",)

    def __init__(self, policy: VisitorPolicy) -> None:
        self.policy = policy

    def on_head(self, request: FilterRequest) -> EdgeAnswer | None:
        screened = self.policy.screen(request.client_ip, request.headers)
        if isinstance(screened, Refusal):
            extra: Headers = []
            if screened.status == 401:
                extra.append((b"www-authenticate", challenge(request.host)))
            return EdgeAnswer(
                screened.status, screened.detail, reason=screened.reason, headers=extra, keep=True
            )
        request.headers = screened  # without this tunnel's Authorization
        return None


class AddressFilter(ConnectFilter):
    """The token's address rules for connections that carry no HTTP request."""

    __slots__ = ("policy",)

    def __init__(self, policy: VisitorPolicy) -> None:
        self.policy = policy

    def on_connect(self, tunnel: Tunnel, address: str) -> str | None:
        return None if self.policy.allows(address) else "ip_denied"


def filters_for(
    policy: VisitorPolicy,
) -> tuple[tuple[RequestFilter, ...], tuple[ConnectFilter, ...]]:
    """The request and connect filters of an agent session whose token carries ``policy``."""
    if policy is OPEN:
        return (), ()
    return (PolicyFilter(policy),), (AddressFilter(policy),)


# -- special paths ----------------------------------------------------------------------------

# A special path's handler: the request (its tunnel not chosen yet), and what the edge does
# with it: an answer, ``AGENT_LINK`` (the connection becomes an agent link), or None (not a
# request this handler takes: it is routed as any other).
SpecialHandler = Callable[[FilterRequest], "EdgeAnswer | None"]


class SpecialPaths:
    """Request paths the edge serves itself, by prefix, looked at before routing.

    The usual request is for none of them: ``match`` costs it one byte comparison (every
    prefix's second byte is in ``_leads``, and few paths start with ``/_`` or ``/.``)."""

    __slots__ = ("_handlers", "_leads")

    def __init__(self) -> None:
        self._handlers: list[tuple[bytes, SpecialHandler]] = []
        self._leads = b""

    def add(self, prefix: bytes, handler: SpecialHandler) -> None:
        """Serve requests whose path starts with ``prefix`` (which starts with ``/`` and has a
        second byte) with ``handler``, in place of the one it had; the longest matching prefix
        wins."""
        if len(prefix) < 2 or prefix[0] != 47:
            raise ValueError(f"a special path starts with / and names something: {prefix!r}")
        self._handlers = [entry for entry in self._handlers if entry[0] != prefix]
        self._handlers.append((prefix, handler))
        self._handlers.sort(key=lambda entry: -len(entry[0]))
        if prefix[1:2] not in self._leads:
            self._leads += prefix[1:2]

    def remove(self, prefix: bytes) -> None:
        self._handlers = [entry for entry in self._handlers if entry[0] != prefix]
        self._leads = bytes({entry[0][1] for entry in self._handlers})

    def match(self, target: bytes) -> SpecialHandler | None:
        # An index, not a slice: the usual request allocates nothing here.
        if len(target) < 2 or target[1] not in self._leads:
            return None
        for prefix, handler in self._handlers:
            if target.startswith(prefix):
                return handler
        return None


def agent_link_handler(agent_tls: bool) -> SpecialHandler:
    """The link path: a WebSocket upgrade on TLS (or anywhere, on an edge that takes
    plaintext agent links) is an agent, not a visitor."""

    def handle(request: FilterRequest) -> EdgeAnswer | None:
        if request.target != LINK_PATH_BYTES:
            return None
        if request.scheme != "https" and agent_tls:
            return None
        for name, value in request.headers:
            if name == b"upgrade" and value.lower() == b"websocket":
                return AGENT_LINK
        return None

    return handle


def acme_http01_handler(current: Callable[[], dict[str, str]]) -> SpecialHandler:
    """ACME http-01 (RFC 8555 8.3): while the certs worker has a challenge out, the answers
    ``current`` returns (token -> key authorization; ``edge.sync.control_sync`` replaces the
    table as challenges come and go) hold it, and every edge answers it whatever tunnel serves
    the host and whatever its policy; an unknown token is routed as any other request."""

    def handle(request: FilterRequest) -> EdgeAnswer | None:
        answers = current()
        if not answers:
            return None
        answer = answers.get(request.target[len(ACME_CHALLENGE) :].decode("latin-1"))
        if answer is None:
            return None
        return EdgeAnswer(
            200,
            "ACME http-01 challenge answered",
            headers=[(b"content-type", b"text/plain"), (b"cache-control", b"no-store")],
            body=answer.encode("ascii"),
        )

    return handle


def default_special_paths(agent_tls: bool) -> SpecialPaths:
    paths = SpecialPaths()
    paths.add(LINK_PATH_BYTES, agent_link_handler(agent_tls))
    return paths


# -- the request stage ------------------------------------------------------------------------


class RequestStage:
    """The shared stage of one visitor connection's requests (see the module docstring).

    After ``admit`` returned a tunnel, ``host`` and ``authority`` (the Host to forward) are
    the request's, ``headers`` the fields to forward (a filter may have rewritten them; the
    same object as given when none did), and ``filtered`` the ``FilterRequest`` its filters
    saw (None when the tunnel has none)."""

    __slots__ = (
        "_forwarded",
        "_host_header",
        "_host_name",
        "authority",
        "authority_as_read",
        "client_ip",
        "ctx",
        "filtered",
        "headers",
        "host",
        "scheme",
        "server_name",
    )

    def __init__(self, ctx: EdgeContext, scheme: str) -> None:
        self.ctx = ctx
        self.scheme = scheme
        self.client_ip = ""
        self.server_name = ""  # the TLS SNI the connection was made for, normalised
        self.host = ""
        self.authority = b""
        self.authority_as_read = False  # the Host header is already the authority forwarded
        self.headers: Headers = []
        self.filtered: FilterRequest | None = None
        self._host_header = b""
        self._host_name = ""
        self._forwarded = b""

    def admit(
        self,
        method: bytes,
        target: bytes,
        host_header: bytes,
        headers: Headers,
        header_count: int,
        request_id: bytes,
    ) -> Tunnel | EdgeAnswer:
        """The tunnel to forward the request to, or the edge's own answer. ``host_header``:
        the Host (or ``:authority``) as sent, b"" when there was none; ``header_count``: the
        request's header fields as the visitor sent them."""
        self.filtered = None
        self.host = ""
        limits = self.ctx.limits
        if header_count > limits.max_header_count:
            return EdgeAnswer(431, f"The request has more than {limits.max_header_count} headers.")
        if method == b"CONNECT":
            return EdgeAnswer(405, "CONNECT is not served by Burrow tunnels.")
        if not host_header:
            return EdgeAnswer(400, "The request has no Host header, so no tunnel can be chosen.")
        if host_header == self._host_header:
            host = self._host_name
        else:
            host = normalize_host(host_header.decode("latin-1"))
            if not host:
                return EdgeAnswer(400, "The Host header is not a host name with an optional port.")
            self.authority = authority = forwarded_authority(host, host_header)
            # Then a shell may forward the request's lines as they were read. Kept with the
            # cached host, not told by object identity: from a connection's second request
            # on, its Host header is another bytes object than the cached one.
            self.authority_as_read = authority == host_header
            self._host_header = host_header
            self._host_name = host
            self._forwarded = b""
        self.host = host
        ctx = self.ctx
        special = ctx.special_paths.match(target)
        if special is not None:
            answer = special(
                FilterRequest(
                    method, target, host, headers, self.client_ip, self.scheme, request_id, None
                )
            )
            if answer is not None:
                return answer
        try:
            tunnel = route(ctx, host)
        except RouteRefused as exc:
            return EdgeAnswer(exc.status, exc.detail)
        if self.server_name:  # over TLS: the SNI must name this tunnel too
            wrong_name = misdirected(ctx, self.server_name, host)
            if wrong_name:
                return EdgeAnswer(421, wrong_name)
        filters = tunnel.session.request_filters
        if filters:
            # A copy: a filter may change the list in place, and the shell must then not
            # forward the head's lines as they were read.
            request = self.filtered = FilterRequest(
                method, target, host, list(headers), self.client_ip, self.scheme, request_id, tunnel
            )
            for request_filter in filters:
                answer = request_filter.on_head(request)
                if answer is not None:
                    if answer.reason:
                        ctx.metrics.refused(answer.reason)
                    return answer
            headers = request.headers
        self.headers = headers
        return tunnel

    def forwarded_prefix(self) -> bytes:
        """X-Forwarded-* and Forwarded lines for the current host (cached per host)."""
        prefix = self._forwarded
        if not prefix:
            prefix = self._forwarded = forwarded_prefix(self.authority, self.client_ip, self.scheme)
        return prefix


def response_filters(request: FilterRequest, head: ResponseHead) -> None:
    """The response phase: the tunnel's filters see the response head, in order. They may
    change its fields, but not those that frame the body (Content-Length, Transfer-Encoding):
    the body is relayed as the local service framed it."""
    tunnel = request.tunnel
    if tunnel is None:
        return
    for request_filter in tunnel.session.request_filters:
        request_filter.on_response(request, head)
    # The head's lines as read would go out unchanged: the fields are written anew instead.
    head.fields = None


def body_filters(request: FilterRequest, data: bytes, end: bool) -> EdgeAnswer | None:
    """The body phase: the tunnel's filters see a piece of the request body."""
    tunnel = request.tunnel
    if tunnel is None:
        return None
    for request_filter in tunnel.session.request_filters:
        answer = request_filter.on_body(request, data, end)
        if answer is not None:
            return answer
    return None


# -- the connection stage ---------------------------------------------------------------------


def admit_connection(
    ctx: EdgeContext, tunnel: Tunnel, kind: str, peer: tuple[str, int], relay: SocketRelay
) -> int:
    """Open a tunnel stream for a TCP or TLS-passthrough visitor: its stream id, or 0 when the
    tunnel's connect filters or its agent refuse it (counted and logged; the caller closes)."""
    for connect_filter in tunnel.session.connect_filters:
        reason = connect_filter.on_connect(tunnel, peer[0])
        if reason is not None:
            # A raw visitor has no page to read: the connection just ends.
            ctx.metrics.refused(reason)
            log.debug("%s visitor %s: refused (%s)", kind, peer[0], reason)
            return 0
    try:
        return tunnel.session.open_visitor_stream(tunnel, kind, peer, relay)
    except StreamUnavailable as exc:
        log.info("%s visitor %s refused: %s", kind, peer[0], exc.detail)
        return 0
