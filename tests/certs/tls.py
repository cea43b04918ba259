"""Real TLS handshakes in memory: a client and a server SSLObject joined by MemoryBIO pairs."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

ALPN_OFFER = ("h2", "http/1.1")


@dataclass(frozen=True)
class Handshake:
    """What the client saw once the handshake finished."""

    cert: x509.Certificate
    alpn: str | None
    version: str | None

    @property
    def names(self) -> list[str]:
        """The DNS names of the certificate the server presented."""
        san = self.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return san.value.get_values_for_type(x509.DNSName)

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex(":").upper()

    @property
    def self_signed(self) -> bool:
        return self.cert.issuer == self.cert.subject


def trusting_client(ca_pem: bytes | str) -> ssl.SSLContext:
    """A client that verifies the chain and the hostname against one CA, and nothing else."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=ca_pem if isinstance(ca_pem, str) else ca_pem.decode())
    return context


def unverified_client() -> ssl.SSLContext:
    """A client that accepts any certificate (``curl -k``), to look at what is served."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def handshake(
    server: ssl.SSLContext,
    client: ssl.SSLContext,
    server_name: str,
    alpn: Sequence[str] = ALPN_OFFER,
) -> Handshake:
    """Run a full handshake for ``server_name``; ssl.SSLError if either side refuses."""
    if alpn:
        client.set_alpn_protocols(list(alpn))
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_obj = client.wrap_bio(c_in, c_out, server_hostname=server_name)
    server_obj = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for side, obj in (("client", client_obj), ("server", server_obj)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    else:
        raise AssertionError("handshake did not finish")
    der = client_obj.getpeercert(binary_form=True)
    assert der is not None
    return Handshake(
        cert=x509.load_der_x509_certificate(der),
        alpn=client_obj.selected_alpn_protocol(),
        version=client_obj.version(),
    )
