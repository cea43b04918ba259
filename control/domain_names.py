"""Domain names that users type in: checked, folded to one spelling, or refused with a reason.

A custom domain is stored, routed on and put in certificates in exactly one form: lower case,
no trailing dot, every internationalized label in its punycode ("xn--") spelling. The form is
what a browser sends in the Host header and in SNI, so the edge can compare bytes with bytes.

The rules are those of a host name a public CA will certify:

- RFC 1123 §2.1 letters, digits and hyphens, no hyphen at either end of a label;
- RFC 1035 §2.3.4 at most 63 octets per label and 253 characters for the dotted name;
- RFC 3696 §2 a top-level label is never all digits (which also keeps "10.0.0.1" out);
- IDNA 2008 with the UTS 46 mapping for non-ASCII input, as browsers apply it, so that
  "Bücher.example" and "bücher.example" land on the same "xn--bcher-kva.example".
"""

from __future__ import annotations

import ipaddress

import idna
from publicsuffixlist import PublicSuffixList

MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
_LDH = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
# Long user input is cut in error messages so that one bad paste stays one readable line.
_QUOTE_LIMIT = 60


class DomainNameError(ValueError):
    """The text is not a domain name Burrow can serve; the message says why, in one line."""


def normalize_domain(text: str, *, allow_wildcard: bool = False) -> str:
    """The canonical spelling of ``text`` as a domain name, or :class:`DomainNameError`.

    ``"*.example.com"`` is accepted only with ``allow_wildcard``; the ``*`` must be the whole
    first label. The result passes through this function unchanged.
    """
    name = text.strip()
    if not name:
        raise DomainNameError("enter a domain name, such as app.example.com")
    if "://" in name or "/" in name:
        raise DomainNameError(
            f"{_quote(name)} is not a bare domain name; leave out 'https://' and any path"
        )
    if _is_ip_address(name):
        raise DomainNameError(
            f"{_quote(name)} is an IP address; enter a domain name such as app.example.com"
        )
    if ":" in name:
        raise DomainNameError(f"{_quote(name)} has a ':'; enter the domain name without a port")
    if not name.isascii():
        try:
            # Maps case, full-width dots and compatibility forms the way browsers do (UTS 46).
            name = idna.uts46_remap(name, std3_rules=False, transitional=False)
        except (idna.IDNAError, ValueError) as exc:
            raise DomainNameError(
                f"{_quote(text.strip())} is not a valid domain name: {exc}"
            ) from None
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]

    wildcard = name.startswith("*.")
    if wildcard:
        if not allow_wildcard:
            raise DomainNameError(
                f"{_quote(name)} is a wildcard; enter a single host name such as app.example.com"
            )
        name = name[2:]

    labels = name.split(".")
    if "" in labels:
        raise DomainNameError(
            f"{_quote(name)} has an empty label; check for a leading dot or two dots in a row"
        )
    if len(labels) < 2:
        raise DomainNameError(f"{_quote(name)} needs at least two labels, such as app.example.com")
    labels = [_ascii_label(label) for label in labels]
    if labels[-1].isdigit():
        raise DomainNameError(
            f"{_quote(name)} ends in a number; the last label of a domain name cannot be all digits"
        )

    result = ".".join(labels)
    if wildcard:
        result = "*." + result
    if len(result) > MAX_NAME_LENGTH:
        raise DomainNameError(
            f"{_quote(result)} is {len(result)} characters long; "
            f"a domain name may have at most {MAX_NAME_LENGTH}"
        )
    return result


def is_under(domain: str, base_domain: str) -> bool:
    """Whether ``domain`` is ``base_domain`` itself or a name below it.

    Both are expected in the form :func:`normalize_domain` returns; case and a trailing dot
    are forgiven. Labels are compared whole, so "notburrow.example" is not under
    "burrow.example". An empty base contains nothing.
    """
    name = _fold(domain)
    base = _fold(base_domain)
    if not base:
        return False
    return name == base or name.endswith("." + base)


_PUBLIC_SUFFIXES: PublicSuffixList | None = None


def is_public_suffix(domain: str) -> bool:
    """Whether ``domain`` (or the name under a leading ``*.``) is a public suffix, such as
    "co.uk" or "github.io", under which unrelated parties register names: nobody may claim
    one for an organization. The list is the publicsuffixlist package's bundled snapshot
    (ICANN and private sections); it is never fetched from the network."""
    global _PUBLIC_SUFFIXES
    if _PUBLIC_SUFFIXES is None:
        _PUBLIC_SUFFIXES = PublicSuffixList()
    return bool(_PUBLIC_SUFFIXES.is_public(_fold(domain).removeprefix("*.")))


def _ascii_label(label: str) -> str:
    if not label.isascii():
        try:
            label = idna.encode(label).decode("ascii")
        except (idna.IDNAError, ValueError) as exc:
            raise DomainNameError(
                f"{_quote(label)} is not a valid internationalized label: {exc}"
            ) from None
    elif label.startswith("xn--"):
        try:
            idna.decode(label)
        except (idna.IDNAError, ValueError):
            raise DomainNameError(
                f"{_quote(label)} starts with 'xn--' but is not valid punycode"
            ) from None
    if "*" in label:
        raise DomainNameError(
            f"{_quote(label)} has a '*'; a wildcard is allowed only as the whole first label, "
            "as in *.example.com"
        )
    bad = sorted(set(label) - _LDH)
    if bad:
        raise DomainNameError(
            f"{_quote(label)} contains {_quote(bad[0])}; "
            "only letters, digits and hyphens are allowed"
        )
    if len(label) > MAX_LABEL_LENGTH:
        raise DomainNameError(
            f"{_quote(label)} is {len(label)} characters long; "
            f"each part between dots may have at most {MAX_LABEL_LENGTH}"
        )
    if label.startswith("-") or label.endswith("-"):
        raise DomainNameError(f"{_quote(label)} starts or ends with a hyphen, which is not allowed")
    return label


def _is_ip_address(name: str) -> bool:
    candidate = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        ipaddress.ip_address(candidate.rstrip("."))
    except ValueError:
        return False
    return True


def _fold(name: str) -> str:
    return name.strip().lower().rstrip(".")


def _quote(text: str) -> str:
    if len(text) > _QUOTE_LIMIT:
        text = text[: _QUOTE_LIMIT - 1] + "…"
    # repr() escapes newlines and control characters, keeping the message on one line.
    return repr(text)
