"""Sign up, sign in and out, and who am I."""

from __future__ import annotations

import re

import msgspec
from aiohttp import web

from control import principals
from control.bodies import read_json, to_json, to_json_status
from control.errors import ApiError
from control.keys import CONFIG, DB, PASSWORDS
from control.openapi import describe
from control.store import accounts
from control.throttle import THROTTLE, client_address

routes = web.RouteTableDef()

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s.]{2,63}$")


class SignupBody(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    password: str
    name: str = ""
    org_name: str = ""


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    password: str


def email_address(text: str) -> str:
    email = text.strip()
    if len(email) > 254 or not _EMAIL.match(email):
        raise ApiError(422, "invalid", f"{email[:80]!r} is not an email address")
    return email


def _name(text: str, what: str, limit: int = 100) -> str:
    value = text.strip()
    if len(value) > limit or any(ord(c) < 32 for c in value):
        raise ApiError(422, "invalid", f"the {what} must be at most {limit} printable characters")
    return value


SIGNUP_ANSWER = (
    "if this email is new, its account and organization are ready: sign in with "
    "POST /v1/login; if it already has an account, sign in to that one"
)


@routes.post("/v1/signup")
@describe(
    "Create a user and their first organization, then sign in with POST /v1/login. The "
    "answer (202) is the same whether or not the email already has an account.",
    body=SignupBody,
    auth="none",
    status=202,
)
async def signup(request: web.Request) -> web.Response:
    body = await read_json(request, SignupBody)
    config = request.app[CONFIG]
    db = request.app[DB]
    email = email_address(body.email)
    name = _name(body.name, "name")
    org_name = _name(body.org_name, "organization name") or f"{name or email.split('@')[0]}'s org"
    problem = request.app[PASSWORDS].problem(body.password)
    if problem:
        raise ApiError(422, "weak_password", problem)
    # Counted once the request is well formed: a typo costs the user nothing.
    await request.app[THROTTLE].hit("signup.address", client_address(request))
    first_user = await accounts.count_users(db) == 0
    if not config.signup_open and not first_user:
        caller = await principals.session_user(request)
        if caller is None or not caller.get("is_admin"):
            raise ApiError(
                403, "signup_closed", "sign-up is closed; ask the operator for an account"
            )
    # Hashed whether or not the email is taken: the hash is most of the time an answer
    # takes, so both answers take about as long.
    password_hash = await request.app[PASSWORDS].hash(body.password)
    try:
        async with db.transaction() as q:
            user, org = await accounts.create_user_with_org(
                q, email, name, password_hash, org_name, is_admin=first_user
            )
            await accounts.audit(q, org["id"], user["id"], "user.signup", user["id"])
    except LookupError:
        # The email has an account. Saying so would tell anyone who asks; the owner of
        # the account signs in to it instead.
        pass
    return to_json_status({"email": email, "message": SIGNUP_ANSWER}, 202)


@routes.post("/v1/login")
@describe("Sign in with email and password; sets the session cookie.", body=LoginBody, auth="none")
async def login(request: web.Request) -> web.Response:
    body = await read_json(request, LoginBody)
    db = request.app[DB]
    throttle = request.app[THROTTLE]
    email = body.email.strip()[:254]
    # Every attempt counts for the address; only failures count for the account, so a
    # user who signs in is never locked out by their own successes.
    await throttle.hit("login.address", client_address(request))
    account = email.lower()
    await throttle.check("login.account", account)
    user = await accounts.user_by_email(db, email)
    stored = None if user is None or user["disabled_at"] is not None else user["password_hash"]
    if len(body.password) > 1024 or not await request.app[PASSWORDS].check(stored, body.password):
        await throttle.hit("login.account", account)
        raise ApiError(401, "bad_credentials", "wrong email or password")
    assert user is not None
    secret = await accounts.create_session(db, user["id"], request.app[CONFIG].session_seconds)
    response = to_json({"user": _user_json(user)})
    response.set_cookie(principals.SESSION_COOKIE, secret, **principals.cookie_settings(request))  # type: ignore[arg-type]
    return response


@routes.post("/v1/logout")
@describe("End the console session.", auth="user")
async def logout(request: web.Request) -> web.Response:
    secret = request.cookies.get(principals.SESSION_COOKIE)
    if secret:
        # Signing someone out from another site is a nuisance attack (and a step in login
        # CSRF): the same rule as every other cookie-authenticated change.
        principals.require_same_site(request)
        await accounts.delete_session(request.app[DB], secret[:200])
    response = to_json({"signed_out": True})
    response.del_cookie(principals.SESSION_COOKIE, path="/")
    return response


@routes.get("/v1/me")
@describe("The signed-in user (or the API key's org) and the organizations they belong to.")
async def me(request: web.Request) -> web.Response:
    who = await principals.principal(request)
    db = request.app[DB]
    orgs = []
    user_json = None
    if who.via == "session" and who.user_id:
        user = await accounts.user_by_id(db, who.user_id)
        user_json = _user_json(user) if user else None
        orgs = [
            {"id": o["id"], "name": o["name"], "role": o["role"]}
            for o in await accounts.orgs_of_user(db, who.user_id)
        ]
    return to_json(
        {"user": user_json, "org_id": who.org_id, "role": who.role, "via": who.via, "orgs": orgs}
    )


def _user_json(user: dict[str, object]) -> dict[str, object]:
    return {
        "id": user["id"],
        "email": user["email"],
        "name": user["name"],
        "is_admin": bool(user["is_admin"]),
    }
