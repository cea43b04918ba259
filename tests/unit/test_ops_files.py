"""The files an operator installs from ops/: systemd units that systemd accepts and whose
burrowd command lines parse, and the example config file the loader accepts."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from composition.cli import _config, _parse, _parser
from edge import settings

OPS = Path(__file__).resolve().parents[2] / "ops"
UNITS = sorted((OPS / "systemd").glob("*.service"))
INSTALLED = "/opt/burrow/bin/burrowd"  # where the units expect burrowd (README's install)


def _burrowd_lines(unit: Path) -> list[list[str]]:
    lines = []
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.startswith("Exec") and value.startswith(INSTALLED):
            lines.append(shlex.split(value)[1:])
    return lines


def test_there_are_units_for_edge_and_control() -> None:
    assert {u.name for u in UNITS} >= {"burrow-edge.service", "burrow-control.service"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_every_burrowd_command_in_a_unit_parses(unit: Path) -> None:
    commands = _burrowd_lines(unit)
    assert commands, f"{unit.name} runs no burrowd"
    for argv in commands:
        _parser().parse_args(argv)  # exits 2 on an unknown flag


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze on this machine")
    burrowd = Path(sys.executable).parent / "burrowd"
    if not burrowd.exists():
        pytest.skip("burrowd is not installed beside this Python")
    for unit in UNITS:
        # verify checks that ExecStart's program exists: point it at this install's.
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED, str(burrowd)))
    done = subprocess.run(
        [analyze, "verify", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Warnings (an unknown key, a bad value) leave the exit code 0: they fail here too.
    about_ours = [ln for ln in done.stderr.splitlines() if str(tmp_path) in ln]
    assert done.returncode == 0 and not about_ours, done.stderr


def test_the_example_config_is_valid_for_every_role() -> None:
    path = OPS / "burrowd.toml"
    loaded = settings.load(path, _parser())
    assert set(loaded.tables) == {"edge", "control"}
    edge = _config(_parse(["--config", str(path), "edge"])[0])
    assert (edge.http_host, edge.http_port) == (("*",), 80)
    control, _ = _parse(["--config", str(path), "control"])
    assert control.secure_cookies and control.listen == "127.0.0.1:8000"
