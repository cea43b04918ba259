"""Fixtures of the e2e and control suites reused here: the local service and agent runner
for the replay tests, the control test client for the API tests."""

from __future__ import annotations

from tests.control.conftest import api, control
from tests.e2e.conftest import agents, service

__all__ = ["agents", "api", "control", "service"]
