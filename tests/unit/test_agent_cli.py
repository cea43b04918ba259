"""The agent's command line as a new user meets it: help, examples, version."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.cli import _parser

ROOT = Path(__file__).resolve().parents[2]
# Ports `burrowd dev` listens on itself: control API, HTTP, HTTPS, agent link, admin.
BURROW_PORTS = {8000, 8080, 8443, 4443, 9091}


def _help(*argv: str) -> str:
    parser = _parser()
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        choices = getattr(action, "choices", None) or {}
        if argv and argv[0] in choices:
            return str(choices[argv[0]].format_help())
    return parser.format_help()


@pytest.mark.parametrize("command", ["", "http", "tcp", "tls", "start"])
def test_help_examples_expose_no_port_burrow_itself_listens_on(command: str) -> None:
    text = _help(command) if command else _help()
    exposed = {int(p) for p in re.findall(r"burrow (?:http|tcp|tls) (?:\S+:)?(\d+)", text)}
    assert not exposed & BURROW_PORTS, text


def test_main_help_shows_examples() -> None:
    assert "burrow http 3000" in _help()


def test_readme_agent_examples_expose_no_port_burrow_itself_listens_on() -> None:
    readme = (ROOT / "README.md").read_text()
    exposed = {int(p) for p in re.findall(r"burrow (?:http|tcp|tls) (?:\S+:)?(\d+)", readme)}
    assert exposed and not exposed & BURROW_PORTS


def test_run_py_runs_the_agent_from_the_venv() -> None:
    """The README's `python3 run.py burrow http 3000` must be a command run.py knows."""
    source = (ROOT / "run.py").read_text()
    assert 'command == "burrow"' in source
    readme = (ROOT / "README.md").read_text()
    assert "python3 run.py burrow http 3000" in readme
