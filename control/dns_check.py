"""Proof that a user controls a custom domain, read from public DNS.

Control hands the user records to create (:func:`records_to_create`) and later asks DNS
whether they are there (:meth:`DomainVerifier.verify`):

- a TXT record at ``_burrow-challenge.<domain>`` holding ``burrow-verify=<token>``. Only
  someone who can edit the zone can publish it, so strict mode accepts nothing else.
- in relaxed mode, also a CNAME at ``<domain>`` whose target is the edge's public host name.
  It proves less (anyone who once pointed the name at Burrow and left it there passes), but it
  is the record the user needs for traffic anyway, so many users create only that.

The challenge lives under its own label, as ACME's ``_acme-challenge`` does, so it can be
published next to a CNAME (RFC 1034 §3.6.2 allows no other data beside a CNAME) and can itself
be a CNAME into a zone the user delegates. For ``*.example.com`` the challenge is at
``_burrow-challenge.example.com``.

Every DNS outcome — missing record, wrong value, SERVFAIL, silence — becomes a
:class:`Verification` whose ``detail`` the user can act on; :meth:`DomainVerifier.verify`
does not raise for anything DNS does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from control.domain_names import DomainNameError, normalize_domain

CHALLENGE_LABEL = "_burrow-challenge"
TOKEN_PREFIX = "burrow-verify="
# Record values quoted back to the user are cut here so a detail stays one readable line.
_QUOTE_LIMIT = 80

RecordType = Literal["TXT", "CNAME"]
Method = Literal["txt", "cname"]


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One record the user is asked to create at their DNS provider."""

    type: RecordType
    name: str
    value: str
    required: bool
    """Verification cannot pass without this record (strict mode's TXT)."""
    purpose: str


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of one check: ``detail`` is a single line meant for the user."""

    ok: bool
    method: Method | None
    detail: str


def challenge_name(domain: str) -> str:
    """Where the TXT record goes; a wildcard domain is proven at its parent name."""
    if domain.startswith("*."):
        domain = domain[2:]
    return f"{CHALLENGE_LABEL}.{domain}"


def expected_txt(token: str) -> str:
    return f"{TOKEN_PREFIX}{token}"


def records_to_create(domain: str, token: str, edge_target: str, strict: bool) -> list[DnsRecord]:
    """The records to show the user for ``domain``, most important first.

    The CNAME is listed in both modes because visitors reach the edge through it; in strict
    mode it plays no part in verification.
    """
    target = _fold(edge_target)
    if strict:
        return [
            DnsRecord(
                "TXT",
                challenge_name(domain),
                expected_txt(token),
                required=True,
                purpose="proves you control the domain; strict mode requires it",
            ),
            DnsRecord(
                "CNAME",
                domain,
                target,
                required=False,
                purpose="sends visitors to Burrow; not used for verification in strict mode",
            ),
        ]
    return [
        DnsRecord(
            "TXT",
            challenge_name(domain),
            expected_txt(token),
            required=False,
            purpose="proves you control the domain; this TXT or the CNAME is enough",
        ),
        DnsRecord(
            "CNAME",
            domain,
            target,
            required=False,
            purpose=(
                "sends visitors to Burrow and also proves you control the domain; "
                "a zone apex such as example.com cannot have a CNAME, use the TXT there"
            ),
        ),
    ]


@dataclass(frozen=True, slots=True)
class _Lookup:
    """What one query found: the record's values, or why there are none."""

    values: tuple[str, ...] = ()
    missing: str = ""
    failed: str = ""
    other_data: bool = False
    """The name exists but holds other types (A, AAAA, ...) and none of the one asked for."""


class DomainVerifier:
    """Checks the verification records of custom domains against DNS.

    With ``nameservers`` it asks exactly those servers on ``port``; otherwise it uses the
    system's resolver configuration. ``timeout`` bounds a whole :meth:`verify` call, whose
    queries run side by side.
    """

    def __init__(
        self,
        nameservers: list[str] | None = None,
        port: int = 53,
        timeout: float = 3.0,
        *,
        edge_target: str,
    ) -> None:
        if nameservers:
            self.resolver = dns.asyncresolver.Resolver(configure=False)
            self.resolver.nameservers = list(nameservers)
        else:
            self.resolver = dns.asyncresolver.Resolver()
        self.resolver.port = port
        # Each attempt and the whole resolution get the same budget: a server that stays
        # silent is reported as such instead of being retried past the caller's patience.
        self.resolver.timeout = timeout
        self.resolver.lifetime = timeout
        # No cache: a user who has just fixed a record expects the next check to see it.
        self.resolver.cache = None
        self.timeout = timeout
        self.edge_target = dns.name.from_text(_fold(edge_target))

    async def verify(self, domain: str, token: str, strict: bool) -> Verification:
        """Whether DNS now proves control of ``domain``; strict mode accepts only the TXT."""
        try:
            domain = normalize_domain(domain, allow_wildcard=True)
        except DomainNameError as exc:
            return Verification(False, None, str(exc))
        txt_name = challenge_name(domain)
        expected = expected_txt(token)
        if strict:
            txt = await self._lookup(txt_name, dns.rdatatype.TXT)
            return self._judge_txt(txt, txt_name, expected)
        txt, cname = await asyncio.gather(
            self._lookup(txt_name, dns.rdatatype.TXT),
            self._lookup(domain, dns.rdatatype.CNAME),
        )
        by_txt = self._judge_txt(txt, txt_name, expected)
        if by_txt.ok:
            return by_txt
        by_cname = self._judge_cname(cname, domain)
        if by_cname.ok:
            return by_cname
        return Verification(False, None, _explain_both(txt, by_txt, cname, by_cname, domain))

    def _judge_txt(self, found: _Lookup, name: str, expected: str) -> Verification:
        if found.failed:
            return Verification(False, None, found.failed)
        if found.missing:
            return Verification(False, None, found.missing)
        if any(_unquote(value) == expected for value in found.values):
            return Verification(True, "txt", f"TXT record at {name} matches")
        if len(found.values) == 1:
            return Verification(
                False,
                None,
                f"TXT record found but its value is {_quote(found.values[0])}, "
                f"expected {_quote(expected)}",
            )
        shown = ", ".join(_quote(value) for value in found.values[:3])
        more = f" and {len(found.values) - 3} more" if len(found.values) > 3 else ""
        return Verification(
            False,
            None,
            f"{len(found.values)} TXT records at {name} but none is {_quote(expected)} "
            f"(found {shown}{more})",
        )

    def _judge_cname(self, found: _Lookup, domain: str) -> Verification:
        target = self.edge_target.to_text(omit_final_dot=True)
        if found.failed:
            return Verification(False, None, found.failed)
        if found.missing:
            return Verification(False, None, found.missing)
        # A name owns at most one CNAME (RFC 1034 §3.6.2); dnspython compares names without
        # regard to case, and both sides are absolute, so a trailing dot does not matter.
        pointed = dns.name.from_text(found.values[0])
        if pointed == self.edge_target:
            return Verification(True, "cname", f"CNAME at {domain} points to {target}")
        return Verification(
            False,
            None,
            f"CNAME points to {pointed.to_text(omit_final_dot=True).lower()}, expected {target}",
        )

    async def _lookup(self, name: str, rdtype: dns.rdatatype.RdataType) -> _Lookup:
        kind = dns.rdatatype.to_text(rdtype)
        try:
            qname = dns.name.from_text(name)
            answer = await self.resolver.resolve(qname, rdtype)
        except dns.resolver.NXDOMAIN:
            return _Lookup(missing=_missing(kind, name, exists=False))
        except dns.resolver.NoAnswer:
            return _Lookup(missing=_missing(kind, name, exists=True), other_data=True)
        except dns.exception.Timeout:
            return _Lookup(
                failed=f"the DNS server did not answer in {self.timeout:g} s "
                f"when asked for the {kind} record at {name}; try again in a minute"
            )
        except dns.resolver.NoNameservers as exc:
            return _Lookup(
                failed=f"the DNS server answered {_rcodes(exc)} for the {kind} record at {name}; "
                "check the domain's DNS hosting, or try again later"
            )
        except dns.name.NameTooLong:
            return _Lookup(failed=f"{name} is longer than DNS allows; use a shorter domain")
        except (dns.exception.DNSException, OSError) as exc:
            return _Lookup(failed=f"could not look up the {kind} record at {name}: {_line(exc)}")
        if rdtype == dns.rdatatype.TXT:
            values = tuple(
                b"".join(rdata.strings).decode("utf-8", "backslashreplace") for rdata in answer
            )
        else:
            # For a CNAME question the resolver does not follow the chain: this is the record
            # owned by the name asked about.
            values = tuple(rdata.target.to_text() for rdata in answer)
        return _Lookup(values=values)


def _missing(kind: str, name: str, *, exists: bool) -> str:
    if kind == "TXT":
        return f"no TXT record at {name} yet; DNS changes can take a few minutes"
    if exists:
        return f"{name} has records but no CNAME; replace them with a CNAME to the edge"
    return f"no CNAME record at {name} yet; DNS changes can take a few minutes"


def _explain_both(
    txt: _Lookup, by_txt: Verification, cname: _Lookup, by_cname: Verification, domain: str
) -> str:
    """One line for relaxed mode when neither record passes.

    A record that exists with the wrong value is what the user most likely has to fix, so it
    comes first; then a DNS failure, which may hide a correct record; "nothing there yet"
    only when both lookups agree on it.
    """
    found = [v.detail for lookup, v in ((txt, by_txt), (cname, by_cname)) if lookup.values]
    if found:
        return "; ".join(found)
    failed = [lookup.failed for lookup in (txt, cname) if lookup.failed]
    if failed:
        return failed[0]
    if cname.other_data:
        return f"{by_txt.detail}; {cname.missing}"
    return (
        f"no TXT record at {challenge_name(domain)} and no CNAME at {domain} yet; "
        "DNS changes can take a few minutes"
    )


def _rcodes(exc: dns.resolver.NoNameservers) -> str:
    errors = exc.kwargs.get("errors") or []
    codes = sorted({err[3] for err in errors if isinstance(err[3], str)})
    return "/".join(codes) if codes else "with an error"


def _unquote(value: str) -> str:
    # Some DNS panels store the quotes a user pasted around the value as part of it.
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].strip()
    return value


def _fold(name: str) -> str:
    return name.strip().lower().rstrip(".")


def _quote(value: str) -> str:
    if len(value) > _QUOTE_LIMIT:
        value = value[: _QUOTE_LIMIT - 1] + "…"
    return repr(value)


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
