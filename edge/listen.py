"""Listening on several addresses as one listener: IPv4 and IPv6 side by side on one port.

asyncio sets IPV6_V6ONLY on every IPv6 socket it binds, so ``[::]`` takes IPv6 visitors
only and ``0.0.0.0`` IPv4 only; serving both means two sockets. With port 0 each socket
would get a port of its own, so the first address picks the port and the rest bind to it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

# A listener's spelling for "every address of every family this host has".
ANY_ADDRESS = "*"


@cache
def can_bind_ipv6(address: str = "::") -> bool:
    """Whether an IPv6 socket can be bound to ``address`` here (a kernel booted with
    ipv6.disable=1, or a container without IPv6, cannot)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
    except OSError:
        return False
    return True


def expand_hosts(hosts: str | Sequence[str]) -> list[str]:
    """The addresses to bind: ``*`` becomes ``0.0.0.0`` and, where the host has IPv6, ``::``."""
    out: list[str] = []
    for host in (hosts,) if isinstance(hosts, str) else hosts:
        if host == ANY_ADDRESS:
            wildcard = ["0.0.0.0", "::"] if can_bind_ipv6() else ["0.0.0.0"]
            out.extend(h for h in wildcard if h not in out)
        elif host not in out:
            out.append(host)
    return out


def format_hosts(hosts: str | Sequence[str], port: int) -> str:
    """``127.0.0.1:80, [::1]:80`` for logs."""
    return ", ".join(f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in expand_hosts(hosts))


class Listener:
    """The servers of one listener, one per address, all on one port. Closed together."""

    __slots__ = ("port", "servers")

    def __init__(self, servers: list[asyncio.Server], port: int) -> None:
        self.servers = servers
        self.port = port

    def close(self) -> None:
        for server in self.servers:
            server.close()

    async def wait_closed(self) -> None:
        for server in self.servers:
            await server.wait_closed()


async def listen(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], asyncio.BaseProtocol],
    hosts: str | Sequence[str],
    port: int,
    **kwargs: Any,
) -> Listener:
    """Listen on every address of ``hosts`` at ``port`` (0: one free port for them all).
    If one address cannot be bound, none stays open."""
    servers: list[asyncio.Server] = []
    try:
        for host in expand_hosts(hosts):
            server = await loop.create_server(factory, host, port, reuse_address=True, **kwargs)
            servers.append(server)
            port = server.sockets[0].getsockname()[1]
    except BaseException:
        for server in servers:
            server.close()
        raise
    return Listener(servers, port)
