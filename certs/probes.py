"""What an edge really serves for a host: connect to its HTTPS listener with the host as
SNI and read the certificate it presents (no verification: a wrong or self-signed one is
what the probe is there to find)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from dataclasses import dataclass

from cryptography import x509

from certs.records import fingerprint


@dataclass(frozen=True, slots=True)
class Served:
    address: str
    fingerprint: str = ""
    not_after: dt.datetime | None = None
    names: tuple[str, ...] = ()
    error: str = ""  # why nothing was read ("" when a certificate was)


def _context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


_CONTEXT = _context()


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port or 443)


async def probe(address: str, server_name: str, within: float) -> Served:
    host, port = split_address(address)
    writer = None
    try:
        async with asyncio.timeout(within):
            _, writer = await asyncio.open_connection(
                host, port, ssl=_CONTEXT, server_hostname=server_name
            )
            sslobj = writer.get_extra_info("ssl_object")
            der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        return Served(address, error=f"cannot reach the edge at {address}: {exc or 'timeout'}")
    finally:
        if writer is not None:
            writer.close()
    if not der:
        return Served(address, error=f"the edge at {address} presented no certificate")
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return Served(address, fingerprint(cert), cert.not_valid_after_utc, names)
