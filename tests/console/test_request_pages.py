"""The request inspection pages over HTTP: the list with its filters, paging and clearing,
a capture's headers and bodies, and replay's refusals, on the real control app and
PostgreSQL; captures stored by the code the inspector worker stores them with, as the edge's
capture filter builds them. Replay through a real edge and agent is at the end."""

from __future__ import annotations

import gzip
import html
import json
import re
import time
from typing import Any

import brotli

from agent.tunnels import TunnelSpec
from bus.captures import CaptureRecord
from bus.redis_bus import RedisBus
from control.store import captures
from tests.console.conftest import ConsoleSession, ConsoleSite
from tests.console.test_pages import me
from tests.e2e.conftest import AgentRunner
from tests.e2e.conftest import agents as agents  # the fixture
from tests.e2e.conftest import service as service  # the fixture
from tests.e2e.origin import LocalService
from tests.e2e.test_control_plane import Stack
from tests.inspect.support import capture, eventually
from tests.inspect.test_replay import captured, online
from tests.inspect.test_replay import replay_stack as replay_stack  # the fixture

XSS_HEADER = '"><script>alert("header")</script>'
XSS_PATH = "/<img src=x onerror=alert(1)>"
XSS_BODY = "<script>alert('body')</script>"


async def store(site: ConsoleSite, *records: CaptureRecord) -> None:
    async with site.db.transaction() as q:
        await captures.store(q, list(records))


async def org_of(session: ConsoleSession) -> str:
    return str((await me(session))["org_id"])


def listed_ids(text: str) -> list[str]:
    return re.findall(r'<a href="/requests/([^"?/]+)">', text)


async def test_the_list_filters_pages_newest_first_and_shows_only_the_orgs_own(
    site: ConsoleSite,
) -> None:
    owner = await site.user()
    other = await site.user()
    org = await org_of(owner)
    now = time.time()
    shop = [capture(org, n, hostname="shop.tunnels.test", started=now - 100 + n) for n in range(55)]
    failing = capture(
        org,
        900,
        hostname="api.tunnels.test",
        method=b"POST",
        status=503,
        started=now,
        target=b"/v2/orders?id=7",
    )
    await store(site, *shop, failing)
    await store(site, capture(await org_of(other), 1, hostname="theirs.tunnels.test"))

    first = await owner.get("/requests")
    assert first.status == 200
    ids = listed_ids(first.text)
    newest = [r.id for r in reversed(shop)]
    assert ids == [failing.id, *newest[:49]]
    assert "theirs.tunnels.test" not in first.text
    older = re.search(r'<a href="(/requests\?cursor=[^"]+)">Older requests</a>', first.text)
    assert older, "no link to the next page"
    second = await owner.get(html.unescape(older.group(1)))
    assert listed_ids(second.text) == newest[49:]
    assert "Older requests" not in second.text

    # Each filter is the API's: tunnel, status class, method, path prefix, text.
    for query in (
        "host=api.tunnels.test",
        "status=5xx",
        "method=POST",
        "path=/v2/",
        "q=orders",
    ):
        assert listed_ids((await owner.get(f"/requests?{query}")).text) == [failing.id], query
    assert listed_ids((await owner.get("/requests?status=4xx")).text) == []
    assert (
        "No captured requests match these filters" in (await owner.get("/requests?status=4xx")).text
    )
    # The live tail follows the same filters, from the first page only.
    assert (
        'data-stream="/v1/requests/stream?host=api.tunnels.test"'
        in (await owner.get("/requests?host=api.tunnels.test")).text
    )
    assert "data-stream" not in second.text

    # A filter the API refuses is its message on the page, not a crash.
    bad = await owner.get("/requests?status=abc")
    assert bad.status == 422 and "give a code such as 404" in html.unescape(bad.text)
    # Another org's capture does not exist for this user.
    theirs = await other.get(f"/requests/{failing.id}")
    assert theirs.status == 404


async def test_a_capture_shows_its_headers_and_bodies_as_text_json_hex_and_decoded(
    site: ConsoleSite,
) -> None:
    owner = await site.user()
    org = await org_of(owner)
    document = {"order": 7, "items": ["a", "b"]}
    packed = gzip.compress(b"hello from gzip")
    record = capture(
        org,
        1,
        method=b"POST",
        request_headers=[
            (b"host", b"app.tunnels.test"),
            (b"authorization", b"Bearer s3cret"),
            (b"content-type", b"application/json"),
        ],
        request_prefix=json.dumps(document, separators=(",", ":")).encode(),
        request_size=len(json.dumps(document, separators=(",", ":"))),
        response_headers=[(b"content-type", b"text/plain"), (b"content-encoding", b"gzip")],
        response_prefix=packed,
        response_size=len(packed),
    )
    binary = capture(
        org,
        2,
        response_headers=[(b"content-type", b"application/octet-stream")],
        response_prefix=b"\x00\x01\xffPNG\x89",
        response_size=5000,
    )
    squeezed = brotli.compress(b"hello from brotli")
    br = capture(
        org,
        3,
        response_headers=[(b"content-encoding", b"br")],
        response_prefix=squeezed,
        response_size=len(squeezed),
    )
    await store(site, record, binary, br)

    page = await owner.get(f"/requests/{record.id}")
    assert page.status == 200
    text = html.unescape(page.text)
    # The credential is shown masked, never its value.
    assert "s3cret" not in text
    assert re.search(r'<td class="masked">\[masked\]', page.text)
    # JSON pretty-printed; the gzip body decoded, and as sent in hex.
    assert json.dumps(document, indent=2) in text
    assert "hello from gzip" in text
    assert packed[:16].hex(" ") in text
    shown = html.unescape((await owner.get(f"/requests/{binary.id}")).text)
    assert "00000000  00 01 ff 50 4e 47 89" in shown and "...PNG." in shown
    assert "5.0 kB, the first 7 B captured" in shown
    assert "hello from brotli" in html.unescape((await owner.get(f"/requests/{br.id}")).text)


async def test_captured_header_values_paths_and_bodies_are_inert(site: ConsoleSite) -> None:
    owner = await site.user()
    org = await org_of(owner)
    hostile = capture(
        org,
        1,
        target=XSS_PATH.encode(),
        request_headers=[(b"x-evil", XSS_HEADER.encode())],
        response_headers=[(b"content-type", b"text/html"), (XSS_HEADER.encode()[2:9], b"v")],
        response_prefix=XSS_BODY.encode(),
        response_size=len(XSS_BODY),
        request_prefix=XSS_BODY.encode(),
        request_size=len(XSS_BODY),
    )
    await store(site, hostile)
    for path in ("/requests", f"/requests/{hostile.id}"):
        page = await owner.get(path)
        assert page.status == 200
        for payload in (XSS_HEADER, XSS_PATH, XSS_BODY, "<script>alert"):
            assert payload not in page.text, (path, payload)
        assert re.findall(r"<script[^>]*>", page.text) == [
            '<script src="/static/console.js" defer>'
        ]
    detail = await owner.get(f"/requests/{hostile.id}")
    assert "&lt;script&gt;alert(&#39;body&#39;)&lt;/script&gt;" in detail.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in detail.text
    # The live tail inserts text only through textContent.
    script = (await owner.get("/static/console.js")).text
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script


async def test_replay_and_clear_forms_refuse_a_missing_token_or_another_site(
    site: ConsoleSite,
) -> None:
    owner = await site.user()
    org = await org_of(owner)
    record = capture(org, 1, hostname="keep.tunnels.test")
    await store(site, record)
    page = await owner.get(f"/requests/{record.id}")
    for action, fields in (
        (f"/requests/{record.id}/replay", {}),
        ("/requests/clear", {"host": "keep.tunnels.test"}),
    ):
        missing = await owner.post(action, fields, csrf=None)
        assert missing.status == 403 and "nothing was changed" in missing.error
        forged = await owner.post(action, fields, csrf="forged")
        assert forged.status == 403
        cross = await owner.post(
            action, fields, csrf=page.csrf, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert cross.status == 403 and "another site" in cross.error
    assert listed_ids((await owner.get("/requests")).text) == [record.id]


async def test_clearing_a_tunnel_keeps_the_other_tunnels_captures(site: ConsoleSite) -> None:
    owner = await site.user()
    org = await org_of(owner)
    gone = [capture(org, n, hostname="old.tunnels.test") for n in range(3)]
    kept = capture(org, 9, hostname="kept.tunnels.test")
    await store(site, *gone, kept)
    page = await owner.get("/requests?host=old.tunnels.test")
    assert 'data-confirm="Delete every captured request of old.tunnels.test?' in page.text
    done = await owner.post("/requests/clear", {"host": "old.tunnels.test"}, csrf=page.csrf)
    assert done.status == 200 and done.notice == "The tunnel's captured requests are cleared."
    assert listed_ids(done.text) == [kept.id]
    # No tunnel picked: a clear refusal, nothing deleted.
    refused = await owner.post("/requests/clear", {"host": ""}, csrf=page.csrf)
    assert refused.status == 422 and "pick the tunnel" in refused.error
    assert listed_ids((await owner.get("/requests")).text) == [kept.id]


async def test_replay_refusals_show_the_apis_message(site: ConsoleSite) -> None:
    owner = await site.user()
    org = await org_of(owner)
    offline = capture(org, 1, hostname="gone.tunnels.test")
    cut = capture(
        org,
        2,
        hostname="gone.tunnels.test",
        method=b"POST",
        request_prefix=b"x" * 10,
        request_size=100_000,
        body_limit=10,
    )
    await store(site, offline, cut)
    page = await owner.get(f"/requests/{offline.id}")
    refused = await owner.post(f"/requests/{offline.id}/replay", {}, csrf=page.csrf)
    assert refused.status == 502
    assert refused.error == "no agent serves gone.tunnels.test now; start it again, then replay"
    # A body not captured whole: the edit form sends it as captured unless unticked.
    edit = await owner.get(f"/requests/{cut.id}")
    assert re.search(r'name="keep_body" value="on" checked', edit.text)
    truncated = await owner.post(f"/requests/{cut.id}/replay", {}, csrf=edit.csrf)
    assert truncated.status == 409
    assert "only 10 of the 100000 body bytes were captured" in truncated.error
    edited = await owner.post(
        f"/requests/{cut.id}/replay",
        {"edited": "1", "method": "POST", "path": "http://169.254.169.254/", "headers": ""},
        csrf=edit.csrf,
    )
    assert edited.status == 422 and "own tunnel" in edited.error
    bad_header = await owner.post(
        f"/requests/{cut.id}/replay",
        {"edited": "1", "method": "GET", "path": "/", "headers": "no colon here"},
        csrf=edit.csrf,
    )
    assert bad_header.status == 422 and "Name: value" in bad_header.error


async def serving(
    stack: Stack, agents: AgentRunner, service: LocalService, email: str, name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A user of ``email`` whose agent serves the local service at NAME.tunnels.test: the
    user (with an API key) and the live tunnel, once control lists it."""
    user = await stack.signup(email)
    await stack.call("POST", "/v1/names", user["key"], status=201, json={"name": name})
    token = await stack.call("POST", "/v1/tokens", user["key"], status=201, json={})
    spec = TunnelSpec("http", "127.0.0.1", service.port, name=name)
    await agents.start(stack.edge, spec, token=token["token"])
    return user, await online(stack, user["key"], name)


async def test_replay_as_captured_and_edited_through_the_tunnel_shows_the_new_capture(
    replay_stack: tuple[Stack, RedisBus], service: LocalService, agents: AgentRunner
) -> None:
    stack, bus = replay_stack
    acme, live = await serving(stack, agents, service, "owner@console-replay.example", "cshop")
    capture_id = await captured(
        stack,
        bus,
        acme["key"],
        acme["org"]["id"],
        hostname="cshop.tunnels.test",
        tunnel_id=live["key"],
        target=b"/headers?from=console",
        request_headers=[(b"authorization", b"Bearer s3cret"), (b"x-custom", b"kept")],
    )
    owner = ConsoleSession(stack.control.url)
    owner.email = "owner@console-replay.example"
    try:
        await owner.sign_in()
        page = await owner.get(f"/requests/{capture_id}")
        assert page.status == 200

        # As captured: the new capture's page, its answer from the local service.
        done = await owner.post(f"/requests/{capture_id}/replay", {}, csrf=page.csrf)
        assert done.status == 200, done.error
        assert done.notice == "Replayed through the tunnel: this is the new capture."
        new_id = done.url.rsplit("/", 1)[1].split("?")[0]
        assert new_id != capture_id
        assert f'a replay of <a href="/requests/{capture_id}">' in done.text
        seen = html.unescape(done.text)
        answered = re.search(r'<pre class="body json">(.*?)</pre>', done.text, re.S)
        assert answered, "the local service's JSON answer is not shown"
        headers = dict(json.loads(html.unescape(answered.group(1)))["headers"])
        assert headers["x-burrow-replay"] == capture_id
        assert headers["host"] == "cshop.tunnels.test" and headers["x-custom"] == "kept"
        assert "authorization" not in headers and "s3cret" not in seen

        # Edited: method, path, headers and body from the form.
        edited = await owner.post(
            f"/requests/{capture_id}/replay",
            {
                "edited": "1",
                "method": "POST",
                "path": "/echo",
                "headers": "x-from-form: yes\nauthorization: [masked]",
                "body": "edited in the console",
            },
            csrf=page.csrf,
        )
        assert edited.status == 200, edited.error
        assert "<h1>POST /echo</h1>" in edited.text
        assert "edited in the console" in edited.text
        listed = await owner.get("/requests?host=cshop.tunnels.test")
        assert listed_ids(listed.text)[-1] == capture_id and len(listed_ids(listed.text)) == 3
        assert listed.text.count('<span class="tag">replay</span>') == 2

        # The agent goes away: the API's refusal on the page.
        await agents.stop_all()

        async def offline() -> bool:
            return not (await stack.call("GET", "/v1/tunnels", acme["key"]))["tunnels"]

        await eventually(offline)
        gone = await owner.post(f"/requests/{capture_id}/replay", {}, csrf=page.csrf)
        assert gone.status == 502
        assert gone.error == "no agent serves cshop.tunnels.test now; start it again, then replay"
    finally:
        await owner.close()
