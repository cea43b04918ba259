-- Reserved names, custom domains, the routing event outbox, edges and their live tunnels.

CREATE TABLE reserved_names (
    id         text PRIMARY KEY,
    org_id     text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    host       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reserved_names_org ON reserved_names (org_id);

CREATE TABLE domains (
    id                  text PRIMARY KEY,
    org_id              text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    host                text NOT NULL UNIQUE,
    verification_token  text NOT NULL,
    strict              boolean NOT NULL DEFAULT true,
    verified_at         timestamptz,
    verified_by         text,
    last_check_at       timestamptz,
    last_check_error    text,
    target_name         text,
    tls_mode            text NOT NULL DEFAULT 'terminate'
                        CHECK (tls_mode IN ('terminate', 'passthrough')),
    tls_status          text NOT NULL DEFAULT 'pending',
    tls_not_after       timestamptz,
    tls_last_checked_at timestamptz,
    tls_last_error      text,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domains_org ON domains (org_id);

-- Every change edges must know about, in commit order (writers hold an advisory lock), so
-- an edge can tell from the sequence numbers whether it missed one. Rows past
-- published_at were sent on the bus; the publisher sends the rest, in order.
CREATE TABLE routing_events (
    seq          bigint PRIMARY KEY,
    payload      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

CREATE TABLE edges (
    id           text PRIMARY KEY,
    version      text NOT NULL DEFAULT '',
    started_at   timestamptz,
    last_seen_at timestamptz NOT NULL,
    draining     boolean NOT NULL DEFAULT false,
    stopped_at   timestamptz
);

CREATE TABLE live_tunnels (
    key           text PRIMARY KEY,
    edge_id       text NOT NULL,
    org_id        text NOT NULL,
    token_id      text NOT NULL,
    protocol      text NOT NULL,
    url           text NOT NULL,
    hostname      text NOT NULL DEFAULT '',
    port          integer NOT NULL DEFAULT 0,
    session_id    text NOT NULL DEFAULT '',
    instance_id   text NOT NULL DEFAULT '',
    agent_version text NOT NULL DEFAULT '',
    client_addr   text NOT NULL DEFAULT '',
    local_addr    text NOT NULL DEFAULT '',
    started_at    timestamptz NOT NULL,
    seen_at       timestamptz NOT NULL
);
CREATE INDEX live_tunnels_org ON live_tunnels (org_id);
CREATE INDEX live_tunnels_edge ON live_tunnels (edge_id);
