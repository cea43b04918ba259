"""The edge's own error pages: what happened, what to type as code, and the request id a
visitor can quote to the tunnel's owner, over HTTP/1.1 and HTTP/2."""

from __future__ import annotations

import re

from edge.visitors.pages import detail_html, error_page
from tests.e2e.client import get
from tests.e2e.test_http2 import H2Client

# What a page shows as the request id, and the command as code.
_ID = re.compile(r"request id <code>([^<]+)</code>")


async def test_a_404_page_shows_its_request_id_and_the_command_as_code(edge):
    r = await get(edge.config.http_port, "nope.localhost", "/")
    assert r.status == 404
    page = r.text
    assert "`" not in page, "the page shows the detail's backticks"
    assert "<code>burrow http PORT --name nope</code>" in page
    (shown,) = _ID.findall(page)
    assert shown == r.headers["x-request-id"]


async def test_the_visitors_own_request_id_is_on_the_page(edge):
    r = await get(edge.config.http_port, "nope.localhost", "/", headers=[("x-request-id", "t-1")])
    assert _ID.findall(r.text) == ["t-1"]


async def test_a_custom_domain_is_named_whole_in_the_hint(edge):
    r = await get(edge.config.http_port, "www.example.com", "/")
    assert "<code>burrow http PORT --name www.example.com</code>" in r.text


async def test_http2_error_pages_carry_the_request_id(edge):
    async with H2Client(edge.config.http_port, "nope.localhost") as client:
        missing = await client.request("GET", "/")
    assert missing.status == 404
    page = bytes(missing.body).decode()
    assert _ID.findall(page) == [missing.headers[b"x-request-id"].decode()]
    assert "`" not in page


def test_detail_text_is_escaped_inside_and_outside_code() -> None:
    assert detail_html("a <b> `x<y>` & `z`") == (
        "a &lt;b&gt; <code>x&lt;y&gt;</code> &amp; <code>z</code>"
    )
    assert detail_html("an odd ` backtick") == "an odd ` backtick"
    page = error_page(502, "down", '"><script>')
    assert b"<script>" not in page and b"&quot;&gt;&lt;script&gt;" in page
