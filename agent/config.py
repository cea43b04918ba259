"""The agent's config file (TOML) and where the local dev edge leaves its address.

``~/.config/burrow/burrow.toml`` (or ``$BURROW_CONFIG``)::

    authtoken = "..."
    server = "edge.example.com:4443"

    [tunnels.web]
    proto = "http"
    addr = "3000"            # or "localhost:3000"
    name = "demo"            # optional: ask for demo.<base domain>

    [tunnels.db]
    proto = "tcp"
    addr = "5432"
    remote_port = 20001      # optional

``burrowd dev`` writes the edge address and a ready token to ``dev-edge.json`` in the state
directory; the agent falls back to it when no server or token is configured.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.tunnels import SpecError, TunnelSpec, parse_address

DEFAULT_SERVER = "127.0.0.1:4443"


class ConfigError(Exception):
    """The config file is unreadable or wrong; the message names the file and the fix."""


def config_path() -> Path:
    env = os.environ.get("BURROW_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "burrow" / "burrow.toml"


def state_dir() -> Path:
    env = os.environ.get("BURROW_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "burrow"


def dev_edge_file() -> Path:
    return state_dir() / "dev-edge.json"


@dataclass(slots=True)
class AgentConfig:
    path: Path
    authtoken: str = ""
    server: str = ""
    ca: str = ""  # CA file for an edge with a privately signed certificate
    tunnels: dict[str, TunnelSpec] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


def load(path: Path | None = None) -> AgentConfig:
    path = path or config_path()
    if not path.exists():
        return AgentConfig(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    cfg = AgentConfig(path, raw=raw)
    for key in ("authtoken", "server", "ca"):
        value = raw.get(key, "")
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {key} must be a string")
        setattr(cfg, key, value)
    tunnels = raw.get("tunnels", {})
    if not isinstance(tunnels, dict):
        raise ConfigError(f"{path}: [tunnels] must be a table of tables")
    for label, entry in tunnels.items():
        try:
            cfg.tunnels[label] = _tunnel_from(label, entry)
        except SpecError as exc:
            raise ConfigError(f"{path}: tunnel {label!r}: {exc}") from None
    return cfg


def _tunnel_from(label: str, entry: object) -> TunnelSpec:
    if not isinstance(entry, dict):
        raise SpecError("must be a table with proto and addr")
    unknown = set(entry) - {"proto", "addr", "name", "remote_port", "pool"}
    if unknown:
        raise SpecError(f"unknown keys {sorted(unknown)}")
    proto = entry.get("proto")
    if proto not in ("http", "tcp", "tls"):
        raise SpecError('proto must be "http", "tcp" or "tls"')
    if "addr" not in entry:
        raise SpecError("addr is required (a port, or host:port)")
    host, port = parse_address(entry["addr"])
    name = entry.get("name", "")
    remote_port = entry.get("remote_port", 0)
    pool = entry.get("pool", False)
    if not isinstance(name, str) or not isinstance(remote_port, int) or not isinstance(pool, bool):
        raise SpecError("name is a string, remote_port a number, pool true or false")
    return TunnelSpec(proto, host, port, name=name, remote_port=remote_port, pool=pool, label=label)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    raise ConfigError(f"cannot write {value!r} to the config file")


def dump(raw: dict[str, Any]) -> str:
    """Write the config back as TOML: top-level keys, then each table (tables of tables,
    such as ``[tunnels.web]``, one header per inner table)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in raw.items() if not isinstance(v, dict)]

    def table(prefix: str, entries: dict[str, Any]) -> None:
        scalars = {k: v for k, v in entries.items() if not isinstance(v, dict)}
        if scalars or not entries:
            lines.append("")
            lines.append(f"[{prefix}]")
            lines.extend(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in scalars.items())
        for k, v in entries.items():
            if isinstance(v, dict):
                table(f"{prefix}.{json.dumps(k)}", v)

    for key, value in raw.items():
        if isinstance(value, dict):
            table(json.dumps(key), value)
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds a token), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def save_authtoken(token: str, path: Path | None = None) -> Path:
    cfg = load(path)
    raw = dict(cfg.raw)
    raw["authtoken"] = token
    _write_private(cfg.path, dump(raw))
    return cfg.path


def read_dev_edge() -> dict[str, str] | None:
    try:
        data = json.loads(dev_edge_file().read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and isinstance(data.get("server"), str):
        return {k: str(v) for k, v in data.items()}
    return None


def write_dev_edge(
    server: str, token: str, base_url: str, ca: str = "", plaintext: bool = False, wss: str = ""
) -> Path:
    path = dev_edge_file()
    fields = {"server": server, "token": token, "url": base_url, "ca": ca, "wss": wss}
    if plaintext:
        fields["plaintext"] = "1"
    _write_private(path, json.dumps(fields))
    return path
