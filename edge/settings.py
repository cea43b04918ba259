"""The ``burrowd`` config file: one TOML file for every role, checked against the flags.

Keys are the long flags without their dashes, top-level for the options every command takes
(``log``, ``log-format``, ``access-log``) and in a table per role: ``[edge]``, ``[control]``
(read by ``burrowd migrate`` too) and ``[dev]``. A flag on the command line overrides the
file; the file overrides the environment variables that some flags default to. The whole
file is checked whichever command runs, so a mistake in ``[control]`` is found by
``burrowd check`` or the edge before it is found by control at its next restart.

Every value goes through the same converter as its flag, so a file accepts exactly what
the command line does, and an error names the key, its line and what to write instead.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Where an operator's file is looked for when --config is not given.
DEFAULT_PATH = Path("/etc/burrow/burrowd.toml")
PATH_VARIABLE = "BURROWD_CONFIG"
# Which table each command reads; ``check`` reads them all.
TABLES = {
    "edge": "edge",
    "control": "control",
    "worker": "control",
    "migrate": "control",
    "dev": "dev",
}
# Keys that are no flag of their command: the file picking itself.
_NOT_IN_FILE = frozenset(("config", "help"))


class SettingsError(Exception):
    """The file cannot be used; the message says where and what to write instead."""


@dataclass(slots=True)
class Settings:
    """A checked file: each table's values, already converted as their flags would be."""

    path: Path | None = None
    top: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)

    def table(self, name: str) -> dict[str, Any]:
        return self.tables.get(name, {})


def config_path(given: str | None) -> Path | None:
    """The file to read: ``--config``, else ``$BURROWD_CONFIG``, else the default path if it
    exists; None when there is none."""
    if given:
        return Path(given)
    env = os.environ.get(PATH_VARIABLE)
    if env:
        return Path(env)
    return DEFAULT_PATH if DEFAULT_PATH.is_file() else None


def load(path: Path | None, parser: argparse.ArgumentParser) -> Settings:
    """Read and check ``path`` against ``parser`` (the burrowd parser with its subcommands)."""
    if path is None:
        return Settings()
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    lines = _KeyLines(text)
    commands = _subparsers(parser)
    settings = Settings(path=path)
    for key, value in raw.items():
        if isinstance(value, dict):
            if key not in commands or key not in TABLES.values():
                tables = ", ".join(f"[{t}]" for t in sorted(set(TABLES.values())))
                raise SettingsError(
                    f"{path} line {lines.table(key)}: no table [{key}] here; "
                    f"the tables are {tables}{_suggest(key, set(TABLES.values()))}"
                )
            settings.tables[key] = _convert_table(path, lines, key, value, _flags(commands[key]))
        else:
            settings.top.update(_convert_table(path, lines, None, {key: value}, _flags(parser)))
    return settings


def apply(
    settings: Settings, parser: argparse.ArgumentParser, command: str
) -> dict[str, list[Any]]:
    """Make the file's values the defaults of ``command``'s flags, so flags still win.

    Repeatable flags are the exception argparse makes: given on the command line, they are
    added to their default, not put in its place. So their defaults (the file's, or the
    flag's own) are returned instead, for ``fill_lists`` after parsing."""
    parser.set_defaults(**settings.top)
    table = TABLES.get(command)
    commands = _subparsers(parser)
    if command not in commands:
        return {}
    sub = commands[command]
    file_values = settings.table(table) if table else {}
    defaults: dict[str, Any] = {}
    lists: dict[str, list[Any]] = {}
    for action in _flags(sub).values():
        if isinstance(action, argparse._AppendAction):
            given = file_values.get(action.dest, action.default)
            lists[action.dest] = list(given) if given is not None else []
            defaults[action.dest] = None
        elif action.dest in file_values:
            defaults[action.dest] = file_values[action.dest]
    sub.set_defaults(**defaults)
    return lists


def fill_lists(args: argparse.Namespace, lists: dict[str, list[Any]]) -> None:
    """A repeatable flag not given on the command line takes the file's list, else its own
    default."""
    for dest, default in lists.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, default)


def _convert_table(
    path: Path,
    lines: _KeyLines,
    table: str | None,
    values: dict[str, Any],
    flags: dict[str, argparse.Action],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    where = f"[{table}]" if table else "the top level"
    for key, value in values.items():
        line = lines.key(table, key)
        action = flags.get(key)
        if action is None:
            raise SettingsError(
                f"{path} line {line}: {where} has no key {key!r}{_suggest(key, set(flags))}"
            )
        try:
            out[action.dest] = _convert(action, value)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise SettingsError(f"{path} line {line}: {key}: {exc}") from None
    return out


def _convert(action: argparse.Action, value: Any) -> Any:
    """A TOML value to what its flag's converter makes of the same text."""
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ValueError(f"write true or false, not {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_convert_one(action, item) for item in items]
    return _convert_one(action, value)


def _convert_one(action: argparse.Action, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"write a string or a number, not {value!r}")
    convert = action.type if callable(action.type) else str
    converted = convert(str(value))
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ValueError(f"{value!r} is not one of {choices}")
    return converted


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """A parser's long flags by their file key: ``--base-domain`` is ``base-domain``."""
    flags: dict[str, argparse.Action] = {}
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--") and option[2:] not in _NOT_IN_FILE:
                flags[option[2:]] = action
    return flags


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _suggest(key: str, known: set[str]) -> str:
    close = difflib.get_close_matches(key.replace("_", "-"), sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class _KeyLines:
    """Line numbers of keys and table headers, for errors (tomllib does not keep them)."""

    _HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")

    def __init__(self, text: str) -> None:
        self._keys: dict[tuple[str | None, str], int] = {}
        self._tables: dict[str, int] = {}
        table: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if header := self._HEADER.match(line):
                table = header.group(1)
                self._tables.setdefault(table, number)
            elif key := self._KEY.match(line):
                self._keys.setdefault((table, key.group(1)), number)

    def key(self, table: str | None, key: str) -> str:
        number = self._keys.get((table, key))
        return str(number) if number is not None else "?"

    def table(self, table: str) -> str:
        number = self._tables.get(table)
        return str(number) if number is not None else "?"
