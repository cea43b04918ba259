"""What travels on the bus, as msgspec structs encoded with msgpack.

Control -> edges, on ``ROUTING_CHANNEL``: ``RoutingEvent``. Every event carries ``seq``, a
number control takes from one database sequence per change, so an edge that sees a jump
(or a ``bus.base.Gap``) knows it missed something and loads a fresh ``RoutingSnapshot``.

Edges -> control, on ``EDGE_REPORTS_STREAM``: ``EdgeReport``. An edge sends ``EdgeState``
(its whole tunnel list) when it starts and every few seconds, and ``TunnelUp`` /
``TunnelDown`` as they happen, so control's view heals after any loss.

The tags are wire format between processes of different versions during a rolling upgrade:
never rename them.
"""

from __future__ import annotations

import msgspec

# -- routing state (control -> edges) ------------------------------------------------------


class NameClaim(msgspec.Struct, frozen=True):
    """A reserved hostname (``app.<base domain>``) and the org that owns it."""

    host: str
    org: str


class DomainRoute(msgspec.Struct, frozen=True):
    """A custom domain an org added. Only verified domains may be bound or routed.

    ``target``: the hostname of a tunnel (usually a reserved name) whose agents serve this
    domain; empty when agents bind the domain itself.
    """

    host: str
    org: str
    verified: bool
    tls_mode: str = "terminate"  # "terminate" | "passthrough"
    target: str = ""


class Revocation(msgspec.Struct, frozen=True):
    token_id: str
    until: float  # unix seconds: the token's own expiry; the entry can be dropped after it


class VerifyKey(msgspec.Struct, frozen=True):
    """A public Ed25519 key agent tokens are checked against, by key id."""

    kid: str
    public_key: bytes  # raw, 32 bytes


class OrgLimits(msgspec.Struct, frozen=True):
    """Per-org quotas set in control (a plan, an operator); 0: the edge's default."""

    org: str
    tunnels: int = 0
    links: int = 0
    tcp_ports: int = 0
    streams: int = 0  # visitor connections open at once
    plan: str = ""  # the billing plan the limits come from ("": none), named in refusals


class CertRef(msgspec.Struct, frozen=True):
    """A certificate control holds for ``host`` ("shop.example.com", "*.example.com"); the
    edge fetches chain and key over its authenticated channel when ``version`` is new to
    it (keys never travel on the bus)."""

    host: str
    version: int
    not_after: float = 0.0  # unix seconds


class AcmeChallenge(msgspec.Struct, frozen=True):
    """An ACME challenge every edge answers while the CA validates it.

    ``kind`` "http-01": ``GET /.well-known/acme-challenge/<token>`` on ``host`` answers
    ``key_authorization``. "tls-alpn-01": a handshake for ``host`` offering only
    ``acme-tls/1`` gets a certificate carrying its digest (RFC 8737), which the edge makes
    itself. Neither is a secret (RFC 8555 8.1: token plus the account key's thumbprint)."""

    token: str
    host: str
    kind: str
    key_authorization: str
    until: float  # unix seconds; past it the edge drops the answer


class RoutingSnapshot(msgspec.Struct):
    seq: int
    names: list[NameClaim] = []
    domains: list[DomainRoute] = []
    revoked: list[Revocation] = []
    keys: list[VerifyKey] = []
    suspended: list[str] = []  # org ids whose agents are refused
    limits: list[OrgLimits] = []  # orgs whose quotas differ from the edge's defaults
    certs: list[CertRef] = []
    challenges: list[AcmeChallenge] = []
    # Whether a free name under the base domain binds first-come for any account (as frp's
    # subdomains do); False: only names an org reserved, and random names an edge gave it.
    open_names: bool = False


class NameSet(msgspec.Struct, tag="name_set"):
    seq: int
    claim: NameClaim


class NameRemoved(msgspec.Struct, tag="name_removed"):
    seq: int
    host: str


class DomainSet(msgspec.Struct, tag="domain_set"):
    seq: int
    route: DomainRoute


class DomainRemoved(msgspec.Struct, tag="domain_removed"):
    seq: int
    host: str


class TokenRevoked(msgspec.Struct, tag="token_revoked"):
    seq: int
    revocation: Revocation


class KeysSet(msgspec.Struct, tag="keys_set"):
    """The full set of keys tokens may be signed with (after a rotation or retirement)."""

    seq: int
    keys: list[VerifyKey]


class OrgSuspended(msgspec.Struct, tag="org_suspended"):
    """An operator suspended ``org`` (its agents are ended and refused) or lifted that."""

    seq: int
    org: str
    suspended: bool


class OrgLimitsSet(msgspec.Struct, tag="org_limits_set"):
    """An org's quotas changed; all zero: back to the edge's defaults."""

    seq: int
    limits: OrgLimits


class CertChanged(msgspec.Struct, tag="cert_changed"):
    """A certificate for ``host`` was issued or renewed (``version``), or removed (0); edges
    fetch it from control (``GET /v1/edge/certs/<host>``) and serve it from the next
    handshake."""

    seq: int
    host: str
    version: int = 0
    not_after: float = 0.0


class ChallengeSet(msgspec.Struct, tag="challenge_set"):
    """The certs worker placed an ACME challenge: every edge answers it from now on."""

    seq: int
    challenge: AcmeChallenge


class ChallengeRemoved(msgspec.Struct, tag="challenge_removed"):
    """The challenge ``token`` is done (valid or not): edges stop answering it."""

    seq: int
    token: str


RoutingEvent = (
    NameSet
    | NameRemoved
    | DomainSet
    | DomainRemoved
    | TokenRevoked
    | KeysSet
    | CertChanged
    | ChallengeSet
    | ChallengeRemoved
    | OrgSuspended
    | OrgLimitsSet
)


class EdgeCert(msgspec.Struct, frozen=True):
    """``GET /v1/edge/certs/<host>``'s answer, over the edge's authenticated channel to
    control (never on the bus): the chain, leaf first, and its key, both PEM."""

    host: str
    version: int
    chain_pem: bytes
    key_pem: bytes


# -- edge reports (edges -> control) -------------------------------------------------------


class LiveTunnel(msgspec.Struct, frozen=True):
    key: str  # "<session id>/<tunnel id>", unique across edges
    org: str
    token_id: str
    protocol: str  # "http" | "tcp" | "tls"
    url: str
    hostname: str = ""
    port: int = 0
    session_id: str = ""
    instance_id: str = ""
    agent_version: str = ""
    client_addr: str = ""
    local: str = ""
    started: float = 0.0  # unix seconds


class OrgUsage(msgspec.Struct, frozen=True):
    """What an org's agent links carried on one edge since that edge's previous
    ``EdgeState``: bytes both ways, and visitor connections (tunnel streams) opened."""

    org: str
    bytes: int = 0
    connections: int = 0


class EdgeState(msgspec.Struct, tag="edge_state"):
    """Everything the edge serves now; replaces what control knew of this edge."""

    edge_id: str
    at: float
    started: float
    tunnels: list[LiveTunnel]
    version: str = ""
    draining: bool = False
    usage: list[OrgUsage] = []  # since the previous EdgeState; metered per billing period


class TunnelUp(msgspec.Struct, tag="tunnel_up"):
    edge_id: str
    at: float
    tunnel: LiveTunnel


class TunnelDown(msgspec.Struct, tag="tunnel_down"):
    edge_id: str
    at: float
    key: str


class EdgeStopped(msgspec.Struct, tag="edge_stopped"):
    edge_id: str
    at: float


EdgeReport = EdgeState | TunnelUp | TunnelDown | EdgeStopped

_encoder = msgspec.msgpack.Encoder()
routing_decoder = msgspec.msgpack.Decoder(RoutingEvent)
snapshot_decoder = msgspec.msgpack.Decoder(RoutingSnapshot)
report_decoder = msgspec.msgpack.Decoder(EdgeReport)
edge_cert_decoder = msgspec.msgpack.Decoder(EdgeCert)


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)
