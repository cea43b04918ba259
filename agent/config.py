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

import difflib
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.toml_lines import KeyLines
from agent.tunnels import SpecError, TunnelSpec, parse_address

DEFAULT_SERVER = "127.0.0.1:4443"


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    line: int  # 1-based; 0 when the line is not known
    message: str


class ConfigError(Exception):
    """The config file is unreadable or wrong: one line per problem, each naming the file,
    the line and the fix."""

    def __init__(self, path: Path, issues: list[ConfigIssue]) -> None:
        self.path = path
        self.issues = issues
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [
            f"{self.path}:{i.line}: {i.message}" if i.line else f"{self.path}: {i.message}"
            for i in self.issues
        ]


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
    transport: str = ""  # "auto" | "tls" | "wss"; empty: the command line's default
    wss: str = ""
    inspect_addr: str = ""
    log_level: str = ""
    log_format: str = ""
    log_file: str = ""
    tunnels: dict[str, TunnelSpec] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


# Every key the file may hold, and the type of its value: one table, so a key is either
# read or named as unknown, never silently ignored.
_STRING_KEYS = ("authtoken", "server", "ca", "transport", "wss", "inspect_addr")
_TOP_KEYS = (*_STRING_KEYS, "log", "tunnels")
_LOG_KEYS = {"level": "log_level", "format": "log_format", "file": "log_file"}
_CHOICES = {
    "transport": ("auto", "tls", "wss"),
    "level": ("debug", "info", "warning", "error"),
    "format": ("text", "json"),
}
_TUNNEL_KEYS = ("proto", "addr", "name", "remote_port", "pool")


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({json.dumps(value)})"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _unknown(key: str, known: tuple[str, ...], where: str) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean `{close[0]}`?)" if close else f"; known keys: {', '.join(known)}"
    return f"unknown key `{key}`{where}{hint}"


class _Checker:
    """Collects every problem in one file, each at its line."""

    def __init__(self, text: str) -> None:
        self.lines = KeyLines(text)
        self.issues: list[ConfigIssue] = []

    def add(self, path: tuple[str, ...], message: str) -> None:
        self.issues.append(ConfigIssue(self.lines.line_of(*path), message))

    def string(self, path: tuple[str, ...], value: object, name: str) -> str:
        if not isinstance(value, str):
            self.add(path, f"{name} must be a string, not {_kind(value)}")
            return ""
        choices = _CHOICES.get(path[-1])
        if choices and value not in choices:
            self.add(path, f"{name} must be one of {', '.join(choices)}, not {json.dumps(value)}")
            return ""
        return value


def parse(path: Path, text: str) -> AgentConfig:
    """The config in ``text``, or ConfigError listing every problem in it."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [ConfigIssue(0, f"not valid TOML: {exc}")]) from None
    check = _Checker(text)
    cfg = AgentConfig(path, raw=raw)
    for key, value in raw.items():
        if key in _STRING_KEYS:
            setattr(cfg, key, check.string((key,), value, key))
        elif key == "log":
            if not isinstance(value, dict):
                check.add((key,), f"[log] must be a table with {', '.join(_LOG_KEYS)}")
                continue
            for inner, inner_value in value.items():
                if inner not in _LOG_KEYS:
                    check.add((key, inner), _unknown(inner, tuple(_LOG_KEYS), " in [log]"))
                else:
                    text_value = check.string((key, inner), inner_value, f"log.{inner}")
                    setattr(cfg, _LOG_KEYS[inner], text_value)
        elif key == "tunnels":
            if not isinstance(value, dict):
                check.add((key,), "[tunnels] must be a table of tables, one per tunnel")
                continue
            for label, entry in value.items():
                spec = _tunnel_from(check, label, entry)
                if spec is not None:
                    cfg.tunnels[label] = spec
        else:
            check.add((key,), _unknown(key, _TOP_KEYS, ""))
    if check.issues:
        raise ConfigError(path, check.issues)
    return cfg


def load(path: Path | None = None) -> AgentConfig:
    path = path or config_path()
    if not path.exists():
        return AgentConfig(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [ConfigIssue(0, f"cannot read it: {exc}")]) from None
    return parse(path, text)


def _tunnel_from(check: _Checker, label: str, entry: object) -> TunnelSpec | None:
    where = ("tunnels", label)
    name_it = f"tunnel {label!r}"
    if not isinstance(entry, dict):
        check.add(where, f"{name_it} must be a table with proto and addr, not {_kind(entry)}")
        return None
    before = len(check.issues)
    for key in entry:
        if key not in _TUNNEL_KEYS:
            check.add((*where, key), f"{name_it}: " + _unknown(key, _TUNNEL_KEYS, ""))
    proto = entry.get("proto")
    if proto not in ("http", "tcp", "tls"):
        got = f", not {_kind(proto)}" if proto is not None else ""
        check.add((*where, "proto"), f'{name_it}: proto must be "http", "tcp" or "tls"{got}')
    host, port = "", 0
    if "addr" not in entry:
        check.add(where, f"{name_it}: addr is required (a port, or host:port)")
    elif not isinstance(entry["addr"], str | int) or isinstance(entry["addr"], bool):
        check.add((*where, "addr"), f"{name_it}: addr must be a port or a host:port string")
    else:
        try:
            host, port = parse_address(entry["addr"])
        except SpecError as exc:
            check.add((*where, "addr"), f"{name_it}: {exc}")
    expected: dict[str, tuple[type, str]] = {
        "name": (str, "a string"),
        "remote_port": (int, "a number"),
        "pool": (bool, "true or false"),
    }
    for key, (kind, words) in expected.items():
        value = entry.get(key)
        if value is not None and (
            not isinstance(value, kind) or (kind is int and isinstance(value, bool))
        ):
            check.add((*where, key), f"{name_it}: {key} must be {words}, not {_kind(value)}")
    if len(check.issues) > before:
        return None
    return TunnelSpec(
        str(proto),
        host,
        port,
        name=entry.get("name", ""),
        remote_port=entry.get("remote_port", 0),
        pool=entry.get("pool", False),
        label=label,
    )


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    if hasattr(value, "isoformat"):  # TOML dates and times
        return str(value.isoformat())
    raise ValueError(f"cannot write {value!r} to the config file")


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
    """Set the token, keeping everything else in the file as it is (even keys this version
    does not know: saving a token is no time to lose a user's settings)."""
    path = path or config_path()
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(path, [ConfigIssue(0, f"cannot read it: {exc}")]) from None
    raw["authtoken"] = token
    try:
        text = dump(raw)
    except ValueError as exc:
        raise ConfigError(path, [ConfigIssue(0, str(exc))]) from None
    _write_private(path, text)
    return path


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
