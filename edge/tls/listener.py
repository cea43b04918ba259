"""The HTTPS listener: peek the ClientHello, then pass through or terminate.

Every connection starts as a ``TlsVisitor``. It buffers bytes until ``ClientHelloReader``
has the server name and ALPN list (bounded in size and by the header timeout), and decides:

* SNI names a TLS-passthrough tunnel: the connection becomes a raw relay to the agent, the
  peeked bytes first, and the agent's local service does the TLS handshake itself;
* anything else is terminated here with the certificate the ``CertStore`` has for the name,
  then served by the protocol ALPN chose: HTTP/2, HTTP/1.1, or an agent link (``burrow/1``,
  so agents can reach the edge on 443 alone).

A host is served in one mode only: routing refuses a passthrough host on the terminated and
plain paths (``edge.visitors.forwarding.route``), and a terminate host never reaches the raw relay.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from certs.alpn_challenge import ACME_TLS_ALPN
from edge.pipeline import admit_connection
from edge.tls.clienthello import ClientHello, ClientHelloError, ClientHelloReader, NotTLSError
from edge.tls.terminator import TlsTerminator
from edge.visitors.pages import error_page
from proto.constants import AGENT_ALPN
from relay.session import set_nodelay
from relay.stream import SocketRelay

if TYPE_CHECKING:
    from edge.context import EdgeContext
    from edge.routing.table import Tunnel

log = logging.getLogger("burrow.edge.tls")


class _ChallengeAnswered(asyncio.Protocol):
    """RFC 8737 3: a ClientHello offering only ``acme-tls/1`` for a host with a tls-alpn-01
    challenge out got the challenge certificate (``CertStore.put_challenge``); after the
    handshake the CA has its answer and the connection just ends."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class PassthroughVisitor(SocketRelay):
    """A TLS connection relayed untouched to a passthrough tunnel's agent."""

    __slots__ = ("edge",)
    idle = False  # a raw pipe: closing it would cut what it carries

    def __init__(self, edge: EdgeContext) -> None:
        super().__init__(None)
        self.edge = edge

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def start(self, transport: asyncio.Transport, tunnel: Tunnel, first: bytes) -> bool:
        self.connection_made(transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        # The TLS is the local service's: a refused visitor gets no page, the connection ends.
        self.stream_id = admit_connection(self.edge, tunnel, "tls", (peer[0], peer[1]), self)
        if not self.stream_id:
            self.done = True
            transport.close()
            return False
        self.session = tunnel.session
        self.edge.visitors.add(self)
        self.data_received(first)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.edge.visitors.discard(self)


class TlsVisitor(asyncio.Protocol):
    __slots__ = ("_timer", "edge", "hello", "phase", "reader", "transport")

    def __init__(self, edge: EdgeContext) -> None:
        self.edge = edge
        self.reader = ClientHelloReader()
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.hello: ClientHello | None = None
        self.phase = 0  # idle until handed over: a draining edge may close it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        set_nodelay(transport)
        self.edge.visitors.add(self)
        self._timer = self.edge.loop.call_later(
            self.edge.config.limits.header_timeout, self._too_slow
        )

    @property
    def idle(self) -> bool:
        """The ClientHello has not come: a draining edge may close it."""
        return self.phase == 0

    def _too_slow(self) -> None:
        self._timer = None
        if self.transport is not None and self.hello is None:
            self.edge.metrics.refused("tls_hello_timeout")
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.edge.visitors.discard(self)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        try:
            hello = self.reader.feed(data)
        except NotTLSError as exc:
            self._stop()
            if exc.plain_http:
                page = error_page(400, "This port serves HTTPS: use an https:// URL.")
                transport.write(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/html; charset=utf-8\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n" % len(page) + page
                )
            transport.close()
            return
        except ClientHelloError as exc:
            self._stop()
            log.info("bad TLS ClientHello: %s", exc)
            transport.close()
            return
        if hello is None:
            return
        self.hello = hello
        self._stop()
        self._hand_over(transport, hello, self.reader.buffered)

    def _hand_over(self, transport: asyncio.Transport, hello: ClientHello, first: bytes) -> None:
        edge = self.edge
        name = hello.server_name
        tunnel = None
        if name:
            pool = edge.routes.lookup_host(name)
            tunnel = pool.pick() if pool is not None else None
        if tunnel is not None and tunnel.protocol == "tls":
            relay = PassthroughVisitor(edge)
            transport.set_protocol(relay)
            relay.start(transport, tunnel, first)
            return
        # Unrouted names get the edge's own certificate, not one made for whatever name a
        # stranger sends (that would cost CPU per handshake), and then a 404 over TLS; a name
        # with a stored certificate (ACME) gets that one even while no tunnel is up.
        routed = tunnel is not None or (name and edge.certs.covers(name))
        cert_name = name if name and routed else edge.config.base_domain
        context = edge.certs.context_for(cert_name)
        if name and hello.alpn == (ACME_TLS_ALPN,):
            context = edge.certs.challenge_context_for(name) or context

        def choose(alpn: str | None) -> asyncio.Protocol:
            if alpn == ACME_TLS_ALPN:
                return _ChallengeAnswered()
            if alpn == "h2":
                from edge.visitors.h2_visitor import H2Visitor

                return H2Visitor(edge, "https")
            if alpn == AGENT_ALPN:
                return edge.open_agent_link()
            from edge.visitors.http_visitor import HttpVisitor

            return HttpVisitor(edge, "https")

        shell = TlsTerminator(
            transport, context, name, choose, handshake_timeout=edge.config.limits.header_timeout
        )
        transport.set_protocol(shell)
        shell.data_received(first)
