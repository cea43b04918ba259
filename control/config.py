"""Control-plane settings: where its database and bus are, the names it hands out, and the
secrets it signs and encrypts with."""

from __future__ import annotations

from dataclasses import dataclass, field

from billing.settings import BillingSettings
from certs.config import CertsConfig


@dataclass(slots=True)
class PasswordCost:
    """argon2id parameters for user passwords (RFC 9106's second recommended profile)."""

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 2


@dataclass(slots=True)
class ControlConfig:
    # None: the embedded PostgreSQL under ``data_dir``.
    database_url: str | None = None
    # Seconds one database connect, pool acquire or statement may take before the API
    # answers 503 unavailable (and the connection is dropped, to be made afresh).
    database_timeout: float = 3.0
    # None: the in-memory bus (one process: edge and control together, as in ``burrowd dev``).
    redis_url: str | None = None
    bus_prefix: str = "burrow:"
    data_dir: str = ""
    base_domain: str = "localhost"
    # The hostname custom domains may CNAME to in relaxed verification mode.
    edge_target: str = ""
    # The operator's secret: signing keys (and later certificate keys) are encrypted with a
    # key derived from it. Losing it means every agent token must be reissued.
    secret_key: str = ""
    # Keys edges present to fetch routing snapshots (Authorization: Bearer ...).
    edge_keys: tuple[str, ...] = ()
    signup_open: bool = True
    # Any free name under the base domain binds first-come for any account; off (the
    # default), an org binds only the names it reserved and the random names edges give it.
    open_names: bool = False
    session_seconds: int = 14 * 24 * 3600
    secure_cookies: bool = False  # set when control is served over HTTPS
    # Largest request body the API reads; larger ones get 413.
    max_body_bytes: int = 64 * 1024
    # DNS servers for domain verification (host or IP); empty: the system's resolver.
    dns_nameservers: list[str] = field(default_factory=list)
    dns_port: int = 53
    dns_timeout: float = 5.0
    # Agent token lifetime when a request asks for none; 0: tokens do not expire.
    default_token_days: int = 0
    # Where agents connect, shown with new tokens ("burrow config add-authtoken ...").
    agent_server: str = ""
    # Throttles (the ``limits`` notation, "N/second|minute|hour|day"): sign-in attempts per
    # client address, failed sign-ins per account, sign-ups per address, and new API keys
    # plus agent tokens per organization. Shared through Redis when redis_url is set.
    login_rate_per_address: str = "30/minute"
    login_rate_per_account: str = "10/minute"
    signup_rate_per_address: str = "10/hour"
    credential_rate_per_org: str = "60/minute"
    # An unverified custom domain is held this long; then another org may claim it.
    domain_claim_days: float = 7.0
    # Organizations one user may own (per-org caps would mean nothing without it).
    max_orgs_per_user: int = 10
    # How long an invitation to an organization can be accepted.
    invitation_days: float = 7.0
    passwords: PasswordCost = field(default_factory=PasswordCost)
    # Seconds after which an edge that has not reported is taken to be gone, and its tunnels
    # are no longer listed.
    edge_stale_seconds: float = 45.0
    # ``burrowd worker certs``: the ACME CA, challenges, probes and alerts.
    certs: CertsConfig = field(default_factory=CertsConfig)
    # Plans, providers, webhooks, dunning (billing/settings.py).
    billing: BillingSettings = field(default_factory=BillingSettings)

    @property
    def cname_target(self) -> str:
        return self.edge_target or f"edge.{self.base_domain}"
