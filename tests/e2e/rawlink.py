"""A hand-driven agent link for tests that need an agent to misbehave (go silent, lie)."""

from __future__ import annotations

import asyncio

from proto.frames import PROTOCOL_VERSION
from proto.messages import Bind, Hello, Message
from proto.mux import MessageReceived, Multiplexer, Role


class RawLink:
    def __init__(self, port: int) -> None:
        self.port = port
        self.mux = Multiplexer(Role.AGENT)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> RawLink:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    def send(self, message: Message) -> None:
        assert self.writer is not None
        self.mux.send_message(message)
        self.writer.writelines(self.mux.data_to_send())

    async def receive(self, timeout: float = 5.0) -> Message:
        assert self.reader is not None
        while True:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("the edge closed the link")
            for event in self.mux.receive_data(data):
                if isinstance(event, MessageReceived):
                    return event.message

    async def hello(self, token: str, instance_id: str = "raw") -> Message:
        self.send(Hello([PROTOCOL_VERSION], "raw-test", instance_id, token))
        return await self.receive()

    async def bind(self, name: str, request_id: int = 1) -> Message:
        self.send(Bind(request_id=request_id, protocol="http", name=name))
        return await self.receive()

    async def closed_by_edge(self, timeout: float) -> bool:
        """Read (without answering anything) until the edge closes the link."""
        assert self.reader is not None
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout):
                pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
