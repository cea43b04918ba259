-- Operators suspend an org (its agents are ended and refused until lifted) and may set its
-- quotas; edges get both with the routing snapshot and events.

ALTER TABLE orgs ADD COLUMN suspended_at timestamptz;
-- {"tunnels": n, "links": n, "tcp_ports": n}; a missing key or 0: the edge's default.
ALTER TABLE orgs ADD COLUMN limits jsonb NOT NULL DEFAULT '{}';
