"""`burrow service install` / `uninstall`: the unit files, checked by systemd itself."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent import service
from agent.cli import main

CONFIG = 'authtoken = "T"\n[tunnels.web]\nproto = "http"\naddr = "3000"\n'


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("BURROW_CONFIG", str(tmp_path / "my config" / "burrow.toml"))
    monkeypatch.setenv("BURROW_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("SUDO_USER", raising=False)
    return tmp_path


def write_config(home: Path, text: str = CONFIG) -> Path:
    path = home / "my config" / "burrow.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def verify(unit: Path, *, user: bool) -> None:
    """systemd's own check of a unit file, where systemd is installed."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here: the unit is checked as text only")
    done = subprocess.run(
        [analyze, *(["--user"] if user else []), "verify", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # Only complaints about this unit count: a container's own units may not verify.
    ours = [line for line in done.stderr.splitlines() if unit.name in line]
    assert not ours, done.stderr


def test_install_writes_a_user_unit_that_runs_burrow_start(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(home)
    assert main(["service", "install"]) == 0
    unit = home / "xdg" / "systemd" / "user" / "burrow-agent.service"
    text = unit.read_text()
    out = capsys.readouterr().out
    assert str(unit) in out and "systemctl --user enable --now burrow-agent" in out
    [exec_line] = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    assert exec_line.startswith(f"ExecStart={sys.executable} -m agent.cli --config ")
    assert f'"{config}"' in exec_line  # the space in the path is quoted for systemd
    assert exec_line.endswith(" --plain start")
    assert "RestartPreventExitStatus=1 2" in text and "WantedBy=default.target" in text
    verify(unit, user=True)


def test_a_system_unit_verifies_too(home: Path) -> None:
    config = write_config(home)
    target = service.plan(config, ["web"], system=True, platform="linux")
    assert target.path == Path("/etc/systemd/system/burrow-agent.service")
    assert "WantedBy=multi-user.target" in target.text
    local = home / "burrow-agent.service"
    local.write_text(target.text)
    verify(local, user=False)


def test_percent_and_dollar_in_paths_reach_the_program_unexpanded() -> None:
    unit = service.systemd_unit(["/opt/b%n/python", "--config", "/x/$HOME/c.toml"], system=False)
    assert "ExecStart=/opt/b%%n/python --config /x/$$HOME/c.toml" in unit


def test_uninstall_removes_it_and_says_when_there_is_none(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(home)
    assert main(["service", "install"]) == 0
    unit = home / "xdg" / "systemd" / "user" / "burrow-agent.service"
    assert unit.exists()
    assert main(["service", "uninstall"]) == 0
    assert not unit.exists()
    out = capsys.readouterr().out
    assert "systemctl --user disable --now burrow-agent" in out and f"Removed {unit}" in out
    assert main(["service", "uninstall"]) == 0
    assert "No service installed" in capsys.readouterr().out


def test_install_refuses_a_config_without_tunnels(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(home, 'authtoken = "T"\n')
    assert main(["service", "install"]) == 2
    assert "no tunnels defined" in capsys.readouterr().err
    assert not (home / "xdg" / "systemd").exists()


def test_install_refuses_an_unknown_tunnel_name(home: Path) -> None:
    write_config(home)
    assert main(["service", "install", "api"]) == 2


def test_macos_gets_a_launchd_plist(home: Path) -> None:
    config = write_config(home)
    target = service.plan(config, [], system=False, platform="darwin")
    assert target.path.name == "dev.burrow.agent.plist"
    assert target.path.parent.name == "LaunchAgents"
    document = plistlib.loads(target.text.encode())
    assert document["ProgramArguments"][-2:] == ["--plain", "start"]
    assert document["KeepAlive"] == {"SuccessfulExit": False}
    assert target.next_steps == [f"launchctl load -w {target.path}"]
