-- Certificates the certs worker obtained over ACME, its account at each CA, and its work
-- queue (one row per name it keeps a certificate for: a verified custom domain in terminate
-- mode, or the base domain's wildcard).

-- One ACME account per deployment and directory; the key sealed with the secret box
-- (associated data "acme-account:<directory URL>").
CREATE TABLE acme_accounts (
    directory_url text PRIMARY KEY,
    account_url   text NOT NULL,
    key_sealed    bytea NOT NULL,
    contact       text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The certificate edges serve for a host. version comes from one sequence, so it never
-- repeats, even for a host removed and added again: an edge tells from (host, version) in
-- the snapshot or a cert_changed event whether it has that certificate. The key is sealed
-- (associated data "cert-key:<host>:<version>").
CREATE SEQUENCE certificate_versions;
CREATE TABLE certificates (
    host        text PRIMARY KEY,
    version     bigint NOT NULL,
    chain_pem   text NOT NULL,
    key_sealed  bytea NOT NULL,
    fingerprint text NOT NULL,
    not_before  timestamptz NOT NULL,
    not_after   timestamptz NOT NULL,
    issuer      text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- What the worker does next for a host. A worker takes a row by setting lease_until (under
-- FOR UPDATE SKIP LOCKED), so two workers never order for one host at once; a lease left by
-- a worker that died runs out by itself.
CREATE TABLE cert_work (
    host            text PRIMARY KEY,
    failures        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    renew_at        timestamptz,
    lease_owner     text,
    lease_until     timestamptz,
    -- the smallest alert threshold (days) already sent for the current certificate
    alerted_days    integer,
    failed_alerted  boolean NOT NULL DEFAULT false,
    last_error      text
);

-- Every ACME order placed, kept a while: how often the worker asked the CA, and why.
CREATE TABLE cert_orders (
    id          bigserial PRIMARY KEY,
    host        text NOT NULL,
    worker      text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome     text
);
CREATE INDEX cert_orders_host ON cert_orders (host, started_at);

-- http-01 and tls-alpn-01 answers every edge gives while an order is being validated. Not
-- secret: a key authorization is the challenge token and the account key's thumbprint.
CREATE TABLE acme_challenges (
    token             text PRIMARY KEY,
    host              text NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('http-01', 'tls-alpn-01')),
    key_authorization text NOT NULL,
    until             timestamptz NOT NULL
);
