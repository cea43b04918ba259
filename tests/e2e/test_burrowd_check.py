"""``burrowd check`` as an operator runs it: a config file naming a real PostgreSQL, Redis and
control, one line for each, exit 0 when all answer and 1 when one does not."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from control.app import create_app
from tests.control.conftest import control_config
from tests.e2e.test_cli_processes import free_port, isolated_env

EDGE_KEY = "edge-key-1"  # the key control_config lets edges fetch routing with


@pytest.fixture
async def control_url(database_url: str) -> AsyncIterator[str]:
    server = TestServer(create_app(control_config(database_url)), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


async def _check(tmp_path: Path, text: str) -> tuple[int, list[str]]:
    path = tmp_path / "burrowd.toml"
    path.write_text(text)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "composition.cli",
        "--config",
        str(path),
        "check",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=isolated_env(tmp_path),
        cwd=os.getcwd(),
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 40)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines()


def _config(database_url: str, redis_url: str, control_url: str, edge_key: str) -> str:
    return (
        f'[control]\ndatabase-url = "{database_url}"\nredis-url = "{redis_url}"\n'
        f'[edge]\ncontrol-url = "{control_url}"\nedge-key = "{edge_key}"\n'
    )


async def test_check_reaches_everything_it_names(
    tmp_path: Path, database_url: str, redis_url: str, control_url: str
) -> None:
    code, lines = await _check(tmp_path, _config(database_url, redis_url, control_url, EDGE_KEY))
    assert [line.split(":", 2)[:2] for line in lines] == [
        ["config", " ok"],
        ["database", " ok"],
        ["redis", " ok"],
        ["control", " ok"],
    ], lines
    assert code == 0
    assert "migrations up to date" in lines[1]


async def test_check_names_each_thing_it_cannot_reach_and_exits_1(
    tmp_path: Path, control_url: str
) -> None:
    closed = free_port()
    code, lines = await _check(
        tmp_path,
        _config(
            f"postgresql://postgres@127.0.0.1:{closed}/burrow",
            f"redis://127.0.0.1:{closed}/0",
            control_url,
            "not-the-key",
        ),
    )
    assert code == 1
    assert len(lines) == 4, lines
    assert lines[0].startswith("config: ok")
    assert lines[1].startswith("database: FAILED: postgresql://postgres@127.0.0.1:")
    assert "cannot connect to PostgreSQL" in lines[1]
    assert lines[2].startswith("redis: FAILED: ")
    assert lines[3].startswith("control: FAILED: ") and "refused this edge's key" in lines[3]


async def test_check_of_a_bad_file_is_one_failed_config_line(tmp_path: Path) -> None:
    code, lines = await _check(tmp_path, "[edge]\nbase-domian = 'x'\n")
    assert code == 1
    assert lines == [
        f"config: FAILED: {tmp_path / 'burrowd.toml'} line 2: [edge] has no key "
        "'base-domian'; did you mean 'base-domain'?"
    ]
