"""How ``burrowd`` writes its log: ``text`` (the default, for a terminal) or ``json`` (one
object per line, for a log shipper).

JSON lines carry ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``msg``,
every field a log call passed in ``extra`` (``request_id`` on every line about a visitor
request; the access log's fields), and ``exc`` with the traceback when there is one. Text
lines end with ``request_id=...`` when they are about a request.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

ACCESS_LOGGER = "burrow.edge.access"
FORMATS = ("text", "json")

# What every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and k[:1] != "_"}


def _plain(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extra(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=_plain, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, with the request id (when the line is about a request) after the
    message; the access log's other fields are in its message already."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None)
        if request_id is None:
            return text
        first, nl, rest = text.partition("\n")  # a traceback stays below
        return f"{first} request_id={_plain(request_id)}{nl}{rest}"


def configure_logging(level: str, fmt: str = "text", *, access_log: bool = False) -> None:
    """Log to stderr at ``level`` in ``fmt``; the access log only if asked for."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO if access_log else logging.WARNING)
