"""Publishing ACME dns-01 TXT records (RFC 8555 8.4), for the base domain's wildcard.

A ``DnsProvider`` puts ``_acme-challenge.<name>  TXT  <value>`` in place and takes it away
again. Two ship: ``HookCommand`` runs the operator's program (``HOOK present NAME VALUE``,
then ``HOOK cleanup NAME VALUE``), which fits any DNS host with a CLI or API; and
``Rfc2136`` sends dynamic updates (RFC 2136, signed with TSIG, RFC 8945) to the zone's
primary server, as BIND, Knot and PowerDNS accept. Both block; the worker calls them in a
thread.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from typing import Protocol

import dns.exception
import dns.name
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update

HOOK_SECONDS = 120.0
TXT_TTL = 60


class DnsError(Exception):
    """The TXT record could not be placed or removed; the message says why."""


class DnsProvider(Protocol):
    def present(self, record: str, value: str) -> None: ...

    def cleanup(self, record: str, value: str) -> None: ...


def record_name(identifier: str) -> str:
    """Where the TXT record goes: ``_acme-challenge.example.com.`` for ``*.example.com``."""
    return "_acme-challenge." + identifier.removeprefix("*.").rstrip(".") + "."


@dataclass(slots=True)
class HookCommand:
    """``command present|cleanup RECORD VALUE``; a non-zero exit fails the order."""

    command: str

    def present(self, record: str, value: str) -> None:
        self._run("present", record, value)

    def cleanup(self, record: str, value: str) -> None:
        self._run("cleanup", record, value)

    def _run(self, action: str, record: str, value: str) -> None:
        argv = [*shlex.split(self.command), action, record, value]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=HOOK_SECONDS, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DnsError(f"the dns-01 hook {argv[0]} could not run: {exc}") from exc
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise DnsError(
                f"the dns-01 hook {argv[0]} {action} exited {done.returncode}"
                + (f": {said[-1]}" if said else "")
            )


@dataclass(slots=True)
class Rfc2136:
    """Dynamic updates to ``server`` for ``zone``, TSIG-signed when a key is given."""

    server: str
    zone: str
    port: int = 53
    tsig_name: str = ""
    tsig_secret: str = ""  # base64, as in a BIND key file
    tsig_algorithm: str = "hmac-sha256"
    timeout: float = 10.0

    def present(self, record: str, value: str) -> None:
        update = self._update()
        update.add(dns.name.from_text(record), TXT_TTL, "TXT", _quoted(value))
        self._send(update, f"adding {record} TXT")

    def cleanup(self, record: str, value: str) -> None:
        update = self._update()
        update.delete(dns.name.from_text(record), "TXT", _quoted(value))
        self._send(update, f"removing {record} TXT")

    def _update(self) -> dns.update.UpdateMessage:
        keyring = None
        if self.tsig_name:
            keyring = dns.tsigkeyring.from_text({self.tsig_name: self.tsig_secret})
        return dns.update.UpdateMessage(
            self.zone, keyring=keyring, keyalgorithm=self.tsig_algorithm
        )

    def _send(self, update: dns.update.UpdateMessage, doing: str) -> None:
        try:
            answer = dns.query.tcp(update, self.server, timeout=self.timeout, port=self.port)
        except (dns.exception.DNSException, OSError) as exc:
            # A server that does not know the key answers unsigned (RFC 8945 5.3.2).
            hint = "; check the TSIG key name and secret" if "TSIG" in str(exc) else ""
            raise DnsError(f"{doing} at {self.server}: {exc}{hint}") from exc
        if answer.rcode() != dns.rcode.NOERROR:
            raise DnsError(
                f"{doing}: {self.server} answered {dns.rcode.to_text(answer.rcode())}; check "
                "the zone name and that the TSIG key may update it"
            )


def _quoted(value: str) -> str:
    return '"' + value + '"'
