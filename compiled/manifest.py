"""What a build produced, and whether it still matches the sources and the interpreter."""

from __future__ import annotations

import hashlib
import json
import sysconfig
from collections.abc import Iterable
from pathlib import Path

MANIFEST = "manifest.json"


class Manifest:
    """The extension files of one build and the sources they were compiled from."""

    __slots__ = ("files", "root", "sources", "suffix")

    def __init__(
        self, root: Path, suffix: str, sources: dict[str, str], files: dict[str, str]
    ) -> None:
        self.root = root
        self.suffix = suffix
        self.sources = sources  # module -> SHA-256 of its source file under root
        self.files = files  # module (the group's shared library too) -> file under lib

    def dump(self) -> str:
        return json.dumps(
            {
                "root": str(self.root),
                "suffix": self.suffix,
                "sources": self.sources,
                "files": self.files,
            },
            indent=1,
            sort_keys=True,
        )


def source_path(root: Path, module: str) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(lib: Path) -> Manifest:
    raw = json.loads((lib / MANIFEST).read_text())
    return Manifest(
        root=Path(raw["root"]),
        suffix=str(raw["suffix"]),
        sources={str(k): str(v) for k, v in raw["sources"].items()},
        files={str(k): str(v) for k, v in raw["files"].items()},
    )


def stale_reason(manifest: Manifest, lib: Path) -> str | None:
    """Why this build cannot be used here and now, or None when every module matches."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    if manifest.suffix != suffix:
        return f"built for {manifest.suffix}, this interpreter loads {suffix}"
    for module, digest in manifest.sources.items():
        path = source_path(manifest.root, module)
        try:
            if source_digest(path) != digest:
                return f"{path} changed since the build; python -m compiled rebuilds it"
        except OSError:
            return f"{path} is missing"
    for file in manifest.files.values():
        if not (lib / file).is_file():
            return f"{lib / file} is missing"
    return None


def usable(lib: Path, group: Iterable[str]) -> tuple[Manifest | None, str]:
    """The build in ``lib`` if it can be used for ``group`` here and now, else None; and a
    status line either way."""
    reason: str | None
    try:
        manifest = read_manifest(lib)
        if set(manifest.sources) != set(group):
            reason = "built from another list of modules; python -m compiled rebuilds it"
        else:
            reason = stale_reason(manifest, lib)
    except FileNotFoundError:
        reason = "not built; python -m compiled builds it"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = f"unreadable manifest in {lib}: {exc}"
    if reason is not None:
        return None, f"pure Python ({reason})"
    return manifest, f"compiled with mypyc ({len(manifest.sources)} modules)"
