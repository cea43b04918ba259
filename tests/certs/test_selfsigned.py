"""Self-signed leaves and the local development CA."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs import CertError
from certs.selfsigned import CA_COMMON_NAME, LocalCA, self_signed_cert
from certs.store import CertStore
from tests.certs.tls import handshake, trusting_client


def test_self_signed_leaf_for_a_hostname() -> None:
    now = dt.datetime.now(dt.UTC)
    issued = self_signed_cert("App.Example.com", now=now)
    cert = issued.cert

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["app.example.com"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.issuer == cert.subject
    assert cert.not_valid_before_utc <= now
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=90)
    assert isinstance(issued.key, ec.EllipticCurvePrivateKey)
    assert isinstance(issued.key.curve, ec.SECP256R1)
    assert issued.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_long_hostname_goes_in_the_san_only() -> None:
    host = ".".join(["a" * 60, "b" * 60, "example"])
    cert = self_signed_cert(host).cert
    assert len(cert.subject) == 0
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # RFC 5280: required when the subject is empty
    assert san.value.get_values_for_type(x509.DNSName) == [host]


def test_local_ca_is_a_ca_that_signs_only_certificates() -> None:
    ca = LocalCA.create()
    cert = ca.cert
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CA_COMMON_NAME
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign


def test_local_ca_persists_and_reloads(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    created = LocalCA.load_or_create(directory)
    reloaded = LocalCA.load_or_create(directory)

    assert reloaded.cert == created.cert
    assert reloaded.cert_pem == (directory / "ca.pem").read_bytes()
    assert stat.S_IMODE(os.stat(directory / "ca-key.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert sorted(p.name for p in directory.iterdir()) == ["ca-key.pem", "ca.pem"]

    # A leaf issued by the reloaded CA verifies against the ca.pem trusted before the reload.
    store = CertStore(local_ca=reloaded)
    client = trusting_client(created.cert_pem)
    assert handshake(store.context_for("app.localhost"), client, "app.localhost").names == [
        "app.localhost"
    ]


def test_half_a_ca_on_disk_is_reported_not_replaced(tmp_path: Path) -> None:
    LocalCA.load_or_create(tmp_path)
    (tmp_path / "ca-key.pem").unlink()
    with pytest.raises(CertError, match=r"ca-key\.pem is missing"):
        LocalCA.load_or_create(tmp_path)
    assert (tmp_path / "ca.pem").exists()


def test_ca_with_a_foreign_key_is_refused(tmp_path: Path) -> None:
    LocalCA.load_or_create(tmp_path / "one")
    LocalCA.load_or_create(tmp_path / "two")
    os.replace(tmp_path / "two" / "ca-key.pem", tmp_path / "one" / "ca-key.pem")
    with pytest.raises(CertError, match="does not match"):
        LocalCA.load(tmp_path / "one")


def test_local_ca_issues_wildcard_leaves(local_ca: LocalCA) -> None:
    issued = local_ca.issue(["localhost", "*.localhost", "*.dev.localhost"])
    store = CertStore()
    assert store.put(issued.chain_pem, issued.key_pem, "local-ca") == [
        "localhost",
        "*.localhost",
        "*.dev.localhost",
    ]
    for host in ("localhost", "app.dev.localhost"):
        shown = handshake(store.context_for(host), trusting_client(local_ca.cert_pem), host)
        assert shown.fingerprint == store.info("localhost").fingerprint

    # The store serves "*.localhost" for app.localhost, but OpenSSL (like browsers) will not
    # match a wildcard sitting directly on a top-level name: the reason fallbacks are issued
    # per host rather than as one "*.localhost" certificate.
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(
            store.context_for("app.localhost"), trusting_client(local_ca.cert_pem), "app.localhost"
        )


def test_leaf_never_outlives_the_ca() -> None:
    now = dt.datetime.now(dt.UTC)
    ca = LocalCA.create(now=now, days=30)
    assert (
        ca.issue(["app.localhost"], now=now).cert.not_valid_after_utc == ca.cert.not_valid_after_utc
    )


def test_leaf_for_another_ca_does_not_verify(local_ca: LocalCA) -> None:
    store = CertStore(local_ca=LocalCA.create())
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(
            store.context_for("app.localhost"), trusting_client(local_ca.cert_pem), "app.localhost"
        )


def test_trust_instructions_name_the_file_and_the_commands(local_ca: LocalCA) -> None:
    text = local_ca.trust_instructions()
    path = str(local_ca.cert_path)
    assert f"curl --cacert {path}" in text
    assert f"sudo cp {path} /usr/local/share/ca-certificates/burrow-dev.crt" in text
    assert "sudo update-ca-certificates" in text
    assert "security add-trusted-cert -d -r trustRoot" in text
    assert f"-k /Library/Keychains/System.keychain {path}" in text
    assert "Firefox" in text and "Chrome" in text


def test_trust_instructions_need_a_saved_ca() -> None:
    with pytest.raises(CertError, match="save"):
        LocalCA.create().trust_instructions()
