"""Who is calling: an API key (``Authorization: Bearer bk.…``) or a console session cookie,
and in which org, with which role."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from control.errors import ApiError
from control.keys import CONFIG, DB
from control.store import accounts

SESSION_COOKIE = "burrow_session"
ORG_HEADER = "Burrow-Org"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Principal:
    actor: str  # the user id, or the API key id
    user_id: str | None
    org_id: str
    role: str  # "owner" | "admin" | "member"
    is_admin: bool  # operator of this Burrow installation
    via: str  # "session" | "api_key"

    def require(self, role: str) -> None:
        if accounts.ROLE_RANK[self.role] < accounts.ROLE_RANK[role]:
            raise ApiError(
                403,
                "forbidden",
                f"this needs the {role} role in the organization; you are {self.role}",
            )


_PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")

UNAUTHENTICATED = ApiError(
    401,
    "unauthorized",
    "sign in, or send an API key as 'Authorization: Bearer <key>'",
)


async def session_user(request: web.Request) -> dict[str, object] | None:
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret or len(secret) > 200:
        return None
    return await accounts.user_for_session(request.app[DB], secret)


async def principal(request: web.Request) -> Principal:
    """The caller, or 401. Cached on the request."""
    cached = request.get(_PRINCIPAL)
    if cached is not None:
        return cached
    found = await _resolve(request)
    request[_PRINCIPAL] = found
    return found


async def _resolve(request: web.Request) -> Principal:
    db = request.app[DB]
    auth = request.headers.get("Authorization", "")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise UNAUTHENTICATED
        key = await accounts.api_key_for_secret(db, value.strip())
        if key is None:
            raise ApiError(401, "unauthorized", "the API key is not valid or was revoked")
        return Principal(
            actor=str(key["id"]),
            user_id=key["created_by"],
            org_id=str(key["org_id"]),
            role=str(key["role"]),
            is_admin=False,
            via="api_key",
        )
    user = await session_user(request)
    if user is None:
        raise UNAUTHENTICATED
    require_same_site(request)
    user_id = str(user["id"])
    wanted = request.headers.get(ORG_HEADER) or request.query.get("org")
    orgs = await accounts.orgs_of_user(db, user_id)
    if wanted:
        chosen = next((o for o in orgs if o["id"] == wanted), None)
        if chosen is None:
            raise ApiError(404, "not_found", "no organization with that id")
    elif orgs:
        chosen = orgs[0]
    else:
        raise ApiError(403, "forbidden", "you are not a member of any organization")
    return Principal(
        actor=user_id,
        user_id=user_id,
        org_id=str(chosen["id"]),
        role=str(chosen["role"]),
        is_admin=bool(user["is_admin"]),
        via="session",
    )


def require_same_site(request: web.Request) -> None:
    """403 for a cookie-authenticated change that a cross-site page may have sent."""
    if request.method not in _SAFE_METHODS and not _same_site(request):
        raise ApiError(
            403,
            "csrf",
            "cross-site request refused: send X-Requested-With from the console's own pages",
        )


def _same_site(request: web.Request) -> bool:
    """Browsers cannot add custom headers to cross-site requests without a CORS preflight
    (which this API never grants), and they mark their own fetches with Sec-Fetch-Site."""
    if request.headers.get("X-Requested-With"):
        return True
    return request.headers.get("Sec-Fetch-Site") in ("same-origin", "none")


def cookie_settings(request: web.Request) -> dict[str, object]:
    config = request.app[CONFIG]
    return {
        "httponly": True,
        "samesite": "Lax",
        # Secure behind HTTPS even when the operator forgot to say so.
        "secure": config.secure_cookies or request.secure,
        "path": "/",
        "max_age": config.session_seconds,
    }
