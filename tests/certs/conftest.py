from __future__ import annotations

import pytest
import trustme

from certs.selfsigned import LocalCA
from tests.certs.clock import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def public_ca() -> trustme.CA:
    """Stands in for Let's Encrypt or whoever issued an operator's static certificate."""
    return trustme.CA()


@pytest.fixture(scope="session")
def local_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return LocalCA.load_or_create(tmp_path_factory.mktemp("burrow-dev-ca"))
