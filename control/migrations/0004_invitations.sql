-- Invitations to an organization: the invitee follows a link holding the token (stored
-- here only as its SHA-256) and accepts while signed in with the invited email. Nothing
-- here depends on migrations after 0002.

CREATE TABLE invitations (
    id          text PRIMARY KEY,
    org_id      text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    email       text NOT NULL,
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    token_hash  bytea NOT NULL UNIQUE,
    invited_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by text,
    revoked_at  timestamptz
);
CREATE INDEX invitations_org ON invitations (org_id, created_at);

-- Unverified domain claims expire by age: the sweep and the re-claim look them up so.
CREATE INDEX domains_unverified ON domains (created_at) WHERE verified_at IS NULL;
