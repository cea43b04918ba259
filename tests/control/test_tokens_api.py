"""Tokens issued by control are checked by the edge's verifier with the keys from the
routing snapshot, exactly as an edge does; revocations reach the snapshot."""

from __future__ import annotations

import pytest

from bus.events import RoutingSnapshot, snapshot_decoder
from contracts.basic_auth import check_basic_password
from control.keys import SIGNING
from edge.link.auth import AuthError
from edge.link.token_auth import SignedTokens
from tests.control.conftest import Api

EDGE = {"Authorization": "Bearer edge-key-1"}


async def snapshot(api: Api) -> RoutingSnapshot:
    resp = await api.client.get("/v1/edge/routing", headers=EDGE)
    assert resp.status == 200
    assert resp.content_type == "application/x-msgpack"
    return snapshot_decoder.decode(await resp.read())


async def test_issued_token_verifies_at_the_edge_with_its_claims(api: Api) -> None:
    user = await api.signup()
    # A token may name only hosts its org owns (tests/control/test_isolation_api.py).
    await api.call("POST", "/v1/domains", user["key"], status=201, json={"domain": "*.example.com"})
    made = await api.call(
        "POST",
        "/v1/tokens",
        user["key"],
        status=201,
        json={
            "description": "laptop",
            "protocols": ["http"],
            "hosts": ["*.example.com"],
            "basic_auth": ["ann:secret-password"],
            "ip_deny": ["10.0.0.0/8"],
            "expires_in_days": 30,
        },
    )
    assert made["command"].startswith("burrow config add-authtoken ")
    tokens = SignedTokens((await snapshot(api)).keys)
    identity = tokens.authenticate(made["token"])
    assert identity.account == user["org"]["id"]
    assert identity.token_id == made["id"]
    assert identity.protocols == frozenset({"http"})
    assert identity.allowed_hosts == ("*.example.com",)
    assert identity.ip_deny == ("10.0.0.0/8",)
    assert check_basic_password(identity.basic_auth[0], "ann", "secret-password")
    assert identity.expires_at > 0
    # The listing never shows the token or the password hashes.
    listed = await api.call("GET", "/v1/tokens", user["key"])
    assert made["token"] not in str(listed)
    assert listed["tokens"][0]["claims"]["basic_auth"] == ["ann"]


async def test_revoked_token_is_in_the_snapshot_and_refused(api: Api) -> None:
    user = await api.signup()
    made = await api.call("POST", "/v1/tokens", user["key"], status=201, json={})
    await api.call("DELETE", f"/v1/tokens/{made['id']}", user["key"])
    snap = await snapshot(api)
    assert made["id"] in {r.token_id for r in snap.revoked}
    tokens = SignedTokens(snap.keys)
    tokens.set_revocations(snap.revoked)
    with pytest.raises(AuthError, match="revoked"):
        tokens.authenticate(made["token"])


async def test_rotation_keeps_old_tokens_valid(api: Api) -> None:
    user = await api.signup()
    before = await api.call("POST", "/v1/tokens", user["key"], status=201, json={})
    await api.client.app[SIGNING].rotate()  # type: ignore[union-attr]
    after = await api.call("POST", "/v1/tokens", user["key"], status=201, json={})
    assert before["kid"] != after["kid"]
    tokens = SignedTokens((await snapshot(api)).keys)
    assert tokens.authenticate(before["token"]).token_id == before["id"]
    assert tokens.authenticate(after["token"]).token_id == after["id"]


async def test_other_orgs_tokens_are_not_found(api: Api) -> None:
    alice = await api.signup()
    bob = await api.signup()
    made = await api.call("POST", "/v1/tokens", alice["key"], status=201, json={})
    for method in ("GET", "DELETE"):
        err = await api.call(method, f"/v1/tokens/{made['id']}", bob["key"], status=404)
        assert err["error"]["code"] == "not_found"
    assert (await api.call("GET", "/v1/tokens", bob["key"]))["tokens"] == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"protocols": ["smtp"]}, 422),
        ({"protocols": []}, 422),
        ({"ip_allow": ["300.1.1.1/8"]}, 422),
        ({"tls": {"a.example.com": "sideways"}}, 422),
        ({"basic_auth": ["nopassword"]}, 422),
        ({"expires_in_days": -1}, 422),
        ({"expires_in_days": "soon"}, 422),
        ({"unknown": 1}, 422),
        ({"hosts": ["'; DROP TABLE agent_tokens; --"]}, 422),
    ],
)
async def test_bad_token_requests(api: Api, body: dict[str, object], status: int) -> None:
    user = await api.signup()
    err = await api.call("POST", "/v1/tokens", user["key"], status=status, json=body)
    assert err["error"]["message"]
    assert (await api.call("GET", "/v1/tokens", user["key"]))["tokens"] == []


async def test_edge_endpoint_needs_the_edge_key(api: Api) -> None:
    user = await api.signup()
    for headers in ({}, {"Authorization": "Bearer nope"}, api.bearer(user["key"])):
        resp = await api.client.get("/v1/edge/routing", headers=headers)
        assert resp.status == 401
