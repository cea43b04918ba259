"""What the agent exposes: tunnel specs from flags or the config file, and their live state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final


class SpecError(ValueError):
    """A tunnel definition is wrong; the message says how to write it."""


@dataclass(frozen=True, slots=True)
class TunnelSpec:
    protocol: str  # "http" | "tcp" | "tls"
    local_host: str
    local_port: int
    name: str = ""  # requested subdomain or hostname (http)
    remote_port: int = 0  # requested public port (tcp)
    pool: bool = False
    label: str = ""  # the tunnel's name in the config file

    @property
    def local(self) -> str:
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        return f"{host}:{self.local_port}"


def parse_address(addr: str | int) -> tuple[str, int]:
    """``3000``, ``localhost:3000``, ``[::1]:3000`` -> (host, port)."""
    text = str(addr).strip()
    if "://" in text:
        raise SpecError(f"bad address {text!r}: write host:port without a scheme")
    host = "localhost"
    if text.startswith("["):
        end = text.find("]")
        if end == -1 or not text[end + 1 :].startswith(":"):
            raise SpecError(f"bad address {text!r}: write [::1]:8000")
        host, text = text[1:end], text[end + 2 :]
    elif ":" in text:
        host, text = text.rsplit(":", 1)
    # isascii: str.isdigit() also accepts digits like "²" that int() refuses.
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise SpecError(f"bad port in {addr!r}: use a number from 1 to 65535")
    return host or "localhost", int(text)


# What the edge's BindFailed codes mean to the agent, in one place. A transient refusal is
# retried with backoff; any other code (those below, and any code a newer edge invents) is
# permanent: asking again with the same tunnel definition gets the same answer, so the agent
# drops that tunnel and says why instead of retrying forever.
TRANSIENT_BIND_CODES: Final = frozenset(
    {
        "exhausted",  # no free random name or port right now
        "draining",  # the edge is shutting down
        "in_use",  # usually our own previous process, until its link times out
    }
)
PERMANENT_BIND_CODES: Final = frozenset(
    {
        "taken",  # the name or port belongs to another account
        "not_allowed",  # the token may not bind this hostname
        "bad_name",
        "bad_port",  # outside the edge's range, or the edge assigns ports itself
        "protocol",  # the token may not open this kind of tunnel
        "too_many_tunnels",
        "unverified",  # a custom domain not verified yet
        "tls_mode",  # a custom domain set up for the other TLS mode
        "held",  # kept for the account that used it last, for a while
        "not_owned",  # a host the token's org has not reserved or added
        "not_reserved",  # a free name: reserve it first, or take a random one
        "reserved",  # a name the installation uses itself
        "quota",  # the org's limit on tunnels, links or TCP ports
    }
)
# "in_use" stops being transient after this many retries a second apart: longer than an old
# link of ours takes to time out (three heartbeats), so it is another agent that holds it.
IN_USE_RETRIES: Final = 20
BIND_RETRY_START: Final = 1.0
BIND_RETRY_MAX: Final = 30.0


def bind_refusal_is_transient(code: str) -> bool:
    return code in TRANSIENT_BIND_CODES


_LATENCY_SAMPLES = 512


@dataclass(slots=True)
class SampleRing:
    """The latest ``_LATENCY_SAMPLES`` values, oldest overwritten first: adding one costs a
    store; sorting waits for whoever reads the percentiles (a display, once a second)."""

    samples: list[float] = field(default_factory=list)
    next: int = 0

    def add(self, value: float) -> None:
        samples = self.samples
        if len(samples) < _LATENCY_SAMPLES:
            samples.append(value)
        else:
            samples[self.next] = value
            self.next = (self.next + 1) % _LATENCY_SAMPLES

    def __len__(self) -> int:
        return len(self.samples)

    def percentile(self, q: float) -> float | None:
        ordered = sorted(self.samples)
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(slots=True)
class TunnelStats:
    connections: int = 0
    open_connections: int = 0
    requests: int = 0
    failed: int = 0
    # Request latencies (to the response head), recorded once per request.
    _latencies: SampleRing = field(default_factory=SampleRing)
    # How long connections stayed open, recorded once per connection when it closes.
    _durations: SampleRing = field(default_factory=SampleRing)
    # The latest _RECENT_REQUESTS requests: (request line, status, seconds to the response
    # head, monotonic start). Bytes as they came; decoded only when something shows them.
    _recent: list[tuple[bytes, int, float, float]] = field(default_factory=list)
    _next_recent: int = 0

    def record_latency(self, seconds: float) -> None:
        self._latencies.add(seconds)

    def percentile(self, q: float) -> float | None:
        return self._latencies.percentile(q)

    def record_duration(self, seconds: float) -> None:
        self._durations.add(seconds)

    def duration_samples(self) -> list[float]:
        return list(self._durations.samples)

    def record_request(self, line: bytes, status: int, seconds: float, started: float) -> None:
        recent = self._recent
        if len(recent) < _RECENT_REQUESTS:
            recent.append((line, status, seconds, started))
        else:
            recent[self._next_recent] = (line, status, seconds, started)
            self._next_recent = (self._next_recent + 1) % _RECENT_REQUESTS

    def recent_requests(self) -> list[tuple[bytes, int, float, float]]:
        """(request line, status, seconds, monotonic start), oldest first."""
        return self._recent[self._next_recent :] + self._recent[: self._next_recent]


_RECENT_REQUESTS = 50


@dataclass(slots=True)
class TunnelState:
    spec: TunnelSpec
    url: str = ""
    urls: list[str] = field(default_factory=list)
    error: str = ""
    # What the edge gave us, asked for again on reconnect so the URL stays the same.
    claimed_name: str = ""
    claimed_port: int = 0
    bind_retries: int = 0
    # Refused for good: not bound again on this or any later link.
    dropped: bool = False
    stats: TunnelStats = field(default_factory=TunnelStats)
