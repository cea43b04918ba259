"""Where the processes of one machine pool their Prometheus counts (prometheus_client's
multiprocess mode): every edge worker and the control service read the same variable."""

from __future__ import annotations

import os
from typing import Final

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None
