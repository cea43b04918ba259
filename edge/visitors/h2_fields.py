"""The checks RFC 9113 asks of the header fields an HTTP/2 visitor sends, in one pass.

h2 can make them itself (``validate_inbound_headers``), through a chain of generators that
looks at each field once per rule, and at every byte of every name and value in a Python
loop: on a browser's request, with its cookies and user agent, that was most of what the
edge spent on the request. ``field_problem`` makes the same checks with a set lookup or two
per field and C-speed byte checks (``bytes.translate`` through a table), and refuses exactly
the header blocks h2's own validation refuses (a test holds it to that).

A request or trailer block is malformed (RFC 9113 8.1.1) if:

* a field name is empty, holds a byte outside 0x21-0x7e, an upper-case letter, or a colon
  after its first byte (8.2.1);
* a field value holds NUL, CR or LF, or starts or ends with a space or tab (8.2.1);
* it carries a connection-specific field, or TE other than ``trailers`` (8.2.2);
* pseudo-header fields (8.3) are unknown, repeated, after a regular field, response-only
  (``:status``), in trailers, or not the set the method needs: ``:method``, ``:scheme`` and
  a non-empty ``:path``, or for CONNECT ``:authority`` alone (``:protocol`` with CONNECT
  only, RFC 8441);
* a request has neither ``:authority`` nor Host, more than one Host, or the two differ;
* ``:method`` is not a token, or ``:path`` is neither ``*`` (OPTIONS only) nor a path that
  starts with ``/`` and holds no blank or control byte (RFC 9113 8.3.1, RFC 9112 3.2): both
  become the HTTP/1.1 request line the local service reads, where a tab or a space would
  start another field.

The caller resets the stream with PROTOCOL_ERROR; the connection goes on serving others.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

# A byte a field name may not hold becomes 0x80, any other NUL: a good name's translation
# ``isascii()``. Colons are refused here; pseudo-header names are matched whole instead.
_NAME_CHECK: Final = bytes(
    0x80 if b <= 0x20 or 0x41 <= b <= 0x5A or b >= 0x7F or b == 0x3A else 0 for b in range(256)
)
_VALUE_CHECK: Final = bytes(0x80 if b in (0x00, 0x0A, 0x0D) else 0 for b in range(256))
_BLANKS: Final = (0x20, 0x09)
# tchar (RFC 9110 5.6.2) stays NUL, any other byte becomes 0x80; a request target's bytes
# (RFC 3986: visible ASCII; obs-text as HTTP/1.1 parsers accept it) likewise.
_TOKEN_CHECK: Final = bytes(
    0 if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "!#$%&'*+-.^_`|~") else 0x80
    for b in range(256)
)
_TARGET_CHECK: Final = bytes(0x80 if b <= 0x20 or b == 0x7F else 0 for b in range(256))
_REQUEST_PSEUDO: Final = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
# Fields that belong to one HTTP/1.1 connection and have no place in HTTP/2 (RFC 9113 8.2.2).
CONNECTION_SPECIFIC: Final = frozenset(
    (b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade")
)


def field_problem(headers: Iterable[tuple[bytes, bytes]], trailers: bool = False) -> str | None:
    """What makes this request (or trailer) block malformed, or None if nothing does."""
    pseudo: set[bytes] = set()
    regular = False
    method: bytes | None = None
    authority: bytes | None = None
    host: bytes | None = None
    path = b""
    for name, value in headers:
        if not name:
            return "an empty field name"
        if name[0] == 0x3A:
            if trailers:
                return f"the pseudo-header {name!r} in trailers"
            if regular:
                return f"the pseudo-header {name!r} after a regular field"
            if name in pseudo:
                return f"the pseudo-header {name!r} twice"
            if name not in _REQUEST_PSEUDO:
                return f"the pseudo-header {name!r}, which no request carries"
            pseudo.add(name)
            if name == b":method":
                if not value or not value.translate(_TOKEN_CHECK).isascii():
                    return f"the :method {value[:40]!r}, which is not a token"
                method = value
            elif name == b":authority":
                authority = value
            elif name == b":path":
                if not value:
                    return "an empty :path"
                path = value
        else:
            regular = True
            if not name.translate(_NAME_CHECK).isascii():
                return f"the field name {name[:40]!r}, with a byte HTTP/2 forbids"
            if name in CONNECTION_SPECIFIC:
                return f"the connection-specific field {name!r}"
            if name == b"te" and value.lower() != b"trailers":
                return "TE other than trailers"
            if name == b"host" and not trailers:
                if host is not None:
                    return "more than one Host"
                host = value
        if value and (
            not value.translate(_VALUE_CHECK).isascii()
            or value[0] in _BLANKS
            or value[-1] in _BLANKS
        ):
            return f"the value of {name[:40]!r}, with NUL, CR, LF or blanks at an end"
    if trailers:
        return None
    if (
        path
        and (path[0] != 0x2F or not path.translate(_TARGET_CHECK).isascii())
        and (path != b"*" or method != b"OPTIONS")
    ):
        return f"the :path {path[:40]!r}, which is no origin-form target"
    return _request_problem(pseudo, method, authority, host)


def _request_problem(
    pseudo: set[bytes], method: bytes | None, authority: bytes | None, host: bytes | None
) -> str | None:
    if method is None:
        return "no :method"
    connect = method == b"CONNECT"
    if connect and b":protocol" not in pseudo:
        if b":scheme" in pseudo or b":path" in pseudo:
            return "CONNECT with :scheme or :path"
    elif b":scheme" not in pseudo or b":path" not in pseudo:
        return "no :scheme or no :path"
    if not connect and b":protocol" in pseudo:
        return ":protocol without CONNECT"
    if authority is None and host is None:
        return "neither :authority nor Host"
    if authority is not None and host is not None and authority != host:
        return ":authority and Host that differ"
    return None
