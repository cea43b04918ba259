"""Shutdown of the control app never waits forever on one resource."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from control import app as control_app


async def _ignores_cancellation(release: asyncio.Event) -> None:
    # What a worker stuck on a dead connection looks like from outside.
    while not release.is_set():
        try:
            await release.wait()
        except asyncio.CancelledError:
            continue


async def test_a_close_that_never_finishes_is_left_behind(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(control_app, "CLOSE_TIMEOUT", 0.2)
    release = asyncio.Event()
    stuck = asyncio.get_running_loop().create_task(_ignores_cancellation(release))
    await asyncio.sleep(0)  # running, so the cancellation lands inside the loop
    stuck.cancel()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="burrow.control"):
        await control_app._close_within("stopping the stuck worker", stuck)
    assert time.monotonic() - started < 2
    assert "stopping the stuck worker did not finish within 0.2s" in caplog.text
    assert not stuck.done()
    release.set()
    await asyncio.wait_for(stuck, 2)


async def test_a_close_that_finishes_or_fails_is_waited_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    finished: list[str] = []

    async def close() -> None:
        await asyncio.sleep(0.05)
        finished.append("closed")

    async def broken() -> None:
        raise OSError("connection reset")

    with caplog.at_level(logging.WARNING, logger="burrow.control"):
        await control_app._close_within("closing the pool", close())
        await control_app._close_within("closing the bus", broken())
    assert finished == ["closed"]
    assert "closing the bus failed: OSError('connection reset')" in caplog.text
    assert "closing the pool" not in caplog.text
