"""A long link on loopback: a TCP relay that delays every byte and caps the rate.

The kernel here has no netem, so ``bench longlink`` puts this relay between the two ends
of a tunnel's link (agent and edge, ssh and sshd). Each direction of each connection is a
wire of its own: a byte read at ``t`` leaves the bottleneck once the bytes ahead of it have
(at ``--mbit``) and is written out half a round trip after that, so the link has the round
trip of ``--rtt-ms`` and at most that rate each way, as a path through the internet would.

What the relay holds is bounded as a real path is: the bytes in flight are at most the
rate times the one-way delay, and the bottleneck queue in front of them at most
``--queue-kib``: past it the relay stops reading the sender, so the sender's own socket
buffers fill and its backpressure starts, and a reader that stops reading stops the relay.

    python -m bench.delay_link --target-port P --rtt-ms 50 [--mbit 1000] [--queue-kib 4096]

prints ``{"port": N}`` once it listens on 127.0.0.1:N, then relays until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import signal
import socket
import sys

import uvloop


class Wire:
    """One direction of one connection: delays, paces and forwards what ``src`` reads."""

    __slots__ = (
        "_deliveries",
        "_eof",
        "_free_at",
        "_loop",
        "_one_way",
        "_queue_limit",
        "_rate",
        "_src_paused",
        "_timer",
        "dst",
        "dst_blocked",
        "src",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, one_way: float, rate: float, queue_limit: int
    ) -> None:
        self._loop = loop
        self._one_way = one_way
        self._rate = rate  # bytes a second
        self._queue_limit = queue_limit / rate  # seconds of bytes waiting for the bottleneck
        self._deliveries: collections.deque[tuple[float, bytes]] = collections.deque()
        self._free_at = 0.0  # when the bottleneck has sent everything queued so far
        self._timer: asyncio.TimerHandle | None = None
        self._eof = False
        self._src_paused = False
        self.src: asyncio.Transport | None = None
        self.dst: asyncio.Transport | None = None
        self.dst_blocked = False  # the receiving end's socket buffer is full

    def carry(self, data: bytes) -> None:
        now = self._loop.time()
        departs = max(now, self._free_at) + len(data) / self._rate
        self._free_at = departs
        self._deliveries.append((departs + self._one_way, data))
        if self._timer is None:
            self._arm()
        if departs - now > self._queue_limit:
            self._pause_src()

    def end(self) -> None:
        """The sender half-closed (or went): pass it on once its bytes have arrived."""
        self._eof = True
        if not self._deliveries:
            self._finish()

    def _arm(self) -> None:
        self._timer = self._loop.call_at(self._deliveries[0][0], self._deliver)

    def attach(self, dst: asyncio.Transport) -> None:
        """The receiving socket is connected: what arrived for it meanwhile goes now."""
        self.dst = dst
        if self._deliveries and self._timer is None:
            self._deliver()

    def _deliver(self) -> None:
        self._timer = None
        dst = self.dst
        if dst is None:
            return  # bytes that came before the far end was connected wait for attach
        now = self._loop.time()
        deliveries = self._deliveries
        due: list[bytes] = []
        while deliveries and deliveries[0][0] <= now:
            due.append(deliveries.popleft()[1])
        if due and not dst.is_closing():
            dst.writelines(due)
        if deliveries:
            self._arm()
        elif self._eof:
            self._finish()
        self.maybe_resume()

    def _finish(self) -> None:
        dst = self.dst
        if dst is None or dst.is_closing():
            return
        if dst.can_write_eof():
            dst.write_eof()
        else:
            dst.close()

    def _pause_src(self) -> None:
        if not self._src_paused and self.src is not None and not self.src.is_closing():
            self._src_paused = True
            self.src.pause_reading()

    def block(self) -> None:
        self.dst_blocked = True
        self._pause_src()

    def unblock(self) -> None:
        self.dst_blocked = False
        self.maybe_resume()

    def maybe_resume(self) -> None:
        if not self._src_paused or self.dst_blocked:
            return
        if self._free_at - self._loop.time() > self._queue_limit / 2:
            return
        self._src_paused = False
        if self.src is not None and not self.src.is_closing():
            self.src.resume_reading()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deliveries.clear()


class Side(asyncio.Protocol):
    """One socket of a relayed connection: what it reads goes out on ``outbound``; what
    ``inbound`` delivers is written to it."""

    def __init__(self, outbound: Wire, inbound: Wire) -> None:
        self.outbound = outbound
        self.inbound = inbound
        self.transport: asyncio.Transport | None = None
        self.peer: Side | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.outbound.src = self.transport
        self.inbound.attach(self.transport)

    def data_received(self, data: bytes) -> None:
        self.outbound.carry(data)

    def eof_received(self) -> bool:
        self.outbound.end()
        return True  # half-closed: the other way goes on

    def pause_writing(self) -> None:
        self.inbound.block()

    def resume_writing(self) -> None:
        self.inbound.unblock()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inbound.close()
        self.outbound.end()


class DelayLink:
    """Accepts on 127.0.0.1 and carries each connection to the target over two wires."""

    def __init__(self, target_port: int, rtt: float, rate: float, queue_limit: int) -> None:
        self.target_port = target_port
        self.one_way = rtt / 2
        self.rate = rate
        self.queue_limit = queue_limit

    def accept(self) -> Side:
        loop = asyncio.get_running_loop()
        up = Wire(loop, self.one_way, self.rate, self.queue_limit)  # client -> target
        down = Wire(loop, self.one_way, self.rate, self.queue_limit)  # target -> client
        client = _Accepted(up, down, self)
        return client

    async def start(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(self.accept, "127.0.0.1", 0)


class _Accepted(Side):
    """The accepted socket: reads nothing until the connection to the target is up."""

    def __init__(self, outbound: Wire, inbound: Wire, link: DelayLink) -> None:
        super().__init__(outbound, inbound)
        self._link = link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        transport.pause_reading()  # type: ignore[attr-defined]
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(
                lambda: Side(self.inbound, self.outbound), "127.0.0.1", self._link.target_port
            )
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.delay_link", description=__doc__)
    p.add_argument("--target-port", type=int, required=True, help="relay to 127.0.0.1:PORT")
    p.add_argument("--rtt-ms", type=float, default=50.0, help="round trip (default 50)")
    p.add_argument("--mbit", type=float, default=1000.0, help="rate each way (default 1000)")
    p.add_argument(
        "--queue-kib", type=int, default=4096, help="bottleneck queue (default 4096 KiB)"
    )
    return p


async def _serve(args: argparse.Namespace) -> int:
    link = DelayLink(
        args.target_port, args.rtt_ms / 1000, args.mbit * 1e6 / 8, args.queue_kib * 1024
    )
    server = await link.start()
    sys.stdout.write(json.dumps({"port": server.sockets[0].getsockname()[1]}) + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.rtt_ms < 0 or args.mbit <= 0 or args.queue_kib <= 0:
        print("delay_link: --rtt-ms must be >= 0, --mbit and --queue-kib > 0", file=sys.stderr)
        return 2
    return uvloop.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
