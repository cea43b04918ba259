"""API errors: every failure is a JSON body ``{"error": {"code", "message"}}`` with a status,
whether it came from our handlers, from aiohttp (404, 405, 413) or from a bug (500, logged
with an id the user can quote)."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec
from aiohttp import web

from control.db import DatabaseUnavailable
from control.signing_keys import SigningKeyError

log = logging.getLogger("burrow.control")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def not_found(what: str) -> ApiError:
    # Another org's ids get exactly this too: never a hint that the row exists.
    return ApiError(404, "not_found", f"no {what} with that id in this organization")


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    return web.json_response({"error": body}, status=status)


_AIOHTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message, **exc.extra)
        if exc.status == 429 and "retry_after" in exc.extra:
            response.headers["Retry-After"] = str(exc.extra["retry_after"])
        return response
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/v1"):
            raise
        message = exc.text or exc.reason
        if exc.status == 404:
            message = f"no API route {request.method} {request.path}; see /v1/openapi.json"
        elif exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        elif exc.status == 413:
            message = "the request body is too large"
        return error_response(
            exc.status, _AIOHTTP_CODES.get(exc.status, "error"), message.removeprefix("413: ")
        )
    except SigningKeyError as exc:
        log.error("cannot sign: %s", exc)
        return error_response(503, "signing_unavailable", str(exc))
    except DatabaseUnavailable as exc:
        log.warning("database unavailable: %s", exc)
        return error_response(503, "unavailable", "the database is unavailable; retry shortly")
    except Exception:
        incident = secrets.token_hex(6)
        log.exception("internal error %s on %s %s", incident, request.method, request.path)
        return error_response(
            500, "internal", f"internal error; quote {incident} when reporting it"
        )


# C0 controls and DEL. PostgreSQL refuses NUL in text outright (a 500 before this check);
# the others have no place in an email, a name, an id or a host, and turn up in logs and
# terminals as escape sequences.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A password may hold any character but NUL (it is hashed, never stored or shown as text).
_ANY_CONTROL_ALLOWED = frozenset({"password"})
WEBHOOK_PATHS = "/v1/billing/webhooks/"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _strings(value: object) -> Iterator[tuple[str, str]]:
    """Every string in a decoded JSON value with where it sits ("hosts[0]", "tls.a.b").
    A stack, not recursion: the depth is whatever the client sent."""
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where or "body", item
        elif isinstance(item, dict):
            stack.extend((f"{where}.{k}" if where else str(k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(item))


def control_character_problem(field: str, text: str) -> ApiError | None:
    """A 422 naming ``field`` when ``text`` holds a character no API string may hold."""
    if field.rsplit(".", 1)[-1] in _ANY_CONTROL_ALLOWED:
        char = "\x00" if "\x00" in text else ""
    else:
        found = _CONTROL.search(text)
        char = found.group() if found else ""
    if not char:
        return None
    return ApiError(
        422,
        "invalid",
        f"{field} holds the control character U+{ord(char):04X}; send printable text",
        field=field,
    )


@web.middleware
async def refuse_control_characters(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Path ids, query values and JSON body strings with control characters get a 422 that
    names the field, on every route at once, before a handler or the database sees them."""
    if request.path.startswith("/v1"):
        for name, value in (*request.match_info.items(), *request.query.items()):
            problem = control_character_problem(name, value)
            if problem is not None:
                raise problem
        # A provider's webhook is checked on its raw bytes before anything parses them; a
        # string it carries is the provider's to send, and a 422 would only make it retry.
        webhook = request.path.startswith(WEBHOOK_PATHS)
        if request.method in _BODY_METHODS and request.can_read_body and not webhook:
            raw = await request.read()  # cached: the handler's read gets the same bytes
            if raw.strip():
                try:
                    decoded = msgspec.json.decode(raw)
                except msgspec.DecodeError:
                    decoded = None  # the handler says why the body is not JSON
                except RecursionError:
                    raise ApiError(400, "bad_json", "the body nests too deeply") from None
                for field, text in _strings(decoded):
                    problem = control_character_problem(field, text)
                    if problem is not None:
                        raise problem
    return await handler(request)
