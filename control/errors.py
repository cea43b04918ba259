"""API errors: every failure is a JSON body ``{"error": {"code", "message"}}`` with a status,
whether it came from our handlers, from aiohttp (404, 405, 413) or from a bug (500, logged
with an id the user can quote)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

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
        return error_response(exc.status, exc.code, exc.message, **exc.extra)
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
