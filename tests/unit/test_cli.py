"""``burrow`` command lines that fail before any network IO: exit code and one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import config as agent_config
from agent.cli import main


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No token anywhere: an empty config dir and an empty state dir."""
    path = tmp_path / "config" / "burrow.toml"
    monkeypatch.setenv("BURROW_CONFIG", str(path))
    monkeypatch.setenv("BURROW_STATE_DIR", str(tmp_path / "state"))
    return path


@pytest.fixture(autouse=True)
def no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests must never reach the network agent."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the agent was started")

    monkeypatch.setattr("agent.cli.Agent", refuse)


def test_bad_port_exits_2_with_a_hint(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["http", "abc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("burrow: ")
    assert "'abc'" in err
    assert "1 to 65535" in err
    assert len(err.strip().splitlines()) == 1


def test_add_authtoken_writes_the_config(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "add-authtoken", "T"]) == 0
    assert agent_config.load(config_file).authtoken == "T"
    assert str(config_file) in capsys.readouterr().out


def test_config_flag_overrides_burrow_config(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.toml"
    assert main(["--config", str(other), "config", "add-authtoken", "T2"]) == 0
    assert agent_config.load(other).authtoken == "T2"
    assert not config_file.exists()


def test_start_without_tunnels_exits_2(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["start"]) == 2
    err = capsys.readouterr().err
    assert "no tunnels defined" in err
    assert str(config_file) in err


def test_start_unknown_tunnel_exits_2(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file.parent.mkdir()
    config_file.write_text('authtoken = "T"\n[tunnels.web]\nproto = "http"\naddr = "8000"\n')
    assert main(["start", "api"]) == 2
    assert "no tunnel named api" in capsys.readouterr().err


def test_broken_config_exits_2_naming_the_file(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file.parent.mkdir()
    config_file.write_text('[tunnels.web]\nproto = "ftp"\naddr = "21"\n')
    assert main(["start"]) == 2
    assert str(config_file) in capsys.readouterr().err


def test_no_authtoken_anywhere_exits_2_saying_how_to_add_one(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["http", "8000"]) == 2
    err = capsys.readouterr().err
    assert "no authtoken" in err
    assert "burrow config add-authtoken" in err


def test_unicode_digit_port_exits_2(config_file: Path) -> None:
    assert main(["http", "²"]) == 2
