"""The ``burrowd`` config file: every role's flags in one TOML file, flags over it, and a bad
key or value named with its line and what to write instead."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from composition.cli import _config, _parse, _parser
from edge.settings import PATH_VARIABLE

FILE = """\
log = "debug"
log-format = "json"

[edge]
http = ["127.0.0.1:8080", "[::1]:8080"]
https = "127.0.0.1:8443,[::1]:8443"
agents = "*:4443"
base-domain = "tunnels.example.com"
tcp-ports = "30000-30099"
token = ["t1=alice", "t2=bob"]
agent-plaintext = true
drain = 3
control-url = "http://127.0.0.1:8000"

[control]
listen = "127.0.0.1:8001"
database-url = "postgresql://burrow@db/burrow"
closed-signup = true
dns = ["1.1.1.1", "9.9.9.9"]
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "burrowd.toml"
    path.write_text(FILE)
    monkeypatch.delenv(PATH_VARIABLE, raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return path


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_every_role_reads_its_table(config: Path) -> None:
    args, _ = _parse(["--config", str(config), "edge"])
    assert (args.log, args.log_format) == ("debug", "json")
    edge = _config(args)
    assert (edge.http_host, edge.http_port) == (("127.0.0.1", "::1"), 8080)
    assert (edge.https_host, edge.https_port) == (("127.0.0.1", "::1"), 8443)
    assert (edge.agent_host, edge.agent_port) == (("*",), 4443)
    assert edge.tcp_host == ("127.0.0.1", "::1")  # TCP tunnels listen where HTTP does
    assert edge.base_domain == "tunnels.example.com"
    assert edge.tcp_ports == (30000, 30099)
    assert edge.drain_seconds == 3.0 and not edge.agent_tls
    assert args.token == ["t1=alice", "t2=bob"]
    assert args.control_url == "http://127.0.0.1:8000"

    control, _ = _parse(["--config", str(config), "control"])
    assert control.listen == "127.0.0.1:8001"
    assert control.database_url == "postgresql://burrow@db/burrow"
    assert control.closed_signup and control.dns == ["1.1.1.1", "9.9.9.9"]
    # migrate shares [control]'s database.
    migrate, _ = _parse(["--config", str(config), "migrate"])
    assert migrate.database_url == "postgresql://burrow@db/burrow"


def test_flags_override_the_file_and_replace_its_lists(config: Path) -> None:
    argv = ["edge", "--config", str(config), "--http", "127.0.0.1:9000", "--token", "t3"]
    args, _ = _parse([*argv, "--base-domain", "other.test"])
    edge = _config(args)
    assert (edge.http_host, edge.http_port) == (("127.0.0.1",), 9000)
    assert args.token == ["t3"]
    assert edge.base_domain == "other.test"


def test_the_file_is_found_through_the_environment(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PATH_VARIABLE, str(config))
    args, _ = _parse(["edge"])
    assert args.base_domain == "tunnels.example.com"


def test_listener_flags_repeat_and_comma_separate() -> None:
    args, _ = _parse(["edge", "--http", "127.0.0.1:0,[::1]:0", "--http", "10.0.0.1:0"])
    edge = _config(args)
    assert (edge.http_host, edge.http_port) == (("127.0.0.1", "::1", "10.0.0.1"), 0)


def test_the_edge_listens_on_both_families_by_default() -> None:
    edge = _config(_parse(["edge"])[0])
    assert (edge.http_host, edge.http_port) == (("*",), 80)
    assert (edge.https_host, edge.https_port) == (("*",), 443)
    assert (edge.agent_host, edge.agent_port) == (("*",), 4443)
    dev = _config(_parse(["dev"])[0])
    assert (dev.http_host, dev.http_port) == (("127.0.0.1",), 8080)


def test_one_listener_serves_one_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(["edge", "--http", "127.0.0.1:80,[::1]:8080"])
    assert exit_info.value.code == 2
    assert "give every address the same port" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[edge]\nbase-domain = 'a.test'\nbase_domian = 'x'\n",
            "line 3: [edge] has no key 'base_domian'; did you mean 'base-domain'?",
        ),
        (
            "[edge]\n\ntcp-ports = 'lots'\n",
            "line 3: tcp-ports: 'lots': write a range like 20000-20999",
        ),
        ("access-log = 'yes'\n", "line 1: access-log: write true or false, not 'yes'"),
        ("log-format = 'xml'\n", "line 1: log-format: 'xml' is not one of text, json"),
        ("[contrl]\nlisten = '80'\n", "line 1: no table [contrl] here"),
        ("[edge]\nhttp = 'localhost:http'\n", "line 2: http: bad port in 'localhost:http'"),
        ("[edge]\ndrain = 'soon'\n", "line 2: drain: "),
        ("[edge]\ntoken = [1, {a = 2}]\n", "line 2: token: write a string or a number"),
        ("[edge\nhttp = 1\n", "not valid TOML"),
    ],
)
def test_a_bad_file_names_the_key_its_line_and_a_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "burrowd.toml"
    path.write_text(text)
    err = _error(capsys, ["--config", str(path), "edge"])
    assert err.startswith(f"burrowd: {path}")
    assert expected in err


def test_a_mistake_in_another_roles_table_is_found_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "burrowd.toml"
    path.write_text(textwrap.dedent("[control]\nlisten = '127.0.0.1:8000'\nsecure-cookie = true\n"))
    err = _error(capsys, ["--config", str(path), "edge"])
    assert "line 3: [control] has no key 'secure-cookie'; did you mean 'secure-cookies'?" in err


def test_a_missing_file_given_by_flag_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _error(capsys, ["--config", str(tmp_path / "nope.toml"), "edge"])
    assert "cannot read the config file" in err


def test_a_listener_flag_replaces_the_default_without_a_file_too() -> None:
    args = _parser().parse_args(["edge", "--http", "[::1]:8080"])
    assert _config(args).http_host == ("::1",)
