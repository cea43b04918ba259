"""The access log: one line per visitor request, on the ``burrow.edge.access`` logger at
INFO, with the request's fields as ``extra`` (``--log-format json`` prints them as keys).

``burrowd --access-log`` turns it on; otherwise the logger sits at WARNING and the visitors'
one ``access.isEnabledFor(INFO)`` per request is all it costs.
"""

from __future__ import annotations

import logging
from typing import Final

access: Final = logging.getLogger("burrow.edge.access")
INFO: Final = logging.INFO
_MAX_TARGET: Final = 1024  # a request target may be 16 KiB; a log line need not be


def log_access(
    protocol: str,
    request_id: bytes,
    client: str,
    method: bytes,
    host: str | bytes,
    target: bytes,
    status: int,
    seconds: float | None,
) -> None:
    """``seconds``: None for the edge's own error pages, which are not timed."""
    host_text = host.decode("latin-1") if isinstance(host, bytes) else host
    method_text = method.decode("latin-1")
    path = target[:_MAX_TARGET].decode("latin-1")
    ms = round(seconds * 1000, 3) if seconds is not None else None
    access.info(
        '%s %s "%s %s" %d %s',
        client,
        host_text,
        method_text,
        path,
        status,
        f"{ms}ms" if ms is not None else "-",
        extra={
            "request_id": request_id.decode("latin-1"),
            "protocol": protocol,
            "client": client,
            "method": method_text,
            "host": host_text,
            "path": path,
            "status": status,
            "duration_ms": ms,
        },
    )
