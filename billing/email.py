"""Mail to an org's owners (payment reminders, downgrades): ``EmailSender``, with an SMTP
implementation (stdlib smtplib, run in a thread so the loop never waits on a mail server)
and one that only logs, for installations without a mail server."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage
from typing import Protocol

from billing.settings import BillingSettings

log = logging.getLogger("burrow.billing.email")


class EmailError(Exception):
    """The mail server refused or could not be reached; the message says which."""


class EmailSender(Protocol):
    async def send(self, to: list[str], subject: str, body: str) -> None: ...


class SmtpSender:
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        user: str = "",
        password: str = "",
        starttls: bool = True,
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self._user = user
        self._password = password
        self._starttls = starttls
        self._timeout = timeout

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self._timeout) as smtp:
            if self._starttls:
                smtp.starttls()
            if self._user:
                smtp.login(self._user, self._password)
            smtp.send_message(message)

    async def send(self, to: list[str], subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(to)
        message["Subject"] = subject
        message.set_content(body)
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as exc:
            raise EmailError(f"cannot send mail through {self.host}:{self.port}: {exc}") from exc


class LogSender:
    """No mail server configured: what would have been sent goes to the log."""

    async def send(self, to: list[str], subject: str, body: str) -> None:
        log.warning(
            "no SMTP server set (BURROW_BILLING_SMTP_HOST); not sent to %s: %s",
            ", ".join(to),
            subject,
        )


def sender_from(settings: BillingSettings) -> EmailSender:
    if not settings.smtp_host:
        return LogSender()
    return SmtpSender(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_from,
        user=settings.smtp_user,
        password=settings.smtp_password,
        starttls=settings.smtp_starttls,
    )
