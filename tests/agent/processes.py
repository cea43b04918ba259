"""Running this tree's ``burrow`` as a child process, for the agent's end-to-end tests.

``tests/e2e/test_cli_processes.py`` starts children with ``sys.executable -m agent.cli`` in
a temporary directory, where the venv's installed copy of the package would be imported:
``TREE_ENV`` makes the child import the sources under test instead."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_cli_processes import START_TIMEOUT, Child

TREE_ENV = {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}


async def run_burrow(tmp_path: Path, name: str, *args: str) -> tuple[int, str]:
    """Run ``burrow ARGS`` to its end: (exit status, its output)."""
    child = await Child.start(tmp_path, name, "-m", "agent.cli", *args, env=TREE_ENV)
    try:
        code = await child.finish(START_TIMEOUT)
        return code, child.output()
    finally:
        await child.kill()
