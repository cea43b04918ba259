"""Which certificate the edge presents for a hostname, as a ready server ``ssl.SSLContext``.

Theory of operation
-------------------

The edge's SNI callback calls ``CertStore.context_for(server_name)`` once per TLS handshake
and swaps the returned context into the connection, so the lookup is two dict probes and a
clock read::

    exact name  ->  "*." + parent (one label deep)  ->  generated fallback for the host

A certificate that is expired (or not yet valid) at lookup time is skipped as if absent, so
an ACME renewal that failed shows up as a fallback certificate, not as an expired one.

One ``_CertEntry`` per certificate holds the parsed chain and key and, once built, the one
``SSLContext`` for that certificate: every name of the certificate maps to the same entry,
so ten thousand hosts under ``*.example.com`` share one context. ``put()`` points names at
a new entry; the old entry, and its context, goes away with its last name. Contexts are
built on first use (a store may hold thousands of certificates the edge never serves) and
built again only when a certificate is replaced.

Fallbacks (hosts with no usable certificate) are made on demand: issued by the ``LocalCA``
when one is configured (``burrowd dev``), self-signed otherwise. They live in a bounded LRU
because the server name is chosen by whoever connects.

OpenSSL loads a certificate chain and key only from files. On Linux they go into anonymous
``memfd`` files opened through ``/proc/self/fd`` and never touch a filesystem. Elsewhere (or
with ``scratch_dir``) they go into a fresh 0700 directory as 0600 files, the key encrypted
with a one-time password held only in memory, and are deleted straight after loading.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import ssl
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import NameOID

from certs import CertError
from certs.selfsigned import IssuedCert, LocalCA, check_dns_name, self_signed_cert

__all__ = ["DEFAULT_ALPN", "CertError", "CertInfo", "CertStore"]

DEFAULT_ALPN: tuple[str, ...] = ("h2", "http/1.1")
FALLBACK_CACHE_SIZE = 1024
# TLS 1.2 suites offered: ECDHE (forward secrecy) with AES-GCM or ChaCha20-Poly1305.
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
# Keys a TLS server can sign handshakes with.
_SERVER_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)
# Python's default server context runs OpenSSL at security level 2, which refuses these when
# the context is built; refusing them in put() keeps that failure out of the handshake.
_MIN_RSA_BITS = 2048
_WEAK_SIGNATURE_HASHES = (hashes.MD5, hashes.SHA1)
_HAVE_MEMFD = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What the store knows about one certificate (``info(name)``)."""

    names: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    source: str  # "acme", "static", "fallback", ...
    fingerprint: str  # SHA-256 of the leaf, "AB:CD:...", as browsers show it


class _CertEntry:
    """One certificate: chain, key, validity and, once built, its SSLContext."""

    __slots__ = ("chain_pem", "context", "info", "key", "not_after", "not_before")

    def __init__(
        self, leaf: x509.Certificate, chain_pem: bytes, key: PrivateKeyTypes, source: str
    ) -> None:
        names = _cert_names(leaf)
        self.info = CertInfo(
            names=names,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            source=source,
            fingerprint=leaf.fingerprint(hashes.SHA256()).hex(":").upper(),
        )
        self.chain_pem = chain_pem
        self.key = key
        # Epoch floats: the per-handshake validity check is two float comparisons.
        self.not_before = self.info.not_before.timestamp()
        self.not_after = self.info.not_after.timestamp()
        self.context: ssl.SSLContext | None = None

    def valid_at(self, now: float) -> bool:
        return self.not_before <= now < self.not_after


class CertStore:
    """Certificates by hostname, served as ready server SSLContexts.

    ``clock`` returns epoch seconds (``time.time``); tests move it to expire certificates.
    ``scratch_dir`` forces chain and key through files in a private directory under it
    instead of memfd (see the module docstring).
    """

    def __init__(
        self,
        *,
        alpn_protocols: Sequence[str] = DEFAULT_ALPN,
        local_ca: LocalCA | None = None,
        clock: Callable[[], float] = time.time,
        fallback_cache_size: int = FALLBACK_CACHE_SIZE,
        scratch_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.local_ca = local_ca
        self._alpn = list(alpn_protocols)
        self._clock = clock
        self._fallback_cache_size = fallback_cache_size
        self._scratch_dir = None if scratch_dir is None else os.fspath(scratch_dir)
        # Name ("a.example.com" or "*.example.com") -> entry. Readers take no lock: a dict
        # probe is atomic under the GIL, and writers only ever swap whole entries.
        self._by_name: dict[str, _CertEntry] = {}
        self._fallbacks: OrderedDict[str, _CertEntry] = OrderedDict()
        # tls-alpn-01 answers (RFC 8737), by host: few, short-lived, built when placed.
        self._challenges: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    # -- the hot path -------------------------------------------------------------------------

    def context_for(self, hostname: str) -> ssl.SSLContext:
        """The server context for ``hostname``: exact certificate, else wildcard, else a
        fallback. Raises CertError only if ``hostname`` is no valid DNS name, or OpenSSL
        refuses a stored certificate (the edge then fails the handshake with an alert)."""
        host = hostname.lower().rstrip(".")
        now = self._clock()
        by_name = self._by_name
        entry = by_name.get(host)
        if entry is None or not entry.valid_at(now):
            # RFC 6125 6.4.3: "*" stands for exactly one whole label, so "*.example.com"
            # covers "a.example.com" but neither "a.b.example.com" nor "example.com".
            dot = host.find(".")
            entry = by_name.get("*" + host[dot:]) if dot > 0 else None
            if entry is None or not entry.valid_at(now):
                return self._fallback_context(host, now)
        context = entry.context
        if context is None:
            context = self._build_context(entry)
        return context

    def covers(self, hostname: str) -> bool:
        """Whether a stored (not generated) certificate valid now serves ``hostname``."""
        host = hostname.lower().rstrip(".")
        now = self._clock()
        entry = self._by_name.get(host)
        if entry is not None and entry.valid_at(now):
            return True
        dot = host.find(".")
        entry = self._by_name.get("*" + host[dot:]) if dot > 0 else None
        return entry is not None and entry.valid_at(now)

    # -- tls-alpn-01 ----------------------------------------------------------------------------

    def challenge_context_for(self, hostname: str) -> ssl.SSLContext | None:
        """The context answering a tls-alpn-01 challenge for ``hostname``, if one is placed."""
        if not self._challenges:
            return None
        return self._challenges.get(hostname.lower().rstrip("."))

    def put_challenge(self, hostname: str, key_authorization: str) -> None:
        """Answer tls-alpn-01 handshakes for ``hostname`` with a certificate carrying the
        digest of ``key_authorization`` (``certs.alpn_challenge``)."""
        from certs.alpn_challenge import ACME_TLS_ALPN, challenge_cert

        issued = challenge_cert(hostname, key_authorization)
        entry = _CertEntry(issued.cert, issued.chain_pem, issued.key, "acme-challenge")
        context = self._build_context(entry, alpn=(ACME_TLS_ALPN,))
        with self._lock:
            self._challenges[entry.info.names[0]] = context

    def drop_challenge(self, hostname: str) -> None:
        with self._lock:
            self._challenges.pop(hostname.lower().rstrip("."), None)

    # -- adding and removing certificates -----------------------------------------------------

    def put(self, cert_pem: bytes, key_pem: bytes, source: str = "acme") -> list[str]:
        """Add or replace a certificate (chain PEM, leaf first; unencrypted key PEM) for the
        DNS names it carries, and return those names. The next ``context_for`` for any of
        them serves it."""
        entry = self._parse(cert_pem, key_pem, source)
        names = entry.info.names
        if entry.not_after <= self._clock():
            expired = entry.info.not_after.strftime("%Y-%m-%d %H:%M:%SZ")
            raise CertError(
                f"the certificate for {', '.join(names)} expired at {expired}; "
                "renew it before loading it"
            )
        with self._lock:
            for name in names:
                self._by_name[name] = entry
            # A fallback made while the name had no certificate must not outlive the wait.
            for host in [h for h in self._fallbacks if _covered(h, names)]:
                del self._fallbacks[host]
        return list(names)

    def load_files(
        self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]
    ) -> list[str]:
        """``put()`` a certificate from files (e.g. a wildcard for the base domain)."""
        pems = []
        for path in (Path(cert_path), Path(key_path)):
            try:
                pems.append(path.read_bytes())
            except OSError as e:
                raise CertError(f"cannot read {path}: {e.strerror}") from e
        try:
            return self.put(pems[0], pems[1], source="static")
        except CertError as e:
            raise CertError(f"{cert_path}: {e}") from e

    def remove(self, name: str) -> bool:
        """Stop serving the certificate under ``name``; False if the store had none."""
        with self._lock:
            return self._by_name.pop(name.lower().rstrip("."), None) is not None

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def info(self, name: str) -> CertInfo:
        entry = self._by_name.get(name.lower().rstrip("."))
        if entry is None:
            raise KeyError(f"no certificate stored for {name!r}")
        return entry.info

    # -- internals ----------------------------------------------------------------------------

    def _fallback_context(self, host: str, now: float) -> ssl.SSLContext:
        with self._lock:
            entry = self._fallbacks.get(host)
            if entry is not None and entry.context is not None and entry.valid_at(now):
                self._fallbacks.move_to_end(host)
                return entry.context
        name = check_dns_name(host, wildcard=False)
        when = dt.datetime.fromtimestamp(now, dt.UTC)
        issued: IssuedCert = (
            self.local_ca.issue([name], now=when)
            if self.local_ca is not None
            else self_signed_cert(name, now=when)
        )
        source = "local-ca" if self.local_ca is not None else "self-signed"
        # Made outside the lock: concurrent first handshakes for one host may both build a
        # fallback; the later one wins, both are valid.
        entry = _CertEntry(issued.cert, issued.chain_pem, issued.key, source)
        context = self._build_context(entry)
        with self._lock:
            self._fallbacks[name] = entry
            self._fallbacks.move_to_end(name)
            while len(self._fallbacks) > self._fallback_cache_size:
                self._fallbacks.popitem(last=False)
        return context

    def _build_context(
        self, entry: _CertEntry, alpn: Sequence[str] | None = None
    ) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # TLS 1.2 with forward secrecy and AEAD only (TLS 1.3 suites are all of that kind):
        # OpenSSL's defaults still offer CBC suites, with their padding-oracle history.
        context.set_ciphers(_TLS12_CIPHERS)
        protocols = self._alpn if alpn is None else list(alpn)
        if protocols:
            context.set_alpn_protocols(protocols)
        try:
            if _HAVE_MEMFD and self._scratch_dir is None:
                _load_chain_memfd(context, entry.chain_pem, entry.key)
            else:
                _load_chain_private_dir(context, entry.chain_pem, entry.key, self._scratch_dir)
        except ssl.SSLError as e:
            raise CertError(
                f"OpenSSL refused the certificate for {', '.join(entry.info.names)}: "
                f"{getattr(e, 'reason', None) or e}"
            ) from e
        if alpn is None:
            entry.context = context
        return context

    @staticmethod
    def _parse(cert_pem: bytes, key_pem: bytes, source: str) -> _CertEntry:
        try:
            chain = x509.load_pem_x509_certificates(cert_pem)
        except ValueError as e:
            raise CertError(
                "no certificate found: expected PEM text with -----BEGIN CERTIFICATE-----"
            ) from e
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise CertError(
                f"cannot read the private key ({e}); expected an unencrypted PEM key"
            ) from e
        leaf = chain[0]
        if not isinstance(key, _SERVER_KEY_TYPES):
            raise CertError(
                f"a {type(key).__name__} cannot sign TLS handshakes; use an EC or RSA key"
            )
        if _spki(key.public_key()) != _spki(leaf.public_key()):
            raise CertError(
                "the private key does not match the certificate (the first certificate in the "
                "chain); check that the two files belong together"
            )
        if isinstance(key, rsa.RSAPrivateKey) and key.key_size < _MIN_RSA_BITS:
            raise CertError(f"a {key.key_size}-bit RSA key is too weak; use 2048 bits or more")
        if isinstance(leaf.signature_hash_algorithm, _WEAK_SIGNATURE_HASHES):
            raise CertError(
                f"the certificate is signed with {leaf.signature_hash_algorithm.name}, "
                "which clients reject; reissue it with SHA-256"
            )
        # Re-joined from the parsed certificates: stray text between PEM blocks stays out.
        chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        return _CertEntry(leaf, chain_pem, key, source)


# -- certificate names ------------------------------------------------------------------------


def _cert_names(leaf: x509.Certificate) -> tuple[str, ...]:
    """The DNS names a certificate serves: its SAN dNSNames, or its CN if it has no SAN
    (RFC 6125 6.4.4: the CN counts only when there is no SAN)."""
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        raw = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        raw = [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    names = tuple(dict.fromkeys(n.lower().rstrip(".") for n in raw if n))
    if not names:
        raise CertError("the certificate names no host (no subjectAltName DNS names and no CN)")
    return names


def _covered(host: str, names: Sequence[str]) -> bool:
    if host in names:
        return True
    dot = host.find(".")
    return dot > 0 and "*" + host[dot:] in names


# -- getting PEM into OpenSSL -----------------------------------------------------------------


def _load_chain_memfd(context: ssl.SSLContext, chain_pem: bytes, key: PrivateKeyTypes) -> None:
    """Load through anonymous memory files: nothing reaches a filesystem, and closing the
    descriptors frees the bytes."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_fd = os.memfd_create("burrow-cert", os.MFD_CLOEXEC)
    try:
        key_fd = os.memfd_create("burrow-key", os.MFD_CLOEXEC)
        try:
            _write_all(cert_fd, chain_pem)
            _write_all(key_fd, key_pem)
            # Opening /proc/self/fd/N opens the memfd afresh, at offset 0.
            context.load_cert_chain(f"/proc/self/fd/{cert_fd}", f"/proc/self/fd/{key_fd}")
        finally:
            os.close(key_fd)
    finally:
        os.close(cert_fd)


def _load_chain_private_dir(
    context: ssl.SSLContext, chain_pem: bytes, key: PrivateKeyTypes, parent: str | None
) -> None:
    """Load through files in a fresh 0700 directory. The key file is 0600 from birth and
    encrypted with a password that exists only in this frame, so even a copy that escaped
    deletion (a crash between write and unlink) is useless."""
    password = secrets.token_bytes(32)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    directory = tempfile.mkdtemp(prefix="burrow-cert-", dir=parent)  # mode 0700
    cert_file = os.path.join(directory, "chain.pem")
    key_file = os.path.join(directory, "key.pem")
    try:
        for path, data in ((cert_file, chain_pem), (key_file, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
        context.load_cert_chain(cert_file, key_file, password=password)
    finally:
        for path in (key_file, cert_file):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.rmdir(directory)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
