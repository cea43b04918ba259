-- Operators suspend an org (its agents are ended and refused until lifted) and may set its
-- quotas; edges get both with the routing snapshot and events.

ALTER TABLE orgs ADD COLUMN suspended_at timestamptz;
-- {"tunnels": n, "links": n, "tcp_ports": n, "streams": n}; a missing key or 0: the edge's default.
ALTER TABLE orgs ADD COLUMN limits jsonb NOT NULL DEFAULT '{}';

-- A name whose last tunnel went down stays with its account at the edge for a while (the
-- edge's name lease, 10 minutes by default) so a reconnecting agent gets it back. Control
-- learns of tunnels going down from edge reports, which delete their live_tunnels rows; this
-- keeps the name's holder until then, so nobody else can reserve it from under them.
CREATE TABLE name_holds (
    host   text PRIMARY KEY,
    org_id text NOT NULL,
    until  timestamptz NOT NULL
);

CREATE FUNCTION hold_released_name() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.hostname <> '' THEN
        INSERT INTO name_holds (host, org_id, until)
        VALUES (OLD.hostname, OLD.org_id, now() + interval '10 minutes')
        ON CONFLICT (host) DO UPDATE SET org_id = excluded.org_id, until = excluded.until;
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER live_tunnels_hold_name AFTER DELETE ON live_tunnels
    FOR EACH ROW EXECUTE FUNCTION hold_released_name();
