"""NUL and other control characters in any string the API takes (body fields, list items,
path ids, query values) are a 422 that names the field, never a 500, and change nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.control.conftest import Api

CONTROL = st.sampled_from([chr(c) for c in (*range(32), 127)])


def _string_fields(doc: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(method, path, field, is_list) for every string or list-of-strings body field."""
    schemas = doc["components"]["schemas"]
    found = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            name = ref.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1]
            for field, prop in schemas.get(name, {}).get("properties", {}).items():
                kinds = [prop, *prop.get("anyOf", [])]
                if any(k.get("type") == "string" for k in kinds):
                    found.append((method.upper(), path, field, False))
                elif any(k.get("items", {}).get("type") == "string" for k in kinds):
                    found.append((method.upper(), path, field, True))
    return found


@pytest.fixture
async def doc(api: Api) -> dict[str, Any]:
    return dict(await (await api.client.get("/v1/openapi.json")).json())


async def test_every_string_body_field_refuses_control_characters(
    api: Api, doc: dict[str, Any]
) -> None:
    user = await api.signup()
    fields = _string_fields(doc)
    assert {("POST", "/v1/signup", "email", False), ("POST", "/v1/tokens", "basic_auth", True)} <= {
        *fields
    }
    for method, path, field, is_list in fields:
        url = re.sub(r"{[^}]+}", "id_1", path)
        for char in ("\x00", "\x1b", "\n"):
            if field == "password" and char != "\x00":
                continue  # a password may hold any character but NUL
            text = f"user{char}name@example.com"
            body = {field: [text] if is_list else text}
            resp = await api.client.request(method, url, json=body, headers=api.bearer(user["key"]))
            got = await resp.json()
            where = f"{field}[0]" if is_list else field
            assert resp.status == 422, (method, path, field, repr(char), resp.status, got)
            assert got["error"]["field"] == where, got
            assert where in got["error"]["message"]
    assert (await api.call("GET", "/v1/me", user["key"]))["org_id"] == user["org"]["id"]


async def test_nul_in_signup_login_and_basic_auth_user_is_named(api: Api) -> None:
    user = await api.signup()
    for path, body, field in (
        ("/v1/signup", {"email": "a\x00b@example.com", "password": "long enough pass"}, "email"),
        ("/v1/login", {"email": "a\x00b@example.com", "password": "x"}, "email"),
        ("/v1/login", {"email": "a@example.com", "password": "x\x00"}, "password"),
        ("/v1/tokens", {"basic_auth": ["us\x00er:secretpass"]}, "basic_auth[0]"),
        ("/v1/members", {"email": "\x00@example.com"}, "email"),
        ("/v1/domains", {"domain": "app\x00.example.com"}, "domain"),
    ):
        resp = await api.client.post(path, json=body, headers=api.bearer(user["key"]))
        got = await resp.json()
        assert resp.status == 422, (path, got)
        assert got["error"]["field"] == field


async def test_path_ids_and_query_values_with_control_characters(
    api: Api, doc: dict[str, Any]
) -> None:
    user = await api.signup()
    for path, ops in doc["paths"].items():
        params = re.findall(r"{([^}]+)}", path)
        if not params:
            continue
        url = re.sub(r"{[^}]+}", "id%00x", path)
        for method in ops:
            resp = await api.client.request(
                method.upper(), url, json={}, headers=api.bearer(user["key"])
            )
            got = await resp.json()
            assert resp.status == 422, (method, path, resp.status, got)
            assert got["error"]["field"] in params
    resp = await api.client.get("/v1/me?org=a%01b", headers=api.bearer(user["key"]))
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "org"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(before=st.text(max_size=8), char=CONTROL, after=st.text(max_size=8), nest=st.booleans())
async def test_any_control_character_anywhere_is_a_422(
    api: Api, before: str, char: str, after: str, nest: bool
) -> None:
    text = before + char + after
    body: dict[str, Any] = {"description": "ok", "hosts": ["a.tunnels.test", text]}
    if nest:
        body = {"description": "ok", "tls": {"a.tunnels.test": text}}
    resp = await api.client.post("/v1/signup", json={"email": text, "password": "x" * 12})
    assert resp.status in (400, 422), await resp.text()
    if resp.status == 422 and "field" in (err := (await resp.json())["error"]):
        assert err["field"] in ("email", "password")
    resp = await api.client.post("/v1/tokens", json=body)
    # No credentials: a 401 before or a 422 from the check; never a 500.
    assert resp.status in (401, 422), await resp.text()
