"""Certificates Burrow makes itself: self-signed leaves and a local development CA.

The edge needs *some* certificate for every hostname it terminates, including hosts with no
ACME or static certificate yet. Without help that is a self-signed leaf, which a browser
rejects with a warning. ``LocalCA`` removes the warning in development: ``burrowd dev``
creates one CA per machine, persists it, and issues each ``*.localhost`` fallback from it, so
a developer trusts ``ca.pem`` once and every tunnel verifies.

Leaves are issued per hostname (``SAN = app.localhost``) rather than as one ``*.localhost``
wildcard: wildcards directly under a top-level name are refused by some clients, and a
per-host leaf verifies everywhere.

All keys are EC P-256: generating one takes tens of microseconds, so a fallback can be made
inside a TLS handshake, and every TLS 1.2+ client supports ECDSA.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs import CertError

__all__ = [
    "CA_CERT_FILE",
    "CA_COMMON_NAME",
    "CA_KEY_FILE",
    "IssuedCert",
    "LocalCA",
    "check_dns_name",
    "generate_key",
    "self_signed_cert",
]

CA_COMMON_NAME = "Burrow local development CA"
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
LEAF_DAYS = 90
CA_DAYS = 10 * 365
# A certificate dated exactly "now" fails on a client whose clock is a little behind ours.
BACKDATE = dt.timedelta(hours=1)
# X.520 caps commonName at 64 characters; longer hostnames go in the SAN alone.
_CN_MAX = 64

# Hostname syntax (RFC 1123 labels; "_" tolerated because real zones contain it), with an
# optional leading "*." for wildcards (RFC 6125 6.4.3: only the whole left-most label).
_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_NAME = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A leaf certificate with its private key, as objects and as PEM."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def chain_pem(self) -> bytes:
        """The chain to serve: the leaf alone (a trusted root need not be sent)."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def check_dns_name(name: str, *, wildcard: bool = True) -> str:
    """Return ``name`` lowercased without a trailing dot, or raise CertError if it is no
    hostname a certificate can carry."""
    norm = name.lower().rstrip(".")
    if len(norm) > 253 or not _NAME.match(norm) or (not wildcard and norm.startswith("*")):
        raise CertError(f"{name!r} is not a valid DNS name for a certificate")
    return norm


def self_signed_cert(
    hostname: str, *, now: dt.datetime | None = None, days: int = LEAF_DAYS
) -> IssuedCert:
    """A self-signed serverAuth leaf for ``hostname`` (SAN = hostname), valid ``days``."""
    name = check_dns_name(hostname)
    key = generate_key()
    subject = _leaf_subject(name)
    start = (now or _utcnow()) - BACKDATE
    builder = _leaf_builder([name], subject, key.public_key(), start, start + _days(days))
    builder = builder.issuer_name(subject)
    return IssuedCert(builder.sign(key, hashes.SHA256()), key)


class LocalCA:
    """A development certificate authority kept in a directory as ``ca.pem`` and
    ``ca-key.pem`` (0600).

    Use ``LocalCA.load_or_create(directory)``: the first run creates the CA, later runs load
    the same one, so a developer trusts it once.
    """

    __slots__ = ("cert", "directory", "key")

    def __init__(
        self,
        cert: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        directory: Path | None = None,
    ) -> None:
        if _spki(cert.public_key()) != _spki(key.public_key()):
            raise CertError("the CA key does not match the CA certificate")
        self.cert = cert
        self.key = key
        self.directory = directory

    # -- creating, saving, loading ------------------------------------------------------------

    @classmethod
    def create(cls, *, now: dt.datetime | None = None, days: int = CA_DAYS) -> LocalCA:
        """A new CA in memory; ``save()`` it to keep it."""
        key = generate_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Burrow"),
                x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
            ]
        )
        start = (now or _utcnow()) - BACKDATE
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + _days(days))
            # pathlen 0: this CA signs leaves only, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> LocalCA:
        path = Path(directory)
        cert_file, key_file = path / CA_CERT_FILE, path / CA_KEY_FILE
        try:
            cert_pem, key_pem = cert_file.read_bytes(), key_file.read_bytes()
        except OSError as e:
            raise CertError(f"cannot read the local CA in {path}: {e.strerror}") from e
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except ValueError as e:
            raise CertError(
                f"the local CA in {path} is damaged ({e}); delete the directory to make a new one"
            ) from e
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertError(f"{key_file} is not an EC key; delete {path} to make a new local CA")
        return cls(cert, key, path)

    @classmethod
    def load_or_create(cls, directory: str | os.PathLike[str]) -> LocalCA:
        """Load the CA from ``directory``, or create and save one there if it has none."""
        path = Path(directory)
        has_cert, has_key = (path / CA_CERT_FILE).exists(), (path / CA_KEY_FILE).exists()
        if has_cert and has_key:
            return cls.load(path)
        if has_cert or has_key:
            # Making a new pair here would silently invalidate what the developer trusts.
            missing = CA_KEY_FILE if has_cert else CA_CERT_FILE
            raise CertError(
                f"{path} holds half a local CA ({missing} is missing); restore it, or delete "
                f"{path} to make a new CA (and trust the new ca.pem)"
            )
        ca = cls.create()
        ca.save(path)
        return ca

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``ca.pem`` and ``ca-key.pem`` (0600) into ``directory`` (made 0700)."""
        path = Path(directory)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Key first: a crash in between leaves "key without cert", which load_or_create
        # reports, never a trusted-looking cert with no key.
        _write_atomic(path / CA_KEY_FILE, _key_pem(self.key), 0o600)
        _write_atomic(path / CA_CERT_FILE, self.cert_pem, 0o644)
        self.directory = path

    # -- using --------------------------------------------------------------------------------

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_path(self) -> Path | None:
        return None if self.directory is None else self.directory / CA_CERT_FILE

    def issue(
        self, names: Sequence[str], *, now: dt.datetime | None = None, days: int = LEAF_DAYS
    ) -> IssuedCert:
        """A serverAuth leaf for ``names`` (e.g. ``["app.localhost"]`` or
        ``["localhost", "*.localhost"]``) signed by this CA."""
        if not names:
            raise CertError("a certificate needs at least one name")
        dns = list(dict.fromkeys(check_dns_name(n) for n in names))
        key = generate_key()
        start = (now or _utcnow()) - BACKDATE
        # A leaf outliving its issuer fails verification; stop where the CA stops.
        end = min(start + _days(days), self.cert.not_valid_after_utc)
        builder = _leaf_builder(dns, _leaf_subject(dns[0]), key.public_key(), start, end)
        builder = builder.issuer_name(self.cert.subject).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
            critical=False,
        )
        return IssuedCert(builder.sign(self.key, hashes.SHA256()), key)

    def trust_instructions(self) -> str:
        """How a developer makes their tools trust this CA."""
        if self.cert_path is None:
            raise CertError("this local CA exists only in memory; save() it to a directory first")
        p = shlex.quote(str(self.cert_path))
        return (
            f"Burrow's local development CA is {self.cert_path}\n"
            "Trust it once and https://*.localhost tunnels open without certificate warnings.\n"
            "\n"
            f"  curl           curl --cacert {p} https://app.localhost:8443/\n"
            f"  Debian/Ubuntu  sudo cp {p} /usr/local/share/ca-certificates/burrow-dev.crt\n"
            "                 sudo update-ca-certificates\n"
            "  macOS          sudo security add-trusted-cert -d -r trustRoot \\\n"
            f"                   -k /Library/Keychains/System.keychain {p}\n"
            "  Firefox        Settings > Privacy & Security > Certificates > View Certificates\n"
            "                 > Authorities > Import, tick 'Trust this CA to identify websites'\n"
            f"  Windows        certutil -addstore -f ROOT {p}   (as administrator)\n"
            "  Chrome         on Linux: Settings > Privacy and security > Security > Manage\n"
            "                 certificates, import it as a trusted authority; on macOS and\n"
            "                 Windows Chrome uses the system store (lines above)\n"
            "\n"
            f"Keep {CA_KEY_FILE} private: whoever holds it can impersonate any site to a machine\n"
            "that trusts this CA.\n"
        )


# -- helpers ----------------------------------------------------------------------------------


def _leaf_builder(
    names: list[str],
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # RFC 5280 4.2.1.6: with an empty subject the SAN extension must be critical.
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
            critical=len(subject) == 0,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _leaf_subject(name: str) -> x509.Name:
    if len(name) > _CN_MAX:
        return x509.Name([])
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` via a temp file born with ``mode`` (a key is never readable
    by others, not even for an instant), then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # left by a crashed run with our pid
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _days(days: int) -> dt.timedelta:
    return dt.timedelta(days=days)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
