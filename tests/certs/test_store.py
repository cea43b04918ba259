"""CertStore: which certificate a visitor's TLS client is shown for a hostname."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from certs.selfsigned import LocalCA
from certs.store import CertError, CertStore
from tests.certs.clock import Clock
from tests.certs.tls import handshake, trusting_client, unverified_client


def put_cert(store: CertStore, cert: trustme.LeafCert, source: str = "acme") -> list[str]:
    return store.put(cert.cert_chain_pems[0].bytes(), cert.private_key_pem.bytes(), source)


def fingerprint(cert: trustme.LeafCert) -> str:
    leaf = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    return leaf.fingerprint(hashes.SHA256()).hex(":").upper()


def served(store: CertStore, host: str, ca: trustme.CA | None = None, **kw: Any) -> Any:
    """Handshake for ``host`` against ``context_for(host)``; verified when ``ca`` is given."""
    client = trusting_client(ca.cert_pem.bytes()) if ca else unverified_client()
    return handshake(store.context_for(host), client, host, **kw)


# -- choosing the certificate -----------------------------------------------------------------


def test_exact_name_beats_wildcard(public_ca: trustme.CA) -> None:
    store = CertStore()
    wildcard, exact = public_ca.issue_cert("*.example.com"), public_ca.issue_cert("a.example.com")
    put_cert(store, wildcard, "static")
    put_cert(store, exact)

    shown = served(store, "a.example.com", public_ca)
    assert shown.names == ["a.example.com"]
    assert shown.fingerprint == fingerprint(exact)
    assert served(store, "b.example.com", public_ca).fingerprint == fingerprint(wildcard)


@pytest.mark.parametrize("host", ["a.b.example.com", "example.com"])
def test_wildcard_covers_exactly_one_label(public_ca: trustme.CA, host: str) -> None:
    store = CertStore()
    put_cert(store, public_ca.issue_cert("*.example.com"))

    shown = served(store, host)
    assert shown.names == [host]
    assert shown.self_signed


def test_hostname_case_and_trailing_dot_do_not_matter(public_ca: trustme.CA) -> None:
    store = CertStore()
    put_cert(store, public_ca.issue_cert("*.example.com"))
    assert store.context_for("App.Example.COM.") is store.context_for("app.example.com")


def test_alpn_h2_when_offered_and_tls_at_least_1_2(public_ca: trustme.CA) -> None:
    store = CertStore()
    put_cert(store, public_ca.issue_cert("a.example.com"))

    assert served(store, "a.example.com", public_ca, alpn=["h2", "http/1.1"]).alpn == "h2"
    assert served(store, "a.example.com", public_ca, alpn=["http/1.1"]).alpn == "http/1.1"
    assert store.context_for("a.example.com").minimum_version == ssl.TLSVersion.TLSv1_2

    client = trusting_client(public_ca.cert_pem.bytes())
    client.minimum_version = ssl.TLSVersion.TLSv1_2
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    assert (
        handshake(store.context_for("a.example.com"), client, "a.example.com").version == "TLSv1.2"
    )


def test_alpn_protocols_come_from_the_constructor(public_ca: trustme.CA) -> None:
    store = CertStore(alpn_protocols=["http/1.1"])
    put_cert(store, public_ca.issue_cert("a.example.com"))
    assert served(store, "a.example.com", public_ca, alpn=["h2", "http/1.1"]).alpn == "http/1.1"


def test_sni_callback_swaps_in_the_hosts_context(public_ca: trustme.CA) -> None:
    """As the edge uses the store: one listening context, the host's chosen in the callback."""
    store = CertStore()
    put_cert(store, public_ca.issue_cert("*.example.com"))
    listener = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)

    def on_sni(obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        obj.context = store.context_for(name or "")

    listener.sni_callback = on_sni  # type: ignore[assignment]
    client = trusting_client(public_ca.cert_pem.bytes())
    shown = handshake(listener, client, "shop.example.com")
    assert shown.names == ["*.example.com"]
    assert shown.alpn == "h2"


def test_many_hosts_under_one_wildcard_share_one_context(public_ca: trustme.CA) -> None:
    store = CertStore()
    put_cert(store, public_ca.issue_cert("*.tunnels.test"))
    contexts = {id(store.context_for(f"t{i}.tunnels.test")) for i in range(10_000)}
    assert len(contexts) == 1


# -- fallbacks --------------------------------------------------------------------------------


def test_unknown_host_gets_a_cached_self_signed_fallback() -> None:
    store = CertStore()
    shown = served(store, "nobody.example.net")
    assert shown.names == ["nobody.example.net"]
    assert shown.self_signed
    assert shown.alpn == "h2"
    assert store.context_for("nobody.example.net") is store.context_for("nobody.example.net")
    assert store.names() == []  # fallbacks are not stored certificates


def test_fallback_from_local_ca_verifies_for_a_client_trusting_ca_pem(local_ca: LocalCA) -> None:
    store = CertStore(local_ca=local_ca)
    assert local_ca.cert_path is not None
    client = trusting_client(local_ca.cert_path.read_bytes())

    shown = handshake(store.context_for("app.localhost"), client, "app.localhost")
    assert shown.names == ["app.localhost"]
    assert shown.cert.issuer == local_ca.cert.subject


def test_fallback_cache_is_bounded() -> None:
    store = CertStore(fallback_cache_size=2)
    first = store.context_for("a.example.net")
    store.context_for("b.example.net")
    assert store.context_for("a.example.net") is first  # refreshed: b is now the oldest
    store.context_for("c.example.net")
    assert store.context_for("a.example.net") is first
    b_again = store.context_for("b.example.net")  # evicted, so made afresh
    assert store.context_for("b.example.net") is b_again
    assert store.context_for("c.example.net") is not None


@pytest.mark.parametrize("host", ["", ".", "-bad.example.com", "a..b", "*.example.com", "x" * 64])
def test_invalid_server_names_are_refused(host: str) -> None:
    with pytest.raises(CertError, match="not a valid DNS name"):
        CertStore().context_for(host)


_FUZZ_STORE = CertStore(fallback_cache_size=16)


@given(st.one_of(st.text(max_size=80), st.from_regex(r"[a-zA-Z0-9.*_-]{0,80}", fullmatch=True)))
def test_any_server_name_gives_a_context_or_cert_error(name: str) -> None:
    """The server name is chosen by whoever connects."""
    try:
        context = _FUZZ_STORE.context_for(name)
    except CertError:
        return
    assert isinstance(context, ssl.SSLContext)


# -- adding, replacing, expiring --------------------------------------------------------------


def test_put_returns_san_names_and_info_describes_the_certificate(public_ca: trustme.CA) -> None:
    store = CertStore()
    cert = public_ca.issue_cert("example.com", "*.example.com")
    assert put_cert(store, cert, "acme") == ["example.com", "*.example.com"]
    assert store.names() == ["*.example.com", "example.com"]

    info = store.info("example.com")
    assert info.names == ("example.com", "*.example.com")
    assert info.source == "acme"
    assert info.fingerprint == fingerprint(cert)
    assert info.not_before < dt.datetime.now(dt.UTC) < info.not_after
    assert store.info("*.example.com") is info


def test_cn_names_the_host_when_there_is_no_san() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "legacy.example.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    store = CertStore()
    assert store.put(cert.public_bytes(serialization.Encoding.PEM), key_pem) == [
        "legacy.example.com"
    ]
    assert not served(store, "legacy.example.com").cert.extensions  # the CN-only cert itself


def test_replacing_a_certificate_takes_effect_on_the_next_lookup(public_ca: trustme.CA) -> None:
    store = CertStore()
    old, new = public_ca.issue_cert("a.example.com"), public_ca.issue_cert("a.example.com")
    put_cert(store, old)
    old_context = store.context_for("a.example.com")
    assert served(store, "a.example.com", public_ca).fingerprint == fingerprint(old)

    put_cert(store, new)
    assert store.context_for("a.example.com") is not old_context
    assert served(store, "a.example.com", public_ca).fingerprint == fingerprint(new)
    assert store.info("a.example.com").fingerprint == fingerprint(new)


def test_a_certificate_replaces_an_earlier_fallback(public_ca: trustme.CA) -> None:
    store = CertStore()
    assert served(store, "late.example.com").self_signed
    put_cert(store, public_ca.issue_cert("late.example.com"))
    assert not served(store, "late.example.com", public_ca).self_signed


def test_key_that_does_not_match_is_rejected(public_ca: trustme.CA) -> None:
    cert, other = public_ca.issue_cert("a.example.com"), public_ca.issue_cert("a.example.com")
    with pytest.raises(CertError, match="private key does not match the certificate"):
        CertStore().put(cert.cert_chain_pems[0].bytes(), other.private_key_pem.bytes())


def test_expired_certificate_is_rejected(public_ca: trustme.CA) -> None:
    now = dt.datetime.now(dt.UTC)
    cert = public_ca.issue_cert(
        "old.example.com",
        not_before=now - dt.timedelta(days=100),
        not_after=now - dt.timedelta(days=1),
    )
    store = CertStore()
    with pytest.raises(CertError, match=r"old\.example\.com expired at .*; renew it"):
        put_cert(store, cert)
    assert store.names() == []


@pytest.mark.parametrize(
    ("cert_pem", "key_pem", "message"),
    [
        (b"not a certificate", None, "no certificate found"),
        (None, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "private key"),
    ],
)
def test_unreadable_pem_is_rejected(
    public_ca: trustme.CA, cert_pem: bytes | None, key_pem: bytes | None, message: str
) -> None:
    cert = public_ca.issue_cert("a.example.com")
    with pytest.raises(CertError, match=message):
        CertStore().put(
            cert_pem or cert.cert_chain_pems[0].bytes(), key_pem or cert.private_key_pem.bytes()
        )


def test_expired_certificate_in_store_is_not_served(public_ca: trustme.CA, clock: Clock) -> None:
    now = dt.datetime.fromtimestamp(clock.now, dt.UTC)
    store = CertStore(clock=clock)
    put_cert(store, public_ca.issue_cert("a.example.com", not_after=now + dt.timedelta(days=1)))
    assert not served(store, "a.example.com").self_signed

    clock.advance(dt.timedelta(days=2))
    shown = served(store, "a.example.com")
    assert shown.self_signed
    assert shown.names == ["a.example.com"]
    assert store.names() == ["a.example.com"]  # still listed, so renewal can find it


def test_expired_exact_certificate_yields_to_a_valid_wildcard(
    public_ca: trustme.CA, clock: Clock
) -> None:
    now = dt.datetime.fromtimestamp(clock.now, dt.UTC)
    store = CertStore(clock=clock)
    wildcard = public_ca.issue_cert("*.example.com", not_after=now + dt.timedelta(days=365))
    put_cert(store, wildcard)
    put_cert(store, public_ca.issue_cert("a.example.com", not_after=now + dt.timedelta(days=1)))

    clock.advance(dt.timedelta(days=2))
    assert served(store, "a.example.com").fingerprint == fingerprint(wildcard)


def test_remove_stops_serving_a_name(public_ca: trustme.CA) -> None:
    store = CertStore()
    put_cert(store, public_ca.issue_cert("a.example.com", "b.example.com"))
    assert store.remove("a.example.com")
    assert not store.remove("a.example.com")
    assert store.names() == ["b.example.com"]
    assert served(store, "a.example.com").self_signed
    with pytest.raises(KeyError):
        store.info("a.example.com")


def test_load_files_reads_a_static_certificate(public_ca: trustme.CA, tmp_path: Path) -> None:
    cert = public_ca.issue_cert("*.tunnels.test")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "tunnels.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "tunnels-key.pem"))
    store = CertStore()

    assert store.load_files(tmp_path / "tunnels.pem", tmp_path / "tunnels-key.pem") == [
        "*.tunnels.test"
    ]
    assert store.info("*.tunnels.test").source == "static"
    assert served(store, "app.tunnels.test", public_ca).names == ["*.tunnels.test"]
    with pytest.raises(CertError, match=r"cannot read .*missing\.pem"):
        store.load_files(tmp_path / "missing.pem", tmp_path / "tunnels-key.pem")


# -- keys on disk -----------------------------------------------------------------------------


class LoadSpy:
    """Wraps SSLContext.load_cert_chain to look at the files while they exist."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> None:
        self.seen: list[dict[str, Any]] = []
        original = ssl.SSLContext.load_cert_chain

        def spy(
            ctx: ssl.SSLContext, certfile: str, keyfile: str | None = None, password: Any = None
        ) -> None:
            assert keyfile is not None
            self.seen.append(
                {
                    "paths": (certfile, keyfile),
                    "dir_mode": stat.S_IMODE(os.stat(os.path.dirname(keyfile)).st_mode),
                    "modes": [stat.S_IMODE(os.stat(p).st_mode) for p in (certfile, keyfile)],
                    "key_head": Path(keyfile).read_bytes()[:40],
                }
            )
            if fail:
                raise ssl.SSLError(1, "simulated failure")
            original(ctx, certfile, keyfile, password)

        monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)


def test_keys_go_through_a_private_dir_and_are_deleted(
    public_ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = LoadSpy(monkeypatch)
    store = CertStore(scratch_dir=tmp_path)
    put_cert(store, public_ca.issue_cert("a.example.com"))

    assert served(store, "a.example.com", public_ca).names == ["a.example.com"]
    assert served(store, "fallback.example.com").self_signed
    assert len(spy.seen) == 2
    for seen in spy.seen:
        assert all(Path(p).is_relative_to(tmp_path) for p in seen["paths"])
        assert seen["dir_mode"] == 0o700
        assert seen["modes"] == [0o600, 0o600]
        assert seen["key_head"].startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert list(tmp_path.iterdir()) == []


def test_scratch_files_are_deleted_when_loading_fails(
    public_ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    LoadSpy(monkeypatch, fail=True)
    store = CertStore(scratch_dir=tmp_path)
    put_cert(store, public_ca.issue_cert("a.example.com"))
    with pytest.raises(CertError, match=r"OpenSSL refused the certificate for a\.example\.com"):
        store.context_for("a.example.com")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="memfd is Linux only")
def test_on_linux_keys_never_reach_a_filesystem(
    public_ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = LoadSpy(monkeypatch)

    def no_temp_dirs(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("a key was about to be written to a filesystem")

    monkeypatch.setattr(tempfile, "mkdtemp", no_temp_dirs)
    store = CertStore()
    put_cert(store, public_ca.issue_cert("a.example.com"))
    assert served(store, "a.example.com", public_ca).names == ["a.example.com"]
    assert all(p.startswith("/proc/self/fd/") for p in spy.seen[0]["paths"])
