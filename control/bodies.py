"""Request bodies: JSON decoded straight into msgspec structs, so a wrong type or a missing
field becomes a 422 that names the field."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from aiohttp import web

from control.errors import ApiError

T = TypeVar("T")

# A body handed over in-process, in place of the request's own (the console acting through
# an API handler on a clone of the browser's request, whose own body is the form).
IN_PROCESS_BODY: web.RequestKey[bytes] = web.RequestKey("in_process_body")


async def read_json(request: web.Request, kind: type[T]) -> T:
    ctype = request.content_type
    if ctype not in ("application/json", "") and not ctype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    raw = request.get(IN_PROCESS_BODY)
    if raw is None:
        raw = await request.read()  # bounded by the app's client_max_size (413 past it)
    if not raw.strip():
        raw = b"{}"
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "invalid", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from exc


def to_json(value: object) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), content_type="application/json")


def to_json_status(value: object, status: int) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value), content_type="application/json", status=status
    )


def to_body(value: object, kind: type[T]) -> T:
    """``value`` (a body built in-process, e.g. from a console form) as ``kind``, refused as
    ``read_json`` refuses a JSON body that does not fit."""
    try:
        return msgspec.convert(value, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "invalid", str(exc)) from exc
