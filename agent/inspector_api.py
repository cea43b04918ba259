"""The inspector's JSON documents and replay, for ``agent.local_api``.

The shapes follow ngrok's agent API (``GET /api/requests/http``, ``GET
/api/requests/http/{id}``, ``POST /api/requests/http`` to replay, ``DELETE
/api/requests/http``) so scripts written for it work; each capture adds a ``body`` document
per side (text, pretty-printed JSON or form, hex for binary) and ``replay_of``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import json
import zlib
from typing import Any
from urllib.parse import parse_qsl

from agent.inspector import Capture, Inspector, Message
from bus.captures import NOT_REPLAYED

REPLAY_TIMEOUT = 30.0
DECODED_MAX = 1024 * 1024
HEX_MAX = 4096
# The local service gets the Host the visitor sent (as ngrok replays), not the tunnel's.
_DROPPED = NOT_REPLAYED - {"host"}


class ReplayError(Exception):
    """A replay that cannot be sent; the message says why, for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _headers(message: Message) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in message.headers:
        out.setdefault(_canonical(name), []).append(value)
    return out


def _canonical(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def _raw(message: Message) -> str:
    head = message.start_line + b"\r\n"
    head += b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in message.headers) + b"\r\n"
    return base64.b64encode(head + bytes(message.body)).decode()


def _decoded(message: Message) -> tuple[bytes, str]:
    """The body as shown: gzip and deflate decoded (bounded), else as it came."""
    data = bytes(message.body)
    coding = message.header("content-encoding").lower().split(",")[-1].strip()
    if coding in ("gzip", "x-gzip", "deflate"):
        try:
            inflater = zlib.decompressobj(
                zlib.MAX_WBITS | 32 if coding != "deflate" else zlib.MAX_WBITS
            )
            return inflater.decompress(data, DECODED_MAX), coding
        except zlib.error:
            return data, ""
    return data, ""


def body_document(message: Message) -> dict[str, Any]:
    data, decoded_from = _decoded(message)
    content_type = message.header("content-type").lower()
    document: dict[str, Any] = {
        "size": message.size,
        "captured": len(message.body),
        "truncated": message.truncated,
        "content_type": content_type,
        "decoded_from": decoded_from,
    }
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        document["kind"] = "binary"
        document["base64"] = base64.b64encode(data).decode()
        document["hex"] = _hexdump(data[:HEX_MAX])
        return document
    document["text"] = text
    document["kind"] = "text"
    if "json" in content_type or (text[:1] in "{[" and text.strip()):
        try:
            document["pretty"] = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
            document["kind"] = "json"
        except ValueError:
            pass
    elif "x-www-form-urlencoded" in content_type:
        document["form"] = parse_qsl(text, keep_blank_values=True)
        document["kind"] = "form"
    return document


def _hexdump(data: bytes) -> str:
    lines = []
    for at in range(0, len(data), 16):
        row = data[at : at + 16]
        shown = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{at:08x}  {row.hex(' '):<47}  {shown}")
    return "\n".join(lines)


def capture_document(capture: Capture) -> dict[str, Any]:
    request = capture.request
    method, _, rest = request.start_line.decode("latin-1").partition(" ")
    uri, _, proto = rest.rpartition(" ")
    document: dict[str, Any] = {
        "uri": f"/api/requests/http/{capture.id}",
        "id": capture.id,
        "tunnel_name": capture.tunnel,
        "remote_addr": capture.remote_addr,
        "start": datetime.datetime.fromtimestamp(capture.started, datetime.UTC).isoformat(),
        "duration": int(capture.duration * 1e9),  # nanoseconds, as ngrok's
        "replay_of": capture.replay_of,
        "request": {
            "method": method,
            "proto": proto,
            "uri": uri,
            "headers": _headers(request),
            "raw": _raw(request),
            "body": body_document(request),
        },
        "response": None,
    }
    response = capture.response
    if response is not None and response.start_line:
        proto, _, status = response.start_line.decode("latin-1").partition(" ")
        code = status.split(" ", 1)[0]
        document["response"] = {
            "status": status,
            "status_code": int(code) if code.isdigit() else 0,
            "proto": proto,
            "headers": _headers(response),
            "raw": _raw(response),
            "body": body_document(response),
            "complete": response.complete,
        }
    return document


def summary_document(capture: Capture) -> dict[str, Any]:
    """A capture without its bytes (``raw``, body text): what the list shows; the detail
    has the rest. A list of 200 captures of 1 MiB bodies stays small this way."""
    document = capture_document(capture)
    for side in ("request", "response"):
        part = document[side]
        if part is not None:
            part.pop("raw")
            body = part["body"]
            part["body"] = {k: body[k] for k in ("size", "truncated", "kind", "content_type")}
    return document


def list_document(inspector: Inspector, limit: int, tunnel: str) -> dict[str, Any]:
    picked = [c for c in reversed(inspector.captures.values()) if not tunnel or c.tunnel == tunnel]
    return {
        "uri": "/api/requests/http",
        "requests": [summary_document(c) for c in picked[:limit]],
    }


def _edited_headers(value: object) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for name, values in value.items():
            for item in values if isinstance(values, list) else [values]:
                pairs.append((str(name), str(item)))
    elif isinstance(value, list):
        for pair in value:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ReplayError(400, "headers: a list of [name, value] pairs or an object")
            pairs.append((str(pair[0]), str(pair[1])))
    else:
        raise ReplayError(400, "headers: a list of [name, value] pairs or an object")
    for name, item in pairs:
        if not name or any(c in name for c in " \t\r\n:") or any(c in item for c in "\r\n\x00"):
            raise ReplayError(400, f"header {name!r}: no spaces in a name, no CR, LF or NUL")
    return pairs


def replay_bytes(capture: Capture, edits: dict[str, Any]) -> tuple[bytes, bytes]:
    """The request to send (head and body) for ``capture`` with ``edits`` applied."""
    request = capture.request
    method, _, rest = request.start_line.decode("latin-1").partition(" ")
    path = rest.rpartition(" ")[0]
    method = str(edits.get("method") or method).upper()
    path = str(edits.get("path") or path)
    if not method.isalpha() or not path.startswith("/") or any(c in path for c in " \r\n\x00"):
        raise ReplayError(400, "method: letters only; path: starting with /, without spaces")
    headers = _edited_headers(edits["headers"]) if "headers" in edits else request.headers
    if "body_base64" in edits:
        try:
            body = base64.b64decode(str(edits["body_base64"]), validate=True)
        except binascii.Error:
            raise ReplayError(400, "body_base64: not valid base64") from None
    elif "body" in edits:
        body = str(edits["body"]).encode()
    elif request.truncated:
        raise ReplayError(
            409,
            f"only {len(request.body)} of the {request.size} body bytes were kept; "
            "send the body to replay with",
        )
    else:
        body = bytes(request.body)
    lines = [f"{method} {path} HTTP/1.1"]
    if not any(k.lower() == "host" for k, _ in headers):
        # HTTP/1.1 needs one (RFC 9112 3.2): the captured request's, else the service's.
        lines.append(f"host: {request.header('host') or capture.local}")
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _DROPPED]
    if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        lines.append(f"content-length: {len(body)}")
    lines += [f"x-burrow-replay: {capture.id}", "connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), body


async def replay(
    inspector: Inspector, capture: Capture, edits: dict[str, Any], host: str, port: int
) -> Capture:
    """Send ``capture`` (edited) straight to the local service; the replay's capture."""
    head, body = replay_bytes(capture, edits)
    observer = inspector.observer(capture.tunnel, capture.local, "replay")
    done = asyncio.get_running_loop().create_future()
    finish = observer.response.on_end

    def ended(message: Message) -> None:
        finish(message)
        if not done.done():
            done.set_result(None)

    observer.response.on_end = ended
    observer.request.feed(head + body)
    replayed = next(reversed(inspector.captures.values()))
    replayed.replay_of = capture.id
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError) as exc:
        raise ReplayError(502, f"cannot reach the local service {host}:{port}: {exc}") from exc
    try:
        writer.write(head + body)
        async with asyncio.timeout(REPLAY_TIMEOUT):
            while not done.done():
                data = await reader.read(65536)
                if not data:
                    observer.closed()
                    break
                observer.response.feed(data)
    except TimeoutError:
        raise ReplayError(504, f"the local service did not answer in {REPLAY_TIMEOUT:g}s") from None
    finally:
        writer.close()
    if replayed.response is None or not replayed.response.complete:
        raise ReplayError(502, "the local service closed the connection without a full answer")
    return replayed
