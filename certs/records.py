"""Certificates, their keys and ACME challenges in PostgreSQL: the certs component's SQL.

A certificate's key is sealed with the control plane's secret box, bound to its row by the
associated data ``cert-key:<host>:<version>``, so a blob moved to another row does not open.
Every change edges must act on is recorded in the routing outbox in the same transaction:
``CertChanged`` (the edge fetches the key over its authenticated channel) and
``ChallengeSet`` / ``ChallengeRemoved``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from bus.events import (
    AcmeChallenge,
    CertChanged,
    CertRef,
    ChallengeRemoved,
    ChallengeSet,
    EdgeCert,
)

if TYPE_CHECKING:
    from control.db import Database, Queries
    from control.routing_outbox import RoutingOutbox
    from control.secret_box import SecretBox


def key_aad(host: str, version: int) -> bytes:
    return f"cert-key:{host}:{version}".encode()


def pkcs8(key_pem: bytes) -> bytes:
    """Any PEM private key as unencrypted PKCS#8, the one form edges read back."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


async def store_certificate(
    q: Queries,
    box: SecretBox,
    outbox: RoutingOutbox,
    host: str,
    chain_pem: bytes,
    key_pem: bytes,
) -> int:
    """Replace ``host``'s certificate in the caller's transaction and tell edges; the new
    version."""
    leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    version = int(await q.value("SELECT nextval('certificate_versions')"))
    sealed = box.encrypt(pkcs8(key_pem), key_aad(host, version))
    not_after = leaf.not_valid_after_utc
    await q.execute(
        "INSERT INTO certificates (host, version, chain_pem, key_sealed, fingerprint,"
        " not_before, not_after, issuer) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (host) DO UPDATE SET version = excluded.version,"
        " chain_pem = excluded.chain_pem, key_sealed = excluded.key_sealed,"
        " fingerprint = excluded.fingerprint, not_before = excluded.not_before,"
        " not_after = excluded.not_after, issuer = excluded.issuer, created_at = now()",
        (
            host,
            version,
            chain_pem.decode("ascii"),
            sealed,
            fingerprint(leaf),
            leaf.not_valid_before_utc,
            not_after,
            leaf.issuer.rfc4514_string(),
        ),
    )
    until = not_after.timestamp()
    await outbox.record(
        q, lambda seq: CertChanged(seq=seq, host=host, version=version, not_after=until)
    )
    return version


async def withdraw_certificate(q: Queries, outbox: RoutingOutbox, host: str) -> None:
    """Forget ``host``'s certificate (its domain is gone); edges stop serving it."""
    await q.execute("DELETE FROM cert_work WHERE host = %s", (host,))
    if await q.execute("DELETE FROM certificates WHERE host = %s", (host,)):
        await outbox.record(q, lambda seq: CertChanged(seq=seq, host=host, version=0))


async def edge_certificate(db: Database, box: SecretBox, host: str) -> EdgeCert | None:
    """``host``'s certificate with its key unsealed, for an edge; None if there is none."""
    row = await db.one(
        "SELECT host, version, chain_pem, key_sealed FROM certificates WHERE host = %s", (host,)
    )
    if row is None:
        return None
    version = int(row["version"])
    key_pem = box.decrypt(bytes(row["key_sealed"]), key_aad(host, version))
    return EdgeCert(host, version, str(row["chain_pem"]).encode("ascii"), key_pem)


async def cert_refs(q: Queries) -> list[CertRef]:
    rows = await q.all("SELECT host, version, not_after FROM certificates ORDER BY host")
    return [CertRef(r["host"], int(r["version"]), r["not_after"].timestamp()) for r in rows]


async def live_challenges(q: Queries) -> list[AcmeChallenge]:
    rows = await q.all(
        "SELECT token, host, kind, key_authorization, until FROM acme_challenges"
        " WHERE until > now() ORDER BY token"
    )
    return [
        AcmeChallenge(
            r["token"], r["host"], r["kind"], r["key_authorization"], r["until"].timestamp()
        )
        for r in rows
    ]


async def place_challenge(db: Database, outbox: RoutingOutbox, challenge: AcmeChallenge) -> int:
    """Have every edge answer ``challenge``; the routing seq that carries it."""
    async with db.transaction() as q:
        await q.execute(
            "INSERT INTO acme_challenges (token, host, kind, key_authorization, until)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (token) DO UPDATE SET"
            " host = excluded.host, kind = excluded.kind,"
            " key_authorization = excluded.key_authorization, until = excluded.until",
            (
                challenge.token,
                challenge.host,
                challenge.kind,
                challenge.key_authorization,
                dt.datetime.fromtimestamp(challenge.until, dt.UTC),
            ),
        )
        seq = await outbox.record(q, lambda seq: ChallengeSet(seq=seq, challenge=challenge))
    outbox.changed()
    return seq


async def remove_challenge(db: Database, outbox: RoutingOutbox, token: str) -> None:
    async with db.transaction() as q:
        if await q.execute("DELETE FROM acme_challenges WHERE token = %s", (token,)):
            await outbox.record(q, lambda seq: ChallengeRemoved(seq=seq, token=token))
    outbox.changed()


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate, "AB:CD:...", as ``CertStore`` and browsers show it."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()
