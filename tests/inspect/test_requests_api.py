"""GET /v1/requests filters and pages newest first; the detail shows headers (credentials
masked) and bodies, decoded on request; DELETE clears one tunnel's captures."""

from __future__ import annotations

import base64
import gzip
import time
import zlib
from typing import Any

import brotli
from aiohttp.test_utils import TestClient

from control.db import Database
from control.keys import DB
from control.store import captures
from tests.control.conftest import Api
from tests.inspect.support import capture


async def store(client: TestClient, *records: Any) -> None:
    db: Database = client.app[DB]  # type: ignore[index]
    async with db.transaction() as q:
        await captures.store(q, records)


async def test_filters_and_cursor_paging_newest_first(api: Api) -> None:
    user = await api.signup()
    other = await api.signup()
    org = user["org"]["id"]
    now = time.time() - 100
    records = []
    for n in range(30):
        records.append(
            capture(
                org,
                n,
                started=now + n,
                status=(200, 404, 503)[n % 3],
                method=b"POST" if n % 5 == 0 else b"GET",
                target=(b"/api/items/%d" % n) if n % 2 else (b"/static/app%d.js" % n),
                hostname="a.tunnels.test" if n < 20 else "b.tunnels.test",
            )
        )
    await store(api.client, *records)
    await store(api.client, capture(other["org"]["id"], 99))

    async def ids(query: str) -> list[str]:
        body = await api.call("GET", f"/v1/requests{query}", user["key"])
        return [r["request_id"] for r in body["requests"]]

    everything = await ids("?limit=500")
    assert everything == [f"rq{n}" for n in reversed(range(30))]  # newest first, own org only
    assert await ids("?status=5xx&limit=500") == [f"rq{n}" for n in reversed(range(2, 30, 3))]
    assert await ids("?status=404&host=b.tunnels.test") == ["rq28", "rq25", "rq22"]
    assert await ids("?method=post") == ["rq25", "rq20", "rq15", "rq10", "rq5", "rq0"]
    assert await ids("?path=/static/&host=a.tunnels.test&limit=3") == ["rq18", "rq16", "rq14"]
    assert await ids("?q=APP1") == ["rq18", "rq16", "rq14", "rq12", "rq10"]
    since = now + 25
    assert await ids(f"?since={since}&until={now + 27.5}") == ["rq27", "rq26", "rq25"]

    pages: list[str] = []
    cursor = ""
    for _ in range(10):
        body = await api.call("GET", f"/v1/requests?limit=7{cursor}", user["key"])
        pages += [r["request_id"] for r in body["requests"]]
        if body["next_cursor"] is None:
            break
        cursor = f"&cursor={body['next_cursor']}"
    assert pages == everything

    for bad in ("?status=5x", "?limit=0", "?since=yesterday", "?cursor=%%%"):
        answer = await api.call("GET", f"/v1/requests{bad}", user["key"], status=422)
        assert answer["error"]["code"] == "invalid"


async def test_detail_masks_credentials_and_decodes_bodies_within_bounds(api: Api) -> None:
    user = await api.signup()
    org = user["org"]["id"]
    text = b'{"hello": "world"}' * 50
    encodings = {
        "gzip": gzip.compress(text),
        "br": brotli.compress(text),
        "deflate": zlib.compress(text),
    }
    records = {}
    for name, body in encodings.items():
        records[name] = capture(
            org,
            response_headers=[(b"content-encoding", name.encode()), (b"set-cookie", b"sid=1")],
            response_prefix=body,
            response_size=len(body),
        )
    binary = capture(org, response_prefix=b"\x00\xff\x10", response_size=3)
    await store(api.client, *records.values(), binary)

    for name, record in records.items():
        raw = await api.call("GET", f"/v1/requests/{record.id}", user["key"])
        assert raw["request"]["headers"][1] == ["authorization", "[masked]"]
        assert ["set-cookie", "[masked]"] in raw["response"]["headers"]
        assert base64.b64decode(raw["response"]["body"]["base64"]) == encodings[name]
        decoded = await api.call("GET", f"/v1/requests/{record.id}?decoded=1", user["key"])
        assert decoded["response"]["body"]["text"] == text.decode(), name
        assert decoded["response"]["body"]["content_encoding"] == name
    shown = await api.call("GET", f"/v1/requests/{binary.id}", user["key"])
    assert base64.b64decode(shown["response"]["body"]["base64"]) == b"\x00\xff\x10"

    # A gzip bomb is cut at the bound, not inflated whole.
    bomb = gzip.compress(b"\x00" * (50 * 1024 * 1024))
    exploded = capture(
        org,
        response_headers=[(b"content-encoding", b"gzip")],
        response_prefix=bomb,
        response_size=len(bomb),
        body_limit=len(bomb),
    )
    await store(api.client, exploded)
    resp = await api.call("GET", f"/v1/requests/{exploded.id}?decoded=1", user["key"])
    assert len(resp["response"]["body"]["text"]) <= 1024 * 1024
    assert "cut at" in resp["response"]["body"]["decode_note"]


async def test_clearing_a_tunnels_captures_leaves_the_others(api: Api) -> None:
    user = await api.signup()
    org = user["org"]["id"]
    await store(
        api.client,
        capture(org, 1, hostname="keep.tunnels.test"),
        capture(org, 2, hostname="clear.tunnels.test"),
        capture(org, 3, hostname="clear.tunnels.test"),
    )
    cleared = await api.call("DELETE", "/v1/requests?host=clear.tunnels.test", user["key"])
    assert cleared == {"deleted": 2}
    left = await api.call("GET", "/v1/requests", user["key"])
    assert [r["request_id"] for r in left["requests"]] == ["rq1"]
