"""Closed-loop HTTP/2 load generator over TLS: the fallback when h2load is not installed.

N connections (ALPN ``h2``, SNI ``--server-name``, the certificate checked against
``--ca-file``) each keep ``--streams`` GET streams in flight: when one ends, the next is
opened at once, for a fixed time. Framing and HPACK are the ``h2`` library's (pure Python),
so this client spends far more CPU per request than h2load does: on a small machine its
figures are bounded by its own core, which the report's CPU table shows (the loadgen column).

It shares the rest with ``bench.loadgen`` (reconnects, the measurement window, the
``LoadResult`` it prints), and is run the same way:

    python -m bench.loadgen_h2 --port 8443 --host-header bench.localhost --ca-file ca.pem \
        --path /bytes/1024 --connections 10 --streams 10 --duration 5 --warmup 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from collections.abc import Callable

import uvloop
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes

from bench.loadgen import LoadError, LoadResult, LoadRun, drive, print_window

# Big windows so flow control never paces a response; the data is acknowledged as it comes.
_WINDOW = 16 * 1024 * 1024


class H2LoadRun(LoadRun):
    def __init__(
        self,
        port: int,
        *,
        authority: str,
        path: str,
        connections: int,
        streams: int,
        tls: ssl.SSLContext,
        server_name: str,
        on_window: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(
            "127.0.0.1", port, authority, path, connections, on_window, tls, server_name
        )
        self.streams = streams
        self.headers = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            (b"user-agent", b"burrow-bench"),
        ]

    def new_connection(self) -> asyncio.Protocol:
        return H2ClientConnection(self)


class H2ClientConnection(asyncio.Protocol):
    __slots__ = ("conn", "in_flight", "run", "transport")

    def __init__(self, run: H2LoadRun) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.in_flight: dict[int, list[int]] = {}  # stream id -> [sent at ns, status]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sslobj = transport.get_extra_info("ssl_object")
        alpn = sslobj.selected_alpn_protocol() if sslobj is not None else None
        self.run.open.add(self)
        if alpn != "h2":
            chose = f"ALPN chose {alpn!r}" if alpn else "ALPN chose no protocol"
            self.run.fail(f"{chose}, not 'h2': the server does not speak HTTP/2 on this port")
            return
        if not self.run.active:
            transport.close()
            return
        conn = self.conn
        conn.initiate_connection()
        conn.update_settings(
            {SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW, SettingCodes.ENABLE_PUSH: 0}
        )
        conn.increment_flow_control_window(_WINDOW - 65535)
        self._fill()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.run.open.discard(self)
        self.run.replace()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _fill(self) -> None:
        """Open streams until ``streams`` are in flight (or the peer's limit is reached)."""
        run = self.run
        conn = self.conn
        limit = min(run.streams, conn.remote_settings.max_concurrent_streams)
        while run.active and len(self.in_flight) < limit:
            stream_id = conn.get_next_available_stream_id()
            self.in_flight[stream_id] = [time.perf_counter_ns(), 0]
            conn.send_headers(stream_id, run.headers, end_stream=True)

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    def data_received(self, data: bytes) -> None:
        run = self.run
        result = run.result
        try:
            events = self.conn.receive_data(data)
        except ProtocolError:
            if run.recording:
                result.errors += 1
            self.abort()
            return
        if run.recording:
            result.wire_bytes += len(data)
        for event in events:
            if isinstance(event, DataReceived):
                if event.stream_id in self.in_flight:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                if run.recording:
                    result.body_bytes += len(event.data or b"")
            elif isinstance(event, ResponseReceived):
                entry = self.in_flight.get(event.stream_id)
                if entry is not None:
                    for name, value in event.headers or ():
                        if name == b":status":
                            entry[1] = int(value)
                            break
            elif isinstance(event, StreamEnded):
                self._stream_done(event.stream_id)
            elif isinstance(event, StreamReset):
                if self.in_flight.pop(event.stream_id, None) is not None and run.recording:
                    result.errors += 1
            elif isinstance(event, ConnectionTerminated):
                self._flush()
                self.abort()  # connection_lost opens a replacement
                return
        self._fill()
        self._flush()

    def _stream_done(self, stream_id: int) -> None:
        entry = self.in_flight.pop(stream_id, None)
        run = self.run
        if entry is None or not run.recording:
            return
        run.histogram.record_ns(time.perf_counter_ns() - entry[0])
        run.result.requests += 1
        status = entry[1]
        run.statuses[status] = run.statuses.get(status, 0) + 1
        if status >= 400 or status == 0:
            run.result.errors += 1


async def run_h2_load(
    port: int,
    *,
    authority: str,
    path: str,
    connections: int,
    streams: int,
    duration: float,
    warmup: float,
    tls: ssl.SSLContext,
    server_name: str,
    mark_window: bool,
) -> LoadResult:
    run = H2LoadRun(
        port,
        authority=authority,
        path=path,
        connections=connections,
        streams=streams,
        tls=tls,
        server_name=server_name,
        on_window=print_window if mark_window else None,
    )
    return await drive(run, connections, duration=duration, warmup=warmup)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.loadgen_h2", description=__doc__.split("\n")[0]
    )
    p.add_argument("--port", type=int, required=True, help="on 127.0.0.1")
    p.add_argument("--host-header", required=True, help=":authority (and SNI unless given)")
    p.add_argument("--ca-file", required=True, help="the only CA to trust (PEM)")
    p.add_argument("--server-name", help="SNI and the name checked (default: the authority's)")
    p.add_argument("--path", default="/bytes/1024")
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--streams", type=int, default=10, help="concurrent streams per connection")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    p.add_argument("--mark-window", action="store_true", help="as bench.loadgen's")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if min(args.connections, args.streams) < 1 or args.duration <= 0 or args.warmup < 0:
        print(
            "loadgen_h2: need --connections and --streams >= 1, --duration > 0, --warmup >= 0",
            file=sys.stderr,
        )
        return 2
    from bench.certificates import client_context

    try:
        result = uvloop.run(
            run_h2_load(
                args.port,
                authority=args.host_header,
                path=args.path,
                connections=args.connections,
                streams=args.streams,
                duration=args.duration,
                warmup=args.warmup,
                tls=client_context(args.ca_file, ["h2"]),
                server_name=args.server_name or args.host_header.rsplit(":", 1)[0],
                mark_window=args.mark_window,
            )
        )
    except LoadError as exc:
        print(f"loadgen_h2: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
