"""Build the hot modules with mypyc into ``compiled/lib`` and hook them into this environment.

The build runs in a child interpreter (setuptools and mypyc keep global state), into a
staging directory next to ``lib``; only a complete build with its manifest replaces the old
one, so an interrupted or failed build leaves the previous state, or pure Python, in place.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path

from compiled import HOT_MODULES, finder
from compiled.manifest import MANIFEST, Manifest, source_digest, source_path

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "burrow-tunnel"
LIB = Path(finder.LIB)
PTH_NAME = "burrow-compiled.pth"
# site runs a .pth line that starts with "import"; this one stays silent where the package is
# gone (pip uninstall leaves the .pth behind), where a plain import would print a traceback at
# every interpreter start.
PTH_LINE = (
    'import sys; exec("try:\\n import compiled.finder as f\\nexcept ImportError:\\n pass\\n'
    'else:\\n f.install_from_pth()")\n'
)

# Runs in the child: mypycify writes the C sources under temp, build_ext the extensions under out.
_DRIVER = """
import sys
from setuptools import setup
from mypyc.build import mypycify

out, temp, *paths = sys.argv[1:]
setup(
    name="burrow-compiled",
    ext_modules=mypycify(
        ["--ignore-missing-imports", *paths], opt_level="3", target_dir=temp + "/c"
    ),
    script_args=["--quiet", "build_ext", "--build-lib", out, "--build-temp", temp],
)
"""


class BuildError(Exception):
    """The modules could not be compiled here; the message says why in one line."""


def missing_prerequisite() -> str | None:
    """What this machine lacks to compile, or None."""
    if importlib.util.find_spec("mypyc") is None:
        return "mypyc is not installed (it comes with mypy: pip install mypy)"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler} not found)"
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").is_file():
        return f"no Python headers ({include}/Python.h; on Debian: apt-get install python3-dev)"
    return None


def _extension_modules(out: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for path in out.rglob(f"*{suffix}"):
            relative = path.relative_to(out)
            name = relative.name[: -len(suffix)]
            files[".".join((*relative.parent.parts, name))] = str(relative)
    return files


def _compile_root(root: Path, scratch: Path) -> Path:
    """Where mypyc compiles from: the tree itself, or for an installed copy, a copy of this
    distribution's own packages. mypy treats every module beside the sources as the program's,
    and site-packages holds other projects' modules (mypy_extensions among them)."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return root
    if Path(str(dist.locate_file(""))).resolve() != root.resolve():
        return root  # a checkout (an editable install points here) or a tree of its own
    top_level = dist.read_text("top_level.txt")
    if not top_level:
        raise BuildError(f"cannot tell which packages in {root} are {DISTRIBUTION}'s")
    copy = scratch / "src"
    skip = shutil.ignore_patterns("__pycache__", "lib", "build-*")
    for name in top_level.split():
        if (root / name / "__init__.py").is_file():
            shutil.copytree(root / name, copy / name, ignore=skip)
    return copy


def build(
    modules: Sequence[str] = HOT_MODULES,
    root: Path = ROOT,
    lib: Path = LIB,
) -> Manifest:
    """Compile ``modules`` (found under ``root``) into ``lib``; raises BuildError."""
    lacking = missing_prerequisite()
    if lacking is not None:
        raise BuildError(lacking)
    paths = [source_path(root, module) for module in modules]
    digests = {module: source_digest(path) for module, path in zip(modules, paths, strict=True)}
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=lib.parent) as scratch:
        staging = Path(scratch) / "lib"
        compile_root = _compile_root(root, Path(scratch))
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _DRIVER,
                str(staging),
                f"{scratch}/temp",
                *(str(path.relative_to(root)) for path in paths),
            ],
            cwd=compile_root,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise BuildError(f"mypyc failed: {lines[-1]}")
        changed = [m for m, p in zip(modules, paths, strict=True) if source_digest(p) != digests[m]]
        if changed:
            raise BuildError(f"{changed[0]} changed while it was being compiled; build again")
        files = _extension_modules(staging)
        absent = [module for module in modules if module not in files]
        if absent:
            raise BuildError(f"mypyc produced no extension for {absent[0]}")
        manifest = Manifest(
            root=root,
            suffix=sysconfig.get_config_var("EXT_SUFFIX"),
            sources=digests,
            files=files,
        )
        (staging / MANIFEST).write_text(manifest.dump())
        if lib.exists():
            shutil.rmtree(lib)
        staging.rename(lib)
    return manifest


def pth_file() -> Path:
    return Path(sysconfig.get_paths()["purelib"]) / PTH_NAME


def hook_in() -> Path:
    """Write the .pth that installs the finder at every start of this environment's Python."""
    path = pth_file()
    if not path.exists() or path.read_text() != PTH_LINE:
        path.write_text(PTH_LINE)
    return path


def remove(lib: Path = LIB) -> None:
    pth_file().unlink(missing_ok=True)
    if lib.exists():
        shutil.rmtree(lib)
