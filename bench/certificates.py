"""A throwaway CA and one server certificate for the TLS benchmarks.

Made fresh in a temporary directory at the start of a run and deleted at its end: the edge
loads the certificate through ``EdgeConfig.tls_files``, the TLS origin serves the same one,
and the load generators trust only the CA. The certificate names ``bench.localhost`` alone:
OpenSSL will not match ``*.localhost`` (a wildcard directly under a one-label parent), and
``bench.localhost`` is the tunnel's host, so SNI and the Host header agree on both paths.
"""

from __future__ import annotations

import datetime as dt
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAME = "bench.localhost"
_VALID = dt.timedelta(days=2)
_BACKDATE = dt.timedelta(hours=1)  # a little clock skew between processes is harmless


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(slots=True)
class BenchCertificates:
    """``ca.pem``, ``cert.pem`` (leaf then CA) and ``key.pem`` in ``directory``."""

    directory: Path
    ca_file: Path
    cert_file: Path
    key_file: Path
    server_name: str = SERVER_NAME

    @classmethod
    def create(cls, server_name: str = SERVER_NAME) -> BenchCertificates:
        directory = Path(tempfile.mkdtemp(prefix="burrow-bench-tls-"))
        start = dt.datetime.now(dt.UTC) - _BACKDATE
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Burrow bench CA")])
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + _VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + _VALID)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(server_name)]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        made = cls(
            directory,
            directory / "ca.pem",
            directory / "cert.pem",
            directory / "key.pem",
            server_name,
        )
        made.ca_file.write_bytes(ca.public_bytes(pem))
        made.cert_file.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
        made.key_file.touch(mode=0o600)
        made.key_file.write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        return made

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> BenchCertificates:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def server_context(cert_file: str | Path, key_file: str | Path, alpn: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(alpn)
    return context


def client_context(ca_file: str | Path, alpn: list[str]) -> ssl.SSLContext:
    """Trusts the bench CA only, checks the host name, offers ``alpn``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(alpn)
    return context
