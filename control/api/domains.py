"""Custom domains: add one, prove control of it through DNS, route it to a reserved name.

A domain is claimed by one org across the installation (the first to add it), but edges route
it only once it is verified. An unverified claim lasts ``domain_claim_days``; after that
another org may claim the name (the stale claim is removed, on the bus too), so nobody can
sit on a domain they cannot prove. Public suffixes ("co.uk", "github.io") are refused, and
an operator can release any domain (``POST /v1/admin/domains/{id}/release``).

Every change edges enforce (verified, tls_mode, target) is recorded as a ``DomainSet``; a
removal as a ``DomainRemoved``. Edges keep unverified domains in their table too, so an agent
of another org cannot bind a name someone is verifying.

Verification is kept once won: a later failed check is reported (``last_check_error``) but
does not unroute a live domain. Switching a domain verified by CNAME to strict mode does
unverify it, because strict mode accepts only the TXT proof.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import msgspec
from aiohttp import web

from billing.plans import require_room
from bus.events import DomainRemoved, DomainSet
from certs.records import withdraw_certificate
from control import principals
from control.api.names import host_for
from control.bodies import read_json, to_json, to_json_status
from control.config import ControlConfig
from control.db import Queries, Row
from control.dns_check import records_to_create
from control.domain_names import DomainNameError, is_public_suffix, is_under, normalize_domain
from control.errors import ApiError, not_found
from control.ids import new_id, new_secret
from control.keys import CONFIG, DB, OUTBOX, VERIFIER
from control.openapi import describe
from control.routing_outbox import domain_route
from control.store.accounts import audit

routes = web.RouteTableDef()

MAX_DOMAINS_PER_ORG = 100
TlsMode = Literal["terminate", "passthrough"]


class DomainBody(msgspec.Struct, forbid_unknown_fields=True):
    domain: str
    # Strict: only the TXT record proves control. Relaxed: a CNAME to the edge also does.
    strict: bool = True
    tls_mode: TlsMode = "terminate"


class DomainPatch(msgspec.Struct, forbid_unknown_fields=True):
    tls_mode: TlsMode | msgspec.UnsetType = msgspec.UNSET
    # A reserved name of the org ("app" or "app.<base domain>"); null or "" clears it.
    target: str | msgspec.UnsetType | None = msgspec.UNSET
    strict: bool | msgspec.UnsetType = msgspec.UNSET


_COLUMNS = (
    "id, host, verification_token, strict, verified_at, verified_by, last_check_at,"
    " last_check_error, target_name, tls_mode, tls_status, tls_not_after,"
    " tls_last_checked_at, tls_last_error, created_at, org_id"
)


def _public(row: Row, config: ControlConfig) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("org_id", "target_name")}
    out["target"] = row["target_name"]
    out["verified"] = row["verified_at"] is not None
    out["claim_expires_at"] = (
        None if out["verified"] else row["created_at"] + timedelta(days=config.domain_claim_days)
    )
    out["records"] = records_to_create(
        row["host"], row["verification_token"], config.cname_target, row["strict"]
    )
    return out


def _domain_id(request: web.Request) -> str:
    return request.match_info["domain_id"][:64]


def _checked_host(text: str, strict: bool, config: ControlConfig) -> str:
    try:
        host = normalize_domain(text, allow_wildcard=True)
    except DomainNameError as exc:
        raise ApiError(422, "invalid", str(exc)) from None
    wildcard = host.startswith("*.")
    bare = host[2:] if wildcard else host
    base = config.base_domain
    # A wildcard one level above the base would also match the base domain itself.
    if is_under(bare, base) or (wildcard and base.partition(".")[2] == bare):
        raise ApiError(
            422,
            "reserved_domain",
            f"{host} is under {base}, which Burrow serves itself; reserve a name with "
            "POST /v1/names instead",
        )
    if is_public_suffix(bare):
        raise ApiError(
            422,
            "public_suffix",
            f"{bare} is a public suffix, under which anyone may register names; add a name "
            f"you registered under it, such as app.example.{bare}",
        )
    if bare == config.cname_target:
        raise ApiError(422, "reserved_domain", f"{host} is the edge's own host name")
    if wildcard and not strict:
        raise ApiError(
            422,
            "invalid",
            "a wildcard domain must use strict mode: only the TXT record can prove "
            "control of every name under it",
        )
    return host


async def _drop_expired_claim(
    request: web.Request, q: Queries, host: str, org_id: str, config: ControlConfig
) -> None:
    """Remove another org's unverified claim on ``host`` once it is past its days, so the
    insert that follows can take the name. The org's own stale claim stays as it is (with
    its TXT token): it may still verify it while nobody else has taken the name."""
    stale = await q.one(
        "DELETE FROM domains WHERE host = %s AND org_id <> %s AND verified_at IS NULL"
        " AND created_at < now() - make_interval(secs => %s) RETURNING org_id",
        (host, org_id, config.domain_claim_days * 86400),
    )
    if stale is not None:
        await request.app[OUTBOX].record(q, lambda seq: DomainRemoved(seq=seq, host=host))
        await audit(q, stale["org_id"], "system", "domain.claim_expired", host)


async def remove_domain_row(
    request: web.Request, q: Queries, row: Row, actor: str, action: str = "domain.remove"
) -> None:
    """Tell edges ``row`` is gone and audit it under its org; the caller deleted it."""
    host = str(row["host"])
    # Edges ignore a removal of a host they never knew, so it is always recorded.
    await request.app[OUTBOX].record(q, lambda seq: DomainRemoved(seq=seq, host=host))
    await withdraw_certificate(q, request.app[OUTBOX], host)
    await audit(q, row["org_id"], actor, action, host)


async def _record_set(request: web.Request, q: Queries, row: Row) -> None:
    route = domain_route(row)
    await request.app[OUTBOX].record(q, lambda seq: DomainSet(seq=seq, route=route))


@routes.get("/v1/domains")
@describe("Custom domains of the organization, with the DNS records each needs.")
async def list_domains(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    rows = await request.app[DB].all(
        f"SELECT {_COLUMNS} FROM domains WHERE org_id = %s ORDER BY host", (who.org_id,)
    )
    config = request.app[CONFIG]
    return to_json({"domains": [_public(r, config) for r in rows]})


@routes.post("/v1/domains")
@describe(
    "Add a custom domain; the response lists the DNS records to create before verifying.",
    body=DomainBody,
    status=201,
)
async def add_domain(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    who.require("admin")
    body = await read_json(request, DomainBody)
    config = request.app[CONFIG]
    host = _checked_host(body.domain, body.strict, config)
    outbox = request.app[OUTBOX]
    async with request.app[DB].transaction() as q:
        # One writer per org at a time, so the cap holds under concurrent requests.
        await q.execute("SELECT 1 FROM orgs WHERE id = %s FOR UPDATE", (who.org_id,))
        count = await q.value("SELECT count(*) FROM domains WHERE org_id = %s", (who.org_id,))
        if count >= MAX_DOMAINS_PER_ORG:
            raise ApiError(
                409, "limit", f"an organization may add {MAX_DOMAINS_PER_ORG} domains; remove one"
            )
        await require_room(q, who.org_id, "custom_domains")  # the plan's limit: 402
        await _drop_expired_claim(request, q, host, who.org_id, config)
        row = await q.one(
            f"INSERT INTO domains (id, org_id, host, verification_token, strict, tls_mode)"
            f" VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (host) DO NOTHING"
            f" RETURNING {_COLUMNS}",
            (new_id("dom"), who.org_id, host, new_secret(16), body.strict, body.tls_mode),
        )
        if row is None:
            owner = await q.value("SELECT org_id FROM domains WHERE host = %s", (host,))
            if owner == who.org_id:
                raise ApiError(409, "taken", f"{host} is already added to this organization")
            # Never say which org holds it.
            raise ApiError(
                409,
                "taken",
                f"{host} was already added by an organization; if it is yours, ask the "
                "operator to release it",
            )
        await _record_set(request, q, row)
        await audit(q, who.org_id, who.actor, "domain.add", host)
    outbox.changed()
    return to_json_status(_public(row, config), 201)


@routes.get("/v1/domains/{domain_id}")
@describe("One custom domain, with the DNS records it needs.")
async def get_domain(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    row = await request.app[DB].one(
        f"SELECT {_COLUMNS} FROM domains WHERE id = %s AND org_id = %s",
        (_domain_id(request), who.org_id),
    )
    if row is None:
        raise not_found("domain")
    return to_json(_public(row, request.app[CONFIG]))


@routes.delete("/v1/domains/{domain_id}")
@describe("Remove a custom domain; edges stop routing it within seconds.")
async def remove_domain(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    who.require("admin")
    outbox = request.app[OUTBOX]
    async with request.app[DB].transaction() as q:
        row = await q.one(
            f"DELETE FROM domains WHERE id = %s AND org_id = %s RETURNING {_COLUMNS}",
            (_domain_id(request), who.org_id),
        )
        if row is None:
            raise not_found("domain")
        await remove_domain_row(request, q, row, who.actor)
    outbox.changed()
    return to_json(_public(row, request.app[CONFIG]))


@routes.post("/v1/domains/{domain_id}/verify")
@describe(
    "Check the domain's DNS records now. A failed check is still a 200, with verified false "
    "and check.detail saying what DNS showed."
)
async def verify_domain(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    who.require("admin")
    db = request.app[DB]
    domain_id = _domain_id(request)
    before = await db.one(
        f"SELECT {_COLUMNS} FROM domains WHERE id = %s AND org_id = %s", (domain_id, who.org_id)
    )
    if before is None:
        raise not_found("domain")
    # DNS can take seconds: ask it outside the transaction, then apply under a row lock.
    result = await request.app[VERIFIER].verify(
        before["host"], before["verification_token"], before["strict"]
    )
    ok, method, detail = result.ok, result.method, result.detail
    outbox = request.app[OUTBOX]
    async with db.transaction() as q:
        current = await q.one(
            "SELECT strict, verification_token FROM domains WHERE id = %s AND org_id = %s"
            " FOR UPDATE",
            (domain_id, who.org_id),
        )
        if current is None:
            raise not_found("domain")
        if ok and current["strict"] != before["strict"]:
            ok, method = False, None
            detail = "the domain's mode changed during the check; verify again"
        row = await q.one(
            f"UPDATE domains SET last_check_at = now(), last_check_error = %(error)s,"
            f" verified_at = CASE WHEN %(ok)s THEN coalesce(verified_at, now())"
            f"   ELSE verified_at END,"
            f" verified_by = CASE WHEN %(ok)s THEN %(method)s ELSE verified_by END"
            f" WHERE id = %(id)s RETURNING {_COLUMNS}",
            {"error": None if ok else detail, "ok": ok, "method": method, "id": domain_id},
        )
        assert row is not None
        if ok and before["verified_at"] is None:
            await _record_set(request, q, row)
            await audit(q, who.org_id, who.actor, "domain.verify", str(row["host"]))
    outbox.changed()
    public = _public(row, request.app[CONFIG])
    public["check"] = {"ok": ok, "method": method, "detail": detail}
    return to_json(public)


@routes.patch("/v1/domains/{domain_id}")
@describe(
    "Change a domain's TLS mode, strictness, or the reserved name it routes to.",
    body=DomainPatch,
)
async def update_domain(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    who.require("admin")
    body = await read_json(request, DomainPatch)
    config = request.app[CONFIG]
    target: str | msgspec.UnsetType | None = body.target
    if isinstance(target, str):
        target = host_for(target, config.base_domain) if target.strip() else None
    outbox = request.app[OUTBOX]
    async with request.app[DB].transaction() as q:
        row = await q.one(
            f"SELECT {_COLUMNS} FROM domains WHERE id = %s AND org_id = %s FOR UPDATE",
            (_domain_id(request), who.org_id),
        )
        if row is None:
            raise not_found("domain")
        changes: dict[str, Any] = {}
        if body.tls_mode is not msgspec.UNSET and body.tls_mode != row["tls_mode"]:
            changes["tls_mode"] = body.tls_mode
        if target is not msgspec.UNSET and target != row["target_name"]:
            if target is not None and not await q.value(
                "SELECT 1 FROM reserved_names WHERE host = %s AND org_id = %s",
                (target, who.org_id),
            ):
                raise ApiError(
                    422,
                    "invalid",
                    f"this organization has not reserved {target}; reserve it with "
                    "POST /v1/names first",
                )
            changes["target_name"] = target
        if body.strict is not msgspec.UNSET and body.strict != row["strict"]:
            if not body.strict and row["host"].startswith("*."):
                raise ApiError(422, "invalid", "a wildcard domain must use strict mode")
            changes["strict"] = body.strict
            if body.strict and row["verified_by"] == "cname":
                # Strict mode accepts only the TXT proof: the CNAME one no longer counts.
                changes["verified_at"] = None
                changes["verified_by"] = None
        if changes:
            assignments = ", ".join(f"{column} = %({column})s" for column in changes)
            updated = await q.one(
                f"UPDATE domains SET {assignments} WHERE id = %(id)s RETURNING {_COLUMNS}",
                {**changes, "id": row["id"]},
            )
            assert updated is not None
            if domain_route(updated) != domain_route(row):
                await _record_set(request, q, updated)
            if changes.get("tls_mode") == "passthrough":
                # The agent's service does TLS now: no edge presents a certificate for it.
                await withdraw_certificate(q, outbox, str(row["host"]))
            await audit(q, who.org_id, who.actor, "domain.update", str(row["host"]))
            row = updated
    outbox.changed()
    return to_json(_public(row, config))
