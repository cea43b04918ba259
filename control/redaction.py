"""Credentials never reach the logs. aiohttp logs a request it cannot parse at ERROR with
the offending header line quoted (``b'Authorization: Bearer bk.…'``); a filter on its
loggers and ours rewrites the message and the formatted traceback before any handler sees
them: header values that carry credentials, bearer secrets, API keys and session cookies
become ``[redacted]``."""

from __future__ import annotations

import logging
import re

_REDACTED = "[redacted]"

_PATTERNS = (
    # Whole header values (up to the end of the line or of the quoted bytes).
    re.compile(
        r"(?i)\b((?:proxy-)?authorization|cookie|set-cookie|x-api-key|api-key|burrow-edge-key)"
        r"(\s*[:=]\s*)[^'\"\n]*"
    ),
    re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s'\"\\]+"),
    re.compile(r"\b(bk)(\.)[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)?"),
    re.compile(r"\b(burrow_session)(=)[^;\s'\"\\]+"),
)

# Loggers whose records may quote a request: aiohttp's, and the control service's own. A
# logger's filters see only what is logged on that logger, not on its children, hence each.
LOGGERS = (
    "aiohttp.server",
    "aiohttp.access",
    "aiohttp.web",
    "aiohttp.internal",
    "burrow.control",
)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + m.group(2) + _REDACTED, text)
    return text


class CredentialRedactor(logging.Filter):
    """Rewrites a record in place; never drops one (the error itself must still be seen)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info:
            # Formatters print exc_text when it is set, rather than formatting exc_info,
            # whose exception message holds the raw header line.
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_INSTALLED = CredentialRedactor()


def install() -> None:
    """Idempotent: every control app in a process installs it, once per logger."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _INSTALLED not in logger.filters:
            logger.addFilter(_INSTALLED)
