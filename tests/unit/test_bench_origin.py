"""The benchmark and demo origin (bench/origin.py): /bytes/N over a real socket, and how many
writes a response takes."""

from __future__ import annotations

import asyncio

import pytest

from bench.origin import OriginProtocol, start_origin


async def _get(port: int, path: str, method: str = "GET") -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: origin\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.lower().split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = b"" if method == "HEAD" else await reader.readexactly(length)
        return head, body
    finally:
        writer.close()


@pytest.mark.parametrize("size", [0, 1, 1024, 65536, 65537, 1 << 20])
async def test_bytes_route_sends_exactly_n_bytes(size: int) -> None:
    server = await start_origin()
    try:
        port = server.sockets[0].getsockname()[1]
        head, body = await _get(port, f"/bytes/{size}")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert f"content-length: {size}\r\n".encode() in head
        assert body == b"x" * size
        head, body = await _get(port, f"/bytes/{size}", "HEAD")
        assert f"content-length: {size}\r\n".encode() in head and body == b""
    finally:
        server.close()
        await server.wait_closed()


class _Recorder:
    """Just enough of a transport to see what the protocol writes, call by call."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def get_extra_info(self, name: str) -> None:
        return None

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))


@pytest.mark.parametrize(("size", "writes"), [(1024, 1), (65536, 1), (65537, 3), (1 << 20, 17)])
def test_a_response_up_to_64_kib_is_one_write(size: int, writes: int) -> None:
    """Head and a small body in one write, as a real server sends them: in two, every
    tunnel would relay each response as two reads and two frames."""
    protocol = OriginProtocol()
    transport = _Recorder()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(f"GET /bytes/{size} HTTP/1.1\r\nHost: o\r\n\r\n".encode())
    assert len(transport.writes) == writes
    assert b"".join(transport.writes).endswith(b"\r\n\r\n" + b"x" * size)
