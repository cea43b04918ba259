"""Keeping the edge's routing state and token keyring current: ``RoutingSync``.

Theory of operation. Control is the truth; the edge holds a copy (``HostOwnership`` for
names and domains, a ``TokenKeyring`` for verify keys and revocations) and decides binds and
logins from it offline, so neither Redis nor control is on the path of an agent or a visitor.

- At start the edge asks control for a ``RoutingSnapshot`` (bounded wait). If control cannot
  be reached it loads the last snapshot it wrote to its cache file, so an edge restarted
  during a control outage still knows who owns what and which tokens are revoked.
- It subscribes to ``ROUTING_CHANNEL`` and applies events strictly in ``seq`` order. A
  ``Gap`` from the subscription, or a seq jump, means events were missed: the events after
  the hole are held, a fresh snapshot is fetched, and the held events past the snapshot's seq
  are applied on top. A revocation is acted on at once even out of order: locking a token
  out early is always safe.
- A fresh snapshot is also fetched every ``resync_interval`` as a safety net, and every
  ``outage_interval`` while the bus does not answer, so revocations still reach this edge
  within seconds through control when Redis is down. A fetch control answered badly (5xx,
  a timeout) retries with backoff, so a struggling control is not hammered; a fetch that
  could not connect at all costs control nothing and is retried every ``probe_interval``,
  and a routing event on the bus (control's outbox is running again) cuts any backoff short,
  so stale state ends as soon as control is back.
- The cache file is replaced atomically. A revocation or a key change is written to it
  before it is acted on, so an edge that crashes just after ending a revoked token's
  sessions does not let that token back in when it restarts from the cache; other changes
  are batched into one write shortly after.
- Revoked tokens (from an event or a snapshot) and expired ones (checked periodically) end
  the agent sessions that use them, with ``Refused(code="auth")`` so the agent stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import aiohttp
import msgspec

from bus.base import ROUTING_CHANNEL, Bus, Gap, Subscription
from bus.events import (
    AcmeChallenge,
    CertChanged,
    ChallengeRemoved,
    ChallengeSet,
    DomainSet,
    EdgeCert,
    KeysSet,
    NameSet,
    OrgSuspended,
    Revocation,
    RoutingEvent,
    RoutingSnapshot,
    TokenRevoked,
    VerifyKey,
    edge_cert_decoder,
    encode,
    routing_decoder,
    snapshot_decoder,
)
from edge.link.token_auth import SUSPENDED_MESSAGE
from edge.sync.cert_sync import EdgeCerts

if TYPE_CHECKING:
    from edge.link.auth import Identity
    from edge.routing.ownership import HostOwnership
    from edge.server import Edge

log = logging.getLogger("burrow.edge.sync")

RETRY_START = 0.5  # seconds before the first retry of a failed snapshot fetch; doubles
RETRY_MAX = 30.0
MAX_HELD_EVENTS = 10_000  # events held across a hole; past this the snapshot covers them

REVOKED_MESSAGE = (
    "authtoken revoked: create a new one in the Burrow console or ask your operator, then "
    "run `burrow config add-authtoken TOKEN`"
)
TAKEN_MESSAGE = (
    "this name now belongs to another account (it was reserved or verified as their "
    "domain); pick another name"
)
RETIRED_MESSAGE = (
    "the key that signed this authtoken was retired: create a new token in the Burrow "
    "console or ask your operator, then run `burrow config add-authtoken TOKEN`"
)
EXPIRED_MESSAGE = (
    "authtoken expired: create a new one in the Burrow console or ask your operator, then "
    "run `burrow config add-authtoken TOKEN`"
)


class TokenKeyring(Protocol):
    """Where verify keys and revocations go (``edge.link.token_auth.SignedTokens``)."""

    def set_keys(self, keys: list[VerifyKey]) -> None: ...

    def revoke(self, revocation: Revocation) -> None: ...

    def set_revocations(self, revocations: list[Revocation]) -> None: ...

    def set_suspended(self, orgs: set[str]) -> None: ...


class SnapshotUnavailable(Exception):
    """Control could not give a routing snapshot now; the message says why, in one line.
    ``unreachable``: nothing accepted the connection (control is down, not struggling)."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class SnapshotSource(Protocol):
    async def fetch(self) -> RoutingSnapshot: ...


class HttpSnapshotSource:
    """``GET {control_url}/v1/edge/routing`` with the edge's key; a msgpack snapshot back."""

    def __init__(self, control_url: str, edge_key: str, *, timeout: float = 10.0) -> None:
        self.url = control_url.rstrip("/") + "/v1/edge/routing"
        self._edge_key = edge_key
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None  # made on first use, in the loop

    async def fetch(self) -> RoutingSnapshot:
        body = await self._get(self.url)
        return _decoded(snapshot_decoder, body, "a routing snapshot")

    async def fetch_cert(self, host: str) -> EdgeCert:
        """A certificate and its key (``GET /v1/edge/certs/<host>``): keys reach edges only
        this way, never on the bus."""
        url = self.url.removesuffix("/routing") + "/certs/" + quote(host, safe="*.")
        return _decoded(edge_cert_decoder, await self._get(url), "a certificate")

    async def _get(self, url: str) -> bytes:
        session = self._session
        if session is None:
            session = self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        headers = {
            "Authorization": f"Bearer {self._edge_key}",
            "Accept": "application/x-msgpack",
        }
        try:
            async with session.get(url, headers=headers) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            raise SnapshotUnavailable(
                f"cannot reach control at {url}: {reason}",
                unreachable=isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError),
            ) from None
        if status in (401, 403):
            raise SnapshotUnavailable(
                f"control refused this edge's key ({status}): check --edge-key or "
                "BURROW_EDGE_KEY against the key control was given"
            )
        if status != 200:
            detail = body[:200].decode("utf-8", "replace").strip().replace("\n", " ")
            raise SnapshotUnavailable(f"control answered {status} for {url}: {detail}")
        return body

    async def close(self) -> None:
        session = self._session
        self._session = None
        if session is not None:
            await session.close()


def _decoded(decoder: msgspec.msgpack.Decoder[Any], body: bytes, what: str) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise SnapshotUnavailable(f"control sent {what} this edge cannot read: {exc}") from None


def read_cache(path: Path) -> RoutingSnapshot | None:
    """The cached snapshot, or None if there is none or it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read the routing cache %s: %s", path, exc)
        return None
    try:
        return snapshot_decoder.decode(data)
    except msgspec.DecodeError as exc:
        log.warning("ignoring the routing cache %s: %s", path, exc)
        return None


def write_cache(path: Path, data: bytes) -> None:
    """Replace the cache atomically: a crash leaves the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".routing-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class CacheFile:
    """The routing cache on disk. Writes come from the loop (a revocation, synchronously)
    and from worker threads (batched changes); each carries the version of the state it
    holds, and one that is older than what is already on disk is dropped, so a slow batched
    write can never put back a state from before a revocation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._version = 0  # taken on the loop thread only
        self._written = 0

    def next_version(self) -> int:
        self._version += 1
        return self._version

    def write(self, data: bytes, version: int) -> None:
        with self._lock:
            if version <= self._written:
                return
            write_cache(self.path, data)
            self._written = version


class RoutingSync:
    """Keeps ``edge.routing.ownership`` and ``keyring`` current from ``source`` and ``bus``.

    ``bus`` None: no events, the snapshot is polled every ``outage_interval``.
    ``on_cert_changed``: called with the host of a ``CertChanged`` event.
    When ``source`` can fetch certificates (``fetch_cert``), the certificates control lists
    are kept in ``edge.certs`` (``edge.sync.cert_sync``), saved beside the cache file in
    ``certs/``; ACME challenges are answered while they are out.
    """

    def __init__(
        self,
        edge: Edge,
        source: SnapshotSource,
        bus: Bus | None = None,
        keyring: TokenKeyring | None = None,
        *,
        cache_path: str | Path | None = None,
        resync_interval: float = 60.0,
        outage_interval: float = 5.0,
        probe_interval: float = 1.0,
        start_timeout: float = 5.0,
        fetch_timeout: float = 15.0,
        expiry_interval: float = 5.0,
        on_cert_changed: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.edge = edge
        self.ownership: HostOwnership = edge.ownership
        self.source = source
        self.bus = bus
        self.keyring = keyring
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self._cache = CacheFile(self.cache_path) if self.cache_path is not None else None
        self.resync_interval = resync_interval
        self.outage_interval = outage_interval
        self.probe_interval = probe_interval
        self.start_timeout = start_timeout
        self.fetch_timeout = fetch_timeout
        self.expiry_interval = expiry_interval
        self.on_cert_changed = on_cert_changed
        self._clock = clock
        # What the keyring was given, so the cache holds the whole current state.
        self._keys: list[VerifyKey] = []
        self._revoked: dict[str, Revocation] = {}
        self._held: dict[int, RoutingEvent] = {}  # events past a hole, by seq
        self.loaded_from = ""  # "control" or "cache" once routing state is loaded
        self.bus_up = bus is not None
        self._failures = 0
        self._fetch_failing = False
        self._control_unreachable = False  # the last failed fetch could not connect
        self._wanted = asyncio.Event()
        self._control_alive = asyncio.Event()  # a routing event arrived: control is up
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: Subscription | None = None
        self._save_handle: asyncio.TimerHandle | None = None
        self._synced_at = 0.0  # monotonic time of the last snapshot loaded from control
        self.certs: EdgeCerts | None = None
        if hasattr(source, "fetch_cert"):
            folder = self.cache_path.parent / "certs" if self.cache_path is not None else None
            self.certs = EdgeCerts(edge.certs, source, folder)  # type: ignore[arg-type]
        self._challenges: dict[str, AcmeChallenge] = {}  # by token
        edge.metrics.bus_lag.set_function(self.lag)
        self._saving: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load routing state (from control, else the cache), then keep it current in the
        background. Returns within about ``start_timeout`` even if control is down."""
        loop = asyncio.get_running_loop()
        if self.certs is not None:
            await asyncio.to_thread(self.certs.load_saved)
        if self.bus is not None:
            # Subscribed before the first fetch, so nothing published meanwhile is missed.
            try:
                self._subscription = self.bus.subscribe([ROUTING_CHANNEL])
            except Exception as exc:
                log.warning("cannot subscribe to routing events yet: %s", exc)
            self._tasks.append(loop.create_task(self._follow_bus(self.bus)))
            self._tasks.append(loop.create_task(self._watch_bus(self.bus)))
        if not await self._fetch(self.start_timeout):
            cached = None
            if self.cache_path is not None:
                cached = await asyncio.to_thread(read_cache, self.cache_path)
            if cached is not None and not self.ownership.loaded:
                log.warning(
                    "serving from the cached routing state (seq %d) until control answers",
                    cached.seq,
                )
                self._load(cached, "cache")
            elif not self.ownership.loaded:
                log.warning(
                    "no routing state yet (control unreachable, no cache): reserved names and "
                    "custom domains are not enforced until control answers"
                )
        self._tasks.append(loop.create_task(self._resync_loop()))
        self._tasks.append(loop.create_task(self._expiry_loop()))

    async def close(self) -> None:
        # The loops wait with asyncio.timeout, never wait_for, which on Python 3.11 can
        # swallow this cancel and leave close() waiting for ever.
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.certs is not None:
            await self.certs.close()
        subscription = self._subscription
        self._subscription = None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.close()
        unsaved = self._save_handle is not None
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        if self._saving is not None:
            with contextlib.suppress(Exception):
                await self._saving
        if unsaved and self._cache is not None:
            data = encode(self.current_snapshot())
            await self._write(self._cache, data, self._cache.next_version())
        close = getattr(self.source, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()

    def request_resync(self) -> None:
        self._wanted.set()

    def lag(self) -> float:
        """Seconds the routing state may be behind control: 0 while the bus is followed and
        nothing is missing, else the time since the last snapshot from control loaded."""
        if self.bus_up and self.in_sync and self.loaded_from == "control":
            return 0.0
        if not self._synced_at:
            return float("inf") if self.edge.listening else 0.0
        return max(0.0, time.monotonic() - self._synced_at)

    @property
    def in_sync(self) -> bool:
        """Loaded, and no events are held across a hole."""
        return self.ownership.loaded and not self._held

    # -- snapshots ------------------------------------------------------------------------

    async def _fetch(self, within: float) -> bool:
        """Fetch and load a snapshot; whether the edge is in sync afterwards."""
        try:
            async with asyncio.timeout(within):
                snapshot = await self.source.fetch()
        except TimeoutError:
            return self._fetch_failed(f"control did not answer within {within:g}s")
        except SnapshotUnavailable as exc:
            return self._fetch_failed(str(exc), unreachable=exc.unreachable)
        except Exception as exc:  # a source's bug must not end the resync loop
            return self._fetch_failed(f"{type(exc).__name__}: {exc}")
        if self._fetch_failing:
            log.info("routing snapshot from control loaded again (seq %d)", snapshot.seq)
        self._fetch_failing = False
        self._control_unreachable = False
        now = self._clock()
        if self._cache is not None and (
            list(snapshot.keys) != self._keys
            or any(
                r.token_id not in self._revoked and (r.until <= 0 or r.until > now)
                for r in snapshot.revoked
            )
        ):
            # New revocations or keys: control's snapshot goes to disk before they act.
            self._write_now(self._cache, encode(snapshot))
        self._load(snapshot, "control")
        self._synced_at = time.monotonic()
        if self._held:
            # Control's snapshot is behind what the bus already said: try again shortly.
            self._failures += 1
            return False
        self._failures = 0
        return True

    def _fetch_failed(self, reason: str, *, unreachable: bool = False) -> bool:
        if not self._fetch_failing:
            log.warning("routing snapshot unavailable, retrying: %s", reason)
        self._fetch_failing = True
        self._control_unreachable = unreachable
        self._failures += 1
        return False

    def _load(self, snapshot: RoutingSnapshot, origin: str) -> None:
        self.ownership.load(snapshot)
        self.loaded_from = origin
        self._keys = list(snapshot.keys)
        now = self._clock()
        self._revoked = {r.token_id: r for r in snapshot.revoked if r.until <= 0 or r.until > now}
        if self.keyring is not None:
            self.keyring.set_keys(list(self._keys))
            self.keyring.set_revocations(list(self._revoked.values()))
        self._end_sessions(set(self._revoked), REVOKED_MESSAGE)
        self._end_retired(self._keys)
        self._suspend(self.ownership.suspended)
        for claim in snapshot.names:
            self.edge.evict_others(claim.host, claim.org, TAKEN_MESSAGE)
        for route in snapshot.domains:
            self.edge.evict_others(route.host, route.org, TAKEN_MESSAGE)
        if origin == "control":
            self._set_challenges(snapshot.challenges)
            if self.certs is not None:
                self.certs.load(snapshot.certs)
        held = sorted(self._held.items())
        self._held = {}
        for _, event in held:
            self._on_event(event)
        if origin == "control":
            self._save_soon()

    # -- events ---------------------------------------------------------------------------

    async def _follow_bus(self, bus: Bus) -> None:
        failing = False
        while True:
            subscription = self._subscription
            if subscription is None:
                try:
                    subscription = self._subscription = bus.subscribe([ROUTING_CHANNEL])
                except Exception as exc:
                    if not failing:
                        log.warning("cannot subscribe to routing events (%s); retrying", exc)
                    failing = True
                    await asyncio.sleep(self.outage_interval)
                    continue
            try:
                async for item in subscription:
                    failing = False
                    if isinstance(item, Gap):
                        log.info("routing events may have been missed: loading a snapshot")
                        self.request_resync()
                        continue
                    try:
                        event = routing_decoder.decode(item.payload)
                    except msgspec.DecodeError as exc:
                        log.warning("unreadable routing event (%s): loading a snapshot", exc)
                        self.request_resync()
                        continue
                    if isinstance(event, TokenRevoked | KeysSet):
                        self._save_before_acting(event)
                    self._on_event(event)
                    if self._failures:
                        self._control_alive.set()
            except Exception as exc:
                if not failing:
                    log.warning("routing subscription failed (%s); subscribing again", exc)
                failing = True
            # The subscription ended (closed under us, or failed): whatever was published
            # meanwhile is lost, so resync once subscribed again.
            self._subscription = None
            with contextlib.suppress(Exception):
                await subscription.close()
            self.request_resync()
            await asyncio.sleep(self.outage_interval)

    def _on_event(self, event: RoutingEvent) -> None:
        ownership = self.ownership
        if event.seq <= ownership.seq:
            return  # seen already (an event the snapshot includes, or a duplicate)
        if self._held or not ownership.apply(event):
            if len(self._held) >= MAX_HELD_EVENTS:
                self._held.pop(min(self._held))
            self._held[event.seq] = event
            if isinstance(event, TokenRevoked):
                self._revoke(event.revocation)
            if len(self._held) == 1:
                log.info(
                    "routing event seq %d after %d: events were missed, loading a snapshot",
                    event.seq,
                    ownership.seq,
                )
            self.request_resync()
            return
        if isinstance(event, TokenRevoked):
            self._revoke(event.revocation)
        elif isinstance(event, NameSet):
            self.edge.evict_others(event.claim.host, event.claim.org, TAKEN_MESSAGE)
        elif isinstance(event, DomainSet):
            self.edge.evict_others(event.route.host, event.route.org, TAKEN_MESSAGE)
        elif isinstance(event, OrgSuspended):
            self._suspend({event.org} if event.suspended else set())
        elif isinstance(event, KeysSet):
            self._keys = list(event.keys)
            if self.keyring is not None:
                self.keyring.set_keys(list(event.keys))
            self._end_retired(self._keys)
        elif isinstance(event, CertChanged):
            if self.certs is not None:
                self.certs.changed(event.host, event.version)
            if self.on_cert_changed is not None:
                try:
                    self.on_cert_changed(event.host)
                except Exception:
                    log.exception("reloading the certificate for %s failed", event.host)
        elif isinstance(event, ChallengeSet):
            self._set_challenges([*self._challenges.values(), event.challenge])
        elif isinstance(event, ChallengeRemoved):
            self._set_challenges([c for t, c in self._challenges.items() if t != event.token])
        self._save_soon()

    def _set_challenges(self, challenges: list[AcmeChallenge]) -> None:
        """Answer exactly ``challenges`` (those not past their ``until``)."""
        now = self._clock()
        live = {c.token: c for c in challenges if c.until > now}
        certs = self.edge.certs
        for old in self._challenges.values():
            if old.kind == "tls-alpn-01" and old.token not in live:
                certs.drop_challenge(old.host)
        http01 = {}
        for challenge in live.values():
            if challenge.kind == "http-01":
                http01[challenge.token] = challenge.key_authorization
            elif challenge.kind == "tls-alpn-01" and challenge.token not in self._challenges:
                try:
                    certs.put_challenge(challenge.host, challenge.key_authorization)
                except Exception:
                    log.exception("cannot answer the tls-alpn-01 challenge for %s", challenge.host)
        self._challenges = live
        # One dict swapped in whole: visitors read it without a lock.
        self.edge.acme_http01 = http01

    def _revoke(self, revocation: Revocation) -> None:
        self._revoked[revocation.token_id] = revocation
        if self.keyring is not None:
            self.keyring.revoke(revocation)
        self._end_sessions({revocation.token_id}, REVOKED_MESSAGE)

    def _end_sessions(self, token_ids: set[str], message: str) -> None:
        if token_ids:
            self._end_where(lambda identity: identity.token_id in token_ids, "auth", message)

    def _end_where(self, ends: Callable[[Identity], bool], code: str, message: str) -> None:
        """End every live session whose identity ``ends`` picks, with ``Refused(code)``."""
        for session in list(self.edge.sessions):
            identity = session.identity
            if identity is not None and ends(identity):
                session.end_refused(code, message)

    def _suspend(self, orgs: set[str]) -> None:
        """Hand the suspended orgs to the keyring, and end the links of ``orgs``."""
        if self.keyring is not None:
            self.keyring.set_suspended(set(self.ownership.suspended))
        if orgs:
            self._end_where(
                lambda identity: identity.account in orgs, "suspended", SUSPENDED_MESSAGE
            )

    def _end_retired(self, keys: list[VerifyKey]) -> None:
        """End sessions whose token was signed by a key no longer in ``keys``: a retired
        key refuses new links at once (``SignedTokens.set_keys``), and the ones it already
        let in go too. An empty set ends nothing: it is no key set control would send."""
        if not keys:
            return
        accepted = {key.kid for key in keys}
        self._end_where(
            lambda identity: bool(identity.key_id) and identity.key_id not in accepted,
            "auth",
            RETIRED_MESSAGE,
        )

    # -- background loops -----------------------------------------------------------------

    async def _resync_loop(self) -> None:
        while True:
            if self._failures:
                delay = min(RETRY_MAX, RETRY_START * 2 ** (self._failures - 1))
                if not self.bus_up:
                    delay = min(delay, self.outage_interval)
                if self._control_unreachable:
                    # A refused connection costs control nothing: probe often.
                    delay = min(delay, self.probe_interval)
                # A request for a resync does not cut a backoff short (control may be
                # struggling), but a routing event does: control's outbox is running again.
                self._control_alive.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._control_alive.wait()
            else:
                delay = self.resync_interval if self.bus_up else self.outage_interval
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wanted.wait()
            self._wanted.clear()
            await self._fetch(self.fetch_timeout)

    async def _watch_bus(self, bus: Bus) -> None:
        """Notice when the bus stops answering, so the snapshot is polled often meanwhile."""
        while True:
            try:
                async with asyncio.timeout(self.outage_interval):
                    up = await bus.ping()
            except Exception:
                up = False
            if up != self.bus_up:
                self.bus_up = up
                if up:
                    log.info("routing bus is back")
                else:
                    log.warning(
                        "routing bus unreachable: polling control every %gs meanwhile",
                        self.outage_interval,
                    )
                self.request_resync()
            await asyncio.sleep(self.outage_interval)

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.expiry_interval)
            self.end_expired()

    def end_expired(self) -> None:
        """End sessions whose token has expired, and forget revocations past their token's
        own expiry."""
        now = self._clock()
        self._end_where(lambda identity: 0 < identity.expires_at <= now, "auth", EXPIRED_MESSAGE)
        gone = [tid for tid, r in self._revoked.items() if 0 < r.until <= now]
        for token_id in gone:
            del self._revoked[token_id]

    # -- the cache ------------------------------------------------------------------------

    def current_snapshot(self) -> RoutingSnapshot:
        snapshot = self.ownership.snapshot()
        snapshot.keys = list(self._keys)
        snapshot.revoked = list(self._revoked.values())
        return snapshot

    def _save_before_acting(self, event: TokenRevoked | KeysSet) -> None:
        """Write the state with ``event`` in it to the cache now, on the loop thread, before
        the event ends any session: a crash right after must not lose it. A revocation is
        always written (acting on one early is safe); a key set only when it applies in
        order, as ``_on_event`` will then apply it."""
        cache = self._cache
        if cache is None or event.seq <= self.ownership.seq:
            return
        snapshot = self.current_snapshot()
        if isinstance(event, TokenRevoked):
            revoked = {r.token_id: r for r in snapshot.revoked}
            revoked[event.revocation.token_id] = event.revocation
            snapshot.revoked = list(revoked.values())
        elif not self._held and event.seq == self.ownership.seq + 1:
            snapshot.keys = list(event.keys)
        else:
            return
        self._write_now(cache, encode(snapshot))

    def _write_now(self, cache: CacheFile, data: bytes) -> None:
        """On the loop thread: one fsync, for the rare changes that must not be lost."""
        try:
            cache.write(data, cache.next_version())
        except OSError as exc:
            log.warning("cannot write the routing cache %s: %s", cache.path, exc)

    def _save_soon(self) -> None:
        """Write the cache shortly: a burst of events costs one write."""
        if self.cache_path is None or self._save_handle is not None:
            return
        self._save_handle = asyncio.get_running_loop().call_later(0.2, self._save_now)

    def _save_now(self) -> None:
        self._save_handle = None
        cache = self._cache
        if cache is None:
            return
        if self._saving is not None and not self._saving.done():
            self._save_soon()  # one write at a time; this state goes out after it
            return
        # The version is taken with the state, so a revocation written after this point
        # (a newer version) is never overwritten by this older state.
        data, version = encode(self.current_snapshot()), cache.next_version()
        self._saving = asyncio.get_running_loop().create_task(self._write(cache, data, version))

    async def _write(self, cache: CacheFile, data: bytes, version: int) -> None:
        try:
            await asyncio.to_thread(cache.write, data, version)
        except OSError as exc:
            log.warning("cannot write the routing cache %s: %s", cache.path, exc)
