"""Who owns which hostname: the edge's copy of control's routing state.

Control owns reserved names (``app.<base domain>`` kept for one org) and custom domains
(``shop.example.com`` or ``*.example.com``, verified by DNS, with a TLS mode and an optional
target tunnel). The edge decides every bind offline against this copy: it is loaded from a
``RoutingSnapshot``, then kept current by ``RoutingEvent``s applied strictly in ``seq`` order.
An event whose seq is not the next one means events were missed; the caller loads a fresh
snapshot instead of guessing (see ``edge.sync.control_sync``).

An empty ``HostOwnership`` claims nothing, so an edge without a control plane binds exactly
as before: any free name under the base domain, custom domains only from the token's list.

Once control's state is loaded, a token's host list only narrows what its org owns: a name
under the base domain deeper than one label (``x.app.<base>``, ``*.app.<base>``) binds only
for the org that reserved ``app``, and a host outside the base domain only for the org whose
domain covers it. The installation's own names (``edge.<base>``, the agent hostname, ...:
``contracts.token_format.INSTALLATION_LABELS``) bind for nobody, with or without control.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from bus.events import (
    DomainRemoved,
    DomainRoute,
    DomainSet,
    NameClaim,
    NameRemoved,
    NameSet,
    OrgLimits,
    OrgLimitsSet,
    OrgSuspended,
    RoutingEvent,
    RoutingSnapshot,
)
from contracts.token_format import installation_name
from edge.routing.table import BindError, normalize_host

T = TypeVar("T")


def _host(host: str) -> str:
    return normalize_host(host) if host else host


def most_specific(table: Mapping[str, T], host: str) -> T | None:
    """``table``'s entry for ``host``: its exact name, else the nearest ``*.domain`` above it."""
    found = table.get(host)
    if found is not None:
        return found
    dot = host.find(".")
    while dot != -1:
        found = table.get("*" + host[dot:])
        if found is not None:
            return found
        dot = host.find(".", dot + 1)
    return None


class HostOwnership:
    """Reserved names (host -> org) and custom domains (host or ``*.domain`` -> route)."""

    __slots__ = (
        "_agent_hostname",
        "_base",
        "_domains",
        "_limits",
        "_names",
        "_targets",
        "loaded",
        "open_names",
        "seq",
        "suspended",
    )

    def __init__(self) -> None:
        self._base = ""
        self._agent_hostname = ""
        self._names: dict[str, str] = {}
        self._domains: dict[str, DomainRoute] = {}
        self._targets = 0  # domains with a target: lookups skip alias work when there are none
        self._limits: dict[str, OrgLimits] = {}  # orgs whose quotas are not the defaults
        self.suspended: set[str] = set()  # orgs an operator suspended
        self.seq = 0
        self.loaded = False  # a snapshot (from control or its cache) has been loaded
        # A free name binds first-come (as with no control); control says otherwise.
        self.open_names = True

    # -- state ----------------------------------------------------------------------------

    def set_installation(self, base_domain: str, agent_hostname: str = "") -> None:
        """The edge's base domain and agent hostname, whose own names nobody may bind."""
        self._base = _host(base_domain)
        self._agent_hostname = _host(agent_hostname)

    def load(self, snapshot: RoutingSnapshot) -> None:
        """Replace everything with ``snapshot``."""
        self._names = {_host(claim.host): claim.org for claim in snapshot.names}
        self._domains = {}
        self._targets = 0
        for route in snapshot.domains:
            self._set_domain(route)
        self._limits = {limits.org: limits for limits in snapshot.limits}
        self.suspended = set(snapshot.suspended)
        self.open_names = snapshot.open_names
        self.seq = snapshot.seq
        self.loaded = True

    def apply(self, event: RoutingEvent) -> bool:
        """Apply the next event. False if ``event.seq`` shows events were missed (nothing is
        applied; load a snapshot). Events at or below ``seq`` were seen already and are
        ignored. Events about keys, tokens and certificates only advance ``seq`` here."""
        if event.seq <= self.seq:
            return True
        if event.seq != self.seq + 1:
            return False
        if isinstance(event, NameSet):
            self._names[_host(event.claim.host)] = event.claim.org
        elif isinstance(event, NameRemoved):
            self._names.pop(_host(event.host), None)
        elif isinstance(event, DomainSet):
            self._remove_domain(event.route.host)
            self._set_domain(event.route)
        elif isinstance(event, DomainRemoved):
            self._remove_domain(event.host)
        elif isinstance(event, OrgSuspended):
            if event.suspended:
                self.suspended.add(event.org)
            else:
                self.suspended.discard(event.org)
        elif isinstance(event, OrgLimitsSet):
            limits = event.limits
            if limits.tunnels or limits.links or limits.tcp_ports or limits.streams:
                self._limits[limits.org] = limits
            else:
                self._limits.pop(limits.org, None)
        self.seq = event.seq
        return True

    def snapshot(self) -> RoutingSnapshot:
        """Names and domains as a snapshot (keys and revocations are not kept here)."""
        return RoutingSnapshot(
            seq=self.seq,
            names=[NameClaim(host=h, org=o) for h, o in self._names.items()],
            domains=list(self._domains.values()),
            suspended=sorted(self.suspended),
            limits=list(self._limits.values()),
            open_names=self.open_names,
        )

    def _set_domain(self, route: DomainRoute) -> None:
        host = _host(route.host)
        self._domains[host] = route
        if route.target:
            self._targets += 1

    def _remove_domain(self, host: str) -> None:
        old = self._domains.pop(_host(host), None)
        if old is not None and old.target:
            self._targets -= 1

    # -- questions ------------------------------------------------------------------------

    def limits_for(self, org: str) -> OrgLimits | None:
        """The quotas control set for ``org``; None: the edge's defaults."""
        return self._limits.get(org)

    def owner_of_name(self, host: str) -> str | None:
        return self._names.get(host)

    def domain_for(self, host: str) -> DomainRoute | None:
        """The custom domain covering ``host``: its exact entry, else the most specific
        ``*.domain`` entry above it."""
        domains = self._domains
        if not domains:
            return None
        return most_specific(domains, host)

    def is_reserved(self, host: str) -> bool:
        """Whether ``host`` belongs to some org, so it is never handed out as a random name."""
        return host in self._names or self.domain_for(host) is not None

    def allowed_for(self, org: str, token_hosts: tuple[str, ...], name: str) -> tuple[str, ...]:
        """The host patterns besides base-domain names that a bind of ``name`` may name.

        A token's own list, when it has one, is the limit. Otherwise a custom domain control
        knows of and that covers ``name`` passes here, so that ``check_bind`` gives the real
        answer: the org's own verified domain binds, an unverified one is "unverified",
        another org's is "taken"."""
        if token_hosts:
            return token_hosts
        route = self.domain_for(normalize_host(name)) if name else None
        return (_host(route.host),) if route is not None else ()

    def check_bind(self, org: str, hostname: str, protocol: str, *, given: bool = False) -> None:
        """Raise ``BindError`` unless ``org`` may bind ``hostname`` for ``protocol``.
        ``given``: this edge holds ``hostname`` for ``org`` already (its tunnel serves it, or
        a lease keeps the random name it had), which is how an org binds a random name again."""
        base = self._base
        own = installation_name(hostname, base, self._agent_hostname) if base else ""
        if own:
            raise BindError(
                "reserved",
                f"{hostname} is a name this Burrow installation uses itself; pick another name",
            )
        if base and hostname.endswith("." + base):
            self._check_base_name(org, hostname, base, given)
            return
        owner = self._names.get(hostname)
        if owner is not None:
            if owner != org:
                raise BindError("taken", f"{hostname} is reserved by another account")
            return
        route = self.domain_for(hostname)
        if route is None:
            # Without the base domain (set by the edge) a custom domain cannot be told from
            # a base-domain name, so only an edge's copy refuses hosts nobody owns.
            if self.loaded and base:
                raise BindError(
                    "not_owned",
                    f"{hostname} is not a domain of your account: add it and verify it in "
                    "the console or with the API before binding it",
                )
            return
        if route.org != org:
            raise BindError("taken", f"{hostname} is a custom domain of another account")
        if not route.verified:
            raise BindError(
                "unverified",
                f"verify {route.host} in the console or with the API before binding it",
            )
        if protocol == "tls" and route.tls_mode != "passthrough":
            raise BindError(
                "tls_mode",
                f"{route.host} has its TLS terminated at the edge; set its TLS mode to "
                "passthrough in the console or with the API to open a TLS tunnel on it",
            )
        if protocol == "http" and route.tls_mode == "passthrough":
            raise BindError(
                "tls_mode",
                f"{route.host} is set to TLS passthrough: open it with `burrow tls`, or set "
                "its TLS mode to terminate in the console or with the API",
            )

    def _check_base_name(self, org: str, hostname: str, base: str, given: bool) -> None:
        """A name under the base domain: it and every name under it belong to the org that
        reserved its top label; a deeper name nobody reserved binds only without control, and
        a free one only without control, where control opens free names, or for the org this
        edge gave it to."""
        top = hostname[: -len(base) - 1].rsplit(".", 1)[-1]
        name = f"{top}.{base}"
        owner = self._names.get(name)
        if owner is not None:
            if owner != org:
                under = "" if name == hostname else f" (it is under {name})"
                raise BindError("taken", f"{name} is reserved by another account{under}")
            return
        if not self.loaded:
            return
        if name != hostname:
            raise BindError(
                "not_owned",
                f"{hostname} is under {name}, which your account has not reserved: reserve "
                f"{top} first (the names under a name belong to its owner)",
            )
        if not self.open_names and not given:
            raise BindError(
                "not_reserved",
                f"{hostname} is not reserved by your account: reserve {top} in the console or "
                "with the API, or leave out the name for a random one",
            )

    def alias_route(self, host: str) -> tuple[str, str] | None:
        """(target hostname, org) when visitors of ``host`` go to another tunnel's pool."""
        if not self._targets:
            return None
        route = self.domain_for(host)
        if route is None or not route.verified or not route.target:
            return None
        return _host(route.target), route.org

    def alias_for(self, host: str) -> str | None:
        """The hostname whose tunnels serve visitors of the custom domain ``host``."""
        routed = self.alias_route(host)
        return routed[0] if routed is not None else None


def token_tls_mode(tls_modes: tuple[tuple[str, str], ...], hostname: str) -> str:
    """The TLS mode a token's ``tls`` claim sets for ``hostname``: the exact pattern, else
    the most specific ``*.domain`` above it; "" when the claim does not name it."""
    return most_specific(dict(tls_modes), hostname) or ""


def check_token_tls_mode(
    tls_modes: tuple[tuple[str, str], ...], hostname: str, protocol: str
) -> None:
    """Raise ``BindError`` when the token's ``tls`` claim sets another TLS mode for
    ``hostname`` than the tunnel asked for would use: a "passthrough" host opens only as a
    TLS tunnel, a "terminate" host only as an HTTP one."""
    mode = token_tls_mode(tls_modes, hostname)
    if mode == "passthrough" and protocol == "http":
        raise BindError(
            "tls_mode",
            f"this authtoken sets {hostname} to TLS passthrough: open it with `burrow tls`, "
            "or use a token that allows TLS termination for it",
        )
    if mode == "terminate" and protocol == "tls":
        raise BindError(
            "tls_mode",
            f"this authtoken sets {hostname} to TLS termination at the edge: open it with "
            "`burrow http`, or use a token that allows passthrough for it",
        )
