"""The OpenAPI document, built from the routes themselves: each handler carries a short
description (``@describe``) and the msgspec type of its body, so the document cannot list a
route that does not exist or miss one that does (a test checks both ways)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from aiohttp import web

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class RouteDoc:
    summary: str
    body: type | None = None
    auth: str = "org"  # "none" | "user" | "org" | "admin" | "edge"
    status: int = 200


def describe(
    summary: str, *, body: type | None = None, auth: str = "org", status: int = 200
) -> Callable[[F], F]:
    def mark(handler: F) -> F:
        handler.__route_doc__ = RouteDoc(summary, body, auth, status)  # type: ignore[attr-defined]
        return handler

    return mark


_PARAM = re.compile(r"{([^}:]+)(:[^}]*)?}")


def build_document(app: web.Application, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    bodies: list[type] = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if not path or not path.startswith("/v1") or route.method == "HEAD":
            continue
        doc: RouteDoc | None = getattr(route.handler, "__route_doc__", None)
        if doc is None:
            continue
        op: dict[str, Any] = {
            "summary": doc.summary,
            "operationId": f"{route.method.lower()}_{route.handler.__name__}",
            "responses": {
                str(doc.status): {"description": "success"},
                "default": {
                    "description": "an error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            },
        }
        params = [
            {"name": m.group(1), "in": "path", "required": True, "schema": {"type": "string"}}
            for m in _PARAM.finditer(path)
        ]
        if params:
            op["parameters"] = params
        if doc.auth == "none":
            op["security"] = []
        elif doc.auth == "edge":
            op["security"] = [{"edgeKey": []}]
        if doc.body is not None:
            bodies.append(doc.body)
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{doc.body.__name__}"}
                    }
                },
            }
        paths.setdefault(_PARAM.sub(r"{\1}", path), {})[route.method.lower()] = op
    _, components = msgspec.json.schema_components(
        bodies, ref_template="#/components/schemas/{name}"
    )
    components["Error"] = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                "required": ["code", "message"],
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Burrow control API", "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key bk.…"},
                "session": {"type": "apiKey", "in": "cookie", "name": "burrow_session"},
                "edgeKey": {"type": "http", "scheme": "bearer", "description": "an edge key"},
            },
        },
        "security": [{"apiKey": []}, {"session": []}],
    }
