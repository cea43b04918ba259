"""Bad input on every endpoint the OpenAPI document lists: malformed JSON, wrong shapes,
unknown fields, huge bodies, SQL metacharacters and another org's ids. Each gets a JSON
error with a 4xx status (never a 500), and nothing is changed by it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.control.conftest import Api

NASTY_ID = "x'; DROP TABLE users; --"


def operations(doc: dict[str, Any]) -> list[tuple[str, str, bool]]:
    return [
        (method.upper(), path, "requestBody" in op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if op.get("security") != []  # sign-up and login are checked separately
        and "edgeKey" not in str(op.get("security"))
    ]


async def _error(resp: Any) -> dict[str, Any]:
    assert resp.status < 500, (resp.method, resp.url, resp.status, await resp.text())
    body = await resp.json()
    assert body["error"]["code"] and body["error"]["message"], body
    return dict(body["error"])


@pytest.fixture
async def doc(api: Api) -> dict[str, Any]:
    return dict(await (await api.client.get("/v1/openapi.json")).json())


async def test_every_endpoint_refuses_bad_bodies_and_ids(api: Api, doc: dict[str, Any]) -> None:
    user = await api.signup()
    headers = {**api.bearer(user["key"]), "Content-Type": "application/json"}
    checked = 0
    for method, path, has_body in operations(doc):
        url = re.sub(r"{[^}]+}", "tok_aaaaaaaaaaaaaaaa", path)
        if has_body:
            for raw, statuses in (
                (b"{not json", {400, 403, 404}),
                (b"[1, 2]", {403, 404, 422}),
                (b'{"surely_not_a_field": 1}', {403, 404, 422}),
                (b'{"name": ' + b"1" * 70_000 + b"}", {403, 413}),
            ):
                resp = await api.client.request(method, url, data=raw, headers=headers)
                err = await _error(resp)
                assert resp.status in statuses, (method, path, raw[:30], resp.status, err)
                checked += 1
        if "{" in path:
            nasty = re.sub(r"{[^}]+}", NASTY_ID.replace("/", ""), path)
            resp = await api.client.request(method, nasty, json={}, headers=api.bearer(user["key"]))
            err = await _error(resp)
            assert resp.status in (403, 404, 405, 422), (method, path, resp.status, err)
            checked += 1
    assert checked > 30
    # Nothing above changed anything: the tables are still there and the user still works.
    me = await api.call("GET", "/v1/me", user["key"])
    assert me["org_id"] == user["org"]["id"]


async def test_without_credentials_every_endpoint_says_401(api: Api, doc: dict[str, Any]) -> None:
    for method, path, _ in operations(doc):
        if path == "/v1/logout":  # signing out without a session is harmless: 200
            continue
        url = re.sub(r"{[^}]+}", "id_1", path)
        resp = await api.client.request(method, url, json={})
        err = await _error(resp)
        assert resp.status == 401, (method, path, resp.status, err)


async def test_another_orgs_ids_are_never_found(api: Api) -> None:
    alice = await api.signup()
    bob = await api.signup()
    name = await api.call("POST", "/v1/names", alice["key"], status=201, json={"name": "alices"})
    token = await api.call("POST", "/v1/tokens", alice["key"], status=201, json={})
    key = await api.call("POST", "/v1/api-keys", alice["key"], status=201, json={})
    for method, path in (
        ("DELETE", f"/v1/names/{name['id']}"),
        ("GET", f"/v1/tokens/{token['id']}"),
        ("DELETE", f"/v1/tokens/{token['id']}"),
        ("DELETE", f"/v1/api-keys/{key['id']}"),
        ("DELETE", f"/v1/members/{alice['user']['id']}"),
        ("PATCH", f"/v1/members/{alice['user']['id']}"),
    ):
        kw: dict[str, Any] = {"json": {"role": "member"}} if method == "PATCH" else {}
        err = await api.call(method, path, bob["key"], status=404, **kw)
        assert alice["org"]["id"] not in str(err)
    # Still there for Alice.
    assert (await api.call("GET", f"/v1/tokens/{token['id']}", alice["key"]))["revoked_at"] is None
    assert len((await api.call("GET", "/v1/names", alice["key"]))["names"]) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"null",
        b'{"email": 5, "password": "x"}',
        b'{"email": "a@b.co"}',
        b'{"email": "a@b.co", "password": "' + b"p" * 2000 + b'"}',
        b'{"email": "\'; DROP TABLE users; --@x.io", "password": "long enough pass"}',
    ],
)
async def test_signup_and_login_refuse_bad_bodies(api: Api, body: bytes) -> None:
    for path in ("/v1/signup", "/v1/login"):
        resp = await api.client.post(path, data=body, headers={"Content-Type": "application/json"})
        err = await _error(resp)
        assert resp.status in (400, 401, 422), (path, resp.status, err)
