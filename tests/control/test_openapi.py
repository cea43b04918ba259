from __future__ import annotations

import re

from aiohttp.test_utils import TestClient


def _routes(client: TestClient) -> set[tuple[str, str]]:
    found = set()
    for route in client.app.router.routes():  # type: ignore[union-attr]
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path") or ""
        if path.startswith("/v1") and route.method != "HEAD":
            found.add((route.method.lower(), re.sub(r"{([^}:]+)(:[^}]*)?}", r"{\1}", path)))
    return found


async def test_document_lists_exactly_the_routes(control: TestClient) -> None:
    resp = await control.get("/v1/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == _routes(control)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"], f"{method} {path} has no summary"
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if ref:
                name = ref["schema"]["$ref"].rsplit("/", 1)[1]
                assert name in doc["components"]["schemas"]


async def test_unknown_routes_and_methods_answer_json(control: TestClient) -> None:
    resp = await control.get("/v1/nothing-here")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    resp = await control.put("/v1/signup")
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"
    resp = await control.get("/v1/tokens")
    assert resp.status == 401
    assert "API key" in (await resp.json())["error"]["message"]


async def test_metrics_count_requests_by_route_template(control: TestClient) -> None:
    for _ in range(3):
        await control.get("/v1/tokens/tok_nothing")
    body = await (await control.get("/metrics")).text()
    line = next(
        row
        for row in body.splitlines()
        if row.startswith("burrow_control_requests_total{")
        and 'route="/v1/tokens/{token_id}"' in row
    )
    assert 'status_class="4xx"' in line
    assert float(line.rsplit(" ", 1)[1]) == 3.0
    assert "tok_nothing" not in body
    assert (await control.get("/healthz")).status == 200
    assert (await control.get("/readyz")).status == 200
