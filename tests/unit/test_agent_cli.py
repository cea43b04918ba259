"""The agent's command line as a new user meets it: help, examples, version."""

from __future__ import annotations

import io
import logging
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


def test_dash_dash_version_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main
    from agent.link import AGENT_VERSION

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"burrow {AGENT_VERSION}"


class Terminal(io.StringIO):
    """stdout and stderr of one terminal: what a user sees, in order."""

    def isatty(self) -> bool:
        return True


def test_a_log_record_never_lands_inside_the_status_line() -> None:
    from agent.client import Agent
    from agent.logs import DisplayLogHandler
    from agent.status import StatusPrinter
    from agent.tunnels import TunnelSpec

    term = Terminal()
    printer = StatusPrinter(term, term)
    agent = Agent(("127.0.0.1", 1), "t", [TunnelSpec("http", "localhost", 3000)])
    handler = DisplayLogHandler(printer.log_line)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test.display")
    log.addHandler(handler)
    try:
        printer.tick(agent)
        log.warning("something happened")
        printer.tick(agent)
    finally:
        log.removeHandler(handler)
    # What the terminal shows once carriage returns and line clears are applied.
    shown = [line.rsplit("\r\x1b[2K", 1)[-1] for line in term.getvalue().split("\n")]
    assert "WARNING something happened" in shown, shown
    assert all(line.startswith(("reconnecting |", "WARNING")) for line in shown if line), shown


def test_run_py_burrow_execs_the_venv_agent_with_the_callers_arguments_and_cwd(
    tmp_path: Path,
) -> None:
    """``python3 run.py burrow http 3000`` from anywhere: the .venv's burrow, same argv, and
    the directory the user was in (so relative --config or --ca paths mean theirs)."""
    import hashlib
    import shutil
    import subprocess
    import sys

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(ROOT / "run.py", checkout / "run.py")
    digest = hashlib.sha256()
    for name in ("setup.cfg", "pyproject.toml"):
        (checkout / name).write_text(f"# {name}\n")
        digest.update((checkout / name).read_bytes())
    bin_dir = checkout / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    # An installed venv, as far as run.py can tell: nothing to install.
    (checkout / ".venv" / ".burrow-install").write_text(digest.hexdigest() + "server,dev")
    fake = bin_dir / "burrow"
    fake.write_text('#!/bin/sh\necho "argv: $*"\necho "cwd: $(pwd)"\n')
    fake.chmod(0o755)
    elsewhere = tmp_path / "project"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, str(checkout / "run.py"), "burrow", "http", "3000", "--name", "x"],
        cwd=elsewhere, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["argv: http 3000 --name x", f"cwd: {elsewhere}"]


def test_json_log_lines_are_one_object_each(tmp_path: Path) -> None:
    import json

    from agent import logs

    path = tmp_path / "agent.log"
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logs.configure("info", "json", str(path), None)
        logging.getLogger("burrow.agent").warning("tunnel %s refused: %s", "web", 'a "quoted" why')
        logging.getLogger("burrow.agent").debug("not at info")
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    [line] = path.read_text().splitlines()
    record = json.loads(line)
    assert record["level"] == "warning" and record["logger"] == "burrow.agent"
    assert record["msg"] == 'tunnel web refused: a "quoted" why'
    assert record["time"].endswith("Z")
