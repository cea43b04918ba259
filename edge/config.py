"""Edge settings: where it listens, what it serves, and the limits it applies to visitors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

ListenHosts = str | tuple[str, ...]


@dataclass(slots=True)
class Limits:
    """Limits applied to visitors and agents. Every one has a default that is safe to face
    the internet with."""

    max_header_bytes: int = 16 * 1024  # request line + headers (431 past it)
    max_header_count: int = 100  # 431 past it
    header_timeout: float = 10.0  # a request head must arrive within this (slowloris)
    idle_timeout: float = 75.0  # keep-alive connection with no request in flight
    # An idle keep-alive visitor lets go of its tunnel stream (and the agent's connection
    # to the local service) after this long, so idle browsers do not use up a tunnel's
    # stream limit; the next request opens a new stream.
    stream_idle_timeout: float = 5.0
    body_idle_timeout: float = 60.0  # no byte of a request body for this long
    # A request body must average this many bytes a second over each body_rate_window
    # (mod_reqtimeout's MinRate): one byte every few seconds restarts no timer. 0: off.
    body_min_rate: int = 256
    body_rate_window: float = 10.0
    response_timeout: float = 60.0  # no response head from the local service: 504
    # A visitor that takes none of what it is sent (its socket buffer stays above the
    # high-water mark) for this long is cut off, and what was queued for it let go.
    send_timeout: float = 30.0
    # The visitor socket's write buffer high-water mark: past it the tunnel stream is paused
    # (its credit held back), so a visitor that stops reading holds little edge memory.
    visitor_write_buffer: int = 16 * 1024
    max_streams_per_agent: int = 1000  # concurrent visitor connections per agent link
    # What the receive windows of one agent link's streams may add up to: the most an agent
    # can make the edge hold for visitors that read nothing. Half of it covers the first
    # window of max_streams_per_agent streams, the rest is what busy streams on long links
    # grow into (proto/mux.py).
    link_memory_budget: int = 64 * 1024 * 1024
    # The share of those one visitor address may hold (429 past it, for that address only),
    # so one address cannot take every stream of a tunnel and lock its other visitors out;
    # never fewer than 8 (or all, when the limit is lower).
    address_stream_share: float = 0.25
    max_tunnels_per_agent: int = 32
    # Per account (org) on this edge; control may set other values per org (a plan). Names
    # and ports a lease keeps for an account count against it until the lease ends.
    max_tunnels_per_org: int = 200
    max_links_per_org: int = 50  # agent links open at once
    max_tcp_ports_per_org: int = 20
    max_streams_per_org: int = 4000  # visitor connections open at once, over all its links
    handshake_timeout: float = 10.0  # an agent must say Hello within this
    # HTTP/2 streams one visitor connection may open per 10 s: a thousand a second, past
    # what a browser or an API client asks of one connection, so a visitor that makes each
    # stream cheap to itself (resets the edge sends, requests that end at once) still cannot
    # drive the local service without bound (CVE-2025-8671). GOAWAY past it.
    h2_streams_per_period: int = 10_000


@dataclass(slots=True)
class EdgeConfig:
    base_domain: str = "localhost"
    edge_id: str = "edge-1"
    # Each listener's host is one address or several on the listener's one port; "*" is
    # every address of IPv4 and, where the host has it, IPv6 (edge.listen).
    http_host: ListenHosts = "127.0.0.1"
    http_port: int = 8080
    agent_host: ListenHosts = "127.0.0.1"
    agent_port: int = 4443
    tcp_host: ListenHosts = "127.0.0.1"
    tcp_ports: tuple[int, int] = (20000, 20999)
    public_http_port: int | None = None  # the port printed in URLs (when behind a NAT/LB)
    public_scheme: str = "http"
    # HTTPS: None disables the listener. Certificates come from static files (cert, key),
    # a local CA (dev) or the fallback; see certs.CertStore.
    https_host: ListenHosts = "127.0.0.1"
    https_port: int | None = None
    public_https_port: int | None = None
    tls_files: list[tuple[str, str]] = field(default_factory=list)
    local_ca_dir: str | None = None
    agent_tls: bool = False  # agent links over TLS (the certificate for agent_hostname)
    agent_hostname: str = ""  # the name agents dial; default: the base domain
    tokens: dict[str, str] = field(default_factory=dict)  # token -> account
    heartbeat: float = 5.0
    heartbeat_misses: int = 3
    drain_seconds: float = 10.0
    # The admin listener (/metrics, /healthz, /readyz); None: off. Port 0: any, read back.
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None
    name_lease_seconds: float = 600.0  # a released random name stays with its account
    limits: Limits = field(default_factory=Limits)

    def replace(self, **changes: object) -> EdgeConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def url_for(self, hostname: str, scheme: str | None = None) -> str:
        """The public URL of a host: https when the edge serves HTTPS, unless asked."""
        scheme = scheme or ("https" if self.https_port is not None else self.public_scheme)
        if scheme in ("https", "tls"):
            port = self.public_https_port or self.https_port or 443
            default = 443
        else:
            port = self.public_http_port if self.public_http_port is not None else self.http_port
            default = 80
        suffix = "" if port == default else f":{port}"
        return f"{scheme}://{hostname}{suffix}"

    def urls_for(self, hostname: str) -> list[str]:
        urls = [self.url_for(hostname, "http")]
        if self.https_port is not None:
            urls.insert(0, self.url_for(hostname, "https"))
        return urls
