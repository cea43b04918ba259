-- Captured requests (control.inspector stores them from the edges' capture stream) and
-- per-org retention overrides (a plan or an operator sets them; none: the config's
-- defaults). No foreign key to orgs: a capture of an org deleted meanwhile must not wedge
-- the batch it came in; retention removes it with the org's other rows.

CREATE TABLE captured_requests (
    id          text PRIMARY KEY,
    org_id      text NOT NULL,
    tunnel_id   text NOT NULL,
    hostname    text NOT NULL,
    edge_id     text NOT NULL,
    request_id  text NOT NULL,
    method      text NOT NULL,
    url         text NOT NULL,
    protocol    text NOT NULL,
    status      integer NOT NULL,
    visitor     text NOT NULL,
    started_at  timestamptz NOT NULL,
    duration_s  double precision NOT NULL,
    replay_of   text NOT NULL DEFAULT '',
    -- The whole bus.captures.CaptureRecord, msgpack: headers and body prefixes.
    record      bytea NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now()
);
-- Newest first per org (the list, paging and the count retention), per tunnel host.
CREATE INDEX captured_requests_org_time ON captured_requests (org_id, started_at DESC, id DESC);
CREATE INDEX captured_requests_host_time ON captured_requests (org_id, hostname, started_at DESC);

CREATE TABLE capture_retention (
    org_id      text PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    max_count   integer NOT NULL CHECK (max_count >= 0),
    max_age_s   double precision NOT NULL CHECK (max_age_s >= 0)
);
