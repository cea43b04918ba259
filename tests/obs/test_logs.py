"""Structured logs and request ids: one JSON object per line, and the id a request got at the
edge on every line about it and in the headers the local service received."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator

import pytest

from edge.admin.log_format import ACCESS_LOGGER, JsonFormatter, TextFormatter
from edge.visitors.request_ids import new_request_id, request_id_for
from tests.e2e.client import Visitor, get
from tests.e2e.test_http2 import H2Client

GENERATED = re.compile(r"^[0-9a-f]{12}-[0-9a-f]+$")
LogLines = Callable[[], list[dict[str, object]]]


@pytest.fixture
def json_log() -> Iterator[LogLines]:
    """The edge's log lines as ``burrowd --log-format json --access-log --log debug`` writes
    them, each parsed (a line that is not one JSON object fails the test)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    burrow, access = logging.getLogger("burrow"), logging.getLogger(ACCESS_LOGGER)
    saved = burrow.level, access.level
    burrow.addHandler(handler)
    burrow.setLevel(logging.DEBUG)
    access.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    burrow.removeHandler(handler)
    burrow.setLevel(saved[0])
    access.setLevel(saved[1])


def _ids_seen_by_service(body: bytes) -> list[str]:
    return [v for k, v in json.loads(body)["headers"] if k.lower() == "x-request-id"]


async def test_request_id_reaches_the_service_and_every_line_about_the_request(
    edge, http_tunnel, json_log
):
    await http_tunnel("app")
    async with Visitor(edge.config.http_port, "app.localhost") as v:
        first = await v.request("GET", "/headers")
        second = await v.request("GET", "/headers")
    (rid,) = _ids_seen_by_service(first.body)
    (rid2,) = _ids_seen_by_service(second.body)
    assert GENERATED.match(rid) and GENERATED.match(rid2) and rid != rid2

    failed = await get(edge.config.http_port, "app.localhost", "/close")
    assert failed.status == 502
    failed_id = failed.headers["x-request-id"]  # the error page names it for support

    lines = json_log()
    assert lines, "nothing was logged"
    for line in lines:
        assert {"ts", "level", "logger", "msg"} <= line.keys()
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", str(line["ts"]))
    about_requests = [
        line for line in lines if line["logger"] in (ACCESS_LOGGER, "burrow.edge.http")
    ]
    assert all(GENERATED.match(str(line.get("request_id"))) for line in about_requests)
    access = {line["request_id"]: line for line in lines if line["logger"] == ACCESS_LOGGER}
    assert access[rid]["status"] == 200 and access[rid]["path"] == "/headers"
    assert access[rid]["protocol"] == "http1" and access[rid]["host"] == "app.localhost"
    assert isinstance(access[rid]["duration_ms"], float)
    assert access[failed_id]["status"] == 502
    (error,) = [line for line in lines if line["logger"] == "burrow.edge.http"]
    assert error["request_id"] == failed_id and error["level"] == "info"
    assert "502" in str(error["msg"]) and "without responding" in str(error["msg"])


@pytest.mark.parametrize("incoming", ["trace-ABC_123", "a" * 64, "0"])
async def test_a_sane_incoming_request_id_is_kept(edge, http_tunnel, json_log, incoming):
    await http_tunnel("app")
    r = await get(
        edge.config.http_port, "app.localhost", "/headers", headers=[("X-Request-Id", incoming)]
    )
    assert _ids_seen_by_service(r.body) == [incoming]  # kept, and not doubled
    assert any(line.get("request_id") == incoming for line in json_log())


@pytest.mark.parametrize(
    "incoming", ["a" * 65, "has space", "semi;colon", "dots.not.allowed", "caf\u00e9", ""]
)
async def test_an_odd_incoming_request_id_is_replaced(edge, http_tunnel, incoming):
    await http_tunnel("app")
    # Raw bytes: the test client would refuse some of these values itself.
    head = (
        b"GET /headers HTTP/1.1\r\nhost: app.localhost\r\nx-request-id: "
        + incoming.encode("latin-1")
        + b"\r\nconnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.config.http_port)
    writer.write(head)
    answer = await asyncio.wait_for(reader.read(-1), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    (seen,) = _ids_seen_by_service(answer.partition(b"\r\n\r\n")[2])
    assert GENERATED.match(seen)


async def test_http2_requests_get_ids_too(edge, http_tunnel, json_log):
    await http_tunnel("app")
    async with H2Client(edge.config.http_port, "app.localhost") as client:
        fresh = await client.request("GET", "/headers")
        kept = await client.request("GET", "/headers", headers=[("x-request-id", "h2-trace")])
        missing = await client.request("GET", "/nowhere")
    (rid,) = _ids_seen_by_service(bytes(fresh.body))
    assert GENERATED.match(rid)
    assert _ids_seen_by_service(bytes(kept.body)) == ["h2-trace"]
    assert missing.status == 404
    access = {line["request_id"]: line for line in json_log() if line["logger"] == ACCESS_LOGGER}
    assert access[rid]["protocol"] == "h2" and access[rid]["status"] == 200
    assert access["h2-trace"]["path"] == "/headers"


async def test_the_edges_own_error_pages_carry_the_id(edge, json_log):
    r = await get(
        edge.config.http_port, "nobody.localhost", "/", headers=[("x-request-id", "lost-1")]
    )
    assert r.status == 404 and r.headers["x-request-id"] == "lost-1"
    (line,) = [x for x in json_log() if x["logger"] == "burrow.edge.http"]
    assert line["request_id"] == "lost-1" and line["level"] == "debug"  # a 4xx: not news


def test_request_ids_are_unique_and_sane():
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(GENERATED.match(i.decode()) for i in ids)
    assert request_id_for([(b"host", b"x"), (b"x-request-id", b"abc")]) == b"abc"
    assert GENERATED.match(request_id_for([(b"x-request-id", b"a b")]).decode())
    assert GENERATED.match(request_id_for([]).decode())


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "burrow.edge.http", "levelno": 20, "msg": msg})
    record.levelname = "INFO"
    record.__dict__.update(extra)
    return record


def test_json_lines_are_one_object_per_line_with_extra_fields():
    line = JsonFormatter().format(_record("two\nlines", request_id="r-1", status=502))
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["msg"] == "two\nlines" and obj["level"] == "info"
    assert obj["logger"] == "burrow.edge.http"
    assert (obj["request_id"], obj["status"]) == ("r-1", 502)
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    obj = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in obj["exc"]
    # Values JSON cannot hold are written as text rather than failing the log call.
    assert json.loads(JsonFormatter().format(_record("x", peer=("1.2.3.4", 5), raw=b"\xff")))


def test_text_lines_end_with_the_request_id():
    text = TextFormatter().format(_record("visitor 1.2.3.4: 502", request_id="r-2"))
    assert text.endswith("visitor 1.2.3.4: 502 request_id=r-2")
    assert "request_id" not in TextFormatter().format(_record("agent connected"))
