"""TLS helpers for the end-to-end tests: HTTPS and HTTP/2-over-TLS visitors, a local service
that terminates TLS itself (the thing ``burrow tls`` exposes), and ClientHello bytes.

Every client connects to 127.0.0.1 and names the host it wants in SNI (``server_hostname``),
as a visitor resolving ``*.tunnels.test`` to the edge would. The base domain has two labels
because OpenSSL matches a wildcard only with two or more labels after it (``*.localhost``
would never verify)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.e2e.client import Visitor

BASE = "tunnels.test"


def write_leaf(leaf: trustme.LeafCert, directory: Path, stem: str) -> tuple[str, str]:
    """The chain and key files ``EdgeConfig.tls_files`` takes."""
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
    cert_path.write_bytes(chain_pem(leaf))
    key_path.write_bytes(leaf.private_key_pem.bytes())
    return str(cert_path), str(key_path)


def chain_pem(leaf: trustme.LeafCert) -> bytes:
    return b"".join(blob.bytes() for blob in leaf.cert_chain_pems)


def fingerprint(cert: x509.Certificate) -> str:
    """As ``CertStore.info(...).fingerprint`` spells it."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def leaf_cert(leaf: trustme.LeafCert) -> x509.Certificate:
    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())


def san_names(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return set(san.value.get_values_for_type(x509.DNSName))


def client_context(
    *cas: trustme.CA, alpn: Sequence[str] = ("http/1.1",), verify: bool = True
) -> ssl.SSLContext:
    """A browser-like context trusting ``cas`` only (not the system store)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        for ca in cas:
            ca.configure_trust(context)
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def peer_cert(writer: asyncio.StreamWriter) -> x509.Certificate:
    sslobj = writer.get_extra_info("ssl_object")
    der = sslobj.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


@dataclass
class Handshake:
    cert: x509.Certificate
    alpn: str | None


async def handshake(
    port: int, server_name: str | None, context: ssl.SSLContext, timeout: float = 5.0
) -> Handshake:
    """Connect, finish the TLS handshake, hang up; what the server presented."""
    _, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=server_name or ""),
        timeout,
    )
    try:
        alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        return Handshake(peer_cert(writer), alpn)
    finally:
        writer.close()


class HttpsVisitor(Visitor):
    """``tests.e2e.client.Visitor`` over TLS. ``server_name`` (SNI) defaults to the Host."""

    def __init__(
        self,
        port: int,
        host: str,
        context: ssl.SSLContext,
        server_name: str | None = None,
        address: str = "127.0.0.1",
    ) -> None:
        super().__init__(port, host, address)
        self.context = context
        self.server_name = host if server_name is None else server_name

    async def __aenter__(self) -> HttpsVisitor:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(
                self.address, self.port, ssl=self.context, server_hostname=self.server_name
            ),
            5,
        )
        return self

    @property
    def cert(self) -> x509.Certificate:
        assert self.writer is not None
        return peer_cert(self.writer)

    @property
    def alpn(self) -> str | None:
        assert self.writer is not None
        return self.writer.get_extra_info("ssl_object").selected_alpn_protocol()


# -- HTTP/2 over TLS ------------------------------------------------------------------------


@dataclass
class H2Result:
    status: int = 0
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    reset: int | None = None


@dataclass
class H2Exchange:
    alpn: str | None
    results: list[H2Result]


async def h2_requests(
    port: int,
    server_name: str,
    context: ssl.SSLContext,
    paths: Iterable[str],
    *,
    authority: str | None = None,
    timeout: float = 10.0,
) -> H2Exchange:
    """Open one TLS connection offering h2, send every GET at once (concurrent streams), and
    read until each has ended or been reset."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=server_name),
        5,
    )
    try:
        alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        conn.initiate_connection()
        conn.increment_flow_control_window(16 * 1024 * 1024)
        by_stream: dict[int, H2Result] = {}
        for path in paths:
            stream_id = conn.get_next_available_stream_id()
            by_stream[stream_id] = H2Result()
            conn.send_headers(
                stream_id,
                [
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":authority", (authority or server_name).encode()),
                    (b":path", path.encode()),
                ],
                end_stream=True,
            )
        writer.write(conn.data_to_send())
        open_streams = set(by_stream)
        async with asyncio.timeout(timeout):
            while open_streams:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError(f"the edge closed with streams {open_streams} open")
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.ResponseReceived):
                        r = by_stream[ev.stream_id]
                        r.headers = dict(ev.headers)  # type: ignore[arg-type]
                        r.status = int(r.headers.pop(b":status"))
                    elif isinstance(ev, h2.events.DataReceived):
                        by_stream[ev.stream_id].body += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        open_streams.discard(ev.stream_id)
                    elif isinstance(ev, h2.events.StreamReset):
                        by_stream[ev.stream_id].reset = ev.error_code
                        open_streams.discard(ev.stream_id)
                writer.write(conn.data_to_send())
        return H2Exchange(alpn, [by_stream[i] for i in sorted(by_stream)])
    finally:
        writer.close()


# -- a local service that does its own TLS ---------------------------------------------------


class LocalTlsEcho:
    """A local TLS service with its own certificate: echoes every byte back.

    Records the SNI each handshake carried and how many connections reached it, so a test
    can tell that the visitor's own ClientHello arrived, and that nothing else did."""

    def __init__(self, leaf: trustme.LeafCert, alpn: Sequence[str] = ("http/1.1",)) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(self.context)
        self.context.set_alpn_protocols(list(alpn))
        self.context.sni_callback = self._sni  # type: ignore[assignment]
        self.server_names: list[str | None] = []
        self.connections = 0
        self.port = 0
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _sni(self, _sslobj: object, name: str | None, _ctx: ssl.SSLContext) -> None:
        self.server_names.append(name)

    async def start(self) -> LocalTlsEcho:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


def client_hello(server_name: str, alpn: Sequence[str] = ("http/1.1",)) -> bytes:
    """The first flight a real client sends for ``server_name``."""
    context = client_context(alpn=alpn, verify=False)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        sslobj.do_handshake()
    return outgoing.read()


async def handshake_split_hello(
    port: int, server_name: str, context: ssl.SSLContext, split: int
) -> x509.Certificate:
    """A TLS handshake driven by hand whose ClientHello reaches the edge in two TCP writes
    (the first ``split`` bytes, a pause, the rest); the certificate the server presented."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        first = True
        while True:
            try:
                sslobj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            data = outgoing.read()
            if first:
                first = False
                writer.write(data[:split])
                await writer.drain()
                await asyncio.sleep(0.05)
                data = data[split:]
            writer.write(data)
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                raise ConnectionError("the server hung up during the handshake")
            incoming.write(chunk)
        writer.write(outgoing.read())  # the client's Finished
        der = sslobj.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)
    finally:
        writer.close()


class FirstByteTap:
    """A TCP forwarder to ``target`` that notes each connection's first byte: put between
    an agent and the edge, it shows whether every attempt opened with a TLS handshake."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.first_bytes: list[int] = []
        self.port = 0
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> FirstByteTap:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            first = await reader.read(65536)
            if not first:
                return
            self.first_bytes.append(first[0])
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            up_writer.write(first)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
