"""Burrow certs: the TLS material the edge presents to visitors.

- ``certs.store.CertStore``: hostname -> ready server ``ssl.SSLContext`` (exact name, then
  wildcard, then a generated fallback), fed by ACME issuance and static files.
- ``certs.selfsigned``: self-signed leaves and ``LocalCA``, the development CA that makes
  ``https://*.localhost`` tunnels trusted once a developer trusts its ``ca.pem``.
"""

from __future__ import annotations


class CertError(Exception):
    """A certificate or key cannot be used; the message says why and what to do."""
