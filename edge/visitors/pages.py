"""The pages a visitor sees when Burrow, not the tunnelled service, answers."""

from __future__ import annotations

import html
import re
import time
from email.utils import formatdate

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{status} {title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}}
h1{{font-size:1.4em}}code{{background:#f2f2f2;padding:0 .3em}}small{{color:#777}}</style></head>
<body><h1>{status} {title}</h1><p>{detail}</p><p><small>{footer}</small></p></body></html>
"""

TITLES = {
    400: "Bad Request",
    401: "Authentication Required",
    403: "Forbidden",
    404: "Tunnel Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    421: "Misdirected Request",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

# A detail is plain text that reads as well in a log line; `backticks` mark a command or a
# name to type, which the page shows as code.
_CODE_SPAN = re.compile(r"`([^`]+)`")


def detail_html(detail: str) -> str:
    """``detail`` escaped, with each `span` in backticks as <code>."""
    parts = _CODE_SPAN.split(detail)
    # split() with one group alternates text, code, text, ...: odd indexes are code.
    return "".join(
        f"<code>{html.escape(part)}</code>" if i % 2 else html.escape(part)
        for i, part in enumerate(parts)
    )


def error_page(status: int, detail: str, request_id: str | bytes = b"") -> bytes:
    """An HTML page saying what happened (``detail``, plain text) and, when there is one,
    the request's id, which a visitor can quote to the tunnel's owner to find it in logs."""
    title = TITLES.get(status, "Error")
    rid = request_id.decode("latin-1") if isinstance(request_id, bytes) else request_id
    footer = f"request id <code>{html.escape(rid)}</code> · burrow edge" if rid else "burrow edge"
    return _TEMPLATE.format(
        status=status, title=title, detail=detail_html(detail), footer=footer
    ).encode()


_date_second = 0
_date_value = b""


def http_date() -> bytes:
    """The Date header value of the edge's own answers (RFC 9110 6.6.1), made once a second:
    clients (``burrow diagnose``) read the edge's clock from it."""
    global _date_second, _date_value
    now = int(time.time())
    if now != _date_second:
        _date_second = now
        _date_value = formatdate(now, usegmt=True).encode()
    return _date_value
