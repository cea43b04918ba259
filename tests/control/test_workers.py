"""Workers run beside the control app on its resources, start again after a failure, and
stop with the app; a worker process serves /healthz but not the API."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from control import workers
from control.app import create_app
from control.keys import DB
from tests.control.conftest import control_config


class Recorder:
    """A worker that records what it saw: the first run fails, the second waits."""

    runs: list[str] = []
    stopped = asyncio.Event()

    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def run(self) -> None:
        one = await self.app[DB].value("SELECT 1")
        Recorder.runs.append(f"saw {one}")
        if len(Recorder.runs) == 1:
            raise RuntimeError("a bug in the first job")
        try:
            await asyncio.Event().wait()
        finally:
            Recorder.stopped.set()


@pytest.fixture
def recorder() -> Iterator[type[Recorder]]:
    Recorder.runs = []
    Recorder.stopped = asyncio.Event()
    workers.WORKERS["recorder"] = f"{__name__}:Recorder"
    yield Recorder
    del workers.WORKERS["recorder"]


async def test_a_worker_runs_on_the_apps_database_restarts_after_a_failure_and_stops(
    database_url: str, recorder: type[Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(control_config(database_url), workers=["recorder"], api=False)
    async with TestClient(TestServer(app)) as client:
        for _ in range(100):
            if len(recorder.runs) >= 2:
                break
            await asyncio.sleep(0.05)
        assert recorder.runs == ["saw 1", "saw 1"]
        assert "worker recorder failed" in caplog.text
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/v1/me")).status == 404  # a worker serves no API
    assert recorder.stopped.is_set()


def test_an_unknown_worker_is_named_with_the_known_ones(recorder: type[Recorder]) -> None:
    with pytest.raises(ValueError, match=r"no worker called 'cert' \(known: .*recorder"):
        workers.factory("cert")
