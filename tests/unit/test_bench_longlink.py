"""``bench longlink`` for real at a tiny size: the delaying relay delays and paces, and the
scenario starts Burrow (and ssh -R, where installed) behind it and reports a row per case."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.delay_link import DelayLink, Wire
from bench.longlink import (
    Cell,
    LongLinkRun,
    LongLinkSettings,
    Row,
    format_longlink_report,
    run_longlink,
    target_met,
)


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def test_the_relay_adds_its_round_trip_and_caps_its_rate() -> None:
    loop = asyncio.get_running_loop()
    echo = await loop.create_server(_Echo, "127.0.0.1", 0)
    target = echo.sockets[0].getsockname()[1]
    # 100 ms round trip, 8 Mbit/s (1 MB/s) each way.
    relay = await DelayLink(target, rtt=0.1, rate=1e6, queue_limit=64 * 1024).start()
    port = relay.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        started = time.monotonic()
        writer.write(b"p")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"p"
        round_trip = time.monotonic() - started
        assert 0.1 <= round_trip < 0.5

        # 400 KB there and back at 1 MB/s: the two ways overlap, the pacing does not give.
        body = bytes(range(256)) * 1600
        started = time.monotonic()
        writer.write(body)
        echoed = await asyncio.wait_for(reader.readexactly(len(body)), 10)
        elapsed = time.monotonic() - started
        assert echoed == body
        assert 0.4 <= elapsed < 3.0
    finally:
        writer.close()
        relay.close()
        echo.close()


class _Socket:
    """The transport a wire writes to, recording what it was given."""

    def __init__(self) -> None:
        self.written = bytearray()

    def writelines(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.written += chunk

    def is_closing(self) -> bool:
        return False


async def test_bytes_read_before_the_far_end_is_connected_wait_for_it() -> None:
    # ssh writes its banner the moment it connects, while the relay is still connecting on
    # to sshd: those bytes must reach sshd once it is connected, not be dropped.
    wire = Wire(asyncio.get_running_loop(), one_way=0.0, rate=1e9, queue_limit=1 << 20)
    wire.carry(b"SSH-2.0-banner\r\n")
    wire.carry(b"KEXINIT")
    await asyncio.sleep(0.01)  # due: nowhere to go yet
    far = _Socket()
    wire.attach(far)  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert bytes(far.written) == b"SSH-2.0-banner\r\nKEXINIT"


def test_the_scenario_measures_burrow_and_ssh_behind_the_relay(tmp_path: Path) -> None:
    settings = LongLinkSettings(delays_ms=(0.0, 20.0), megabytes=2.0, streams=2, timeout=60.0)
    run = run_longlink(settings, tmp_path)
    assert [(r.rtt_ms, r.streams) for r in run.rows] == [(0, 1), (0, 2), (20, 1), (20, 2)]
    for row in run.rows:
        assert not row.burrow.error, row.burrow.error
        assert row.burrow.megabytes_per_second > 0
        # ssh -R is measured where it is installed; elsewhere its cell says how to get it.
        assert row.ssh.megabytes_per_second > 0 or "bench tools --install" in row.ssh.error
    report = format_longlink_report(run)
    assert "20 ms        2" in report and "burrow/ssh" in report
    assert "target (burrow >= 1.5x ssh -R, one stream, every delay)" in report


def test_the_target_is_judged_on_the_single_stream_rows() -> None:
    run = LongLinkRun(LongLinkSettings(), {})
    run.rows = [
        Row(50.0, 1, Cell(60.0, 1.0), Cell(30.0, 1.0)),
        Row(50.0, 10, Cell(10.0, 1.0), Cell(30.0, 1.0)),  # many streams: not the target
        Row(200.0, 1, Cell(10.0, 1.0), Cell(10.0, 1.0)),
        Row(25.0, 1, Cell(10.0, 1.0), Cell(error="not installed")),
    ]
    assert target_met(run) == (False, ["200 ms", "25 ms (no figure)"])
