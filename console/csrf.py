"""CSRF tokens for the console's forms: synchronizer tokens derived from the session.

A signed-in user's token is an HMAC of their session cookie under a key derived from the
operator's secret, so a page on another origin (tunnels are served from sibling subdomains,
which can set cookies for the parent domain) cannot make one up: it would need the session
secret itself. Before sign-in, forms are tied the same way to a random per-browser cookie.
The API's same-site header rule still applies on top (``control.principals``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

from control.principals import SESSION_COOKIE

PRESESSION_COOKIE = "burrow_presession"
FIELD = "csrf_token"


def _key(secret: str) -> bytes:
    return hashlib.sha256(b"burrow console csrf\0" + secret.encode()).digest()


def token_for(secret: str, request: web.Request) -> str:
    """The token the page being rendered puts in its forms ("" before the pre-session
    cookie exists; ``ensure_presession`` sets it)."""
    session = request.cookies.get(SESSION_COOKIE, "")
    if session:
        return _mac(secret, "session", session)
    nonce = request.get(_NEW_NONCE) or request.cookies.get(PRESESSION_COOKIE, "")
    return _mac(secret, "pre", nonce) if nonce else ""


def _mac(secret: str, kind: str, value: str) -> str:
    return hmac.new(_key(secret), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def valid(secret: str, request: web.Request, sent: str) -> bool:
    expected = token_for(secret, request)
    return bool(expected) and hmac.compare_digest(expected, sent[:128])


_NEW_NONCE: web.RequestKey[str] = web.RequestKey("console_new_presession")


def ensure_presession(request: web.Request) -> str | None:
    """A new pre-session nonce when the browser has none (the caller sets the cookie)."""
    if request.cookies.get(SESSION_COOKIE) or request.cookies.get(PRESESSION_COOKIE):
        return None
    nonce = secrets.token_urlsafe(24)
    request[_NEW_NONCE] = nonce
    return nonce
