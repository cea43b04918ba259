"""``burrowd worker billing``: reconciliation with every provider that is on, invoices,
and dunning, in passes every ``BillingSettings.worker_interval`` seconds.

Reconciliation lists the provider's subscriptions and compares each with ours; a
difference is repaired from the provider's state (it holds the money, so it is right) and
recorded in ``reconciliation_findings``, as is a subscription we hold active that the
provider no longer has, and every invoice that is new or changed. Each org is one
transaction under its subscription row's lock, taken with SKIP LOCKED: several workers may
run, and one never waits on (or repeats) another's org.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web

from billing.dunning import Dunning
from billing.email import EmailSender, sender_from
from billing.providers.base import Provider, ProviderError, RemoteSubscription
from billing.service import BILLING, Billing
from billing.subscriptions import apply_remote, org_for, record_invoice
from control.db import Queries

log = logging.getLogger("burrow.billing.worker")


@dataclass(frozen=True, slots=True)
class Finding:
    provider: str
    org_id: str
    subject: str
    ours: str
    theirs: str
    action: str


async def _record(q: Queries, finding: Finding) -> None:
    await q.execute(
        "INSERT INTO reconciliation_findings (provider, org_id, subject, ours, theirs, action)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (
            finding.provider,
            finding.org_id or None,
            finding.subject,
            finding.ours,
            finding.theirs,
            finding.action,
        ),
    )


class Reconciler:
    def __init__(self, billing: Billing) -> None:
        self.billing = billing

    async def run_once(self) -> list[Finding]:
        found: list[Finding] = []
        for name, provider in self.billing.providers.items():
            try:
                found.extend(await self.reconcile(name, provider))
            except ProviderError as exc:
                log.warning("reconciliation with %s waits for the next pass: %s", name, exc)
        if found:
            self.billing.outbox.changed()
        return found

    async def reconcile(self, name: str, provider: Provider) -> list[Finding]:
        remote_list = await provider.subscriptions()
        read_at = self.billing.clock()
        found: list[Finding] = []
        for remote in remote_list:
            finding = await self._compare(name, remote, read_at.timestamp())
            if finding is not None:
                found.append(finding)
        listed = [r.id for r in remote_list]
        missing = await self.billing.db.all(
            "SELECT org_id, provider_subscription_id FROM subscriptions WHERE provider = %s"
            " AND status IN ('active', 'past_due') AND NOT (provider_subscription_id = ANY(%s))",
            (name, listed),
        )
        for row in missing:
            sub_id = row["provider_subscription_id"]
            try:
                remote = await provider.subscription(sub_id)
            except ProviderError:
                # The provider has no such subscription: nothing is being paid for.
                remote = RemoteSubscription(
                    id=sub_id,
                    status="canceled",
                    plan_ref="",
                    org_id=row["org_id"],
                    raw_status="missing",
                )
            finding = await self._compare(name, remote, self.billing.clock().timestamp())
            if finding is not None:
                found.append(finding)
        found.extend(await self._invoices(name, provider))
        return found

    async def _compare(self, name: str, remote: RemoteSubscription, at: float) -> Finding | None:
        billing = self.billing
        async with billing.db.transaction() as q:
            org_id = await org_for(q, name, remote)
            if not org_id:
                return None  # not one of ours (another product on the same account)
            await q.execute(
                "INSERT INTO subscriptions (org_id, plan_id) VALUES (%s, 'free')"
                " ON CONFLICT DO NOTHING",
                (org_id,),
            )
            row = await q.one(
                "SELECT plan_id, status, provider, provider_subscription_id FROM subscriptions"
                " WHERE org_id = %s FOR UPDATE SKIP LOCKED",
                (org_id,),
            )
            if row is None:
                return None  # another worker (or a webhook) holds this org right now
            other = row["provider_subscription_id"] not in ("", remote.id)
            if other and remote.status in ("canceled", "pending"):
                return None  # an old or abandoned subscription of an org that moved on
            if other and row["status"] in ("active", "past_due"):
                # Two live subscriptions for one org (two checkouts both paid): charging
                # twice is for an operator to settle (cancel one, refund), not to guess.
                finding = Finding(
                    name,
                    org_id,
                    f"subscription {remote.id}",
                    f"{row['status']} ({row['provider_subscription_id']})",
                    f"{remote.raw_status or remote.status} as well",
                    "left for an operator: the org has two live subscriptions",
                )
                said = await q.value(
                    "SELECT 1 FROM reconciliation_findings WHERE provider = %s AND org_id = %s"
                    " AND subject = %s AND action = %s",
                    (name, org_id, finding.subject, finding.action),
                )
                if said:  # once, not on every pass
                    return None
                await _record(q, finding)
                return finding
            priced = await q.value(
                "SELECT plan_id FROM plan_prices WHERE provider = %s AND provider_plan_id = %s",
                (name, remote.plan_ref),
            )
            ours = f"{row['status']} on {row['plan_id']} ({row['provider_subscription_id'] or '-'})"
            want_plan = {"active": priced, "past_due": priced, "canceled": "free"}.get(
                remote.status
            ) or row["plan_id"]
            same = (
                row["status"] == remote.status
                and row["plan_id"] == want_plan
                and row["provider_subscription_id"] == remote.id
                and row["provider"] == name
            )
            await q.execute(
                "UPDATE subscriptions SET last_reconciled_at = now() WHERE org_id = %s",
                (org_id,),
            )
            if same:
                return None
            _, outcome = await apply_remote(
                q,
                billing.outbox,
                name,
                remote,
                at=at,
                now=billing.clock(),
                actor=f"{name}:reconciliation",
            )
            finding = Finding(
                name,
                org_id,
                f"subscription {remote.id}",
                ours,
                f"{remote.raw_status or remote.status} ({remote.plan_ref or '-'})",
                f"repaired: {outcome}",
            )
            await _record(q, finding)
            return finding

    async def _invoices(self, name: str, provider: Provider) -> list[Finding]:
        rows = await self.billing.db.all(
            "SELECT org_id, provider_subscription_id FROM subscriptions"
            " WHERE provider = %s AND provider_subscription_id <> ''",
            (name,),
        )
        orgs = {r["provider_subscription_id"]: r["org_id"] for r in rows}
        if not orgs:
            return []
        found = []
        for invoice in await provider.invoices(sorted(orgs)):
            org_id = orgs.get(invoice.subscription_id, "")
            async with self.billing.db.transaction() as q:
                if await record_invoice(q, name, org_id, invoice):
                    finding = Finding(
                        name,
                        org_id,
                        f"invoice {invoice.id}",
                        "",
                        invoice.status,
                        f"recorded {invoice.total_cents} {invoice.currency} "
                        f"(tax {invoice.tax_cents})",
                    )
                    await _record(q, finding)
                    found.append(finding)
        return found


class BillingWorker:
    def __init__(self, billing: Billing, email: EmailSender) -> None:
        self.billing = billing
        self.reconciler = Reconciler(billing)
        self.dunning = Dunning(billing, email)

    async def run_once(self) -> tuple[list[Finding], list[str]]:
        findings = await self.reconciler.run_once()
        dunned = await self.dunning.run_once()
        return findings, dunned

    async def run(self) -> None:
        while True:
            findings, dunned = await self.run_once()
            if findings or dunned:
                log.info(
                    "billing pass: %d reconciliation finding(s), %d dunning step(s)",
                    len(findings),
                    len(dunned),
                )
            await asyncio.sleep(self.billing.settings.worker_interval)


def billing_worker(app: web.Application) -> BillingWorker:
    """The factory ``control.workers.WORKERS`` names."""
    billing = app[BILLING]
    return BillingWorker(billing, sender_from(billing.settings))
