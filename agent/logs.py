"""Where the agent's log records go: a file (``--log FILE``), or the terminal through the
display so a record never lands inside the live status line or screen; text or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record, the fields log shippers look for first."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class DisplayLogHandler(logging.Handler):
    """Hands each formatted record to the display, which writes it where it belongs
    (below the screen, or on its own line after clearing the status line)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__()
        self.write = write

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record))
        except Exception:  # a display failure must not take the agent down
            self.handleError(record)


def formatter(fmt: str) -> logging.Formatter:
    return JsonLineFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure(
    level: str,
    fmt: str,
    destination: str,
    to_display: Callable[[str], None] | None,
    stderr: TextIO | None = None,
) -> None:
    """Route the ``burrow`` loggers: to ``destination`` ("stdout", "stderr" or a file path),
    or, when it is empty, through ``to_display`` (the terminal the display owns)."""
    handler: logging.Handler
    if destination == "stdout":
        handler = logging.StreamHandler(sys.stdout)
    elif destination == "stderr":
        handler = logging.StreamHandler(stderr or sys.stderr)
    elif destination:
        handler = logging.FileHandler(destination, encoding="utf-8")
    elif to_display is not None:
        handler = DisplayLogHandler(to_display)
    else:
        handler = logging.StreamHandler(stderr or sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
