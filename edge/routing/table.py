"""Which tunnel serves a hostname or a TCP port.

A hostname (or port) maps to a ``TunnelPool``: one or more tunnels of one account. Several
agents that ask to pool share the load round-robin. A name belongs to one account at a time;
when its last tunnel goes away the name is *leased* to that account for a while, so an agent
that reconnects (or an edge that restarted) gives it back its URL and nobody else can grab it
in between.

A reconnecting agent announces the same ``instance_id``; a bind from the same instance for a
name it already holds replaces the stale tunnel at once instead of waiting for the old link's
heartbeat to time out.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.link.agent_session import AgentSession

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class BindError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Tunnel:
    __slots__ = (
        "account",
        "created",
        "hostname",
        "instance_id",
        "local",
        "pool",
        "port",
        "protocol",
        "session",
        "tunnel_id",
    )

    def __init__(
        self,
        tunnel_id: int,
        session: AgentSession,
        protocol: str,
        account: str,
        instance_id: str,
        local: str = "",
        pool: bool = False,
    ) -> None:
        self.tunnel_id = tunnel_id
        self.session = session
        self.protocol = protocol
        self.account = account
        self.instance_id = instance_id
        self.local = local
        self.pool = pool
        self.hostname = ""
        self.port = 0
        self.created = time.time()


@dataclass(slots=True)
class TunnelPool:
    account: str
    members: list[Tunnel] = field(default_factory=list)
    _next: int = 0

    def pick(self) -> Tunnel | None:
        members = self.members
        if not members:
            return None
        if len(members) == 1:
            return members[0]
        self._next = (self._next + 1) % len(members)
        # Prefer the member with the fewest open streams among two candidates (power of
        # two choices): round-robin alone piles onto a slow agent.
        a = members[self._next]
        b = members[(self._next + 1) % len(members)]
        return a if a.session.mux.stream_count <= b.session.mux.stream_count else b


def normalize_host(host: str) -> str:
    """Lowercase; strip port and trailing dot: ``Demo.Localhost:8080`` -> ``demo.localhost``.

    ``""`` for a host whose port is not digits (RFC 3986 3.2.3): ``demo.localhost:@evil``
    names no tunnel, and must not be routed to ``demo.localhost`` and forwarded as it came."""
    host = host.strip().lower()
    if host.startswith("["):
        address, _, rest = host.partition("]")
        if rest and not (rest[0] == ":" and _is_port(rest[1:])):
            return ""
        return address + "]"
    if host.count(":") == 1:
        host, _, port = host.partition(":")
        if not _is_port(port):
            return ""
    return host.rstrip(".")


def _is_port(port: str) -> bool:
    # isdecimal alone takes other scripts' digits; an empty port is allowed (RFC 3986 3.2.3).
    return len(port) <= 5 and port.isascii() and (not port or port.isdecimal())


def host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and host.count(".") >= pattern.count(".")
    return host == pattern


class RouteTable:
    def __init__(
        self,
        base_domain: str,
        *,
        lease_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        reserved: Callable[[str], bool] | None = None,
        alias: Callable[[str], tuple[str, str] | None] | None = None,
    ) -> None:
        """``reserved``: whether a name belongs to some org (never handed out at random).
        ``alias``: for a custom domain routed to another tunnel, (that tunnel's hostname,
        the domain's org); see ``edge.routing.ownership.HostOwnership``."""
        self.base_domain = base_domain.lower().strip(".")
        self.lease_seconds = lease_seconds
        self.hosts: dict[str, TunnelPool] = {}
        self.ports: dict[int, TunnelPool] = {}
        self._leases: dict[Any, tuple[str, float]] = {}
        # account -> hostnames and ports it has held since it last counted them; entries
        # it no longer holds (by a pool or a lease) are dropped when it next counts.
        self._holdings: dict[str, set[Any]] = {}
        self._clock = clock
        self._reserved = reserved
        self._alias = alias

    # -- names ----------------------------------------------------------------------------

    def hostname_for(self, name: str, allowed_hosts: tuple[str, ...]) -> str:
        """The hostname a Bind's ``name`` asks for, or BindError if it may not have it."""
        name = normalize_host(name)
        suffix = "." + self.base_domain
        if name.endswith(suffix):
            label = name[: -len(suffix)]
            if "." not in label:
                if _LABEL.match(label):
                    return name
                raise BindError(
                    "bad_name",
                    f"{label!r} is not a valid name: use 1-63 letters, digits and hyphens",
                )
        elif "." not in name:
            if _LABEL.match(name):
                return name + suffix
            raise BindError(
                "bad_name",
                f"{name!r} is not a valid name: use 1-63 letters, digits and hyphens",
            )
        if any(host_matches(p, name) for p in allowed_hosts):
            return name
        raise BindError(
            "not_allowed",
            f"{name!r} is not a name this token may bind: ask for a name under "
            f"{self.base_domain} or add the domain to your account",
        )

    def random_hostname(self) -> str:
        for _ in range(100):
            label = "".join(secrets.choice(_ALPHABET) for _ in range(8))
            host = f"{label}.{self.base_domain}"
            if self._reserved is not None and self._reserved(host):
                continue
            if host not in self.hosts and not self._leased_to_other(host, ""):
                return host
        raise BindError("exhausted", "no free random name; try again")

    # -- claims ---------------------------------------------------------------------------

    def _leased_to_other(self, key: object, account: str) -> bool:
        lease = self._leases.get(key)
        if lease is None:
            return False
        owner, expires = lease
        if expires < self._clock():
            del self._leases[key]
            return False
        return owner != account

    def refuse_if_held(self, key: object, label: str, account: str) -> None:
        """Raise the ``held`` refusal while a lease keeps ``key`` for another account."""
        if self._leased_to_other(key, account):
            raise self.held_error(key, label)

    def held_error(self, key: object, label: str) -> BindError:
        """The refusal for ``key`` while its lease keeps it for another account."""
        lease = self._leases.get(key)
        left = lease[1] - self._clock() if lease is not None else 0.0
        until = datetime.fromtimestamp(time.time() + max(left, 0.0), UTC).strftime("%H:%M")
        return BindError(
            "held",
            f"{label} is held for the account that used it until {until} UTC; pick another",
        )

    def _claim(
        self, table: dict[Any, TunnelPool], key: object, label: str, tunnel: Tunnel
    ) -> list[Tunnel]:
        """Add ``tunnel`` under ``key``; returns stale tunnels it replaced."""
        pool = table.get(key)
        if pool is None:
            self.refuse_if_held(key, label, tunnel.account)
            table[key] = TunnelPool(tunnel.account, [tunnel])
            self._leases.pop(key, None)
            self._holdings.setdefault(tunnel.account, set()).add(key)
            return []
        if pool.account != tunnel.account:
            raise BindError("taken", f"{label} is in use by another account")
        stale = [t for t in pool.members if t.instance_id == tunnel.instance_id]
        if not stale and not (tunnel.pool and all(t.pool for t in pool.members)):
            raise BindError(
                "in_use",
                f"{label} is already served by another agent of your account; "
                "start both with --pool to share the load",
            )
        for t in stale:
            pool.members.remove(t)
        pool.members.append(tunnel)
        return stale

    def claim_host(self, hostname: str, tunnel: Tunnel) -> list[Tunnel]:
        stale = self._claim(self.hosts, hostname, hostname, tunnel)
        tunnel.hostname = hostname
        return stale

    def claim_port(self, port: int, tunnel: Tunnel) -> list[Tunnel]:
        stale = self._claim(self.ports, port, f"port {port}", tunnel)
        tunnel.port = port
        return stale

    def holdings(self, account: str) -> tuple[int, int]:
        """(names and ports kept for ``account`` by a lease alone, TCP ports it holds by a
        tunnel or a lease), for its quotas. Costs one step per name it holds: per bind, never
        per request."""
        held = self._holdings.get(account)
        if not held:
            return 0, 0
        now = self._clock()
        leased = ports = 0
        for key in list(held):
            pool = (self.ports if isinstance(key, int) else self.hosts).get(key)
            if pool is None or pool.account != account:
                lease = self._leases.get(key)
                if lease is None or lease[0] != account or lease[1] < now:
                    held.discard(key)
                    continue
                leased += 1
            if isinstance(key, int):
                ports += 1
        if not held:
            del self._holdings[account]
        return leased, ports

    def holds(self, key: str | int, account: str, instance_id: str) -> bool:
        """Whether a bind of ``key`` by this agent takes back what its account already
        counts: a name or port leased to it, or its own stale tunnel's place."""
        pool = self.ports.get(key) if isinstance(key, int) else self.hosts.get(key)
        if pool is not None:
            return pool.account == account and any(
                t.instance_id == instance_id for t in pool.members
            )
        return self._leased_to(key, account)

    def held_for(self, host: str, account: str) -> bool:
        """Whether this edge holds ``host`` for ``account``: one of its tunnels serves it, or
        the lease on a name it had keeps it for the account."""
        pool = self.hosts.get(host)
        if pool is not None:
            return pool.account == account
        return self._leased_to(host, account)

    def _leased_to(self, key: object, account: str) -> bool:
        lease = self._leases.get(key)
        return lease is not None and lease[0] == account and lease[1] >= self._clock()

    def port_available(self, port: int, account: str) -> bool:
        pool = self.ports.get(port)
        if pool is not None:
            return pool.account == account
        return not self._leased_to_other(port, account)

    def release(self, tunnel: Tunnel) -> None:
        tables: tuple[tuple[dict[Any, TunnelPool], object], ...] = (
            (self.hosts, tunnel.hostname),
            (self.ports, tunnel.port),
        )
        for table, key in tables:
            if not key:
                continue
            pool = table.get(key)
            if pool is None or tunnel not in pool.members:
                continue
            pool.members.remove(tunnel)
            if not pool.members:
                del table[key]
                self._leases[key] = (tunnel.account, self._clock() + self.lease_seconds)

    def evict_others(self, host: str, owner: str) -> list[Tunnel]:
        """``host`` now belongs to ``owner`` (control reserved it, or verified it as their
        domain): drop another account's tunnels on it, and its lease, without leasing the
        name back to that account. The tunnels dropped."""
        lease = self._leases.get(host)
        if lease is not None and lease[0] != owner:
            del self._leases[host]
        pool = self.hosts.get(host)
        if pool is None or pool.account == owner:
            return []
        del self.hosts[host]
        return list(pool.members)

    # -- lookups --------------------------------------------------------------------------

    def lookup_host(self, host: str) -> TunnelPool | None:
        pool = self.hosts.get(host)
        if pool is not None:
            return pool
        if self._alias is not None:
            # A custom domain routed to another tunnel; only to a pool of the domain's own
            # org, so nobody can put another account's service under their domain.
            routed = self._alias(host)
            if routed is not None:
                pool = self.hosts.get(routed[0])
                if pool is not None and pool.account == routed[1]:
                    return pool
        # Wildcard routes: a tunnel bound to "*.example.com" serves "a.example.com".
        dot = host.find(".")
        while dot != -1:
            pool = self.hosts.get("*" + host[dot:])
            if pool is not None:
                return pool
            dot = host.find(".", dot + 1)
        return None

    def lookup_port(self, port: int) -> TunnelPool | None:
        return self.ports.get(port)
