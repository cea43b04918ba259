"""The console acts through the API's own handlers: each page or form calls the handler of
the ``/v1`` route that does the same thing, on an internal request that carries the user's
session cookie. Authorization, validation, auditing and the routing outbox therefore run
exactly as they do for an API client; the console adds no second path to any of them.

An internal request is a clone of the browser's request with the API's method, path, match
and JSON body, whose app is the control app (the console is a sub-app of it). aiohttp
cannot clone a request whose body was read, so ``console.guard`` takes the blank clone
before it reads the form.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from aiohttp import web
from yarl import URL

from control.errors import ApiError, control_character_problem
from control.principals import ORG_HEADER

ApiHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The console keeps the org the user picked in this cookie and hands it to the API as the
# Burrow-Org header.
ORG_COOKIE = "burrow_org"
# Set on a console request once its form's CSRF token checked out; the internal request then
# carries the header the API's same-site rule asks of cookie-authenticated changes.
CSRF_CHECKED: web.RequestKey[bool] = web.RequestKey("console_csrf_checked")
BLANK: web.RequestKey[web.Request] = web.RequestKey("console_blank_request")

_DROPPED_HEADERS = frozenset(
    {"authorization", "content-type", "content-length", "transfer-encoding", "x-requested-with"}
)


def _refuse_control_characters(value: object, where: str = "body") -> None:
    """The API's rule for control characters, applied to a body built from a form (the
    API's middleware sees only requests under /v1)."""
    if isinstance(value, str):
        problem = control_character_problem(where, value)
        if problem is not None:
            raise problem
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_control_characters(str(key), where)
            _refuse_control_characters(item, str(key))
    elif isinstance(value, list):
        for item in value:
            _refuse_control_characters(item, where)


def internal_request(
    request: web.Request,
    method: str,
    path: str,
    *,
    match: Mapping[str, str] | None = None,
    body: object = None,
    query: Mapping[str, str] | None = None,
) -> web.Request:
    base = request.get(BLANK, request)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED_HEADERS}
    headers["Content-Type"] = "application/json"
    org = request.cookies.get(ORG_COOKIE, "")
    if org and len(org) <= 64 and org.isascii() and org.isprintable():
        headers[ORG_HEADER] = org
    if request.get(CSRF_CHECKED):
        headers["X-Requested-With"] = "burrow-console"
    internal = base.clone(
        method=method, rel_url=URL(path).with_query(dict(query or {})), headers=headers
    )
    info = web.UrlMappingMatchInfo(dict(match or {}), request.match_info.route)
    info.add_app(request.match_info.apps[0])  # the control app: handlers use request.app
    info.freeze()
    internal._match_info = info
    if body is not None:
        _refuse_control_characters(body)
        internal._read_bytes = msgspec.json.encode(body)
    return internal


async def call(
    request: web.Request,
    handler: ApiHandler,
    method: str,
    path: str,
    *,
    match: Mapping[str, str] | None = None,
    body: object = None,
    query: Mapping[str, str] | None = None,
) -> Any:
    """The decoded JSON answer of ``handler``; its ``ApiError`` propagates as it is."""
    response = await call_raw(request, handler, method, path, match=match, body=body, query=query)
    assert isinstance(response, web.Response) and isinstance(response.body, bytes)
    return msgspec.json.decode(response.body)


async def call_raw(
    request: web.Request,
    handler: ApiHandler,
    method: str,
    path: str,
    *,
    match: Mapping[str, str] | None = None,
    body: object = None,
    query: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    internal = internal_request(request, method, path, match=match, body=body, query=query)
    response = await handler(internal)
    if response.status >= 400:  # handlers raise ApiError; this is only a safety net
        raise ApiError(response.status, "error", response.reason or "the request failed")
    return response
