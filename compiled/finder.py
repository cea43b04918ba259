"""Serve the compiled modules at import time, or none of them if any is stale.

``burrow-compiled.pth`` calls ``install_from_pth`` at every interpreter start in the
environment, before any project module is imported; most of those interpreters (pip, mypy,
``burrow config``) never import the data path. So installing costs one small import, and the
manifest is read and the sources hashed only when the first module of the group is imported
(or ``status()`` is asked). A broken or foreign build means pure Python, never an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

from compiled import HOT_MODULES

LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")
DISABLE_ENV = "BURROW_COMPILED"
_NO_HOOK = "pure Python (this environment has no hook: python -m compiled writes it)"


class CompiledModules:
    """A meta path finder for the group; every other import goes on as usual."""

    def __init__(self, lib: str, group: Sequence[str] = HOT_MODULES) -> None:
        self.lib = lib
        self.group = frozenset(group)
        self.files: dict[str, str] | None = None  # None until decided
        self.homes: dict[str, str] = {}  # module -> the folder its source was compiled from
        self.status = "pure Python (undecided)"

    def decide(self) -> dict[str, str]:
        if self.files is None:
            try:
                files, self.status = self._check()
            except Exception as exc:  # an import must not fail where pure Python would not
                files, self.status = {}, f"pure Python (the build could not be checked: {exc!r})"
            self.files = files
        return self.files

    def _check(self) -> tuple[dict[str, str], str]:
        from pathlib import Path

        from compiled.manifest import source_path, usable

        lib = Path(self.lib)
        manifest, status = usable(lib, self.group)
        if manifest is None:
            return {}, status
        already = sorted(name for name in manifest.files if name in sys.modules)
        if already:
            return {}, f"pure Python ({already[0]} was imported before the finder was installed)"
        self.homes = {m: str(source_path(manifest.root, m).parent) for m in self.group}
        return {module: str(lib / file) for module, file in manifest.files.items()}, status

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        files = self.files
        if files is None:
            if fullname not in self.group:
                return None
            files = self.decide()
        file = files.get(fullname)
        if file is None:
            return None
        home = self.homes.get(fullname)
        if home is not None and path is not None and home not in map(os.path.realpath, path):
            # The package came from another tree (a second checkout on this environment):
            # its own sources, not this build of the first one's.
            return None
        from importlib.util import spec_from_file_location

        return spec_from_file_location(fullname, file)


_finder: CompiledModules | None = None
_status = _NO_HOOK


def install(lib: str = LIB, group: Sequence[str] = HOT_MODULES) -> None:
    """Put the finder in front of the sources (once); it decides at the group's first import."""
    global _finder, _status
    if _finder is not None:
        return
    if os.environ.get(DISABLE_ENV, "1") == "0":
        _status = f"pure Python ({DISABLE_ENV}=0)"
        return
    _finder = CompiledModules(lib, group)
    sys.meta_path.insert(0, _finder)


def install_from_pth() -> None:
    """The ``burrow-compiled.pth`` entry point: nothing here may stop an interpreter starting."""
    global _status
    try:
        install()
    except Exception as exc:  # a .pth hook that raises would break every start-up
        _status = f"pure Python (the compiled modules could not be installed: {exc!r})"


def status() -> str:
    """One line for logs and reports: compiled or pure Python, and why."""
    if _finder is None:
        return _status
    _finder.decide()
    return _finder.status
