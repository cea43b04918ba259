"""Renewal time from the CA's renewal information (ARI, RFC 9773), against a local server
answering as the RFC documents: the directory names ``renewalInfo``, and
``GET renewalInfo/<cert id>`` gives a suggested window. Without ARI: two thirds into the
certificate's lifetime."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from certs.acme_client import AcmeAccount, new_account_key
from certs.config import AcmeSettings
from certs.selfsigned import LocalCA
from certs.worker import two_thirds

START = dt.datetime(2030, 1, 10, tzinfo=dt.UTC)
END = dt.datetime(2030, 1, 12, tzinfo=dt.UTC)


async def directory_server(ari: bool) -> AsyncIterator[str]:
    asked: list[str] = []

    async def directory(request: web.Request) -> web.Response:
        base = f"http://{request.host}"
        answer = {
            "newNonce": f"{base}/nonce",
            "newAccount": f"{base}/acct",
            "newOrder": f"{base}/order",
        }
        if ari:
            answer["renewalInfo"] = f"{base}/renewal-info"
        return web.json_response(answer)

    async def renewal_info(request: web.Request) -> web.Response:
        asked.append(request.match_info["cert_id"])
        window = {"start": START.isoformat(), "end": END.isoformat()}
        return web.json_response({"suggestedWindow": window}, headers={"Retry-After": "21600"})

    app = web.Application()
    app.router.add_get("/dir", directory)
    app.router.add_get("/renewal-info/{cert_id}", renewal_info)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/dir"
    finally:
        await runner.cleanup()
    if ari:
        assert asked, "the renewal information was never asked for"


@pytest.fixture
async def with_ari() -> AsyncIterator[str]:
    async for url in directory_server(ari=True):
        yield url


@pytest.fixture
async def without_ari() -> AsyncIterator[str]:
    async for url in directory_server(ari=False):
        yield url


def chain() -> bytes:
    return LocalCA.create().issue(["shop.example.test"]).chain_pem


async def test_the_cas_renewal_window_sets_the_renewal_time(with_ari: str) -> None:
    account = AcmeAccount(AcmeSettings(with_ari), new_account_key())
    when = await asyncio.to_thread(account.renewal_time, chain())
    assert when is not None and START <= when <= END


async def test_without_ari_renewal_is_at_two_thirds_of_the_lifetime(without_ari: str) -> None:
    account = AcmeAccount(AcmeSettings(without_ari), new_account_key())
    pem = chain()
    assert await asyncio.to_thread(account.renewal_time, pem) is None
    from cryptography import x509

    leaf = x509.load_pem_x509_certificate(pem)
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert two_thirds(pem) == leaf.not_valid_before_utc + lifetime * 2 / 3
