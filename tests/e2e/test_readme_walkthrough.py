"""The README's curl walk-through of the control API, run as written: the fenced block under
"The API by curl", in bash with a real curl and jq, against a live control on a port the
test chose, with only ``BURROW_API`` (the variable the README tells readers to set) given."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from control.app import create_app
from tests.control.conftest import control_config
from tests.e2e.test_cli_processes import isolated_env
from tests.fixtures.system_tools import require

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "### The API by curl"


def walkthrough() -> str:
    """The first ```sh block after the heading."""
    text = README.read_text()
    assert HEADING in text, f"README.md has no {HEADING!r} section"
    found = re.search(r"^```sh\n(.*?)^```$", text.split(HEADING, 1)[1], re.S | re.M)
    assert found, f"no ```sh block under {HEADING!r}"
    return found.group(1)


@pytest.fixture
async def control_url(new_install_database_url: str) -> AsyncIterator[str]:
    app = create_app(control_config(new_install_database_url))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


async def test_the_readme_walkthrough_runs_as_written(tmp_path: Path, control_url: str) -> None:
    for tool in ("bash", "curl", "jq"):
        require(tool, tool)
    script = walkthrough()
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**isolated_env(tmp_path), "BURROW_API": control_url},
        cwd=tmp_path,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = out.decode()
    assert proc.returncode == 0, f"the walk-through failed:\n{output}\n{err.decode()}"
    # What a reader sees at each step.
    objects = list(_json_objects(output))
    signup = objects[0]
    assert signup["user"]["email"] == "you@example.com" and signup["user"]["is_admin"]
    assert re.search(r"^burrow config add-authtoken bt1\.\S+$", output, re.M), output
    name = next(o for o in objects if "host" in o and o.get("host", "").startswith("shop."))
    assert name["host"] == "shop.tunnels.test"
    domain = next(o for o in objects if o.get("host") == "app.example.com")
    assert domain["records"], "the domain's DNS records are not shown"
    assert objects[-1] == {"tunnels": []}


def _json_objects(output: str) -> list[dict[str, object]]:
    """Every JSON object in the output, in order (curl prints them back to back)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, object]] = []
    at = 0
    while (start := output.find("{", at)) != -1:
        value, at = decoder.raw_decode(output, start)
        found.append(value)
    return found
