"""An agent link carried in WebSocket binary messages, for networks that only pass HTTPS.

``WebSocketShell`` sits between a socket (usually TLS) and a link protocol
(``LinkSession``): bytes from the socket go through a wsproto connection, and the payload of
each binary message is handed to the link; the link's writes go out as binary messages
through ``WebSocketTransport``. The link protocol cannot tell the difference.

On the agent (client role) the shell sends the opening handshake itself and starts the link
once the edge accepts. On the edge (server role) the HTTPS listener has already parsed the
upgrade request; the shell is given that request's bytes to finish the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import wsproto
import wsproto.events as ws
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from proto.constants import LINK_PATH

log = logging.getLogger("burrow.link.ws")

SUBPROTOCOL = "burrow.link.v1"


class WebSocketTransport(asyncio.Transport):
    def __init__(self, shell: WebSocketShell) -> None:
        super().__init__()
        self._shell = shell

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._shell.send_binary(bytes(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self._shell.send_binary(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        self._shell.close()

    def abort(self) -> None:
        self._shell.raw.abort()

    def is_closing(self) -> bool:
        return self._shell.raw.is_closing()

    def pause_reading(self) -> None:
        self._shell.raw.pause_reading()

    def resume_reading(self) -> None:
        self._shell.raw.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self._shell.raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._shell.raw.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "link_transport":
            return "wss"
        return self._shell.raw.get_extra_info(name, default)


class WebSocketShell(asyncio.Protocol):
    def __init__(
        self,
        inner: asyncio.Protocol,
        role: wsproto.ConnectionType,
        *,
        host: str = "",
        handshake: bytes = b"",
    ) -> None:
        self.inner = inner
        self.role = role
        self.host = host
        self.ws = wsproto.WSConnection(role)
        self.raw: asyncio.Transport = None  # type: ignore[assignment]
        self.transport = WebSocketTransport(self)
        self.open = False
        self.closed = False
        self._handshake = handshake
        self.accepted = asyncio.get_running_loop().create_future()

    # -- raw socket -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport  # type: ignore[assignment]
        if self.role is wsproto.ConnectionType.CLIENT:
            self.raw.write(
                self.ws.send(
                    ws.Request(host=self.host, target=LINK_PATH, subprotocols=[SUBPROTOCOL])
                )
            )
        elif self._handshake:
            handshake, self._handshake = self._handshake, b""
            self.data_received(handshake)

    def data_received(self, data: bytes) -> None:
        try:
            self.ws.receive_data(data)
            events = list(self.ws.events())
        except RemoteProtocolError as exc:
            log.info("WebSocket link broke the protocol: %s", exc)
            self.raw.abort()
            return
        for event in events:
            if isinstance(event, ws.BytesMessage):
                if self.open:
                    self.inner.data_received(bytes(event.data))
            elif isinstance(event, ws.Request):
                if event.target != LINK_PATH:
                    self.raw.write(self.ws.send(ws.RejectConnection(status_code=404)))
                    self.raw.close()
                    return
                self.raw.write(self.ws.send(ws.AcceptConnection(subprotocol=SUBPROTOCOL)))
                self._start()
            elif isinstance(event, ws.AcceptConnection):
                self._start()
            elif isinstance(event, ws.RejectConnection):
                self._fail(f"the edge refused the WebSocket link ({event.status_code})")
                return
            elif isinstance(event, ws.Ping):
                self.raw.write(self.ws.send(event.response()))
            elif isinstance(event, ws.CloseConnection):
                if self.ws.state is wsproto.connection.ConnectionState.REMOTE_CLOSING:
                    self.raw.write(self.ws.send(event.response()))
                self.raw.close()
                return
            elif isinstance(event, ws.TextMessage):
                log.info("WebSocket link sent text; links are binary: closing")
                self.raw.abort()
                return

    def _start(self) -> None:
        if self.open:
            return
        self.open = True
        if not self.accepted.done():
            self.accepted.set_result(True)
        self.inner.connection_made(self.transport)

    def _fail(self, reason: str) -> None:
        if not self.accepted.done():
            self.accepted.set_exception(ConnectionError(reason))
        self.raw.close()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.accepted.done():
            self.accepted.set_exception(ConnectionError("the WebSocket link closed"))
        if self.open:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.open:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.open:
            self.inner.resume_writing()

    # -- inner link side ------------------------------------------------------------------

    def send_binary(self, data: bytes) -> None:
        if self.closed or not self.open or not data:
            return
        # While closing, the link's last writes have nowhere to go.
        with contextlib.suppress(LocalProtocolError):
            self.raw.write(self.ws.send(ws.Message(data=data)))

    def close(self) -> None:
        if self.closed:
            return
        if self.open:
            with contextlib.suppress(LocalProtocolError):
                self.raw.write(self.ws.send(ws.CloseConnection(code=1000)))
        self.raw.close()
