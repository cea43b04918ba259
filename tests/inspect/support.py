"""Capture records as an edge's capture filter builds them."""

from __future__ import annotations

import secrets
import time
from typing import Any

from bus.captures import CaptureRecord, build_capture
from tests.control.test_tunnels_api import eventually


def capture(org: str, n: int = 0, **changes: Any) -> CaptureRecord:
    fields: dict[str, Any] = {
        "org": org,
        "tunnel_id": "sess_a/1",
        "hostname": "app.tunnels.test",
        "edge_id": "edge-1",
        "request_id": f"rq{n}",
        "method": b"GET",
        "target": f"/items/{n}?q=1".encode(),
        "protocol": "http/1.1",
        "request_headers": [(b"host", b"app.tunnels.test"), (b"authorization", b"Bearer s3cret")],
        "response_headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        "status": 200,
        "visitor": "203.0.113.9",
        "started": time.time(),
        "first_byte": time.time() + 0.01,
        "ended": time.time() + 0.02,
        "response_prefix": b"ok",
        "response_size": 2,
    }
    fields.update(changes)
    return build_capture(**fields)


def new_org() -> str:
    return f"org_{secrets.token_hex(5)}"


__all__ = ["capture", "eventually", "new_org"]
