"""TLS termination over memory BIOs, after the ClientHello has been peeked.

The HTTPS listener reads the ClientHello itself (to route by SNI) before any TLS happens, so
it cannot hand the socket to ``loop.start_tls``: those bytes are already consumed. Instead
``TlsTerminator`` becomes the socket's protocol, feeds everything (the peeked bytes first)
into an ``ssl.SSLObject`` and, once the handshake is done, runs the inner protocol chosen
by ALPN (HTTP/1.1, HTTP/2, or an agent link) over ``TlsAppTransport``: a transport whose
writes are encrypted on their way to the socket.

Decrypted bytes reach the inner protocol only while it has not paused reading, so
backpressure through TLS works as it does without.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("burrow.edge.tls")

_READ_SIZE = 256 * 1024


class TlsAppTransport(asyncio.Transport):
    """What the inner protocol writes to: plaintext in, TLS records out."""

    def __init__(self, shell: TlsTerminator) -> None:
        super().__init__()
        self._shell = shell

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._shell.write_plain(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self._shell.write_plain(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False  # TLS has close_notify, not half-close

    def write_eof(self) -> None:
        raise NotImplementedError("TLS connections cannot half-close")

    def close(self) -> None:
        self._shell.close()

    def abort(self) -> None:
        self._shell.raw.abort()

    def is_closing(self) -> bool:
        return self._shell.raw.is_closing()

    def pause_reading(self) -> None:
        self._shell.app_paused = True
        self._shell.raw.pause_reading()

    def resume_reading(self) -> None:
        self._shell.resume_app_reading()

    def is_reading(self) -> bool:
        return not self._shell.app_paused

    def get_write_buffer_size(self) -> int:
        return self._shell.raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._shell.raw.set_write_buffer_limits(high, low)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._shell.inner = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._shell.inner  # type: ignore[return-value]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._shell.sslobj
        if name == "server_name":
            return self._shell.server_name
        return self._shell.raw.get_extra_info(name, default)


class TlsTerminator(asyncio.Protocol):
    def __init__(
        self,
        raw: asyncio.Transport,
        context: ssl.SSLContext,
        server_name: str | None,
        choose_inner: Callable[[str | None], asyncio.Protocol],
        on_failure: Callable[[str], None] | None = None,
        handshake_timeout: float = 10.0,
    ) -> None:
        self.raw = raw
        self.server_name = server_name
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.sslobj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.choose_inner = choose_inner
        self.on_failure = on_failure
        self.inner: asyncio.Protocol | None = None
        self.app = TlsAppTransport(self)
        self.app_paused = False
        self.closing = False
        self._handshaking = True
        self._plain: list[bytes] = []
        self._write_scheduled = False
        self._loop = asyncio.get_running_loop()
        # A client that stalls mid-handshake is cut off like a slow request head.
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(
            handshake_timeout, self._handshake_too_slow
        )

    def _handshake_too_slow(self) -> None:
        self._timer = None
        if self._handshaking and not self.closing:
            log.info("TLS handshake with %s took too long: closing", self.server_name)
            self.closing = True
            self.raw.abort()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- raw socket -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.incoming.write(data)
        if self._handshaking:
            try:
                self.sslobj.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except (ssl.SSLError, ValueError) as exc:
                self._flush()  # the alert, if OpenSSL made one
                reason = getattr(exc, "reason", None) or str(exc)
                log.info("TLS handshake with %s failed: %s", self.server_name, reason)
                if self.on_failure is not None:
                    self.on_failure(str(reason))
                self.raw.close()
                self.closing = True
                return
            self._handshaking = False
            self._stop_timer()
            self._flush()
            self.inner = self.choose_inner(self.sslobj.selected_alpn_protocol())
            self.inner.connection_made(self.app)
        self._drain()

    def _drain(self) -> None:
        """Deliver decrypted bytes while the inner protocol wants them."""
        inner = self.inner
        sslobj = self.sslobj
        while inner is not None and not self.app_paused and not self.closing:
            try:
                chunk = sslobj.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify from the peer
                self._eof()
                break
            except ssl.SSLError as exc:
                log.info("TLS error from %s: %s", self.server_name, exc)
                self.raw.abort()
                self.closing = True
                break
            if not chunk:
                self._eof()
                break
            inner.data_received(chunk)
        self._flush()

    def _eof(self) -> None:
        if self.inner is not None and not self.closing:
            keep = self.inner.eof_received()
            if not keep:
                self.close()

    def eof_received(self) -> bool:
        if self.inner is None:
            return False
        self._eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._stop_timer()
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # -- inner protocol side --------------------------------------------------------------

    def resume_app_reading(self) -> None:
        if self.app_paused and not self.closing:
            self.app_paused = False
            self.raw.resume_reading()
            self._drain()

    def write_plain(self, data: bytes | bytearray | memoryview) -> None:
        """Queue plaintext; it is encrypted once per event-loop iteration, so the head,
        body and end of a response share one TLS record and one syscall."""
        if self.closing or not data:
            return
        self._plain.append(bytes(data))
        if not self._write_scheduled:
            self._write_scheduled = True
            self._loop.call_soon(self._write_pending)

    def _write_pending(self) -> None:
        self._write_scheduled = False
        if not self._plain or self.closing:
            self._plain.clear()
            return
        data = b"".join(self._plain)
        self._plain.clear()
        try:
            self.sslobj.write(data)
        except ssl.SSLError as exc:
            log.info("TLS write to %s failed: %s", self.server_name, exc)
            self.raw.abort()
            self.closing = True
            return
        self._flush()

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.raw.write(data)

    def close(self) -> None:
        if self.closing:
            return
        self._write_pending()  # what the inner protocol wrote last goes before close_notify
        self.closing = True
        if not self._handshaking:
            with contextlib.suppress(ssl.SSLError):
                self.sslobj.unwrap()  # queue close_notify
            self._flush()
        self.raw.close()
