"""Users, orgs, memberships, console sessions and API keys."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from control.db import Database, Queries, Row
from control.ids import new_id, new_secret

ROLES = ("owner", "admin", "member")
ROLE_RANK = {"member": 0, "admin": 1, "owner": 2}


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


# -- users and orgs ---------------------------------------------------------------------------


async def create_user_with_org(
    q: Queries, email: str, name: str, password_hash: str, org_name: str, is_admin: bool
) -> tuple[Row, Row]:
    user = await q.one(
        "INSERT INTO users (id, email, name, password_hash, is_admin)"
        " VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING id, email, name, is_admin, created_at",
        (new_id("usr"), email, name, password_hash, is_admin),
    )
    if user is None:
        raise LookupError("email taken")
    org = await create_org(q, org_name, user["id"])
    return user, org


async def create_org(q: Queries, name: str, owner_id: str) -> Row:
    org = await q.one(
        "INSERT INTO orgs (id, name) VALUES (%s, %s) RETURNING id, name, created_at",
        (new_id("org"), name),
    )
    assert org is not None
    await q.execute(
        "INSERT INTO memberships (org_id, user_id, role) VALUES (%s, %s, 'owner')",
        (org["id"], owner_id),
    )
    return org


async def count_users(db: Database) -> int:
    return int(await db.value("SELECT count(*) FROM users"))


async def user_by_email(db: Database, email: str) -> Row | None:
    return await db.one(
        "SELECT id, email, name, password_hash, is_admin, disabled_at FROM users"
        " WHERE lower(email) = lower(%s)",
        (email,),
    )


async def user_by_id(db: Database, user_id: str) -> Row | None:
    return await db.one(
        "SELECT id, email, name, is_admin, disabled_at, created_at FROM users WHERE id = %s",
        (user_id,),
    )


async def orgs_of_user(db: Database, user_id: str) -> list[Row]:
    return await db.all(
        "SELECT o.id, o.name, o.created_at, m.role FROM memberships m"
        " JOIN orgs o ON o.id = m.org_id WHERE m.user_id = %s ORDER BY m.created_at, o.id",
        (user_id,),
    )


async def role_in_org(db: Database, user_id: str, org_id: str) -> str | None:
    value = await db.value(
        "SELECT role FROM memberships WHERE user_id = %s AND org_id = %s", (user_id, org_id)
    )
    return str(value) if value is not None else None


async def members(db: Database, org_id: str) -> list[Row]:
    return await db.all(
        "SELECT u.id AS user_id, u.email, u.name, m.role, m.created_at FROM memberships m"
        " JOIN users u ON u.id = m.user_id WHERE m.org_id = %s ORDER BY m.created_at, u.id",
        (org_id,),
    )


async def owner_count(q: Queries, org_id: str) -> int:
    return int(
        await q.value(
            "SELECT count(*) FROM memberships WHERE org_id = %s AND role = 'owner'", (org_id,)
        )
    )


# -- console sessions -------------------------------------------------------------------------


async def create_session(db: Database, user_id: str, lifetime: int) -> str:
    secret = new_secret()
    await db.execute(
        "INSERT INTO sessions (id_hash, user_id, expires_at) VALUES (%s, %s, %s)",
        (_sha256(secret), user_id, datetime.now(UTC) + timedelta(seconds=lifetime)),
    )
    # Sweep a few expired sessions on the way, so the table does not grow without bound.
    await db.execute(
        "DELETE FROM sessions WHERE id_hash IN"
        " (SELECT id_hash FROM sessions WHERE expires_at < now() LIMIT 100)"
    )
    return secret


async def user_for_session(db: Database, secret: str) -> Row | None:
    return await db.one(
        "SELECT u.id, u.email, u.name, u.is_admin FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.id_hash = %s AND s.expires_at > now() AND u.disabled_at IS NULL",
        (_sha256(secret),),
    )


async def delete_session(db: Database, secret: str) -> None:
    await db.execute("DELETE FROM sessions WHERE id_hash = %s", (_sha256(secret),))


# -- API keys ---------------------------------------------------------------------------------

API_KEY_PREFIX = "bk"


async def create_api_key(
    db: Database, org_id: str, user_id: str | None, role: str, description: str
) -> tuple[Row, str]:
    key_id = new_id("key")
    secret = new_secret()
    row = await db.one(
        "INSERT INTO api_keys (id, org_id, created_by, role, description, secret_hash)"
        " VALUES (%s, %s, %s, %s, %s, %s)"
        " RETURNING id, org_id, role, description, created_at, last_used_at, revoked_at",
        (key_id, org_id, user_id, role, description, _sha256(secret)),
    )
    assert row is not None
    return row, f"{API_KEY_PREFIX}.{key_id}.{secret}"


async def api_key_for_secret(db: Database, text: str) -> Row | None:
    parts = text.split(".")
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or len(text) > 200:
        return None
    row = await db.one(
        "UPDATE api_keys k SET last_used_at = now()"
        " WHERE k.id = %s AND k.secret_hash = %s AND k.revoked_at IS NULL"
        # A key stops working with the user who made it: disabled, or no longer a member.
        " AND (k.created_by IS NULL OR EXISTS (SELECT 1 FROM users u JOIN memberships m"
        "  ON m.user_id = u.id AND m.org_id = k.org_id"
        "  WHERE u.id = k.created_by AND u.disabled_at IS NULL))"
        " RETURNING k.id, k.org_id, k.role, k.created_by",
        (parts[1], _sha256(parts[2])),
    )
    return row


async def list_api_keys(db: Database, org_id: str) -> list[Row]:
    return await db.all(
        "SELECT id, role, description, created_at, last_used_at, revoked_at FROM api_keys"
        " WHERE org_id = %s ORDER BY created_at, id",
        (org_id,),
    )


async def revoke_api_key(db: Database, org_id: str, key_id: str) -> Row | None:
    return await db.one(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
        " WHERE id = %s AND org_id = %s"
        " RETURNING id, role, description, created_at, last_used_at, revoked_at",
        (key_id, org_id),
    )


async def audit(
    q: Queries | Database,
    org_id: str | None,
    actor: str,
    action: str,
    target: str = "",
) -> None:
    await q.execute(
        "INSERT INTO audit_log (org_id, actor, action, target) VALUES (%s, %s, %s, %s)",
        (org_id, actor, action, target),
    )
