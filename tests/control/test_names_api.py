from __future__ import annotations

import pytest

from bus.events import snapshot_decoder
from tests.control.conftest import Api


async def names_in_snapshot(api: Api) -> dict[str, str]:
    resp = await api.client.get("/v1/edge/routing", headers={"Authorization": "Bearer edge-key-1"})
    snap = snapshot_decoder.decode(await resp.read())
    return {c.host: c.org for c in snap.names}


async def test_reserve_list_release(api: Api) -> None:
    user = await api.signup()
    made = await api.call("POST", "/v1/names", user["key"], status=201, json={"name": "Shop-1"})
    assert made["host"] == "shop-1.tunnels.test"
    assert (await names_in_snapshot(api))["shop-1.tunnels.test"] == user["org"]["id"]
    listed = await api.call("GET", "/v1/names", user["key"])
    assert [n["host"] for n in listed["names"]] == ["shop-1.tunnels.test"]
    await api.call("DELETE", f"/v1/names/{made['id']}", user["key"])
    assert "shop-1.tunnels.test" not in await names_in_snapshot(api)


async def test_a_name_belongs_to_one_org(api: Api) -> None:
    alice = await api.signup()
    bob = await api.signup()
    made = await api.call("POST", "/v1/names", alice["key"], status=201, json={"name": "taken-one"})
    err = await api.call(
        "POST", "/v1/names", bob["key"], status=409, json={"name": "taken-one.tunnels.test"}
    )
    assert err["error"]["code"] == "taken"
    await api.call("DELETE", f"/v1/names/{made['id']}", bob["key"], status=404)


@pytest.mark.parametrize(
    "name",
    ["-bad", "a" * 64, "two.labels", "app.other.test", "'; DROP TABLE reserved_names; --", ""],
)
async def test_bad_names(api: Api, name: str) -> None:
    user = await api.signup()
    err = await api.call("POST", "/v1/names", user["key"], status=422, json={"name": name})
    assert "valid name" in err["error"]["message"]


async def test_malformed_bodies(api: Api) -> None:
    user = await api.signup()
    headers = {**api.bearer(user["key"]), "Content-Type": "application/json"}
    resp = await api.client.post("/v1/names", data=b"{not json", headers=headers)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_json"
    resp = await api.client.post("/v1/names", data=b'{"name": 5}', headers=headers)
    assert resp.status == 422
    assert "$.name" in (await resp.json())["error"]["message"]
    resp = await api.client.post(
        "/v1/names", data=b'{"name": "' + b"a" * 100_000 + b'"}', headers=headers
    )
    assert resp.status == 413
    resp = await api.client.post(
        "/v1/names",
        data=b"name=x",
        headers={**api.bearer(user["key"]), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 415


async def test_members_cannot_reserve(api: Api) -> None:
    user = await api.signup()
    member = await api.call(
        "POST", "/v1/api-keys", user["key"], status=201, json={"role": "member"}
    )
    await api.call("POST", "/v1/names", member["key"], status=403, json={"name": "nope"})
