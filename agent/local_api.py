"""The agent's local HTTP server (``127.0.0.1:4040`` by default): ``/metrics`` for Prometheus,
``/api/tunnels`` in the shape of ngrok's agent API, so scripts written for ``ngrok`` find the
public URL the same way; and the request inspector (``agent.inspector``): a web UI at ``/``
and ``/api/requests/http`` (list, detail, replay, clear) in the shape of ngrok's.

Its own small server on h11 (already in the agent's base install): the agent does not pull
in aiohttp. Bounded like any listener: a request head of at most ``MAX_HEAD`` bytes, request
bodies (replay edits) of at most ``MAX_BODY``, ``MAX_CONNECTIONS`` at once, ``IDLE_TIMEOUT``
per connection, loopback only, and a Host check so a web page cannot read it through DNS
rebinding; a call that changes something (replay, clear) from a browser must come from
this origin, so another site's page cannot make the agent replay requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
from collections.abc import Callable
from importlib import resources
from urllib.parse import parse_qs, urlsplit

import h11

from agent import inspector_api
from agent.client import Agent
from agent.inspector import Inspector
from agent.link import AGENT_VERSION
from agent.meters import AgentMeters
from agent.tunnels import TunnelState

log = logging.getLogger("burrow.agent")

DEFAULT_ADDR = ("127.0.0.1", 4040)
PORT_TRIES = 10  # 4040 taken (another agent): 4041, … as ngrok does
MAX_HEAD = 16 * 1024
MAX_BODY = 16 * 1024 * 1024  # a replay's edited body, as JSON
# The UI is our own static files: nothing inline, nothing from elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
UI_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/ui/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/ui/style.css": ("style.css", "text/css; charset=utf-8"),
}
Answer = tuple[int, str, bytes] | tuple[int, str, bytes, list[tuple[str, str]]]
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 10.0


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    return {"p50": at(0.5), "p90": at(0.9), "p95": at(0.95), "p99": at(0.99)}


def _tunnel_name(state: TunnelState) -> str:
    spec = state.spec
    return spec.label or f"{spec.protocol}-{spec.local_port}"


def tunnels_document(agent: Agent, meters: AgentMeters) -> list[dict[str, object]]:
    """One entry per public URL, as ngrok's ``GET /api/tunnels`` lists them."""
    entries: list[dict[str, object]] = []
    for index, state in enumerate(agent.tunnels):
        if not state.url:
            continue
        spec = state.spec
        rate = meters.of(index)
        stats = state.stats
        conns = {
            "count": stats.connections,
            "gauge": stats.open_connections,
            "rate1": rate.rate1,
            "rate5": rate.rate5,
            "rate15": 0.0,  # not kept: ngrok's clients read it, so it is there
            **_percentiles(stats.duration_samples()),
        }
        http = {
            "count": stats.requests,
            "rate1": 0.0,
            "rate5": 0.0,
            "rate15": 0.0,
            **_percentiles([r[2] for r in stats.recent_requests()]),
        }
        scheme = "http" if spec.protocol == "http" else spec.protocol
        for i, url in enumerate(state.urls or [state.url]):
            name = _tunnel_name(state) + ("" if i == 0 else f" ({urlsplit(url).scheme})")
            entries.append(
                {
                    "name": name,
                    "ID": f"{agent.instance_id}-{index}-{i}",
                    "uri": f"/api/tunnels/{name}",
                    "public_url": url,
                    "proto": urlsplit(url).scheme,
                    "config": {"addr": f"{scheme}://{spec.local}", "inspect": False},
                    "metrics": {"conns": conns, "http": http},
                }
            )
    return entries


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_text(agent: Agent) -> str:
    """The agent's counters in the Prometheus text format."""
    out = [
        "# HELP burrow_agent_info The agent's version.",
        "# TYPE burrow_agent_info gauge",
        f'burrow_agent_info{{version="{AGENT_VERSION}"}} 1',
        "# HELP burrow_agent_connected 1 while the link to the edge is up.",
        "# TYPE burrow_agent_connected gauge",
        f"burrow_agent_connected {int(agent.connected)}",
        "# HELP burrow_agent_reconnects_total Links to the edge started again after one ended.",
        "# TYPE burrow_agent_reconnects_total counter",
        f"burrow_agent_reconnects_total {agent.reconnects}",
    ]
    if agent.rtt is not None:
        out += [
            "# HELP burrow_agent_link_rtt_seconds Round trip of the last heartbeat.",
            "# TYPE burrow_agent_link_rtt_seconds gauge",
            f"burrow_agent_link_rtt_seconds {agent.rtt:.6f}",
        ]
    families: list[tuple[str, str, str, Callable[[TunnelState], float]]] = [
        ("tunnel_up", "gauge", "1 while the tunnel is bound.", lambda s: int(bool(s.url))),
        ("connections_total", "counter", "Visitor connections.", lambda s: s.stats.connections),
        ("open_connections", "gauge", "Connections open now.", lambda s: s.stats.open_connections),
        (
            "local_connect_failures_total",
            "counter",
            "Connections the local service refused.",
            lambda s: s.stats.failed,
        ),
        ("requests_total", "counter", "HTTP requests.", lambda s: s.stats.requests),
    ]
    for short, kind, help_text, value in families:
        name = f"burrow_agent_{short}"
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for state in agent.tunnels:
            labels = f'tunnel="{_label(_tunnel_name(state))}",local="{_label(state.spec.local)}"'
            out.append(f"{name}{{{labels}}} {value(state)}")
    out += [
        "# HELP burrow_agent_request_seconds Time to the response head, recent requests.",
        "# TYPE burrow_agent_request_seconds summary",
    ]
    for state in agent.tunnels:
        tunnel = _label(_tunnel_name(state))
        for q in (0.5, 0.9, 0.99):
            seconds = state.stats.percentile(q)
            if seconds is not None:
                labels = f'tunnel="{tunnel}",quantile="{q}"'
                out.append(f"burrow_agent_request_seconds{{{labels}}} {seconds:.6f}")
    return "\n".join(out) + "\n"


class LocalApi:
    """The server; ``start`` binds it, ``url`` is where it listens once started."""

    def __init__(
        self, agent: Agent, meters: AgentMeters, inspector: Inspector | None = None
    ) -> None:
        self.agent = agent
        self.meters = meters
        self.inspector = inspector
        self.server: asyncio.Server | None = None
        self.address: tuple[str, int] = ("", 0)
        self._connections: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}" if port else ""

    async def start(self, host: str, port: int, *, next_free: bool) -> None:
        """Listen on ``host:port``; with ``next_free``, on the next of ``PORT_TRIES`` ports
        when it is taken. OSError if none can be had."""
        tries = PORT_TRIES if next_free and port else 1
        for offset in range(tries):
            try:
                self.server = await asyncio.start_server(
                    self._serve, host, port + offset if port else 0, limit=MAX_HEAD
                )
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or offset == tries - 1:
                    raise
                continue
            sock = self.server.sockets[0].getsockname()
            self.address = (sock[0], sock[1])
            return

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            # Closing the sockets ends each handler's read; cancelling them instead would
            # leave asyncio logging their CancelledError.
            for writer in list(self._connections):
                writer.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    def _allowed_host(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name.strip("[]").lower() in ("127.0.0.1", "localhost", "::1", self.address[0])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._connections.add(writer)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        request: h11.Request | None = None
        received = bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT)
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    request, received = event, bytearray()
                    continue
                if isinstance(event, h11.Data):
                    received += event.data
                    if len(received) > MAX_BODY:
                        await self._respond(writer, conn, (413, "text/plain", b"body too large\n"))
                        break
                    continue
                if isinstance(event, h11.EndOfMessage) and request is not None:
                    await self._respond(writer, conn, await self._answer(request, bytes(received)))
                    request = None
                    if conn.our_state is not h11.DONE:
                        break  # MUST_CLOSE: the client asked for close, or HTTP/1.0
                    continue
                if event is h11.PAUSED and conn.our_state is h11.DONE:
                    if conn.their_state is not h11.DONE:
                        break  # a body we do not read: close rather than drain it
                    conn.start_next_cycle()
                    continue
                break  # ConnectionClosed, or anything else: done
        except h11.RemoteProtocolError as exc:
            with contextlib.suppress(h11.LocalProtocolError):
                body = f"bad request: {exc}\n".encode()
                writer.write(
                    conn.send(
                        h11.Response(
                            status_code=exc.error_status_hint,
                            headers=[("content-length", str(len(body))), ("connection", "close")],
                        )
                    )
                )
                writer.write(conn.send(h11.Data(data=body)))
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _respond(
        self, writer: asyncio.StreamWriter, conn: h11.Connection, answer: Answer
    ) -> None:
        status, kind, body = answer[0], answer[1], answer[2]
        headers = [
            ("content-type", kind),
            ("content-length", str(len(body))),
            ("cache-control", "no-store"),
            ("x-content-type-options", "nosniff"),
            ("content-security-policy", CSP),
            ("referrer-policy", "no-referrer"),
        ]
        if len(answer) == 4:
            headers += answer[3]  # type: ignore[misc]
        writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
        writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    async def _answer(self, request: h11.Request, body: bytes) -> Answer:
        host = next((v.decode("latin-1") for k, v in request.headers if k == b"host"), "")
        if not self._allowed_host(host):
            return 403, "text/plain", b"this agent answers only on 127.0.0.1 and localhost\n"
        target = urlsplit(request.target.decode("latin-1"))
        path = target.path
        origin = next((v.decode("latin-1") for k, v in request.headers if k == b"origin"), "")
        if (
            request.method not in (b"GET", b"HEAD")
            and origin
            and (
                not self._allowed_host(urlsplit(origin).netloc)
                or urlsplit(origin).port != (self.address[1])
            )
        ):
            return 403, "text/plain", b"changes come only from this agent's own page\n"
        if path == "/api/requests/http" or path.startswith("/api/requests/http/"):
            return await self._requests(request, path, parse_qs(target.query), body)
        if path == "/favicon.ico":
            return 204, "image/x-icon", b""  # browsers ask; an empty answer, not a 404 logged
        if path in UI_FILES and request.method == b"GET" and self.inspector is not None:
            name, kind = UI_FILES[path]
            return 200, kind, (resources.files("agent") / "inspector_ui" / name).read_bytes()
        if request.method != b"GET":
            return 405, "text/plain", b"only GET\n"
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", metrics_text(self.agent).encode()
        if path == "/api/tunnels":
            entries = tunnels_document(self.agent, self.meters)
            return 200, "application/json", _json({"tunnels": entries, "uri": "/api/tunnels"})
        if path.startswith("/api/tunnels/"):
            wanted = path[len("/api/tunnels/") :].replace("%20", " ")
            for entry in tunnels_document(self.agent, self.meters):
                if entry["name"] == wanted:
                    return 200, "application/json", _json(entry)
            return 404, "application/json", _json({"error_code": 100, "msg": "no such tunnel"})
        if path == "/":
            return 200, "text/plain", b"burrow agent: GET /api/tunnels, GET /metrics\n"
        return 404, "text/plain", b"not found: try /api/tunnels or /metrics\n"

    async def _requests(
        self, request: h11.Request, path: str, query: dict[str, list[str]], body: bytes
    ) -> Answer:
        inspector = self.inspector
        if inspector is None:
            return 404, "application/json", _json({"error_code": 101, "msg": "inspection is off"})
        method = request.method
        if path == "/api/requests/http" and method == b"GET":
            limit_text = query.get("limit", ["50"])[0]
            limit = int(limit_text) if limit_text.isdigit() else 50
            tunnel = query.get("tunnel_name", [""])[0]
            document = inspector_api.list_document(inspector, max(1, min(limit, 1000)), tunnel)
            document["version"] = inspector.version
            return 200, "application/json", _json(document)
        if path == "/api/requests/http" and method == b"DELETE":
            inspector.clear()
            return 204, "application/json", b""
        if path == "/api/requests/http" and method == b"POST":
            return await self._replay(inspector, body)
        capture = inspector.captures.get(path.rsplit("/", 1)[1])
        if method != b"GET":
            return 405, "text/plain", b"GET, POST to replay, or DELETE to clear\n"
        if capture is None:
            return 404, "application/json", _json({"error_code": 102, "msg": "no such request"})
        return 200, "application/json", _json(inspector_api.capture_document(capture))

    async def _replay(self, inspector: Inspector, body: bytes) -> Answer:
        try:
            edits = json.loads(body or b"{}")
        except ValueError:
            edits = None
        if not isinstance(edits, dict) or not isinstance(edits.get("id"), str):
            return 400, "application/json", _json({"msg": 'send {"id": "<request id>"}'})
        capture = inspector.captures.get(edits["id"])
        if capture is None:
            return 404, "application/json", _json({"error_code": 102, "msg": "no such request"})
        state = next((s for s in self.agent.tunnels if _tunnel_name(s) == capture.tunnel), None)
        if state is None:
            return 404, "application/json", _json({"msg": f"no tunnel {capture.tunnel} now"})
        try:
            replayed = await inspector_api.replay(
                inspector, capture, edits, state.spec.local_host, state.spec.local_port
            )
        except inspector_api.ReplayError as exc:
            return exc.status, "application/json", _json({"msg": str(exc)})
        # 204 as ngrok answers; where the replay's own capture is, for those who want it.
        return 204, "application/json", b"", [("location", f"/api/requests/http/{replayed.id}")]


def _json(document: object) -> bytes:
    return json.dumps(document, indent=1).encode()
