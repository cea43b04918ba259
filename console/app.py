"""The console: server-rendered pages whose routes sit on the control app's own router,
beside ``/v1``.

Every page is one template and one function registered with ``@console.page``: the function
gets a ``View`` (the request, the signed-in user as ``GET /v1/me`` tells it, and ``view.api``
to call an API handler) and returns the template's context. Every form posts to a function
registered with ``@console.action``, which calls the API handler that does the work and
redirects, or renders its page again with what went wrong. ``guard`` wraps every console
route: it checks each form's CSRF token before any of that, and gives every answer its
security headers. API actions that take the app, the caller and the decoded body are called
directly with ``await view.principal()``; the rest through ``view.api``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp_jinja2
import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from console import csrf
from console.api_call import (
    BLANK,
    CSRF_CHECKED,
    ApiHandler,
    call,
    chosen_org,
    refuse_control_characters,
)
from control import principals
from control.api import accounts
from control.bodies import to_body
from control.errors import ApiError, Handler
from control.keys import CONFIG
from control.principals import Principal

T = TypeVar("T")
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
    "plan_canceled": "The subscription is cancelled: the organization is on the free plan at "
    "every edge.",
    "plan_created": "The plan is created.",
    "plan_updated": "The plan is updated; edges enforce its new limits at once.",
    "plan_deleted": "The plan is deleted.",
    "org_plan_set": "The organization is on its new plan at every edge.",
    "refunded": "The refund is made through the invoice's provider.",
    "replayed": "Replayed through the tunnel: this is the new capture.",
    "requests_cleared": "The tunnel's captured requests are cleared.",
    "tls_retry": "The certificate's backoff is cleared: the certs worker orders again at its "
    "next pass.",
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

    def number(self, name: str, what: str, digits: int = 9) -> int:
        text = self.text(name).strip() or "0"
        if not text.isascii() or not text.isdigit() or len(text) > digits:
            raise ApiError(422, "invalid", f"{what} must be a whole number, not {text[:20]!r}")
        return int(text)


@dataclass
class View:
    """One console request: who is signed in, and a way to call the API as them."""

    request: web.Request
    me: dict[str, Any] | None
    notice: str = ""
    error: str = ""
    # The API refused for the plan's limit: the page links to the billing page.
    over_plan: bool = False
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
        body: object = None,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        """``handler``'s answer for an API route without ids in its path."""
        assert "{" not in path and not _PATH_PARAMETER.findall(path), path
        return await call(self.request, handler, method, path, body=body, query=query)

    async def api_for(
        self,
        handler: ApiHandler,
        method: str,
        template: str,
        *,
        body: object = None,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        """``handler``'s answer for the API route ``template`` ("/v1/tokens/{token_id}"): the
        internal request keeps the console route's own match ("/tokens/{token_id}/revoke"),
        so the ids the handler reads are the ones in the console's path."""
        match = {name: self.request.match_info[name] for name in _PATH_PARAMETER.findall(template)}
        path = template.format(**match)
        return await call(self.request, handler, method, path, body=body, query=query)

    async def principal(self) -> Principal:
        """The signed-in user in the org they picked, for API actions called directly: the
        same lookup (and the same refusals) as the API's, with the form's CSRF check in
        place of the API's same-site header."""
        return await principals.session_principal(
            self.request,
            chosen_org(self.request),
            form_checked=bool(self.request.get(CSRF_CHECKED)),
        )

    def body(self, value: dict[str, Any], kind: type[T]) -> T:
        """A form's fields as an API action's body, refused as the API refuses its JSON."""
        refuse_control_characters(value)
        return to_body(value, kind)

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

            self.routes.get(path)(guarded(handler))
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
                    view.over_plan = exc.code == "plan_limit"
                    return await self.render_page(view, back, status=exc.status)
                if isinstance(outcome, web.StreamResponse):
                    return outcome
                assert back is not None
                view.extra = outcome
                return await self.render_page(view, back)

            self.routes.post(path)(guarded(handler))
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
        "over_plan": view.over_plan,
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


def guarded(handler: Handler) -> Handler:
    """``handler`` behind ``guard``: only console routes get it, not the API beside them."""

    async def run(request: web.Request) -> web.StreamResponse:
        return await guard(request, handler)

    return run


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
    """A timestamp (a datetime from an API action, or ISO text from an API handler's JSON)
    as "2026-12-08 01:59 UTC"; "" for none."""
    if not value:
        return ""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def money(cents: object, currency: object = "") -> str:
    """An amount in a currency's minor unit as "12.50 USD"."""
    try:
        value = int(str(cents))
    except ValueError:
        return str(cents)
    sign = "-" if value < 0 else ""
    whole, part = divmod(abs(value), 100)
    return f"{sign}{whole}.{part:02d} {str(currency).upper()}".rstrip()


def size(count: object) -> str:
    """A byte count as "1.5 GB" (decimal units, as bandwidth is sold)."""
    try:
        value = float(str(count))
    except ValueError:
        return str(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return str(count)


# -- mounting ---------------------------------------------------------------------------------

# The console's static files, by name: served by a console route so they carry its headers.
STATIC_FILES = {"console.css": "text/css", "console.js": "text/javascript"}


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(HERE / "static" / name, headers={"Content-Type": STATIC_FILES[name]})


CONSOLE.routes.get("/static/{name}")(guarded(static_file))


def mount(control: web.Application) -> None:
    """Serve the console from ``control`` at "/": its templates on ``control`` and its
    routes on ``control``'s own router, beside /v1 and the probes."""
    from console import (  # noqa: F401  (registers the pages)
        admin_pages,
        billing_pages,
        pages,
        request_pages,
    )

    env = aiohttp_jinja2.setup(
        control,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
    )
    env.filters["when"] = when
    env.filters["money"] = money
    env.filters["size"] = size
    control.add_routes(CONSOLE.routes)
