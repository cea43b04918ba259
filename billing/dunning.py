"""Failed-payment recovery: an org whose subscription is past due keeps its plan for a
grace period while the provider retries the charge; its owners get a reminder on each of
``reminder_days`` (counted from the first failure); at the end of the grace period the
subscription is cancelled at the provider and the org goes back to the free plan. A
payment that succeeds meanwhile (a webhook, or reconciliation) clears all of it.

Each org is one transaction under its subscription row's lock, taken with SKIP LOCKED, so
several workers share the orgs and never act on one twice. Mail goes out inside that
transaction: a mail server that refuses rolls the step back, to be tried on the next pass;
a crash after sending and before commit sends that reminder again (at least once, never
skipped).
"""

from __future__ import annotations

import logging

from billing.email import EmailError, EmailSender
from billing.plans import FREE_PLAN
from billing.providers.base import ProviderError
from billing.service import Billing
from billing.subscriptions import end_subscription
from control.db import Queries
from control.store.accounts import audit

log = logging.getLogger("burrow.billing.dunning")


async def owner_emails(q: Queries, org_id: str) -> list[str]:
    rows = await q.all(
        "SELECT u.email FROM memberships m JOIN users u ON u.id = m.user_id"
        " WHERE m.org_id = %s AND m.role = 'owner' AND u.disabled_at IS NULL ORDER BY u.email",
        (org_id,),
    )
    return [r["email"] for r in rows]


class Dunning:
    def __init__(self, billing: Billing, email: EmailSender) -> None:
        self.billing = billing
        self.email = email

    async def run_once(self) -> list[str]:
        """One pass over every past-due org; what was done, one line per org."""
        rows = await self.billing.db.all(
            "SELECT org_id FROM subscriptions WHERE status = 'past_due'"
            " AND past_due_since IS NOT NULL ORDER BY org_id"
        )
        done = []
        for row in rows:
            try:
                action = await self._step(row["org_id"])
            except (EmailError, ProviderError) as exc:
                log.warning("dunning %s waits for the next pass: %s", row["org_id"], exc)
                continue
            if action:
                done.append(f"{row['org_id']}: {action}")
        if done:
            self.billing.outbox.changed()
        return done

    async def _step(self, org_id: str) -> str:
        billing = self.billing
        settings = billing.settings
        now = billing.clock()
        async with billing.db.transaction() as q:
            row = await q.one(
                "SELECT s.plan_id, s.provider, s.provider_subscription_id, s.past_due_since,"
                " s.reminders_sent, p.name AS plan_name FROM subscriptions s"
                " JOIN plans p ON p.id = s.plan_id"
                " WHERE s.org_id = %s AND s.status = 'past_due' AND s.past_due_since IS NOT NULL"
                " FOR UPDATE OF s SKIP LOCKED",
                (org_id,),
            )
            if row is None:  # another worker has it, or it was paid meanwhile
                return ""
            days = (now - row["past_due_since"]).total_seconds() / 86400
            owners = await owner_emails(q, org_id)
            if days >= settings.grace_days:
                provider = billing.providers.get(row["provider"])
                if provider is not None and row["provider_subscription_id"]:
                    await provider.cancel(row["provider_subscription_id"])
                await end_subscription(q, billing.outbox, org_id, at=now.timestamp())
                await audit(q, org_id, "billing:dunning", "billing.downgrade", row["plan_id"])
                if owners:
                    await self.email.send(
                        owners,
                        f"Your Burrow {row['plan_name']} plan has ended",
                        f"We could not collect the payment for your {row['plan_name']} plan "
                        f"in {settings.grace_days:g} days, so your organization is on the "
                        "free plan now and its limits are the free plan's. Subscribe again "
                        "with POST /v1/billing/checkout whenever you like.\n",
                    )
                return f"downgraded from {row['plan_id']} to {FREE_PLAN}"
            due = sum(1 for d in settings.reminder_days if d <= days)
            if due <= row["reminders_sent"]:
                return ""
            left = settings.grace_days - days
            if owners:
                await self.email.send(
                    owners,
                    f"Payment failed for your Burrow {row['plan_name']} plan",
                    f"The last payment for your {row['plan_name']} plan did not go through. "
                    f"Update your payment method within {left:.0f} days to keep the plan; "
                    "after that your organization moves to the free plan.\n",
                )
            await q.execute(
                "UPDATE subscriptions SET reminders_sent = %s, updated_at = now()"
                " WHERE org_id = %s",
                (due, org_id),
            )
            await audit(q, org_id, "billing:dunning", "billing.reminder", str(due))
            return f"reminder {due} sent to {len(owners)} owner(s)"
