"""The console app: server-rendered pages mounted into the control app beside ``/v1``.

Every page is one template and one function registered with ``@console.page``: the function
gets a ``View`` (the request, the signed-in user as ``GET /v1/me`` tells it, and ``view.api``
to call an API handler) and returns the template's context. Every form posts to a function
registered with ``@console.action``, which calls the API handler that does the work and
redirects, or renders its page again with what went wrong. ``guard`` checks each form's CSRF
token before any of that, and gives every answer its security headers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRuleMatching, MatchedSubAppResource, _InfoDict
from multidict import MultiDictProxy

from console import csrf
from console.api_call import BLANK, CSRF_CHECKED, ApiHandler, call
from control.api import accounts
from control.errors import ApiError, Handler
from control.keys import CONFIG

HERE = Path(__file__).parent
_PATH_PARAMETER = re.compile(r"{(\w+)}")
# The page a signed-out visitor is sent to, and the first page after signing in.
SIGN_IN = "/login"
HOME = "/start"

SECURITY_HEADERS = {
    # No inline script or style anywhere: console.js and console.css are the only ones.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}

# Messages a redirect may ask a page to show, by key: never text from the URL itself.
NOTICES = {
    "signed_out": "You are signed out.",
    "signup": "If this email is new, its account is ready; if it already had one, that "
    "account is unchanged. Sign in below.",
    "token_revoked": "The token is revoked: every edge disconnects its agents within seconds.",
    "tunnel_stopped": "The tunnel's token is revoked: its agent is disconnected and cannot "
    "reconnect with that token.",
    "key_revoked": "The API key is revoked.",
    "name_reserved": "The name is reserved for your organization.",
    "name_released": "The name is released.",
    "domain_removed": "The domain is removed; edges stop routing it within seconds.",
    "domain_updated": "The domain is updated.",
    "role_changed": "The member's role is changed.",
    "member_removed": "The member is removed, with the agent tokens they made here.",
    "invitation_revoked": "The invitation is revoked; its link no longer works.",
    "joined": "You joined the organization.",
    "org_switched": "Switched organization.",
    "user_updated": "The user is updated.",
    "org_updated": "The organization is updated.",
    "key_rotated": "A new signing key signs new tokens; tokens already issued keep working.",
    "key_retired": "The signing key is retired: every token it signed stops working.",
}


class Form:
    """A submitted form: text fields trimmed of nothing, lists one entry a line."""

    def __init__(self, data: MultiDictProxy[str | bytes | Any]) -> None:
        self._data = data

    def text(self, name: str) -> str:
        value = self._data.get(name, "")
        return value if isinstance(value, str) else ""

    def flag(self, name: str) -> bool:
        return self.text(name) in ("on", "true", "1", "yes")

    def lines(self, name: str) -> list[str]:
        return [line.strip() for line in self.text(name).splitlines() if line.strip()]

    def all(self, name: str) -> list[str]:
        return [v for v in self._data.getall(name, []) if isinstance(v, str)]

    def number(self, name: str, what: str) -> int:
        text = self.text(name).strip() or "0"
        if not text.isascii() or not text.isdigit() or len(text) > 9:
            raise ApiError(422, "invalid", f"{what} must be a whole number, not {text[:20]!r}")
        return int(text)


@dataclass
class View:
    """One console request: who is signed in, and a way to call the API as them."""

    request: web.Request
    me: dict[str, Any] | None
    notice: str = ""
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def signed_in(self) -> bool:
        return self.me is not None and self.me.get("user") is not None

    @property
    def is_operator(self) -> bool:
        return bool(self.me and self.me["user"] and self.me["user"]["is_admin"])

    @property
    def role(self) -> str:
        return str(self.me["role"]) if self.me else ""

    async def api(
        self,
        handler: ApiHandler,
        method: str,
        path: str,
        *,
        match: Mapping[str, str] | None = None,
        body: object = None,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        return await call(self.request, handler, method, path, match=match, body=body, query=query)

    async def api_for(
        self,
        handler: ApiHandler,
        method: str,
        template: str,
        *,
        body: object = None,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        """``api`` on the API route ``template`` ("/v1/tokens/{token_id}"), its ids taken from
        the console route's own match ("/tokens/{token_id}/revoke")."""
        match = {name: self.request.match_info[name] for name in _PATH_PARAMETER.findall(template)}
        path = template.format(**match)
        return await self.api(handler, method, path, match=match, body=body, query=query)

    def redirect(self, path: str, notice: str = "") -> web.HTTPSeeOther:
        assert not notice or notice in NOTICES, notice
        return web.HTTPSeeOther(f"{path}?done={notice}" if notice else path)


PageFunction = Callable[[View], Awaitable[dict[str, Any] | web.StreamResponse]]
ActionFunction = Callable[[View, Form], Awaitable[web.StreamResponse | dict[str, Any]]]


@dataclass(frozen=True)
class NavEntry:
    title: str
    path: str
    admin: bool


class Console:
    """The console's pages and actions, and the navigation built from them."""

    def __init__(self) -> None:
        self.routes = web.RouteTableDef()
        self.nav: list[NavEntry] = []
        self._templates: dict[PageFunction, str] = {}

    def page(
        self,
        path: str,
        template: str,
        *,
        nav: str = "",
        admin: bool = False,
        public: bool = False,
    ) -> Callable[[PageFunction], PageFunction]:
        """A GET page; ``nav``: its title in the menu; ``admin``: operators only;
        ``public``: shown to signed-out visitors too."""

        def register(function: PageFunction) -> PageFunction:
            self._templates[function] = template
            if nav:
                self.nav.append(NavEntry(nav, path, admin))

            async def handler(request: web.Request) -> web.StreamResponse:
                view = await open_view(request, public=public)
                if admin and not view.is_operator:
                    raise ApiError(
                        403, "forbidden", "this page is for operators of this installation"
                    )
                return await self.render_page(view, function)

            self.routes.get(path)(handler)
            return function

        return register

    def action(
        self, path: str, *, back: PageFunction | None, public: bool = False
    ) -> Callable[[ActionFunction], ActionFunction]:
        """A form's POST; when the API refuses it, ``back`` is rendered with the reason
        (and the status the API answered). An action may also return a context for
        ``back``, to show something once (a new token's text)."""

        def register(function: ActionFunction) -> ActionFunction:
            async def handler(request: web.Request) -> web.StreamResponse:
                view = await open_view(request, public=public)
                form = Form(await request.post())
                try:
                    outcome = await function(view, form)
                except ApiError as exc:
                    if back is None:
                        raise
                    view.error = exc.message
                    return await self.render_page(view, back, status=exc.status)
                if isinstance(outcome, web.StreamResponse):
                    return outcome
                assert back is not None
                view.extra = outcome
                return await self.render_page(view, back)

            self.routes.post(path)(handler)
            return function

        return register

    async def render_page(
        self, view: View, function: PageFunction, status: int = 200
    ) -> web.StreamResponse:
        try:
            context = await function(view)
        except ApiError as exc:
            return error_page(view, exc)
        if isinstance(context, web.StreamResponse):
            return context
        return render(view, self._templates[function], {**context, **view.extra}, status)


CONSOLE = Console()
page = CONSOLE.page
action = CONSOLE.action


async def open_view(request: web.Request, *, public: bool) -> View:
    """The request's view; signed-out visitors of a private page go to the sign-in page."""
    try:
        me = await call(request, accounts.me, "GET", "/v1/me")
    except ApiError as exc:
        if exc.status != 401:
            raise
        me = None
    if me is not None and me.get("user") is None:
        me = None  # an API key is not a console user
    if me is None and not public:
        raise web.HTTPSeeOther(SIGN_IN)
    notice = NOTICES.get(request.query.get("done", ""), "")
    return View(request, me, notice=notice)


def render(view: View, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    request = view.request
    secret = request.config_dict[CONFIG].secret_key
    nonce = csrf.ensure_presession(request)
    base = {
        "view": view,
        "me": view.me,
        "nav": [n for n in CONSOLE.nav if not n.admin],
        "admin_nav": [n for n in CONSOLE.nav if n.admin] if view.is_operator else [],
        "path": request.path,
        "csrf_field": csrf.FIELD,
        "csrf_token": csrf.token_for(secret, request),
        "notice": view.notice,
        "error": view.error,
    }
    response = aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)
    if nonce is not None:
        response.set_cookie(
            csrf.PRESESSION_COOKIE,
            nonce,
            httponly=True,
            samesite="Lax",
            secure=_secure(request),
            path="/",
        )
    return response


def error_page(view: View, exc: ApiError) -> web.Response:
    return render(view, "error.html", {"status": exc.status, "message": exc.message}, exc.status)


def _secure(request: web.Request) -> bool:
    return bool(request.config_dict[CONFIG].secure_cookies or request.secure)


def copy_cookies(source: web.StreamResponse, target: web.StreamResponse) -> None:
    """The cookies an API handler set (the session, on sign-in and out), on the console's
    own answer."""
    for name, morsel in source.cookies.items():
        target.cookies[name] = morsel


# -- the guard --------------------------------------------------------------------------------

CROSS_SITE = ("cross-site", "same-site")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if request.method == "POST":
            await _check_form(request)
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        _headers(response)
        raise
    except ApiError as exc:
        response = error_page(View(request, None), exc)
    _headers(response)
    return response


def _headers(response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    if response.content_type == "text/html":
        # Pages show secrets once (tokens, keys, invitation links): never keep them.
        response.headers["Cache-Control"] = "no-store"


async def _check_form(request: web.Request) -> None:
    # A browser marks a form sent from another site; a sibling subdomain is another site
    # here (tunnels live on them).
    if request.headers.get("Sec-Fetch-Site") in CROSS_SITE:
        raise ApiError(403, "csrf", "this form was sent from another site; nothing was changed")
    request[BLANK] = request.clone()  # before the body is read: see console.api_call
    form = await request.post()
    sent = form.get(csrf.FIELD, "")
    secret = request.config_dict[CONFIG].secret_key
    if not isinstance(sent, str) or not csrf.valid(secret, request, sent):
        raise ApiError(
            403,
            "csrf",
            "this form has expired or did not come from this console; nothing was changed: "
            "reload the page and send it again",
        )
    request[CSRF_CHECKED] = True


# -- filters ----------------------------------------------------------------------------------


def when(value: object) -> str:
    """An API timestamp as "2026-12-08 01:59 UTC"; "" for none."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# -- mounting ---------------------------------------------------------------------------------


class ConsolePaths(AbstractRuleMatching):
    """Matches the paths the console serves, so it can sit at "/" beside /v1 and the
    control app's own routes (aiohttp's add_subapp refuses an empty prefix)."""

    def __init__(self, console: web.Application) -> None:
        self._console = console

    async def match(self, request: web.Request) -> bool:
        path = request.path
        if path.startswith("/v1/") or path in ("/v1", "/metrics", "/healthz", "/readyz"):
            return False
        found = await self._console.router.resolve(request)
        return found.http_exception is None

    def get_info(self) -> _InfoDict:
        return {"app": self._console}

    @property
    def canonical(self) -> str:
        return "/"


def create_console() -> web.Application:
    from console import admin_pages, pages  # noqa: F401  (registers the pages)

    app = web.Application(middlewares=[guard])
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
    )
    env.filters["when"] = when
    app.add_routes(CONSOLE.routes)
    app.router.add_static("/static", HERE / "static", name="static")
    return app


def mount(control: web.Application) -> None:
    """Serve the console from ``control`` at "/"."""
    console = create_console()
    factory = functools.partial(MatchedSubAppResource, ConsolePaths(console), console)
    control._add_subapp(factory, console)
