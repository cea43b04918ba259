"""``burrow diagnose``: why can this agent not connect? One line per check, each with a hint
when it fails: the edge's name resolves, its agent port and its WebSocket fallback answer,
its certificate verifies (system trust store or ``--ca``), the token reads (org, expiry,
hosts; never its signature), and the local clock agrees with the edge's.

Every check is bounded by ``timeout``; a failed check does not stop the others, so one run
shows everything that is wrong.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.token_view import UnreadableToken, read_token
from proto.constants import AGENT_ALPN

# Further apart than this and token expiry and TLS validity checks start to disagree.
MAX_SKEW_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # "ok" | "FAIL" | "skip"
    detail: str
    hint: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    def line(self) -> str:
        text = f"{self.status:<5} {self.name:<12} {self.detail}"
        return f"{text}; {self.hint}" if self.hint and self.status != "ok" else text


@dataclass(frozen=True, slots=True)
class EdgeTarget:
    """Where the agent would connect, as the CLI worked it out from flags, config, dev edge."""

    host: str
    port: int
    token: str
    ca: str = ""
    wss_host: str = ""
    wss_port: int = 0
    plaintext: bool = False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _days(not_after: str) -> str:
    try:
        left = ssl.cert_time_to_seconds(not_after) - time.time()
    except ValueError:
        return not_after
    return f"valid for {left / 86400:.0f} more days" if left > 0 else f"expired {not_after}"


class Diagnosis:
    def __init__(
        self, target: EdgeTarget, *, timeout: float = 5.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.clock = clock
        self.checks: list[Check] = []
        self._edge_dates: list[tuple[float, float]] = []  # (edge's Date, our clock midpoint)

    def _add(self, name: str, status: str, detail: str, hint: str = "") -> Check:
        check = Check(name, status, detail, hint)
        self.checks.append(check)
        return check

    async def run(self) -> list[Check]:
        t = self.target
        if await self._resolve(t.host):
            await self._reach("agent port", t.host, t.port, alpn=AGENT_ALPN, tls=not t.plaintext)
        wss = bool(t.wss_port) and not t.plaintext
        if wss and (t.wss_host == t.host or await self._resolve(t.wss_host, "dns (wss)")):
            await self._reach("wss", t.wss_host, t.wss_port, alpn="http/1.1", tls=True)
        self._token()
        self._clock()
        return self.checks

    async def _resolve(self, host: str, name: str = "dns") -> bool:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), self.timeout
            )
        except (OSError, TimeoutError) as exc:
            self._add(
                name, "FAIL", f"{host} does not resolve ({_reason(exc)})",
                "check the name in --server or the config file, and this machine's DNS",
            )  # fmt: skip
            return False
        addresses = sorted({str(info[4][0]) for info in infos})
        self._add(name, "ok", f"{host} -> {', '.join(addresses[:4])}")
        return True

    def _context(self, alpn: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.target.ca or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols([alpn])
        return context

    async def _reach(self, name: str, host: str, port: int, *, alpn: str, tls: bool) -> None:
        """TCP, then TLS with the certificate verified, then (for HTTPS) the Date header."""
        started = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self.timeout
            )
        except (OSError, TimeoutError) as exc:
            if isinstance(exc, ConnectionRefusedError):
                hint = "nothing listens there: is the edge running, and is this its port?"
            elif name == "agent port":
                hint = "a firewall may block it: try --transport wss"
            else:
                hint = "this network may block it; the agent port may still work"
            self._add(name, "FAIL", f"cannot connect to {host}:{port} ({_reason(exc)})", hint)
            return
        tcp_ms = (time.monotonic() - started) * 1000
        if not tls:
            writer.close()
            self._add(name, "ok", f"{host}:{port} answers ({tcp_ms:.1f} ms, plaintext)")
            return
        try:
            await asyncio.wait_for(
                writer.start_tls(self._context(alpn), server_hostname=host), self.timeout
            )
        except ssl.SSLCertVerificationError as exc:
            writer.close()
            self._add(name, "ok", f"{host}:{port} answers ({tcp_ms:.1f} ms)")
            where = f"--ca {self.target.ca}" if self.target.ca else "the system trust store"
            self._add(
                f"cert ({name})" if name != "agent port" else "certificate", "FAIL",
                f"{host}:{port}: {exc.verify_message} (checked against {where})",
                "pass --ca FILE with the edge's CA (burrowd dev: ~/.local/state/burrow/ca/ca.pem)"
                if not self.target.ca else "is this the CA that signed the edge's certificate?",
            )  # fmt: skip
            return
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            writer.close()
            self._add(
                name, "FAIL", f"{host}:{port} accepts TCP but not TLS ({_reason(exc)})",
                "is this the edge's agent or HTTPS port, and is it started with TLS?",
            )  # fmt: skip
            return
        self._add(name, "ok", f"{host}:{port} answers ({tcp_ms:.1f} ms, TLS)")
        sslobj = writer.get_extra_info("ssl_object")
        cert = sslobj.getpeercert() if sslobj is not None else None
        if cert and not self._has("certificate"):
            subject = dict(x[0] for x in cert.get("subject", ()))
            issuer = dict(x[0] for x in cert.get("issuer", ()))
            self._add(
                "certificate",
                "ok",
                f"{subject.get('commonName', host)} from {issuer.get('commonName', '?')}, "
                f"{_days(str(cert.get('notAfter', '')))}",
            )
        if alpn == "http/1.1":
            await self._edge_date(reader, writer, host)
        writer.close()

    def _has(self, name: str) -> bool:
        return any(c.name == name for c in self.checks)

    async def _edge_date(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str
    ) -> None:
        """The edge's clock, from the Date header of any response on its HTTPS port."""
        sent = self.clock()
        writer.write(f"HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        received = self.clock()
        for line in head.decode("latin-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == "date":
                try:
                    edge_time = email.utils.parsedate_to_datetime(value.strip()).timestamp()
                except (TypeError, ValueError):
                    return
                # The Date is whole seconds, sent somewhere between our send and receive.
                self._edge_dates.append((edge_time + 0.5, (sent + received) / 2))

    def _token(self) -> None:
        token = self.target.token
        if not token:
            self._add(
                "token", "FAIL", "no authtoken configured",
                "run `burrow config add-authtoken TOKEN` (or start `burrowd dev`)",
            )  # fmt: skip
            return
        try:
            view = read_token(token)
        except UnreadableToken as exc:
            self._add("token", "skip", f"claims not readable here: {exc}")
            return
        now = self.clock()
        hosts = ", ".join(view.hosts) if view.hosts else "random names and names under the base"
        detail = (
            f"org {view.org}, token {view.token_id}, {view.expiry_text(now)}; "
            f"protocols {', '.join(view.protocols)}; hosts: {hosts}"
        )
        if view.expires_at and view.expires_at <= now:
            self._add("token", "FAIL", detail, "ask your Burrow operator for a new token")
        else:
            self._add("token", "ok", detail)
        if view.issued_at and view.issued_at - now > MAX_SKEW_SECONDS:
            self._add(
                "clock", "FAIL",
                f"this machine's clock is at least {view.issued_at - now:.0f} s behind the "
                "time the token was issued",
                "set the clock right (e.g. `timedatectl set-ntp true`)",
            )  # fmt: skip

    def _clock(self) -> None:
        if self._has("clock"):
            return
        if not self._edge_dates:
            self._add("clock", "skip", "the edge sent no Date header to compare with")
            return
        edge_time, ours = self._edge_dates[-1]
        skew = ours - edge_time
        ahead = "ahead of" if skew > 0 else "behind"
        detail = f"{abs(skew):.0f} s {ahead} the edge's clock"
        if abs(skew) > MAX_SKEW_SECONDS:
            self._add(
                "clock", "FAIL", detail, "set the clock right (e.g. `timedatectl set-ntp true`)"
            )
        else:
            self._add("clock", "ok", detail)


async def diagnose(
    target: EdgeTarget, *, per_check: float = 5.0, clock: Callable[[], float] = time.time
) -> list[Check]:
    """Run every check; ``per_check`` seconds at most for each network step."""
    return await Diagnosis(target, timeout=per_check, clock=clock).run()
