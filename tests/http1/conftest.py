from __future__ import annotations

import pytest

from edge.http1 import IMPLEMENTATIONS
from tests.http1.support import IMPLS, Impl


@pytest.fixture(params=IMPLEMENTATIONS, scope="session")
def impl(request: pytest.FixtureRequest) -> Impl:
    """Factories for one implementation's visitor and origin connections."""
    return IMPLS[request.param]
