"""The keys agent tokens are signed with, kept in PostgreSQL with their private halves
encrypted by the operator's secret. The newest active key signs; every active key verifies,
so a rotation never breaks tokens already handed out. Retiring a key ends its tokens."""

from __future__ import annotations

from bus.events import KeysSet, VerifyKey
from control.db import Database, Queries, Row
from control.routing_outbox import RoutingOutbox
from control.secret_box import SecretBox, SecretBoxError
from control.token_signing import SigningKey


class SigningKeyError(Exception):
    pass


def _aad(kid: str) -> bytes:
    return f"burrow signing key {kid}".encode()


class SigningKeys:
    def __init__(self, db: Database, box: SecretBox, outbox: RoutingOutbox) -> None:
        self.db = db
        self.box = box
        self.outbox = outbox

    async def ensure(self) -> None:
        """Create the first key on a new installation."""
        async with self.db.transaction() as q:
            await q.execute("LOCK TABLE signing_keys IN EXCLUSIVE MODE")
            if await q.value("SELECT count(*) FROM signing_keys WHERE retired_at IS NULL"):
                return
            await self._add(q, SigningKey.generate())
        self.outbox.changed()

    async def current(self) -> SigningKey:
        row = await self.db.one(
            "SELECT kid, private_key FROM signing_keys WHERE retired_at IS NULL"
            " ORDER BY created_at DESC, kid LIMIT 1"
        )
        if row is None:
            raise SigningKeyError("no active signing key; rotate to create one")
        try:
            raw = self.box.decrypt(bytes(row["private_key"]), _aad(row["kid"]))
        except SecretBoxError as exc:
            raise SigningKeyError(
                f"cannot decrypt signing key {row['kid']}: is BURROW_SECRET_KEY the one it was "
                f"made with? ({exc})"
            ) from exc
        return SigningKey.from_raw(row["kid"], raw)

    async def rotate(self) -> SigningKey:
        key = SigningKey.generate()
        async with self.db.transaction() as q:
            await self._add(q, key)
        self.outbox.changed()
        return key

    async def retire(self, kid: str) -> Row | None:
        async with self.db.transaction() as q:
            await q.execute("LOCK TABLE signing_keys IN EXCLUSIVE MODE")
            active = await q.all("SELECT kid FROM signing_keys WHERE retired_at IS NULL")
            if kid not in {r["kid"] for r in active}:
                return None
            if len(active) == 1:
                raise SigningKeyError("this is the only active key: rotate first, then retire it")
            row = await q.one(
                "UPDATE signing_keys SET retired_at = now() WHERE kid = %s"
                " RETURNING kid, created_at, retired_at",
                (kid,),
            )
            await self._publish_keys(q)
        self.outbox.changed()
        return row

    async def list(self) -> list[Row]:
        return await self.db.all(
            "SELECT kid, created_at, retired_at FROM signing_keys ORDER BY created_at, kid"
        )

    async def _add(self, q: Queries, key: SigningKey) -> None:
        await q.execute(
            "INSERT INTO signing_keys (kid, public_key, private_key) VALUES (%s, %s, %s)",
            (key.kid, key.public_raw(), self.box.encrypt(key.private_raw(), _aad(key.kid))),
        )
        await self._publish_keys(q)

    async def _publish_keys(self, q: Queries) -> None:
        rows = await q.all(
            "SELECT kid, public_key FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at"
        )
        keys = [VerifyKey(r["kid"], bytes(r["public_key"])) for r in rows]
        await self.outbox.record(q, lambda seq: KeysSet(seq=seq, keys=keys))
