"""The certificate an edge presents to answer an ACME tls-alpn-01 challenge (RFC 8737).

The CA connects to the domain's port 443 with SNI set to the domain and ALPN offering only
``acme-tls/1``. The server must complete the handshake with a self-signed certificate whose
subjectAltName is exactly that domain and which carries the critical ``acmeIdentifier``
extension: the SHA-256 digest of the key authorization, as a DER OCTET STRING (RFC 8737
3). The edge makes that certificate itself from the key authorization it got with the
routing state, with a key of its own, so no private key travels to it for this.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ObjectIdentifier

from certs.selfsigned import IssuedCert, check_dns_name, generate_key

ACME_TLS_ALPN = "acme-tls/1"
# id-pe-acmeIdentifier, RFC 8737 6.1.
ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
_VALID = dt.timedelta(days=7)


def acme_identifier_value(key_authorization: str) -> bytes:
    """The extension's DER value: an OCTET STRING (tag 4, length 32) of the digest."""
    return b"\x04\x20" + hashlib.sha256(key_authorization.encode("ascii")).digest()


def challenge_cert(
    host: str, key_authorization: str, *, now: dt.datetime | None = None
) -> IssuedCert:
    """A self-signed certificate for ``host`` that answers its tls-alpn-01 challenge."""
    name = check_dns_name(host, wildcard=False)
    key = generate_key()
    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(hours=1)
    subject = x509.Name([])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _VALID)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=True)
        .add_extension(
            x509.UnrecognizedExtension(
                ACME_IDENTIFIER_OID, acme_identifier_value(key_authorization)
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return IssuedCert(cert, key)
