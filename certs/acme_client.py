"""Talking to an ACME CA (RFC 8555) with the ``acme`` and ``josepy`` libraries.

Those libraries block (``requests`` underneath), so everything here is plain synchronous
code that the certs worker runs in a thread (``asyncio.to_thread``); nothing here touches
the database or the bus. One ``AcmeAccount`` per directory: the worker keeps its key sealed
in PostgreSQL and hands it in.

An order goes in two halves so the worker can publish the challenges in between::

    order, pending = account.start_order(host, key_pem, kind)   # thread
    ... every edge answers each pending challenge ...            # event loop
    chain_pem = account.finish_order(order, pending, deadline)  # thread

Failures come out as ``AcmeFailure`` with one line saying what the CA said, and whether it
was a rate limit (with the time the CA allows again, when it said) or the CA not answering.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certs.config import AcmeSettings

CHALLENGE_KINDS = ("http-01", "tls-alpn-01", "dns-01")
USER_AGENT = "burrow-certs"
# Let's Encrypt writes "retry after 2025-01-01 00:00:00 UTC" into rate-limit details.
_RETRY_AFTER = re.compile(r"retry after (\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)")


class TLSALPN01Response(challenges.KeyAuthorizationChallengeResponse):
    """RFC 8737's response: the library dropped its tls-alpn-01 types, the protocol stayed."""

    typ = "tls-alpn-01"


class TLSALPN01(challenges.KeyAuthorizationChallenge):
    response_cls = TLSALPN01Response
    typ = response_cls.typ

    def validation(self, account_key: jose.JWK, **unused: Any) -> str:
        return self.key_authorization(account_key)


# Registered so the library parses the CA's tls-alpn-01 challenges as these, not as
# unrecognized ones (unless a later version brings its own again).
if TLSALPN01.typ not in challenges.Challenge.TYPES:
    challenges.Challenge.register(TLSALPN01)
    challenges.ChallengeResponse.register(TLSALPN01Response)


def _kind(chall: challenges.Challenge) -> str:
    if isinstance(chall, challenges.UnrecognizedChallenge):
        return str(chall.jobj.get("type", "unknown"))
    return str(chall.typ)


class AcmeFailure(Exception):
    """An order failed. ``rate_limited``: the CA refused for a rate limit (``retry_at``: when
    it allows again, if it said); ``unreachable``: the CA did not answer."""

    def __init__(
        self,
        message: str,
        *,
        rate_limited: bool = False,
        unreachable: bool = False,
        retry_at: dt.datetime | None = None,
        code: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code  # the ACME error type's last part ("accountDoesNotExist", ...)
        self.rate_limited = rate_limited
        self.unreachable = unreachable
        self.retry_at = retry_at


@dataclass(slots=True)
class PendingChallenge:
    """A challenge the CA waits on for one name of an order."""

    host: str  # the identifier ("shop.example.com"; a wildcard's base for dns-01)
    kind: str  # "http-01" | "tls-alpn-01" | "dns-01"
    token: str
    # http-01 and tls-alpn-01: the key authorization; dns-01: the TXT record's value.
    validation: str
    body: messages.ChallengeBody = field(repr=False)


def new_account_key() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def new_cert_key() -> bytes:
    return new_account_key()  # the same kind: EC P-256, which every TLS 1.2+ client takes


class AcmeAccount:
    """One account at one CA. Blocking: call from a thread."""

    def __init__(self, settings: AcmeSettings, key_pem: bytes, account_url: str = "") -> None:
        self.settings = settings
        private = serialization.load_pem_private_key(key_pem, password=None)
        self._key = jose.JWKEC(key=private)
        self.account_url = account_url
        self._client: client.ClientV2 | None = None

    def _acme(self) -> client.ClientV2:
        if self._client is not None:
            return self._client
        settings = self.settings
        verify: Any = settings.ca_bundle or True
        net = client.ClientNetwork(
            self._key,
            alg=jose.ES256,
            verify_ssl=verify,
            user_agent=USER_AGENT,
            timeout=settings.timeout,
        )
        with _translated(f"reading the ACME directory {settings.directory_url}"):
            directory = client.ClientV2.get_directory(settings.directory_url, net)
        acme = client.ClientV2(directory, net)
        if self.account_url:
            net.account = messages.RegistrationResource(
                body=messages.Registration(), uri=self.account_url
            )
        self._client = acme
        return acme

    def register(self) -> str:
        """Create the account (or find the one this key already has); its URL."""
        acme = self._acme()
        settings = self.settings
        eab = None
        if settings.eab_kid:
            eab = messages.ExternalAccountBinding.from_data(
                account_public_key=self._key.public_key(),
                kid=settings.eab_kid,
                hmac_key=settings.eab_hmac_key,
                directory=acme.directory,
            )
        elif acme.external_account_required():
            raise AcmeFailure(
                f"the CA at {settings.directory_url} requires external account binding: set "
                "the worker's EAB key id and HMAC key (--acme-eab-kid, --acme-eab-hmac-key)"
            )
        registration = messages.NewRegistration.from_data(
            email=settings.email or None,
            terms_of_service_agreed=True,
            external_account_binding=eab,
        )
        with _translated("registering the ACME account"):
            try:
                regr = acme.new_account(registration)
                self.account_url = regr.uri or ""
            except errors.ConflictError as exc:  # this key has an account already
                self.account_url = exc.location
                acme.net.account = messages.RegistrationResource(
                    body=messages.Registration(), uri=exc.location
                )
        return self.account_url

    def start_order(
        self, names: Sequence[str], key_pem: bytes, kinds: Sequence[str]
    ) -> tuple[messages.OrderResource, list[PendingChallenge]]:
        """Place an order for ``names`` with a CSR for ``key_pem``; the challenges to answer
        (one per name not yet authorized, of the first kind in ``kinds`` the CA offers)."""
        acme = self._acme()
        csr = crypto_util.make_csr(key_pem, list(names))
        with _translated(f"ordering a certificate for {', '.join(names)}"):
            order = acme.new_order(csr)
        pending: list[PendingChallenge] = []
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue  # the CA remembers a recent validation
            identifier = str(authz.body.identifier.value)
            offered = {_kind(c.chall): c for c in authz.body.challenges}
            kind = next((k for k in kinds if k in offered), "")
            if not kind:
                raise AcmeFailure(
                    f"the CA offers {', '.join(sorted(offered)) or 'no challenges'} for "
                    f"{identifier}, none of which this worker is set to answer "
                    f"({', '.join(kinds)})"
                )
            body = offered[kind]
            chall = body.chall
            assert isinstance(chall, challenges.KeyAuthorizationChallenge)
            if kind == "dns-01":
                validation = str(chall.validation(self._key))
            else:
                validation = chall.key_authorization(self._key)
            pending.append(
                PendingChallenge(identifier, kind, chall.encode("token"), validation, body)
            )
        return order, pending

    def finish_order(
        self,
        order: messages.OrderResource,
        pending: Sequence[PendingChallenge],
        deadline: dt.datetime,
    ) -> bytes:
        """Tell the CA the challenges are ready, wait for validation, finalize; the chain."""
        acme = self._acme()
        with _translated("answering the ACME challenges"):
            for challenge in pending:
                chall = challenge.body.chall
                assert isinstance(chall, challenges.KeyAuthorizationChallenge)
                acme.answer_challenge(challenge.body, chall.response(self._key))
            done = acme.poll_and_finalize(order, deadline)
        return done.fullchain_pem.encode("ascii")

    def renewal_time(self, chain_pem: bytes) -> dt.datetime | None:
        """When the CA suggests renewing (ARI, RFC 9773), or None if it offers no renewal
        information (or could not be asked)."""
        acme = self._acme()
        try:
            when, _ = acme.renewal_time(chain_pem)
        except (errors.Error, requests.RequestException, ValueError):
            return None
        if when is None:
            return None
        return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


@contextlib.contextmanager
def _translated(doing: str) -> Iterator[None]:
    """Turn what the libraries raise into one ``AcmeFailure`` line naming what was done."""
    try:
        yield
    except (AcmeFailure, errors.ConflictError):
        raise
    except Exception as exc:
        raise translate_error(doing, exc) from exc


def translate_error(doing: str, exc: BaseException) -> AcmeFailure:
    if isinstance(exc, requests.RequestException):
        return AcmeFailure(f"{doing}: the CA did not answer ({_first_line(exc)})", unreachable=True)
    if isinstance(exc, errors.ValidationError):
        problems = []
        for authz in exc.failed_authzrs:
            for chall in authz.body.challenges:
                if chall.error is not None:
                    problems.append(f"{authz.body.identifier.value}: {_problem(chall.error)}")
        return AcmeFailure(f"{doing}: validation failed: {'; '.join(problems) or 'no detail'}")
    if isinstance(exc, errors.TimeoutError):
        return AcmeFailure(f"{doing}: the CA did not finish validating in time")
    if isinstance(exc, messages.Error):
        if exc.code == "rateLimited":
            return AcmeFailure(
                f"{doing}: rate limited by the CA: {exc.detail}",
                rate_limited=True,
                retry_at=_retry_at(exc.detail or ""),
            )
        return AcmeFailure(f"{doing}: {_problem(exc)}", code=exc.code or "")
    if isinstance(exc, errors.Error):
        return AcmeFailure(f"{doing}: {_first_line(exc)}")
    return AcmeFailure(f"{doing}: {type(exc).__name__}: {_first_line(exc)}")


def _problem(error: messages.Error) -> str:
    return f"{error.code or error.typ}: {error.detail or ''}".strip()


def _retry_at(detail: str) -> dt.datetime | None:
    match = _RETRY_AFTER.search(detail)
    if match is None:
        return None
    try:
        return dt.datetime.fromisoformat(match.group(1).replace(" ", "T")).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
