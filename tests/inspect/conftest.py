"""The e2e suite's local service and agent runner, for the replay tests here."""

from __future__ import annotations

from tests.e2e.conftest import agents, service

__all__ = ["agents", "service"]
