"""The background workers: certificates, billing, the request inspector.

A worker is a long-running job on the control plane's database and bus, built from the
control application's resources (``DB``, ``BUS``, ``CONFIG``, ``SIGNING``...) once they are
open. ``burrowd worker NAME`` runs one in a process of its own (with /healthz and /metrics
when given ``--listen``); ``burrowd dev`` runs every worker inside its control app. Several
processes may run the same worker: each claims its work with row locks or advisory locks,
so two never act on one item, and a worker that dies mid-job leaves nothing half done.

Workers are named here and imported only when run, so a process loads only the worker code
(and SDKs) it uses.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("burrow.control.workers")

# How long a worker gets to finish its current step when the process stops.
STOP_SECONDS = 10.0


class Worker(Protocol):
    """One worker. ``run`` works until cancelled; cancellation may come at any await, so a
    job's writes go in one transaction (or are idempotent)."""

    async def run(self) -> None: ...


WorkerFactory = Callable[["web.Application"], Worker]

# Worker name -> "module:factory", the factory taking the control app. Filled in as workers
# are written; the names are what `burrowd worker NAME` accepts.
WORKERS: dict[str, str] = {
    "certs": "certs.worker:create",
    "billing": "billing.worker:billing_worker",
    "inspector": "control.inspector:create",
}


def factory(name: str) -> WorkerFactory:
    """The factory of the worker called ``name``; ValueError naming the known ones."""
    target = WORKERS.get(name)
    if target is None:
        known = ", ".join(sorted(WORKERS)) or "none"
        raise ValueError(f"no worker called {name!r} (known: {known})")
    module, _, attribute = target.partition(":")
    built: WorkerFactory = getattr(importlib.import_module(module), attribute)
    return built


def running(names: Sequence[str]) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` that runs the named workers for the app's lifetime. Put it after
    the contexts that open the resources the workers use."""
    factories = [(name, factory(name)) for name in names]  # unknown names fail at build

    async def context(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(_supervised(name, make(app)), name=f"worker-{name}")
            for name, make in factories
        ]
        if tasks:
            log.info("workers running: %s", ", ".join(name for name, _ in factories))
        yield
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_SECONDS)

    return context


async def _supervised(name: str, worker: Worker) -> None:
    """Run a worker; one that fails is logged and started again after a pause, so a bug in
    one job never stops the others (or the control API beside them)."""
    pause = 1.0
    while True:
        try:
            await worker.run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker %s failed; starting it again in %gs", name, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 60.0)
