"""The certs worker's settings (``burrowd worker certs`` flags, or ``[control]`` in the
config file), kept free of the ACME libraries so control can hold them without loading
those."""

from __future__ import annotations

from dataclasses import dataclass, field

PRESETS = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}


def directory_url(name_or_url: str) -> str:
    """A preset's URL ("letsencrypt", "letsencrypt-staging"), or the URL given."""
    return PRESETS.get(name_or_url, name_or_url)


@dataclass(slots=True)
class AcmeSettings:
    directory_url: str
    email: str = ""
    ca_bundle: str = ""  # a PEM file the CA's HTTPS certificate is checked against; "": system
    eab_kid: str = ""  # external account binding, for CAs that require one
    eab_hmac_key: str = ""  # base64url, as the CA gives it
    timeout: int = 30  # seconds per HTTP request to the CA


@dataclass(slots=True)
class Dns01Settings:
    """How dns-01 TXT records are placed (for the base domain's wildcard)."""

    hook: str = ""  # a command: HOOK present|cleanup RECORD VALUE
    rfc2136_server: str = ""  # HOST[:PORT] of the zone's primary
    zone: str = ""  # the zone the updates go to (default: the base domain)
    tsig_name: str = ""
    tsig_secret: str = ""
    tsig_algorithm: str = "hmac-sha256"


@dataclass(slots=True)
class CertsConfig:
    # None: no ACME CA; edges keep their local CA or self-signed fallbacks.
    acme: AcmeSettings | None = None
    # Challenge kinds for custom domains, in order of preference.
    challenges: tuple[str, ...] = ("http-01", "tls-alpn-01")
    # Also keep a certificate for *.<base domain> (and the base itself), over dns-01.
    wildcard: bool = False
    dns01: Dns01Settings = field(default_factory=Dns01Settings)
    concurrency: int = 8  # orders in flight at once, per worker process
    poll_seconds: float = 30.0  # how often the worker looks for work
    lease_seconds: float = 600.0  # a host is this worker's while it orders for it
    order_seconds: float = 180.0  # how long the CA may take to validate and issue
    # Failure policy: exponential backoff with jitter from backoff_start up to backoff_max;
    # after max_failures the domain is "failed" and retried every failed_retry_seconds.
    backoff_start: float = 60.0
    backoff_max: float = 6 * 3600.0
    max_failures: int = 5
    failed_retry_seconds: float = 24 * 3600.0
    rate_limit_seconds: float = 3600.0  # wait after a rate limit the CA gave no time for
    # Where to reach the edges' HTTPS listeners (HOST:PORT) to see what they serve.
    probe_addresses: list[str] = field(default_factory=list)
    probe_seconds: float = 300.0
    probe_timeout: float = 5.0
    alert_days: tuple[int, ...] = (14, 3)
    webhook_url: str = ""  # operator alerts are POSTed here, signed with webhook_secret
    webhook_secret: str = ""
