"""An injectable wall clock for CertStore tests."""

from __future__ import annotations

import datetime as dt
import time


class Clock:
    """Epoch seconds, as ``time.time`` returns them; the test moves it by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, delta: dt.timedelta) -> None:
        self.now += delta.total_seconds()
