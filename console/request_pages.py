"""Request inspection in the console: the org's captured requests with filters, paging and a
live tail (``/requests``), one capture's headers and bodies (``/requests/{capture_id}``),
replaying it as captured or edited, and clearing a tunnel's captures. Each page and form
calls the API action that does the same thing (``control.api.requests``) with the signed-in
user as the caller, so the roles and refusals are the API's own."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web
from yarl import URL

from bus.captures import MASK
from console import billing_pages  # noqa: F401  (its menu entries come before these)
from console.app import Form, View, action, page
from control.api import requests
from control.errors import ApiError

# The list's filters, as the API names them: the page's query passes them on as they are.
FILTERS = ("host", "status", "method", "path", "q")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
PAGE_SIZE = 50
HEX_MAX = 64 * 1024  # a binary body's hex view stops here: a page stays readable


def _filters(query: Any) -> dict[str, str]:
    return {name: str(query[name]) for name in FILTERS if query.get(name)}


@page("/requests", "requests.html", nav="Requests")
async def requests_page(view: View) -> dict[str, Any]:
    query = view.request.query
    wanted = _filters(query)
    cursor = query.get("cursor", "")
    asked = {**wanted, "limit": str(PAGE_SIZE), **({"cursor": cursor} if cursor else {})}
    listed = await requests.listing(view.request.app, await view.principal(), asked)
    following = listed["next_cursor"]
    return {
        "title": "Requests",
        "requests": listed["requests"],
        "filters": wanted,
        "status_classes": STATUS_CLASSES,
        "methods": METHODS,
        "next_page": str(URL("/requests").with_query({**wanted, "cursor": following}))
        if following
        else "",
        # The live tail shows what arrives above the newest page only.
        "stream": "" if cursor else str(URL("/v1/requests/stream").with_query(wanted)),
    }


def hex_view(data: bytes) -> str:
    """``data`` as lines of offset, 16 bytes in hex and their printable ASCII."""
    lines = []
    for at in range(0, min(len(data), HEX_MAX), 16):
        chunk = data[at : at + 16]
        shown = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{at:08x}  {chunk.hex(' '):<47}  {shown}")
    if len(data) > HEX_MAX:
        lines.append(f"… {len(data) - HEX_MAX} more bytes not shown")
    return "\n".join(lines)


def shown_body(body: dict[str, Any], headers: list[list[str]]) -> dict[str, Any]:
    """A body document of the API as the page shows it: JSON pretty-printed, other text as
    it is, bytes that are not UTF-8 in hex."""
    shown = dict(body)
    if "text" in body:
        text = body["text"]
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        shown["kind"] = "text"
        if "json" in content_type.lower() or text[:1] in ("{", "["):
            try:
                text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
                shown["kind"] = "json"
            except ValueError:
                pass  # not JSON after all (or cut short): shown as the text it is
        shown["shown"] = text
    else:
        shown["kind"] = "binary"
        shown["shown"] = hex_view(base64.b64decode(body.get("base64", "")))
    return shown


def _encoded(body: dict[str, Any]) -> bool:
    return bool(body["content_encoding"]) and body["captured"] > 0


def editable_headers(headers: list[list[str]]) -> str:
    return "\n".join(f"{name}: {value}" for name, value in headers)


@page("/requests/{capture_id}", "request.html")
async def request_page(view: View) -> dict[str, Any]:
    app = view.request.app
    who = await view.principal()
    capture_id = view.request.match_info["capture_id"]
    found = await requests.one(app, who, capture_id)
    sides = {}
    for side in ("request", "response"):
        headers = found[side]["headers"]
        shown = shown_body(found[side]["body"], headers)
        sides[side] = {"headers": headers, "body": shown, "decoded": None}
        if _encoded(found[side]["body"]):
            sides[side]["encoded"] = True
    if any(s.get("encoded") for s in sides.values()):
        decoded = await requests.one(app, who, capture_id, decoded=True)
        for side, shown_side in sides.items():
            if shown_side.get("encoded"):
                body = decoded[side]["body"]
                shown_side["decoded"] = shown_body(body, shown_side["headers"])
    request_body = found["request"]["body"]
    return {
        "title": f"{found['method']} {found['url'][:80]}",
        "capture": found,
        "sides": sides,
        "mask": MASK,
        "edit": {
            "headers": editable_headers(found["request"]["headers"]),
            "body": request_body.get("text", ""),
            # Bytes a textarea cannot hold, or a body not captured whole: sent as captured
            # unless the user unticks it (the API then says what it cannot send).
            "keep_body": "text" not in request_body or request_body["truncated"],
        },
    }


def _header_lines(form: Form) -> list[tuple[str, str]]:
    headers = []
    for line in form.lines("headers"):
        name, colon, value = line.partition(":")
        if not colon:
            raise ApiError(422, "invalid", f"headers: write each as Name: value, not {line[:60]!r}")
        if value.strip() == MASK:
            continue  # a masked credential is not known: left out, as a replay as is does
        headers.append((name.strip(), value.strip()))
    return headers


@action("/requests/{capture_id}/replay", back=request_page)
async def replay(view: View, form: Form) -> web.StreamResponse:
    fields: dict[str, Any] = {}
    if form.flag("edited"):
        fields = {
            "method": form.text("method").strip(),
            "path": form.text("path").strip(),
            "headers": _header_lines(form),
        }
        if not form.flag("keep_body"):
            fields["body"] = form.text("body").replace("\r\n", "\n")
    edits = view.body(fields, requests.ReplayEdits)
    capture_id = view.request.match_info["capture_id"]
    made = await requests.replay_capture(
        view.request.app, await view.principal(), capture_id, edits
    )
    raise view.redirect(f"/requests/{made['id']}", "replayed")


@action("/requests/clear", back=requests_page)
async def clear(view: View, form: Form) -> web.StreamResponse:
    host = form.text("host").strip()
    if not host:
        raise ApiError(422, "invalid", "pick the tunnel whose captured requests to clear")
    await requests.clear(view.request.app, await view.principal(), "", host)
    raise view.redirect("/requests", "requests_cleared")
