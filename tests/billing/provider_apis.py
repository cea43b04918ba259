"""Test equipment: one local HTTP server that answers as the Stripe, Razorpay and PayPal
REST APIs do for the calls Burrow makes, so each official SDK runs unchanged against it
(stripe's ``api_base``, razorpay's client ``base_url``, paypal-server-sdk's environment).

It keeps each provider's books (sessions, subscriptions, invoices, refunds) in memory and
lets a test move them (``activate``, ``fail_payment``...) as the provider would, then sign
the webhook the provider would send, the way each documents it:

- Stripe: ``Stripe-Signature: t=<unix>,v1=<HMAC-SHA256(secret, "t.body")>`` (the SDK's
  own ``generate_signature_header``).
- Razorpay: ``X-Razorpay-Signature: <hex HMAC-SHA256(webhook secret, body)>`` and
  ``X-Razorpay-Event-Id``.
- PayPal: ``PAYPAL-TRANSMISSION-SIG``: SHA256withRSA over
  ``<transmission id>|<transmission time>|<webhook id>|<CRC32 of the body>`` with the key of
  the certificate at ``PAYPAL-CERT-URL``; the verify-webhook-signature endpoint checks it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import stripe
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

STRIPE_KEY = "sk_test_burrow"
STRIPE_WEBHOOK_SECRET = "whsec_test_burrow"
RAZORPAY_KEY_ID = "rzp_test_burrow"
RAZORPAY_KEY_SECRET = "rzp_secret_burrow"
RAZORPAY_WEBHOOK_SECRET = "rzp_webhook_secret"
PAYPAL_CLIENT_ID = "paypal-client"
PAYPAL_CLIENT_SECRET = "paypal-secret"
PAYPAL_WEBHOOK_ID = "WH-BURROW-TEST"
MONTH = 30 * 86400


def _nested(form: Any) -> dict[str, Any]:
    """Stripe's form encoding (``a[b][0][c]=v``) back into objects and lists."""
    out: dict[str, Any] = {}
    for key, value in form.items():
        parts = key.replace("]", "").split("[")
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt: Any = value if last else ([] if parts[i + 1].isdigit() else {})
            if isinstance(node, list):
                index = int(part)
                while len(node) <= index:
                    node.append(None)
                if node[index] is None or last:
                    node[index] = nxt
                node = node[index]
            else:
                if part not in node or last:
                    node[part] = nxt
                node = node[part]
    return out


def _id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(7)}"


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error"}}, status=status
    )


@dataclass
class ProviderApis:
    """The three providers' books and the server answering for them."""

    base: str = ""
    stripe_subs: dict[str, dict[str, Any]] = field(default_factory=dict)
    stripe_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    stripe_invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    razorpay_subs: dict[str, dict[str, Any]] = field(default_factory=dict)
    razorpay_invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    paypal_subs: dict[str, dict[str, Any]] = field(default_factory=dict)
    paypal_transactions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    paypal_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    # -- the server ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_post("/v1/checkout/sessions", self._stripe_session)
        r.add_get("/v1/subscriptions", self._stripe_list_subs)
        r.add_get("/v1/subscriptions/{id}", self._stripe_sub)
        r.add_delete("/v1/subscriptions/{id}", self._stripe_cancel)
        r.add_get("/v1/invoices", self._stripe_invoices)
        r.add_post("/v1/refunds", self._stripe_refund)
        r.add_post("/razorpay/v1/subscriptions", self._rzp_create)
        r.add_get("/razorpay/v1/subscriptions", self._rzp_list)
        r.add_get("/razorpay/v1/subscriptions/{id}", self._rzp_sub)
        r.add_post("/razorpay/v1/subscriptions/{id}/cancel", self._rzp_cancel)
        r.add_get("/razorpay/v1/invoices", self._rzp_invoices)
        r.add_post("/razorpay/v1/payments/{id}/refund", self._rzp_refund)
        r.add_post("/paypal/v1/oauth2/token", self._pp_token)
        r.add_post("/paypal/v1/billing/subscriptions", self._pp_create)
        r.add_get("/paypal/v1/billing/subscriptions", self._pp_list)
        r.add_get("/paypal/v1/billing/subscriptions/{id}", self._pp_sub)
        r.add_post("/paypal/v1/billing/subscriptions/{id}/cancel", self._pp_cancel)
        r.add_get("/paypal/v1/billing/subscriptions/{id}/transactions", self._pp_transactions)
        r.add_post("/paypal/v2/payments/captures/{id}/refund", self._pp_refund)
        r.add_post("/paypal/v1/notifications/verify-webhook-signature", self._pp_verify)
        r.add_get("/paypal/certs/{name}", self._pp_cert)
        return app

    @property
    def stripe_base(self) -> str:
        return self.base

    @property
    def razorpay_base(self) -> str:
        return f"{self.base}/razorpay"

    @property
    def paypal_base(self) -> str:
        return f"{self.base}/paypal"

    # -- Stripe -------------------------------------------------------------------------

    def _stripe_auth(self, request: web.Request) -> web.Response | None:
        self.calls.append(f"stripe {request.method} {request.path}")
        if request.headers.get("Authorization") != f"Bearer {STRIPE_KEY}":
            return _error(401, "Invalid API Key provided")
        return None

    async def _stripe_session(self, request: web.Request) -> web.Response:
        if (refused := self._stripe_auth(request)) is not None:
            return refused
        params = _nested(await request.post())
        session_id = _id("cs_test_")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": params["mode"],
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata", {}),
            "subscription": None,
            "line_items": params["line_items"],
            "subscription_data": params.get("subscription_data", {}),
            "success_url": params["success_url"],
        }
        self.stripe_sessions[session_id] = session
        return web.json_response(session)

    async def _stripe_sub(self, request: web.Request) -> web.Response:
        if (refused := self._stripe_auth(request)) is not None:
            return refused
        sub = self.stripe_subs.get(request.match_info["id"])
        if sub is None:
            return _error(404, f"No such subscription: '{request.match_info['id']}'")
        return web.json_response(sub)

    async def _stripe_list_subs(self, request: web.Request) -> web.Response:
        if (refused := self._stripe_auth(request)) is not None:
            return refused
        return web.json_response(
            {
                "object": "list",
                "url": "/v1/subscriptions",
                "has_more": False,
                "data": list(self.stripe_subs.values()),
            }
        )

    async def _stripe_cancel(self, request: web.Request) -> web.Response:
        if (refused := self._stripe_auth(request)) is not None:
            return refused
        sub = self.stripe_subs[request.match_info["id"]]
        sub["status"] = "canceled"
        self.cancels.append(sub["id"])
        return web.json_response(sub)

    async def _stripe_invoices(self, request: web.Request) -> web.Response:
        if (refused := self._stripe_auth(request)) is not None:
            return refused
        return web.json_response(
            {
                "object": "list",
                "url": "/v1/invoices",
                "has_more": False,
                "data": list(self.stripe_invoices.values()),
            }
        )

    async def _stripe_refund(self, request: web.Request) -> web.Response:
        if (refused := self._stripe_auth(request)) is not None:
            return refused
        params = _nested(await request.post())
        refund = {
            "id": _id("re_"),
            "object": "refund",
            "amount": int(params["amount"]),
            "payment_intent": params.get("payment_intent"),
            "status": "succeeded",
        }
        self.refunds.append({"provider": "stripe", **refund})
        return web.json_response(refund)

    def stripe_complete(self, session_id: str, price_total: int = 1500) -> dict[str, Any]:
        """The customer paid: a subscription and its first invoice exist; the
        checkout.session.completed event."""
        session = self.stripe_sessions[session_id]
        now = int(time.time())
        sub_id = _id("sub_")
        price = session["line_items"][0]["price"]
        self.stripe_subs[sub_id] = {
            "id": sub_id,
            "object": "subscription",
            "status": "active",
            "customer": _id("cus_"),
            "metadata": session["subscription_data"].get("metadata", {}),
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": _id("si_"),
                        "price": {"id": price, "object": "price"},
                        "current_period_start": now,
                        "current_period_end": now + MONTH,
                    }
                ],
            },
        }
        session["subscription"] = sub_id
        self.stripe_invoice(sub_id, "paid", price_total)
        return self.stripe_event("checkout.session.completed", {**session, "status": "complete"})

    def stripe_invoice(self, sub_id: str, status: str, total: int) -> dict[str, Any]:
        now = int(time.time())
        invoice = {
            "id": _id("in_"),
            "object": "invoice",
            "subscription": sub_id,
            "status": status,
            "attempted": True,
            "paid": status == "paid",
            "currency": "usd",
            "subtotal": total - total // 10,
            "total_taxes": [{"amount": total // 10}],
            "total": total,
            "customer_tax_ids": [{"type": "eu_vat", "value": "DE123456789"}],
            "payment_intent": _id("pi_"),
            "period_start": now,
            "period_end": now + MONTH,
            "created": now,
        }
        self.stripe_invoices[invoice["id"]] = invoice
        return invoice

    def stripe_event(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": _id("evt_"),
            "object": "event",
            "type": kind,
            "created": int(time.time()),
            "data": {"object": obj},
            "livemode": False,
            "api_version": "2025-03-31.basil",
        }

    @staticmethod
    def stripe_signed(
        event: dict[str, Any], *, at: int | None = None, secret: str = STRIPE_WEBHOOK_SECRET
    ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=at)
        return body.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}

    # -- Razorpay -----------------------------------------------------------------------

    def _rzp_auth(self, request: web.Request) -> web.Response | None:
        self.calls.append(f"razorpay {request.method} {request.path}")
        expected = base64.b64encode(f"{RAZORPAY_KEY_ID}:{RAZORPAY_KEY_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response(
                {"error": {"code": "BAD_REQUEST_ERROR", "description": "Authentication failed"}},
                status=401,
            )
        return None

    async def _rzp_create(self, request: web.Request) -> web.Response:
        if (refused := self._rzp_auth(request)) is not None:
            return refused
        body = await request.json()
        sub_id = _id("sub_")
        sub = {
            "id": sub_id,
            "entity": "subscription",
            "plan_id": body["plan_id"],
            "status": "created",
            "total_count": body["total_count"],
            "notes": body.get("notes") or [],
            "short_url": f"https://rzp.io/i/{sub_id[4:]}",
            "current_start": None,
            "current_end": None,
            "customer_id": None,
            "created_at": int(time.time()),
        }
        self.razorpay_subs[sub_id] = sub
        return web.json_response(sub)

    async def _rzp_sub(self, request: web.Request) -> web.Response:
        if (refused := self._rzp_auth(request)) is not None:
            return refused
        sub = self.razorpay_subs.get(request.match_info["id"])
        if sub is None:
            return web.json_response(
                {
                    "error": {
                        "code": "BAD_REQUEST_ERROR",
                        "description": "The id provided does not exist",
                    }
                },
                status=400,
            )
        return web.json_response(sub)

    async def _rzp_list(self, request: web.Request) -> web.Response:
        if (refused := self._rzp_auth(request)) is not None:
            return refused
        skip = int(request.query.get("skip", 0))
        count = int(request.query.get("count", 10))
        items = list(self.razorpay_subs.values())[skip : skip + count]
        return web.json_response({"entity": "collection", "count": len(items), "items": items})

    async def _rzp_cancel(self, request: web.Request) -> web.Response:
        if (refused := self._rzp_auth(request)) is not None:
            return refused
        sub = self.razorpay_subs[request.match_info["id"]]
        sub["status"] = "cancelled"
        self.cancels.append(sub["id"])
        return web.json_response(sub)

    async def _rzp_invoices(self, request: web.Request) -> web.Response:
        if (refused := self._rzp_auth(request)) is not None:
            return refused
        sub = request.query.get("subscription_id")
        items = [i for i in self.razorpay_invoices.values() if i["subscription_id"] == sub]
        skip = int(request.query.get("skip", 0))
        items = items[skip : skip + int(request.query.get("count", 10))]
        return web.json_response({"entity": "collection", "count": len(items), "items": items})

    async def _rzp_refund(self, request: web.Request) -> web.Response:
        if (refused := self._rzp_auth(request)) is not None:
            return refused
        body = await request.json()
        refund = {
            "id": _id("rfnd_"),
            "entity": "refund",
            "amount": body["amount"],
            "payment_id": request.match_info["id"],
        }
        self.refunds.append({"provider": "razorpay", **refund})
        return web.json_response(refund)

    def razorpay_charge(self, sub_id: str, *, ok: bool = True, total: int = 99900) -> None:
        """A cycle was charged (or the charge failed: Razorpay marks it pending)."""
        sub = self.razorpay_subs[sub_id]
        now = int(time.time())
        sub["status"] = "active" if ok else "pending"
        sub["current_start"], sub["current_end"] = now, now + MONTH
        sub["customer_id"] = sub["customer_id"] or _id("cust_")
        invoice_id = _id("inv_")
        self.razorpay_invoices[invoice_id] = {
            "id": invoice_id,
            "entity": "invoice",
            "subscription_id": sub_id,
            "status": "paid" if ok else "issued",
            "currency": "INR",
            "amount": total,
            "tax_amount": total * 18 // 118,
            "taxable_amount": total - total * 18 // 118,
            "gross_amount": total,
            "payment_id": _id("pay_") if ok else None,
            "customer_details": {"customer_gstin": "29ABCDE1234F1Z5"},
            "billing_start": now,
            "billing_end": now + MONTH,
            "issued_at": now,
        }

    def razorpay_event(self, kind: str, sub_id: str) -> dict[str, Any]:
        return {
            "entity": "event",
            "account_id": "acc_BurrowTest",
            "event": kind,
            "contains": ["subscription"],
            "payload": {"subscription": {"entity": dict(self.razorpay_subs[sub_id])}},
            "created_at": int(time.time()),
        }

    @staticmethod
    def razorpay_signed(
        event: dict[str, Any], *, event_id: str = "", secret: str = RAZORPAY_WEBHOOK_SECRET
    ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(event).encode()
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return body, {
            "X-Razorpay-Signature": signature,
            "X-Razorpay-Event-Id": event_id or _id("evt_"),
            "Content-Type": "application/json",
        }

    # -- PayPal -------------------------------------------------------------------------

    def _pp_auth(self, request: web.Request) -> web.Response | None:
        self.calls.append(f"paypal {request.method} {request.path}")
        if request.headers.get("Authorization") != "Bearer A21-burrow-access-token":
            return web.json_response({"name": "AUTHENTICATION_FAILURE"}, status=401)
        return None

    async def _pp_token(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{PAYPAL_CLIENT_ID}:{PAYPAL_CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"error": "invalid_client"}, status=401)
        form = await request.post()
        assert form.get("grant_type") == "client_credentials"
        return web.json_response(
            {
                "access_token": "A21-burrow-access-token",
                "token_type": "Bearer",
                "expires_in": 32400,
                "scope": "https://uri.paypal.com/services/subscriptions",
            }
        )

    async def _pp_create(self, request: web.Request) -> web.Response:
        if (refused := self._pp_auth(request)) is not None:
            return refused
        body = await request.json()
        sub_id = "I-" + secrets.token_hex(6).upper()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        sub = {
            "id": sub_id,
            "plan_id": body["plan_id"],
            "custom_id": body.get("custom_id"),
            "status": "APPROVAL_PENDING",
            "create_time": now,
            "update_time": now,
            "links": [
                {
                    "href": f"https://www.paypal.com/webapps/billing/subscriptions?ba_token=BA-{sub_id}",
                    "rel": "approve",
                    "method": "GET",
                },
                {
                    "href": f"{self.paypal_base}/v1/billing/subscriptions/{sub_id}",
                    "rel": "self",
                    "method": "GET",
                },
            ],
        }
        self.paypal_subs[sub_id] = sub
        return web.json_response(sub, status=201)

    async def _pp_sub(self, request: web.Request) -> web.Response:
        if (refused := self._pp_auth(request)) is not None:
            return refused
        sub = self.paypal_subs.get(request.match_info["id"])
        if sub is None:
            return web.json_response({"name": "RESOURCE_NOT_FOUND"}, status=404)
        return web.json_response(sub)

    async def _pp_list(self, request: web.Request) -> web.Response:
        if (refused := self._pp_auth(request)) is not None:
            return refused
        size = int(request.query.get("page_size", 10))
        page = int(request.query.get("page", 1))
        items = list(self.paypal_subs.values())[(page - 1) * size : page * size]
        return web.json_response({"subscriptions": items, "links": []})

    async def _pp_cancel(self, request: web.Request) -> web.Response:
        if (refused := self._pp_auth(request)) is not None:
            return refused
        sub = self.paypal_subs[request.match_info["id"]]
        sub["status"] = "CANCELLED"
        self.cancels.append(sub["id"])
        return web.Response(status=204)

    async def _pp_transactions(self, request: web.Request) -> web.Response:
        if (refused := self._pp_auth(request)) is not None:
            return refused
        items = self.paypal_transactions.get(request.match_info["id"], [])
        return web.json_response({"transactions": items, "links": []})

    async def _pp_refund(self, request: web.Request) -> web.Response:
        if (refused := self._pp_auth(request)) is not None:
            return refused
        body = await request.json()
        refund = {"id": _id("RF"), "status": "COMPLETED", "amount": body.get("amount")}
        self.refunds.append({"provider": "paypal", "capture": request.match_info["id"], **refund})
        return web.json_response(refund, status=201)

    async def _pp_cert(self, request: web.Request) -> web.Response:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        pem = self.paypal_key.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        )
        return web.Response(body=pem)

    async def _pp_verify(self, request: web.Request) -> web.Response:
        """PayPal's verify-webhook-signature: the transmission signature over
        id|time|webhook id|CRC32(event), checked with the certificate's key."""
        if (refused := self._pp_auth(request)) is not None:
            return refused
        text = await request.text()
        asked = json.loads(text)
        # PayPal takes the event as it was delivered; its CRC32 is over those bytes, which
        # the request carries verbatim as its last member.
        raw_event = text[
            text.index('"webhook_event":') + len('"webhook_event":') : text.rindex("}")
        ]
        signed = "|".join(
            [
                asked["transmission_id"],
                asked["transmission_time"],
                asked["webhook_id"],
                str(zlib.crc32(raw_event.encode())),
            ]
        ).encode()
        try:
            self.paypal_key.public_key().verify(
                base64.b64decode(asked["transmission_sig"]),
                signed,
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            verdict = "SUCCESS"
        except (ValueError, binascii.Error, Exception):
            verdict = "FAILURE"
        if asked["webhook_id"] != PAYPAL_WEBHOOK_ID:
            verdict = "FAILURE"
        return web.json_response({"verification_status": verdict})

    def paypal_activate(
        self, sub_id: str, *, failed_payments: int = 0, total: str = "12.00"
    ) -> None:
        sub = self.paypal_subs[sub_id]
        now = time.time()
        sub["status"] = "ACTIVE"
        sub["update_time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        sub["billing_info"] = {
            "outstanding_balance": {"currency_code": "USD", "value": "0.00"},
            "failed_payments_count": failed_payments,
            "next_billing_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + MONTH)),
            "last_payment": {
                "amount": {"currency_code": "USD", "value": total},
                "time": sub["update_time"],
            },
        }
        sub["subscriber"] = {"payer_id": "PAYER" + secrets.token_hex(3).upper()}
        self.paypal_transactions.setdefault(sub_id, []).append(
            {
                "id": _id("CAP-"),
                "status": "COMPLETED",
                "amount_with_breakdown": {
                    "gross_amount": {"currency_code": "USD", "value": total},
                    "tax_amount": {"currency_code": "USD", "value": "2.00"},
                    "fee_amount": {"currency_code": "USD", "value": "0.50"},
                    "net_amount": {"currency_code": "USD", "value": "11.50"},
                },
                "time": sub["update_time"],
            }
        )

    def paypal_event(self, kind: str, sub_id: str) -> dict[str, Any]:
        return {
            "id": "WH-" + secrets.token_hex(8).upper(),
            "event_version": "1.0",
            "create_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "resource_type": "subscription",
            "event_type": kind,
            "resource": dict(self.paypal_subs[sub_id]),
        }

    def paypal_signed(
        self, event: dict[str, Any], *, webhook_id: str = PAYPAL_WEBHOOK_ID
    ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(event).encode()
        transmission_id = secrets.token_hex(16)
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        signed = f"{transmission_id}|{at}|{webhook_id}|{zlib.crc32(body)}".encode()
        sig = self.paypal_key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
        return body, {
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            "PAYPAL-CERT-URL": f"{self.paypal_base}/certs/CERT-360caa42-fca2a594-1d93a270",
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-SIG": base64.b64encode(sig).decode(),
            "PAYPAL-TRANSMISSION-TIME": at,
            "Content-Type": "application/json",
        }


async def serve(apis: ProviderApis) -> AsyncIterator[ProviderApis]:
    runner = web.AppRunner(apis.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    apis.base = f"http://{host}:{port}"
    try:
        yield apis
    finally:
        await runner.cleanup()
