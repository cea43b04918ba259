"""``burrowd worker certs``: ACME issuance and renewal, TLS probes and expiry alerts.

Theory of operation
-------------------

Work is one ``cert_work`` row per name the deployment keeps a certificate for: each verified
custom domain in terminate mode (passthrough domains never get one: their TLS is the
agent's), and ``*.<base domain>`` when the operator asks for the wildcard. Each cycle the
worker

1. adds rows for domains that now need a certificate and drops rows for those that no
   longer do;
2. claims due rows (no certificate yet, renewal time reached, backoff over) with
   ``FOR UPDATE SKIP LOCKED`` and a lease (``lease_until``), up to ``concurrency`` at once,
   so several workers share the work and two never order for one host; a lease left by a
   worker that died runs out by itself;
3. orders each claimed host in its own task: the challenges go to every edge through the
   routing outbox (http-01 or tls-alpn-01; dns-01 through a ``DnsProvider`` for the
   wildcard), the CA validates, and the certificate, its sealed key, the new renewal time
   and the domain's TLS state are written in one transaction with the ``CertChanged``
   that makes edges fetch it. A crash anywhere before that commit leaves the old
   certificate and the row as they were, to be claimed again when the lease ends;
4. probes what the edges really serve for each domain (``probe_addresses``) and records
   ``tls_status``, ``tls_not_after``, ``tls_last_checked_at`` and ``tls_last_error`` on the
   domain (the one place the API reads them from), and sends the expiry alerts that are due.

Renewal is at the CA's renewal-information window (ARI, RFC 9773) when it offers one, else
at two thirds of the certificate's lifetime. A failure backs off exponentially with jitter;
after ``max_failures`` in a row the domain is ``failed`` (the last good certificate keeps
serving), an alert goes out, and it is retried only every ``failed_retry_seconds``. A rate
limit waits at least as long as the CA says. The ACME libraries block, so every call into
them runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge

from bus.events import AcmeChallenge
from certs.acme_client import (
    AcmeAccount,
    AcmeFailure,
    PendingChallenge,
    new_account_key,
    new_cert_key,
)
from certs.alerts import Alerts
from certs.config import CertsConfig
from certs.dns01 import DnsError, DnsProvider, HookCommand, Rfc2136, record_name
from certs.probes import Served, probe
from certs.records import place_challenge, remove_challenge, store_certificate
from control.db import Database, Queries, cancel_requested
from control.keys import BOX, CONFIG, DB, METRICS, OUTBOX

log = logging.getLogger("burrow.certs")

_ACCOUNT_LOCK = 0x62757272_0006
PUBLISH_WAIT = 10.0  # seconds to wait for the outbox to put a challenge on the bus
# Edges without the bus poll control's snapshot this often (edge.control_sync).
SNAPSHOT_POLL = 6.0
EDGE_APPLY = 0.5  # from the bus to every edge's table

STATUSES = ("pending", "issuing", "active", "expiring", "failed", "mismatch")


class CertMetrics:
    def __init__(self, registry: Any) -> None:
        self.expiry = Gauge(
            "burrow_cert_expiry_seconds",
            "Seconds until the certificate served for a host expires (from the probes, "
            "else the stored certificate).",
            ["host"],
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.outcomes = Counter(
            "burrow_cert_worker_outcomes",
            "What the certs worker did: issued, renewed, failed, rate_limited, "
            "ca_unreachable, probe_ok, probe_mismatch, probe_error, alert_sent, alert_failed.",
            ["outcome"],
            registry=registry,
        )
        self.domains = Gauge(
            "burrow_cert_domains",
            "Terminate-mode domains by TLS status.",
            ["status"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        for status in STATUSES:
            self.domains.labels(status).set(0)

    def outcome(self, name: str) -> None:
        self.outcomes.labels(name).inc()


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class CertsWorker:
    def __init__(
        self,
        app: web.Application,
        *,
        clock: Callable[[], float] = time.time,
        name: str = "",
    ) -> None:
        self.db: Database = app[DB]
        self.outbox = app[OUTBOX]
        self.box = app[BOX]
        control = app[CONFIG]
        self.base_domain = control.base_domain
        self.config: CertsConfig = control.certs
        self.metrics = CertMetrics(app[METRICS].registry)
        self.clock = clock
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.alerts = Alerts(self.config.webhook_url, self.config.webhook_secret, clock)
        self.alerts.on_outcome = self.metrics.outcome
        self._account: AcmeAccount | None = None
        self._orders: set[asyncio.Task[None]] = set()
        self._last_probe = float("-inf")
        self.wake = asyncio.Event()

    @property
    def wildcard_host(self) -> str:
        return f"*.{self.base_domain}" if self.config.wildcard else ""

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        acme = self.config.acme
        if acme is None:
            log.info(
                "certs: no ACME directory configured: edges keep serving certificates from "
                "their local CA or self-signed ones; probes and alerts still run"
            )
        else:
            log.info("certs: ordering from %s as %s", acme.directory_url, self.name)
        try:
            while True:
                try:
                    await self.cycle()
                except Exception:
                    if cancel_requested():
                        raise
                    log.exception("certs cycle failed; trying again")
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.poll_seconds):
                        await self.wake.wait()
        finally:
            for task in self._orders:
                task.cancel()
            if self._orders:
                await asyncio.wait(self._orders, timeout=5.0)
            await self.alerts.close()

    async def cycle(self) -> None:
        """One pass: queue, claim and start orders, then probe and alert when due."""
        await self.enqueue()
        if self.config.acme is not None:
            for host, failures in await self.claim():
                task = asyncio.get_running_loop().create_task(self._order_task(host, failures))
                self._orders.add(task)
                task.add_done_callback(self._orders.discard)
        if self.clock() - self._last_probe >= self.config.probe_seconds:
            self._last_probe = self.clock()
            await self.probe_all()
            await self.send_expiry_alerts()

    async def wait_orders(self) -> None:
        """Until every order started so far has ended (for tests and shutdown)."""
        while self._orders:
            await asyncio.wait(set(self._orders))

    async def enqueue(self) -> None:
        async with self.db.transaction() as q:
            await q.execute(
                "INSERT INTO cert_work (host) SELECT host FROM domains"
                " WHERE verified_at IS NOT NULL AND tls_mode = 'terminate'"
                " AND host NOT LIKE '*.%%' ON CONFLICT DO NOTHING"
            )
            if self.wildcard_host:
                await q.execute(
                    "INSERT INTO cert_work (host) VALUES (%s) ON CONFLICT DO NOTHING",
                    (self.wildcard_host,),
                )
            # A domain gone, unverified or switched to passthrough: nothing more to order.
            await q.execute(
                "DELETE FROM cert_work w WHERE w.host <> %s"
                " AND (w.lease_until IS NULL OR w.lease_until < %s) AND NOT EXISTS ("
                "  SELECT 1 FROM domains d WHERE d.host = w.host AND d.verified_at IS NOT NULL"
                "  AND d.tls_mode = 'terminate')",
                (self.wildcard_host, _utc(self.clock())),
            )

    async def claim(self) -> list[tuple[str, int]]:
        """Take up to the free order slots' worth of due hosts; (host, failures so far)."""
        room = self.config.concurrency - len(self._orders)
        if room <= 0:
            return []
        now = self.clock()
        rows = await self.db.all(
            "UPDATE cert_work SET lease_owner = %(me)s, lease_until = %(until)s"
            " WHERE host IN (SELECT host FROM cert_work"
            "  WHERE (lease_until IS NULL OR lease_until < %(now)s)"
            "  AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)"
            "  AND (renew_at IS NULL OR renew_at <= %(now)s)"
            "  ORDER BY next_attempt_at NULLS FIRST, host LIMIT %(room)s"
            "  FOR UPDATE SKIP LOCKED)"
            " RETURNING host, failures",
            {
                "me": self.name,
                "now": _utc(now),
                "until": _utc(now + self.config.lease_seconds),
                "room": room,
            },
        )
        return [(str(r["host"]), int(r["failures"])) for r in rows]

    # -- one order ------------------------------------------------------------------------

    async def _order_task(self, host: str, failures: int) -> None:
        try:
            await self.order(host, failures)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("certs: the order for %s failed unexpectedly", host)

    async def order(self, host: str, failures: int) -> None:
        """Order, validate and store a certificate for ``host`` (this worker holds its lease)."""
        order_id = await self.db.value(
            "INSERT INTO cert_orders (host, worker) VALUES (%s, %s) RETURNING id",
            (host, self.name),
        )
        had_cert = bool(await self.db.value("SELECT 1 FROM certificates WHERE host = %s", (host,)))
        if not had_cert:
            await self.db.execute(
                "UPDATE domains SET tls_status = 'issuing'"
                " WHERE host = %s AND tls_status <> 'failed'",
                (host,),
            )
        try:
            if host != self.wildcard_host and not await self._still_wanted(host):
                raise AcmeFailure(f"{host} is no longer a verified domain in terminate mode")
            chain_pem, key_pem, account = await self._obtain(host)
            renew_at = await self._renewal_time(account, chain_pem)
        except (AcmeFailure, DnsError) as exc:
            await self._failed(host, failures + 1, exc, order_id)
            return
        except Exception as exc:  # a library's surprise counts as a failure, with backoff
            if cancel_requested():
                raise
            log.exception("certs: unexpected error ordering for %s", host)
            await self._failed(
                host, failures + 1, AcmeFailure(f"{type(exc).__name__}: {exc}"), order_id
            )
            return
        async with self.db.transaction() as q:
            await store_certificate(q, self.box, self.outbox, host, chain_pem, key_pem)
            await q.execute(
                "UPDATE cert_work SET failures = 0, next_attempt_at = NULL, renew_at = %s,"
                " lease_owner = NULL, lease_until = NULL, alerted_days = NULL,"
                " failed_alerted = false, last_error = NULL WHERE host = %s",
                (renew_at, host),
            )
            await self._finish_order(q, order_id, "renewed" if had_cert else "issued")
            await self._record_state(q, host, served=[], error="")
        self.outbox.changed()
        self.metrics.outcome("renewed" if had_cert else "issued")
        log.info(
            "certs: %s %s; renewal from %s",
            "renewed" if had_cert else "issued",
            host,
            renew_at.isoformat(timespec="seconds"),
        )

    async def _still_wanted(self, host: str) -> bool:
        return bool(
            await self.db.value(
                "SELECT 1 FROM domains WHERE host = %s AND verified_at IS NOT NULL"
                " AND tls_mode = 'terminate'",
                (host,),
            )
        )

    async def _obtain(self, host: str) -> tuple[bytes, bytes, AcmeAccount]:
        try:
            return await self._obtain_once(host, await self.account())
        except AcmeFailure as exc:
            if exc.code != "accountDoesNotExist":
                raise
            # The CA forgot the account (deactivated, or a test CA restarted): register the
            # same key again and order once more.
            log.warning("certs: the CA no longer knows this account; registering it again")
            return await self._obtain_once(host, await self.account(again=True))

    async def _obtain_once(
        self, host: str, account: AcmeAccount
    ) -> tuple[bytes, bytes, AcmeAccount]:
        key_pem = new_cert_key()
        kinds: tuple[str, ...]
        if host == self.wildcard_host:
            names, kinds = [host, self.base_domain], ("dns-01",)
        else:
            names, kinds = [host], self.config.challenges
        order, pending = await asyncio.to_thread(account.start_order, names, key_pem, kinds)
        placed: list[PendingChallenge] = []
        try:
            last_seq = 0
            for challenge in pending:
                placed.append(challenge)
                last_seq = max(last_seq, await self._place(challenge))
            if last_seq:
                await self._wait_published(last_seq)
            deadline = dt.datetime.now() + dt.timedelta(seconds=self.config.order_seconds)
            chain_pem = await asyncio.to_thread(account.finish_order, order, pending, deadline)
        finally:
            # Shielded: a cancelled order still takes its answers off the edges.
            await asyncio.shield(self._take_back(placed))
        return chain_pem, key_pem, account

    async def _place(self, challenge: PendingChallenge) -> int:
        if challenge.kind == "dns-01":
            provider = self._dns_provider()
            await asyncio.to_thread(
                provider.present, record_name(challenge.host), challenge.validation
            )
            return 0
        until = self.clock() + self.config.order_seconds + 60
        return await place_challenge(
            self.db,
            self.outbox,
            AcmeChallenge(
                challenge.token, challenge.host, challenge.kind, challenge.validation, until
            ),
        )

    async def _take_back(self, placed: list[PendingChallenge]) -> None:
        for challenge in placed:
            try:
                if challenge.kind == "dns-01":
                    provider = self._dns_provider()
                    await asyncio.to_thread(
                        provider.cleanup, record_name(challenge.host), challenge.validation
                    )
                else:
                    await remove_challenge(self.db, self.outbox, challenge.token)
            except Exception as exc:  # it expires by itself; the order's outcome stands
                log.warning(
                    "certs: cannot remove the %s challenge for %s: %s",
                    challenge.kind,
                    challenge.host,
                    exc,
                )

    def _dns_provider(self) -> DnsProvider:
        settings = self.config.dns01
        if settings.hook:
            return HookCommand(settings.hook)
        if settings.rfc2136_server:
            server, _, port = settings.rfc2136_server.partition(":")
            return Rfc2136(
                server,
                settings.zone or self.base_domain,
                port=int(port or 53),
                tsig_name=settings.tsig_name,
                tsig_secret=settings.tsig_secret,
                tsig_algorithm=settings.tsig_algorithm,
            )
        raise DnsError(
            "the wildcard certificate needs dns-01: set a hook command (--dns01-hook) or an "
            "RFC 2136 server (--dns01-rfc2136)"
        )

    async def _wait_published(self, seq: int) -> None:
        """Until the challenge is on the bus (and so at every edge), or long enough for edges
        polling control's snapshot to have it."""
        deadline = time.monotonic() + PUBLISH_WAIT
        while time.monotonic() < deadline:
            published = await self.db.value(
                "SELECT published_at IS NOT NULL FROM routing_events WHERE seq = %s", (seq,)
            )
            if published:
                await asyncio.sleep(EDGE_APPLY)
                return
            await asyncio.sleep(0.1)
        log.warning("certs: the bus did not take the challenge in time; waiting for edge polls")
        await asyncio.sleep(SNAPSHOT_POLL)

    async def _renewal_time(self, account: AcmeAccount, chain_pem: bytes) -> dt.datetime:
        suggested = await asyncio.to_thread(account.renewal_time, chain_pem)
        if suggested is not None:
            return suggested
        return two_thirds(chain_pem)

    async def account(self, *, again: bool = False) -> AcmeAccount:
        """This deployment's account at the configured CA, registered on first use (under an
        advisory lock, so workers starting together make one). ``again``: register the
        stored key anew, as the CA no longer knows it."""
        if self._account is not None and not again:
            return self._account
        settings = self.config.acme
        assert settings is not None
        aad = f"acme-account:{settings.directory_url}".encode()
        async with self.db.transaction() as q:
            await q.execute("SELECT pg_advisory_xact_lock(%s)", (_ACCOUNT_LOCK,))
            row = await q.one(
                "SELECT account_url, key_sealed FROM acme_accounts WHERE directory_url = %s",
                (settings.directory_url,),
            )
            if row is not None and not again:
                key_pem = self.box.decrypt(bytes(row["key_sealed"]), aad)
                self._account = AcmeAccount(settings, key_pem, str(row["account_url"]))
                return self._account
            if row is not None:
                key_pem = self.box.decrypt(bytes(row["key_sealed"]), aad)
            else:
                key_pem = new_account_key()
            account = AcmeAccount(settings, key_pem)
            url = await asyncio.to_thread(account.register)
            await q.execute(
                "INSERT INTO acme_accounts (directory_url, account_url, key_sealed, contact)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (directory_url) DO UPDATE SET"
                " account_url = excluded.account_url",
                (settings.directory_url, url, self.box.encrypt(key_pem, aad), settings.email),
            )
        log.info("certs: ACME account %s registered", url)
        self._account = account
        return account

    async def _failed(self, host: str, failures: int, exc: Exception, order_id: int) -> None:
        config = self.config
        message = str(exc)
        now = self.clock()
        rate_limited = isinstance(exc, AcmeFailure) and exc.rate_limited
        if failures >= config.max_failures:
            delay = config.failed_retry_seconds
        else:
            delay = min(config.backoff_start * 2 ** (failures - 1), config.backoff_max)
        delay *= random.uniform(0.8, 1.2)  # jitter: many domains failing together spread out
        if isinstance(exc, AcmeFailure) and exc.rate_limited:
            # Never earlier than the CA allows: what it said, else rate_limit_seconds.
            allowed = exc.retry_at.timestamp() - now if exc.retry_at else config.rate_limit_seconds
            delay = max(delay, allowed)
        outcome = (
            "rate_limited"
            if rate_limited
            else "ca_unreachable"
            if isinstance(exc, AcmeFailure) and exc.unreachable
            else "failed"
        )
        async with self.db.transaction() as q:
            await q.execute(
                "UPDATE cert_work SET failures = %s, next_attempt_at = %s, last_error = %s,"
                " lease_owner = NULL, lease_until = NULL WHERE host = %s",
                (failures, _utc(now + delay), message, host),
            )
            await self._finish_order(q, order_id, f"{outcome}: {message}"[:2000])
            await self._record_state(q, host, served=[], error=message)
        self.metrics.outcome(outcome)
        log.warning(
            "certs: order for %s failed (%d in a row; next try in %.0fs): %s",
            host,
            failures,
            delay,
            message,
        )
        if failures >= config.max_failures:
            await self._alert_failed(host, failures, message)

    async def _alert_failed(self, host: str, failures: int, message: str) -> None:
        sent_before = await self.db.value(
            "SELECT failed_alerted FROM cert_work WHERE host = %s", (host,)
        )
        if sent_before:
            return
        text = (
            f"{failures} certificate orders in a row failed; the last good certificate (if "
            f"any) keeps serving: {message}"
        )
        if await self.alerts.send("cert_failed", host, text, failures=failures):
            await self.db.execute(
                "UPDATE cert_work SET failed_alerted = true WHERE host = %s", (host,)
            )

    @staticmethod
    async def _finish_order(q: Queries, order_id: int, outcome: str) -> None:
        await q.execute(
            "UPDATE cert_orders SET finished_at = now(), outcome = %s WHERE id = %s",
            (outcome, order_id),
        )

    # -- TLS state ------------------------------------------------------------------------

    async def probe_all(self) -> None:
        """See what every edge serves for each terminate-mode domain; record its state."""
        hosts = [
            str(r["host"])
            for r in await self.db.all(
                "SELECT host FROM domains WHERE verified_at IS NOT NULL"
                " AND tls_mode = 'terminate' AND host NOT LIKE '*.%%' ORDER BY host"
            )
        ]
        limit = asyncio.Semaphore(max(1, self.config.concurrency))

        async def one(host: str) -> None:
            async with limit:
                served = [
                    await probe(address, host, self.config.probe_timeout)
                    for address in self.config.probe_addresses
                ]
                async with self.db.transaction() as q:
                    await self._record_state(q, host, served=served, error=None, probed=True)

        await asyncio.gather(*(one(host) for host in hosts))
        counts = dict.fromkeys(STATUSES, 0)
        for row in await self.db.all(
            "SELECT tls_status, count(*) AS n FROM domains WHERE verified_at IS NOT NULL"
            " AND tls_mode = 'terminate' GROUP BY tls_status"
        ):
            counts[str(row["tls_status"])] = int(row["n"])
        for status, n in counts.items():
            self.metrics.domains.labels(status).set(n)

    async def _record_state(
        self,
        q: Queries,
        host: str,
        *,
        served: list[Served],
        error: str | None,
        probed: bool = False,
    ) -> None:
        """Work out ``host``'s TLS status from the stored certificate, the work row and what
        the edges served, and write it on the domain (the one place it is kept)."""
        cert = await q.one(
            "SELECT fingerprint, not_after FROM certificates WHERE host = %s", (host,)
        )
        work = await q.one(
            "SELECT failures, last_error, lease_until FROM cert_work WHERE host = %s", (host,)
        )
        now = _utc(self.clock())
        status, not_after, problem = tls_state(
            cert, work, served, now, self.config.max_failures, self.config.alert_days[0]
        )
        if error is None:
            error = problem or (str(work["last_error"]) if work and work["last_error"] else "")
        if not_after is not None:
            self.metrics.expiry.labels(host).set((not_after - now).total_seconds())
        if probed:
            self.metrics.outcome(
                "probe_mismatch"
                if status == "mismatch"
                else "probe_error"
                if any(s.error for s in served)
                else "probe_ok"
            )
        await q.execute(
            "UPDATE domains SET tls_status = %s, tls_not_after = %s, tls_last_error = %s"
            + (", tls_last_checked_at = %s" if probed else "")
            + " WHERE host = %s",
            (status, not_after, error or None, *((now,) if probed else ()), host),
        )

    async def send_expiry_alerts(self) -> None:
        """An alert per certificate as it passes each of ``alert_days`` before expiry (once
        per threshold and certificate: a renewal starts the count again); and the alerts for
        failed domains a webhook did not take when they failed."""
        for row in await self.db.all(
            "SELECT host, failures, last_error FROM cert_work"
            " WHERE failures >= %s AND NOT failed_alerted",
            (self.config.max_failures,),
        ):
            await self._alert_failed(str(row["host"]), int(row["failures"]), str(row["last_error"]))
        thresholds = sorted(self.config.alert_days)
        now = _utc(self.clock())
        rows = await self.db.all(
            "SELECT c.host, c.not_after, w.alerted_days FROM certificates c"
            " JOIN cert_work w ON w.host = c.host"
        )
        for row in rows:
            if row["host"] == self.wildcard_host:  # no domain row to probe: the stored one
                self.metrics.expiry.labels(row["host"]).set(
                    (row["not_after"] - now).total_seconds()
                )
            left = (row["not_after"] - now).total_seconds() / 86400
            due = next((t for t in thresholds if left <= t), None)
            if due is None or (row["alerted_days"] is not None and row["alerted_days"] <= due):
                continue
            host = str(row["host"])
            expires = row["not_after"].isoformat(timespec="seconds")
            text = (
                f"the certificate expires in {max(left, 0):.1f} days ({expires}) and has not "
                "been renewed"
            )
            if await self.alerts.send("cert_expiring", host, text, days=due, not_after=expires):
                await self.db.execute(
                    "UPDATE cert_work SET alerted_days = %s WHERE host = %s", (due, host)
                )


def tls_state(
    cert: dict[str, Any] | None,
    work: dict[str, Any] | None,
    served: list[Served],
    now: dt.datetime,
    max_failures: int,
    expiring_days: int,
) -> tuple[str, dt.datetime | None, str]:
    """(tls_status, tls_not_after, a problem worth showing or "")."""
    failures = int(work["failures"]) if work else 0
    leased = bool(work and work["lease_until"] and work["lease_until"] > now)
    seen = [s for s in served if not s.error]
    not_after = min((s.not_after for s in seen if s.not_after), default=None)
    if not_after is None and cert is not None:
        not_after = cert["not_after"]
    problem = "; ".join(s.error for s in served if s.error)
    if failures >= max_failures:
        return "failed", not_after, problem
    if cert is None:
        return ("issuing" if leased else "pending"), not_after, problem
    wrong = [s for s in seen if s.fingerprint != cert["fingerprint"]]
    if wrong:
        first = wrong[0]
        return (
            "mismatch",
            not_after,
            f"the edge at {first.address} serves a certificate for "
            f"{', '.join(first.names) or 'no name'} (fingerprint {first.fingerprint[:23]}...), "
            "not the one issued: check that it reaches control (GET /v1/edge/certs)",
        )
    if not_after is not None and not_after - now <= dt.timedelta(days=expiring_days):
        return "expiring", not_after, problem
    return "active", not_after, problem


def two_thirds(chain_pem: bytes) -> dt.datetime:
    """Two thirds into the leaf's lifetime: the renewal time without ARI (what Let's
    Encrypt suggests for its 90-day certificates: 30 days before expiry)."""
    from cryptography import x509

    leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    return start + (end - start) * 2 / 3


def create(app: web.Application) -> CertsWorker:
    """``control.workers.WORKERS["certs"]``."""
    return CertsWorker(app)
