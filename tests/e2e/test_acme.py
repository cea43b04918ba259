"""Certificates from a real ACME CA (pebble), end to end: control on PostgreSQL, the bus on
Redis, an edge that fetches routing state and certificates over HTTP, and the certs worker.

Pebble validates through the edge itself: http-01 on the edge's HTTP listener, tls-alpn-01
on its HTTPS listener; ``pebble-challtestsrv`` is the DNS that points every name at
127.0.0.1 and holds the TXT records that verify the custom domains.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509

from agent.tunnels import TunnelSpec
from bus.redis_bus import RedisBus
from certs.config import AcmeSettings, CertsConfig, Dns01Settings
from certs.records import fingerprint
from certs.worker import CertsWorker
from control.app import create_app
from control.keys import DB
from edge.link.token_auth import SignedTokens
from edge.server import Edge
from edge.sync.control_sync import HttpSnapshotSource, RoutingSync
from tests.certs.pebble import Pebble
from tests.e2e.conftest import AgentRunner, edge_config, wait_for
from tests.e2e.origin import LocalService
from tests.e2e.test_control_plane import EDGE_KEY, ControlProcess, Stack
from tests.e2e.tlshelp import HttpsVisitor, handshake

pytestmark = pytest.mark.timeout(120)

DAY = 86400.0


class Clock:
    """The worker's clock: real time plus however far a test moved it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


@dataclass
class AcmeStack(Stack):
    pebble: Pebble = field(default=None)  # type: ignore[assignment]
    state_dir: Path = field(default=Path())
    bus: RedisBus = field(default=None)  # type: ignore[assignment]
    clock: Clock = field(default_factory=Clock)
    runners: list[web.AppRunner] = field(default_factory=list)
    root_pem: str = ""
    worker_urls: dict[str, str] = field(default_factory=dict)

    def certs_config(self, **changes: Any) -> CertsConfig:
        config = CertsConfig(
            acme=AcmeSettings(
                self.pebble.directory_url,
                email="ops@example.test",
                ca_bundle=str(self.pebble.ca_bundle),
            ),
            probe_addresses=[f"127.0.0.1:{self.edge.config.https_port}"],
            probe_timeout=3.0,
            order_seconds=30.0,
            backoff_start=30.0,
        )
        for key, value in changes.items():
            setattr(config, key, value)
        return config

    async def worker(self, name: str = "w1", **changes: Any) -> CertsWorker:
        """A certs worker in a process-like app of its own (as ``burrowd worker certs``)."""
        config = control_config_like(self.control, certs=self.certs_config(**changes))
        runner = web.AppRunner(create_app(config, api=False))
        await runner.setup()
        self.runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.worker_urls[name] = f"http://127.0.0.1:{runner.addresses[-1][1]}"
        return CertsWorker(runner.app, clock=self.clock, name=name)

    async def worker_metrics(self, name: str = "w1") -> str:
        async with self.http.get(self.worker_urls[name] + "/metrics") as resp:
            return await resp.text()

    async def verified_domain(self, key: str, host: str, **body: Any) -> dict[str, Any]:
        domain = await self.call(
            "POST", "/v1/domains", key, status=201, json={"domain": host, **body}
        )
        txt = next(r for r in domain["records"] if r["type"] == "TXT")
        await self.pebble.set_txt(txt["name"], txt["value"])
        checked = await self.call("POST", f"/v1/domains/{domain['id']}/verify", key)
        assert checked["verified"], checked
        await wait_for(
            lambda: (route := self.edge.ownership.domain_for(host)) is not None and route.verified,
            what="the edge to know the verified domain",
        )
        return checked

    async def issued(
        self, host: str, **worker_changes: Any
    ) -> tuple[dict[str, Any], dict[str, Any], CertsWorker, str]:
        """A verified domain of a new org with a certificate over http-01 that the edge
        serves: (org, domain, worker, fingerprint)."""
        org = await self.signup(f"owner@{host}")
        domain = await self.verified_domain(org["key"], host)
        worker = await self.worker(**{"challenges": ("http-01",), **worker_changes})
        await issue(worker)
        stored = await self.stored_fingerprint(host)
        assert stored, "no certificate stored"
        await wait_for(
            lambda: self.edge.certs.covers(host), what=f"the cert for {host} on the edge"
        )
        return org, domain, worker, stored

    async def lifetime(self, host: str) -> float:
        served = await self.served(host)
        return (served.not_valid_after_utc - served.not_valid_before_utc).total_seconds()

    async def domain(self, key: str, domain_id: str) -> dict[str, Any]:
        return dict(await self.call("GET", f"/v1/domains/{domain_id}", key))

    async def db_all(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        assert self.control.runner is not None
        return await self.control.runner.app[DB].all(sql, params)

    async def stored_fingerprint(self, host: str) -> str:
        rows = await self.db_all("SELECT fingerprint FROM certificates WHERE host = %s", (host,))
        return str(rows[0]["fingerprint"]) if rows else ""

    async def trusted(self) -> ssl.SSLContext:
        """A client trusting the root of the pebble run that issued the first certificate."""
        if not self.root_pem:
            self.root_pem = (await self.pebble.root_pem()).decode()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=self.root_pem)
        context.set_alpn_protocols(["http/1.1"])
        return context

    async def served(self, host: str) -> x509.Certificate:
        """What the edge presents for ``host``, checked against pebble's root."""
        return (await handshake(self.edge.config.https_port or 0, host, await self.trusted())).cert


def control_config_like(control: ControlProcess, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(control.config, **changes)


async def _acme_stack(
    tmp_path: Path, database_url: str, redis_url: str, prefix: str, validity: int = 0
) -> AsyncIterator[AcmeStack]:
    control = ControlProcess(database_url, redis_url, prefix)
    edge = Edge(edge_config(base_domain="tunnels.test", https_port=0), SignedTokens([]))
    await edge.start()  # first: pebble is told the edge's ports
    assert edge.config.https_port
    pebble = await Pebble(
        tmp_path, edge.config.http_port, edge.config.https_port, validity_seconds=validity
    ).start()
    control.config.dns_nameservers = ["127.0.0.1"]
    control.config.dns_port = pebble.dns_port
    await control.start()
    bus = RedisBus(redis_url, prefix)
    keyring = edge.authenticator
    assert isinstance(keyring, SignedTokens)
    state = tmp_path / "edge-state"
    sync = RoutingSync(
        edge,
        HttpSnapshotSource(control.url, EDGE_KEY),
        bus,
        keyring,
        cache_path=state / "routing.msgpack",
        outage_interval=0.5,
    )
    await sync.start()
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    stack = AcmeStack(control, edge, sync, http, pebble=pebble, state_dir=state, bus=bus)
    try:
        yield stack
    finally:
        await http.close()
        for runner in stack.runners:
            await runner.cleanup()
        await stack.sync.close()
        await stack.edge.shutdown(drain=0.2)
        await bus.close()
        await control.stop()
        await pebble.stop()


@pytest.fixture
async def short_lived(
    tmp_path: Path, new_install_database_url: str, redis_url: str, redis_cleanup: str
) -> AsyncIterator[AcmeStack]:
    """Pebble issuing certificates valid for ten days: inside the first alert window."""
    stacks = _acme_stack(
        tmp_path, new_install_database_url, redis_url, redis_cleanup, validity=int(10 * DAY)
    )
    async for stack in stacks:
        yield stack


@pytest.fixture
async def acme(
    tmp_path: Path, new_install_database_url: str, redis_url: str, redis_cleanup: str
) -> AsyncIterator[AcmeStack]:
    # A database of its own: the tests count orders and accounts.
    async for stack in _acme_stack(tmp_path, new_install_database_url, redis_url, redis_cleanup):
        yield stack


async def issue(worker: CertsWorker) -> None:
    await worker.cycle()
    await worker.wait_orders()


async def test_http01_through_the_edge_issues_a_certificate_every_visitor_gets(
    acme: AcmeStack, service: LocalService, agents: AgentRunner
) -> None:
    org = await acme.signup("owner@shop.example")
    domain = await acme.verified_domain(org["key"], "shop.example.test")
    assert domain["tls_status"] == "pending"
    worker = await acme.worker(challenges=("http-01",))

    await issue(worker)

    stored = await acme.stored_fingerprint("shop.example.test")
    assert stored, "no certificate stored"
    # Without a restart, the edge serves it (verified against pebble's root) from the next
    # handshake, its key fetched from control, never from the bus.
    await wait_for(lambda: acme.edge.certs.covers("shop.example.test"), what="cert on the edge")
    cert = await acme.served("shop.example.test")
    assert fingerprint(cert) == stored
    orders = await acme.db_all("SELECT outcome FROM cert_orders WHERE host = 'shop.example.test'")
    assert [o["outcome"] for o in orders] == ["issued"]
    kinds = await acme.db_all("SELECT count(*) AS n FROM acme_challenges")
    assert kinds[0]["n"] == 0, "the challenge stays published after the order"
    assert not acme.edge.acme_http01

    # A visitor of the tunnel on the domain gets it over verified HTTPS.
    token = await acme.call("POST", "/v1/tokens", org["key"], status=201, json={})
    spec = TunnelSpec("http", "127.0.0.1", service.port, name="shop.example.test")
    await agents.start(acme.edge, spec, token=token["token"])
    https_port = acme.edge.config.https_port or 0
    async with HttpsVisitor(https_port, "shop.example.test", await acme.trusted()) as visitor:
        response = await visitor.request("GET", "/hello")
    assert response.status == 200

    # The probe records the real state where the org's API and the admin API read it.
    await worker.probe_all()
    shown = await acme.domain(org["key"], domain["id"])
    assert shown["tls_status"] == "active", shown
    assert shown["tls_last_checked_at"] and shown["tls_last_error"] is None
    not_after = dt.datetime.fromisoformat(shown["tls_not_after"])
    assert abs(not_after - cert.not_valid_after_utc) < dt.timedelta(seconds=1)
    await acme.sign_in_operator("operator@burrow.example")
    listed = await acme.operator_call("GET", "/v1/admin/domains")
    row = next(d for d in listed["domains"] if d["host"] == "shop.example.test")
    assert row["tls_status"] == "active"
    acme.http.cookie_jar.clear()

    # The edge kept it in its state directory, key readable by the edge's user only.
    saved = list((acme.state_dir / "certs").glob("*.pem"))
    assert [p.name for p in saved] == ["shop.example.test.pem"]
    assert saved[0].stat().st_mode & 0o077 == 0


async def test_tls_alpn01_on_the_https_listener(acme: AcmeStack) -> None:
    org = await acme.signup("owner@alpn.example")
    await acme.verified_domain(org["key"], "alpn.example.test")
    worker = await acme.worker(challenges=("tls-alpn-01",))
    placed: list[str] = []
    put_challenge = acme.edge.certs.put_challenge

    def recording(host: str, key_authorization: str) -> None:
        placed.append(host)
        put_challenge(host, key_authorization)

    acme.edge.certs.put_challenge = recording  # type: ignore[method-assign,assignment]

    await issue(worker)

    stored = await acme.stored_fingerprint("alpn.example.test")
    assert stored, acme.pebble.log_text[-3000:]
    await wait_for(lambda: acme.edge.certs.covers("alpn.example.test"), what="cert on the edge")
    assert fingerprint(await acme.served("alpn.example.test")) == stored
    # The edge answered with a challenge certificate of its own making, and dropped it after.
    assert placed == ["alpn.example.test"]
    assert acme.edge.certs.challenge_context_for("alpn.example.test") is None


async def test_renewal_at_two_thirds_replaces_the_certificate_without_a_restart(
    acme: AcmeStack,
) -> None:
    _, _, worker, first = await acme.issued("renew.example.test")
    lifetime = await acme.lifetime("renew.example.test")

    # Before two thirds of the lifetime nothing is ordered...
    acme.clock.offset = lifetime * 0.6
    await issue(worker)
    assert await acme.stored_fingerprint("renew.example.test") == first
    # ...after it, a new certificate replaces the old one on the running edge.
    acme.clock.offset = lifetime * 0.7
    await issue(worker)
    second = await acme.stored_fingerprint("renew.example.test")
    assert second and second != first
    await wait_for(
        lambda: acme.edge.certs.info("renew.example.test").fingerprint == second,
        what="the renewed cert on the edge",
    )
    assert fingerprint(await acme.served("renew.example.test")) == second
    outcomes = await acme.db_all(
        "SELECT outcome FROM cert_orders WHERE host = 'renew.example.test' ORDER BY id"
    )
    assert [o["outcome"] for o in outcomes] == ["issued", "renewed"]


async def test_a_ca_outage_backs_off_loses_nothing_and_the_old_certificate_keeps_serving(
    acme: AcmeStack,
) -> None:
    org, domain, worker, first = await acme.issued("outage.example.test")
    lifetime = await acme.lifetime("outage.example.test")

    await acme.pebble.stop_ca()
    acme.clock.offset = lifetime * 0.7  # renewal is due, and the CA is gone
    await issue(worker)
    work = (await acme.db_all("SELECT * FROM cert_work WHERE host = 'outage.example.test'"))[0]
    assert work["failures"] == 1
    assert "the CA did not answer" in work["last_error"]
    wait = (
        work["next_attempt_at"] - dt.datetime.fromtimestamp(acme.clock(), dt.UTC)
    ).total_seconds()
    assert 30 * 0.8 - 1 <= wait <= 30 * 1.2 + 1  # the first backoff, with jitter
    # Within the backoff the CA is not asked again.
    await issue(worker)
    orders = await acme.db_all("SELECT outcome FROM cert_orders WHERE host = 'outage.example.test'")
    assert len(orders) == 2
    # The old certificate still serves, and the domain says what went wrong.
    assert await acme.stored_fingerprint("outage.example.test") == first
    assert fingerprint(await acme.served("outage.example.test")) == first
    await worker.probe_all()
    shown = await acme.domain(org["key"], domain["id"])
    assert shown["tls_status"] == "active" and "the CA did not answer" in shown["tls_last_error"]

    # The CA is back; after the backoff the renewal goes through.
    await acme.pebble.start()
    acme.clock.offset += 40
    await issue(worker)
    second = await acme.stored_fingerprint("outage.example.test")
    assert second and second != first
    work = (await acme.db_all("SELECT * FROM cert_work WHERE host = 'outage.example.test'"))[0]
    assert work["failures"] == 0 and work["last_error"] is None


async def test_an_invalid_domain_is_recorded_as_failed_and_alerts_the_operator(
    acme: AcmeStack, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/alerts", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    acme.runners.append(runner)
    webhook = f"http://127.0.0.1:{runner.addresses[0][1]}/alerts"

    org = await acme.signup("owner@broken.example")
    domain = await acme.verified_domain(org["key"], "broken.example.test")
    # Its DNS points somewhere no edge listens: validation fails, as for a domain whose
    # owner sent it elsewhere.
    await acme.pebble.add_a("broken.example.test", "127.0.0.2")
    worker = await acme.worker(
        challenges=("http-01",), max_failures=1, webhook_url=webhook, webhook_secret="s3cret-hook"
    )
    with caplog.at_level(logging.WARNING, logger="burrow.certs"):
        await issue(worker)
    shown = await acme.domain(org["key"], domain["id"])
    assert shown["tls_status"] == "failed", shown
    assert "validation failed" in shown["tls_last_error"]
    assert "certificate alert cert_failed for broken.example.test" in caplog.text
    assert len(received) == 1
    headers, body = received[0]
    from certs.alerts import signature_valid

    assert signature_valid(
        "s3cret-hook",
        headers["X-Burrow-Timestamp"],
        body,
        headers["X-Burrow-Signature"],
        now=acme.clock(),
    )
    assert b'"kind": "cert_failed"' in body
    # Retried slowly, not hammered; a second failure sends no second alert.
    work = (await acme.db_all("SELECT * FROM cert_work WHERE host = 'broken.example.test'"))[0]
    assert (work["next_attempt_at"].timestamp() - acme.clock()) > 0.7 * DAY
    await issue(worker)
    orders = await acme.db_all("SELECT * FROM cert_orders")
    assert len(orders) == 1, "a failed domain was ordered again within its slow retry"

    # The owner fixes DNS; the operator asks for a retry; the next pass issues.
    await acme.pebble.clear_a("broken.example.test")
    await acme.sign_in_operator("operator@burrow.example")
    retried = await acme.operator_call("POST", f"/v1/admin/domains/{domain['id']}/tls/retry")
    assert retried == {"host": "broken.example.test", "queued": True}
    acme.http.cookie_jar.clear()
    await issue(worker)
    shown = await acme.domain(org["key"], domain["id"])
    assert shown["tls_status"] == "active", shown
    assert len(received) == 1


async def test_two_workers_racing_for_one_domain_place_one_order(acme: AcmeStack) -> None:
    org = await acme.signup("owner@race.example")
    await acme.verified_domain(org["key"], "race.example.test")
    one = await acme.worker("w1", challenges=("http-01",))
    two = await acme.worker("w2", challenges=("http-01",))

    await asyncio.gather(one.cycle(), two.cycle())
    await asyncio.gather(one.wait_orders(), two.wait_orders())

    orders = await acme.db_all("SELECT worker, outcome FROM cert_orders")
    assert len(orders) == 1 and orders[0]["outcome"] == "issued", orders
    accounts = await acme.db_all("SELECT count(*) AS n FROM acme_accounts")
    assert accounts[0]["n"] == 1


async def test_an_edge_restarted_after_issuance_serves_the_certificate_while_control_is_down(
    acme: AcmeStack,
) -> None:
    _, _, _, stored = await acme.issued("restart.example.test")

    # A new edge process on the same state directory, with control unreachable.
    await acme.sync.close()
    await acme.edge.shutdown(drain=0.2)
    await acme.control.stop()
    edge = Edge(edge_config(base_domain="tunnels.test", https_port=0), SignedTokens([]))
    keyring = edge.authenticator
    assert isinstance(keyring, SignedTokens)
    sync = RoutingSync(
        edge,
        HttpSnapshotSource(acme.control.url, EDGE_KEY),
        None,
        keyring,
        cache_path=acme.state_dir / "routing.msgpack",
        start_timeout=1.0,
    )
    await sync.start()
    await edge.start()
    acme.edge, acme.sync = edge, sync
    assert fingerprint(await acme.served("restart.example.test")) == stored

    # A fresh edge (no state) that starts after issuance gets it from control's snapshot.
    await acme.control.start()
    fresh = Edge(edge_config(base_domain="tunnels.test", https_port=0), SignedTokens([]))
    fresh_keyring = fresh.authenticator
    assert isinstance(fresh_keyring, SignedTokens)
    fresh_sync = RoutingSync(
        fresh, HttpSnapshotSource(acme.control.url, EDGE_KEY), None, fresh_keyring
    )
    await fresh_sync.start()
    await fresh.start()
    try:
        await wait_for(
            lambda: fresh.certs.covers("restart.example.test"), what="cert on a new edge"
        )
        got = await handshake(
            fresh.config.https_port or 0, "restart.example.test", await acme.trusted()
        )
        assert fingerprint(got.cert) == stored
    finally:
        await fresh_sync.close()
        await fresh.shutdown(drain=0.2)


async def test_passthrough_domains_are_never_ordered(acme: AcmeStack) -> None:
    org = await acme.signup("owner@pass.example")
    await acme.verified_domain(org["key"], "pass.example.test", tls_mode="passthrough")
    worker = await acme.worker(challenges=("http-01",))
    await issue(worker)
    assert await acme.db_all("SELECT * FROM cert_orders") == []
    assert await acme.db_all("SELECT * FROM cert_work") == []


def metric(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_expiry_alerts_at_14_and_3_days_and_the_expiry_gauge(
    short_lived: AcmeStack, caplog: pytest.LogCaptureFixture
) -> None:
    acme = short_lived
    org, domain, worker, _ = await acme.issued("soon.example.test", probe_seconds=0)

    with caplog.at_level(logging.WARNING, logger="burrow.certs.alerts"):
        await issue(worker)  # probes and alerts run: ten days left is inside 14
        await issue(worker)  # the same window again: no second alert
    alerts = [r.getMessage() for r in caplog.records if "certificate alert" in r.getMessage()]
    assert len(alerts) == 1 and "cert_expiring for soon.example.test" in alerts[0], alerts
    shown = await acme.domain(org["key"], domain["id"])
    assert shown["tls_status"] == "expiring"
    exposed = await acme.worker_metrics()
    left = metric(exposed, "burrow_cert_expiry_seconds", host="soon.example.test")
    assert left is not None and 9 * DAY < left <= 10 * DAY, exposed
    assert (metric(exposed, "burrow_cert_worker_outcomes_total", outcome="issued") or 0) == 1
    assert (metric(exposed, "burrow_cert_worker_outcomes_total", outcome="alert_sent") or 0) == 0

    # Renewal fails (the CA is down) and the certificate comes within three days.
    await acme.pebble.stop_ca()
    caplog.clear()
    acme.clock.offset = 7.5 * DAY
    with caplog.at_level(logging.WARNING, logger="burrow.certs.alerts"):
        await issue(worker)
    alerts = [r.getMessage() for r in caplog.records if "certificate alert" in r.getMessage()]
    assert len(alerts) == 1 and "expires in 2.5 days" in alerts[0], alerts
    work = (await acme.db_all("SELECT alerted_days FROM cert_work"))[0]
    assert work["alerted_days"] == 3
    exposed = await acme.worker_metrics()
    assert (
        metric(exposed, "burrow_cert_worker_outcomes_total", outcome="ca_unreachable") or 0
    ) == 1
    assert metric(exposed, "burrow_cert_domains", status="expiring") == 1


async def test_the_base_domains_wildcard_over_dns01_with_a_hook_command(
    acme: AcmeStack, tmp_path: Path
) -> None:
    hook = tmp_path / "dns01-hook.py"
    hook.write_text(
        "import json, sys, urllib.request\n"
        "port, action, record, value = sys.argv[1:5]\n"
        "path = '/set-txt' if action == 'present' else '/clear-txt'\n"
        "body = json.dumps({'host': record, 'value': value}).encode()\n"
        "urllib.request.urlopen(urllib.request.Request(\n"
        "    f'http://127.0.0.1:{port}{path}', data=body, method='POST'), timeout=5)\n"
    )
    worker = await acme.worker(
        wildcard=True,
        dns01=Dns01Settings(hook=f"{sys.executable} {hook} {acme.pebble.dns_management_port}"),
    )
    await issue(worker)

    stored = await acme.stored_fingerprint("*.tunnels.test")
    assert stored, await acme.db_all("SELECT * FROM cert_orders")
    await wait_for(lambda: acme.edge.certs.covers("anything.tunnels.test"), what="wildcard")
    cert = await acme.served("anything.tunnels.test")
    assert fingerprint(cert) == stored
    assert fingerprint(await acme.served("tunnels.test")) == stored


async def test_without_an_acme_directory_the_worker_says_edges_keep_their_local_ca(
    acme: AcmeStack, caplog: pytest.LogCaptureFixture
) -> None:
    worker = await acme.worker(acme=None)
    with caplog.at_level(logging.INFO, logger="burrow.certs"):
        task = asyncio.get_running_loop().create_task(worker.run())
        await wait_for(lambda: "no ACME directory configured" in caplog.text, what="the line")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    lines = [r for r in caplog.records if "ACME" in r.getMessage()]
    assert len(lines) == 1 and "local CA" in lines[0].getMessage()


async def test_an_edge_serving_another_certificate_is_a_mismatch_naming_that_edge(
    acme: AcmeStack,
) -> None:
    org = await acme.signup("owner@mismatch.example")
    domain = await acme.verified_domain(org["key"], "mismatch.example.test")
    # A second edge that never reaches control: it serves its own fallback certificate.
    stray = Edge(edge_config(base_domain="tunnels.test", https_port=0), SignedTokens([]))
    await stray.start()
    try:
        stray_address = f"127.0.0.1:{stray.config.https_port}"
        worker = await acme.worker(
            challenges=("http-01",),
            probe_addresses=[f"127.0.0.1:{acme.edge.config.https_port}", stray_address],
        )
        await issue(worker)
        await wait_for(lambda: acme.edge.certs.covers("mismatch.example.test"), what="cert")
        await worker.probe_all()
    finally:
        await stray.shutdown(drain=0.2)
    shown = await acme.domain(org["key"], domain["id"])
    assert shown["tls_status"] == "mismatch", shown
    assert f"the edge at {stray_address} serves a certificate" in shown["tls_last_error"]


async def test_many_domains_are_ordered_at_most_concurrency_at_a_time(acme: AcmeStack) -> None:
    org = await acme.signup("owner@many.example")
    hosts = [f"d{i}.many.example.test" for i in range(3)]
    for host in hosts:
        await acme.verified_domain(org["key"], host)
    worker = await acme.worker(challenges=("http-01",), concurrency=2)

    await worker.cycle()
    leased = await acme.db_all("SELECT host FROM cert_work WHERE lease_owner IS NOT NULL")
    assert len(leased) == 2
    await worker.wait_orders()
    await issue(worker)
    stored = await acme.db_all("SELECT host FROM certificates ORDER BY host")
    assert [r["host"] for r in stored] == hosts


async def test_a_rate_limit_waits_as_long_as_the_ca_says(acme: AcmeStack) -> None:
    from acme import messages

    from certs.acme_client import translate_error

    org = await acme.signup("owner@limited.example")
    await acme.verified_domain(org["key"], "limited.example.test")
    worker = await acme.worker(challenges=("http-01",))
    await worker.enqueue()
    assert await worker.claim() == [("limited.example.test", 0)]
    allowed = dt.datetime.fromtimestamp(acme.clock() + 5 * 3600, dt.UTC).replace(microsecond=0)
    said = f"too many certificates already issued: retry after {allowed:%Y-%m-%d %H:%M:%S} UTC"
    rows = await acme.db_all(
        "INSERT INTO cert_orders (host, worker) VALUES (%s, 'w1') RETURNING id",
        ("limited.example.test",),
    )
    # The CA's problem document, through the same translation an order's answer takes.
    problem = messages.Error(typ="urn:ietf:params:acme:error:rateLimited", detail=said)
    failure = translate_error("ordering a certificate", problem)
    assert failure.rate_limited and failure.retry_at == allowed
    await worker._failed("limited.example.test", 1, failure, rows[0]["id"])
    work = (await acme.db_all("SELECT * FROM cert_work"))[0]
    assert work["next_attempt_at"] >= allowed
    assert await worker.claim() == []
    exposed = await acme.worker_metrics()
    assert metric(exposed, "burrow_cert_worker_outcomes_total", outcome="rate_limited") == 1


async def test_a_removed_domain_or_one_switched_to_passthrough_loses_its_certificate(
    acme: AcmeStack,
) -> None:
    org, domain, worker, _ = await acme.issued("gone.example.test")
    other, _, _, _ = await acme.issued("pass.example.test", name="w2")
    pass_id = (await acme.db_all("SELECT id FROM domains WHERE host = 'pass.example.test'"))[0]
    saved = acme.state_dir / "certs" / "gone.example.test.pem"
    await wait_for(saved.exists, what="the saved certificate")

    await acme.call("DELETE", f"/v1/domains/{domain['id']}", org["key"])
    await acme.call(
        "PATCH", f"/v1/domains/{pass_id['id']}", other["key"], json={"tls_mode": "passthrough"}
    )

    await wait_for(lambda: not acme.edge.certs.covers("gone.example.test"), what="removal")
    await wait_for(lambda: not acme.edge.certs.covers("pass.example.test"), what="passthrough")
    assert not saved.exists()
    assert await acme.db_all("SELECT host FROM certificates") == []
    await issue(worker)
    assert len(await acme.db_all("SELECT * FROM cert_orders")) == 2  # nothing ordered again
