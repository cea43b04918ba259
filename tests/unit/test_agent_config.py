"""The agent's TOML config file and the dev edge's address file."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from agent import config as agent_config
from agent.config import ConfigError, load, read_dev_edge, save_authtoken, write_dev_edge
from agent.tunnels import TunnelSpec

SEVERAL_TUNNELS = """\
authtoken = "tok-123"
server = "edge.example.com:4443"

[tunnels.web]
proto = "http"
addr = "8000"
name = "demo"

[tunnels.api]
proto = "http"
addr = "127.0.0.1:9000"
pool = true

[tunnels.db]
proto = "tcp"
addr = 5432
remote_port = 20001

[tunnels."my admin"]
proto = "http"
addr = "[::1]:8080"
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "burrow" / "burrow.toml"


def test_load_reads_token_server_and_every_tunnel(config_file: Path) -> None:
    config_file.parent.mkdir()
    config_file.write_text(SEVERAL_TUNNELS)
    cfg = load(config_file)
    assert cfg.path == config_file
    assert cfg.authtoken == "tok-123"
    assert cfg.server == "edge.example.com:4443"
    assert cfg.tunnels == {
        "web": TunnelSpec("http", "localhost", 8000, name="demo", label="web"),
        "api": TunnelSpec("http", "127.0.0.1", 9000, pool=True, label="api"),
        "db": TunnelSpec("tcp", "localhost", 5432, remote_port=20001, label="db"),
        "my admin": TunnelSpec("http", "::1", 8080, label="my admin"),
    }


def test_missing_file_is_an_empty_config(config_file: Path) -> None:
    cfg = load(config_file)
    assert (cfg.authtoken, cfg.server, cfg.tunnels) == ("", "", {})


def test_config_path_follows_burrow_config(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BURROW_CONFIG", str(config_file))
    config_file.parent.mkdir()
    config_file.write_text('authtoken = "from-env"\n')
    assert load().authtoken == "from-env"


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ('[tunnels.web]\nproto = "udp"\naddr = "8000"\n', 'proto must be "http", "tcp" or "tls"'),
        ('[tunnels.web]\naddr = "8000"\n', 'proto must be "http", "tcp" or "tls"'),
        ('[tunnels.web]\nproto = "http"\n', "addr is required"),
        ('[tunnels.web]\nproto = "http"\naddr = "8000"\nport = 1\n', "unknown key `port`"),
        ('[tunnels.web]\nproto = "http"\naddr = "99999"\n', "1 to 65535"),
        ('[tunnels.web]\nproto = "tcp"\naddr = "1"\nremote_port = "x"\n', "remote_port"),
        ("tunnels = 3\n", "[tunnels] must be a table"),
        ("tunnels = { web = 3 }\n", "must be a table with proto and addr"),
        ("authtoken = 42\n", "authtoken must be a string"),
        ('authtoken = "unterminated\n', ""),
        ("[tunnels.web\n", ""),
    ],
)
def test_errors_name_the_file_and_the_problem(config_file: Path, text: str, hint: str) -> None:
    config_file.parent.mkdir()
    config_file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(config_file)
    message = str(info.value)
    # path:LINE: where the line is known, path: otherwise (a file TOML cannot parse)
    assert re.match(rf"{re.escape(str(config_file))}:(\d+:)? ", message), message
    assert hint in message
    if "tunnels.web" in text and hint:
        assert "'web'" in message  # which tunnel is wrong


def test_save_authtoken_creates_a_private_file(config_file: Path) -> None:
    saved = save_authtoken("tok-new", config_file)
    assert saved == config_file
    assert mode(config_file) == 0o600
    assert load(config_file).authtoken == "tok-new"
    assert [p.name for p in config_file.parent.iterdir()] == ["burrow.toml"]  # no temp left


def test_save_authtoken_keeps_tunnels_and_server(config_file: Path) -> None:
    config_file.parent.mkdir()
    config_file.write_text(SEVERAL_TUNNELS)
    config_file.chmod(0o644)
    before = load(config_file)

    save_authtoken('tok-"quoted"\\new', config_file)
    after = load(config_file)
    assert after.authtoken == 'tok-"quoted"\\new'
    assert after.server == before.server
    assert after.tunnels == before.tunnels
    assert mode(config_file) == 0o600  # the token is a secret even if the file was not


def test_save_authtoken_honours_burrow_config(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BURROW_CONFIG", str(config_file))
    assert save_authtoken("tok-env") == config_file
    assert load(config_file).authtoken == "tok-env"


def test_save_authtoken_keeps_other_settings(config_file: Path) -> None:
    config_file.parent.mkdir()
    config_file.write_text('[log]\nlevel = "debug"\n')
    save_authtoken("tok", config_file)
    assert load(config_file).raw.get("log") == {"level": "debug"}


# -- dev edge file --------------------------------------------------------------------------


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state"
    monkeypatch.setenv("BURROW_STATE_DIR", str(path))
    return path


def test_dev_edge_round_trip(state_dir: Path) -> None:
    assert read_dev_edge() is None
    path = write_dev_edge(
        "127.0.0.1:4443", "dev-token", "http://localhost:8080", ca="/ca.pem", wss="localhost:8443"
    )
    assert path == state_dir / "dev-edge.json"
    assert mode(path) == 0o600
    assert read_dev_edge() == {
        "server": "127.0.0.1:4443",
        "token": "dev-token",
        "url": "http://localhost:8080",
        "ca": "/ca.pem",
        "wss": "localhost:8443",
    }
    assert agent_config.dev_edge_file() == path


@pytest.mark.parametrize(
    "content", ["", "not json", "[1, 2]", json.dumps({"token": "t"}), json.dumps({"server": 1})]
)
def test_unusable_dev_edge_file_is_ignored(state_dir: Path, content: str) -> None:
    state_dir.mkdir()
    (state_dir / "dev-edge.json").write_text(content)
    assert read_dev_edge() is None
