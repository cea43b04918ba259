"""The pages a visitor sees when Burrow, not the tunnelled service, answers."""

from __future__ import annotations

import html

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{status} {title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}}
h1{{font-size:1.4em}}code{{background:#f2f2f2;padding:0 .3em}}small{{color:#777}}</style></head>
<body><h1>{status} {title}</h1><p>{detail}</p><p><small>burrow edge</small></p></body></html>
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


def error_page(status: int, detail: str) -> bytes:
    """An HTML page; ``detail`` is plain text (escaped here) saying what happened."""
    title = TITLES.get(status, "Error")
    return _TEMPLATE.format(status=status, title=title, detail=html.escape(detail)).encode()
