from __future__ import annotations

import os
from typing import Any

import pytest
import uvloop
from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.fixtures.redis", "tests.fixtures.postgres"]

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=300, deadline=None)
settings.register_profile("deep", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Every async test runs on uvloop, as the edge and agent do in production."""
    return {"uvloop": uvloop.new_event_loop}
