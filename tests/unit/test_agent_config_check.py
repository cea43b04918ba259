"""Every problem in the config file named with its line and a fix; `burrow config check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from agent.config import ConfigError, load


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "burrow.toml"
    monkeypatch.setenv("BURROW_CONFIG", str(path))
    monkeypatch.setenv("BURROW_STATE_DIR", str(tmp_path / "state"))
    return path


def problems(path: Path, text: str) -> list[str]:
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value.lines()


def test_a_top_level_typo_is_named_with_its_line_and_a_suggestion(config_file: Path) -> None:
    lines = problems(config_file, 'authtoken = "T"\nsever = "edge.example.com:4443"\n')
    assert lines == [f"{config_file}:2: unknown key `sever` (did you mean `server`?)"]


def test_a_typo_in_a_tunnel_is_named_with_its_line(config_file: Path) -> None:
    text = '[tunnels.web]\nproto = "http"\naddr = "3000"\nnmae = "demo"\n'
    [line] = problems(config_file, text)
    assert line.startswith(f"{config_file}:4: tunnel 'web': unknown key `nmae`")
    assert "did you mean `name`?" in line


def test_a_wrong_type_names_the_key_the_type_wanted_and_the_value_given(
    config_file: Path,
) -> None:
    text = '[tunnels.db]\nproto = "tcp"\naddr = "5432"\nremote_port = "20001"\n'
    [line] = problems(config_file, text)
    assert line == (
        f"{config_file}:4: tunnel 'db': remote_port must be a number, not a string (\"20001\")"
    )


def test_every_problem_is_reported_at_once(config_file: Path) -> None:
    text = 'server = 4443\nregion = "eu"\n\n[tunnels.web]\nproto = "htp"\naddr = "3000"\n'
    lines = problems(config_file, text)
    assert [line.split(": ", 1)[0] for line in lines] == [
        f"{config_file}:1",
        f"{config_file}:2",
        f"{config_file}:5",
    ]
    assert "server must be a string, not a number (4443)" in lines[0]


def test_dotted_and_quoted_keys_find_their_lines(config_file: Path) -> None:
    text = 'authtoken = "T"\n\n[tunnels."my web"]\nproto = "http"\naddr = "3000"\npol = true\n'
    [line] = problems(config_file, text)
    assert line.startswith(f"{config_file}:6: tunnel 'my web': unknown key `pol`")


def test_log_settings_are_read_and_checked(config_file: Path) -> None:
    config_file.write_text('[log]\nlevel = "info"\nformat = "json"\n')
    cfg = load(config_file)
    assert (cfg.log_level, cfg.log_format) == ("info", "json")
    [line] = problems(config_file, '[log]\nlevel = "loud"\n')
    assert line.startswith(f"{config_file}:2: log.level must be one of debug, info")


def test_config_check_exits_0_for_a_valid_file(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file.write_text('authtoken = "T"\n[tunnels.web]\nproto = "http"\naddr = "3000"\n')
    assert main(["config", "check"]) == 0
    assert "valid" in capsys.readouterr().out


def test_config_check_exits_1_naming_each_problem(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file.write_text('sever = "x"\nauthtoken = 1\n')
    assert main(["config", "check"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"burrow: {config_file}:1: unknown key `sever` (did you mean `server`?)",
        f"burrow: {config_file}:2: authtoken must be a string, not a number (1)",
    ]


def test_config_check_without_a_file_exits_1(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check"]) == 1
    assert "no config file" in capsys.readouterr().err


def test_add_authtoken_keeps_a_file_with_problems_as_it_is(config_file: Path) -> None:
    config_file.write_text('sever = "edge:4443"\n')
    assert main(["config", "add-authtoken", "T"]) == 0
    text = config_file.read_text()
    assert 'sever = "edge:4443"' in text and 'authtoken = "T"' in text
