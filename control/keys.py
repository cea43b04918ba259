"""The control app's typed keys: the resources every handler reaches through ``request.app``."""

from __future__ import annotations

from aiohttp import web

from bus.base import Bus
from control.config import ControlConfig
from control.db import Database
from control.dns_check import DomainVerifier
from control.metrics import ControlMetrics
from control.passwords import Passwords
from control.routing_outbox import RoutingOutbox
from control.secret_box import SecretBox
from control.signing_keys import SigningKeys

CONFIG = web.AppKey("config", ControlConfig)
DB = web.AppKey("db", Database)
BUS = web.AppKey("bus", Bus)
PASSWORDS = web.AppKey("passwords", Passwords)
SIGNING = web.AppKey("signing", SigningKeys)
# Seals small secrets at rest (signing keys, ACME account and certificate keys).
BOX = web.AppKey("secret_box", SecretBox)
OUTBOX = web.AppKey("outbox", RoutingOutbox)
VERIFIER = web.AppKey("verifier", DomainVerifier)
METRICS = web.AppKey("metrics", ControlMetrics)
