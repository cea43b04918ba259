"""Operator alerts from the certs worker: a log line always, and a signed webhook.

The webhook gets ``POST`` with a JSON body and two headers::

    X-Burrow-Timestamp: 1767225600
    X-Burrow-Signature: v1=<hex HMAC-SHA256 over "<timestamp>." + raw body>

The receiver recomputes the HMAC with the shared secret over the raw bytes it received
(never over re-serialized JSON), compares in constant time, and refuses a timestamp more
than a few minutes old, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

log = logging.getLogger("burrow.certs.alerts")

TIMESTAMP_HEADER = "X-Burrow-Timestamp"
SIGNATURE_HEADER = "X-Burrow-Signature"
WEBHOOK_TIMEOUT = 10.0


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def signature_valid(
    secret: str, timestamp: str, body: bytes, given: str, *, now: float, tolerance: float = 300
) -> bool:
    """The receiver's check (for operators' own receivers, and the tests)."""
    try:
        when = int(timestamp)
    except ValueError:
        return False
    if abs(now - when) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, when, body), given)


class Alerts:
    """Sends one alert: ``send(kind, host, message, **details)``; whether it was delivered
    (always True without a webhook: the log line is the alert)."""

    def __init__(
        self, webhook_url: str = "", secret: str = "", clock: Callable[[], float] = time.time
    ) -> None:
        self.webhook_url = webhook_url
        self.secret = secret
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self.on_outcome: Callable[[str], None] = lambda outcome: None

    async def send(self, kind: str, host: str, message: str, **details: Any) -> bool:
        log.warning("certificate alert %s for %s: %s", kind, host, message)
        if not self.webhook_url:
            return True
        timestamp = int(self._clock())
        body = json.dumps(
            {"kind": kind, "host": host, "message": message, "at": timestamp, **details},
            sort_keys=True,
            default=str,
        ).encode()
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(timestamp)}
        if self.secret:
            headers[SIGNATURE_HEADER] = signature(self.secret, timestamp, body)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT)
            )
        try:
            async with self._session.post(self.webhook_url, data=body, headers=headers) as resp:
                ok = 200 <= resp.status < 300
                status = str(resp.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            ok, status = False, str(exc) or type(exc).__name__
        if not ok:
            log.warning(
                "the alert webhook %s failed (%s); retrying later", self.webhook_url, status
            )
        self.on_outcome("alert_sent" if ok else "alert_failed")
        return ok

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
