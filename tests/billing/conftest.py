"""Billing tests: the control app with every provider on, pointed at one local server
answering as Stripe's, Razorpay's and PayPal's REST APIs do (``provider_apis``), and a
``Shop`` that sells plans through them."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from billing.service import BILLING
from billing.settings import BillingSettings
from control.app import create_app
from control.keys import DB
from tests.billing import provider_apis as p
from tests.billing.provider_apis import ProviderApis, serve
from tests.control.conftest import Api, control_config


def billing_settings(apis: ProviderApis, **changes: Any) -> BillingSettings:
    settings = BillingSettings(
        stripe_api_key=p.STRIPE_KEY,
        stripe_webhook_secret=p.STRIPE_WEBHOOK_SECRET,
        stripe_api_base=apis.stripe_base,
        razorpay_key_id=p.RAZORPAY_KEY_ID,
        razorpay_key_secret=p.RAZORPAY_KEY_SECRET,
        razorpay_webhook_secret=p.RAZORPAY_WEBHOOK_SECRET,
        razorpay_api_base=apis.razorpay_base,
        paypal_client_id=p.PAYPAL_CLIENT_ID,
        paypal_client_secret=p.PAYPAL_CLIENT_SECRET,
        paypal_webhook_id=p.PAYPAL_WEBHOOK_ID,
        paypal_api_base=apis.paypal_base,
        mock=True,
        worker_interval=3600.0,
    )
    for key, value in changes.items():
        setattr(settings, key, value)
    return settings


@pytest.fixture
async def apis() -> AsyncIterator[ProviderApis]:
    async for running in serve(ProviderApis()):
        yield running


class TestClock:
    """The billing clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Shop:
    api: Api
    client: TestClient
    apis: ProviderApis
    clock: TestClock
    operator: dict[str, Any]

    @property
    def db(self) -> Any:
        return self.client.app[DB]  # type: ignore[index]

    async def as_operator(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        headers = {"Cookie": f"burrow_session={self.operator['cookie']}", "X-Requested-With": "t"}
        resp = await self.client.request(method, path, headers=headers, **kw)
        body = await resp.json()
        assert resp.status == status, (resp.status, body)
        return body

    async def plan(self, **fields: Any) -> dict[str, Any]:
        """A new paid plan sold through every provider, under ids unique to this test."""
        tag = secrets.token_hex(4)
        body = {
            "id": f"pro-{tag}",
            "name": f"Pro {tag}",
            "price_cents": 1500,
            "prices": {
                "stripe": f"price_{tag}",
                "razorpay": f"plan_{tag}",
                "paypal": f"P-{tag.upper()}",
                "mock": f"mock_{tag}",
            },
            **fields,
        }
        return await self.as_operator("POST", "/v1/admin/plans", 201, json=body)  # type: ignore[no-any-return]

    async def customer(self) -> dict[str, Any]:
        return await self.api.signup()

    async def checkout(self, user: dict[str, Any], provider: str, plan: str) -> dict[str, Any]:
        return await self.api.call(  # type: ignore[no-any-return]
            "POST",
            "/v1/billing/checkout",
            user["key"],
            201,
            json={"provider": provider, "plan": plan},
        )

    async def webhook(
        self, provider: str, delivery: tuple[bytes, dict[str, str]], status: int = 200
    ) -> dict[str, Any]:
        body, headers = delivery
        resp = await self.client.post(
            f"/v1/billing/webhooks/{provider}", data=body, headers=headers
        )
        answer = await resp.json()
        assert resp.status == status, (resp.status, answer)
        return answer  # type: ignore[no-any-return]

    async def state(self, user: dict[str, Any]) -> dict[str, Any]:
        return await self.api.call("GET", "/v1/billing", user["key"])  # type: ignore[no-any-return]

    async def audits(self, org_id: str, action: str) -> int:
        return int(
            await self.db.value(
                "SELECT count(*) FROM audit_log WHERE org_id = %s AND action = %s",
                (org_id, action),
            )
        )


@pytest.fixture
async def shop(database_url: str, apis: ProviderApis) -> AsyncIterator[Shop]:
    app = create_app(control_config(database_url, billing=billing_settings(apis)))
    async with TestClient(TestServer(app)) as client:
        clock = TestClock()
        app[BILLING].clock = clock
        api = Api(client)
        operator = await api.signup()
        await app[DB].execute(
            "UPDATE users SET is_admin = true WHERE id = %s", (operator["user"]["id"],)
        )
        yield Shop(api, client, apis, clock, operator)
