"""Which line of a TOML file defines a key: tomllib parses without positions, and an error
that names its line is one a user fixes without searching.

This reads only the shapes people write by hand: ``[table]`` and ``[[array]]`` headers and
``key = value`` lines with bare, quoted or dotted keys. Keys inside inline tables and
multi-line values point at the line where their enclosing key starts.
"""

from __future__ import annotations

import re

_PART = r'(?:"(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_-]+)'
_DOTTED = rf"{_PART}(?:\s*\.\s*{_PART})*"
_HEADER = re.compile(rf"^\s*\[\[?\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(rf"^\s*({_DOTTED})\s*=")
_PARTS = re.compile(_PART)


def _split(dotted: str) -> tuple[str, ...]:
    parts = []
    for raw in _PARTS.findall(dotted):
        if raw[0] == '"':
            parts.append(raw[1:-1].encode().decode("unicode_escape"))
        elif raw[0] == "'":
            parts.append(raw[1:-1])
        else:
            parts.append(raw)
    return tuple(parts)


class KeyLines:
    """Line numbers (1-based) of the keys and tables in one TOML text."""

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        in_multiline = False
        for number, line in enumerate(text.splitlines(), start=1):
            if in_multiline:
                if line.count('"""') % 2 or line.count("'''") % 2:
                    in_multiline = False
                continue
            header = _HEADER.match(line)
            if header:
                table = _split(header[1])
                self._lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                self._lines.setdefault((*table, *_split(key[1])), number)
                rest = line[key.end() :]
                if rest.count('"""') % 2 or rest.count("'''") % 2:
                    in_multiline = True

    def line_of(self, *path: str) -> int:
        """The line defining ``path``, or its nearest enclosing key or table; 0 if none."""
        for end in range(len(path), 0, -1):
            number = self._lines.get(path[:end])
            if number:
                return number
        return 0
