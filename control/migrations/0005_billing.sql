-- Billing: plans and their entitlements, each org's subscription, provider webhook events
-- (stored once per provider event id), invoices, usage per billing period, reconciliation
-- findings, dunning, refunds.

-- An entitlement of 0 means "no limit of ours": the edge's own default for the limits the
-- edge enforces (tunnels, agents, tcp_ports, connections), unlimited for the others.
CREATE TABLE plans (
    id                     text PRIMARY KEY,
    name                   text NOT NULL,
    price_cents            integer NOT NULL DEFAULT 0 CHECK (price_cents >= 0),
    currency               text NOT NULL DEFAULT 'usd',
    interval               text NOT NULL DEFAULT 'month' CHECK (interval IN ('month', 'year')),
    public                 boolean NOT NULL DEFAULT true,
    tunnels                integer NOT NULL DEFAULT 0 CHECK (tunnels >= 0),
    agents                 integer NOT NULL DEFAULT 0 CHECK (agents >= 0),
    tcp_ports              integer NOT NULL DEFAULT 0 CHECK (tcp_ports >= 0),
    connections            integer NOT NULL DEFAULT 0 CHECK (connections >= 0),
    requests_per_minute    integer NOT NULL DEFAULT 0 CHECK (requests_per_minute >= 0),
    bandwidth_bytes_month  bigint  NOT NULL DEFAULT 0 CHECK (bandwidth_bytes_month >= 0),
    capture_retention_days integer NOT NULL DEFAULT 0 CHECK (capture_retention_days >= 0),
    reserved_names         integer NOT NULL DEFAULT 0 CHECK (reserved_names >= 0),
    custom_domains         integer NOT NULL DEFAULT 0 CHECK (custom_domains >= 0),
    seats                  integer NOT NULL DEFAULT 0 CHECK (seats >= 0),
    tokens                 integer NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- Every org without a paid subscription is on this plan. Its edge limits are 0 (each edge's
-- configured defaults) so an installation that sells nothing behaves as before; operators
-- tighten it with PATCH /v1/admin/plans/free.
INSERT INTO plans (id, name, reserved_names, custom_domains, seats, tokens,
                   capture_retention_days)
VALUES ('free', 'Free', 100, 100, 0, 0, 1);

-- The provider's own id for a plan (Stripe price, Razorpay plan, PayPal billing plan).
CREATE TABLE plan_prices (
    plan_id          text NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    provider         text NOT NULL,
    provider_plan_id text NOT NULL,
    PRIMARY KEY (plan_id, provider),
    UNIQUE (provider, provider_plan_id)
);

-- One row per org that ever started a checkout. ``state_at`` is the provider object's own
-- time of the state we hold (Stripe's event ``created``, Razorpay's ``created_at`` of the
-- event, PayPal's ``update_time``): an older state never replaces a newer one, whatever
-- order webhooks arrive in.
CREATE TABLE subscriptions (
    org_id                   text PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    plan_id                  text NOT NULL REFERENCES plans (id),
    provider                 text NOT NULL DEFAULT '',
    provider_customer_id     text NOT NULL DEFAULT '',
    provider_subscription_id text NOT NULL DEFAULT '',
    -- none | pending | active | past_due | canceled
    status                   text NOT NULL DEFAULT 'none',
    current_period_start     timestamptz,
    current_period_end       timestamptz,
    state_at                 double precision NOT NULL DEFAULT 0,
    -- Dunning: set when a payment fails, cleared when one succeeds.
    past_due_since           timestamptz,
    reminders_sent           integer NOT NULL DEFAULT 0,
    last_reconciled_at       timestamptz,
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX subscriptions_provider_id ON subscriptions (provider, provider_subscription_id)
    WHERE provider_subscription_id <> '';

-- Checkouts started, so a webhook or a return from the provider finds its org and plan.
CREATE TABLE checkouts (
    id               text PRIMARY KEY,
    org_id           text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    plan_id          text NOT NULL REFERENCES plans (id),
    provider         text NOT NULL,
    provider_ref     text NOT NULL DEFAULT '',
    url              text NOT NULL,
    completed_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX checkouts_ref ON checkouts (provider, provider_ref);

-- Every verified webhook event, once. The insert and its effect share one transaction, so
-- a retry or a replay finds the row and changes nothing.
CREATE TABLE billing_events (
    provider    text NOT NULL,
    event_id    text NOT NULL,
    type        text NOT NULL,
    org_id      text,
    outcome     text NOT NULL DEFAULT '',
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);
CREATE INDEX billing_events_received ON billing_events (received_at);

CREATE TABLE invoices (
    provider            text NOT NULL,
    provider_invoice_id text NOT NULL,
    org_id              text REFERENCES orgs (id) ON DELETE SET NULL,
    subscription_id     text NOT NULL DEFAULT '',
    status              text NOT NULL,
    currency            text NOT NULL DEFAULT '',
    subtotal_cents      bigint NOT NULL DEFAULT 0,
    tax_cents           bigint NOT NULL DEFAULT 0,
    total_cents         bigint NOT NULL DEFAULT 0,
    tax_id              text NOT NULL DEFAULT '',
    payment_ref         text NOT NULL DEFAULT '',
    period_start        timestamptz,
    period_end          timestamptz,
    issued_at           timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, provider_invoice_id)
);
CREATE INDEX invoices_org ON invoices (org_id, issued_at);

CREATE TABLE refunds (
    id                 text PRIMARY KEY,
    org_id             text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    provider           text NOT NULL,
    provider_refund_id text NOT NULL DEFAULT '',
    invoice_id         text NOT NULL,
    amount_cents       bigint NOT NULL,
    reason             text NOT NULL DEFAULT '',
    created_by         text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- Usage reported by edges (bytes through agent links both ways, visitor connections),
-- summed per org per billing period (a calendar month, UTC, when the org has no paid period).
CREATE TABLE usage_periods (
    org_id       text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    period_start timestamptz NOT NULL,
    bytes        bigint NOT NULL DEFAULT 0,
    connections  bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, period_start)
);

-- What reconciliation found different between the provider and us, and what it did.
CREATE TABLE reconciliation_findings (
    id              bigserial PRIMARY KEY,
    provider        text NOT NULL,
    org_id          text,
    subject         text NOT NULL,
    ours            text NOT NULL,
    theirs          text NOT NULL,
    action          text NOT NULL,
    found_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reconciliation_findings_found ON reconciliation_findings (found_at);

-- The limits every edge enforces for an org: an operator's override (orgs.limits) where
-- set, else its plan's entitlement; 0: the edge's default.
CREATE VIEW org_edge_limits AS
SELECT o.id,
       jsonb_strip_nulls(jsonb_build_object(
           'tunnels', nullif(coalesce(nullif((o.limits ->> 'tunnels')::int, 0), p.tunnels), 0),
           'links', nullif(coalesce(nullif((o.limits ->> 'links')::int, 0), p.agents), 0),
           'tcp_ports',
               nullif(coalesce(nullif((o.limits ->> 'tcp_ports')::int, 0), p.tcp_ports), 0),
           'streams',
               nullif(coalesce(nullif((o.limits ->> 'streams')::int, 0), p.connections), 0)
       )) AS limits,
       p.id AS plan_id
FROM orgs o
LEFT JOIN subscriptions s ON s.org_id = o.id
JOIN plans p ON p.id = coalesce(s.plan_id, 'free');

-- The dev/test provider's own books (what a real provider keeps on its side), so its
-- checkout page, webhooks and reconciliation walk the same paths as the real ones.
CREATE TABLE mock_provider_subscriptions (
    id           text PRIMARY KEY,
    org_id       text NOT NULL,
    plan_ref     text NOT NULL,
    status       text NOT NULL DEFAULT 'created',
    period_start timestamptz,
    period_end   timestamptz,
    invoices     jsonb NOT NULL DEFAULT '[]',
    created_at   timestamptz NOT NULL DEFAULT now()
);
